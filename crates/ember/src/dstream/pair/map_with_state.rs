//! `map_with_state`: a function called per record with its key's state (Spark's
//! `mapWithState` with a `StateSpec`).
//!
//! Records are shuffled, in order, to the worker that owns their key's partition; that worker
//! keeps `(state, last update time)` per key and runs the mapping function on each record in
//! turn. With a timeout, idle keys are looked for on "full-scan" batches: those at multiples of
//! the state's checkpoint interval (Spark's rule; 10 batch intervals unless set with
//! [`MapWithStateDStream::checkpoint`]).

use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

use ember_engine::ops::{BatchInfo, PerPart, catch_user};
use ember_engine::state::{StatefulLogic, stateful};
use ember_engine::{Data, Key, Msg, Part, PartId};
use serde::{Deserialize, Serialize};

use crate::dstream::shuffle::{Owned, Shuffle, snapshot_by_group};
use crate::dstream::{DStream, NodeMeta, check_checkpoint_interval, spread};
use crate::error::{Error, Result};
use crate::plan::{NodeSpec, Partitioning};
use crate::state_codec::decode;
use crate::time::{Duration, Time};

/// hashbrown's map for its `replace_entry_with`: a key's state is taken out, updated and put
/// back (or removed) in one probe, with no placeholder value in the slot.
type FastMap<K, V> = hashbrown::HashMap<K, V, crate::dstream::shuffle::KeyHasher>;

/// The mapping function in its general form.
type MappingFn<K, V, S, U> = Arc<dyn Fn(Time, &K, Option<V>, &mut State<S>) -> Option<U> + Send + Sync>;

/// A key's state as the mapping function sees it (Spark's `State`).
///
/// `update` and `remove` panic when misused, as Spark throws; the panic fails the batch with the
/// message below. [`State::try_update`] and [`State::try_remove`] return the error instead.
#[derive(Debug)]
pub struct State<S> {
    value: Option<S>,
    updated: bool,
    removed: bool,
    timing_out: bool,
}

impl<S> State<S> {
    fn new(value: Option<S>) -> Self {
        State {
            value,
            updated: false,
            removed: false,
            timing_out: false,
        }
    }

    /// Whether the key has a state.
    pub fn exists(&self) -> bool {
        self.value.is_some()
    }

    /// The key's state, if it has one (Spark's `getOption`; Spark's `get` throws when absent).
    pub fn get(&self) -> Option<&S> {
        self.value.as_ref()
    }

    /// Whether the key is being offered one last time because it timed out; its state can then
    /// be read but not changed, and the key is removed afterwards.
    pub fn is_timing_out(&self) -> bool {
        self.timing_out
    }

    /// Sets the key's state.
    ///
    /// # Panics
    ///
    /// When the state was removed in this call or is timing out (see [`State::try_update`]).
    pub fn update(&mut self, state: S) {
        if let Err(e) = self.try_update(state) {
            panic!("{e}");
        }
    }

    /// Sets the key's state, or says why it cannot be set.
    ///
    /// # Errors
    ///
    /// [`Error::IllegalState`] after [`State::remove`] or while the state is timing out.
    pub fn try_update(&mut self, state: S) -> Result<()> {
        if self.removed {
            return Err(Error::IllegalState("Cannot update the state after it has been removed".into()));
        }
        if self.timing_out {
            return Err(Error::IllegalState("Cannot update the state that is timing out".into()));
        }
        self.value = Some(state);
        self.updated = true;
        Ok(())
    }

    /// Removes the key's state after this call.
    ///
    /// # Panics
    ///
    /// When the state was already removed or is timing out (see [`State::try_remove`]).
    pub fn remove(&mut self) {
        if let Err(e) = self.try_remove() {
            panic!("{e}");
        }
    }

