//! Keyed windows: `reduce_by_key_and_window` (plain and incremental), `group_by_key_and_window`,
//! `count_by_value_and_window`.
//!
//! Each batch is first combined per key and shuffled, so a key's per-batch results always
//! arrive on the worker that owns its partition; the window then runs on that worker alone.
//! The plain form merges the buffered per-batch results of the whole window at every slide.
//! The incremental form keeps the window's value per key and, at every slide, applies only the
//! batches that enter (with `f`) and leave (with `inv_f`) the window.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ember_engine::ops::BatchInfo;
use ember_engine::state::{StatefulLogic, stateful};
use ember_engine::{Data, Key, Msg, Part, PartId};

use crate::dstream::shuffle::{Owned, Shuffle};
use crate::dstream::window::{WindowGroups, check_window, sliding};
use crate::dstream::{DStream, NodeMeta, owned_partitions};
use crate::error::Result;
use crate::plan::{NodeSpec, Partitioning};
use crate::state_codec::{decode, encode};
use crate::time::Duration;

use crate::dstream::shuffle::FastMap;

/// A filter over the window's `(key, value)` pairs.
type KeyFilter<K, V> = Arc<dyn Fn(&K, &V) -> bool + Send + Sync>;

/// Folds `v` into the slot with `f` (the slot's value first).
fn fold<V>(slot: &mut Option<V>, v: V, f: &impl Fn(V, V) -> V) {
    *slot = Some(match slot.take() {
        Some(acc) => f(acc, v),
        None => v,
    });
}

/// One partition per owned shuffle partition (empty ones too), from per-partition maps.
fn emit_owned<K: Key, V: Data>(owned: &[u32], maps: &HashMap<u32, FastMap<K, V>>, out: &mut Vec<Msg<(K, V)>>) {
    for p in owned {
        let data = maps
            .get(p)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        out.push(Msg::Part(Part { id: PartId::new(*p), data }));
    }
}

impl<K: Key, V: Data> DStream<(K, V)> {
    /// Per-key reduce over a sliding window (Spark's `reduceByKeyAndWindow(func, window,
    /// slide)`): at every slide, the values of each key in the window folded with `f`. A key
    /// appears only while it has values in the window.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) naming both durations when
    /// `window` or `slide` is zero or not a multiple of this stream's slide.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    /// use ember::testing::run_batches;
    ///
    /// let input = vec![vec![('a', 1)], vec![('a', 2), ('b', 1)], vec![]];
    /// let out = run_batches(input, |s| {
    ///     let counts = s.reduce_by_key_and_window(|x, y| x + y, seconds(2), seconds(1)).unwrap();
    ///     counts.transform(|b| b.sort_by_key())
    /// })
    /// .unwrap();
    /// assert_eq!(out, vec![vec![('a', 1)], vec![('a', 3), ('b', 1)], vec![('a', 2), ('b', 1)]]);
    /// ```
    pub fn reduce_by_key_and_window<F>(&self, f: F, window: Duration, slide: Duration) -> Result<DStream<(K, V)>>
    where
        F: Fn(V, V) -> V + Send + Sync + 'static,
    {
        self.reduce_by_key_and_window_impl(f, window, slide, None)
    }

    /// [`DStream::reduce_by_key_and_window`] into `num_partitions` partitions.
    ///
    /// # Errors
    ///
    /// As [`DStream::reduce_by_key_and_window`].
    pub fn reduce_by_key_and_window_with_partitions<F>(
        &self,
        f: F,
        window: Duration,
        slide: Duration,
        num_partitions: usize,
    ) -> Result<DStream<(K, V)>>
    where
        F: Fn(V, V) -> V + Send + Sync + 'static,
    {
        self.reduce_by_key_and_window_impl(f, window, slide, Some(num_partitions))
    }

