//! Operator fusion: chains of narrow operations run in one pass over each partition, inside
//! the operation that reads them, with the same results and the same failure messages as
//! separate operators.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ember::prelude::*;

/// Lines of words, several batches, deterministic.
fn lines(batches: usize) -> Vec<Vec<String>> {
    let mut x = 12345u64;
    (0..batches)
        .map(|_| {
            (0..200)
                .map(|_| {
                    (0..8)
                        .map(|_| {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            format!("w{}", x % 23)
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect()
        })
        .collect()
}

/// The seeds' word count with a filter and a `map_values`, on `workers`; with `split`, an extra
/// output on each intermediate stream keeps every operation its own operator (a stage read by
/// two operations is not fused). Returns each batch's sorted counts and the plan after start.
fn word_count(workers: usize, split: bool) -> (Vec<Vec<(String, u64)>>, String) {
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1))
        .workers(workers)
        .manual_clock(&clock)
        .build()
        .unwrap();
    let input = lines(4);
    let n = input.len() as u64;
    let lines = ssc.replay_stream(input.into_iter().map(Some).collect(), 2);
    let words = lines.flat_map(|l: String| l.split(' ').map(str::to_owned).collect::<Vec<_>>());
    let kept = words.filter(|w: &String| w != "w0");
    let pairs = kept.map(|w| (w, 1u64)).map_values(|n| n * 2);
    let counts = pairs.reduce_by_key(|a, b| a + b);
    if split {
        for stream in [&words, &kept] {
            stream.foreach_rdd(|_, _| {}).unwrap();
        }
        pairs.foreach_rdd(|_, _| {}).unwrap();
    }
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&out);
    counts
        .foreach_rdd(move |b, _| {
            let mut batch = b.collect();
            batch.sort();
            sink.lock().unwrap().push(batch);
        })
        .unwrap();
    ssc.start().unwrap();
    let plan = ssc.explain();
    clock.advance(seconds(n));
    assert!(ssc.await_batch(Time::from_millis(n * 1000), seconds(60)).unwrap());
    ssc.stop(false).unwrap();
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
    let out = std::mem::take(&mut *out.lock().unwrap());
    (out, plan)
}

/// What the word count must give, computed directly.
fn expected() -> Vec<Vec<(String, u64)>> {
    lines(4)
        .into_iter()
        .map(|batch| {
            let mut counts = std::collections::BTreeMap::new();
            for line in batch {
                for w in line.split(' ').filter(|w| *w != "w0") {
                    *counts.entry(w.to_owned()).or_insert(0u64) += 2;
                }
            }
            counts.into_iter().collect()
        })
        .collect()
}

#[test]
fn a_fused_chain_counts_like_separate_operators_on_one_and_two_workers() {
    for workers in [1, 2] {
        let (fused, plan) = word_count(workers, false);
        assert_eq!(fused, expected(), "fused on {workers} worker(s)");
        // flat_map, filter, map and map_values run inside reduce_by_key.
        assert_eq!(plan.matches("fused into its consumer").count(), 4, "{plan}");
        let (separate, plan) = word_count(workers, true);
        assert_eq!(separate, expected(), "separate on {workers} worker(s)");
        // Each stage with a second reader is its own operator; only map runs inside map_values,
        // and map_values (read by an output too) is on its own.
        assert_eq!(plan.matches("fused into its consumer").count(), 1, "{plan}");
        assert!(
            plan.lines().any(|l| l.trim_start().starts_with("map#") && l.contains("fused")),
            "{plan}"
        );
    }
}

#[test]
fn a_stage_read_by_two_operations_runs_once_per_element() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let batches = vec![vec![1u32, 2, 3, 4], vec![5, 6]];
    let out = ember::testing::run_batches_on(2, batches, move |s| {
        let mapped = s.map(move |x: u32| {
            counted.fetch_add(1, Ordering::Relaxed);
            (x % 2, x)
        });
        let sums = mapped.reduce_by_key(|a, b| a + b);
        let doubled = mapped.map_values(|x| x * 2).reduce_by_key(|a, b| a + b);
        sums.union(&doubled).unwrap()
    })
    .unwrap();
    assert_eq!(calls.load(Ordering::Relaxed), 6, "each element mapped once");
    let mut first = out[0].clone();
    first.sort();
    assert_eq!(first, vec![(0, 6), (0, 12), (1, 4), (1, 8)]);
}

