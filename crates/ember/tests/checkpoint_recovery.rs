//! Checkpoints on disk and `get_or_create`: a stopped job resumes from its last checkpoint with
//! exactly the output of an uninterrupted run, on another number of workers too; a plan whose
//! stateful operators changed is refused naming the operator; damaged checkpoints are refused
//! with a fall-back to the one before; a checkpoint that cannot be written stops the job.

use std::path::Path;
use std::sync::{Arc, Mutex};

use ember::prelude::*;
use ember::testing::TempDir;

type Outputs = Arc<Mutex<Vec<(u64, Vec<(String, u64)>)>>>;

/// Batch `i` (from 0): words `w0..w4`, some of them.
fn input(batches: usize) -> Vec<Option<Vec<String>>> {
    (0..batches)
        .map(|i| Some((0..7).filter(|j| (i + j) % 3 != 0).map(|j| format!("w{}", (i * j) % 5)).collect()))
        .collect()
}

/// How the test job is built: the seeds' stateful word count (running totals, and an
/// incremental 3-batch window), or a variant.
#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Seed,
    /// A stateless output added after the stateful operators.
    ExtraOutput,
    /// The running total keeps an `i64` instead of a `u64`.
    OtherStateType,
    /// Another stateful operator added at the end.
    ExtraState,
}

/// Builds the job on `workers` with a manual clock; returns the context and its outputs.
fn build(clock: &ManualClock, workers: usize, batches: usize, variant: Variant) -> ember::Result<(StreamingContext, Outputs)> {
    let ssc = StreamingContext::builder(seconds(1)).workers(workers).manual_clock(clock).build()?;
    let pairs = ssc.replay_stream(input(batches), 2).map(|w| (w, 1u64));
    let out: Outputs = Arc::default();
    let totals = if variant == Variant::OtherStateType {
        pairs
            .update_state_by_key(|vs: Vec<u64>, s: Option<i64>| Some(vs.len() as i64 + s.unwrap_or(0)))
            .map(|(k, v)| (k, v as u64))
    } else {
        pairs.update_state_by_key(|vs: Vec<u64>, s: Option<u64>| Some(vs.iter().sum::<u64>() + s.unwrap_or(0)))
    }
    .checkpoint(seconds(2))?;
    let windowed = pairs
        .reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, seconds(3), seconds(1))?
        .checkpoint(seconds(2))?
        .map(|(k, v)| (format!("window {k}"), v));
    let both = totals.union(&windowed)?;
    let both = if variant == Variant::ExtraState {
        both.update_state_by_key(|vs: Vec<u64>, s: Option<u64>| Some(vs.len() as u64 + s.unwrap_or(0)))
    } else {
        both
    };
    let seen = Arc::clone(&out);
    both.foreach_rdd(move |b, t| {
        let mut items = b.collect();
        items.sort();
        seen.lock().unwrap().push((t.milliseconds(), items));
    })?;
    if variant == Variant::ExtraOutput {
        both.count().foreach_rdd(|_, _| {})?;
    }
    Ok((ssc, out))
}

/// Runs the job from `clock`'s time until batch `until_ms` is output, then stops it.
fn run_until(ssc: &StreamingContext, clock: &ManualClock, until_ms: u64) {
    ssc.start().unwrap();
    clock.set_ms(until_ms);
    assert!(ssc.await_batch(Time::from_millis(until_ms), seconds(30)).unwrap());
    ssc.stop(false).unwrap();
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
}

/// The uninterrupted run's output of 10 batches.
fn uninterrupted() -> Vec<(u64, Vec<(String, u64)>)> {
    let clock = ManualClock::new();
    let (ssc, out) = build(&clock, 1, 10, Variant::Seed).unwrap();
    run_until(&ssc, &clock, 10_000);
    let out = out.lock().unwrap().clone();
    assert_eq!(out.len(), 10);
    out
}

/// Runs 5 batches with checkpoints (the last one at 4 s), then recovers with `workers` and
/// `variant`; returns the recovered run's output, or the error of its build or start.
fn stop_and_recover(dir: &Path, workers: usize, variant: Variant) -> ember::Result<Vec<(u64, Vec<(String, u64)>)>> {
    let clock = ManualClock::new();
    let ssc = StreamingContext::get_or_create(dir, || Ok(build(&clock, 2, 10, Variant::Seed)?.0))?;
    run_until(&ssc, &clock, 5_000);
    assert!(
        dir.join("checkpoint-4000.manifest").exists(),
        "no checkpoint at 4 s in {}",
        dir.display()
    );
    recover(dir, workers, variant)
}

