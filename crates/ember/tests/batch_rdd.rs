//! `Batch` as Spark's RDD: the RDD operations used inside `transform` and `foreach_rdd`, checked
//! against Spark's documented results on batches of several partitions and on empty batches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ember::prelude::*;
use ember::testing::run_batches_on;

fn t() -> Time {
    Time::from_millis(1000)
}

fn batch<T>(partitions: Vec<Vec<T>>) -> Batch<T> {
    Batch::from_partitions(t(), partitions)
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// Every key of a shuffled pair batch sits in exactly one partition.
fn each_key_in_one_partition<K: std::hash::Hash + Eq + Clone + std::fmt::Debug, V>(b: &Batch<(K, V)>) {
    let mut home: HashMap<K, usize> = HashMap::new();
    for (i, p) in b.partitions().iter().enumerate() {
        for (k, _) in p {
            let first = *home.entry(k.clone()).or_insert(i);
            assert_eq!(first, i, "key {k:?} is in partitions {first} and {i}");
        }
    }
}

#[test]
fn distinct_removes_duplicates_and_keeps_the_partition_count() {
    let d = batch(vec![vec![1, 2, 1, 3], vec![2, 3, 4], vec![4]]).distinct();
    assert_eq!(d.num_partitions(), 3);
    assert_eq!(sorted(d.collect()), vec![1, 2, 3, 4]);
    // Deterministic: the same input always gives the same partitions.
    assert_eq!(d, batch(vec![vec![1, 2, 1, 3], vec![2, 3, 4], vec![4]]).distinct());
    let pairs = d.map(|x| (x, ()));
    each_key_in_one_partition(&pairs);

    let empty = Batch::<i32>::empty(t()).distinct();
    assert_eq!(empty.num_partitions(), 0);
    assert!(empty.is_empty());
    let hollow = batch::<i32>(vec![vec![], vec![]]).distinct();
    assert_eq!(hollow.partitions(), &[Vec::<i32>::new(), vec![]]);
}

#[test]
fn count_by_value_counts_every_element() {
    let counts = batch(vec![vec!["a", "b", "a"], vec!["c", "a"]]).count_by_value();
    assert_eq!(counts, HashMap::from([("a", 3), ("b", 1), ("c", 1)]));
    assert!(Batch::<&str>::empty(t()).count_by_value().is_empty());
}

#[test]
fn fold_uses_zero_once_per_partition_and_once_for_the_merge() {
    let b = batch(vec![vec![1, 2], vec![3, 4], vec![5]]);
    assert_eq!(b.fold(0, |a, x| a + x), 15);
    // Spark: sc.parallelize(1 to 5, 3).fold(10)(_ + _) == 15 + 4 * 10.
    assert_eq!(b.fold(10, |a, x| a + x), 55);
    // Empty partitions still count: 2 partitions + merge.
    assert_eq!(batch::<i32>(vec![vec![], vec![]]).fold(1, |a, x| a + x), 3);
    // No partitions: only the merge's zero.
    assert_eq!(Batch::<i32>::empty(t()).fold(1, |a, x| a + x), 1);
    // Merge in partition order: visible with a non-commutative function.
    let words = batch(vec![vec!["a".to_owned(), "b".to_owned()], vec!["c".to_owned()]]);
    assert_eq!(words.fold(String::new(), |a, x| a + &x), "abc");
    assert_eq!(words.fold("-".to_owned(), |a, x| a + &x), "--ab-c");
}

#[test]
fn aggregate_uses_zero_once_per_partition_and_once_for_the_merge() {
    let b = batch(vec![vec![1, 2], vec![3, 4], vec![5]]);
    let (sum, count) = b.aggregate((0, 0u64), |(s, n), x| (s + x, n + 1), |a, c| (a.0 + c.0, a.1 + c.1));
    assert_eq!((sum, count), (15, 5));
    // Non-neutral zero: 3 partitions + merge = 4 times.
    assert_eq!(b.aggregate(100, |acc, x| acc + x, |a, c| a + c), 415);
    // The per-partition result is visible with a comb_op that records partition results.
    let parts = b.aggregate(
        Vec::new(),
        |mut acc: Vec<i32>, x| {
            acc.push(*x);
            acc
        },
        |mut a, c| {
            a.push(c.iter().sum());
            a
        },
    );
    assert_eq!(parts, vec![3, 7, 5]);
    assert_eq!(Batch::<i32>::empty(t()).aggregate(7, |a, x| a + x, |a, c| a + c), 7);
    assert_eq!(batch::<i32>(vec![vec![]]).aggregate(7, |a, x| a + x, |a, c| a + c), 14);
}

#[test]
fn is_empty_for_no_partitions_and_for_empty_partitions() {
    assert!(Batch::<u8>::empty(t()).is_empty());
    assert!(batch::<u8>(vec![vec![], vec![]]).is_empty());
    assert!(!batch(vec![vec![], vec![1u8]]).is_empty());
}

#[test]
fn glom_gives_one_vec_per_partition() {
    let g = batch(vec![vec![1, 2], vec![], vec![3]]).glom();
    assert_eq!(g.num_partitions(), 3);
    assert_eq!(g.partitions(), &[vec![vec![1, 2]], vec![vec![]], vec![vec![3]]]);
    assert_eq!(Batch::<i32>::empty(t()).glom().count(), 0);
}

#[test]
fn map_partitions_runs_once_per_partition() {
    let calls = std::cell::Cell::new(0);
    let out = batch(vec![vec![1, 2, 3], vec![], vec![4]]).map_partitions(|p| {
        calls.set(calls.get() + 1);
        // Per-partition state, as in Spark: a running sum that restarts in each partition.
        let mut acc = 0;
        p.into_iter()
            .map(move |x| {
                acc += x;
                acc
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(calls.get(), 3, "called for the empty partition too");
    assert_eq!(out.partitions(), &[vec![1, 3, 6], vec![], vec![4]]);
    assert_eq!(Batch::<i32>::empty(t()).map_partitions(|p| p).num_partitions(), 0);
}

#[test]
fn zip_with_index_numbers_by_partition_then_element() {
    // Spark numbers by partition index, then position: an empty partition takes no index.
    let z = batch(vec![vec!["a"], vec![], vec!["b"], vec!["c", "d"]]).zip_with_index();
    assert_eq!(z.partitions(), &[vec![("a", 0)], vec![], vec![("b", 1)], vec![("c", 2), ("d", 3)]]);
    assert!(Batch::<&str>::empty(t()).zip_with_index().is_empty());
}

#[test]
fn sort_by_is_total_stable_and_keeps_the_partition_count() {
    let b = batch(vec![vec![(3, 'a'), (1, 'b'), (2, 'c')], vec![(1, 'd'), (3, 'e'), (0, 'f')]]);
    let asc = b.clone().sort_by(|(k, _)| *k, true);
    assert_eq!(asc.num_partitions(), 2);
    // Stable: equal keys keep partition then element order.
    assert_eq!(asc.collect(), vec![(0, 'f'), (1, 'b'), (1, 'd'), (2, 'c'), (3, 'a'), (3, 'e')]);
    assert_eq!(
        asc.partitions(),
        &[vec![(0, 'f'), (1, 'b'), (1, 'd')], vec![(2, 'c'), (3, 'a'), (3, 'e')]]
    );
    let desc = b.sort_by(|(k, _)| *k, false);
    assert_eq!(desc.collect(), vec![(3, 'a'), (3, 'e'), (2, 'c'), (1, 'b'), (1, 'd'), (0, 'f')]);

    // A key never spans two partitions: the cut moves past the run of equal keys.
    let runs = batch(vec![vec![1, 1, 1], vec![1, 2, 3]]).sort_by(|x| *x, true);
    assert_eq!(runs.partitions(), &[vec![1, 1, 1, 1], vec![2, 3]]);
    let all_equal = batch(vec![vec![5, 5], vec![5]]).sort_by(|x| *x, true);
    assert_eq!(all_equal.partitions(), &[vec![5, 5, 5], vec![]]);

    assert_eq!(Batch::<i32>::empty(t()).sort_by(|x| *x, true).num_partitions(), 0);
    assert_eq!(
        batch::<i32>(vec![vec![], vec![]]).sort_by(|x| *x, true).partitions(),
        &[Vec::<i32>::new(), vec![]]
    );
}

#[test]
fn subtract_keeps_duplicates_of_the_left_side() {
    // Spark: sc.parallelize(Seq(1, 1, 2, 3, 4), 2).subtract(sc.parallelize(Seq(2, 4, 5))) == [1, 1, 3].
    let left = batch(vec![vec![1, 1, 2], vec![3, 4]]);
    let right = batch(vec![vec![2], vec![4], vec![5]]);
    let rest = left.subtract(right);
    assert_eq!(rest.num_partitions(), 2, "this batch's number of partitions");
    assert_eq!(sorted(rest.collect()), vec![1, 1, 3]);
    assert_eq!(batch(vec![vec![1]]).subtract(Batch::empty(t())).collect(), vec![1]);
    assert!(Batch::<i32>::empty(t()).subtract(batch(vec![vec![1]])).is_empty());
}

#[test]
fn intersection_removes_duplicates() {
    // Spark: sc.parallelize(Seq(1, 2, 2, 3)).intersection(sc.parallelize(Seq(2, 2, 3, 4))) == [2, 3].
    let left = batch(vec![vec![1, 2], vec![2, 3]]);
    let right = batch(vec![vec![2, 2], vec![3], vec![4]]);
    let both = left.intersection(right);
    assert_eq!(both.num_partitions(), 3, "the larger number of partitions");
    assert_eq!(sorted(both.collect()), vec![2, 3]);
    assert!(batch(vec![vec![1]]).intersection(Batch::empty(t())).is_empty());
}

#[test]
fn repartition_deals_round_robin_into_exactly_n() {
    let b = batch(vec![vec![1, 2, 3, 4], vec![5, 6]]);
    let r = b.clone().repartition(3).unwrap();
    // Element j of partition i goes to (i + j) % 3.
    assert_eq!(r.partitions(), &[vec![1, 4], vec![2, 5], vec![3, 6]]);
    let more = b.clone().repartition(5).unwrap();
    assert_eq!(more.num_partitions(), 5);
    assert_eq!(sorted(more.collect()), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(b.clone().repartition(1).unwrap().partitions(), &[vec![1, 2, 3, 4, 5, 6]]);
    assert!(matches!(
        b.repartition(0),
        Err(ember::Error::InvalidArgument {
            operation: "repartition",
            ..
        })
    ));
    assert_eq!(
        Batch::<i32>::empty(t()).repartition(2).unwrap().partitions(),
        &[Vec::<i32>::new(), vec![]]
    );
}

#[test]
fn coalesce_merges_whole_partitions_and_never_increases() {
    let b = batch(vec![vec![1], vec![2, 3], vec![], vec![4], vec![5]]);
    // 5 -> 2: partitions [0, 2) and [2, 5).
    let c = b.clone().coalesce(2).unwrap();
    assert_eq!(c.partitions(), &[vec![1, 2, 3], vec![4, 5]]);
    assert_eq!(c.collect(), b.collect(), "element order kept");
    // 5 -> 3: [0, 1), [1, 3), [3, 5).
    assert_eq!(b.clone().coalesce(3).unwrap().partitions(), &[vec![1], vec![2, 3], vec![4, 5]]);
    assert_eq!(b.clone().coalesce(1).unwrap().partitions(), &[vec![1, 2, 3, 4, 5]]);
    assert_eq!(b.clone().coalesce(9).unwrap(), b, "never more partitions");
    assert!(matches!(
        b.coalesce(0),
        Err(ember::Error::InvalidArgument { operation: "coalesce", .. })
    ));
    assert_eq!(Batch::<i32>::empty(t()).coalesce(2).unwrap().num_partitions(), 0);
}

#[test]
fn min_and_max() {
    let b = batch(vec![vec![3, 9], vec![-2, 4]]);
    assert_eq!((b.min(), b.max()), (Some(-2), Some(9)));
    assert_eq!((Batch::<i32>::empty(t()).min(), Batch::<i32>::empty(t()).max()), (None, None));
}

#[test]
fn mean_and_stats_match_sparks_stat_counter() {
    // Spark: sc.parallelize(Seq(1.0, 2.0, 3.0, 4.0, 10.0), 2).stats() ==
    // (count: 5, mean: 4.0, stdev: 3.162278, max: 10.0, min: 1.0); sampleVariance 12.5.
    let b = batch(vec![vec![1.0, 2.0], vec![3.0, 4.0, 10.0]]);
    let s = b.stats();
    let close = |a: f64, e: f64| assert!((a - e).abs() < 1e-9, "{a} != {e}");
    assert_eq!(s.count(), 5);
    close(s.mean(), 4.0);
    close(s.sum(), 20.0);
    assert_eq!((s.min(), s.max()), (1.0, 10.0));
    close(s.variance(), 10.0);
    close(s.sample_variance(), 12.5);
    close(s.stdev(), 10f64.sqrt());
    close(s.sample_stdev(), 12.5f64.sqrt());
    close(b.mean().unwrap(), 4.0);

    // Integer batches are read as f64, as Spark's numeric RDD functions do.
    let ints = batch(vec![vec![2u64, 4], vec![4, 4, 5, 5, 7, 9]]);
    let s = ints.stats();
    assert_eq!((s.count(), s.min(), s.max()), (8, 2.0, 9.0));
    close(s.mean(), 5.0);
    close(s.sum(), 40.0);
    close(s.variance(), 4.0);
    close(s.stdev(), 2.0);
    close(s.sample_variance(), 32.0 / 7.0);
    close(ints.mean().unwrap(), 5.0);

    // One value: sample variance undefined.
    let one = batch(vec![vec![], vec![3i32]]).stats();
    assert_eq!((one.count(), one.mean(), one.variance()), (1, 3.0, 0.0));
    assert!(one.sample_variance().is_nan() && one.sample_stdev().is_nan());

    // Empty: Spark's empty StatCounter.
    let none = Batch::<f64>::empty(t()).stats();
    assert_eq!((none.count(), none.mean(), none.sum()), (0, 0.0, 0.0));
    assert_eq!((none.min(), none.max()), (f64::INFINITY, f64::NEG_INFINITY));
    assert!(none.variance().is_nan() && none.stdev().is_nan() && none.sample_variance().is_nan());
    assert_eq!(Batch::<f64>::empty(t()).mean(), None);
    assert_eq!(batch::<f64>(vec![vec![], vec![]]).mean(), None);
}

#[test]
fn stats_is_numerically_robust_across_partitions() {
    // Large offset, small spread: Welford + Chan keep the variance exact where the naive
    // sum-of-squares formula would lose it.
    let base = 1e9;
    let parts: Vec<Vec<f64>> = (0..4)
        .map(|p| (0..25).map(|i| base + ((p * 25 + i) % 10) as f64).collect())
        .collect();
    let s = batch(parts).stats();
    assert_eq!(s.count(), 100);
    assert!((s.mean() - (base + 4.5)).abs() < 1e-6);
    assert!((s.variance() - 8.25).abs() < 1e-6, "{}", s.variance());
}

fn pairs() -> Batch<(char, i32)> {
    batch(vec![vec![('a', 1), ('b', 2), ('a', 3)], vec![('c', 4), ('a', 5)], vec![]])
}

#[test]
fn count_by_key_collect_as_map_and_lookup() {
    assert_eq!(pairs().count_by_key(), HashMap::from([('a', 3), ('b', 1), ('c', 1)]));
    // The last value of a key in partition order wins (Spark's collectAsMap implementation).
    assert_eq!(pairs().collect_as_map(), HashMap::from([('a', 5), ('b', 2), ('c', 4)]));
    assert_eq!(pairs().lookup(&'a'), vec![1, 3, 5]);
    assert_eq!(pairs().lookup(&'z'), Vec::<i32>::new());
    let empty = Batch::<(char, i32)>::empty(t());
    assert!(empty.count_by_key().is_empty() && empty.collect_as_map().is_empty() && empty.lookup(&'a').is_empty());
}

#[test]
fn reduce_by_key_and_group_by_key() {
    let r = pairs().reduce_by_key(|x, y| x + y);
    assert_eq!(r.num_partitions(), 3);
    each_key_in_one_partition(&r);
    assert_eq!(sorted(r.collect()), vec![('a', 9), ('b', 2), ('c', 4)]);
    // Values are combined in partition order, then element order.
    let order = pairs().map(|(k, v)| (k, v.to_string())).reduce_by_key(|x, y| x + &y);
    assert_eq!(
        sorted(order.collect()),
        vec![('a', "135".to_owned()), ('b', "2".to_owned()), ('c', "4".to_owned())]
    );

    let g = pairs().group_by_key();
    assert_eq!(g.num_partitions(), 3);
    each_key_in_one_partition(&g);
    assert_eq!(sorted(g.collect()), vec![('a', vec![1, 3, 5]), ('b', vec![2]), ('c', vec![4])]);

    assert_eq!(Batch::<(char, i32)>::empty(t()).reduce_by_key(|x, y| x + y).num_partitions(), 0);
    assert!(Batch::<(char, i32)>::empty(t()).group_by_key().is_empty());
}

#[test]
fn sort_by_key_with_a_direction() {
    let b = batch(vec![vec![(2, 'x'), (1, 'y')], vec![(3, 'z'), (1, 'w')]]);
    let asc = b.clone().sort_by_key_with(true);
    assert_eq!(asc.num_partitions(), 2);
    assert_eq!(asc.collect(), vec![(1, 'y'), (1, 'w'), (2, 'x'), (3, 'z')]);
    assert_eq!(asc.collect(), b.clone().sort_by_key().collect(), "same order as sort_by_key");
    let desc = b.sort_by_key_with(false);
    assert_eq!(desc.partitions(), &[vec![(3, 'z'), (2, 'x')], vec![(1, 'y'), (1, 'w')]]);
    assert_eq!(Batch::<(i32, char)>::empty(t()).sort_by_key_with(false).num_partitions(), 0);
}

fn other() -> Batch<(char, &'static str)> {
    batch(vec![vec![('a', "x"), ('d', "y")], vec![('a', "z")]])
}

#[test]
fn cogroup_lists_every_key_of_either_side() {
    let c = pairs().cogroup(other());
    assert_eq!(c.num_partitions(), 3, "the larger number of partitions");
    each_key_in_one_partition(&c);
    assert_eq!(
        sorted(c.collect()),
        vec![
            ('a', (vec![1, 3, 5], vec!["x", "z"])),
            ('b', (vec![2], vec![])),
            ('c', (vec![4], vec![])),
            ('d', (vec![], vec!["y"])),
        ]
    );
    let left_only = pairs().cogroup(Batch::<(char, ())>::empty(t()));
    assert_eq!(sorted(left_only.collect()).len(), 3);
    assert!(
        Batch::<(char, i32)>::empty(t())
            .cogroup(Batch::<(char, i32)>::empty(t()))
            .is_empty()
    );
}

#[test]
fn outer_joins_follow_spark() {
    // Spark's examples: left (a,1) (b,2) (a,3) (c,4) (a,5); right (a,x) (d,y) (a,z).
    let left = pairs().left_outer_join(other());
    each_key_in_one_partition(&left);
    assert_eq!(
        sorted(left.collect()),
        vec![
            ('a', (1, Some("x"))),
            ('a', (1, Some("z"))),
            ('a', (3, Some("x"))),
            ('a', (3, Some("z"))),
            ('a', (5, Some("x"))),
            ('a', (5, Some("z"))),
            ('b', (2, None)),
            ('c', (4, None)),
        ]
    );
    // Within a key: left value, then right value (Spark's cogroup-then-for-comprehension).
    let a_pairs: Vec<_> = pairs()
        .left_outer_join(other())
        .collect()
        .into_iter()
        .filter(|(k, _)| *k == 'a')
        .collect();
    assert_eq!(
        a_pairs.iter().map(|(_, p)| *p).collect::<Vec<_>>(),
        vec![
            (1, Some("x")),
            (1, Some("z")),
            (3, Some("x")),
            (3, Some("z")),
            (5, Some("x")),
            (5, Some("z"))
        ]
    );

    let right = pairs().right_outer_join(other());
    assert_eq!(
        sorted(right.collect()),
        vec![
            ('a', (Some(1), "x")),
            ('a', (Some(1), "z")),
            ('a', (Some(3), "x")),
            ('a', (Some(3), "z")),
            ('a', (Some(5), "x")),
            ('a', (Some(5), "z")),
            ('d', (None, "y")),
        ]
    );

    let full = pairs().full_outer_join(other());
    assert_eq!(full.num_partitions(), 3);
    assert_eq!(
        sorted(full.collect()),
        vec![
            ('a', (Some(1), Some("x"))),
            ('a', (Some(1), Some("z"))),
            ('a', (Some(3), Some("x"))),
            ('a', (Some(3), Some("z"))),
            ('a', (Some(5), Some("x"))),
            ('a', (Some(5), Some("z"))),
            ('b', (Some(2), None)),
            ('c', (Some(4), None)),
            ('d', (None, Some("y"))),
        ]
    );

    // Against an empty side.
    let none = Batch::<(char, &str)>::empty(t());
    assert_eq!(sorted(pairs().left_outer_join(none.clone()).collect()).len(), 5);
    assert!(pairs().right_outer_join(none.clone()).is_empty());
    assert_eq!(
        sorted(Batch::<(char, i32)>::empty(t()).full_outer_join(other()).collect()),
        vec![('a', (None, Some("x"))), ('a', (None, Some("z"))), ('d', (None, Some("y")))]
    );
    // The inner join agrees with the outer ones on matched keys.
    let inner = sorted(pairs().join(other()).collect());
    let matched: Vec<_> = sorted(full.collect())
        .into_iter()
        .filter_map(|(k, (v, w))| Some((k, (v?, w?))))
        .collect();
    assert_eq!(inner, matched);
}

#[test]
fn rdd_operations_inside_foreach_rdd_and_transform_on_two_workers() {
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1))
        .workers(2)
        .manual_clock(&clock)
        .build()
        .unwrap();
    let input = ssc.replay_stream(vec![Some(vec![1u64, 2, 2, 3, 4, 4]), Some(vec![])], 2);
    type Seen = (u64, usize, u64, u64, Vec<u64>, Option<f64>, Vec<(u64, u64)>, HashMap<u64, u64>);
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    input
        .foreach_rdd(move |b, time| {
            let row = (
                time.milliseconds(),
                b.num_partitions(),
                b.fold(1, |x, y| x + y),
                b.aggregate(0, |acc, x| acc + x, |a, c| a + c),
                sorted(b.clone().distinct().collect()),
                b.mean(),
                b.clone().zip_with_index().take(2),
                b.count_by_value(),
            );
            sink.lock().unwrap().push(row);
        })
        .unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(2));
    assert!(ssc.await_batch(Time::from_millis(2000), seconds(60)).unwrap());
    ssc.stop(false).unwrap();
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_by_key(|row| row.0);
    assert_eq!(seen.len(), 2);

    // Batch 1: partitions [1, 2, 2] and [3, 4, 4] (Spark's parallelize rule).
    let (time, partitions, fold, aggregate, distinct, mean, indexed, counts) = seen[0].clone();
    assert_eq!((time, partitions), (1000, 2));
    assert_eq!(fold, 16 + 3, "zero 1 once per partition and once for the merge");
    assert_eq!(aggregate, 16);
    assert_eq!(distinct, vec![1, 2, 3, 4]);
    assert!((mean.unwrap() - 16.0 / 6.0).abs() < 1e-12);
    assert_eq!(indexed, vec![(1, 0), (2, 1)]);
    assert_eq!(counts, HashMap::from([(1, 1), (2, 2), (3, 1), (4, 2)]));

    // Batch 2 is empty: fold still counts its zero once per partition the batch has.
    let (time, partitions, fold, aggregate, distinct, mean, indexed, counts) = seen[1].clone();
    assert_eq!(time, 2000);
    assert_eq!(fold, 1 + partitions as u64);
    assert_eq!((aggregate, distinct, mean, indexed), (0, vec![], None, vec![]));
    assert!(counts.is_empty());

    // transform: per-batch word counts through reduce_by_key and sort_by_key_with.
    let lines = vec![vec!["b a".to_owned(), "a c a".to_owned()], vec![]];
    let out = run_batches_on(2, lines, |s| {
        s.transform(|b| {
            b.flat_map(|l: String| l.split(' ').map(str::to_owned).collect::<Vec<_>>())
                .map(|w| (w, 1u64))
                .reduce_by_key(|x, y| x + y)
                .sort_by_key_with(false)
        })
    })
    .unwrap();
    assert_eq!(
        out,
        vec![vec![("c".to_owned(), 1), ("b".to_owned(), 1), ("a".to_owned(), 3)], vec![]]
    );
}
