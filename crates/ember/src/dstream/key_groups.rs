//! `stateful_by_key_group`: engine-owned state for elements that each carry many keys (an
//! Arrow batch of Structured Streaming's partial aggregates), for layers built on ember.
//!
//! Keyed operators of the DStream API route each `(K, V)` by its key. An element that holds
//! rows of many keys cannot be routed so: its producer splits it by key group itself (with
//! [`KeyGroups`], the same stable hash and the same groups as every keyed operator), sends
//! each piece to the worker that owns its groups, and may send small facts every owner must
//! see (a batch's event-time statistics) to all of them. The owners' [`KeyGroupLogic`] keeps the
//! state per key group; the engine drives it batch by batch, writes it at checkpoint batches
//! and restores it at start on any number of workers, as for `update_state_by_key`.

use std::collections::{BTreeMap, BTreeSet};

use ember_engine::keys::KeySpace;
use ember_engine::msg::{FailureCause, JobFailure};
use ember_engine::ops::{BatchInfo, PerPart, catch_user};
use ember_engine::state::{StatefulLogic, stateful};
use ember_engine::{Data, Msg, Part, PartId};
use serde::{Deserialize, Serialize};

use crate::dstream::shuffle::{Shuffle, spread};
use crate::dstream::{DStream, NodeMeta};
use crate::plan::{NodeSpec, Partitioning};
use crate::time::Time;

/// Where one piece of an element goes (see [`DStream::stateful_by_key_group`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Routed<V> {
    /// To the worker that owns shuffle partition `partition` ([`KeyGroups::partition_of_group`]
    /// of the piece's key groups): it holds keys of that partition's groups only.
    To {
        /// The shuffle partition.
        partition: u32,
        /// The piece.
        value: V,
    },
    /// A copy to every worker of the operator (for facts every owner needs, kept small).
    Everyone(V),
}

/// The key groups of a key-group operator: how a producer routes keys, and which groups a
/// worker's logic owns.
#[derive(Clone, Debug)]
pub struct KeyGroups {
    space: KeySpace,
    owned: BTreeSet<u32>,
}

impl KeyGroups {
    /// How many key groups there are (the context's `key_groups`).
    pub fn count(&self) -> u32 {
        self.space.groups
    }

    /// How many shuffle partitions the operator has (one per worker).
    pub fn partitions(&self) -> u32 {
        self.space.partitions
    }

    /// The key group of a key whose stable hash ([`crate::keys::stable_hash`]) is `hash`.
    #[inline]
    pub fn group_of_hash(&self, hash: u64) -> u32 {
        self.space.group_of_hash(hash)
    }

    /// The shuffle partition that holds key group `group`.
    #[inline]
    pub fn partition_of_group(&self, group: u32) -> u32 {
        self.space.partition_of_group(group)
    }

    /// Whether the worker whose logic this is owns key group `group` (always false where the
    /// groups are handed to a producer).
    pub fn owns(&self, group: u32) -> bool {
        self.owned.contains(&group)
    }

    /// The key groups this worker's logic owns, in order.
    pub fn owned(&self) -> impl Iterator<Item = u32> + '_ {
        self.owned.iter().copied()
    }
}

/// The state of a key-group operator on one worker: see [`DStream::stateful_by_key_group`].
pub trait KeyGroupLogic: 'static {
    /// The pieces it receives.
    type Input: Data;
    /// What it produces per batch.
    type Output: Data;

    /// Processes batch `time`: every piece routed to this worker (each [`Routed::Everyone`]
    /// once), in no particular order. An error fails the batch, naming the operator.
    fn on_batch(&mut self, time: Time, input: Vec<Self::Input>) -> Result<Vec<Self::Output>, String>;

    /// The state of each key group this worker owns, serialised; groups may be left out when
    /// they have no state.
    fn snapshot(&self) -> Result<BTreeMap<u32, Vec<u8>>, String>;

    /// Adds a snapshot's state of key group `group` (one this worker owns).
    fn restore(&mut self, group: u32, bytes: &[u8]) -> Result<(), String>;

    /// Called after a restore, once every owned group was restored (even when none was).
    fn restored(&mut self) {}

    /// How many keys this worker's state holds, for metrics.
    fn keys(&self) -> Option<u64> {
        None
    }
}