    fn reduce_by_key_and_window_impl<F>(
        &self,
        f: F,
        window: Duration,
        slide: Duration,
        partitions: Option<usize>,
    ) -> Result<DStream<(K, V)>>
    where
        F: Fn(V, V) -> V + Send + Sync + 'static,
    {
        check_window("reduce_by_key_and_window", self.slide, window, slide)?;
        let f = Arc::new(f);
        let (f1, f2, h) = (Arc::clone(&f), Arc::clone(&f), f);
        Ok(self.one_op("reduce_by_key_and_window", || {
            let reduced = self.combine_by_key_impl(
                "reduce_by_key_and_window",
                partitions,
                |v| v,
                move |a, b| f1(a, b),
                move |a, b| f2(a, b),
            );
            reduced.merge_window("reduce_by_key_and_window", window, slide, partitions, move |a: V, b: &V| {
                h(a, b.clone())
            })
        }))
    }

    /// Per-key reduce over a sliding window computed incrementally (Spark's
    /// `reduceByKeyAndWindow(func, invFunc, window, slide)`): every slide adds the batches
    /// entering the window with `f` and removes those leaving it with `inv_f`, so the cost per
    /// slide does not grow with the window's length. As in Spark, a key stays in the result
    /// once seen, with the identity value (0 for a sum) after its values leave the window; use
    /// [`DStream::reduce_by_key_and_window_inv_filtered`] to drop such keys.
    ///
    /// # Errors
    ///
    /// As [`DStream::reduce_by_key_and_window`].
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    /// use ember::testing::run_batches;
    ///
    /// let input = vec![vec![('a', 1)], vec![('a', 2)], vec![], vec![]];
    /// let out = run_batches(input, |s| {
    ///     s.reduce_by_key_and_window_inv(|x, y| x + y, |x, y| x - y, seconds(2), seconds(1)).unwrap()
    /// })
    /// .unwrap();
    /// assert_eq!(out, vec![vec![('a', 1)], vec![('a', 3)], vec![('a', 2)], vec![('a', 0)]]);
    /// ```
    pub fn reduce_by_key_and_window_inv<F, G>(&self, f: F, inv_f: G, window: Duration, slide: Duration) -> Result<DStream<(K, V)>>
    where
        F: Fn(V, V) -> V + Send + Sync + 'static,
        G: Fn(V, V) -> V + Send + Sync + 'static,
    {
        self.reduce_by_key_and_window_inv_impl("reduce_by_key_and_window", (f, inv_f), window, slide, None, None)
    }

