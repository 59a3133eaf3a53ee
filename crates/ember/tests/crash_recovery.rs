//! SIGKILL at random moments: a stateful word count (`update_state_by_key` and an incremental
//! window, checkpointed every 5 batches, written with `save_as_text_files`) over a replayable
//! source is killed with `kill -9` again and again and restarted with `get_or_create` each time;
//! the last batch's files equal a run without faults exactly, so no record was lost or counted
//! twice, and no half-written batch directory is left.
//!
//! The same over a file stream fed while the job is killed: every line of every file is counted
//! exactly once in the end, and no batch's state ever counts more.
//!
//! The job runs in a child process: this test binary run again with `EMBER_CRASH_CHILD` set,
//! executing only `crash_child`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration as StdDuration, Instant};

use ember::prelude::*;
use ember::testing::TempDir;

/// Input batches; then 3 empty ones drain the window.
const BATCHES: u64 = 300;
const INTERVAL_MS: u64 = 10;

fn input() -> Vec<Option<Vec<String>>> {
    (0..BATCHES)
        .map(|i| Some((0..20).map(|j| format!("w{}", (i * 7 + j * 13) % 50)).collect()))
        .collect()
}

/// The job: running totals and a 3-batch incremental window, as the seeds' stateful word count,
/// each batch saved under `out` as `state-<ms>` and `window-<ms>`.
fn build(workers: usize, out: &Path) -> ember::Result<StreamingContext> {
    let ssc = StreamingContext::builder(milliseconds(INTERVAL_MS))
        .workers(workers)
        .no_wait()
        .build()?;
    let pairs = ssc.replay_stream(input(), 2).map(|w| (w, 1u64));
    let every = milliseconds(5 * INTERVAL_MS);
    let totals = pairs
        .update_state_by_key(|vs: Vec<u64>, s: Option<u64>| Some(vs.iter().sum::<u64>() + s.unwrap_or(0)))
        .checkpoint(every)?;
    let window = pairs
        .reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, milliseconds(3 * INTERVAL_MS), milliseconds(INTERVAL_MS))?
        .checkpoint(every)?;
    totals.save_as_text_files(&format!("{}/state", out.display()), "")?;
    window.save_as_text_files(&format!("{}/window", out.display()), "")?;
    Ok(ssc)
}

/// The child's side: runs the job from the checkpoint in `dir` (or fresh) to the end.
#[test]
fn crash_child() {
    let Ok(spec) = std::env::var("EMBER_CRASH_CHILD") else { return };
    let mut parts = spec.split(';');
    let (dir, out, workers) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    let files = parts
        .next()
        .map(|input| (input.to_owned(), parts.next().unwrap().parse::<u64>().unwrap()));
    let resumed = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().ends_with(".manifest"))
        })
        .unwrap_or(false);
    println!("{}", if resumed { "EMBER-RESUMED" } else { "EMBER-FRESH" });
    if let Some((input, expected)) = files {
        return files_child(dir, Path::new(out), workers.parse().unwrap(), &input, expected);
    }
    let ssc = StreamingContext::get_or_create(dir, || build(workers.parse().unwrap(), Path::new(out))).unwrap();
    ssc.start().unwrap();
    let last = Time::from_millis((BATCHES + 3) * INTERVAL_MS);
    assert!(ssc.await_batch(last, seconds(120)).unwrap(), "batch {last} did not complete");
    ssc.stop(false).unwrap();
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
}

