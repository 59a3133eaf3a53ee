//! The shuffle: where keyed data goes, and how partitions travel between workers.
//!
//! A key's place is decided once, by [`ember_engine::keys`]: its stable hash picks one of the
//! context's key groups, the key group picks one of the operator's `num_partitions` shuffle
//! partitions (contiguous ranges of groups), and partition `p` lives on worker `p % workers`.
//! Stateful operators keep their state per key group, so the worker count never decides where
//! state lives.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;

use serde::Serialize;

use ember_engine::keys::{KeySpace, worker_of_partition};
use ember_engine::ops::PerPart;
use ember_engine::{Compiler, Data, EStream, Msg, Part, PartId};

use crate::state_codec::encode;

/// How the maps of keyed operators hash their keys on a worker (not where keys go: that is
/// the stable hash above). foldhash: among the fastest hashers for the short keys of streaming
/// jobs (words, ids), and seeded at random per map, so keys an outsider chooses cannot be
/// crafted to collide in advance (the DoS that a fixed hash invites).
pub(crate) type KeyHasher = foldhash::fast::RandomState;

/// The hash map of keyed operators (see [`KeyHasher`]).
pub(crate) type FastMap<K, V> = HashMap<K, V, KeyHasher>;

/// The key space of one keyed operator on the worker being compiled.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shuffle {
    pub(crate) space: KeySpace,
}

impl Shuffle {
    /// `partitions` shuffle partitions (default: one per worker) over the context's key groups.
    pub(crate) fn new(c: &Compiler<'_>, partitions: Option<usize>) -> Self {
        Shuffle {
            space: KeySpace::new(c.env.key_groups, partitions.unwrap_or(c.env.peers)),
        }
    }

    /// Number of shuffle partitions.
    pub(crate) fn partitions(&self) -> usize {
        self.space.partitions as usize
    }

    /// The shuffle partition of `key`.
    #[inline]
    pub(crate) fn partition_of<K: Hash + ?Sized>(&self, key: &K) -> u32 {
        // With one partition there is nothing to hash for.
        if self.space.partitions == 1 {
            return 0;
        }
        self.space.route(key).0
    }

    /// The key group of `key`.
    #[inline]
    pub(crate) fn group_of<K: Hash + ?Sized>(&self, key: &K) -> u32 {
        self.space.group(key)
    }

    /// The partitions the worker being compiled owns, and their key groups.
    pub(crate) fn owned(&self, c: &Compiler<'_>) -> Owned {
        let partitions: Vec<u32> = owned_partitions(c, self.partitions()).collect();
        let groups = partitions.iter().flat_map(|p| self.space.groups_of_partition(*p)).collect();
        Owned { partitions, groups }
    }

    /// The entries of `initial` (initial states) whose partition `owned` holds, with it.
    pub(crate) fn owned_entries<'a, K: Hash, S>(
        &'a self,
        owned: &'a Owned,
        initial: &'a [(K, S)],
    ) -> impl Iterator<Item = (u32, &'a K, &'a S)> + 'a {
        initial
            .iter()
            .map(|(k, s)| (self.partition_of(k), k, s))
            .filter(|(p, _, _)| owned.partitions.contains(p))
    }

    /// Splits a combined map into one partition per shuffle target.
    pub(crate) fn split<K: Hash, C>(&self, map: impl IntoIterator<Item = (K, C)>) -> Vec<Part<(K, C)>> {
        let mut targets: Vec<Vec<(K, C)>> = (0..self.partitions()).map(|_| Vec::new()).collect();
        for (k, c) in map {
            targets[self.partition_of(&k) as usize].push((k, c));
        }
        target_parts(targets).collect()
    }
}

/// The shuffle partitions one worker owns, and their key groups (a restore hands it those).
#[derive(Clone, Debug, Default)]
pub(crate) struct Owned {
    pub(crate) partitions: Vec<u32>,
    pub(crate) groups: BTreeSet<u32>,
}

