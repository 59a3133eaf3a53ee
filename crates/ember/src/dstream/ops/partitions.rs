//! `repartition`: exactly `n` partitions with the same elements.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

use ember_engine::ops::{PerBatch, PerPart};
use ember_engine::{Data, Msg, Part, PartId};

use crate::dstream::{DStream, owned_partitions, spread};
use crate::error::{Error, Result};

/// Hashes keys identically in every worker and process (fixed seeds), so that a key always
/// lands in the same shuffle partition.
pub(crate) fn partition_of<K: Hash + ?Sized>(key: &K, partitions: usize) -> u32 {
    static STATE: std::sync::OnceLock<ahash::RandomState> = std::sync::OnceLock::new();
    let state = STATE.get_or_init(|| ahash::RandomState::with_seeds(0x5eed, 0xe3be, 0x57ea, 0x3d57));
    (BuildHasher::hash_one(state, key) % partitions.max(1) as u64) as u32
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
        Ok(self.derive("repartition", move |c, s, label| {
            let split = s.per_parts(label, move |p: Part<T>, out: &mut Vec<Part<T>>| {
                // Each input partition starts its round-robin at its own offset, as Spark does.
                let start = partition_of(&p.id, n) as usize;
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
        }))
    }
}
