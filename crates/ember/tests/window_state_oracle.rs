//! Oracle tests: every window and state operation, on seeded random input over many batches,
//! against a naive recomputation from scratch, on 1 and on 3 worker threads.
//!
//! Times are in batches (the batch interval is 1 s): batch `i` (from 0) is at time `i + 1`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use ember::Data;
use ember::prelude::*;

const WORKERS: [usize; 2] = [1, 3];
/// Input seeds with a window and slide (in batches) each: tumbling, sliding, a window longer
/// than twice the slide, and windows shorter than the slide.
const CASES: [(u64, (u64, u64)); 5] = [(7, (1, 1)), (1234, (4, 3)), (99_991, (7, 2)), (31_337, (2, 3)), (5, (1, 4))];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// 40 batches of `(key, value)` records (some batches empty), then 10 empty batches so that
/// windows drain.
fn input(seed: u64) -> Vec<Vec<(u32, i64)>> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut batches: Vec<Vec<(u32, i64)>> = (0..40)
        .map(|_| {
            let len = if rng.below(5) == 0 { 0 } else { rng.below(12) };
            (0..len).map(|_| (rng.below(15) as u32, rng.below(5) as i64 + 1)).collect()
        })
        .collect();
    batches.extend((0..10).map(|_| Vec::new()));
    batches
}

/// Runs `pipeline` over `batches` (3 partitions each) and returns every emission with its time
/// in batches.
fn run<T: Data, U: Data>(workers: usize, batches: &[Vec<T>], pipeline: impl FnOnce(DStream<T>) -> DStream<U>) -> Vec<(u64, Vec<U>)> {
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1))
        .workers(workers)
        .manual_clock(&clock)
        .build()
        .unwrap();
    let n = batches.len() as u64;
    let source = ssc.replay_stream(batches.iter().cloned().map(Some).collect(), 3);
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&out);
    pipeline(source)
        .foreach_rdd(move |b, t| sink.lock().unwrap().push((t.milliseconds() / 1000, b.into_vec())))
        .unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(n));
    assert!(
        ssc.await_batch(Time::from_millis(n * 1000), seconds(60)).unwrap(),
        "batches did not complete"
    );
    ssc.stop(false).unwrap();
    let failures = ssc.failures();
    assert!(failures.is_empty(), "failures: {failures:?}");
    std::mem::take(&mut *out.lock().unwrap())
}

/// The emission times of a stream with slide `s` over `n` batches.
fn emission_times(n: usize, s: u64) -> Vec<u64> {
    (1..=n as u64).filter(|t| t.is_multiple_of(s)).collect()
}

/// The batches in the window `(t - w, t]`, oldest first.
fn window_of<T: Clone>(batches: &[Vec<T>], t: u64, w: u64) -> Vec<T> {
    (t.saturating_sub(w) + 1..=t)
        .flat_map(|time| batches[time as usize - 1].iter().cloned())
        .collect()
}

fn sums(records: &[(u32, i64)]) -> BTreeMap<u32, i64> {
    let mut m = BTreeMap::new();
    for (k, v) in records {
        *m.entry(*k).or_insert(0) += v;
    }
    m
}

fn as_map<K: Ord + std::fmt::Debug, V>(items: Vec<(K, V)>) -> BTreeMap<K, V> {
    let mut m = BTreeMap::new();
    for (k, v) in items {
        assert!(!m.contains_key(&k), "key {k:?} appears twice in one batch");
        m.insert(k, v);
    }
    m
}

/// Checks emission times and lets `check` compare each emission with the oracle.
fn for_each_case(mut check: impl FnMut(usize, &[Vec<(u32, i64)>], u64, u64)) {
    for (seed, (w, s)) in CASES {
        let batches = input(seed);
        for workers in WORKERS {
            check(workers, &batches, w, s);
        }
    }
}

#[test]
fn window_equals_the_concatenated_batches() {
    for_each_case(|workers, batches, w, s| {
        let out = run(workers, batches, |d| d.window(seconds(w), seconds(s)).unwrap());
        let expected: Vec<(u64, Vec<(u32, i64)>)> = emission_times(batches.len(), s)
            .into_iter()
            .map(|t| (t, window_of(batches, t, w)))
            .collect();
        assert_eq!(out, expected, "window {w}/{s} on {workers} workers");
    });
}