    /// [`DStream::reduce_by_key_and_window_inv`] with a partition count and a filter: after
    /// each slide, keys whose `(key, value)` fails `filter` are dropped from the window's state
    /// and from the output (Spark's `filterFunc`; `|_, v| *v != 0` restores the output of the
    /// plain form for sums).
    ///
    /// A dropped key whose earlier values later leave the window without new values arriving
    /// stays absent (Spark fails the batch in that case).
    ///
    /// # Errors
    ///
    /// As [`DStream::reduce_by_key_and_window`].
    pub fn reduce_by_key_and_window_inv_filtered<F, G, P>(
        &self,
        f: F,
        inv_f: G,
        window: Duration,
        slide: Duration,
        num_partitions: Option<usize>,
        filter: P,
    ) -> Result<DStream<(K, V)>>
    where
        F: Fn(V, V) -> V + Send + Sync + 'static,
        G: Fn(V, V) -> V + Send + Sync + 'static,
        P: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        self.reduce_by_key_and_window_inv_impl(
            "reduce_by_key_and_window",
            (f, inv_f),
            window,
            slide,
            num_partitions,
            Some(Arc::new(filter)),
        )
    }

    /// The incremental windowed reduce behind every `*_inv` form.
    pub(crate) fn reduce_by_key_and_window_inv_impl<F, G>(
        &self,
        operation: &'static str,
        (f, inv_f): (F, G),
        window: Duration,
        slide: Duration,
        partitions: Option<usize>,
        filter: Option<KeyFilter<K, V>>,
    ) -> Result<DStream<(K, V)>>
    where
        F: Fn(V, V) -> V + Send + Sync + 'static,
        G: Fn(V, V) -> V + Send + Sync + 'static,
    {
        check_window(operation, self.slide, window, slide)?;
        let f = Arc::new(f);
        let (f1, f2) = (Arc::clone(&f), Arc::clone(&f));
        let op = self.plan.begin_op();
        let reduced = self.combine_by_key_impl(operation, partitions, |v| v, move |a, b| f1(a, b), move |a, b| f2(a, b));
        let inv_f: Reducer<V> = Arc::new(inv_f);
        let f: Reducer<V> = f;
        let parent_slide = self.slide;
        let meta = NodeMeta::stateful();
        let spec = NodeSpec::new(operation, slide, vec![reduced.index])
            .partitioning(Partitioning::ByKey(partitions))
            .meta(Arc::clone(&meta));
        let windowed = reduced.derive_node(spec, move |c, input, label| {
            let shuffle = Shuffle::new(c, partitions);
            let owned = shuffle.owned(c);
            let logic = InvWindow {
                owned,
                shuffle,
                f: Arc::clone(&f),
                inv_f: Arc::clone(&inv_f),
                filter: filter.clone(),
                window_ms: window.as_millis(),
                slide_ms: slide.as_millis(),
                zero: c.env.zero_ms,
                buffer: BTreeMap::new(),
                values: HashMap::new(),
            };
            let every = meta.checkpoint_every(slide);
            let grid = c.grid_of(parent_slide.as_millis());
            stateful(c, input, &grid, label, every.as_millis(), logic)
        });
        op.end(windowed.index, None);
        Ok(windowed)
    }

    /// The grouped values of each key over a sliding window, oldest batch first (Spark's
    /// `groupByKeyAndWindow`).
    ///
    /// # Errors
    ///
    /// As [`DStream::reduce_by_key_and_window`].
    pub fn group_by_key_and_window(&self, window: Duration, slide: Duration) -> Result<DStream<(K, Vec<V>)>> {
        self.group_by_key_and_window_impl(window, slide, None)
    }

    /// [`DStream::group_by_key_and_window`] into `num_partitions` partitions.
    ///
    /// # Errors
    ///
    /// As [`DStream::reduce_by_key_and_window`].
    pub fn group_by_key_and_window_with_partitions(
        &self,
        window: Duration,
        slide: Duration,
        num_partitions: usize,
    ) -> Result<DStream<(K, Vec<V>)>> {
        self.group_by_key_and_window_impl(window, slide, Some(num_partitions))
    }

    fn group_by_key_and_window_impl(&self, window: Duration, slide: Duration, partitions: Option<usize>) -> Result<DStream<(K, Vec<V>)>> {
        check_window("group_by_key_and_window", self.slide, window, slide)?;
        Ok(self.one_op("group_by_key_and_window", || {
            let grouped = match partitions {
                Some(n) => self.group_by_key_with_partitions(n),
                None => self.group_by_key(),
            };
            grouped.merge_window("group_by_key_and_window", window, slide, partitions, |mut a: Vec<V>, b: &Vec<V>| {
                a.extend(b.iter().cloned());
                a
            })
        }))
    }

    /// Merges the per-batch, per-key results of a shuffled stream (one partition per owned
    /// shuffle partition on each worker) over a sliding window, oldest batch first.
    fn merge_window<M>(
        &self,
        operation: &'static str,
        window: Duration,
        slide: Duration,
        partitions: Option<usize>,
        merge: M,
    ) -> DStream<(K, V)>
    where
        M: Fn(V, &V) -> V + Send + Sync + 'static,
    {
        let (parent_slide, merge) = (self.slide, Arc::new(merge));
        let spec = NodeSpec::new(operation, slide, vec![self.index]).partitioning(Partitioning::ByKey(partitions));
        let meta = Arc::clone(&spec.meta);
        self.derive_node(spec, move |c, input, label| {
            let n = partitions.unwrap_or(c.env.peers).max(1);
            let owned: Vec<u32> = owned_partitions(c, n).collect();
            let merge = Arc::clone(&merge);
            let shuffle = Shuffle::new(c, partitions);
            let groups = WindowGroups::ByKey {
                shuffle,
                group_of: Arc::new(move |(k, _): &(K, V)| shuffle.group_of(k)),
            };
            let every = meta.checkpoint_every(slide);
            sliding(c, input, label, parent_slide, window, groups, every, move |_time, buffer, out| {
                let mut merged: HashMap<u32, FastMap<K, V>> = HashMap::new();
                for (_, parts) in buffer.iter() {
                    for part in parts {
                        let map = merged.entry(part.id.head()).or_default();
                        for (k, v) in &part.data {
                            let merged = match map.remove(k) {
                                Some(acc) => merge(acc, v),
                                None => v.clone(),
                            };
                            map.insert(k.clone(), merged);
                        }
                    }
                }
                emit_owned(&owned, &merged, out);
            })
        })
    }
}

