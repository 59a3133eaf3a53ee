//! Two-stream keyed operations: `cogroup`, `join`, `left_outer_join`, `right_outer_join`,
//! `full_outer_join`. Both sides are grouped by key locally, shuffled by key, and matched per
//! shuffle partition.

use std::collections::HashMap;

use ember_engine::ops::PerBatch;
use ember_engine::{Data, Key, Msg, Part, PartId};

use crate::dstream::ops::transform::no_rdd_failure;
use crate::dstream::{DStream, owned_partitions};
use crate::plan::{NodeSpec, Partitioning};

type Groups<K, V, W> = HashMap<u32, FastMap<K, (Vec<V>, Vec<W>)>>;
use crate::dstream::shuffle::FastMap;

impl<K: Key, V: Data> DStream<(K, V)> {
    /// A stream of `(key, (this stream's values, other's values))` for every key present in
    /// either batch (Spark's `cogroup`), into as many partitions as there are workers.
    pub fn cogroup<W: Data>(&self, other: &DStream<(K, W)>) -> DStream<(K, (Vec<V>, Vec<W>))> {
        self.cogroup_impl("cogroup", other, None)
    }

    /// [`DStream::cogroup`] into `num_partitions` partitions.
    pub fn cogroup_with_partitions<W: Data>(&self, other: &DStream<(K, W)>, num_partitions: usize) -> DStream<(K, (Vec<V>, Vec<W>))> {
        self.cogroup_impl("cogroup", other, Some(num_partitions))
    }

    /// Inner join: `(key, (v, w))` for every pair of values of a key present in both batches.
    pub fn join<W: Data>(&self, other: &DStream<(K, W)>) -> DStream<(K, (V, W))> {
        self.one_op("join", || {
            self.cogroup_impl("join", other, None).flat_map(|(k, (vs, ws))| {
                let mut out = Vec::with_capacity(vs.len() * ws.len());
                for v in &vs {
                    for w in &ws {
                        out.push((k.clone(), (v.clone(), w.clone())));
                    }
                }
                out
            })
        })
    }

    /// Left outer join: every value of this stream, with each matching value of `other` or
    /// `None`.
    pub fn left_outer_join<W: Data>(&self, other: &DStream<(K, W)>) -> DStream<(K, (V, Option<W>))> {
        self.one_op("left_outer_join", || {
            self.cogroup_impl("left_outer_join", other, None).flat_map(|(k, (vs, ws))| {
                let mut out = Vec::new();
                for v in vs {
                    if ws.is_empty() {
                        out.push((k.clone(), (v, None)));
                    } else {
                        out.extend(ws.iter().map(|w| (k.clone(), (v.clone(), Some(w.clone())))));
                    }
                }
                out
            })
        })
    }

    /// Right outer join: every value of `other`, with each matching value of this stream or
    /// `None`.
    pub fn right_outer_join<W: Data>(&self, other: &DStream<(K, W)>) -> DStream<(K, (Option<V>, W))> {
        self.one_op("right_outer_join", || {
            self.cogroup_impl("right_outer_join", other, None).flat_map(|(k, (vs, ws))| {
                let mut out = Vec::new();
                for w in ws {
                    if vs.is_empty() {
                        out.push((k.clone(), (None, w)));
                    } else {
                        out.extend(vs.iter().map(|v| (k.clone(), (Some(v.clone()), w.clone()))));
                    }
                }
                out
            })
        })
    }

    /// Full outer join: every value of either stream, matched where the key is in both.
    pub fn full_outer_join<W: Data>(&self, other: &DStream<(K, W)>) -> DStream<(K, (Option<V>, Option<W>))> {
        self.one_op("full_outer_join", || {
            self.cogroup_impl("full_outer_join", other, None).flat_map(|(k, (vs, ws))| {
                let mut out = Vec::new();
                match (vs.is_empty(), ws.is_empty()) {
                    (false, true) => out.extend(vs.into_iter().map(|v| (k.clone(), (Some(v), None)))),
                    (true, false) => out.extend(ws.into_iter().map(|w| (k.clone(), (None, Some(w))))),
                    _ => {
                        for v in &vs {
                            out.extend(ws.iter().map(|w| (k.clone(), (Some(v.clone()), Some(w.clone())))));
                        }
                    }
                }
                out
            })
        })
    }

    /// The cogroup of this stream and `other`, one operation in the plan.
    fn cogroup_impl<W: Data>(
        &self,
        name: &'static str,
        other: &DStream<(K, W)>,
        partitions: Option<usize>,
    ) -> DStream<(K, (Vec<V>, Vec<W>))> {
        self.one_op(name, || self.cogroup_nodes(name, other, partitions))
    }

    /// Groups both streams by key with the same partitioning, then puts the groups side by side.
    fn cogroup_nodes<W: Data>(
        &self,
        name: &'static str,
        other: &DStream<(K, W)>,
        partitions: Option<usize>,
    ) -> DStream<(K, (Vec<V>, Vec<W>))> {
        self.require_same_slide(name, other);
        let left = self.group_by_key_impl_for_join(partitions);
        let right = other.group_by_key_impl_for_join(partitions).node_ref();
        let spec = NodeSpec::new(name, self.slide, vec![left.index, right.index()]).partitioning(Partitioning::ByKey(partitions));
        left.derive_node(spec, move |c, s, label| {
            let n = partitions.unwrap_or(c.env.peers).max(1);
            let owned: Vec<u32> = owned_partitions(c, n).collect();
            let operator = label.to_owned();
            let is_root = c.env.index == 0;
            let other = right.stream(c);
            s.per_batch2(
                other,
                &c.grid(),
                label,
                |acc: &mut Groups<K, V, W>, p: Part<(K, Vec<V>)>| {
                    let groups = acc.entry(p.id.head()).or_default();
                    for (k, vs) in p.data {
                        groups.entry(k).or_default().0.extend(vs);
                    }
                },
                |acc: &mut Groups<K, V, W>, p: Part<(K, Vec<W>)>| {
                    let groups = acc.entry(p.id.head()).or_default();
                    for (k, ws) in p.data {
                        groups.entry(k).or_default().1.extend(ws);
                    }
                },
                move |info, mut acc, out| {
                    // As in Spark, cogroup and joins go through `transformWith`, which needs an
                    // RDD on both sides.
                    if info.no_rdd[0] || info.no_rdd[1] {
                        if is_root {
                            out.push(no_rdd_failure(&operator, info.time));
                        }
                        return;
                    }
                    for &p in &owned {
                        let data = acc.remove(&p).map(|g| g.into_iter().collect()).unwrap_or_default();
                        out.push(Msg::Part(Part { id: PartId::new(p), data }));
                    }
                },
            )
        })
    }

    fn group_by_key_impl_for_join(&self, partitions: Option<usize>) -> DStream<(K, Vec<V>)> {
        match partitions {
            Some(n) => self.group_by_key_with_partitions(n),
            None => self.group_by_key(),
        }
    }
}