#[test]
fn window_of_a_window_keeps_duplicates() {
    for_each_case(|workers, batches, w, s| {
        let out = run(workers, batches, |d| {
            d.window(seconds(w), seconds(s))
                .unwrap()
                .window(seconds(2 * s), seconds(s))
                .unwrap()
        });
        let inner: Vec<Vec<(u32, i64)>> = (1..=batches.len() as u64)
            .map(|t| {
                if t.is_multiple_of(s) {
                    window_of(batches, t, w)
                } else {
                    Vec::new()
                }
            })
            .collect();
        let expected: Vec<(u64, Vec<(u32, i64)>)> = emission_times(batches.len(), s)
            .into_iter()
            .map(|t| (t, window_of(&inner, t, 2 * s)))
            .collect();
        assert_eq!(out, expected, "window {w}/{s} then {}/{s} on {workers} workers", 2 * s);
    });
}

#[test]
fn reduce_by_key_and_window_plain_inverse_and_filtered() {
    for_each_case(|workers, batches, w, s| {
        let (wd, sd) = (seconds(w), seconds(s));
        let plain = run(workers, batches, |d| d.reduce_by_key_and_window(|a, b| a + b, wd, sd).unwrap());
        let inverse = run(workers, batches, |d| {
            d.reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, wd, sd).unwrap()
        });
        let filtered = run(workers, batches, |d| {
            d.reduce_by_key_and_window_inv_filtered(|a, b| a + b, |a, b| a - b, wd, sd, Some(4), |_, v| *v != 0)
                .unwrap()
        });
        let times = emission_times(batches.len(), s);
        assert_eq!(plain.len(), times.len());
        assert_eq!(inverse.len(), times.len());
        assert_eq!(filtered.len(), times.len());
        let mut seen: BTreeSet<u32> = BTreeSet::new();
        for (i, t) in times.into_iter().enumerate() {
            let window = sums(&window_of(batches, t, w));
            seen.extend(window.keys().copied());
            // The incremental form keeps every key it has seen, at 0 once its values left.
            let with_zeros: BTreeMap<u32, i64> = seen.iter().map(|k| (*k, window.get(k).copied().unwrap_or(0))).collect();
            let ctx = format!("time {t}, window {w}/{s}, {workers} workers");
            assert_eq!(plain[i].0, t, "{ctx}");
            assert_eq!(as_map(plain[i].1.clone()), window, "plain, {ctx}");
            assert_eq!(as_map(inverse[i].1.clone()), with_zeros, "inverse, {ctx}");
            assert_eq!(as_map(filtered[i].1.clone()), window, "filtered, {ctx}");
        }
    });
}

#[test]
fn count_by_value_and_window_counts_the_window() {
    for_each_case(|workers, batches, w, s| {
        let out = run(workers, batches, |d| {
            d.map(|(k, _)| k).count_by_value_and_window(seconds(w), seconds(s)).unwrap()
        });
        for (t, items) in out {
            let mut expected: BTreeMap<u32, u64> = BTreeMap::new();
            for (k, _) in window_of(batches, t, w) {
                *expected.entry(k).or_insert(0) += 1;
            }
            assert_eq!(as_map(items), expected, "time {t}, window {w}/{s}, {workers} workers");
        }
    });
}

#[test]
fn group_by_key_and_window_groups_the_window() {
    for_each_case(|workers, batches, w, s| {
        let out = run(workers, batches, |d| d.group_by_key_and_window(seconds(w), seconds(s)).unwrap());
        assert_eq!(out.len(), emission_times(batches.len(), s).len());
        for (t, items) in out {
            let mut expected: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
            for (k, v) in window_of(batches, t, w) {
                expected.entry(k).or_default().push(v);
            }
            let mut got = as_map(items);
            for vs in got.values_mut().chain(expected.values_mut()) {
                vs.sort_unstable();
            }
            assert_eq!(got, expected, "time {t}, window {w}/{s}, {workers} workers");
        }
    });
}

#[test]
fn windowed_counts_and_reduces() {
    for_each_case(|workers, batches, w, s| {
        let (wd, sd) = (seconds(w), seconds(s));
        let counts = run(workers, batches, |d| d.count_by_window(wd, sd).unwrap());
        let plain = run(workers, batches, |d| {
            d.map(|(_, v)| v).reduce_by_window(|a, b| a + b, wd, sd).unwrap()
        });
        let inverse = run(workers, batches, |d| {
            d.map(|(_, v)| v).reduce_by_window_inv(|a, b| a + b, |a, b| a - b, wd, sd).unwrap()
        });
        let mut started = false;
        for (i, t) in emission_times(batches.len(), s).into_iter().enumerate() {
            let window = window_of(batches, t, w);
            started |= !window.is_empty();
            let ctx = format!("time {t}, window {w}/{s}, {workers} workers");
            // Until an element has been seen, the incremental forms emit empty batches.
            let count: Vec<u64> = if started { vec![window.len() as u64] } else { vec![] };
            let sum: i64 = window.iter().map(|(_, v)| v).sum();
            assert_eq!(counts[i], (t, count), "count_by_window, {ctx}");
            let plain_sum: Vec<i64> = if window.is_empty() { vec![] } else { vec![sum] };
            assert_eq!(plain[i], (t, plain_sum), "reduce_by_window, {ctx}");
            let inv_sum: Vec<i64> = if started { vec![sum] } else { vec![] };
            assert_eq!(inverse[i], (t, inv_sum), "reduce_by_window_inv, {ctx}");
        }
    });
}