#[test]
fn a_flat_map_with_many_results_for_one_element_hands_them_on_a_chunk_at_a_time() {
    // One input element gives 100,000 results from a lazy iterator. The fused `map` after it
    // must see them while the iterator is still running, a chunk behind at most, so that no
    // stage holds one element's results all at once (the memory of a large first batch).
    let produced = Arc::new(AtomicUsize::new(0));
    let lag = Arc::new(AtomicUsize::new(0));
    let (p, seen_p, seen_lag) = (Arc::clone(&produced), Arc::clone(&produced), Arc::clone(&lag));
    let consumed = AtomicUsize::new(0);
    let out = ember::testing::run_batches_on(1, vec![vec![100_000u64]], move |s| {
        s.flat_map(move |n: u64| {
            let p = Arc::clone(&p);
            (0..n).inspect(move |_| {
                p.fetch_add(1, Ordering::Relaxed);
            })
        })
        .map(move |x| {
            let done = consumed.fetch_add(1, Ordering::Relaxed) + 1;
            seen_lag.fetch_max(seen_p.load(Ordering::Relaxed) - done, Ordering::Relaxed);
            (x % 3, 1u64)
        })
        .reduce_by_key(|a, b| a + b)
    })
    .unwrap();
    let mut counts = out[0].clone();
    counts.sort();
    assert_eq!(counts, vec![(0, 33_334), (1, 33_333), (2, 33_333)]);
    assert_eq!(produced.load(Ordering::Relaxed), 100_000);
    let lag = lag.load(Ordering::Relaxed);
    assert!(lag <= 1024, "the map ran up to {lag} results behind the flat_map");
}

#[test]
fn a_panic_in_a_fused_operation_names_that_operation() {
    for (bad, kind) in [
        ("flat", "flat_map#"),
        ("map", "map#"),
        ("filter", "filter#"),
        ("reduce", "reduce_by_key#"),
    ] {
        let clock = ManualClock::new();
        let ssc = StreamingContext::builder(seconds(1))
            .workers(2)
            .manual_clock(&clock)
            .build()
            .unwrap();
        let input = ssc.replay_stream(vec![Some(vec!["a b a".to_owned()]), Some(vec!["c d".to_owned()])], 1);
        let words = input.flat_map(move |l: String| {
            assert!(!(bad == "flat" && l == "c d"), "flat_map fails");
            l.split(' ').map(str::to_owned).collect::<Vec<_>>()
        });
        let kept = words.filter(move |w: &String| {
            assert!(!(bad == "filter" && w == "d"), "filter fails");
            true
        });
        let pairs = kept.map(move |w| {
            assert!(!(bad == "map" && w == "c"), "map fails");
            (w, 1)
        });
        let counts = pairs.reduce_by_key(move |a, b| {
            assert!(bad != "reduce", "reduce fails");
            a + b
        });
        let expected_operator = match bad {
            "flat" => words.operator_name(),
            "filter" => kept.operator_name(),
            "map" => pairs.operator_name(),
            _ => counts.operator_name(),
        };
        assert!(expected_operator.starts_with(kind));
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&out);
        counts
            .foreach_rdd(move |b, t| sink.lock().unwrap().push((t.milliseconds(), b.count())))
            .unwrap();
        ssc.start().unwrap();
        clock.advance(seconds(2));
        assert!(ssc.await_batch(Time::from_millis(2000), seconds(30)).unwrap());
        let err = ssc.await_termination_or_timeout(milliseconds(10)).unwrap_err();
        ssc.stop(false).unwrap();
        match err {
            ember::Error::JobFailed { operator, time, message } => {
                assert_eq!(operator, expected_operator, "{bad}: {message}");
                // The reduce runs on the first batch's repeated word.
                let batch = if bad == "reduce" { 1000 } else { 2000 };
                assert_eq!(time, Time::from_millis(batch), "{bad}");
                assert!(message.contains("fails"), "{message}");
            }
            other => panic!("{bad}: unexpected error {other}"),
        }
    }
}