impl<T: Key> DStream<T> {
    /// The number of times each distinct element occurs in a sliding window (Spark's
    /// `countByValueAndWindow`), computed incrementally; elements whose count drops to 0 are
    /// removed.
    ///
    /// # Errors
    ///
    /// As [`DStream::window`].
    pub fn count_by_value_and_window(&self, window: Duration, slide: Duration) -> Result<DStream<(T, u64)>> {
        self.count_by_value_and_window_impl(window, slide, None)
    }

    /// [`DStream::count_by_value_and_window`] into `num_partitions` partitions.
    ///
    /// # Errors
    ///
    /// As [`DStream::window`].
    pub fn count_by_value_and_window_with_partitions(
        &self,
        window: Duration,
        slide: Duration,
        num_partitions: usize,
    ) -> Result<DStream<(T, u64)>> {
        self.count_by_value_and_window_impl(window, slide, Some(num_partitions))
    }

    fn count_by_value_and_window_impl(&self, window: Duration, slide: Duration, partitions: Option<usize>) -> Result<DStream<(T, u64)>> {
        check_window("count_by_value_and_window", self.slide, window, slide)?;
        self.try_one_op("count_by_value_and_window", || {
            self.map(|x| (x, 1u64)).reduce_by_key_and_window_inv_impl(
                "count_by_value_and_window",
                (|a, b| a + b, |a, b| a - b),
                window,
                slide,
                partitions,
                Some(Arc::new(|_: &T, n: &u64| *n != 0)),
            )
        })
    }
}

/// A reduce function of the incremental window (`f` or its inverse).
type Reducer<V> = Arc<dyn Fn(V, V) -> V + Send + Sync>;

/// The state of an incremental window (`reduce_by_key_and_window` with an inverse function) on
/// one worker: the reduced batches still needed, and the window's value per key, both per key
/// group.
struct InvWindow<K, V> {
    shuffle: Shuffle,
    owned: Owned,
    f: Reducer<V>,
    inv_f: Reducer<V>,
    filter: Option<KeyFilter<K, V>>,
    window_ms: u64,
    slide_ms: u64,
    zero: u64,
    /// Per batch time, the batch's reduced partitions this worker holds. The previous window
    /// stays buffered until its batches are subtracted.
    buffer: BTreeMap<u64, Vec<Part<(K, V)>>>,
    /// Per owned shuffle partition, the current window's value of each key.
    values: HashMap<u32, FastMap<K, V>>,
}

