//! Where a key lives: a specified, stable hash of the key picks one of a fixed number of key
//! groups, and key groups map onto shuffle partitions and workers.
//!
//! State is kept per key group (as Flink's max parallelism), so where a key's state lives never
//! depends on the worker count, on a hasher's random seed, on the process, the run or ember's
//! version: a checkpoint written by 2 workers can be restored on 3.
//!
//! # The hash
//!
//! [`StableHasher`] is fed by the key's [`Hash`] implementation. Its algorithm is part of
//! ember's checkpoint format and must never change:
//!
//! - integers are written as little-endian bytes of their width (`usize`/`isize` as 8 bytes),
//!   so the result is the same on every machine;
//! - bytes are consumed in 8-byte little-endian words `w`, each mixed into the state as
//!   `state = (state.rotate_left(5) ^ w) * 0x517c_c1b7_2722_0a95` (wrapping); a final partial
//!   word is zero-padded and mixed in as a word, followed by its byte count;
//! - `finish` applies MurmurHash3's 64-bit finalizer to `state ^ total_bytes`.
//!
//! The state starts at `0x9e37_79b9_7f4a_7c15`. Standard library types hash through their
//! `Hash` impls (a `str` writes its bytes then `0xff`), which Rust has kept unchanged; a user
//! type whose `Hash` impl changes moves its keys to other groups, as it would in Flink.

use std::hash::{Hash, Hasher};

/// The default number of key groups (Flink's default max parallelism is 128; more groups let
/// state spread over more workers after a restore).
pub const DEFAULT_KEY_GROUPS: u32 = 256;

const SEED: u64 = 0x9e37_79b9_7f4a_7c15;
const MUL: u64 = 0x517c_c1b7_2722_0a95;

/// The stable hasher behind key groups (see the module docs for its specification).
#[derive(Clone, Debug)]
pub struct StableHasher {
    state: u64,
    bytes: u64,
}

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher { state: SEED, bytes: 0 }
    }
}

impl StableHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.state = (self.state.rotate_left(5) ^ word).wrapping_mul(MUL);
    }
}

/// MurmurHash3's 64-bit finalizer: spreads every input bit over the output.
#[inline]
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

impl Hasher for StableHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.bytes = self.bytes.wrapping_add(bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(word));
            self.mix(rest.len() as u64);
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write(&[i]);
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.write(&i.to_le_bytes());
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write(&i.to_le_bytes());
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.write(&i.to_le_bytes());
    }

    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.write(&i.to_le_bytes());
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    #[inline]
    fn write_i8(&mut self, i: i8) {
        self.write_u8(i as u8);
    }

    #[inline]
    fn write_i16(&mut self, i: i16) {
        self.write_u16(i as u16);
    }

    #[inline]
    fn write_i32(&mut self, i: i32) {
        self.write_u32(i as u32);
    }

    #[inline]
    fn write_i64(&mut self, i: i64) {
        self.write_u64(i as u64);
    }

    #[inline]
    fn write_i128(&mut self, i: i128) {
        self.write_u128(i as u128);
    }

    #[inline]
    fn write_isize(&mut self, i: isize) {
        self.write_u64(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        fmix64(self.state ^ self.bytes)
    }
}

/// The stable hash of `key` (see the module docs).
#[inline]
pub fn stable_hash<K: Hash + ?Sized>(key: &K) -> u64 {
    let mut hasher = StableHasher::default();
    key.hash(&mut hasher);
    hasher.finish()
}

/// How keys are spread: `groups` key groups, mapped onto `partitions` shuffle partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySpace {
    /// Number of key groups (fixed for the life of a checkpoint).
    pub groups: u32,
    /// Number of shuffle partitions of the operator (Spark's `numPartitions`).
    pub partitions: u32,
}

