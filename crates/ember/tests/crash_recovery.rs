//! SIGKILL at random moments: a stateful word count (`update_state_by_key` and an incremental
//! window, checkpointed every 5 batches, written with `save_as_text_files`) over a replayable
//! source is killed with `kill -9` again and again and restarted with `get_or_create` each time;
//! the last batch's files equal a run without faults exactly, so no record was lost or counted
//! twice, and no half-written batch directory is left.
//!
//! The same over a file stream fed while the job is killed: every line of every file is counted
//! exactly once in the end, and no batch's state ever counts more.
//!
//! The same job as a cluster of 2 processes where one of them, chosen at random, is killed: the
//! other exits naming it within 10 s, and the cluster restarted with `get_or_create` ends with
//! the same files as the run without faults. And a checkpoint written by the cluster restores in
//! a single process, and the reverse.
//!
//! The cluster mode (`cluster_killed_at_random_moments`): the file-stream job on 2 processes of
//! 2 workers, a random process killed while the processes join, in the catch-up right after a
//! launch, or later, and restarts on 2 processes and on 1, at least 100 cluster kills; every
//! survivor must exit by itself, never by a signal.
//!
//! The job runs in a child process: this test binary run again with `EMBER_CRASH_CHILD` set,
//! executing only `crash_child` (as one process of a cluster with `EMBER_CRASH_CLUSTER`, and
//! stopping gracefully after batch `EMBER_CRASH_STOP_AT` ms if set).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration as StdDuration, Instant};

mod common;

use common::read_counts;
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

/// The context builder of a child: `workers` threads, in a cluster when `cluster` is
/// "process;address,address;control address".
fn builder(interval_ms: u64, workers: usize, cluster: Option<&str>) -> ember::StreamingContextBuilder {
    // 5 s rather than the default 60: the other processes of a killed one wait that long.
    common::child_builder(interval_ms, workers, cluster, seconds(5))
}

/// The stateful word count of the seeds on `words`: running totals and a 3-batch incremental
/// window, checkpointed every `every_batches`, each batch saved under `out` as `state-<ms>` and
/// `window-<ms>`; returns the totals.
fn word_count(words: &DStream<String>, interval_ms: u64, every_batches: u64, out: &Path) -> ember::Result<DStream<(String, u64)>> {
    let pairs = words.map(|w| (w, 1u64));
    let every = milliseconds(every_batches * interval_ms);
    let totals = pairs
        .update_state_by_key(|vs: Vec<u64>, s: Option<u64>| Some(vs.iter().sum::<u64>() + s.unwrap_or(0)))
        .checkpoint(every)?;
    let window = pairs
        .reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, milliseconds(3 * interval_ms), milliseconds(interval_ms))?
        .checkpoint(every)?;
    totals.save_as_text_files(&format!("{}/state", out.display()), "")?;
    window.save_as_text_files(&format!("{}/window", out.display()), "")?;
    Ok(totals)
}

/// The replay job: the word count over a replayable source, batches as fast as it goes.
fn build(workers: usize, out: &Path, cluster: Option<&str>) -> ember::Result<StreamingContext> {
    let ssc = builder(INTERVAL_MS, workers, cluster).no_wait().build()?;
    word_count(&ssc.replay_stream(input(), 2), INTERVAL_MS, 5, out)?;
    Ok(ssc)
}

/// Ends the child with exit code 3 and the error on stdout (in a cluster, the loss of the
/// other process ends the job with an error naming it).
fn fail_child(error: ember::Error) -> ! {
    println!("EMBER-FAILED: {error}");
    std::process::exit(3);
}

/// Runs a started job: process 1 of a cluster until process 0 stops the cluster (the files
/// are written there); otherwise until `done`, then stops (gracefully with `graceful`).
fn run_child(ssc: &StreamingContext, cluster: Option<&str>, graceful: bool, done: impl Fn() -> bool) {
    if cluster.is_some_and(|c| !c.starts_with("0;")) {
        if let Err(error) = ssc.await_termination() {
            fail_child(error);
        }
        return;
    }
    let deadline = Instant::now() + StdDuration::from_secs(120);
    while !done() {
        if let Err(error) = ssc.await_termination_or_timeout(milliseconds(10)) {
            fail_child(error);
        }
        assert!(Instant::now() < deadline, "the job did not finish within 2 minutes");
    }
    // In a cluster, the other process may be killed while this one stops.
    if let Err(error) = ssc.stop(graceful) {
        fail_child(error);
    }
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
}