    /// Removes the key's state, or says why it cannot be removed.
    ///
    /// # Errors
    ///
    /// [`Error::IllegalState`] when already removed or while the state is timing out.
    pub fn try_remove(&mut self) -> Result<()> {
        if self.timing_out {
            return Err(Error::IllegalState("Cannot remove the state that is timing out".into()));
        }
        if self.removed {
            return Err(Error::IllegalState("Cannot remove the state that has already been removed".into()));
        }
        self.value = None;
        self.updated = false;
        self.removed = true;
        Ok(())
    }
}

/// What `map_with_state` does (Spark's `StateSpec`): the mapping function, and optionally
/// initial states, a partition count and an idle timeout.
pub struct StateSpec<K, V, S, U> {
    func: MappingFn<K, V, S, U>,
    initial: Option<Arc<Vec<(K, S)>>>,
    partitions: Option<usize>,
    timeout: Option<Duration>,
}

impl<K, V, S, U> Clone for StateSpec<K, V, S, U> {
    fn clone(&self) -> Self {
        StateSpec {
            func: Arc::clone(&self.func),
            initial: self.initial.clone(),
            partitions: self.partitions,
            timeout: self.timeout,
        }
    }
}

impl<K: Key, V: Data, S: Data, U: Data> StateSpec<K, V, S, U> {
    /// A spec whose function returns one element per record (Spark's
    /// `StateSpec.function((key, value, state) => mapped)`). The value is `None` only when the
    /// key is timing out.
    pub fn function<F>(f: F) -> Self
    where
        F: Fn(&K, Option<V>, &mut State<S>) -> U + Send + Sync + 'static,
    {
        Self::function_with_time(move |_, k, v, s| Some(f(k, v, s)))
    }

    /// A spec whose function also gets the batch time and returns zero or one element per
    /// record (Spark's `StateSpec.function((time, key, value, state) => Option[mapped])`).
    pub fn function_with_time<F>(f: F) -> Self
    where
        F: Fn(Time, &K, Option<V>, &mut State<S>) -> Option<U> + Send + Sync + 'static,
    {
        StateSpec {
            func: Arc::new(f),
            initial: None,
            partitions: None,
            timeout: None,
        }
    }

    /// States the keys start with; they appear in the first batch's snapshot.
    pub fn initial_state(mut self, initial: Vec<(K, S)>) -> Self {
        self.initial = Some(Arc::new(initial));
        self
    }

    /// The number of partitions of the state (default: the number of workers).
    pub fn num_partitions(mut self, n: usize) -> Self {
        self.partitions = Some(n.max(1));
        self
    }

    /// Keys that get no record for longer than `idle` are offered to the function once more,
    /// with no value and [`State::is_timing_out`], then removed. Idle keys are looked for
    /// every checkpoint interval of the state (10 batches by default, as in Spark), so the
    /// call can come up to one interval late; set [`MapWithStateDStream::checkpoint`] to the
    /// batch interval for timeouts detected at the first batch past `idle`.
    pub fn timeout(mut self, idle: Duration) -> Self {
        self.timeout = Some(idle);
        self
    }
}

/// One output of the internal state stream: a mapped element, or one key's state.
#[derive(Clone, Serialize, Deserialize)]
enum Item<K, S, U> {
    Mapped(U),
    Snapshot(K, S),
}

impl<K, S, U> Item<K, S, U> {
    fn into_mapped(self) -> Option<U> {
        match self {
            Item::Mapped(u) => Some(u),
            Item::Snapshot(..) => None,
        }
    }

    fn into_snapshot(self) -> Option<(K, S)> {
        match self {
            Item::Snapshot(k, s) => Some((k, s)),
            Item::Mapped(_) => None,
        }
    }
}

/// One of the state operator's two outputs, taken out of a partition of items.
fn select<K, S, U, X>(part: Part<Item<K, S, U>>, pick: fn(Item<K, S, U>) -> Option<X>) -> Part<X> {
    Part {
        id: part.id,
        data: part.data.into_iter().filter_map(pick).collect(),
    }
}

