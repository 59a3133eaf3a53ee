//! A checkpoint never covers a batch whose outputs did not run on every worker of every
//! process, whichever worker ends abnormally and whenever.
//!
//! The race this pins down: a worker thread ends by a panic (timely's threads panic on a lost
//! peer's broken connection) after its batch's state was written everywhere and before its own
//! outputs of the batch ran. A worker that panicked used to count as having output everything,
//! so the checkpoint writer committed that batch, and a restart resumed after it: its outputs
//! never appeared. `EMBER_FAULT=worker-panic-before-outputs:<worker>:<batch>` (ember-engine's
//! `fault-injection` feature) makes exactly that happen to worker 0, the worker that runs the
//! gathered outputs, at a chosen batch: on a fresh start, and during the catch-up of a restart
//! (the batches missed while the job was down, cut back to back).
//!
//! Each case runs on 1 process with 2 workers and on a 2-process cluster with 2 workers each.
//! After each faulty run, the newest committed checkpoint must not cover a batch without its
//! outputs on every worker; after a last run without faults, every batch since the fresh start
//! has its outputs and the totals count every word exactly once.
//!
//! The job runs in child processes: this test binary run again with `EMBER_XO_CHILD` set.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration as StdDuration, Instant};

mod common;

use common::read_counts;
use ember::prelude::*;
use ember::testing::TempDir;

const INTERVAL_MS: u64 = 50;
/// Input batches (5 words each, 10 s of them); then the job runs until its totals count all
/// of them.
const BATCHES: u64 = 200;
const WORDS_PER_BATCH: u64 = 5;
const WORKERS: usize = 2;

fn input() -> Vec<Option<Vec<String>>> {
    (0..BATCHES)
        .map(|i| Some((0..WORDS_PER_BATCH).map(|j| format!("w{}", (i * 3 + j) % 7)).collect()))
        .collect()
}

/// The child's side: `EMBER_XO_CHILD` is "checkpoint dir;output dir", `EMBER_XO_CLUSTER`
/// "process;address,address;control address" in a cluster. Running totals of the words
/// (checkpointed every batch) saved with `save_as_text_files`, and a per-worker output that
/// leaves `ran-<ms>/p<process>-w<worker>` for every batch it ran on every worker. Process 0 (or
/// the only one) stops once the totals count every word; exits 3 with the error on stdout when
/// the job fails.
#[test]
fn xo_child() {
    let Ok(spec) = std::env::var("EMBER_XO_CHILD") else { return };
    let (dir, out) = spec.split_once(';').unwrap();
    let out = PathBuf::from(out);
    let cluster = std::env::var("EMBER_XO_CLUSTER").ok();
    let process: usize = cluster.as_deref().map_or(0, |c| c.split(';').next().unwrap().parse().unwrap());
    let counted = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&counted);
    let ssc = StreamingContext::get_or_create(dir, || {
        let ssc = common::child_builder(INTERVAL_MS, WORKERS, cluster.as_deref(), seconds(10)).build()?;
        let totals = ssc
            .replay_stream(input(), 2)
            .map(|w| (w, 1u64))
            .update_state_by_key(|vs: Vec<u64>, s: Option<u64>| Some(vs.iter().sum::<u64>() + s.unwrap_or(0)))
            .checkpoint(milliseconds(INTERVAL_MS))?;
        totals.save_as_text_files(&format!("{}/state", out.display()), "")?;
        let marks = out.clone();
        totals.register_output_operation_per_worker("mark", move |batch| {
            let dir = marks.join(format!("ran-{}", batch.time().milliseconds()));
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            std::fs::write(dir.join(format!("p{process}-w{}", local_worker())), "").map_err(|e| e.to_string())
        })?;
        totals.foreach_rdd(move |b, _| seen.store(b.iter().map(|(_, n)| n).sum(), Ordering::Release))?;
        Ok(ssc)
    })
    .unwrap();
    let fail = |error: ember::Error| -> ! {
        println!("EMBER-FAILED: {error}");
        std::process::exit(3);
    };
    if let Err(error) = ssc.start() {
        fail(error);
    }
    if process != 0 {
        if let Err(error) = ssc.await_termination() {
            fail(error);
        }
        return;
    }
    let deadline = Instant::now() + StdDuration::from_secs(60);
    while counted.load(Ordering::Acquire) < BATCHES * WORDS_PER_BATCH {
        if let Err(error) = ssc.await_termination_or_timeout(milliseconds(10)) {
            fail(error);
        }
        assert!(Instant::now() < deadline, "the job did not finish within 60 s");
    }
    if let Err(error) = ssc.stop(true) {
        fail(error);
    }
}

