//! `kill -9` at random moments with everything on object storage: a running word count over a
//! file stream whose input objects arrive under an `s3://` prefix while the job is killed and
//! restarted with `get_or_create` again and again, checkpointed to another prefix and writing
//! every batch's totals with `save_as_text_files` to a third, all on moto's S3 server. In the
//! end the last batch counts every word of every object exactly once, and no committed batch
//! directory ever counted a word more often than the input holds it.
//!
//! The job runs in a child process: this test binary run again with `EMBER_S3_CRASH_CHILD` set,
//! executing only `s3_crash_child`. `EMBER_CRASH_KILLS` sets the number of kills (default 20),
//! `EMBER_CRASH_SEED` repeats a run.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration as StdDuration, Instant};

use ember::prelude::*;
use ember::storage::Location;

const INTERVAL_MS: u64 = 50;
const OBJECTS: usize = 60;
const LINES: usize = 20;

/// Line `j` of input object `i`: two words.
fn line(i: usize, j: usize) -> String {
    format!("w{} w{}", (i * 7 + j * 3) % 23, (i + j * 5) % 31)
}

fn object(i: usize) -> Vec<u8> {
    (0..LINES).map(|j| line(i, j) + "\n").collect::<String>().into_bytes()
}

fn expected_counts() -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for i in 0..OBJECTS {
        for j in 0..LINES {
            for word in line(i, j).split(' ') {
                *counts.entry(word.to_owned()).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// The `state-<ms>` batch directories under `out`, by batch time.
fn state_dirs(out: &Location) -> BTreeMap<u64, String> {
    out.list_dirs()
        .unwrap()
        .into_iter()
        .filter_map(|name| Some((name.strip_prefix("state-")?.parse().ok()?, name)))
        .collect()
}

/// The word counts a committed batch directory holds; `None` when it is not committed.
fn read_counts(dir: &Location) -> Option<BTreeMap<String, u64>> {
    let parts = dir.read_directory().ok()?;
    let mut counts = BTreeMap::new();
    for (_, bytes) in parts {
        for line in String::from_utf8(bytes).unwrap().lines() {
            let (word, n) = line.trim_matches(|c| c == '(' || c == ')').rsplit_once(',').unwrap();
            counts.insert(word.to_owned(), n.parse().unwrap());
        }
    }
    Some(counts)
}

/// The child's side: the job from the checkpoint (or fresh), until every word is counted.
#[test]
fn s3_crash_child() {
    let Ok(spec) = std::env::var("EMBER_S3_CRASH_CHILD") else { return };
    let parts: Vec<&str> = spec.split(';').collect();
    let (input, checkpoint, out, workers) = (parts[0], parts[1], parts[2], parts[3].parse::<usize>().unwrap());
    let expected: u64 = expected_counts().values().sum();
    let resumed = Location::parse(checkpoint)
        .unwrap()
        .list()
        .unwrap()
        .iter()
        .any(|e| e.name.ends_with(".manifest"));
    println!("{}", if resumed { "EMBER-RESUMED" } else { "EMBER-FRESH" });
    let out_dir = Location::parse(out).unwrap();
    if !resumed {
        // A fresh start (no run reached a checkpoint) begins a new batch grid: the batch
        // directories of the runs before it are void.
        for name in state_dirs(&out_dir).into_values() {
            out_dir.delete_all(&name).unwrap();
        }
    }
    let counted = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&counted);
    let ssc = StreamingContext::get_or_create(checkpoint, || {
        let ssc = StreamingContext::builder(milliseconds(INTERVAL_MS)).workers(workers).build()?;
        let totals = ssc
            .file_stream(input, |_: &std::path::Path| true, false)?
            .flat_map(|(_, line)| line.split(' ').map(str::to_owned).collect::<Vec<_>>())
            .map(|w| (w, 1u64))
            .update_state_by_key(|vs: Vec<u64>, s: Option<u64>| Some(vs.iter().sum::<u64>() + s.unwrap_or(0)))
            .checkpoint(milliseconds(5 * INTERVAL_MS))?;
        totals.save_as_text_files(&format!("{out}/state"), "")?;
        totals.foreach_rdd(move |b, _| {
            seen.store(b.collect().iter().map(|(_, n)| n).sum(), Ordering::SeqCst);
        })?;
        Ok(ssc)
    })
    .unwrap();
    ssc.start().unwrap();
    let deadline = Instant::now() + StdDuration::from_secs(120);
    while counted.load(Ordering::SeqCst) < expected {
        if let Err(error) = ssc.await_termination_or_timeout(milliseconds(10)) {
            println!("EMBER-FAILED: {error}");
            std::process::exit(3);
        }
        assert!(Instant::now() < deadline, "the job did not count every word within 2 minutes");
    }
    ssc.stop(true).unwrap();
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
}

fn spawn(spec: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "s3_crash_child", "--nocapture", "--test-threads=1"])
        .env("EMBER_S3_CRASH_CHILD", spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn next(rng: &mut u64) -> u64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    *rng
}

fn killed_at_random_moments_on_s3(workers: usize) {
    let seed = std::env::var("EMBER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let kills: usize = std::env::var("EMBER_CRASH_KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    println!("crash test seed: {seed} (set EMBER_CRASH_SEED to repeat), {kills} kills");
    let (input, checkpoint, out) = (
        ember::testing::s3_test_dir("crash-input"),
        ember::testing::s3_test_dir("crash-checkpoint"),
        ember::testing::s3_test_dir("crash-out"),
    );
    let spec = format!("{input};{checkpoint};{out};{workers}");

    // The input arrives while the job is killed: an object every 100 to 500 ms.
    let feeder = {
        let input = Location::parse(&input).unwrap();
        let mut rng = seed;
        std::thread::spawn(move || {
            for i in 0..OBJECTS {
                input.put(&format!("part-{i:03}.txt"), object(i)).unwrap();
                std::thread::sleep(StdDuration::from_millis(100 + next(&mut rng) % 400));
            }
        })
    };
    let mut rng = seed.rotate_left(17) | 1;
    let mut resumed = 0;
    let checkpoint_dir = Location::parse(&checkpoint).unwrap();
    for kill in 0..kills {
        let mut child = spawn(&spec);
        if kill == 0 {
            // The first run reaches a checkpoint before it is killed: killed again and again
            // before its first checkpoint, a fresh start would read every object there each
            // time (on moto, 20 ms a GET) and never get further.
            let deadline = Instant::now() + StdDuration::from_secs(60);
            while !checkpoint_dir.list().unwrap().iter().any(|e| e.name.ends_with(".manifest")) {
                assert!(Instant::now() < deadline, "the first run wrote no checkpoint within a minute");
                std::thread::sleep(StdDuration::from_millis(10));
            }
        }
        std::thread::sleep(StdDuration::from_millis(50 + next(&mut rng) % 1500));
        // SIGKILL: no destructor, no flush, no stop.
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(!stdout.contains("EMBER-FAILED"), "a run failed: {stdout}");
        resumed += usize::from(stdout.contains("EMBER-RESUMED"));
    }
    feeder.join().unwrap();

    let mut child = spawn(&spec);
    let deadline = Instant::now() + StdDuration::from_secs(180);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the last run did not finish within 3 minutes (seed {seed})");
        }
        std::thread::sleep(StdDuration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the last run failed (seed {seed}): {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{workers} worker(s): {kills} kills, {resumed} of the killed runs had resumed from a checkpoint");
    assert!(resumed > 0, "no killed run resumed from a checkpoint (seed {seed})");

    let expected = expected_counts();
    let out = Location::parse(&out).unwrap();
    let dirs = state_dirs(&out);
    let (last_time, last) = dirs.iter().next_back().expect("no batch was written");
    let last_counts = read_counts(&out.join(last)).unwrap_or_else(|| panic!("{last} is not committed (seed {seed})"));
    assert_eq!(last_counts, expected, "batch {last_time} ms after {kills} kills (seed {seed})");
    for (time, name) in &dirs {
        if let Some(counts) = read_counts(&out.join(name)) {
            for (word, n) in counts {
                assert!(
                    n <= expected[&word],
                    "batch {time} ms counts {word} {n} times, the input has it {} times (seed {seed})",
                    expected[&word]
                );
            }
        }
    }
}

#[test]
fn kill_nine_with_input_checkpoints_and_output_on_s3_counts_every_word_once() {
    killed_at_random_moments_on_s3(2);
}