/// The stream `map_with_state` returns: the mapped elements (it dereferences to that
/// `DStream<U>`), plus [`MapWithStateDStream::state_snapshots`].
pub struct MapWithStateDStream<K, V, S, U> {
    mapped: DStream<U>,
    snapshots: DStream<(K, S)>,
    state_meta: Arc<NodeMeta>,
    state_slide: Duration,
    _values: PhantomData<fn(V)>,
}

impl<K, V, S, U> Clone for MapWithStateDStream<K, V, S, U> {
    fn clone(&self) -> Self {
        MapWithStateDStream {
            mapped: self.mapped.clone(),
            snapshots: self.snapshots.clone(),
            state_meta: Arc::clone(&self.state_meta),
            state_slide: self.state_slide,
            _values: PhantomData,
        }
    }
}

impl<K, V, S, U> Deref for MapWithStateDStream<K, V, S, U> {
    type Target = DStream<U>;

    fn deref(&self) -> &DStream<U> {
        &self.mapped
    }
}

impl<K: Key, V: Data, S: Data, U: Data> MapWithStateDStream<K, V, S, U> {
    /// Every key's state after each batch, touched or not (Spark's `stateSnapshots()`): the
    /// state operator's second output, computed only when some output uses it.
    pub fn state_snapshots(&self) -> DStream<(K, S)> {
        self.snapshots.clone()
    }

    /// Sets the checkpoint interval of the state (Spark forwards `checkpoint` on this stream to
    /// its internal state stream): the state is persisted, and idle keys are looked for, at
    /// multiples of it. Default: 10 times the slide.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when `interval` is not a positive multiple of the slide.
    pub fn checkpoint(&self, interval: Duration) -> Result<Self> {
        check_checkpoint_interval(interval, self.state_slide, &self.mapped.operator_name())?;
        self.state_meta.set_checkpoint(interval);
        Ok(self.clone())
    }

    /// The state's checkpoint interval: the one set, or 10 times the slide.
    pub fn checkpoint_interval(&self) -> Option<Duration> {
        Some(state_checkpoint(&self.state_meta, self.state_slide))
    }

    /// The mapped elements as a plain stream.
    pub fn into_dstream(self) -> DStream<U> {
        self.mapped
    }
}

/// The mapped elements of `map_with_state`, and the index of the state operator they come from.
struct MappedOutput<U> {
    stream: DStream<U>,
    state_index: usize,
}

fn state_checkpoint(meta: &NodeMeta, slide: Duration) -> Duration {
    meta.explicit_checkpoint()
        .unwrap_or(Duration::from_millis(slide.as_millis().saturating_mul(10)))
}

impl<K: Key, V: Data> DStream<(K, V)> {
    /// Runs the spec's function on every record, in order, with the record's key's state
    /// (Spark's `mapWithState`); the result holds what the function returned.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    /// use ember::testing::run_batches;
    ///
    /// let spec = StateSpec::function(|word: &char, one: Option<u32>, state: &mut State<u32>| {
    ///     let sum = one.unwrap_or(0) + state.get().copied().unwrap_or(0);
    ///     state.update(sum);
    ///     (*word, sum)
    /// });
    /// let out = run_batches(vec![vec![('a', 1)], vec![('a', 1), ('b', 1)]], move |s| {
    ///     s.map_with_state(spec.clone()).into_dstream()
    /// })
    /// .unwrap();
    /// assert_eq!(out, vec![vec![('a', 1)], vec![('a', 2), ('b', 1)]]);
    /// ```
    pub fn map_with_state<S: Data, U: Data>(&self, spec: StateSpec<K, V, S, U>) -> MapWithStateDStream<K, V, S, U> {
        let state_meta = NodeMeta::stateful();
        // The snapshot stream's metadata tells, once the plan is frozen, whether any output
        // uses the snapshots.
        let snapshots_meta: Arc<NodeMeta> = Arc::default();
        let (meta, snapshots_used, slide) = (Arc::clone(&state_meta), Arc::clone(&snapshots_meta), self.slide);
        let node_spec = NodeSpec::new("map_with_state", self.slide, vec![self.index])
            .partitioning(Partitioning::ByKey(spec.partitions))
            .meta(Arc::clone(&state_meta));
        // One operation: the state node takes the id, its two outputs are internal to it.
        let op = self.plan.begin_op();
        let (mapped, snapshots) = self.map_with_state_nodes(spec, node_spec, meta, snapshots_meta, snapshots_used, slide);
        op.end(mapped.state_index, None);
        MapWithStateDStream {
            mapped: mapped.stream,
            snapshots,
            state_meta,
            state_slide: self.slide,
            _values: PhantomData,
        }
    }

