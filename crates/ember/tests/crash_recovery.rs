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
//! The job runs in a child process: this test binary run again with `EMBER_CRASH_CHILD` set,
//! executing only `crash_child` (as one process of a cluster with `EMBER_CRASH_CLUSTER`, and
//! stopping gracefully after batch `EMBER_CRASH_STOP_AT` ms if set).

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
fn build(workers: usize, out: &Path, cluster: Option<&str>) -> ember::Result<StreamingContext> {
    let mut builder = StreamingContext::builder(milliseconds(INTERVAL_MS)).workers(workers).no_wait();
    if let Some(cluster) = cluster {
        // "process;address,address;control address"
        let mut parts = cluster.split(';');
        let process = parts.next().unwrap().parse().unwrap();
        let addresses = parts.next().unwrap().split(',').map(str::to_owned).collect();
        // A process killed before the other reached it is indistinguishable from one that has
        // not started yet: the other waits for the start timeout (5 s here, 60 s by default).
        builder = builder
            .cluster(process, addresses)
            .cluster_control_address(parts.next().unwrap())
            .cluster_start_timeout(seconds(5));
    }
    let ssc = builder.build()?;
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
    let cluster = std::env::var("EMBER_CRASH_CLUSTER").ok();
    let stop_at = std::env::var("EMBER_CRASH_STOP_AT").ok().map(|ms| ms.parse::<u64>().unwrap());
    let ssc = StreamingContext::get_or_create(dir, || build(workers.parse().unwrap(), Path::new(out), cluster.as_deref())).unwrap();
    if let Err(error) = ssc.start() {
        // In a cluster, the other process may be killed while this one starts.
        println!("EMBER-FAILED: {error}");
        std::process::exit(3);
    }
    if cluster.as_deref().is_some_and(|c| !c.starts_with("0;")) {
        // Process 1 runs until process 0 stops the cluster (the files are written there).
        if let Err(error) = ssc.await_termination() {
            println!("EMBER-FAILED: {error}");
            std::process::exit(3);
        }
        return;
    }
    let last = Time::from_millis(stop_at.unwrap_or((BATCHES + 3) * INTERVAL_MS));
    let deadline = Instant::now() + StdDuration::from_secs(120);
    while !ssc.await_batch(last, milliseconds(20)).unwrap() {
        // The loss of the other process of a cluster ends the job with an error.
        if let Err(error) = ssc.await_termination_or_timeout(milliseconds(1)) {
            println!("EMBER-FAILED: {error}");
            std::process::exit(3);
        }
        assert!(Instant::now() < deadline, "batch {last} did not complete");
    }
    ssc.stop(stop_at.is_some()).unwrap();
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

/// A 2-process cluster (1 worker each) running the replay job; each process's stdout and
/// stderr go to files in `logs`.
struct Cluster {
    children: Vec<std::process::Child>,
    logs: Vec<(std::path::PathBuf, std::path::PathBuf)>,
}

impl Cluster {
    fn spawn(dir: &Path, out: &Path, logs: &Path, round: usize, stop_at: Option<u64>) -> Cluster {
        // Fresh ports every round: a killed process's may still be taken.
        let bind = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let listeners = [bind(), bind(), bind()];
        let port = |i: usize| listeners[i].local_addr().unwrap().port();
        let addresses = format!("127.0.0.1:{},127.0.0.1:{}", port(0), port(1));
        let control = format!("127.0.0.1:{}", port(2));
        drop(listeners);
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
                .env("EMBER_CRASH_CHILD", format!("{};{};1", dir.display(), out.display()))
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
        let victim = ((rng >> 20) % 2) as usize;
        let survivor = 1 - victim;
        let killed_at = Instant::now();
        let _ = cluster.children[victim].kill();
        let _ = cluster.children[victim].wait();
        // The survivor ends by itself: done before the kill, or failed naming the lost process.
        let Some(status) = cluster.wait(survivor, killed_at + StdDuration::from_secs(10)) else {
            panic!(
                "process {survivor} still runs 10 s after process {victim} was killed (seed {seed}):\n{}",
                cluster.describe(survivor)
            );
        };
        let said = cluster.stdout(survivor);
        if !status.success() {
            assert!(
                said.contains("EMBER-FAILED") && said.contains(&format!("process {victim}")),
                "process {survivor} failed without naming the lost process {victim} (seed {seed}):\n{}",
                cluster.describe(survivor)
            );
        }
        if said.contains("EMBER-RESUMED") {
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
