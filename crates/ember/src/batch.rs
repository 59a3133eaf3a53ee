//! `Batch<T>`: one batch of a stream, what `foreach_rdd` and `transform` see (Spark's RDD).

use std::collections::HashMap;
use std::hash::Hash;

use crate::time::Time;

/// The data of one batch of a DStream, in partitions (Spark's RDD for one batch time).
///
/// Partitions keep Spark's order: element-wise operators preserve partition and element order,
/// `union` lists the left stream's partitions first.
///
/// # Examples
///
/// ```
/// use ember::prelude::*;
///
/// let batch = Batch::from_partitions(Time::from_millis(1000), vec![vec![3, 1], vec![2]]);
/// assert_eq!(batch.count(), 3);
/// assert_eq!(batch.take_ordered(2), vec![1, 2]);
/// assert_eq!(batch.map(|x| x * 10).collect(), vec![30, 10, 20]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Batch<T> {
    time: Time,
    partitions: Vec<Vec<T>>,
}

impl<T> Batch<T> {
    /// A batch made of the given partitions.
    pub fn from_partitions(time: Time, partitions: Vec<Vec<T>>) -> Self {
        Batch { time, partitions }
    }

    /// A batch with a single partition.
    pub fn from_vec(time: Time, data: Vec<T>) -> Self {
        Batch {
            time,
            partitions: vec![data],
        }
    }

    /// An empty batch (no partitions).
    pub fn empty(time: Time) -> Self {
        Batch {
            time,
            partitions: Vec::new(),
        }
    }

    /// The batch time.
    pub fn time(&self) -> Time {
        self.time
    }

    /// Whether the batch holds no element.
    pub fn is_empty(&self) -> bool {
        self.partitions.iter().all(Vec::is_empty)
    }

    /// Number of elements.
    pub fn count(&self) -> u64 {
        self.partitions.iter().map(|p| p.len() as u64).sum()
    }

    /// Number of partitions.
    pub fn num_partitions(&self) -> usize {
        self.partitions.len()
    }

    /// The partitions, in order.
    pub fn partitions(&self) -> &[Vec<T>] {
        &self.partitions
    }

    /// Takes the partitions out of the batch.
    pub fn into_partitions(self) -> Vec<Vec<T>> {
        self.partitions
    }

    /// Every element, partition by partition.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.partitions.iter().flatten()
    }

    /// Every element, moved out of the batch.
    pub fn into_vec(self) -> Vec<T> {
        self.partitions.into_iter().flatten().collect()
    }

    /// Calls `f` on every element.
    pub fn foreach(&self, f: impl FnMut(&T)) {
        self.iter().for_each(f)
    }

    /// Calls `f` once per partition (Spark's `foreachPartition`).
    pub fn foreach_partition(&self, mut f: impl FnMut(&[T])) {
        for p in &self.partitions {
            f(p)
        }
    }

    /// A new batch with `f` applied to every element; partitions are kept.
    pub fn map<U>(self, f: impl Fn(T) -> U) -> Batch<U> {
        let partitions = self.partitions.into_iter().map(|p| p.into_iter().map(&f).collect()).collect();
        Batch {
            time: self.time,
            partitions,
        }
    }

    /// A new batch with the elements for which `f` holds.
    pub fn filter(self, f: impl Fn(&T) -> bool) -> Batch<T> {
        let partitions = self.partitions.into_iter().map(|p| p.into_iter().filter(&f).collect()).collect();
        Batch {
            time: self.time,
            partitions,
        }
    }

    /// A new batch with every element replaced by the items `f` returns.
    pub fn flat_map<U, I: IntoIterator<Item = U>>(self, f: impl Fn(T) -> I) -> Batch<U> {
        let partitions = self.partitions.into_iter().map(|p| p.into_iter().flat_map(&f).collect()).collect();
        Batch {
            time: self.time,
            partitions,
        }
    }

    /// This batch's partitions followed by `other`'s.
    pub fn union(mut self, other: Batch<T>) -> Batch<T> {
        self.partitions.extend(other.partitions);
        self
    }

    /// Folds all elements with `f`, or `None` for an empty batch.
    pub fn reduce(self, f: impl Fn(T, T) -> T) -> Option<T> {
        self.partitions.into_iter().flatten().reduce(f)
    }
}