    /// The state operator (returned as the operation's node) and its two outputs.
    fn map_with_state_nodes<S: Data, U: Data>(
        &self,
        spec: StateSpec<K, V, S, U>,
        node_spec: NodeSpec,
        meta: Arc<NodeMeta>,
        snapshots_meta: Arc<NodeMeta>,
        snapshots_used: Arc<NodeMeta>,
        slide: Duration,
    ) -> (MappedOutput<U>, DStream<(K, S)>) {
        let internal: DStream<Item<K, S, U>> = self.derive_node(node_spec, move |c, input, label| {
            let shuffle = Shuffle::new(c, spec.partitions);
            let owned = shuffle.owned(c);
            // Records go, in order, to their key's partition; the id keeps the input order.
            let split = input.per_parts(label, move |p: Part<(K, V)>, out: &mut Vec<Part<(K, V)>>| {
                let id = p.id;
                out.extend(shuffle.split(p.data).into_iter().map(|target| Part {
                    id: id.clone().prefixed(target.id.head()),
                    data: target.data,
                }));
            });
            let every = state_checkpoint(&meta, slide).as_millis().max(1);
            let logic = MapWithState {
                operator: label.to_owned(),
                shuffle,
                owned,
                states: HashMap::new(),
                initial: spec.initial.clone(),
                func: Arc::clone(&spec.func),
                timeout: spec.timeout.map(Duration::as_millis),
                full_scan_every: every,
                zero: c.env.zero_ms,
                snapshots: snapshots_used.consumed(),
            };
            let input = spread(c, split);
            let grid = c.grid();
            stateful(c, input, &grid, label, every, logic)
        });
        // Two outputs of the state operator: the mapped elements (the stream the user gets)
        // and the snapshots; both internal to this operation.
        let mapped_spec = NodeSpec::new("mapped", slide, vec![internal.index]);
        let mapped = internal.derive_node(mapped_spec, |_c, s, label| s.per_part(label, |p| select(p, Item::into_mapped)));
        let snapshots_spec = NodeSpec::new("state_snapshots", slide, vec![internal.index]).meta(snapshots_meta);
        let snapshots = internal.derive_node(snapshots_spec, |_c, s, label| s.per_part(label, |p| select(p, Item::into_snapshot)));
        (
            MappedOutput {
                stream: mapped,
                state_index: internal.index,
            },
            snapshots,
        )
    }
}

/// The state of `map_with_state` on one worker.
struct MapWithState<K, V, S, U> {
    operator: String,
    shuffle: Shuffle,
    owned: Owned,
    /// Per owned shuffle partition: each key's state and last update time.
    states: HashMap<u32, FastMap<K, (S, u64)>>,
    /// Initial states, joined in at the first batch.
    initial: Option<Arc<Vec<(K, S)>>>,
    func: MappingFn<K, V, S, U>,
    timeout: Option<u64>,
    /// Idle keys are looked for at multiples of this past zero (the state's checkpoint interval).
    full_scan_every: u64,
    zero: u64,
    /// Whether some output uses the state snapshots.
    snapshots: bool,
}

impl<K: Key, V: Data, S: Data, U: Data> StatefulLogic for MapWithState<K, V, S, U> {
    type Input = (K, V);
    type Output = Item<K, S, U>;

