//! `update_state_by_key`: a state per key, updated every batch from the key's new values.
//!
//! Each batch's values are grouped by key and shuffled to the worker that owns the key's
//! partition; that worker keeps the key's state in a hash map per partition and calls the
//! update function for every key with new values or a state, every batch. Snapshots split the
//! state by key group, so it restores on any number of workers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ember_engine::ops::{BatchInfo, catch_user};
use ember_engine::state::{StatefulLogic, stateful};
use ember_engine::{Data, Key, Msg, Part, PartId};

use crate::dstream::shuffle::{Owned, Shuffle, snapshot_by_group};
use crate::dstream::{DStream, NodeMeta};
use crate::plan::{NodeSpec, Partitioning};
use crate::state_codec::decode;
use crate::time::Time;

use crate::dstream::shuffle::FastMap;

/// The general update function: batch time, key, the key's new values (possibly none), and
/// its previous state; `None` deletes the key.
type UpdateFn<K, V, S> = Arc<dyn Fn(Time, &K, Vec<V>, Option<S>) -> Option<S> + Send + Sync>;

/// Per shuffle partition this worker owns, the states of its keys. A slot is `None` only while
/// its key's update function runs.
type StateMaps<K, S> = HashMap<u32, FastMap<K, Option<S>>>;

/// The initial states whose partitions this worker owns.
fn owned_initial<K: Key, S: Data>(initial: &[(K, S)], shuffle: &Shuffle, owned: &Owned) -> StateMaps<K, S> {
    let mut maps: StateMaps<K, S> = HashMap::new();
    for (p, k, s) in shuffle.owned_entries(owned, initial) {
        maps.entry(p).or_default().insert(k.clone(), Some(s.clone()));
    }
    maps
}

impl<K: Key, V: Data> DStream<(K, V)> {
    /// A stream of every key's state, updated every batch by `f(new_values, previous_state)`
    /// (Spark's `updateStateByKey`).
    ///
    /// `f` runs once per batch for every key that has new values or a state, empty batches
    /// included: a key with a state and no new values gets an empty `Vec`, a new key gets
    /// `None`. Returning `None` deletes the key. Each batch of the result holds the full state.
    /// If `f` panics for a key, that key's state is dropped and the batch fails; the other
    /// keys are updated.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    /// use ember::testing::run_batches;
    ///
    /// let input = vec![vec![('a', 1)], vec![('a', 1), ('b', 1)], vec![]];
    /// let out = run_batches(input, |s| {
    ///     s.update_state_by_key(|values: Vec<i32>, state: Option<i32>| Some(values.iter().sum::<i32>() + state.unwrap_or(0)))
    ///         .transform(|b| b.sort_by_key())
    /// })
    /// .unwrap();
    /// assert_eq!(out, vec![vec![('a', 1)], vec![('a', 2), ('b', 1)], vec![('a', 2), ('b', 1)]]);
    /// ```
    pub fn update_state_by_key<S: Data, F>(&self, f: F) -> DStream<(K, S)>
    where
        F: Fn(Vec<V>, Option<S>) -> Option<S> + Send + Sync + 'static,
    {
        self.update_state_impl(Arc::new(move |_, _, values, state| f(values, state)), None, None)
    }

    /// [`DStream::update_state_by_key`] with the state in `num_partitions` partitions.
    pub fn update_state_by_key_with_partitions<S: Data, F>(&self, f: F, num_partitions: usize) -> DStream<(K, S)>
    where
        F: Fn(Vec<V>, Option<S>) -> Option<S> + Send + Sync + 'static,
    {
        self.update_state_impl(Arc::new(move |_, _, values, state| f(values, state)), Some(num_partitions), None)
    }

    /// [`DStream::update_state_by_key`] starting from `initial` states, which join in at the
    /// first batch that has data (initial keys without values get an empty `Vec`).
    pub fn update_state_by_key_with_initial<S: Data, F>(&self, f: F, initial: Vec<(K, S)>) -> DStream<(K, S)>
    where
        F: Fn(Vec<V>, Option<S>) -> Option<S> + Send + Sync + 'static,
    {
        self.update_state_impl(Arc::new(move |_, _, values, state| f(values, state)), None, Some(initial))
    }

    /// The general form of [`DStream::update_state_by_key`]: `f(batch_time, key, new_values,
    /// previous_state)`, an optional partition count and optional initial states.
    pub fn update_state_by_key_with_time<S: Data, F>(
        &self,
        f: F,
        num_partitions: Option<usize>,
        initial: Option<Vec<(K, S)>>,
    ) -> DStream<(K, S)>
    where
        F: Fn(Time, &K, Vec<V>, Option<S>) -> Option<S> + Send + Sync + 'static,
    {
        self.update_state_impl(Arc::new(f), num_partitions, initial)
    }