impl<T: Data> DStream<T> {
    /// A stateful operator whose elements each carry many keys (for layers on ember, such as
    /// Structured Streaming's aggregations over Arrow batches).
    ///
    /// On the worker that holds each element, `route` splits it into pieces by key group
    /// (computing groups with the [`KeyGroups`] it is given) and says where each goes. Every
    /// worker then runs its own `make(groups)` logic over the pieces it owns, batch by batch
    /// (empty batches too): the engine owns that state as it owns `update_state_by_key`'s,
    /// writing [`KeyGroupLogic::snapshot`] at checkpoint batches (every
    /// [`DStream::checkpoint`] interval) and restoring it at start on any number of workers.
    /// Each worker's output of a batch is one partition of the result.
    ///
    /// A panic in `route` or the logic fails the batch, naming `name`.
    pub fn stateful_by_key_group<V, L, R, F>(&self, name: &str, route: R, make: F) -> DStream<L::Output>
    where
        V: Data,
        L: KeyGroupLogic<Input = V>,
        R: Fn(T, &KeyGroups, &mut Vec<Routed<V>>) + Send + Sync + 'static,
        F: Fn(&KeyGroups) -> L + Send + Sync + 'static,
    {
        let meta = NodeMeta::stateful();
        let spec = NodeSpec::new(name, self.slide, vec![self.index])
            .partitioning(Partitioning::ByKey(None))
            .meta(std::sync::Arc::clone(&meta));
        let slide = self.slide;
        let route = std::sync::Arc::new(route);
        self.derive_node(spec, move |c, s, label| {
            let shuffle = Shuffle::new(c, None);
            let owned = shuffle.owned(c);
            let producer = KeyGroups {
                space: shuffle.space,
                owned: BTreeSet::new(),
            };
            let route = std::sync::Arc::clone(&route);
            let partitions = shuffle.partitions();
            let split = s.per_parts(label, move |part: Part<T>, out: &mut Vec<Part<V>>| {
                let mut pieces = Vec::new();
                for element in part.data {
                    route(element, &producer, &mut pieces);
                }
                let mut targets: Vec<Vec<V>> = (0..partitions).map(|_| Vec::new()).collect();
                for piece in pieces {
                    match piece {
                        Routed::To { partition, value } => match targets.get_mut(partition as usize) {
                            Some(target) => target.push(value),
                            None => panic!("a piece routed to shuffle partition {partition} of {partitions}"),
                        },
                        Routed::Everyone(value) => targets.iter_mut().for_each(|t| t.push(value.clone())),
                    }
                }
                out.extend(targets.into_iter().enumerate().map(|(p, data)| Part {
                    id: PartId::new(p as u32),
                    data,
                }));
            });
            let groups = KeyGroups {
                space: shuffle.space,
                owned: owned.groups.clone(),
            };
            let logic = ByKeyGroup {
                operator: label.to_owned(),
                partition: owned.partitions.first().copied().unwrap_or(0),
                logic: make(&groups),
                groups,
            };
            let every = meta.checkpoint_every(slide);
            let grid = c.grid();
            let input = spread(c, split);
            stateful(c, input, &grid, label, every.as_millis(), logic)
        })
    }
}

/// The engine's side of a [`KeyGroupLogic`].
struct ByKeyGroup<L> {
    operator: String,
    /// The shuffle partition this worker owns (one per worker) and outputs as.
    partition: u32,
    groups: KeyGroups,
    logic: L,
}

impl<L: KeyGroupLogic> StatefulLogic for ByKeyGroup<L> {
    type Input = L::Input;
    type Output = L::Output;

