//! Per-key operations: `map_values`, `flat_map_values`, `combine_by_key`, `reduce_by_key`,
//! `group_by_key`.
//!
//! Keyed aggregations combine locally on each worker first (map-side combine), then exchange
//! one partial result per key, hashed to `num_partitions` shuffle partitions.

use std::collections::HashMap;
use std::sync::Arc;

use ember_engine::ops::{BatchInfo, PerBatch};
use ember_engine::{Data, Key, Msg, Part};

use crate::dstream::shuffle::{Shuffle, assemble_owned};
use crate::dstream::{DStream, spread};
use crate::plan::{NodeSpec, Partitioning};

use crate::dstream::combine::CombineTable;
use crate::dstream::fuse;

impl<K: Key, V: Data> DStream<(K, V)> {
    /// A stream with `f` applied to every value, keys unchanged.
    pub fn map_values<U: Data, F>(&self, f: F) -> DStream<(K, U)>
    where
        F: Fn(V) -> U + Send + Sync + 'static,
    {
        self.stage("map_values", move |(k, v), out: &mut dyn FnMut((K, U))| out((k, f(v))))
    }

    /// A stream with every value replaced by the values `f` returns, each with its key.
    pub fn flat_map_values<U: Data, I, F>(&self, f: F) -> DStream<(K, U)>
    where
        I: IntoIterator<Item = U>,
        F: Fn(V) -> I + Send + Sync + 'static,
    {
        self.stage("flat_map_values", move |(k, v), out: &mut dyn FnMut((K, U))| {
            for u in f(v) {
                out((k.clone(), u))
            }
        })
    }

    /// Combines the values of each key per batch with `create`, `merge_value` and
    /// `merge_combiners` (Spark's `combineByKey`), into as many partitions as there are workers.
    pub fn combine_by_key<C: Data, F1, F2, F3>(&self, create: F1, merge_value: F2, merge_combiners: F3) -> DStream<(K, C)>
    where
        F1: Fn(V) -> C + Send + Sync + 'static,
        F2: Fn(C, V) -> C + Send + Sync + 'static,
        F3: Fn(C, C) -> C + Send + Sync + 'static,
    {
        self.combine_by_key_impl("combine_by_key", None, create, merge_value, merge_combiners)
    }

    /// [`DStream::combine_by_key`] into `num_partitions` partitions.
    pub fn combine_by_key_with_partitions<C: Data, F1, F2, F3>(
        &self,
        create: F1,
        merge_value: F2,
        merge_combiners: F3,
        num_partitions: usize,
    ) -> DStream<(K, C)>
    where
        F1: Fn(V) -> C + Send + Sync + 'static,
        F2: Fn(C, V) -> C + Send + Sync + 'static,
        F3: Fn(C, C) -> C + Send + Sync + 'static,
    {
        self.combine_by_key_impl("combine_by_key", Some(num_partitions), create, merge_value, merge_combiners)
    }