/// The file-stream job: running word totals of the lines of the files in `input` (read as
/// they appear; those already there at a fresh start too), every batch saved under `out` as
/// `state-<ms>`. Runs until the totals count `expected` words.
fn files_child(dir: &str, out: &Path, workers: usize, input: &str, expected: u64) {
    let counted = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&counted);
    let ssc = StreamingContext::get_or_create(dir, || {
        let ssc = StreamingContext::builder(milliseconds(50)).workers(workers).build()?;
        let totals = ssc
            .file_stream(input, |_: &Path| true, false)?
            .flat_map(|(_, line): (u64, String)| line.split(' ').map(str::to_owned).collect::<Vec<_>>())
            .map(|w| (w, 1u64))
            .update_state_by_key(|vs: Vec<u64>, s: Option<u64>| Some(vs.iter().sum::<u64>() + s.unwrap_or(0)))
            .checkpoint(milliseconds(100))?;
        totals.save_as_text_files(&format!("{}/state", out.display()), "")?;
        totals.foreach_rdd(move |b, _| seen.store(b.iter().map(|(_, n)| n).sum(), Ordering::Release))?;
        Ok(ssc)
    })
    .unwrap();
    ssc.start().unwrap();
    let deadline = Instant::now() + StdDuration::from_secs(120);
    while counted.load(Ordering::Acquire) != expected {
        assert!(counted.load(Ordering::Acquire) <= expected, "counted more words than were written");
        assert!(
            Instant::now() < deadline,
            "only {} of {expected} words counted",
            counted.load(Ordering::Acquire)
        );
        std::thread::sleep(StdDuration::from_millis(10));
    }
    ssc.stop(false).unwrap();
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
}

