//! Word-count throughput and per-batch cost. Run: `cargo bench -p ember --bench wordcount`
//! (`-- quick` for a short run). Prints Markdown rows for BENCHMARKS.md. `-- callgrind` runs one
//! small fixed word count (1 worker, 3 batches of 20,000 lines) for instruction counts:
//! `valgrind --tool=callgrind target/release/deps/wordcount-* callgrind`.

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ember::prelude::*;

const VOCABULARY: usize = 10_000;

fn gen_lines(n: usize, seed: u64) -> Vec<String> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            (0..10)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    format!("w{}", state % VOCABULARY as u64)
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn word_count(lines: DStream<String>) -> DStream<(String, u64)> {
    lines
        .flat_map(|l: String| l.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .map(|w| (w, 1u64))
        .reduce_by_key(|a, b| a + b)
}

/// Counts words seen by the output, and the time each batch finished.
fn sink(counts: &DStream<(String, u64)>) -> (Arc<AtomicU64>, Arc<Mutex<Vec<Instant>>>) {
    let words = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Mutex::new(Vec::new()));
    let (w, d) = (Arc::clone(&words), Arc::clone(&done));
    counts
        .foreach_rdd(move |b, _| {
            w.fetch_add(b.iter().map(|(_, c)| c).sum::<u64>(), Ordering::Relaxed);
            d.lock().unwrap().push(Instant::now());
        })
        .unwrap();
    (words, done)
}

fn no_wait(workers: usize, batches: usize, lines_per_batch: usize) {
    no_wait_with(workers, batches, lines_per_batch, false);
}

/// The no-wait word count, with checkpoints on when `checkpoints` (a plan without state
/// commits a checkpoint, its manifest, every batch).
fn no_wait_with(workers: usize, batches: usize, lines_per_batch: usize, checkpoints: bool) {
    let input: Vec<Option<Vec<String>>> = (0..batches).map(|b| Some(gen_lines(lines_per_batch, b as u64 + 1))).collect();
    let ssc = StreamingContext::builder(milliseconds(1))
        .workers(workers)
        .no_wait()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("ember-bench-wordcount-{}", std::process::id()));
    if checkpoints {
        let _ = std::fs::remove_dir_all(&dir);
        ssc.checkpoint(&dir).unwrap();
    }
    let (words, done) = sink(&word_count(ssc.replay_stream(input, workers * 2)));
    let start = Instant::now();
    ssc.start().unwrap();
    assert!(ssc.await_batch(Time::from_millis(batches as u64), seconds(600)).unwrap());
    let elapsed = start.elapsed();
    ssc.stop(false).unwrap();
    let total = words.load(Ordering::Relaxed);
    let per_batch = elapsed.as_secs_f64() * 1e3 / batches as f64;
    let _ = done;
    let _ = std::fs::remove_dir_all(&dir);
    let form = if checkpoints { ", checkpoints on" } else { "" };
    println!(
        "| no-wait, pre-generated lines{form} | {workers} | {batches} x {lines_per_batch} lines | {:.2} M words/s | {per_batch:.2} ms/batch |",
        total as f64 / elapsed.as_secs_f64() / 1e6
    );
}

fn socket(workers: usize, seconds_to_run: u64) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_server = Arc::clone(&stop);
    let payload: Vec<u8> = (gen_lines(100_000, 9).join("\n") + "\n").into_bytes();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        while !stop_server.load(Ordering::Acquire) {
            if conn.write_all(&payload).is_err() {
                return;
            }
        }
    });
    let ssc = StreamingContext::builder(seconds(1)).workers(workers).build().unwrap();
    let (words, done) = sink(&word_count(ssc.socket_text_stream("127.0.0.1", port)));
    ssc.start().unwrap();
    // Skip the first (partial) batch, then measure whole batches.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (w0, b0) = (words.load(Ordering::Relaxed), done.lock().unwrap().len());
    let t0 = Instant::now();
    std::thread::sleep(std::time::Duration::from_secs(seconds_to_run));
    let (w1, b1) = (words.load(Ordering::Relaxed), done.lock().unwrap().len());
    let elapsed = t0.elapsed();
    stop.store(true, Ordering::Release);
    ssc.stop(false).unwrap();
    println!(
        "| socket, 1 s batches | {workers} | {} batches | {:.2} M words/s | - |",
        b1 - b0,
        (w1 - w0) as f64 / elapsed.as_secs_f64() / 1e6
    );
}

