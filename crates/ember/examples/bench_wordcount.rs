//! The seeds' socket word count and two stateful variants, instrumented for
//! `bench/compare.sh`: one parseable line per batch with the batch's words and delays, so that
//! ember and Spark Streaming are judged by the same numbers.
//!
//! Run a server first (`ember gen socket --port 9999 --kind words --rate 100000`), then:
//! `cargo run --release -p ember --example bench_wordcount -- HOST PORT BATCHES INTERVAL_MS WORKERS [JOB [WINDOW_MS [CHECKPOINT_DIR [INITIAL_FILE]]]]`
//! (for JOB `files`: `DIR 0 BATCHES INTERVAL_MS WORKERS files`, with `ember gen files --dir DIR ...`).
//!
//! Every job reads the socket's lines (`files`: the directory's), splits them with `flat_map`
//! of `split(' ')` and maps the words to `(w, 1)`; then, by JOB:
//!
//! - `wordcount` (the default, issue 12's workload 1): `reduce_by_key`; the output gathers
//!   each batch's counts, as Spark's `collect()` does, and totals them.
//! - `files` (workload 5): the same word count over `text_file_stream(HOST)`, the lines of the
//!   files moved into the directory HOST (PORT is then ignored; `ember gen files` writes them).
//! - `window` (workload 3): `reduce_by_key_and_window_inv(+, -, WINDOW_MS, INTERVAL_MS)`,
//!   the incremental windowed count (WINDOW_MS defaults to 30 s).
//! - `state` (workload 4): `update_state_by_key` keeping a running count per word; with
//!   INITIAL_FILE (one word a line), `update_state_by_key_with_initial` starting every word of
//!   the file at 0, so that the state holds all of them from the first batch.
//!
//! For `window` and `state` the output stays small however many keys there are: the result
//! stream is mapped to `(1, count)` and reduced, so each batch gives the number of keys and the
//! sum of their counts. The batch's words follow from those sums: for `state`, the sum minus
//! the previous batch's; for `window`, the same difference plus the words of the batch that
//! just left the window (whose words were derived in the same way; nothing leaves during the
//! first WINDOW_MS). CHECKPOINT_DIR (`-` for none, the default) turns on checkpoints;
//! INITIAL_FILE is `-` (none) by default.
//!
//! Each batch prints
//!
//! ```text
//! BATCH time_ms=T keys=K words=W [sum=S] proc_ms=P sched_ms=S total_ms=D
//! ```
//!
//! with Spark's meanings: `total_ms` is the wall clock when the output runs minus the batch
//! time (the end of the batch's interval); `proc_ms` is the time since the batch could start,
//! the later of its batch time and the previous batch's output, as Spark runs one batch after
//! the other; `sched_ms` is the rest. Stops (at once, not gracefully) after BATCHES batches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use ember::prelude::*;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, name: &str, default: T) -> T {
    match args.get(i) {
        None => default,
        Some(text) => text.parse().unwrap_or_else(|_| {
            eprintln!("bench_wordcount: {name} `{text}` is not valid");
            std::process::exit(2);
        }),
    }
}

/// Prints each batch's line, timed when its output runs.
struct Report {
    done: AtomicU64,
    previous_output: AtomicU64,
}

impl Report {
    /// `fields` go between `time_ms` and the delays.
    fn batch(&self, batch_ms: u64, fields: &str) {
        let out = now_ms();
        let started = batch_ms.max(self.previous_output.swap(out, Ordering::AcqRel));
        let total = out.saturating_sub(batch_ms);
        let processing = out.saturating_sub(started);
        println!(
            "BATCH time_ms={batch_ms} {fields} proc_ms={processing} sched_ms={} total_ms={total}",
            total.saturating_sub(processing)
        );
        self.done.fetch_add(1, Ordering::AcqRel);
    }
}

/// What the `window` and `state` outputs remember between batches (they run in batch order):
/// the previous batch's sum, and for `window` the words derived for each batch still able to
/// leave the window.
#[derive(Default)]
struct Sums {
    previous_sum: u64,
    words_by_time: HashMap<u64, u64>,
}