/// Starts the child (for the file-stream job when `files` holds its input directory and the
/// words it will count); it runs until killed or done.
fn spawn(dir: &Path, out: &Path, workers: usize, files: Option<(&Path, u64)>) -> std::process::Child {
    let mut spec = format!("{};{};{workers}", dir.display(), out.display());
    if let Some((input, expected)) = files {
        spec.push_str(&format!(";{};{expected}", input.display()));
    }
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env("EMBER_CRASH_CHILD", spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs the child to the end (at most 3 minutes); returns its stdout.
fn run_to_end(dir: &Path, out: &Path, workers: usize, files: Option<(&Path, u64)>) -> String {
    let mut child = spawn(dir, out, workers, files);
    let deadline = Instant::now() + StdDuration::from_secs(180);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the job did not finish within 3 minutes");
        }
        std::thread::sleep(StdDuration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the job failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The state after the last batch and the window at the last input batch, each as its sorted
/// lines, read from the batch directories; also checks that no temporary directory is left.
fn results(out: &Path) -> (String, String) {
    let read = |name: String| {
        let dir = out.join(&name);
        assert!(dir.join("_SUCCESS").exists(), "{name} has no _SUCCESS");
        let mut lines: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("part-"))
            .flat_map(|p| std::fs::read_to_string(p).unwrap().lines().map(str::to_owned).collect::<Vec<_>>())
            .collect();
        lines.sort();
        lines.join("\n")
    };
    let leftovers: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "half-written batch directories left: {leftovers:?}");
    (
        read(format!("state-{}", (BATCHES + 3) * INTERVAL_MS)),
        read(format!("window-{}", BATCHES * INTERVAL_MS)),
    )
}

fn killed_at_random_moments(workers: usize, kills: usize, seed: u64) {
    // The run without faults, and how long it takes.
    let (clean_dir, clean_out) = (TempDir::new("crash-clean").unwrap(), TempDir::new("crash-clean-out").unwrap());
    let started = Instant::now();
    run_to_end(clean_dir.path(), clean_out.path(), workers, None);
    let duration = started.elapsed().as_millis().max(50) as u64;
    let expected = results(clean_out.path());
    let total: u64 = expected
        .0
        .lines()
        .map(|l| {
            l.trim_matches(|c| c == '(' || c == ')')
                .split(',')
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(total, BATCHES * 20, "the run without faults lost or repeated words");

    let (dir, out) = (TempDir::new("crash").unwrap(), TempDir::new("crash-out").unwrap());
    let mut rng = seed;
    let mut resumed = 0;
    for _ in 0..kills {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut child = spawn(dir.path(), out.path(), workers, None);
        std::thread::sleep(StdDuration::from_millis(rng % duration));
        // SIGKILL: no destructor, no flush, no stop.
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        if String::from_utf8_lossy(&output.stdout).contains("EMBER-RESUMED") {
            resumed += 1;
        }
    }
    let last = run_to_end(dir.path(), out.path(), workers, None);
    println!("{workers} worker(s): {kills} kills, {resumed} of the killed runs had resumed from a checkpoint");
    assert!(
        resumed > 0 || last.contains("EMBER-RESUMED"),
        "no run resumed from a checkpoint (seed {seed})"
    );
    assert_eq!(
        results(out.path()),
        expected,
        "the result after {kills} kills differs from the run without faults (seed {seed}, {workers} workers)"
    );
}

fn seed() -> u64 {
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
    println!("crash test seed: {seed} (set EMBER_CRASH_SEED to repeat)");
    seed
}

fn kills() -> usize {
    std::env::var("EMBER_CRASH_KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(10)
}

#[test]
fn kill_nine_at_random_moments_on_one_worker_loses_and_repeats_nothing() {
    killed_at_random_moments(1, kills(), seed());
}

#[test]
fn kill_nine_at_random_moments_on_two_workers_loses_and_repeats_nothing() {
    killed_at_random_moments(2, kills(), seed());
}

/// The words of every file of a file-stream crash test, counted.
fn word_counts(files: &[String]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for text in files {
        for word in text.lines().flat_map(|l| l.split(' ')) {
            *counts.entry(word.to_owned()).or_insert(0) += 1;
        }
    }
    counts
}

/// Reads a `state-<ms>` directory as word counts.
fn read_counts(dir: &Path) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.file_name().unwrap().to_string_lossy().starts_with("part-") {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let (word, n) = line.trim_matches(|c| c == '(' || c == ')').rsplit_once(',').unwrap();
            counts.insert(word.to_owned(), n.parse().unwrap());
        }
    }
    counts
}

#[test]
fn kill_nine_while_files_arrive_counts_every_line_once() {
    let seed = seed();
    let files: Vec<String> = (0..60u64)
        .map(|i| {
            (0..5)
                .map(|l| {
                    (0..4)
                        .map(|j| format!("f{}", (i * 7 + l * 3 + j) % 23))
                        .collect::<Vec<_>>()
                        .join(" ")
                        + "\n"
                })
                .collect()
        })
        .collect();
    let expected = word_counts(&files);
    let total: u64 = expected.values().sum();
    let (input, dir, out) = (
        TempDir::new("crash-files-in").unwrap(),
        TempDir::new("crash-files").unwrap(),
        TempDir::new("crash-files-out").unwrap(),
    );
    // Files appear one by one, atomically, while the job is killed and restarted.
    let feeder = {
        let (input, files) = (input.path().to_owned(), files.clone());
        std::thread::spawn(move || {
            for (i, text) in files.iter().enumerate() {
                let tmp = input.join(format!(".f{i}.tmp"));
                std::fs::write(&tmp, text).unwrap();
                std::fs::rename(&tmp, input.join(format!("f{i}.txt"))).unwrap();
                std::thread::sleep(StdDuration::from_millis(25));
            }
        })
    };
    let mut rng = seed;
    for _ in 0..kills() {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut child = spawn(dir.path(), out.path(), 2, Some((input.path(), total)));
        std::thread::sleep(StdDuration::from_millis(100 + rng % 400));
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        // A run that got to the end before the kill must not have failed.
        assert!(
            output.status.code().is_none_or(|c| c == 0),
            "a run failed (seed {seed}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    feeder.join().unwrap();
    run_to_end(dir.path(), out.path(), 2, Some((input.path(), total)));
    // Every batch's state counted each word at most as often as it was written; the last one
    // exactly as often.
    let mut states: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_string_lossy().into_owned();
            Some((name.strip_prefix("state-")?.parse().ok()?, p))
        })
        .collect();
    states.sort();
    for (time, path) in &states {
        for (word, n) in read_counts(path) {
            assert!(
                n <= expected[&word],
                "batch {time} ms counted {word} {n} times, written {} (seed {seed})",
                expected[&word]
            );
        }
    }
    let (_, last) = states.last().expect("no batch was written");
    assert_eq!(
        read_counts(last),
        expected,
        "the final state differs from the words written (seed {seed})"
    );
}