    fn update_state_impl<S: Data>(&self, f: UpdateFn<K, V, S>, partitions: Option<usize>, initial: Option<Vec<(K, S)>>) -> DStream<(K, S)> {
        self.one_op("update_state_by_key", || {
            let grouped = self.group_by_key_impl(partitions).node_ref();
            let initial = Arc::new(initial);
            let meta = NodeMeta::stateful();
            let spec = NodeSpec::new("update_state_by_key", self.slide, vec![grouped.index()])
                .partitioning(Partitioning::ByKey(partitions))
                .meta(Arc::clone(&meta));
            let slide = self.slide;
            DStream::node(&self.plan, spec, move |c, label| {
                let input = grouped.stream(c);
                let shuffle = Shuffle::new(c, partitions);
                let owned = shuffle.owned(c);
                let logic = UpdateState {
                    operator: label.to_owned(),
                    initial: initial.as_ref().as_ref().map(|i| owned_initial(i, &shuffle, &owned)),
                    owned,
                    shuffle,
                    state: None,
                    f: Arc::clone(&f),
                };
                let every = meta.checkpoint_every(slide);
                let grid = c.grid();
                stateful(c, input, &grid, label, every.as_millis(), logic)
            })
        })
    }
}

/// The state of `update_state_by_key` on one worker.
struct UpdateState<K, V, S> {
    operator: String,
    shuffle: Shuffle,
    owned: Owned,
    /// Initial states not yet joined in (they join at the first batch that has an RDD).
    initial: Option<StateMaps<K, S>>,
    /// `None` until the stream first produces a state (Spark's "no previous state RDD").
    state: Option<StateMaps<K, S>>,
    f: UpdateFn<K, V, S>,
}

impl<K: Key, V: Data, S: Data> StatefulLogic for UpdateState<K, V, S> {
    type Input = (K, Vec<V>);
    type Output = (K, S);

    fn on_batch(&mut self, info: BatchInfo, parts: Vec<Part<(K, Vec<V>)>>, out: &mut Vec<Msg<(K, S)>>) {
        let maps = match &mut self.state {
            Some(maps) => maps,
            // No input RDD and no earlier state: no state RDD either.
            None if info.no_rdd[0] => return out.push(Msg::NoRdd),
            None => self.state.insert(self.initial.take().unwrap_or_default()),
        };
        let mut fresh: HashMap<u32, FastMap<K, Vec<V>>> = HashMap::new();
        for part in parts {
            let map = fresh.entry(part.id.head()).or_default();
            for (k, vs) in part.data {
                map.entry(k).or_default().extend(vs);
            }
        }
        let time = Time::from_millis(info.time);
        let (f, operator) = (&self.f, &self.operator);
        let mut failure = None;
        let mut call = |k: &K, values: Vec<V>, prev: Option<S>| match catch_user(operator, info.time, || f(time, k, values, prev)) {
            Ok(next) => next,
            Err(e) => {
                failure.get_or_insert(e);
                None
            }
        };
        for &p in &self.owned.partitions {
            let states = maps.entry(p).or_default();
            let mut fresh = fresh.remove(&p).unwrap_or_default();
            states.retain(|k, slot| {
                let values = fresh.remove(k).unwrap_or_default();
                *slot = call(k, values, slot.take());
                slot.is_some()
            });
            for (k, values) in fresh {
                if let Some(s) = call(&k, values, None) {
                    states.insert(k, Some(s));
                }
            }
            let data = states
                .iter()
                .filter_map(|(k, s)| s.as_ref().map(|s| (k.clone(), s.clone())))
                .collect();
            out.push(Msg::Part(Part { id: PartId::new(p), data }));
        }
        if let Some(failure) = failure {
            out.push(Msg::Failed(failure));
        }
    }

    fn owns(&self, group: u32) -> bool {
        self.owned.groups.contains(&group)
    }

    fn snapshot(&self) -> Result<BTreeMap<u32, Vec<u8>>, String> {
        let Some(maps) = &self.state else { return Ok(BTreeMap::new()) };
        let entries = maps
            .values()
            .flat_map(|states| states.iter().filter_map(|(k, s)| s.as_ref().map(|s| (k, s))));
        snapshot_by_group(&self.shuffle, entries)
    }

    fn restore(&mut self, group: u32, bytes: &[u8]) -> Result<(), String> {
        let entries: Vec<(K, S)> = decode(bytes)?;
        let p = self.shuffle.space.partition_of_group(group);
        let states = self.state.get_or_insert_with(HashMap::new).entry(p).or_default();
        states.extend(entries.into_iter().map(|(k, s)| (k, Some(s))));
        Ok(())
    }

    fn keys(&self) -> Option<u64> {
        let maps = self.state.as_ref()?;
        Some(maps.values().map(|m| m.values().filter(|s| s.is_some()).count() as u64).sum())
    }

    fn restored(&mut self) {
        // Restored state replaces the initial state, also on a worker that got none.
        self.state.get_or_insert_with(HashMap::new);
        self.initial = None;
    }
}