/// Keyed state held per shuffle partition, written per key group: each entry goes to its key's
/// group (its stable hash is computed here, at snapshot time only, so that the per-record path
/// hashes a key once, for its partition). A group's bytes are the state codec's encoding of the
/// `Vec` of its entries, written in place: one pass counts each group's entries, a second
/// appends them to their group's buffer after the length, with no intermediate copy.
pub(crate) fn snapshot_by_group<'a, K: Hash + Serialize + 'a, X: Serialize>(
    shuffle: &Shuffle,
    entries: impl Iterator<Item = (&'a K, X)> + Clone,
) -> Result<BTreeMap<u32, Vec<u8>>, String> {
    let mut counts = vec![0u64; shuffle.space.groups as usize];
    let mut group_of: Vec<u32> = Vec::with_capacity(entries.size_hint().0);
    for (k, _) in entries.clone() {
        let group = shuffle.group_of(k);
        counts[group as usize] += 1;
        group_of.push(group);
    }
    // A sequence's encoding starts with its length (the codec's varint for a u64).
    let mut buffers: Vec<Vec<u8>> = counts
        .iter()
        .map(|&n| if n == 0 { Ok(Vec::new()) } else { encode(&n) })
        .collect::<Result<_, _>>()?;
    for ((k, x), group) in entries.zip(group_of) {
        let buffer = &mut buffers[group as usize];
        *buffer = postcard::to_extend(&(k, x), std::mem::take(buffer)).map_err(|e| format!("cannot serialise the state: {e}"))?;
    }
    Ok(buffers
        .into_iter()
        .enumerate()
        .filter(|(_, bytes)| !bytes.is_empty())
        .map(|(group, bytes)| (group as u32, bytes))
        .collect())
}

/// The partitions owned by this worker among `n` shuffle partitions.
pub(crate) fn owned_partitions(c: &Compiler<'_>, n: usize) -> impl Iterator<Item = u32> + 'static {
    let (index, peers) = (c.env.index, c.env.peers);
    (0..n as u32).filter(move |p| worker_of_partition(*p, peers) == index)
}

/// One partition per non-empty shuffle target, its id the target's index.
pub(crate) fn target_parts<T>(targets: Vec<Vec<T>>) -> impl Iterator<Item = Part<T>> {
    targets
        .into_iter()
        .enumerate()
        .filter(|(_, d)| !d.is_empty())
        .map(|(t, data)| Part {
            id: PartId::new(t as u32),
            data,
        })
}

/// Collects the shuffled partitions a worker owns and emits every one of them, empty ones
/// too, so a batch always has exactly `n` partitions.
pub(crate) fn assemble_owned<T>(owned: &[u32], mut acc: HashMap<u32, Vec<T>>, no_rdd: bool, out: &mut Vec<Msg<T>>) {
    if no_rdd && acc.values().all(Vec::is_empty) {
        out.push(Msg::NoRdd);
    }
    for &p in owned {
        out.push(Msg::Part(Part {
            id: PartId::new(p),
            data: acc.remove(&p).unwrap_or_default(),
        }));
    }
}

/// Moves every partition of `stream` to worker 0 (a no-op on one worker).
pub(crate) fn gather<'s, T: Data>(c: &Compiler<'s>, stream: EStream<'s, T>) -> EStream<'s, T> {
    if c.env.peers > 1 { stream.exchange_parts(|_| 0) } else { stream }
}

/// Spreads partitions over the workers by their first id component, the shuffle partition
/// (a no-op on one worker).
pub(crate) fn spread<'s, T: Data>(c: &Compiler<'s>, stream: EStream<'s, T>) -> EStream<'s, T> {
    if c.env.peers > 1 {
        stream.exchange_parts(|p| u64::from(p.id.head()))
    } else {
        stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_codec::decode;

    #[test]
    fn a_group_written_in_place_decodes_as_the_vec_of_its_entries() {
        let shuffle = Shuffle {
            space: KeySpace::new(16, 3),
        };
        let entries: Vec<(String, (i64, u64))> = (0..1000).map(|i| (format!("k{i}"), (i * 7 - 300, i as u64 * 1_000_003))).collect();
        let groups = snapshot_by_group(&shuffle, entries.iter().map(|(k, v)| (k, v))).unwrap();
        let mut back: Vec<(String, (i64, u64))> = Vec::new();
        for (group, bytes) in &groups {
            let decoded: Vec<(String, (i64, u64))> = decode(bytes).unwrap();
            assert!(decoded.iter().all(|(k, _)| shuffle.group_of(k) == *group));
            back.extend(decoded);
        }
        back.sort();
        let mut want = entries.clone();
        want.sort();
        assert_eq!(back, want);
    }
}
