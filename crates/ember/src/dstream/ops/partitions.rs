//! `repartition`: exactly `n` partitions with the same elements.

use std::collections::HashMap;

use ember_engine::keys::stable_hash;
use ember_engine::ops::{PerBatch, PerPart};
use ember_engine::{Data, Part};

use crate::dstream::shuffle::{assemble_owned, target_parts};
use crate::dstream::{DStream, owned_partitions, spread};
use crate::error::{Error, Result};
use crate::plan::Partitioning;

impl<T: Data> DStream<T> {
    /// A stream whose batches have exactly `num_partitions` partitions, the elements spread
    /// round-robin (Spark's `repartition`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when `num_partitions` is 0.
    pub fn repartition(&self, num_partitions: usize) -> Result<DStream<T>> {
        if num_partitions == 0 {
            return Err(Error::InvalidArgument {
                operation: "repartition",
                message: "the number of partitions must be positive".into(),
            });
        }
        let n = num_partitions;
        Ok(
            self.derive_as("repartition", Partitioning::RoundRobin(num_partitions), move |c, s, label| {
                let split = s.per_parts(label, move |p: Part<T>, out: &mut Vec<Part<T>>| {
                    // Each input partition starts its round-robin at its own offset, as Spark does.
                    let start = (stable_hash(&p.id) % n as u64) as usize;
                    let mut targets: Vec<Vec<T>> = (0..n).map(|_| Vec::new()).collect();
                    for (i, x) in p.data.into_iter().enumerate() {
                        targets[(start + i) % n].push(x);
                    }
                    out.extend(target_parts(targets));
                });
                let owned: Vec<u32> = owned_partitions(c, n).collect();
                spread(c, split).per_batch(
                    &c.grid(),
                    label,
                    |acc: &mut HashMap<u32, Vec<T>>, p: Part<T>| acc.entry(p.id.head()).or_default().extend(p.data),
                    move |info, acc, out| assemble_owned(&owned, acc, info.no_rdd[0], out),
                )
            }),
        )
    }
}