/// The child's side: runs the job from the checkpoint in `dir` (or fresh) to the end.
#[test]
fn crash_child() {
    let Ok(spec) = std::env::var("EMBER_CRASH_CHILD") else { return };
    let mut parts = spec.split(';');
    let (dir, out, workers) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    let workers = workers.parse().unwrap();
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
    let cluster = std::env::var("EMBER_CRASH_CLUSTER").ok();
    let cluster = cluster.as_deref();
    if let Some((input, expected)) = files {
        if !resumed && cluster.is_none_or(|c| c.starts_with("0;")) {
            // A fresh start (no run reached a checkpoint) begins a new batch grid with nothing
            // to continue: the batches of the runs before it are void.
            clear_batches(Path::new(out));
        }
        return files_child(dir, Path::new(out), workers, cluster, &input, expected);
    }
    let stop_at = std::env::var("EMBER_CRASH_STOP_AT").ok().map(|ms| ms.parse::<u64>().unwrap());
    let ssc = StreamingContext::get_or_create(dir, || build(workers, Path::new(out), cluster)).unwrap();
    if let Err(error) = ssc.start() {
        fail_child(error);
    }
    let last = Time::from_millis(stop_at.unwrap_or((BATCHES + 3) * INTERVAL_MS));
    run_child(&ssc, cluster, stop_at.is_some(), || {
        ssc.await_batch(last, milliseconds(10)).unwrap()
    });
}

/// Removes the `state-<ms>` and `window-<ms>` batch directories under `out`.
fn clear_batches(out: &Path) {
    for entry in std::fs::read_dir(out).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("state-") || name.starts_with("window-") {
            std::fs::remove_dir_all(&path).unwrap();
        }
    }
}

/// The batch interval of the file-stream job.
const FILES_INTERVAL_MS: u64 = 50;