impl<K: Key, V: Data> InvWindow<K, V> {
    /// The window at `time`: applies the batches that entered since the last slide (with `f`,
    /// oldest first, as Spark reduces new values in time order) and those that left (with
    /// `inv_f`), then emits every owned partition.
    fn emit(&mut self, time: u64, out: &mut Vec<Msg<(K, V)>>) {
        let (w, s) = (self.window_ms, self.slide_ms);
        let (f, inv_f) = (&*self.f, &*self.inv_f);
        // Per partition: values leaving the window since the last slide, and values entering it.
        let mut delta: HashMap<u32, FastMap<K, (Option<V>, Option<V>)>> = HashMap::new();
        let entering = time.saturating_sub(s.min(w));
        for (_, parts) in self.buffer.range(entering + 1..) {
            for part in parts {
                let map = delta.entry(part.id.head()).or_default();
                for (k, v) in &part.data {
                    fold(&mut map.entry(k.clone()).or_default().1, v.clone(), &|a, b| f(a, b));
                }
            }
        }
        // Batches at or before `time - w` leave now. Those after `time - s` were never in a
        // window (only possible when the window is shorter than the slide).
        while let Some(entry) = self.buffer.first_entry()
            && entry.key() + w <= time
        {
            let (t, parts) = entry.remove_entry();
            if t + s > time {
                continue;
            }
            for part in parts {
                let map = delta.entry(part.id.head()).or_default();
                for (k, v) in part.data {
                    fold(&mut map.entry(k).or_default().0, v, &|a, b| f(a, b));
                }
            }
        }
        for (p, changes) in delta {
            let values = self.values.entry(p).or_default();
            for (k, (old, new)) in changes {
                match values.entry(k) {
                    Entry::Occupied(e) => {
                        let (k, mut v) = e.remove_entry();
                        if let Some(old) = old {
                            v = inv_f(v, old);
                        }
                        if let Some(new) = new {
                            v = f(v, new);
                        }
                        values.insert(k, v);
                    }
                    Entry::Vacant(e) => {
                        if let Some(new) = new {
                            e.insert(new);
                        }
                    }
                }
            }
        }
        if let Some(keep) = &self.filter {
            for values in self.values.values_mut() {
                values.retain(|k, v| keep(k, v));
            }
        }
        emit_owned(&self.owned.partitions, &self.values, out);
    }
}

/// One key group's share of an incremental window's state.
type InvWindowGroup<K, V> = (Vec<(u64, Vec<(K, V)>)>, Vec<(K, V)>);

impl<K: Key, V: Data> StatefulLogic for InvWindow<K, V> {
    type Input = (K, V);
    type Output = (K, V);

    fn on_batch(&mut self, info: BatchInfo, parts: Vec<Part<(K, V)>>, out: &mut Vec<Msg<(K, V)>>) {
        let time = info.time;
        self.buffer.insert(time, parts);
        let keep = self.window_ms + self.slide_ms;
        while let Some(entry) = self.buffer.first_entry()
            && entry.key() + keep <= time
        {
            entry.remove();
        }
        if time > self.zero && (time - self.zero).is_multiple_of(self.slide_ms) {
            self.emit(time, out);
        }
    }

    fn owns(&self, group: u32) -> bool {
        self.owned.groups.contains(&group)
    }

    fn snapshot(&self) -> std::result::Result<BTreeMap<u32, Vec<u8>>, String> {
        let mut groups: BTreeMap<u32, InvWindowGroup<K, V>> = BTreeMap::new();
        for (t, parts) in &self.buffer {
            let mut by_group: BTreeMap<u32, Vec<(K, V)>> = BTreeMap::new();
            for (k, v) in parts.iter().flat_map(|p| &p.data) {
                by_group.entry(self.shuffle.group_of(k)).or_default().push((k.clone(), v.clone()));
            }
            for (group, pairs) in by_group {
                groups.entry(group).or_default().0.push((*t, pairs));
            }
        }
        for (k, v) in self.values.values().flat_map(|values| values.iter()) {
            groups.entry(self.shuffle.group_of(k)).or_default().1.push((k.clone(), v.clone()));
        }
        groups
            .into_iter()
            .map(|(group, state)| encode(&state).map(|bytes| (group, bytes)))
            .collect()
    }

    fn restore(&mut self, group: u32, bytes: &[u8]) -> std::result::Result<(), String> {
        let (batches, values): InvWindowGroup<K, V> = decode(bytes)?;
        let p = self.shuffle.space.partition_of_group(group);
        for (t, data) in batches {
            self.buffer.entry(t).or_default().push(Part { id: PartId::new(p), data });
        }
        self.values.entry(p).or_default().extend(values);
        Ok(())
    }
}