fn recover(dir: &Path, workers: usize, variant: Variant) -> ember::Result<Vec<(u64, Vec<(String, u64)>)>> {
    let clock = ManualClock::new();
    let outputs: Mutex<Option<Outputs>> = Mutex::new(None);
    let ssc = StreamingContext::get_or_create(dir, || {
        let (ssc, out) = build(&clock, workers, 10, variant)?;
        *outputs.lock().unwrap() = Some(out);
        Ok(ssc)
    })?;
    ssc.start()?;
    clock.set_ms(10_000);
    assert!(ssc.await_batch(Time::from_millis(10_000), seconds(30)).unwrap());
    ssc.stop(false).unwrap();
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
    let out = outputs.lock().unwrap().take().unwrap();
    let out = out.lock().unwrap().clone();
    Ok(out)
}

#[test]
fn a_stopped_job_resumes_from_its_last_checkpoint_with_the_uninterrupted_output() {
    let whole = uninterrupted();
    for workers in [1, 2, 3] {
        let dir = TempDir::new("ckpt-resume").unwrap();
        let rest = stop_and_recover(dir.path(), workers, Variant::Seed).unwrap();
        // The checkpoint is at 4 s: batch 5 s runs again, then the rest.
        assert_eq!(rest, whole[4..].to_vec(), "recovered on {workers} workers");
    }
}

#[test]
fn a_stateless_output_added_to_the_plan_restores() {
    let whole = uninterrupted();
    let dir = TempDir::new("ckpt-stateless").unwrap();
    let rest = stop_and_recover(dir.path(), 2, Variant::ExtraOutput).unwrap();
    assert_eq!(rest, whole[4..].to_vec());
}

#[test]
fn a_changed_or_added_stateful_operator_is_refused_naming_it() {
    let dir = TempDir::new("ckpt-changed").unwrap();
    let error = stop_and_recover(dir.path(), 2, Variant::OtherStateType).unwrap_err().to_string();
    assert!(
        error.contains("checkpoint") && error.contains("operator 3") && error.contains("i64"),
        "{error}"
    );
    let error = recover(dir.path(), 2, Variant::ExtraState).unwrap_err().to_string();
    assert!(error.contains("keeps state, but the checkpoint has none for it"), "{error}");
}

#[test]
fn a_damaged_checkpoint_is_refused_and_the_one_before_is_used() {
    let whole = uninterrupted();
    for damage in ["truncate", "flip", "manifest"] {
        let dir = TempDir::new("ckpt-damaged").unwrap();
        // Two stops, so that checkpoints at 4 s and 6 s are both committed (a running writer
        // commits only the newest ready one); then damage the newest.
        for until in [5_000, 7_000] {
            let clock = ManualClock::new();
            let ssc = StreamingContext::get_or_create(dir.path(), || Ok(build(&clock, 2, 10, Variant::Seed)?.0)).unwrap();
            run_until(&ssc, &clock, until);
        }
        let file = dir.path().join("checkpoint-6000/worker-0.state");
        let mut bytes = std::fs::read(&file).unwrap();
        match damage {
            "truncate" => bytes.truncate(bytes.len() / 2),
            "flip" => *bytes.last_mut().unwrap() ^= 0x55,
            _ => {
                // A manifest that parses but whose batch time is not the one in its name.
                let manifest = dir.path().join("checkpoint-6000.manifest");
                let text = std::fs::read_to_string(&manifest).unwrap();
                assert!(text.contains("\"time_ms\": 6000"), "{text}");
                std::fs::write(&manifest, text.replace("\"time_ms\": 6000", "\"time_ms\": 6005")).unwrap();
            }
        }
        std::fs::write(&file, bytes).unwrap();
        let rest = recover(dir.path(), 2, Variant::Seed).unwrap();
        assert_eq!(rest, whole[4..].to_vec(), "after {damage}");
    }
}

#[test]
fn no_intact_checkpoint_is_an_error_naming_the_file() {
    let dir = TempDir::new("ckpt-none-intact").unwrap();
    let clock = ManualClock::new();
    let ssc = StreamingContext::get_or_create(dir.path(), || Ok(build(&clock, 1, 10, Variant::Seed)?.0)).unwrap();
    run_until(&ssc, &clock, 3_000);
    let file = dir.path().join("checkpoint-2000/worker-0.state");
    std::fs::write(&file, b"garbage").unwrap();
    let error = recover(dir.path(), 1, Variant::Seed).unwrap_err().to_string();
    assert!(
        error.contains("no intact checkpoint") && error.contains("worker-0.state"),
        "{error}"
    );
}