/// The live-input job: the word count of the lines of the files in `input` (read as they
/// appear; those already there at a fresh start too), or of the lines an acknowledging sender
/// on `socket:<port>` sends, with the write-ahead log. Runs until the totals count `expected`
/// words.
fn files_child(dir: &str, out: &Path, workers: usize, cluster: Option<&str>, input: &str, expected: u64) {
    let counted = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&counted);
    let ssc = StreamingContext::get_or_create(dir, || {
        let words = if let Some(port) = input.strip_prefix("socket:") {
            let ssc = builder(FILES_INTERVAL_MS, workers, cluster).write_ahead_log(true).build()?;
            let lines = ssc.socket_text_stream_acknowledged("127.0.0.1", port.parse().unwrap());
            (ssc, lines)
        } else {
            let ssc = builder(FILES_INTERVAL_MS, workers, cluster).build()?;
            let lines = ssc.file_stream(input, |_: &Path| true, false)?.map(|(_, line): (u64, String)| line);
            (ssc, lines)
        };
        let (ssc, words) = (
            words.0,
            words.1.flat_map(|line| line.split(' ').map(str::to_owned).collect::<Vec<_>>()),
        );
        let totals = word_count(&words, FILES_INTERVAL_MS, 2, out)?;
        totals.foreach_rdd(move |b, _| seen.store(b.iter().map(|(_, n)| n).sum(), Ordering::Release))?;
        Ok(ssc)
    })
    .unwrap();
    if let Err(error) = ssc.start() {
        fail_child(error);
    }
    println!("EMBER-STARTED");
    run_child(&ssc, cluster, false, || {
        let counted = counted.load(Ordering::Acquire);
        assert!(counted <= expected, "counted {counted} words, more than the {expected} written");
        counted == expected
    });
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
    std::env::var("EMBER_CRASH_KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(20)
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

/// Checks that every batch since the last fresh start wrote its totals (a checkpoint never
/// covers a batch whose outputs did not run), and every `window-<ms>` batch against the running
/// totals: the window of 3 batches at `t` counts exactly what the totals gained since
/// `t - 3 batches` (a batch counted twice or lost after a recovery breaks this). Returns the
/// number of windows checked.
fn check_windows(out: &Path, interval_ms: u64, seed: u64) -> usize {
    let batches = |prefix: &str| -> BTreeMap<u64, std::path::PathBuf> {
        std::fs::read_dir(out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter_map(|p| {
                let name = p.file_name()?.to_string_lossy().into_owned();
                Some((name.strip_prefix(prefix)?.parse().ok()?, p))
            })
            .collect()
    };
    let (states, windows) = (batches("state-"), batches("window-"));
    let first = *states.keys().next().expect("no batch was written");
    let missing: Vec<u64> = states
        .keys()
        .zip(states.keys().skip(1))
        .filter(|(a, b)| **b - **a != interval_ms)
        .map(|(a, _)| a + interval_ms)
        .collect();
    assert!(
        missing.is_empty(),
        "no totals were written for the batches from {missing:?} ms on (seed {seed})"
    );
    // The last run stops without grace once its totals are written: the last batch's window
    // may be dropped with it (and that batch is in no checkpoint).
    let last = *states.keys().last().unwrap_or(&0);
    let no_window: Vec<&u64> = states.keys().filter(|t| **t != last && !windows.contains_key(*t)).collect();
    assert!(
        no_window.is_empty(),
        "no window was written for the batches at {no_window:?} ms (totals from {first} to {last} ms; seed {seed})"
    );
    for (time, window) in &windows {
        let now = read_counts(&states[time]);
        let before = time
            .checked_sub(3 * interval_ms)
            .filter(|t| *t >= first)
            .map(|t| read_counts(&states[&t]))
            .unwrap_or_default();
        let window = read_counts(window);
        for word in now.keys().chain(window.keys()) {
            let gained = now.get(word).unwrap_or(&0) - before.get(word).unwrap_or(&0);
            assert_eq!(
                window.get(word).copied().unwrap_or(0),
                gained,
                "the window at {time} ms counts {word} differently from the totals (seed {seed})"
            );
        }
    }
    windows.len()
}

/// A sender speaking the acknowledged socket stream's protocol: for each connection, reads
/// `EMBER-RESUME <n>` and sends `lines` from `n` on, 20 lines every 20 ms, then holds the
/// connection open until the receiver closes it. Returns its port.
fn acknowledged_sender(lines: Vec<String>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let lines = Arc::new(lines);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                use std::io::{BufRead, Write};
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut hello = String::new();
                // A receiver killed before it said where to resume.
                if reader.read_line(&mut hello).is_err() {
                    return;
                }
                let Some(from) = hello.trim().strip_prefix("EMBER-RESUME ").and_then(|n| n.parse::<usize>().ok()) else {
                    return;
                };
                let mut writer = stream;
                for chunk in lines[from.min(lines.len())..].chunks(20) {
                    if writer.write_all(chunk.concat().as_bytes()).is_err() {
                        return;
                    }
                    std::thread::sleep(StdDuration::from_millis(20));
                }
                // Acknowledgements, until the receiver goes.
                let mut ack = String::new();
                while reader.read_line(&mut ack).is_ok_and(|n| n > 0) {
                    ack.clear();
                }
            });
        }
    });
    port
}