impl KeySpace {
    /// `partitions` partitions over `groups` key groups (both at least 1).
    pub fn new(groups: u32, partitions: usize) -> Self {
        KeySpace {
            groups: groups.max(1),
            partitions: (partitions.max(1)).min(u32::MAX as usize) as u32,
        }
    }

    /// The key group of a key whose stable hash is `hash`: `hash * groups >> 64`, which uses
    /// the hash's high bits (Lemire's multiply-shift range reduction).
    #[inline]
    pub fn group_of_hash(&self, hash: u64) -> u32 {
        ((u128::from(hash) * u128::from(self.groups)) >> 64) as u32
    }

    /// The key group of `key`.
    #[inline]
    pub fn group<K: Hash + ?Sized>(&self, key: &K) -> u32 {
        self.group_of_hash(stable_hash(key))
    }

    /// The partition that holds key group `group`: contiguous ranges of groups per partition
    /// (`group * partitions / groups`, Flink's rule). With more partitions than groups some
    /// partitions stay empty.
    #[inline]
    pub fn partition_of_group(&self, group: u32) -> u32 {
        (u64::from(group) * u64::from(self.partitions) / u64::from(self.groups)) as u32
    }

    /// The partition of `key`, and its key group.
    #[inline]
    pub fn route<K: Hash + ?Sized>(&self, key: &K) -> (u32, u32) {
        let group = self.group(key);
        (self.partition_of_group(group), group)
    }

    /// The key groups held by partition `partition`.
    pub fn groups_of_partition(&self, partition: u32) -> impl Iterator<Item = u32> + use<> {
        let space = *self;
        (0..space.groups).filter(move |g| space.partition_of_group(*g) == partition)
    }
}

/// The worker that owns shuffle partition `partition` among `peers` workers.
#[inline]
pub fn worker_of_partition(partition: u32, peers: usize) -> usize {
    partition as usize % peers.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// These values are part of the checkpoint format: if this test fails, keys moved to other
    /// key groups and old checkpoints can no longer be restored.
    #[test]
    fn the_hash_and_key_groups_are_fixed() {
        let space = KeySpace::new(DEFAULT_KEY_GROUPS, 4);
        let hashes: Vec<u64> = vec![
            stable_hash("hello"),
            stable_hash(&"spark".to_owned()),
            stable_hash(&42u64),
            stable_hash(&-1i32),
            stable_hash(&("a", 7u8)),
            stable_hash(""),
        ];
        let groups: Vec<u32> = hashes.iter().map(|h| space.group_of_hash(*h)).collect();
        assert_eq!(
            hashes,
            vec![
                0x49d5_1460_4d41_49db,
                0x0032_e795_90af_36c5,
                0x2f0b_5a45_4c45_c84b,
                0x84f0_411b_b5e6_d739,
                0x5331_40f9_52f5_b47c,
                0x73b9_3f7c_2654_8d1b,
            ]
        );
        assert_eq!(groups, vec![73, 0, 47, 132, 83, 115]);
    }

    #[test]
    fn integers_hash_as_little_endian_of_their_width() {
        let mut a = StableHasher::default();
        a.write(&7u32.to_le_bytes());
        assert_eq!(a.finish(), stable_hash(&7u32));
        assert_eq!(stable_hash(&7usize), stable_hash(&7u64));
    }

    #[test]
    fn groups_spread_evenly_and_map_to_contiguous_partitions() {
        let space = KeySpace::new(256, 3);
        let mut per_group = vec![0u32; 256];
        for i in 0..256_000u32 {
            per_group[space.group(&format!("word{i}")) as usize] += 1;
        }
        assert!(per_group.iter().all(|n| (800..1200).contains(n)), "{per_group:?}");
        let parts: Vec<u32> = (0..256).map(|g| space.partition_of_group(g)).collect();
        assert!(parts.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(parts[0], 0);
        assert_eq!(parts[255], 2);
        let held: usize = (0..3).map(|p| space.groups_of_partition(p).count()).sum();
        assert_eq!(held, 256);
    }
}
