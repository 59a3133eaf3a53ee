//! The same program gives the same results (as multisets) on 1, 2 and 4 worker threads and
//! on 2 processes over loopback TCP.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use ember::prelude::*;
use ember::testing::run_batches_on;

/// Seeded pseudo-random lines of words.
fn lines(batches: usize, per_batch: usize, seed: u64) -> Vec<Vec<String>> {
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..batches)
        .map(|_| {
            (0..per_batch)
                .map(|_| (0..6).map(|_| format!("w{}", next() % 50)).collect::<Vec<_>>().join(" "))
                .collect()
        })
        .collect()
}

fn word_count(s: DStream<String>) -> DStream<(String, u64)> {
    s.flat_map(|l: String| l.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .map(|w| (w, 1u64))
        .reduce_by_key(|a, b| a + b)
}

/// The naive recomputation: counts per batch from scratch.
fn oracle(input: &[Vec<String>]) -> Vec<BTreeMap<String, u64>> {
    input
        .iter()
        .map(|batch| {
            let mut m = BTreeMap::new();
            for l in batch {
                for w in l.split(' ') {
                    *m.entry(w.to_owned()).or_insert(0) += 1;
                }
            }
            m
        })
        .collect()
}

fn as_maps(out: Vec<Vec<(String, u64)>>) -> Vec<BTreeMap<String, u64>> {
    out.into_iter()
        .map(|b| {
            let mut m = BTreeMap::new();
            for (k, v) in b {
                assert!(m.insert(k.clone(), v).is_none(), "key {k} appears twice in one batch");
            }
            m
        })
        .collect()
}

#[test]
fn word_count_is_identical_on_1_2_and_4_threads() {
    let input = lines(6, 200, 7);
    let expected = oracle(&input);
    for workers in [1, 2, 4] {
        let out = run_batches_on(workers, input.clone(), word_count).unwrap();
        assert_eq!(as_maps(out), expected, "{workers} workers");
    }
}

#[test]
fn joins_and_groups_are_identical_on_1_and_3_threads() {
    let input: Vec<Vec<(u32, u32)>> = (0..4).map(|b| (0..300).map(|i| ((i * 7 + b) % 23, i)).collect()).collect();
    let run = |workers| {
        run_batches_on(workers, input.clone(), |s| {
            let grouped = s.group_by_key().map_values(|mut v: Vec<u32>| {
                v.sort();
                v
            });
            let joined = s.join(&s.map_values(|v| v * 2)).count();
            grouped
                .map(|(k, v)| (k, v.len() as u64))
                .union(&joined.map(|n| (u32::MAX, n)))
                .unwrap()
        })
        .unwrap()
        .into_iter()
        .map(|mut b| {
            b.sort();
            b
        })
        .collect::<Vec<_>>()
    };
    assert_eq!(run(1), run(3));
}

/// Runs as one process of a 2-process cluster when `EMBER_CLUSTER_PROCESS` is set (the test
/// below starts this test binary twice); otherwise does nothing.
#[test]
fn cluster_child() {
    let Ok(process) = std::env::var("EMBER_CLUSTER_PROCESS") else {
        return;
    };
    let process: usize = process.parse().unwrap();
    // libtest has printed `test cluster_child ... ` without a newline: end that line so every
    // batch line starts a line of its own.
    println!();
    let addresses: Vec<String> = std::env::var("EMBER_CLUSTER_ADDRESSES")
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect();
    let input = lines(5, 100, 11);
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1))
        .workers(2)
        .cluster(process, addresses)
        .manual_clock(&clock)
        .build()
        .unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&out);
    word_count(ssc.replay_stream(input.into_iter().map(Some).collect(), 3))
        .foreach_rdd(move |b, t| sink.lock().unwrap().push((t.milliseconds(), b.collect())))
        .unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(5));
    assert!(ssc.await_batch(Time::from_millis(5000), seconds(60)).unwrap());
    ssc.stop(true).unwrap();
    if process == 0 {
        for (t, batch) in out.lock().unwrap().iter() {
            let mut batch = batch.clone();
            batch.sort();
            println!("BATCH {t} {batch:?}");
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn word_count_is_identical_on_2_processes() {
    if std::env::var("EMBER_CLUSTER_PROCESS").is_ok() {
        return;
    }
    let addresses = format!("127.0.0.1:{},127.0.0.1:{}", free_port(), free_port());
    let exe = std::env::current_exe().unwrap();
    let spawn = |p: usize| {
        std::process::Command::new(&exe)
            .args(["--exact", "cluster_child", "--nocapture", "--test-threads", "1"])
            .env("EMBER_CLUSTER_PROCESS", p.to_string())
            .env("EMBER_CLUSTER_ADDRESSES", &addresses)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (p0, p1) = (spawn(0), spawn(1));
    let (o0, o1) = (p0.wait_with_output().unwrap(), p1.wait_with_output().unwrap());
    assert!(o0.status.success(), "process 0 failed: {}", String::from_utf8_lossy(&o0.stderr));
    assert!(o1.status.success(), "process 1 failed: {}", String::from_utf8_lossy(&o1.stderr));
    let stdout = String::from_utf8_lossy(&o0.stdout);
    let got: Vec<&str> = stdout.lines().filter(|l| l.starts_with("BATCH ")).collect();
    let expected: Vec<String> = oracle(&lines(5, 100, 11))
        .into_iter()
        .enumerate()
        .map(|(i, m)| format!("BATCH {} {:?}", (i + 1) * 1000, m.into_iter().collect::<Vec<_>>()))
        .collect();
    assert_eq!(got, expected);
}