#[test]
fn a_checkpoint_that_cannot_be_written_stops_the_job_with_a_clear_error() {
    let dir = TempDir::new("ckpt-unwritable").unwrap();
    // Files where the checkpoints of 2 s and 4 s would put their directories: the write fails
    // (the writer commits the newest ready checkpoint, which may be either).
    for time in [2000, 4000] {
        std::fs::write(dir.path().join(format!("checkpoint-{time}")), b"in the way").unwrap();
    }
    let clock = ManualClock::new();
    let ssc = StreamingContext::get_or_create(dir.path(), || Ok(build(&clock, 1, 10, Variant::Seed)?.0)).unwrap();
    ssc.start().unwrap();
    clock.set_ms(5_000);
    let error = ssc.await_termination_or_timeout(seconds(30)).unwrap_err().to_string();
    assert!(
        error.contains("cannot write") && (error.contains("checkpoint-2000") || error.contains("checkpoint-4000")),
        "{error}"
    );
    let stopped = ssc.await_termination_or_timeout(seconds(30));
    assert!(matches!(stopped, Ok(true)), "the job did not stop: {stopped:?}");
    let manifests: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".manifest"))
        .collect();
    assert!(manifests.is_empty(), "a checkpoint was committed: {manifests:?}");
    ssc.stop(false).unwrap();
}

#[test]
fn a_queue_stream_cannot_be_recovered() {
    let dir = TempDir::new("ckpt-queue").unwrap();
    let clock = ManualClock::new();
    let build_queue = || {
        let ssc = StreamingContext::builder(seconds(1)).manual_clock(&clock).build()?;
        let queue = BatchQueue::new();
        queue.push(vec![1u64, 2, 3]);
        ssc.queue_stream(&queue, true, None)
            .map(|x| (x, 1u64))
            .reduce_by_key(|a, b| a + b)
            .print()?;
        Ok(ssc)
    };
    let ssc = StreamingContext::get_or_create(dir.path(), build_queue).unwrap();
    run_until(&ssc, &clock, 2_000);
    let ssc = StreamingContext::get_or_create(dir.path(), build_queue).unwrap();
    let error = ssc.start().unwrap_err().to_string();
    assert!(error.contains("queue_stream"), "{error}");
}

/// The running word totals over a text file stream in `dir`, checkpointed every 2 batches.
fn file_job(clock: &ManualClock, files: &Path, workers: usize) -> ember::Result<(StreamingContext, Outputs)> {
    file_job_every(clock, files, workers, 2)
}