    fn on_batch(&mut self, info: BatchInfo, parts: Vec<Part<L::Input>>, out: &mut Vec<Msg<L::Output>>) {
        // A batch that failed upstream is not applied: its input is not whole.
        if info.failed {
            return;
        }
        let input: Vec<L::Input> = parts.into_iter().flat_map(|p| p.data).collect();
        let logic = &mut self.logic;
        let result = catch_user(&self.operator, info.time, || logic.on_batch(Time::from_millis(info.time), input));
        match result {
            Ok(Ok(data)) => out.push(Msg::Part(Part {
                id: PartId::new(self.partition),
                data,
            })),
            Ok(Err(message)) => out.push(Msg::Failed(JobFailure::new(
                self.operator.clone(),
                info.time,
                FailureCause::Error(message),
            ))),
            Err(failure) => out.push(Msg::Failed(failure)),
        }
    }

    fn owns(&self, group: u32) -> bool {
        self.groups.owns(group)
    }

    fn snapshot(&self) -> Result<BTreeMap<u32, Vec<u8>>, String> {
        self.logic.snapshot()
    }

    fn restore(&mut self, group: u32, bytes: &[u8]) -> Result<(), String> {
        self.logic.restore(group, bytes)
    }

    fn restored(&mut self) {
        self.logic.restored();
    }

    fn keys(&self) -> Option<u64> {
        self.logic.keys()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;
    use crate::keys::stable_hash;
    use crate::testing::run_batches_on;

    /// Running totals per word, each worker keeping the words of its groups; every worker
    /// also counts the batch's lines, routed to everyone.
    struct Totals {
        groups: KeyGroups,
        totals: HashMap<String, u64>,
    }

    impl KeyGroupLogic for Totals {
        type Input = (String, u64);
        type Output = (String, u64);

        fn on_batch(&mut self, _time: Time, input: Vec<(String, u64)>) -> Result<Vec<(String, u64)>, String> {
            let mut out = Vec::new();
            for (word, n) in input {
                if word.is_empty() {
                    // The batch's line count: one copy per worker.
                    out.push((format!("lines@{}", self.groups.owned().next().unwrap_or(0)), n));
                    continue;
                }
                assert!(
                    self.groups.owns(self.groups.group_of_hash(stable_hash(&word))),
                    "{word} reached a worker that does not own it"
                );
                let total = self.totals.entry(word.clone()).or_default();
                *total += n;
                out.push((word, *total));
            }
            Ok(out)
        }

        fn snapshot(&self) -> Result<BTreeMap<u32, Vec<u8>>, String> {
            Ok(BTreeMap::new())
        }

        fn restore(&mut self, _group: u32, _bytes: &[u8]) -> Result<(), String> {
            Ok(())
        }
    }

    fn route(line: String, groups: &KeyGroups, out: &mut Vec<Routed<(String, u64)>>) {
        let words: Vec<&str> = line.split(' ').collect();
        out.push(Routed::Everyone((String::new(), 1)));
        for word in words {
            let partition = groups.partition_of_group(groups.group_of_hash(stable_hash(word)));
            out.push(Routed::To {
                partition,
                value: (word.to_owned(), 1),
            });
        }
    }

    #[test]
    fn each_key_lives_on_the_owner_of_its_group_and_facts_reach_every_worker() {
        let input = vec![vec!["a b".to_owned(), "a".to_owned()], vec![], vec!["b c".to_owned()]];
        let out = run_batches_on(3, input, |s| {
            s.stateful_by_key_group("totals", route, |groups: &KeyGroups| Totals {
                groups: groups.clone(),
                totals: HashMap::new(),
            })
        })
        .unwrap();
        let sorted = |batch: &Vec<(String, u64)>| {
            let mut words: Vec<(String, u64)> = batch.iter().filter(|(w, _)| !w.starts_with("lines@")).cloned().collect();
            words.sort();
            words
        };
        let lines = |batch: &Vec<(String, u64)>| batch.iter().filter(|(w, _)| w.starts_with("lines@")).count();
        assert_eq!(sorted(&out[0]), [("a".to_owned(), 1), ("a".to_owned(), 2), ("b".to_owned(), 1)]);
        assert!(sorted(&out[1]).is_empty());
        assert_eq!(sorted(&out[2]), [("b".to_owned(), 2), ("c".to_owned(), 1)]);
        // Two lines, each fact copied to the three workers.
        assert_eq!((lines(&out[0]), lines(&out[1]), lines(&out[2])), (6, 0, 3));
    }
}