/// The local index of the worker running an output: its output thread is `ember-output-<i>`,
/// and an output that runs on the worker's own thread runs on `timely:work-<i>`.
fn local_worker() -> String {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or_default();
    name.rsplit('-').next().unwrap_or_default().to_owned()
}

/// The job's processes: one with 2 workers, or a 2-process cluster.
struct Job {
    children: Vec<Child>,
    logs: Vec<(PathBuf, PathBuf)>,
}

impl Job {
    fn spawn(dir: &Path, out: &Path, logs: &Path, processes: usize, round: &str, fault: Option<&str>) -> Job {
        let (addresses, control) = common::cluster_addresses();
        let mut job = Job {
            children: Vec::new(),
            logs: Vec::new(),
        };
        for process in 0..processes {
            let stdout = logs.join(format!("{round}-p{process}.out"));
            let stderr = logs.join(format!("{round}-p{process}.err"));
            let mut command = Command::new(std::env::current_exe().unwrap());
            command
                .args(["--exact", "xo_child", "--nocapture", "--test-threads=1"])
                .env("EMBER_XO_CHILD", format!("{};{}", dir.display(), out.display()))
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&stdout).unwrap())
                .stderr(std::fs::File::create(&stderr).unwrap());
            if processes > 1 {
                command.env("EMBER_XO_CLUSTER", format!("{process};{addresses};{control}"));
            }
            if let Some(fault) = fault {
                command.env("EMBER_FAULT", fault);
            }
            job.children.push(command.spawn().unwrap());
            job.logs.push((stdout, stderr));
        }
        job
    }

    fn logs(&self) -> String {
        let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        self.logs
            .iter()
            .enumerate()
            .map(|(i, (out, err))| format!("--- process {i} stdout:\n{}--- stderr:\n{}", read(out), read(err)))
            .collect()
    }

    /// Waits for every process to exit (at most 60 s); returns their exit codes.
    fn wait(&mut self) -> Vec<Option<i32>> {
        let deadline = Instant::now() + StdDuration::from_secs(60);
        let mut codes = Vec::new();
        for i in 0..self.children.len() {
            loop {
                if let Some(status) = self.children[i].try_wait().unwrap() {
                    codes.push(status.code());
                    break;
                }
                assert!(Instant::now() < deadline, "process {i} did not exit within 60 s:\n{}", self.logs());
                std::thread::sleep(StdDuration::from_millis(10));
            }
        }
        codes
    }

    fn kill(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The newest committed checkpoint in `dir`: its batch time, the run's zero time and interval.
fn newest_checkpoint(dir: &Path) -> Option<(u64, u64, u64)> {
    let manifest = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "manifest"))
        .max_by_key(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            name.trim_start_matches("checkpoint-").parse::<u64>().unwrap()
        })?;
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    let field = |name: &str| manifest[name].as_u64().unwrap();
    Some((field("time_ms"), field("zero_ms"), field("batch_interval_ms")))
}

/// The batch times in `(zero, through]` whose outputs did not run on every worker: no
/// `state-<ms>/_SUCCESS`, or fewer than `workers` marks in `ran-<ms>`.
fn batches_without_outputs(out: &Path, zero: u64, interval: u64, through: u64, workers: usize) -> Vec<u64> {
    (1..)
        .map(|k| zero + k * interval)
        .take_while(|t| *t <= through)
        .filter(|t| {
            let saved = out.join(format!("state-{t}")).join("_SUCCESS").exists();
            let marks = std::fs::read_dir(out.join(format!("ran-{t}"))).map_or(0, Iterator::count);
            !saved || marks < workers
        })
        .collect()
}