/// [`file_job`] checkpointed every `every` batches.
fn file_job_every(clock: &ManualClock, files: &Path, workers: usize, every: u64) -> ember::Result<(StreamingContext, Outputs)> {
    let ssc = StreamingContext::builder(seconds(1)).workers(workers).manual_clock(clock).build()?;
    let out: Outputs = Arc::default();
    let seen = Arc::clone(&out);
    ssc.text_file_stream(&files.display().to_string())?
        .flat_map(|l: String| l.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .map(|w| (w, 1u64))
        .update_state_by_key(|vs: Vec<u64>, s: Option<u64>| Some(vs.iter().sum::<u64>() + s.unwrap_or(0)))
        .checkpoint(seconds(every))?
        .foreach_rdd(move |b, t| {
            let mut items = b.collect();
            items.sort();
            seen.lock().unwrap().push((t.milliseconds(), items));
        })?;
    Ok((ssc, out))
}

/// Publishes file `i` (words depending on `i`) into `dir`.
fn publish(dir: &TempDir, i: u64) {
    let words: Vec<String> = (0..5).map(|j| format!("w{}", (i * 3 + j) % 4)).collect();
    dir.publish(&format!("f{i}.txt"), &(words.join(" ") + "\n")).unwrap();
}

/// Publishes file `i`, then lets batch `i` run.
fn publish_and_run(ssc: &StreamingContext, clock: &ManualClock, dir: &TempDir, i: u64) {
    publish(dir, i);
    run_batch(ssc, clock, i);
}

fn run_batch(ssc: &StreamingContext, clock: &ManualClock, i: u64) {
    clock.set_ms(i * 1000);
    assert!(ssc.await_batch(Time::from_millis(i * 1000), seconds(30)).unwrap());
}

#[test]
fn a_file_stream_resumes_with_the_files_each_batch_had() {
    // Uninterrupted: file i appears before batch i, for 8 batches.
    let files = TempDir::new("ckpt-files-whole").unwrap();
    let clock = ManualClock::new();
    let (ssc, out) = file_job(&clock, files.path(), 2).unwrap();
    ssc.start().unwrap();
    for i in 1..=8 {
        publish_and_run(&ssc, &clock, &files, i);
    }
    ssc.stop(false).unwrap();
    let whole = out.lock().unwrap().clone();
    assert_eq!(whole.len(), 8);

    // Stopped after batch 5 (checkpoint at 4 s), then recovered; file 6 is already there when
    // batch 5 runs again, which must take file 5 only (from the selection log), as before.
    let files = TempDir::new("ckpt-files").unwrap();
    let checkpoints = TempDir::new("ckpt-files-dir").unwrap();
    let clock = ManualClock::new();
    let ssc = StreamingContext::get_or_create(checkpoints.path(), || Ok(file_job(&clock, files.path(), 2)?.0)).unwrap();
    ssc.start().unwrap();
    for i in 1..=5 {
        publish_and_run(&ssc, &clock, &files, i);
    }
    ssc.stop(false).unwrap();
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
    let clock = ManualClock::new();
    let outputs: Mutex<Option<Outputs>> = Mutex::new(None);
    let ssc = StreamingContext::get_or_create(checkpoints.path(), || {
        let (ssc, out) = file_job(&clock, files.path(), 1)?;
        *outputs.lock().unwrap() = Some(out);
        Ok(ssc)
    })
    .unwrap();
    publish(&files, 6);
    ssc.start().unwrap();
    run_batch(&ssc, &clock, 5);
    run_batch(&ssc, &clock, 6);
    for i in 7..=8 {
        publish_and_run(&ssc, &clock, &files, i);
    }
    ssc.stop(false).unwrap();
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
    let rest = outputs.lock().unwrap().take().unwrap().lock().unwrap().clone();
    assert_eq!(rest, whole[4..].to_vec());
}

#[test]
fn a_replayed_batch_that_took_no_files_does_not_take_a_later_batchs() {
    // Uninterrupted: files 1-4 before batches 1-4, none before batch 5, file 6 before batch 6.
    let run = |files: &TempDir, ssc: &StreamingContext, clock: &ManualClock| {
        for i in 1..=4 {
            publish_and_run(ssc, clock, files, i);
        }
        run_batch(ssc, clock, 5);
        publish_and_run(ssc, clock, files, 6);
    };
    let files = TempDir::new("ckpt-empty-whole").unwrap();
    let clock = ManualClock::new();
    let (ssc, out) = file_job_every(&clock, files.path(), 1, 4).unwrap();
    ssc.start().unwrap();
    run(&files, &ssc, &clock);
    run_batch(&ssc, &clock, 7);
    ssc.stop(false).unwrap();
    let whole = out.lock().unwrap().clone();

    // Stopped after batch 6 (checkpoint at 4 s), recovered: batch 5 runs again while file 6 is
    // in the directory, and must take nothing, as before; batch 6 takes file 6, once.
    let files = TempDir::new("ckpt-empty").unwrap();
    let checkpoints = TempDir::new("ckpt-empty-dir").unwrap();
    let clock = ManualClock::new();
    let ssc = StreamingContext::get_or_create(checkpoints.path(), || Ok(file_job_every(&clock, files.path(), 1, 4)?.0)).unwrap();
    ssc.start().unwrap();
    run(&files, &ssc, &clock);
    ssc.stop(false).unwrap();
    let clock = ManualClock::new();
    let outputs: Mutex<Option<Outputs>> = Mutex::new(None);
    let ssc = StreamingContext::get_or_create(checkpoints.path(), || {
        let (ssc, out) = file_job_every(&clock, files.path(), 1, 4)?;
        *outputs.lock().unwrap() = Some(out);
        Ok(ssc)
    })
    .unwrap();
    ssc.start().unwrap();
    for i in 5..=7 {
        run_batch(&ssc, &clock, i);
    }
    ssc.stop(false).unwrap();
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
    let rest = outputs.lock().unwrap().take().unwrap().lock().unwrap().clone();
    assert_eq!(rest, whole[4..].to_vec());
}

/// Checkpoint times count from the job's zero time, as in Spark, not from the epoch: a job
/// whose clock starts at 3 s (zero time 3 s, batches at 4 s, 5 s, ...) checkpointing every 2 s
/// commits at 5 s, 7 s, 9 s and 11 s, never at an even second.
#[test]
fn checkpoint_times_are_multiples_of_the_interval_past_the_zero_time() {
    let dir = TempDir::new("checkpoint-zero").unwrap();
    let clock = ManualClock::new();
    clock.set_ms(3_000);
    let ssc = StreamingContext::get_or_create(dir.path(), || Ok(build(&clock, 1, 10, Variant::Seed)?.0)).unwrap();
    run_until(&ssc, &clock, 11_000);
    let mut manifests: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".manifest"))
        .collect();
    manifests.sort();
    // The newest 2 are kept.
    assert_eq!(manifests, ["checkpoint-11000.manifest", "checkpoint-9000.manifest"]);
}