    fn on_batch(&mut self, info: BatchInfo, parts: Vec<Part<(K, V)>>, out: &mut Vec<Msg<Item<K, S, U>>>) {
        let now = info.time;
        if let Some(initial) = self.initial.take() {
            for (p, k, s) in self.shuffle.owned_entries(&self.owned, &initial) {
                self.states.entry(p).or_default().insert(k.clone(), (s.clone(), now));
            }
        }
        let (func, operator, timeout) = (&self.func, &self.operator, self.timeout);
        let mut mapped: HashMap<u32, Vec<Item<K, S, U>>> = HashMap::new();
        let mut failure = None;
        let time = Time::from_millis(now);
        for part in parts {
            let p = part.id.head();
            let (map, emitted) = (self.states.entry(p).or_default(), mapped.entry(p).or_default());
            for (k, v) in part.data {
                // One probe per record: the state is taken out of its slot, handed to the
                // function, and put back (or the slot removed) through the same entry.
                let call = |k: &K, state: &mut State<S>| match catch_user(operator, now, || func(time, k, Some(v), state)) {
                    Ok(result) => emitted.extend(result.map(Item::Mapped)),
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                };
                match map.entry(k) {
                    hashbrown::hash_map::Entry::Occupied(slot) => {
                        slot.replace_entry_with(|k, (value, last)| {
                            let mut state = State::new(Some(value));
                            call(k, &mut state);
                            // A record refreshes its key's update time when a timeout is set.
                            let touched = state.updated || timeout.is_some();
                            state.value.map(|s| (s, if touched { now } else { last }))
                        });
                    }
                    hashbrown::hash_map::Entry::Vacant(slot) => {
                        let mut state = State::new(None);
                        call(slot.key(), &mut state);
                        if let Some(s) = state.value {
                            slot.insert((s, now));
                        }
                    }
                }
            }
        }
        if let Some(idle) = timeout
            && (now - self.zero).is_multiple_of(self.full_scan_every)
        {
            let threshold = now.saturating_sub(idle);
            for (p, map) in &mut self.states {
                let expired: Vec<K> = map.iter().filter(|(_, (_, t))| *t < threshold).map(|(k, _)| k.clone()).collect();
                let emitted = mapped.entry(*p).or_default();
                for k in expired {
                    let Some((s, _)) = map.remove(&k) else { continue };
                    let mut state = State::new(Some(s));
                    state.timing_out = true;
                    match catch_user(operator, now, || func(time, &k, None, &mut state)) {
                        Ok(result) => emitted.extend(result.map(Item::Mapped)),
                        Err(e) => {
                            failure.get_or_insert(e);
                        }
                    }
                }
            }
        }
        for p in &self.owned.partitions {
            let mut data = mapped.remove(p).unwrap_or_default();
            if self.snapshots
                && let Some(map) = self.states.get(p)
            {
                data.extend(map.iter().map(|(k, (s, _))| Item::Snapshot(k.clone(), s.clone())));
            }
            out.push(Msg::Part(Part { id: PartId::new(*p), data }));
        }
        if let Some(failure) = failure {
            out.push(Msg::Failed(failure));
        }
    }

    fn owns(&self, group: u32) -> bool {
        self.owned.groups.contains(&group)
    }

    fn snapshot(&self) -> std::result::Result<BTreeMap<u32, Vec<u8>>, String> {
        // The initial states join at the first batch; a snapshot is only taken after one.
        let entries = self.states.values().flat_map(|map| map.iter().map(|(k, (s, t))| (k, (s, *t))));
        snapshot_by_group(&self.shuffle, entries)
    }

    fn restore(&mut self, group: u32, bytes: &[u8]) -> std::result::Result<(), String> {
        let entries: Vec<(K, (S, u64))> = decode(bytes)?;
        let p = self.shuffle.space.partition_of_group(group);
        self.states.entry(p).or_default().extend(entries);
        Ok(())
    }

    fn keys(&self) -> Option<u64> {
        Some(self.states.values().map(|m| m.len() as u64).sum())
    }

    fn restored(&mut self) {
        // Restored state replaces the initial states (they were joined in before), also on a
        // worker that got none.
        self.initial = None;
    }
}