fn empty_batches(workers: usize, batches: u64) {
    let ssc = StreamingContext::builder(milliseconds(1))
        .workers(workers)
        .no_wait()
        .build()
        .unwrap();
    let (_, _done) = sink(&word_count(ssc.replay_stream(Vec::new(), 1)));
    let start = Instant::now();
    ssc.start().unwrap();
    let started = start.elapsed();
    // From the first batch on: the start (threads, the dataflow) is timed on its own.
    assert!(ssc.await_batch(Time::from_millis(1), seconds(600)).unwrap());
    let first = start.elapsed();
    assert!(ssc.await_batch(Time::from_millis(batches), seconds(600)).unwrap());
    let elapsed = start.elapsed() - first;
    ssc.stop(false).unwrap();
    println!(
        "| empty batches | {workers} | {batches} batches | start {:.1} ms, first batch {:.1} ms | {:.1} µs/batch |",
        started.as_secs_f64() * 1e3,
        first.as_secs_f64() * 1e3,
        elapsed.as_secs_f64() * 1e6 / (batches - 1) as f64
    );
}

/// Stores blocks of `block` numbers as fast as it can, counting what it stored.
struct Flood {
    block: usize,
    stored: Arc<AtomicU64>,
}

impl Receiver<u64> for Flood {
    fn on_start(&mut self, ctx: &ReceiverContext<u64>) {
        let mut next = 0u64;
        while !ctx.is_stopped() {
            let block: Vec<u64> = (next..next + self.block as u64).collect();
            next += self.block as u64;
            ctx.store_many(block);
            self.stored.fetch_add(self.block as u64, Ordering::Relaxed);
        }
    }
}

/// Records per second a receiver stores with the write-ahead log on or off (100 ms batches
/// counting them, 3 s), the log under `EMBER_BENCH_DIR` (a path or an `s3://` URL; by default
/// the temporary directory).
fn wal(block: usize, on: bool) {
    let base = std::env::var("EMBER_BENCH_DIR")
        .ok()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| std::env::temp_dir().display().to_string());
    let dir = format!("{base}/ember-bench-wal-{}", std::process::id());
    let location = ember::storage::Location::parse(&dir).unwrap();
    let ssc = StreamingContext::builder(milliseconds(100)).write_ahead_log(on).build().unwrap();
    if on {
        ssc.checkpoint(&dir).unwrap();
    }
    let stored = Arc::new(AtomicU64::new(0));
    ssc.receiver_stream(Flood {
        block,
        stored: Arc::clone(&stored),
    })
    .count()
    .foreach_rdd(|_, _| {})
    .unwrap();
    ssc.start().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    let (from, start) = (stored.load(Ordering::Relaxed), Instant::now());
    std::thread::sleep(std::time::Duration::from_secs(3));
    let rate = (stored.load(Ordering::Relaxed) - from) as f64 / start.elapsed().as_secs_f64();
    ssc.stop(false).unwrap();
    let _ = location.parent().0.delete_all(&location.file_name().unwrap());
    let form = if on {
        format!("on in {base} (one fsync or PUT per block)")
    } else {
        "off".into()
    };
    println!(
        "| receiver, write-ahead log {form} | 1 | blocks of {block} records | {:.2} M records/s | - |",
        rate / 1e6
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let scale = if quick { 1 } else { 4 };
    println!("| benchmark | workers | input | throughput | latency |");
    println!("| --- | --- | --- | --- | --- |");
    if std::env::args().any(|a| a == "wal") {
        for block in [100, 1000, 10_000] {
            for on in [false, true] {
                wal(block, on);
            }
        }
        return;
    }
    if std::env::args().any(|a| a == "empty") {
        for workers in [1, 2] {
            empty_batches(workers, 2_000 * scale as u64);
        }
        return;
    }
    if std::env::args().any(|a| a == "callgrind") {
        // A small fixed run for `valgrind --tool=callgrind` (repeatable instruction counts).
        no_wait(1, 3, 20_000);
        return;
    }
    if std::env::args().any(|a| a == "checkpoint") {
        // Checkpoints off and on, alternated.
        for _ in 0..3 {
            for checkpoints in [false, true] {
                no_wait_with(2, 10 * scale, 50_000, checkpoints);
            }
        }
        return;
    }
    for workers in [1, 2] {
        no_wait(workers, 10 * scale, 50_000);
    }
    for workers in [1, 2] {
        socket(workers, if quick { 2 } else { 5 });
    }
    for workers in [1, 2] {
        empty_batches(workers, 2_000 * scale as u64);
    }
}