/// Runs the job with worker 0 ending abnormally before the outputs of the `batch`-th batch of
/// the run, and checks that the fault fired and that no committed checkpoint covers a batch
/// without its outputs. Returns the faulty batch's time and the wall-clock time (ms since the
/// epoch) the processes were started.
fn run_with_fault(dir: &Path, out: &Path, logs: &Path, processes: usize, round: &str, batch: u64) -> (u64, u64) {
    let fault = format!("worker-panic-before-outputs:0:{batch}");
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut job = Job::spawn(dir, out, logs, processes, round, Some(&fault));
    let codes = job.wait();
    let said = job.logs();
    let fired = "ember fault injection: worker 0 ends before the outputs of batch ";
    let faulty: u64 = said
        .split(fired)
        .nth(1)
        .and_then(|rest| rest.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{round}: the fault did not fire:\n{said}"));
    assert_eq!(
        codes[0],
        Some(3),
        "{round}: process 0 did not fail with the worker's error:\n{said}"
    );
    let (through, zero, interval) = newest_checkpoint(dir).unwrap_or_else(|| panic!("{round}: no checkpoint was committed:\n{said}"));
    let missing = batches_without_outputs(out, zero, interval, through, processes * WORKERS);
    assert!(
        missing.is_empty(),
        "{round}: the checkpoint of {through} ms covers batches whose outputs did not run on every worker: {missing:?}\n{said}"
    );
    (faulty, started)
}

/// The whole story on `processes` processes: a fault on a fresh start, a kill, a fault during
/// the catch-up of the restart, then a run to the end without faults.
fn checkpoints_cover_only_batches_whose_outputs_ran(processes: usize) {
    let (dir, out, logs) = (
        TempDir::new("xo").unwrap(),
        TempDir::new("xo-out").unwrap(),
        TempDir::new("xo-logs").unwrap(),
    );
    // A fresh start: the 4th batch's state is written and reported everywhere, then worker 0
    // ends before its outputs of the batch run.
    run_with_fault(dir.path(), out.path(), logs.path(), processes, "fresh", 4);

    // A run without faults, killed part way; while it is down, batches are missed.
    let mut job = Job::spawn(dir.path(), out.path(), logs.path(), processes, "killed", None);
    std::thread::sleep(StdDuration::from_millis(1500));
    job.kill();
    std::thread::sleep(StdDuration::from_millis(1000));

    // The restart runs the missed batches back to back; worker 0 ends in the middle of them.
    let (faulty, started) = run_with_fault(dir.path(), out.path(), logs.path(), processes, "catch-up", 3);
    assert!(
        faulty < started,
        "the faulty batch ({faulty} ms) was not one missed while the job was down (restarted at {started} ms)"
    );

    // The last run, without faults, to the end.
    let mut job = Job::spawn(dir.path(), out.path(), logs.path(), processes, "last", None);
    let codes = job.wait();
    assert!(
        codes.iter().all(|c| *c == Some(0)),
        "the last run failed ({codes:?}):\n{}",
        job.logs()
    );
    let (through, zero, interval) = newest_checkpoint(dir.path()).expect("no checkpoint after the last run");
    let missing = batches_without_outputs(out.path(), zero, interval, through, processes * WORKERS);
    assert!(missing.is_empty(), "batches without their outputs after the last run: {missing:?}");
    let state = out.path().join(format!("state-{through}"));
    let total: u64 = read_counts(&state).values().sum();
    assert_eq!(
        total,
        BATCHES * WORDS_PER_BATCH,
        "the totals at {through} ms count {total} words, written {}",
        BATCHES * WORDS_PER_BATCH
    );
}

#[test]
fn a_worker_ending_before_its_outputs_never_lets_a_checkpoint_cover_them_on_one_process() {
    if std::env::var("EMBER_XO_CHILD").is_ok() {
        return;
    }
    checkpoints_cover_only_batches_whose_outputs_ran(1);
}

#[test]
fn a_worker_ending_before_its_outputs_never_lets_a_checkpoint_cover_them_in_a_cluster() {
    if std::env::var("EMBER_XO_CHILD").is_ok() {
        return;
    }
    checkpoints_cover_only_batches_whose_outputs_ran(2);
}