/// The live-input job on 1 or 2 workers, or on a 2-process cluster (`workers == 0`), killed
/// while its input arrives (files appearing, or lines from an acknowledging sender with the
/// write-ahead log on): every line counted exactly once in the end, no batch's totals ever
/// counting more, and every window consistent with the totals.
fn input_killed_at_random_moments(workers: usize, socket: bool) {
    let seed = seed();
    let files = live_input(if socket { 150 } else { 60 });
    let expected = word_counts(&files);
    let total: u64 = expected.values().sum();
    let (input, dir, out, logs) = (
        TempDir::new("crash-files-in").unwrap(),
        TempDir::new("crash-files").unwrap(),
        TempDir::new("crash-files-out").unwrap(),
        TempDir::new("crash-files-logs").unwrap(),
    );
    // Lines come from a sender, or files appear one by one, atomically, while the job is
    // killed and restarted.
    let (source, feeder) = if socket {
        let lines = files.iter().flat_map(|f| f.split_inclusive('\n').map(str::to_owned)).collect();
        (format!("socket:{}", acknowledged_sender(lines)), None)
    } else {
        let (input_dir, files) = (input.path().to_owned(), files.clone());
        let feeder = std::thread::spawn(move || {
            let input = input_dir;
            for (i, text) in files.iter().enumerate() {
                let tmp = input.join(format!(".f{i}.tmp"));
                std::fs::write(&tmp, text).unwrap();
                std::fs::rename(&tmp, input.join(format!("f{i}.txt"))).unwrap();
                std::thread::sleep(StdDuration::from_millis(50));
            }
        });
        (input.path().display().to_string(), Some(feeder))
    };
    let child = format!("{};{};1;{source};{total}", dir.path().display(), out.path().display());
    let mut rng = seed;
    let kills = kills();
    for round in 0..kills {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        if workers == 0 {
            let mut cluster = Cluster::spawn_child(&child, logs.path(), round, None);
            std::thread::sleep(StdDuration::from_millis(200 + rng % 600));
            cluster.kill_one((rng >> 20).is_multiple_of(2), seed);
            continue;
        }
        let mut child = spawn(dir.path(), out.path(), workers, Some((Path::new(&source), total)));
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
    if let Some(feeder) = feeder {
        feeder.join().unwrap();
    }
    if workers == 0 {
        Cluster::spawn_child(&child, logs.path(), kills, None).run_to_end();
    } else {
        run_to_end(dir.path(), out.path(), workers, Some((Path::new(&source), total)));
    }
    let windows = check_live_results(out.path(), &expected, seed);
    let layout = if workers == 0 {
        "a 2-process cluster".to_owned()
    } else {
        format!("{workers} worker(s)")
    };
    let input = if socket {
        "acknowledged socket with the write-ahead log"
    } else {
        "file stream"
    };
    println!("{input} on {layout}: {kills} kills, {windows} windows checked");
}

/// The live-input job's files: `n` files of 5 lines of 4 words.
fn live_input(n: u64) -> Vec<String> {
    (0..n)
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
        .collect()
}

/// Checks the live-input job's batches under `out` after its last run: every batch's state
/// counted each word at most as often as it was written and the last one exactly as often,
/// every batch since the last fresh start has its totals and its window, and every window is
/// consistent with the totals. Returns the number of windows checked.
fn check_live_results(out: &Path, expected: &BTreeMap<String, u64>, seed: u64) -> usize {
    let mut states: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(out)
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
        &read_counts(last),
        expected,
        "the final state differs from the words written (seed {seed})"
    );
    check_windows(out, FILES_INTERVAL_MS, seed)
}

#[test]
fn kill_nine_while_files_arrive_counts_every_line_once_on_one_worker() {
    input_killed_at_random_moments(1, false);
}

#[test]
fn kill_nine_while_files_arrive_counts_every_line_once_on_two_workers() {
    input_killed_at_random_moments(2, false);
}