    /// A stream of `(key, combined value)` per batch: the values of each key combined with `f`
    /// (Spark's `reduceByKey`).
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    /// use ember::testing::run_batches;
    ///
    /// let mut out = run_batches(vec![vec![('a', 1), ('b', 1), ('a', 1)]], |s| s.reduce_by_key(|x, y| x + y)).unwrap();
    /// out[0].sort();
    /// assert_eq!(out, vec![vec![('a', 2), ('b', 1)]]);
    /// ```
    pub fn reduce_by_key<F>(&self, f: F) -> DStream<(K, V)>
    where
        F: Fn(V, V) -> V + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let g = Arc::clone(&f);
        self.combine_by_key_impl("reduce_by_key", None, |v| v, move |a, b| f(a, b), move |a, b| g(a, b))
    }

    /// [`DStream::reduce_by_key`] into `num_partitions` partitions.
    pub fn reduce_by_key_with_partitions<F>(&self, f: F, num_partitions: usize) -> DStream<(K, V)>
    where
        F: Fn(V, V) -> V + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let g = Arc::clone(&f);
        self.combine_by_key_impl(
            "reduce_by_key",
            Some(num_partitions),
            |v| v,
            move |a, b| f(a, b),
            move |a, b| g(a, b),
        )
    }

    /// A stream of `(key, values)` per batch (Spark's `groupByKey`); values keep arrival order
    /// within a worker.
    pub fn group_by_key(&self) -> DStream<(K, Vec<V>)> {
        self.group_by_key_impl(None)
    }

    /// [`DStream::group_by_key`] into `num_partitions` partitions.
    pub fn group_by_key_with_partitions(&self, num_partitions: usize) -> DStream<(K, Vec<V>)> {
        self.group_by_key_impl(Some(num_partitions))
    }

    pub(crate) fn group_by_key_impl(&self, partitions: Option<usize>) -> DStream<(K, Vec<V>)> {
        // As Spark's `groupByKey`, no combine per partition: it would only move the values
        // into one more table, whose keys are then hashed again.
        self.combine_by_key_with(
            "group_by_key",
            partitions,
            false,
            |v| vec![v],
            |mut c: Vec<V>, v| {
                c.push(v);
                c
            },
            |mut a: Vec<V>, b| {
                a.extend(b);
                a
            },
        )
    }

    pub(crate) fn combine_by_key_impl<C: Data, F1, F2, F3>(
        &self,
        name: &str,
        partitions: Option<usize>,
        create: F1,
        merge_value: F2,
        merge_combiners: F3,
    ) -> DStream<(K, C)>
    where
        F1: Fn(V) -> C + Send + Sync + 'static,
        F2: Fn(C, V) -> C + Send + Sync + 'static,
        F3: Fn(C, C) -> C + Send + Sync + 'static,
    {
        self.combine_by_key_with(name, partitions, true, create, merge_value, merge_combiners)
    }

    /// [`DStream::combine_by_key_impl`]; with `per_partition`, fused stages before it are
    /// combined per partition as they come (see `dstream::fuse`), else collected into the
    /// batch's table directly.
    fn combine_by_key_with<C: Data, F1, F2, F3>(
        &self,
        name: &str,
        partitions: Option<usize>,
        per_partition: bool,
        create: F1,
        merge_value: F2,
        merge_combiners: F3,
    ) -> DStream<(K, C)>
    where
        F1: Fn(V) -> C + Send + Sync + 'static,
        F2: Fn(C, V) -> C + Send + Sync + 'static,
        F3: Fn(C, C) -> C + Send + Sync + 'static,
    {
        let fns = Arc::new((create, merge_value, merge_combiners));
        let spec = NodeSpec::new(name, self.slide, vec![self.index]).partitioning(Partitioning::ByKey(partitions));
        self.derive_fusing(spec, move |c, upstream, label| {
            let shuffle = Shuffle::new(c, partitions);
            let (local_fns, final_fns) = (Arc::clone(&fns), Arc::clone(&fns));
            let finish = move |info: BatchInfo, acc: CombineTable<K, C>, out: &mut Vec<Msg<(K, C)>>| {
                if info.no_rdd[0] {
                    out.push(Msg::NoRdd);
                }
                out.extend(shuffle.split(acc.into_entries()).into_iter().map(Msg::Part));
            };
            // When the operations before were fused into this one, they run in the same pass:
            // each partition's values are combined as they come out of them (Spark's map-side
            // combine per partition), then the partitions' combiners per batch.
            let partials = if per_partition {
                let part_fns = Arc::clone(&fns);
                let mut partial: CombineTable<K, C> = CombineTable::default();
                upstream.run(c, label, move |feed| {
                    let (create, merge_value, _) = &*part_fns;
                    // A partition that failed half-way leaves nothing behind.
                    partial.clear();
                    fuse::for_each(feed, |(k, v)| partial.fold(k, v, create, merge_value));
                    let combined: Vec<(K, C)> = partial.drain().collect();
                    // A table grown by one partition of many keys would make every later
                    // partition clear all of it.
                    if partial.capacity() > 4 * combined.len().max(1024) {
                        partial = CombineTable::default();
                    }
                    combined
                })
            } else {
                None
            };
            let local = match partials {
                Some(partials) => partials.per_batch(
                    &c.grid(),
                    label,
                    move |acc: &mut CombineTable<K, C>, p: Part<(K, C)>| {
                        let merge_combiners = &local_fns.2;
                        for (k, c) in p.data {
                            acc.fold(k, c, |c| c, merge_combiners);
                        }
                    },
                    finish,
                ),
                None => upstream.stream(c, label).per_batch(
                    &c.grid(),
                    label,
                    move |acc: &mut CombineTable<K, C>, p: Part<(K, V)>| {
                        let (create, merge_value, _) = &*local_fns;
                        for (k, v) in p.data {
                            acc.fold(k, v, create, merge_value);
                        }
                    },
                    finish,
                ),
            };
            let owned = shuffle.owned(c).partitions;
            spread(c, local).per_batch(
                &c.grid(),
                label,
                move |acc: &mut HashMap<u32, CombineTable<K, C>>, p: Part<(K, C)>| {
                    let merge_combiners = &final_fns.2;
                    let map = acc.entry(p.id.head()).or_default();
                    for (k, c) in p.data {
                        map.fold(k, c, |c| c, merge_combiners);
                    }
                },
                move |info, acc, out| {
                    let acc: HashMap<u32, Vec<(K, C)>> = acc.into_iter().map(|(p, m)| (p, m.into_entries().collect())).collect();
                    assemble_owned(&owned, acc, info.no_rdd[0], out)
                },
            )
        })
    }
}