fn main() -> ember::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let host = args.first().map_or("127.0.0.1", String::as_str);
    let port: u16 = arg(&args, 1, "PORT", 9999);
    let batches: u64 = arg(&args, 2, "BATCHES", 20);
    let interval_ms: u64 = arg(&args, 3, "INTERVAL_MS", 1000).max(1);
    let workers: usize = arg(&args, 4, "WORKERS", 2);
    let job: String = arg(&args, 5, "JOB", "wordcount".to_owned());
    let window_ms: u64 = arg(&args, 6, "WINDOW_MS", 30_000);
    let checkpoint: String = arg(&args, 7, "CHECKPOINT_DIR", "-".to_owned());
    let initial_file: String = arg(&args, 8, "INITIAL_FILE", "-".to_owned());

    let ssc = StreamingContext::builder(milliseconds(interval_ms))
        .workers(workers.max(1))
        .build()?;
    if checkpoint != "-" {
        ssc.checkpoint(&checkpoint)?;
    }
    let lines = if job == "files" {
        ssc.text_file_stream(host).unwrap_or_else(|e| {
            eprintln!("bench_wordcount: JOB files needs HOST to be a directory: {e}");
            std::process::exit(2);
        })
    } else {
        ssc.socket_text_stream(host, port)
    };
    let pairs = lines
        .flat_map(|l: String| l.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .map(|w| (w, 1u64));

    let report = Arc::new(Report {
        done: AtomicU64::new(0),
        previous_output: AtomicU64::new(0),
    });
    let result = match job.as_str() {
        "wordcount" | "files" => None,
        "window" => {
            Some(pairs.reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, milliseconds(window_ms), milliseconds(interval_ms))?)
        }
        "state" => {
            let update = |values: Vec<u64>, state: Option<u64>| Some(values.iter().sum::<u64>() + state.unwrap_or(0));
            if initial_file == "-" {
                Some(pairs.update_state_by_key(update))
            } else {
                let text = std::fs::read_to_string(&initial_file).unwrap_or_else(|e| {
                    eprintln!("bench_wordcount: cannot read INITIAL_FILE {initial_file}: {e}");
                    std::process::exit(2);
                });
                let initial: Vec<(String, u64)> = text.lines().map(|w| (w.to_owned(), 0)).collect();
                Some(pairs.update_state_by_key_with_initial(update, initial))
            }
        }
        other => {
            eprintln!("bench_wordcount: JOB `{other}` is not one of wordcount, window, state, files");
            std::process::exit(2);
        }
    };
    match result {
        None => {
            let report = Arc::clone(&report);
            pairs.reduce_by_key(|a, b| a + b).foreach_rdd(move |batch, time| {
                let (keys, words) = batch.iter().fold((0u64, 0u64), |(k, w), (_, c)| (k + 1, w + c));
                report.batch(time.milliseconds(), &format!("keys={keys} words={words}"));
            })?;
        }
        Some(result) => {
            let report = Arc::clone(&report);
            let window = job == "window";
            let sums = Mutex::new(Sums::default());
            result
                .map(|(_, count)| (1u64, count))
                .reduce(|a, b| (a.0 + b.0, a.1 + b.1))
                .foreach_rdd(move |batch, time| {
                    let (keys, sum) = batch.iter().fold((0, 0), |acc, (k, s)| (acc.0 + k, acc.1 + s));
                    let batch_ms = time.milliseconds();
                    let mut sums = sums.lock().unwrap_or_else(PoisonError::into_inner);
                    let mut words = sum.wrapping_sub(sums.previous_sum);
                    sums.previous_sum = sum;
                    if window {
                        let left = batch_ms.checked_sub(window_ms).and_then(|t| sums.words_by_time.remove(&t));
                        words = words.wrapping_add(left.unwrap_or(0));
                        sums.words_by_time.insert(batch_ms, words);
                    }
                    report.batch(batch_ms, &format!("keys={keys} words={words} sum={sum}"));
                })?;
        }
    }
    ssc.start()?;
    while report.done.load(Ordering::Acquire) < batches {
        if ssc.await_termination_or_timeout(milliseconds(20))? {
            return Ok(());
        }
    }
    ssc.stop(false)
}
