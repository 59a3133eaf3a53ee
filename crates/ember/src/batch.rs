//! `Batch<T>`: one batch of a stream, what `foreach_rdd` and `transform` see (Spark's RDD).

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use ember_engine::keys::stable_hash;

use crate::error::{Error, Result};
use crate::time::Time;

/// The data of one batch of a DStream, in partitions (Spark's RDD for one batch time).
///
/// Partitions keep Spark's order: element-wise operators preserve partition and element order,
/// `union` lists the left stream's partitions first.
///
/// Operations that shuffle by key in Spark (`distinct`, `subtract`, `intersection`,
/// `reduce_by_key`, `group_by_key`, `cogroup` and the outer joins) place every key in one
/// partition by a stable hash of the key (Spark's `HashPartitioner`), into as many partitions as
/// Spark's default partitioner picks when `spark.default.parallelism` is unset: the input's
/// number, or the larger of the two inputs' numbers. Spark leaves the order inside a partition
/// unspecified; ember lists keys by first appearance (partition order, then element order, left
/// input first), and a key's values in that same order, so results are reproducible. The older
/// [`Batch::join`] and [`Batch::sort_by_key`] keep their own rule: one partition, in this batch's
/// order (`join`) or in key order (`sort_by_key`).
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

    /// Whether the batch holds no element (Spark's `isEmpty`): true for a batch without
    /// partitions and for one whose partitions are all empty.
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

    /// Folds every partition from a clone of `zero` with `seq_op`, then merges the partition
    /// results from `zero` with `comb_op` in partition order (Spark's `aggregate`).
    ///
    /// As in Spark, `zero` is used once per partition and once more for the merge, so a
    /// non-neutral `zero` counts `num_partitions() + 1` times; a batch without partitions gives
    /// `zero`. `seq_op` sees each element by reference, so the batch can be used again. Spark
    /// merges partition results in the order its tasks finish; ember merges in partition order.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    ///
    /// let batch = Batch::from_partitions(Time::from_millis(1000), vec![vec![1, 2], vec![3]]);
    /// // (sum, count)
    /// assert_eq!(batch.aggregate((0, 0), |(s, n), x| (s + x, n + 1), |a, b| (a.0 + b.0, a.1 + b.1)), (6, 3));
    /// // A zero of 10 counts once per partition and once for the merge: 6 + 3 * 10.
    /// assert_eq!(batch.aggregate(10, |acc, x| acc + x, |a, b| a + b), 36);
    /// ```
    pub fn aggregate<U: Clone>(&self, zero: U, seq_op: impl Fn(U, &T) -> U, comb_op: impl Fn(U, U) -> U) -> U {
        let per_partition: Vec<U> = self.partitions.iter().map(|p| p.iter().fold(zero.clone(), &seq_op)).collect();
        per_partition.into_iter().fold(zero, comb_op)
    }

    /// One element per partition: the partition's elements as a `Vec` (Spark's `glom`).
    ///
    /// Partitions are kept, each now holding exactly one element; an empty partition gives an
    /// empty `Vec`, and a batch without partitions stays without elements.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    ///
    /// let batch = Batch::from_partitions(Time::from_millis(1000), vec![vec![1, 2], vec![], vec![3]]);
    /// assert_eq!(batch.glom().collect(), vec![vec![1, 2], vec![], vec![3]]);
    /// ```
    pub fn glom(self) -> Batch<Vec<T>> {
        Batch {
            time: self.time,
            partitions: self.partitions.into_iter().map(|p| vec![p]).collect(),
        }
    }

    /// A new batch with each partition replaced by what `f` returns for it (Spark's
    /// `mapPartitions`).
    ///
    /// `f` is called once per partition, empty partitions included (as Spark calls it with an
    /// empty iterator), and its output becomes that partition, so the number of partitions is
    /// kept. Per-partition setup (a connection, a buffer) belongs here rather than in `map`.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    ///
    /// let batch = Batch::from_partitions(Time::from_millis(1000), vec![vec![1, 2], vec![3]]);
    /// let sums = batch.map_partitions(|p| vec![p.iter().sum::<i32>()]);
    /// assert_eq!(sums.partitions(), &[vec![3], vec![3]]);
    /// ```
    pub fn map_partitions<U, I: IntoIterator<Item = U>>(self, f: impl Fn(Vec<T>) -> I) -> Batch<U> {
        Batch {
            time: self.time,
            partitions: self.partitions.into_iter().map(|p| f(p).into_iter().collect()).collect(),
        }
    }

    /// Every element paired with its index (Spark's `zipWithIndex`).
    ///
    /// As in Spark, indices follow partition order, then element order within a partition:
    /// the first element of the first non-empty partition gets 0 and the last element of the
    /// last partition gets `count() - 1`. Partitions are kept.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    ///
    /// let batch = Batch::from_partitions(Time::from_millis(1000), vec![vec!['a', 'b'], vec!['c']]);
    /// assert_eq!(batch.zip_with_index().partitions(), &[vec![('a', 0), ('b', 1)], vec![('c', 2)]]);
    /// ```
    pub fn zip_with_index(self) -> Batch<(T, u64)> {
        let mut next = 0u64;
        let mut partitions = Vec::with_capacity(self.partitions.len());
        for p in self.partitions {
            let mut indexed = Vec::with_capacity(p.len());
            for x in p {
                indexed.push((x, next));
                next += 1;
            }
            partitions.push(indexed);
        }
        Batch {
            time: self.time,
            partitions,
        }
    }

    /// All elements sorted by `key`, ascending or descending (Spark's `sortBy`).
    ///
    /// A total sort: reading the partitions in order gives the sorted sequence. The sort is
    /// stable (elements with equal keys keep their partition and element order, also when
    /// descending), which Spark does not promise. As in Spark, the result has as many partitions
    /// as the input: contiguous ranges of the sorted sequence of nearly equal size, each cut moved
    /// past equal keys so that a key never spans two partitions (Spark's `RangePartitioner`
    /// samples to find its cuts; ember cuts exactly). Some partitions can then be empty; a batch
    /// without partitions stays so.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    ///
    /// let batch = Batch::from_partitions(Time::from_millis(1000), vec![vec!["ccc", "a"], vec!["bb", "dddd"]]);
    /// let sorted = batch.sort_by(|s| s.len(), false);
    /// assert_eq!(sorted.partitions(), &[vec!["dddd", "ccc"], vec!["bb", "a"]]);
    /// ```
    pub fn sort_by<K: Ord>(self, key: impl Fn(&T) -> K, ascending: bool) -> Batch<T> {
        let n = self.partitions.len();
        let keyed: Vec<(K, T)> = self.partitions.into_iter().flatten().map(|x| (key(&x), x)).collect();
        let partitions = sort_into_ranges(keyed, n, ascending, |(k, _)| k)
            .into_iter()
            .map(|p| p.into_iter().map(|(_, x)| x).collect())
            .collect();
        Batch {
            time: self.time,
            partitions,
        }
    }

    /// The same elements in exactly `num_partitions` partitions (Spark's `repartition`, a
    /// shuffle that can raise or lower the number of partitions).
    ///
    /// Elements are dealt round-robin: element `j` of input partition `i` (both from 0) goes to
    /// output partition `(i + j) % num_partitions`, keeping its order relative to the others
    /// that land there. Spark also deals each input partition round-robin but from a
    /// pseudo-random start seeded by the partition index; ember starts at `i` so the placement
    /// is reproducible and input partitions do not all start on the same output partition. A
    /// batch without elements gives `num_partitions` empty partitions.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when `num_partitions` is 0 (Spark throws).
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    ///
    /// let batch = Batch::from_partitions(Time::from_millis(1000), vec![vec![1, 2, 3], vec![4]]);
    /// assert_eq!(batch.repartition(2)?.partitions(), &[vec![1, 3], vec![2, 4]]);
    /// # Ok::<(), ember::Error>(())
    /// ```
    pub fn repartition(self, num_partitions: usize) -> Result<Batch<T>> {
        let n = positive_partitions("repartition", num_partitions)?;
        let mut partitions: Vec<Vec<T>> = (0..n).map(|_| Vec::new()).collect();
        for (i, p) in self.partitions.into_iter().enumerate() {
            for (j, x) in p.into_iter().enumerate() {
                partitions[(i + j) % n].push(x);
            }
        }
        Ok(Batch {
            time: self.time,
            partitions,
        })
    }

    /// The same elements in at most `num_partitions` partitions, without a shuffle (Spark's
    /// `coalesce` with `shuffle = false`).
    ///
    /// Never raises the number of partitions: asking for as many or more than there are returns
    /// the batch unchanged, as in Spark. Otherwise input partitions are merged whole, in order,
    /// into contiguous groups: output partition `k` of `n` concatenates input partitions
    /// `k * m / n` up to (excluding) `(k + 1) * m / n`, where `m` is the input's number, which is
    /// the rule Spark's `DefaultPartitionCoalescer` uses when partitions have no preferred
    /// locations. Element order is kept, so `collect` gives the same sequence as before.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when `num_partitions` is 0 (Spark throws).
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    ///
    /// let batch = Batch::from_partitions(Time::from_millis(1000), vec![vec![1], vec![2], vec![3, 4]]);
    /// assert_eq!(batch.coalesce(2)?.partitions(), &[vec![1], vec![2, 3, 4]]);
    /// # Ok::<(), ember::Error>(())
    /// ```
    pub fn coalesce(self, num_partitions: usize) -> Result<Batch<T>> {
        let n = positive_partitions("coalesce", num_partitions)?;
        let m = self.partitions.len();
        if n >= m {
            return Ok(self);
        }
        let mut parents = self.partitions.into_iter();
        let partitions = (0..n)
            .map(|k| {
                let (start, end) = (k * m / n, (k + 1) * m / n);
                parents.by_ref().take(end - start).flatten().collect()
            })
            .collect();
        Ok(Batch {
            time: self.time,
            partitions,
        })
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

    /// Folds every partition from a clone of `zero` with `f`, then folds the partition results
    /// from `zero` with `f` in partition order (Spark's `fold`).
    ///
    /// As in Spark, `zero` is used once per partition and once more for the merge, so it should
    /// be neutral for `f` (0 for `+`); a non-neutral `zero` counts `num_partitions() + 1` times,
    /// and a batch without partitions gives `zero`. Spark merges partition results in the order
    /// its tasks finish; ember merges in partition order, which only matters when `f` is not
    /// commutative.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    ///
    /// let batch = Batch::from_partitions(Time::from_millis(1000), vec![vec![1, 2], vec![3]]);
    /// assert_eq!(batch.fold(0, |a, b| a + b), 6);
    /// // Two partitions plus the merge: 6 + 3 * 1.
    /// assert_eq!(batch.fold(1, |a, b| a + b), 9);
    /// ```
    pub fn fold(&self, zero: T, f: impl Fn(T, T) -> T) -> T {
        let per_partition: Vec<T> = self.partitions.iter().map(|p| p.iter().cloned().fold(zero.clone(), &f)).collect();
        per_partition.into_iter().fold(zero, f)
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

    /// The smallest element, or `None` for an empty batch (Spark's `min`, which throws on an
    /// empty RDD). Of equal smallest elements, the first in partition order.
    pub fn min(&self) -> Option<T> {
        self.iter().min().cloned()
    }

    /// The largest element, or `None` for an empty batch (Spark's `max`, which throws on an
    /// empty RDD). Of equal largest elements, the last in partition order.
    pub fn max(&self) -> Option<T> {
        self.iter().max().cloned()
    }
}

impl<T: Hash + Eq + Clone> Batch<T> {
    /// Each distinct element once (Spark's `distinct`).
    ///
    /// A shuffle, as in Spark: each element lands in the partition its hash picks, among as many
    /// partitions as the input has; inside a partition, elements come in order of first
    /// appearance. A batch without partitions stays so.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    ///
    /// let batch = Batch::from_partitions(Time::from_millis(1000), vec![vec![1, 2, 1], vec![2, 3]]);
    /// let mut distinct = batch.distinct().collect();
    /// distinct.sort();
    /// assert_eq!(distinct, vec![1, 2, 3]);
    /// ```
    pub fn distinct(self) -> Batch<T> {
        let n = self.partitions.len();
        let partitions = hash_partition(self.partitions.into_iter().flatten(), n, |x| stable_hash(x))
            .into_iter()
            .map(|p| {
                let mut seen = HashSet::new();
                p.into_iter().filter(|x| seen.insert(x.clone())).collect()
            })
            .collect();
        Batch {
            time: self.time,
            partitions,
        }
    }

    /// How many times each distinct element occurs (Spark's `countByValue`); empty for an
    /// empty batch.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    ///
    /// let batch = Batch::from_partitions(Time::from_millis(1000), vec![vec!['a', 'b'], vec!['a']]);
    /// let counts = batch.count_by_value();
    /// assert_eq!((counts[&'a'], counts[&'b']), (2, 1));
    /// ```
    pub fn count_by_value(&self) -> HashMap<T, u64> {
        let mut counts = HashMap::new();
        for x in self.iter() {
            *counts.entry(x.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// The elements of this batch that do not occur in `other` (Spark's `subtract`).
    ///
    /// Duplicates in this batch are kept (Spark does not remove them here, unlike in
    /// `intersection`). A shuffle: each element lands in the partition its hash picks, among as
    /// many partitions as this batch has (Spark's rule for `subtract`); inside a partition,
    /// elements keep this batch's order.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    ///
    /// let t = Time::from_millis(1000);
    /// let left = Batch::from_partitions(t, vec![vec![1, 2, 1], vec![3, 4]]);
    /// let mut rest = left.subtract(Batch::from_vec(t, vec![2, 4, 5])).collect();
    /// rest.sort();
    /// assert_eq!(rest, vec![1, 1, 3]);
    /// ```
    pub fn subtract(self, other: Batch<T>) -> Batch<T> {
        let n = self.partitions.len();
        let remove: HashSet<T> = other.partitions.into_iter().flatten().collect();
        let kept = self.partitions.into_iter().flatten().filter(|x| !remove.contains(x));
        Batch {
            time: self.time,
            partitions: hash_partition(kept, n, |x| stable_hash(x)),
        }
    }

    /// The elements present in both batches, each once (Spark's `intersection`, which removes
    /// duplicates).
    ///
    /// A shuffle: each element lands in the partition its hash picks, among as many partitions
    /// as the larger of the two batches has (Spark's default partitioner); inside a partition,
    /// elements come in this batch's order of first appearance.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    ///
    /// let t = Time::from_millis(1000);
    /// let left = Batch::from_partitions(t, vec![vec![1, 2, 2], vec![3]]);
    /// let mut both = left.intersection(Batch::from_vec(t, vec![2, 3, 3, 4])).collect();
    /// both.sort();
    /// assert_eq!(both, vec![2, 3]);
    /// ```
    pub fn intersection(self, other: Batch<T>) -> Batch<T> {
        let n = self.partitions.len().max(other.partitions.len());
        let present: HashSet<T> = other.partitions.into_iter().flatten().collect();
        let mut emitted = HashSet::new();
        let common = self
            .partitions
            .into_iter()
            .flatten()
            .filter(|x| present.contains(x) && emitted.insert(x.clone()));
        Batch {
            time: self.time,
            partitions: hash_partition(common, n, |x| stable_hash(x)),
        }
    }
}

/// A number that [`Batch::mean`] and [`Batch::stats`] read as an `f64`, as Spark's implicit
/// `numericRDDToDoubleRDDFunctions` reads any numeric RDD through `toDouble`.
pub trait Numeric: Copy {
    /// The value as an `f64`; integers beyond 2^53 lose precision, as with Scala's `toDouble`.
    fn to_f64(self) -> f64;
}

macro_rules! numeric {
    ($($t:ty),*) => {
        $(impl Numeric for $t {
            fn to_f64(self) -> f64 {
                self as f64
            }
        })*
    };
}

numeric!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize, f32, f64);

/// Count, mean, extremes and variance of a numeric batch (Spark's `StatCounter`), from
/// [`Batch::stats`].
///
/// Computed as Spark does, so results agree to the last bit for the same partitions: Welford's
/// update per partition, then Chan's merge of the partitions in order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StatCounter {
    n: u64,
    mu: f64,
    // Sum of squared distances from the mean.
    m2: f64,
    max: f64,
    min: f64,
}

impl StatCounter {
    /// The counter of no values: Spark's `new StatCounter()`.
    fn new() -> Self {
        StatCounter {
            n: 0,
            mu: 0.0,
            m2: 0.0,
            max: f64::NEG_INFINITY,
            min: f64::INFINITY,
        }
    }

    /// Adds one value (Spark's `merge(value)`).
    fn add(&mut self, value: f64) {
        let delta = value - self.mu;
        self.n += 1;
        self.mu += delta / self.n as f64;
        self.m2 += delta * (value - self.mu);
        self.max = self.max.max(value);
        self.min = self.min.min(value);
    }

    /// Adds another counter's values (Spark's `merge(other)`), with Spark's choice of formula
    /// for the mean so that results match Spark's.
    fn merge(&mut self, other: &StatCounter) {
        if self.n == 0 {
            *self = *other;
        } else if other.n != 0 {
            let (n, m) = (self.n as f64, other.n as f64);
            let delta = other.mu - self.mu;
            self.mu = if other.n.saturating_mul(10) < self.n {
                self.mu + (delta * m) / (n + m)
            } else if self.n.saturating_mul(10) < other.n {
                other.mu - (delta * n) / (n + m)
            } else {
                (self.mu * n + other.mu * m) / (n + m)
            };
            self.m2 += other.m2 + (delta * delta * n * m) / (n + m);
            self.n += other.n;
            self.max = self.max.max(other.max);
            self.min = self.min.min(other.min);
        }
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.n
    }

    /// Arithmetic mean; 0 when there are no values (as Spark's `StatCounter.mean`).
    pub fn mean(&self) -> f64 {
        self.mu
    }

    /// Sum of the values, `count * mean` as in Spark.
    pub fn sum(&self) -> f64 {
        self.n as f64 * self.mu
    }

    /// Smallest value; positive infinity when there are no values (as in Spark).
    pub fn min(&self) -> f64 {
        self.min
    }

    /// Largest value; negative infinity when there are no values (as in Spark).
    pub fn max(&self) -> f64 {
        self.max
    }

    /// Population variance, dividing by `count` (Spark's `variance` and `popVariance`); NaN
    /// when there are no values.
    pub fn variance(&self) -> f64 {
        if self.n == 0 { f64::NAN } else { self.m2 / self.n as f64 }
    }

    /// Sample variance, dividing by `count - 1` (Spark's `sampleVariance`); NaN for fewer than
    /// two values.
    pub fn sample_variance(&self) -> f64 {
        if self.n <= 1 { f64::NAN } else { self.m2 / (self.n - 1) as f64 }
    }

    /// Population standard deviation (Spark's `stdev` and `popStdev`).
    pub fn stdev(&self) -> f64 {
        self.variance().sqrt()
    }

    /// Sample standard deviation (Spark's `sampleStdev`).
    pub fn sample_stdev(&self) -> f64 {
        self.sample_variance().sqrt()
    }
}

impl<T: Numeric> Batch<T> {
    /// The mean of the elements, or `None` for an empty batch (Spark's `mean`, which gives 0 for
    /// empty partitions and throws for an RDD without partitions).
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    ///
    /// let batch = Batch::from_partitions(Time::from_millis(1000), vec![vec![1u64, 2], vec![6]]);
    /// assert_eq!(batch.mean(), Some(3.0));
    /// ```
    pub fn mean(&self) -> Option<f64> {
        let stats = self.stats();
        (stats.count() > 0).then(|| stats.mean())
    }

    /// Count, mean, sum, extremes and variances of the elements in one pass (Spark's `stats`).
    ///
    /// An empty batch gives the counter of no values, with Spark's values for it: count 0,
    /// mean and sum 0, min +∞, max -∞, variances NaN (Spark throws instead for an RDD without
    /// partitions).
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    ///
    /// let batch = Batch::from_partitions(Time::from_millis(1000), vec![vec![2.0, 4.0], vec![4.0, 6.0]]);
    /// let s = batch.stats();
    /// assert_eq!((s.count(), s.mean(), s.sum(), s.min(), s.max()), (4, 4.0, 16.0, 2.0, 6.0));
    /// assert_eq!((s.variance(), s.stdev()), (2.0, 2f64.sqrt()));
    /// assert!((s.sample_variance() - 8.0 / 3.0).abs() < 1e-12);
    /// ```
    pub fn stats(&self) -> StatCounter {
        let mut total = StatCounter::new();
        for p in &self.partitions {
            let mut partition = StatCounter::new();
            for x in p {
                partition.add(x.to_f64());
            }
            total.merge(&partition);
        }
        total
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

    /// All pairs sorted by key, ascending or descending (Spark's `sortByKey(ascending)`).
    ///
    /// A total, stable sort (pairs with equal keys keep their partition and element order). As
    /// in Spark, and unlike [`Batch::sort_by_key`] which puts everything in one partition, the
    /// result has as many partitions as the input, each a contiguous range of the sorted pairs;
    /// cuts are placed as in [`Batch::sort_by`], so a key never spans two partitions.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    ///
    /// let batch = Batch::from_partitions(Time::from_millis(1000), vec![vec![(1, 'a'), (3, 'c')], vec![(2, 'b')]]);
    /// assert_eq!(batch.sort_by_key_with(false).collect(), vec![(3, 'c'), (2, 'b'), (1, 'a')]);
    /// ```
    pub fn sort_by_key_with(self, ascending: bool) -> Batch<(K, V)>
    where
        K: Ord,
    {
        let n = self.partitions.len();
        let all: Vec<(K, V)> = self.partitions.into_iter().flatten().collect();
        Batch {
            time: self.time,
            partitions: sort_into_ranges(all, n, ascending, |(k, _)| k),
        }
    }

    /// How many pairs each key has (Spark's `countByKey`); empty for an empty batch.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    ///
    /// let batch = Batch::from_partitions(Time::from_millis(1000), vec![vec![('a', 1), ('b', 2)], vec![('a', 3)]]);
    /// let counts = batch.count_by_key();
    /// assert_eq!((counts[&'a'], counts[&'b']), (2, 1));
    /// ```
    pub fn count_by_key(&self) -> HashMap<K, u64>
    where
        K: Hash + Eq,
    {
        let mut counts = HashMap::new();
        for (k, _) in self.iter() {
            *counts.entry(k.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// The pairs as a map (Spark's `collectAsMap`), one value per key.
    ///
    /// Spark's documentation only warns that this is not a multimap, so that a single value per
    /// key is kept; its implementation puts the collected pairs into a map in partition order,
    /// so the last value wins. ember documents and keeps that rule: for a duplicate key, the
    /// value of its last pair in partition order, then element order.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    ///
    /// let batch = Batch::from_partitions(Time::from_millis(1000), vec![vec![('a', 1), ('b', 2)], vec![('a', 3)]]);
    /// let map = batch.collect_as_map();
    /// assert_eq!((map[&'a'], map[&'b']), (3, 2));
    /// ```
    pub fn collect_as_map(&self) -> HashMap<K, V>
    where
        K: Hash + Eq,
    {
        self.iter().cloned().collect()
    }

    /// The values of `key`, in partition order, then element order (Spark's `lookup`); empty
    /// when the key is absent.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    ///
    /// let batch = Batch::from_partitions(Time::from_millis(1000), vec![vec![('a', 1), ('b', 2)], vec![('a', 3)]]);
    /// assert_eq!(batch.lookup(&'a'), vec![1, 3]);
    /// assert!(batch.lookup(&'z').is_empty());
    /// ```
    pub fn lookup(&self, key: &K) -> Vec<V>
    where
        K: PartialEq,
    {
        self.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect()
    }

    /// One pair per key with the key's values combined by `f` (Spark's `reduceByKey`).
    ///
    /// `f` folds a key's values in partition order, then element order; Spark combines within
    /// each partition first and merges partitions as they arrive, which gives the same result
    /// for the associative and commutative `f` it requires. Partitioned as described on
    /// [`Batch`]: by the key's hash, into as many partitions as the input has.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    ///
    /// let batch = Batch::from_partitions(Time::from_millis(1000), vec![vec![('a', 1), ('b', 2)], vec![('a', 3)]]);
    /// let mut sums = batch.reduce_by_key(|x, y| x + y).collect();
    /// sums.sort();
    /// assert_eq!(sums, vec![('a', 4), ('b', 2)]);
    /// ```
    pub fn reduce_by_key(self, f: impl Fn(V, V) -> V) -> Batch<(K, V)>
    where
        K: Hash + Eq,
    {
        // Grouping first keeps every reduction on owned values; a group is never empty.
        self.group_by_key().flat_map(|(k, vs)| vs.into_iter().reduce(&f).map(|v| (k, v)))
    }

    /// One pair per key with all its values (Spark's `groupByKey`).
    ///
    /// Values are in partition order, then element order (Spark does not define their order).
    /// Partitioned as described on [`Batch`]: by the key's hash, into as many partitions as the
    /// input has.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    ///
    /// let batch = Batch::from_partitions(Time::from_millis(1000), vec![vec![('a', 1), ('b', 2)], vec![('a', 3)]]);
    /// let mut groups = batch.group_by_key().collect();
    /// groups.sort();
    /// assert_eq!(groups, vec![('a', vec![1, 3]), ('b', vec![2])]);
    /// ```
    pub fn group_by_key(self) -> Batch<(K, Vec<V>)>
    where
        K: Hash + Eq,
    {
        let n = self.partitions.len();
        let partitions = hash_partition(self.partitions.into_iter().flatten(), n, |(k, _)| stable_hash(k))
            .into_iter()
            .map(|p| group_in_order(p, Vec::new, |vs: &mut Vec<V>, v| vs.push(v)))
            .collect();
        Batch {
            time: self.time,
            partitions,
        }
    }

    /// For every key in either batch, its values here and its values in `other` (Spark's
    /// `cogroup`); one of the two lists can be empty, never both.
    ///
    /// Values are in partition order, then element order. Partitioned as described on
    /// [`Batch`]: by the key's hash, into as many partitions as the larger of the two batches
    /// has; keys of this batch come first in a partition, then keys only in `other`.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    ///
    /// let t = Time::from_millis(1000);
    /// let left = Batch::from_partitions(t, vec![vec![('a', 1)], vec![('a', 2), ('b', 3)]]);
    /// let mut groups = left.cogroup(Batch::from_vec(t, vec![('a', "x"), ('c', "y")])).collect();
    /// groups.sort();
    /// assert_eq!(groups, vec![('a', (vec![1, 2], vec!["x"])), ('b', (vec![3], vec![])), ('c', (vec![], vec!["y"]))]);
    /// ```
    pub fn cogroup<W>(self, other: Batch<(K, W)>) -> Batch<(K, (Vec<V>, Vec<W>))>
    where
        K: Hash + Eq,
    {
        let n = self.partitions.len().max(other.partitions.len());
        let left = hash_partition(self.partitions.into_iter().flatten(), n, |(k, _)| stable_hash(k));
        let right = hash_partition(other.partitions.into_iter().flatten(), n, |(k, _)| stable_hash(k));
        let partitions = left
            .into_iter()
            .zip(right)
            .map(|(l, r)| {
                // Tag each side so that one ordered grouping pass handles both.
                let tagged = l
                    .into_iter()
                    .map(|(k, v)| (k, Side::Left(v)))
                    .chain(r.into_iter().map(|(k, w)| (k, Side::Right(w))));
                group_in_order(
                    tagged,
                    || (Vec::new(), Vec::new()),
                    |(vs, ws): &mut (Vec<V>, Vec<W>), side| match side {
                        Side::Left(v) => vs.push(v),
                        Side::Right(w) => ws.push(w),
                    },
                )
            })
            .collect();
        Batch {
            time: self.time,
            partitions,
        }
    }

    /// Left outer join (Spark's `leftOuterJoin`): for every pair `(k, v)` here, `(k, (v,
    /// Some(w)))` for each value `w` of `k` in `other`, or `(k, (v, None))` when `other` has
    /// no `k`.
    ///
    /// Computed from [`Batch::cogroup`] as in Spark, so partitioned the same way; within a key,
    /// pairs are ordered by this batch's value, then `other`'s.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    ///
    /// let t = Time::from_millis(1000);
    /// let left = Batch::from_partitions(t, vec![vec![('a', 1)], vec![('b', 2)]]);
    /// let mut joined = left.left_outer_join(Batch::from_vec(t, vec![('a', 'x'), ('c', 'y')])).collect();
    /// joined.sort();
    /// assert_eq!(joined, vec![('a', (1, Some('x'))), ('b', (2, None))]);
    /// ```
    pub fn left_outer_join<W: Clone>(self, other: Batch<(K, W)>) -> Batch<(K, (V, Option<W>))>
    where
        K: Hash + Eq,
    {
        self.cogroup(other).flat_map(|(k, (vs, ws))| {
            let mut out = Vec::new();
            if ws.is_empty() {
                out.extend(vs.into_iter().map(|v| (k.clone(), (v, None))));
            } else {
                for v in vs {
                    out.extend(ws.iter().map(|w| (k.clone(), (v.clone(), Some(w.clone())))));
                }
            }
            out
        })
    }

    /// Right outer join (Spark's `rightOuterJoin`): for every pair `(k, w)` of `other`,
    /// `(k, (Some(v), w))` for each value `v` of `k` here, or `(k, (None, w))` when this batch
    /// has no `k`.
    ///
    /// Computed from [`Batch::cogroup`] as in Spark, so partitioned the same way; within a key,
    /// pairs are ordered by this batch's value, then `other`'s.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    ///
    /// let t = Time::from_millis(1000);
    /// let left = Batch::from_partitions(t, vec![vec![('a', 1)], vec![('b', 2)]]);
    /// let mut joined = left.right_outer_join(Batch::from_vec(t, vec![('a', 'x'), ('c', 'y')])).collect();
    /// joined.sort();
    /// assert_eq!(joined, vec![('a', (Some(1), 'x')), ('c', (None, 'y'))]);
    /// ```
    pub fn right_outer_join<W: Clone>(self, other: Batch<(K, W)>) -> Batch<(K, (Option<V>, W))>
    where
        K: Hash + Eq,
    {
        self.cogroup(other).flat_map(|(k, (vs, ws))| {
            let mut out = Vec::new();
            if vs.is_empty() {
                out.extend(ws.into_iter().map(|w| (k.clone(), (None, w))));
            } else {
                for v in vs {
                    out.extend(ws.iter().map(|w| (k.clone(), (Some(v.clone()), w.clone()))));
                }
            }
            out
        })
    }

    /// Full outer join (Spark's `fullOuterJoin`): every pair of values of a key present in both
    /// batches as `(Some(v), Some(w))`, and the values of a key present on one side only with
    /// `None` for the other.
    ///
    /// Computed from [`Batch::cogroup`] as in Spark, so partitioned the same way; within a key,
    /// pairs are ordered by this batch's value, then `other`'s.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    ///
    /// let t = Time::from_millis(1000);
    /// let left = Batch::from_partitions(t, vec![vec![('a', 1)], vec![('b', 2)]]);
    /// let mut joined = left.full_outer_join(Batch::from_vec(t, vec![('a', 'x'), ('c', 'y')])).collect();
    /// joined.sort();
    /// assert_eq!(joined, vec![('a', (Some(1), Some('x'))), ('b', (Some(2), None)), ('c', (None, Some('y')))]);
    /// ```
    pub fn full_outer_join<W: Clone>(self, other: Batch<(K, W)>) -> Batch<(K, (Option<V>, Option<W>))>
    where
        K: Hash + Eq,
    {
        self.cogroup(other).flat_map(|(k, (vs, ws))| {
            let mut out = Vec::new();
            if ws.is_empty() {
                out.extend(vs.into_iter().map(|v| (k.clone(), (Some(v), None))));
            } else if vs.is_empty() {
                out.extend(ws.into_iter().map(|w| (k.clone(), (None, Some(w)))));
            } else {
                for v in vs {
                    out.extend(ws.iter().map(|w| (k.clone(), (Some(v.clone()), Some(w.clone())))));
                }
            }
            out
        })
    }
}

/// One side of a [`Batch::cogroup`] input.
enum Side<V, W> {
    Left(V),
    Right(W),
}

/// Checks a requested number of partitions: Spark throws for 0, ember returns an error.
fn positive_partitions(operation: &'static str, num_partitions: usize) -> Result<usize> {
    if num_partitions == 0 {
        return Err(Error::InvalidArgument {
            operation,
            message: "the number of partitions must be positive".into(),
        });
    }
    Ok(num_partitions)
}

/// Spreads `items` over `n` partitions by `hash` (Spark's `HashPartitioner`), keeping their
/// order within each partition. Items only come from partitions, so `n == 0` means no items;
/// should one come anyway, it gets a partition rather than being lost.
fn hash_partition<T>(items: impl IntoIterator<Item = T>, n: usize, hash: impl Fn(&T) -> u64) -> Vec<Vec<T>> {
    let mut partitions: Vec<Vec<T>> = (0..n).map(|_| Vec::new()).collect();
    let buckets = n.max(1) as u64;
    for x in items {
        if partitions.is_empty() {
            partitions.push(Vec::new());
        }
        partitions[(hash(&x) % buckets) as usize].push(x);
    }
    partitions
}

/// Groups `pairs` by key, keys in order of first appearance: `init` makes a key's accumulator,
/// `add` puts a value into it. The index map finds a key's group in O(1) while the `Vec` keeps
/// the order that a `HashMap` alone would lose.
fn group_in_order<K: Hash + Eq + Clone, X, A>(
    pairs: impl IntoIterator<Item = (K, X)>,
    init: impl Fn() -> A,
    add: impl Fn(&mut A, X),
) -> Vec<(K, A)> {
    let mut index: HashMap<K, usize> = HashMap::new();
    let mut groups: Vec<(K, A)> = Vec::new();
    for (k, x) in pairs {
        let i = match index.get(&k) {
            Some(&i) => i,
            None => {
                index.insert(k.clone(), groups.len());
                groups.push((k, init()));
                groups.len() - 1
            }
        };
        add(&mut groups[i].1, x);
    }
    groups
}

/// Sorts `items` stably by `key` (descending when `ascending` is false) and cuts them into `n`
/// contiguous ranges of nearly equal size, each cut moved forward past equal keys so that a key
/// never spans two partitions, as with Spark's `RangePartitioner`. `n == 0` (a batch without
/// partitions, so without items) gives no partitions.
fn sort_into_ranges<T, K: Ord>(mut items: Vec<T>, n: usize, ascending: bool, key: impl Fn(&T) -> &K) -> Vec<Vec<T>> {
    items.sort_by(|a, b| {
        let order = key(a).cmp(key(b));
        if ascending { order } else { order.reverse() }
    });
    if n <= 1 {
        return if n == 0 && items.is_empty() { Vec::new() } else { vec![items] };
    }
    let len = items.len();
    let mut cuts = vec![0];
    let mut previous = 0;
    for i in 1..n {
        let mut cut = (i * len / n).max(previous);
        while cut > 0 && cut < len && key(&items[cut]) == key(&items[cut - 1]) {
            cut += 1;
        }
        cuts.push(cut);
        previous = cut;
    }
    cuts.push(len);
    // Split from the back so that every range is moved out, not cloned.
    let mut partitions: Vec<Vec<T>> = cuts.windows(2).rev().map(|w| items.split_off(w[0])).collect();
    partitions.reverse();
    partitions
}
