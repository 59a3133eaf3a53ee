//! `partition_by` on pair streams: every batch in exactly `n` partitions, each key's elements in
//! one partition (the partitioner's, for `partition_by_with`), nothing lost or combined, on 1
//! and 2 workers; a partitioner placing a key out of range fails its batch, naming it.

use std::sync::{Arc, Mutex};

use ember::prelude::*;

type Seen = Arc<Mutex<Vec<(u64, Vec<Vec<(String, u32)>>)>>>;

fn input() -> Vec<Option<Vec<(String, u32)>>> {
    let batch = |n: u32| (0..n).map(|i| (format!("k{}", i % 7), i)).collect::<Vec<_>>();
    vec![Some(batch(40)), Some(vec![]), None, Some(batch(9))]
}

fn run(workers: usize, build: impl FnOnce(&DStream<(String, u32)>) -> DStream<(String, u32)>) -> (Seen, StreamingContext) {
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1))
        .workers(workers)
        .manual_clock(&clock)
        .build()
        .unwrap();
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    build(&ssc.replay_stream(input(), 2))
        .foreach_rdd(move |b, t| sink.lock().unwrap().push((t.milliseconds(), b.partitions().to_vec())))
        .unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(4));
    assert!(ssc.await_batch(Time::from_millis(4000), seconds(30)).unwrap());
    (seen, ssc)
}

fn sorted(mut v: Vec<(String, u32)>) -> Vec<(String, u32)> {
    v.sort();
    v
}

#[test]
fn every_batch_has_n_partitions_and_each_key_one_partition() {
    for workers in [1, 2] {
        let (seen, ssc) = run(workers, |s| s.partition_by(3).unwrap());
        ssc.stop(false).unwrap();
        let seen = seen.lock().unwrap().clone();
        // The batch without an RDD is not output, as for every operator.
        assert_eq!(
            seen.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            [1000, 2000, 4000],
            "{workers} workers"
        );
        for ((time, parts), want) in seen.iter().zip([input()[0].clone(), input()[1].clone(), input()[3].clone()]) {
            assert_eq!(parts.len(), 3, "batch {time} on {workers} workers");
            let all: Vec<(String, u32)> = parts.iter().flatten().cloned().collect();
            assert_eq!(sorted(all), sorted(want.unwrap()), "nothing lost or combined");
            for key in (0..7).map(|i| format!("k{i}")) {
                let holding = parts.iter().filter(|p| p.iter().any(|(k, _)| *k == key)).count();
                assert!(holding <= 1, "{key} in {holding} partitions of batch {time}");
            }
        }
    }
}

#[test]
fn a_users_partitioner_decides_each_keys_partition() {
    let (seen, ssc) = run(2, |s| {
        s.partition_by_with(2, |k: &String| k[1..].parse::<usize>().unwrap_or(0) % 2)
            .unwrap()
    });
    ssc.stop(false).unwrap();
    for (time, parts) in seen.lock().unwrap().iter() {
        assert_eq!(parts.len(), 2, "batch {time}");
        for (p, part) in parts.iter().enumerate() {
            assert!(
                part.iter().all(|(k, _)| k[1..].parse::<usize>().unwrap() % 2 == p),
                "batch {time}: {part:?}"
            );
        }
    }
}

#[test]
fn a_key_placed_out_of_range_fails_its_batch_naming_the_partition() {
    let (seen, ssc) = run(2, |s| s.partition_by_with(2, |k: &String| if k == "k5" { 5 } else { 0 }).unwrap());
    let error = ssc.await_termination_or_timeout(milliseconds(10)).unwrap_err();
    ssc.stop(false).unwrap();
    let text = error.to_string();
    assert!(
        text.contains("partition_by") && text.contains("partition 5, but there are 2 partitions"),
        "{text}"
    );
    // Batch 1 has the key and fails; batch 2 (empty) goes on; batch 4 has k5 too.
    let times: Vec<u64> = seen.lock().unwrap().iter().map(|(t, _)| *t).collect();
    assert_eq!(times, [2000]);
    assert!(
        StreamingContext::new(seconds(1))
            .unwrap()
            .replay_stream(input(), 1)
            .partition_by(0)
            .is_err()
    );
}