impl<T: Clone> Batch<T> {
    /// Every element, cloned, in partition order (Spark's `collect`).
    pub fn collect(&self) -> Vec<T> {
        self.iter().cloned().collect()
    }

    /// The first `n` elements in partition order.
    pub fn take(&self, n: usize) -> Vec<T> {
        self.iter().take(n).cloned().collect()
    }

    /// The first element, if any.
    pub fn first(&self) -> Option<T> {
        self.iter().next().cloned()
    }

    /// The `n` smallest elements by `key`, ascending.
    pub fn take_ordered_by<K: Ord>(&self, n: usize, key: impl Fn(&T) -> K) -> Vec<T> {
        let mut all: Vec<&T> = self.iter().collect();
        all.sort_by_key(|x| key(x));
        all.into_iter().take(n).cloned().collect()
    }

    /// The `n` largest elements by `key`, descending (Spark's `top` with an ordering).
    pub fn top_by<K: Ord>(&self, n: usize, key: impl Fn(&T) -> K) -> Vec<T> {
        let mut all: Vec<&T> = self.iter().collect();
        all.sort_by_key(|x| std::cmp::Reverse(key(x)));
        all.into_iter().take(n).cloned().collect()
    }

    /// Every pair of an element of this batch with an element of `other`.
    pub fn cartesian<U: Clone>(&self, other: &Batch<U>) -> Batch<(T, U)> {
        let data = self
            .iter()
            .flat_map(|a| other.iter().map(move |b| (a.clone(), b.clone())))
            .collect();
        Batch::from_vec(self.time, data)
    }
}

impl<T: Clone + Ord> Batch<T> {
    /// The `n` smallest elements, ascending.
    pub fn take_ordered(&self, n: usize) -> Vec<T> {
        let mut all = self.collect();
        all.sort();
        all.truncate(n);
        all
    }

    /// The `n` largest elements, descending.
    pub fn top(&self, n: usize) -> Vec<T> {
        let mut all = self.collect();
        all.sort_by(|a, b| b.cmp(a));
        all.truncate(n);
        all
    }
}

impl<T: Clone + std::iter::Sum<T>> Batch<T> {
    /// The sum of all elements.
    pub fn sum(&self) -> T {
        self.iter().cloned().sum()
    }
}

impl<K: Clone, V: Clone> Batch<(K, V)> {
    /// The keys of a pair batch.
    pub fn keys(self) -> Batch<K> {
        self.map(|(k, _)| k)
    }

    /// The values of a pair batch.
    pub fn values(self) -> Batch<V> {
        self.map(|(_, v)| v)
    }

    /// All pairs, sorted by key ascending, in a single partition.
    pub fn sort_by_key(self) -> Batch<(K, V)>
    where
        K: Ord,
    {
        let time = self.time;
        let mut all = self.into_vec();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Batch::from_vec(time, all)
    }

    /// Inner join with another pair batch on the key.
    pub fn join<W: Clone>(self, other: Batch<(K, W)>) -> Batch<(K, (V, W))>
    where
        K: Hash + Eq,
    {
        let time = self.time;
        let mut right: HashMap<K, Vec<W>> = HashMap::new();
        for (k, w) in other.into_vec() {
            right.entry(k).or_default().push(w);
        }
        let mut out = Vec::new();
        for (k, v) in self.into_vec() {
            if let Some(ws) = right.get(&k) {
                out.extend(ws.iter().map(|w| (k.clone(), (v.clone(), w.clone()))));
            }
        }
        Batch::from_vec(time, out)
    }
}