/// The crash suite's cluster mode: the live file-stream job on a 2-process cluster with 2
/// workers each, one process chosen at random SIGKILLed at a random moment of one of three
/// phases: while the processes join (before the launch), in the first 0.3 s after the launch
/// (when a restarted cluster runs the batches it missed back to back), or later in the run. A
/// quarter of the runs are one process with 2 workers instead, killed too, so the cluster
/// restarts from a checkpoint one process wrote, and the reverse. The survivor of every
/// cluster kill must exit by itself within 10 s, with success (it had finished) or with its
/// error naming the lost process, never by a signal (SIGABRT). In the end every line is
/// counted exactly once, no batch counted more, every batch since the fresh start has its
/// totals and its window, and every window agrees with the totals.
///
/// `EMBER_CRASH_CLUSTER_KILLS` sets the number of cluster kills (100 by default).
fn cluster_killed_at_random_moments(cluster_kills: usize) {
    let seed = seed();
    let files = live_input(200);
    let expected = word_counts(&files);
    let total: u64 = expected.values().sum();
    let (input, dir, out, logs) = (
        TempDir::new("crash-mode-in").unwrap(),
        TempDir::new("crash-mode").unwrap(),
        TempDir::new("crash-mode-out").unwrap(),
        TempDir::new("crash-mode-logs").unwrap(),
    );
    // The files arrive over most of the run (a round takes about a second).
    let pace = StdDuration::from_millis((cluster_kills as u64 * 4).clamp(50, 1000));
    let feeder = {
        let (input, files) = (input.path().to_owned(), files.clone());
        std::thread::spawn(move || {
            for (i, text) in files.iter().enumerate() {
                let tmp = input.join(format!(".f{i}.tmp"));
                std::fs::write(&tmp, text).unwrap();
                std::fs::rename(&tmp, input.join(format!("f{i}.txt"))).unwrap();
                std::thread::sleep(pace);
            }
        })
    };
    let source = input.path().display().to_string();
    let child = format!("{};{};2;{source};{total}", dir.path().display(), out.path().display());
    let (mut rng, mut round) = (seed, 0);
    let (mut phases, mut single, mut resumed) = ([0usize; 3], 0, 0);
    while phases.iter().sum::<usize>() < cluster_kills {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        round += 1;
        if rng.is_multiple_of(4) {
            // One process with 2 workers, from (and for) the cluster's checkpoints.
            let mut child = spawn(dir.path(), out.path(), 2, Some((input.path(), total)));
            std::thread::sleep(StdDuration::from_millis(100 + (rng >> 8) % 900));
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            assert!(
                output.status.code().is_none_or(|c| c == 0),
                "a single-process run failed (seed {seed}): {}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            single += 1;
            continue;
        }
        let mut cluster = Cluster::spawn_child(&child, logs.path(), round, None);
        let phase = match (rng >> 8) % 6 {
            0 => 0,
            1 | 2 => 1,
            _ => 2,
        };
        let wait = (rng >> 16) % 1000;
        match phase {
            0 => std::thread::sleep(StdDuration::from_millis(wait * 4 / 10)),
            _ => {
                cluster.await_started(seed);
                let after = if phase == 1 { wait * 3 / 10 } else { 300 + wait * 12 / 10 };
                std::thread::sleep(StdDuration::from_millis(after));
            }
        }
        if cluster.kill_one((rng >> 40).is_multiple_of(2), seed) {
            resumed += 1;
        }
        phases[phase] += 1;
    }
    feeder.join().unwrap();
    Cluster::spawn_child(&child, logs.path(), round + 1, None).run_to_end();
    let windows = check_live_results(out.path(), &expected, seed);
    println!(
        "cluster mode (file stream, 2 processes x 2 workers): {cluster_kills} cluster kills ({} while joining, {} in the first 0.3 s after the launch, {} later; {resumed} of the killed runs had resumed from a checkpoint), {single} single-process kills, {windows} windows checked, 0 lost, 0 repeated, 0 missing",
        phases[0], phases[1], phases[2]
    );
}

#[test]
fn kill_nine_of_a_random_process_of_a_cluster_at_random_moments_while_files_arrive_counts_every_line_once() {
    if std::env::var("EMBER_CRASH_CHILD").is_ok() {
        return;
    }
    let kills = std::env::var("EMBER_CRASH_CLUSTER_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    cluster_killed_at_random_moments(kills);
}

#[test]
fn kill_nine_while_a_socket_sends_counts_every_line_once_on_one_worker() {
    input_killed_at_random_moments(1, true);
}

#[test]
fn kill_nine_while_a_socket_sends_counts_every_line_once_on_two_workers() {
    input_killed_at_random_moments(2, true);
}

#[test]
fn kill_nine_of_one_process_of_a_cluster_while_a_socket_sends_counts_every_line_once() {
    input_killed_at_random_moments(0, true);
}

/// A 2-process cluster (1 worker each) running the replay job; each process's stdout and
/// stderr go to files in `logs`.
struct Cluster {
    children: Vec<std::process::Child>,
    logs: Vec<(std::path::PathBuf, std::path::PathBuf)>,
}

impl Cluster {
    /// The replay job on `dir` and `out`, 1 worker per process.
    fn spawn(dir: &Path, out: &Path, logs: &Path, round: usize, stop_at: Option<u64>) -> Cluster {
        Cluster::spawn_child(&format!("{};{};1", dir.display(), out.display()), logs, round, stop_at)
    }

    /// The job `child` (see `crash_child`) on both processes.
    fn spawn_child(child: &str, logs: &Path, round: usize, stop_at: Option<u64>) -> Cluster {
        let (addresses, control) = common::cluster_addresses();
        let mut cluster = Cluster {
            children: Vec::new(),
            logs: Vec::new(),
        };
        for process in 0..2 {
            let (stdout, stderr) = (
                logs.join(format!("round-{round}-p{process}.out")),
                logs.join(format!("round-{round}-p{process}.err")),
            );
            let mut command = Command::new(std::env::current_exe().unwrap());
            command
                .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
                .env("EMBER_CRASH_CHILD", child)
                .env("EMBER_CRASH_CLUSTER", format!("{process};{addresses};{control}"))
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&stdout).unwrap())
                .stderr(std::fs::File::create(&stderr).unwrap());
            if let Some(ms) = stop_at {
                command.env("EMBER_CRASH_STOP_AT", ms.to_string());
            }
            cluster.children.push(command.spawn().unwrap());
            cluster.logs.push((stdout, stderr));
        }
        cluster
    }

    /// Kills process 1 or 0 with SIGKILL, and checks that the other ends by itself within 10 s:
    /// done before the kill, or failed naming the lost process. Returns whether the survivor
    /// had resumed from a checkpoint.
    fn kill_one(&mut self, first: bool, seed: u64) -> bool {
        let victim = usize::from(!first);
        let survivor = 1 - victim;
        let killed_at = Instant::now();
        let _ = self.children[victim].kill();
        let _ = self.children[victim].wait();
        let Some(status) = self.wait(survivor, killed_at + StdDuration::from_secs(10)) else {
            panic!(
                "process {survivor} still runs 10 s after process {victim} was killed (seed {seed}):\n{}",
                self.describe(survivor)
            );
        };
        let said = self.stdout(survivor);
        assert!(
            status.code().is_some(),
            "process {survivor} was ended by a signal ({status}) after process {victim} was killed (seed {seed}):\n{}",
            self.describe(survivor)
        );
        if !status.success() {
            assert!(
                said.contains("EMBER-FAILED") && said.contains(&format!("process {victim}")),
                "process {survivor} failed without naming the lost process {victim} (seed {seed}):\n{}",
                self.describe(survivor)
            );
        }
        said.contains("EMBER-RESUMED")
    }

    /// Waits until every process has started its job (or one of them has exited), 10 s at most.
    fn await_started(&mut self, seed: u64) {
        let deadline = Instant::now() + StdDuration::from_secs(10);
        while !(0..self.children.len()).all(|p| self.stdout(p).contains("EMBER-STARTED")) {
            if (0..self.children.len()).any(|p| self.children[p].try_wait().unwrap().is_some()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not start within 10 s (seed {seed}):\n{}\n{}",
                self.describe(0),
                self.describe(1)
            );
            std::thread::sleep(StdDuration::from_millis(2));
        }
    }

    fn stdout(&self, process: usize) -> String {
        std::fs::read_to_string(&self.logs[process].0).unwrap_or_default()
    }

    fn describe(&self, process: usize) -> String {
        format!(
            "--- process {process} stdout:\n{}--- stderr:\n{}---",
            self.stdout(process),
            std::fs::read_to_string(&self.logs[process].1).unwrap_or_default()
        )
    }

    /// Waits for `process` to exit until `deadline`; `None` if it is still running then.
    fn wait(&mut self, process: usize, deadline: Instant) -> Option<std::process::ExitStatus> {
        loop {
            if let Some(status) = self.children[process].try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(StdDuration::from_millis(10));
        }
    }

    /// Waits for both processes to finish the job, each with success.
    fn run_to_end(&mut self) {
        let deadline = Instant::now() + StdDuration::from_secs(180);
        for process in 0..2 {
            match self.wait(process, deadline) {
                Some(status) if status.success() => {}
                other => panic!("process {process} did not finish the job ({other:?}):\n{}", self.describe(process)),
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The results of the job without faults: run in one process with 2 workers.
fn clean_results() -> (String, String) {
    let (dir, out) = (TempDir::new("crash-clean").unwrap(), TempDir::new("crash-clean-out").unwrap());
    run_to_end(dir.path(), out.path(), 2, None);
    results(out.path())
}

#[test]
fn kill_nine_one_process_of_a_cluster_at_random_moments_loses_and_repeats_nothing() {
    if std::env::var("EMBER_CRASH_CHILD").is_ok() {
        return;
    }
    let seed = seed();
    let expected = clean_results();
    let (dir, out, logs) = (
        TempDir::new("crash-cluster").unwrap(),
        TempDir::new("crash-cluster-out").unwrap(),
        TempDir::new("crash-cluster-logs").unwrap(),
    );
    // How long the cluster takes for the whole job, with a clean start and checkpoints.
    let (timing_dir, timing_out) = (
        TempDir::new("crash-cluster-timing").unwrap(),
        TempDir::new("crash-cluster-timing-out").unwrap(),
    );
    let started = Instant::now();
    Cluster::spawn(timing_dir.path(), timing_out.path(), logs.path(), 0, None).run_to_end();
    let duration = started.elapsed().as_millis().max(50) as u64;
    assert_eq!(
        results(timing_out.path()),
        expected,
        "the cluster without faults differs from one process"
    );

    let (mut rng, mut resumed) = (seed, 0);
    let kills = kills();
    for round in 1..=kills {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut cluster = Cluster::spawn(dir.path(), out.path(), logs.path(), round, None);
        std::thread::sleep(StdDuration::from_millis(rng % duration));
        if cluster.kill_one((rng >> 20).is_multiple_of(2), seed) {
            resumed += 1;
        }
    }
    let mut last = Cluster::spawn(dir.path(), out.path(), logs.path(), kills + 1, None);
    last.run_to_end();
    println!("2-process cluster: {kills} kills, {resumed} of the killed runs had resumed from a checkpoint");
    assert!(
        resumed > 0 || last.stdout(0).contains("EMBER-RESUMED"),
        "no run resumed from a checkpoint (seed {seed})"
    );
    assert_eq!(
        results(out.path()),
        expected,
        "the result after {kills} kills differs from the run without faults (seed {seed}, 2 processes)"
    );
}

/// The state files a committed checkpoint names.
fn checkpoint_files(dir: &Path) -> Vec<String> {
    let manifest = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "manifest"))
        .max()
        .expect("no committed checkpoint");
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().rsplit('/').next().unwrap().to_owned())
        .collect()
}

#[test]
fn a_cluster_checkpoint_restores_in_one_process_and_the_reverse() {
    if std::env::var("EMBER_CRASH_CHILD").is_ok() {
        return;
    }
    let expected = clean_results();
    let stop_at = BATCHES / 3 * INTERVAL_MS;
    let logs = TempDir::new("crash-restore-logs").unwrap();

    // Two processes stop after a third of the input; one process with 2 workers goes on.
    let (dir, out) = (TempDir::new("crash-2to1").unwrap(), TempDir::new("crash-2to1-out").unwrap());
    Cluster::spawn(dir.path(), out.path(), logs.path(), 0, Some(stop_at)).run_to_end();
    assert_eq!(
        checkpoint_files(dir.path()),
        ["worker-0.state", "worker-1.state"],
        "the cluster's checkpoint should hold both processes' state"
    );
    let said = run_to_end(dir.path(), out.path(), 2, None);
    assert!(
        said.contains("EMBER-RESUMED"),
        "one process did not resume from the cluster's checkpoint"
    );
    assert_eq!(
        results(out.path()),
        expected,
        "2 processes restored as 1 differ from the run without faults"
    );

    // One process with 2 workers stops after a third; a 2-process cluster goes on.
    let (dir, out) = (TempDir::new("crash-1to2").unwrap(), TempDir::new("crash-1to2-out").unwrap());
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env("EMBER_CRASH_CHILD", format!("{};{};2", dir.path().display(), out.path().display()))
        .env("EMBER_CRASH_STOP_AT", stop_at.to_string())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the single process failed");
    let mut cluster = Cluster::spawn(dir.path(), out.path(), logs.path(), 1, None);
    cluster.run_to_end();
    assert!(
        cluster.stdout(0).contains("EMBER-RESUMED"),
        "the cluster did not resume from the checkpoint"
    );
    assert_eq!(
        results(out.path()),
        expected,
        "1 process restored as 2 differ from the run without faults"
    );
}