/// The counter of `BasicOperationsSuite`'s object-lifecycle test: a key idle for two
/// consecutive batches is deleted.
fn expire_after_two_idle(values: Vec<i64>, state: Option<(i64, u32)>) -> Option<(i64, u32)> {
    let (counter, idle) = state.unwrap_or((0, 0));
    let sum: i64 = values.iter().sum();
    let next = if sum == 0 { (counter, idle + 1) } else { (counter + sum, 0) };
    (next.1 < 2).then_some(next)
}

#[test]
fn update_state_by_key_matches_a_sequential_replay() {
    for_each_case(|workers, batches, _, _| {
        let initial: Vec<(u32, (i64, u32))> = vec![(0, (100, 0)), (14, (5, 1)), (99, (7, 0))];
        let init = initial.clone();
        let out = run(workers, batches, move |d| {
            d.update_state_by_key_with_time(|_t, _k: &u32, vs, s| expire_after_two_idle(vs, s), Some(5), Some(init))
        });
        let mut state: BTreeMap<u32, (i64, u32)> = initial.into_iter().collect();
        assert_eq!(out.len(), batches.len());
        for (i, batch) in batches.iter().enumerate() {
            let mut fresh: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
            for (k, v) in batch {
                fresh.entry(*k).or_default().push(*v);
            }
            let keys: BTreeSet<u32> = state.keys().chain(fresh.keys()).copied().collect();
            for k in keys {
                match expire_after_two_idle(fresh.remove(&k).unwrap_or_default(), state.remove(&k)) {
                    Some(s) => state.insert(k, s),
                    None => None,
                };
            }
            assert_eq!(out[i].0, i as u64 + 1);
            assert_eq!(as_map(out[i].1.clone()), state, "batch {}, {workers} workers", i + 1);
        }
    });
}

#[test]
fn map_with_state_matches_a_sequential_replay() {
    for_each_case(|workers, batches, _, _| {
        let timeout = 3u64;
        let full_scan = 2u64;
        let spec = StateSpec::function_with_time(|_t, k: &u32, v: Option<i64>, state: &mut State<i64>| {
            if state.is_timing_out() {
                return Some((*k, -state.get().copied().unwrap_or(0)));
            }
            let sum = v.unwrap_or(0) + state.get().copied().unwrap_or(0);
            state.update(sum);
            Some((*k, sum))
        })
        .timeout(seconds(timeout))
        .num_partitions(4);
        let snapshots = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&snapshots);
        let out = run(workers, batches, move |d| {
            let mapped = d.map_with_state(spec).checkpoint(seconds(full_scan)).unwrap();
            mapped
                .state_snapshots()
                .foreach_rdd(move |b, t| sink.lock().unwrap().push((t.milliseconds() / 1000, b.into_vec())))
                .unwrap();
            mapped.into_dstream()
        });
        let snapshots = std::mem::take(&mut *snapshots.lock().unwrap());
        let mut state: BTreeMap<u32, (i64, u64)> = BTreeMap::new();
        assert_eq!(out.len(), batches.len());
        assert_eq!(snapshots.len(), batches.len());
        for (i, batch) in batches.iter().enumerate() {
            let t = i as u64 + 1;
            let mut expected: Vec<(u32, i64)> = Vec::new();
            for (k, v) in batch {
                let sum = v + state.get(k).map_or(0, |s| s.0);
                state.insert(*k, (sum, t));
                expected.push((*k, sum));
            }
            if t.is_multiple_of(full_scan) {
                let idle: Vec<u32> = state.iter().filter(|(_, (_, last))| *last + timeout < t).map(|(k, _)| *k).collect();
                for k in idle {
                    let (sum, _) = state.remove(&k).unwrap();
                    expected.push((k, -sum));
                }
            }
            let mut got = out[i].1.clone();
            got.sort_unstable();
            expected.sort_unstable();
            // Sorting keeps each key's running sums in order, so this also checks record order.
            assert_eq!(got, expected, "mapped, batch {t}, {workers} workers");
            let expected_state: BTreeMap<u32, i64> = state.iter().map(|(k, (s, _))| (*k, *s)).collect();
            assert_eq!(
                as_map(snapshots[i].1.clone()),
                expected_state,
                "snapshot, batch {t}, {workers} workers"
            );
        }
    });
}
