//! `partition_by`: every batch of a pair stream moved into `num_partitions` partitions by key
//! (Spark's `RDD.partitionBy` applied to each batch, as users write it inside `transform`).

use std::collections::HashMap;
use std::sync::Arc;

use ember_engine::ops::{PerBatch, PerPart};
use ember_engine::{Data, Key, Part};

use crate::dstream::shuffle::{Shuffle, assemble_owned, target_parts};
use crate::dstream::{DStream, spread};
use crate::error::{Error, Result};
use crate::plan::Partitioning;

/// A user's partitioner: the partition of a key, below the partition count.
type Partitioner<K> = Arc<dyn Fn(&K) -> usize + Send + Sync>;

impl<K: Key, V: Data> DStream<(K, V)> {
    /// A stream whose every batch holds exactly `num_partitions` partitions, each key's
    /// elements in the partition its key belongs to (Spark's `partitionBy(new
    /// HashPartitioner(n))` on each batch). Keys are placed by ember's stable hash and key
    /// groups, as every keyed operator places them, not by Java's `hashCode`: the same keys end
    /// up together, in other partitions than in Spark. Nothing is combined; within a
    /// partition the order of elements is not defined, as in Spark.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when `num_partitions` is 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    /// use ember::testing::run_batches;
    ///
    /// let input = vec![vec![("a".to_owned(), 1), ("b".to_owned(), 2), ("a".to_owned(), 3)]];
    /// let out = run_batches(input, |s| s.partition_by(4).unwrap().glom().map(|p: Vec<(String, i32)>| p.len()))
    /// .unwrap();
    /// assert_eq!(out[0].len(), 4, "one element per partition, empty ones too");
    /// assert_eq!(out[0].iter().sum::<usize>(), 3);
    /// ```
    pub fn partition_by(&self, num_partitions: usize) -> Result<DStream<(K, V)>> {
        self.partition_by_impl("partition_by", num_partitions, None)
    }

    /// [`DStream::partition_by`] with a user's partitioner (Spark's `partitionBy(partitioner)`
    /// with a custom `Partitioner`): `partitioner(key)` is the key's partition, which must be
    /// below `num_partitions`. A key it places out of range fails the batch with an error naming
    /// the partition it returned; later batches go on.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when `num_partitions` is 0.
    pub fn partition_by_with<F>(&self, num_partitions: usize, partitioner: F) -> Result<DStream<(K, V)>>
    where
        F: Fn(&K) -> usize + Send + Sync + 'static,
    {
        self.partition_by_impl("partition_by", num_partitions, Some(Arc::new(partitioner)))
    }

    fn partition_by_impl(&self, name: &str, num_partitions: usize, partitioner: Option<Partitioner<K>>) -> Result<DStream<(K, V)>> {
        if num_partitions == 0 {
            return Err(Error::InvalidArgument {
                operation: "partition_by",
                message: "num_partitions must be positive, got 0".into(),
            });
        }
        Ok(self.derive_as(name, Partitioning::ByKey(Some(num_partitions)), move |c, s, label| {
            let shuffle = Shuffle::new(c, Some(num_partitions));
            let split = match partitioner.clone() {
                None => s.per_parts(label, move |p: Part<(K, V)>, out: &mut Vec<Part<(K, V)>>| {
                    out.extend(shuffle.split(p.data));
                }),
                Some(partitioner) => s
                    .try_per_part(label, move |p: Part<(K, V)>| {
                        // The targets first, so that a bad one fails the batch before anything
                        // moves.
                        let mut targets: Vec<Vec<(K, V)>> = (0..num_partitions).map(|_| Vec::new()).collect();
                        for (k, v) in p.data {
                            let target = partitioner(&k);
                            let slot = targets.get_mut(target).ok_or_else(|| {
                                format!("the partitioner placed a key in partition {target}, but there are {num_partitions} partitions")
                            })?;
                            slot.push((k, v));
                        }
                        Ok(Part {
                            id: p.id,
                            data: vec![targets],
                        })
                    })
                    .per_parts(label, |p: Part<Vec<Vec<(K, V)>>>, out: &mut Vec<Part<(K, V)>>| {
                        for targets in p.data {
                            out.extend(target_parts(targets));
                        }
                    }),
            };
            let owned = shuffle.owned(c).partitions;
            spread(c, split).per_batch(
                &c.grid(),
                label,
                |acc: &mut HashMap<u32, Vec<(K, V)>>, p: Part<(K, V)>| acc.entry(p.id.head()).or_default().extend(p.data),
                move |info, acc, out| assemble_owned(&owned, acc, info.no_rdd[0], out),
            )
        }))
    }
}
