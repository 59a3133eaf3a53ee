//! Ingestion throughput of the live sources: how fast `file_stream` reads a directory of new
//! files and `socket_text_stream` reads a TCP connection, counted by a minimal job (`count`).
//! Run: `cargo bench -p ember --bench ingest` (`-- quick` for a short run). Prints Markdown
//! rows for BENCHMARKS.md.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration as StdDuration, Instant};

use ember::prelude::*;

/// Lines like a web log: about 60 bytes each.
fn line(i: u64) -> String {
    format!(
        "2026-11-22T10:00:00Z 192.168.{}.{} GET /products/{} 200",
        i % 200,
        i % 250,
        i % 10_007
    )
}

fn text_block(lines: u64, first: u64) -> String {
    (first..first + lines).map(|i| line(i) + "\n").collect()
}

/// Counts records as the output sees them.
fn counter<T: ember::Data>(stream: &DStream<T>) -> Arc<AtomicU64> {
    let n = Arc::new(AtomicU64::new(0));
    let sink = Arc::clone(&n);
    stream
        .count()
        .foreach_rdd(move |b, _| {
            sink.fetch_add(b.iter().sum::<u64>(), Ordering::Relaxed);
        })
        .unwrap();
    n
}

fn wait_for(n: &AtomicU64, target: u64) {
    let deadline = Instant::now() + StdDuration::from_secs(300);
    while n.load(Ordering::Relaxed) < target && Instant::now() < deadline {
        std::thread::sleep(StdDuration::from_micros(500));
    }
    assert!(n.load(Ordering::Relaxed) >= target, "timed out");
}

fn row(source: &str, workers: usize, lines: u64, bytes: u64, secs: f64) {
    println!(
        "| {source} | {workers} | {lines} | {:.0} | {:.2} M |",
        bytes as f64 / secs / 1e6,
        lines as f64 / secs / 1e6
    );
}

fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ember-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `files` files of `per_file` lines, already in the directory: read by the first batch
/// (`new_files_only = false`), so the clock measures reading, not waiting.
fn file_stream(workers: usize, files: u64, per_file: u64) {
    let dir = scratch_dir("files");
    let mut bytes = 0;
    for f in 0..files {
        let text = text_block(per_file, f * per_file);
        bytes += text.len() as u64;
        std::fs::write(dir.join(format!("part-{f:05}.txt")), text).unwrap();
    }
    let ssc = StreamingContext::builder(milliseconds(20)).workers(workers).build().unwrap();
    let stream = ssc.file_stream(dir.to_str().unwrap(), |_: &Path| true, false).unwrap();
    let n = counter(&stream);
    let start = Instant::now();
    ssc.start().unwrap();
    wait_for(&n, files * per_file);
    let secs = start.elapsed().as_secs_f64();
    ssc.stop(false).unwrap();
    row("file_stream", workers, files * per_file, bytes, secs);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A local server writes `lines` lines as fast as the receiver takes them.
fn socket(workers: usize, lines: u64) {
    const BLOCK: u64 = 100_000;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let block = Arc::new(text_block(BLOCK, 0));
    let bytes = block.len() as u64 * lines.div_ceil(BLOCK);
    let writer = Arc::clone(&block);
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        for _ in 0..lines.div_ceil(BLOCK) {
            conn.write_all(writer.as_bytes()).unwrap();
        }
        std::thread::sleep(StdDuration::from_secs(600));
    });
    let ssc = StreamingContext::builder(milliseconds(20)).workers(workers).build().unwrap();
    let n = counter(&ssc.socket_text_stream("127.0.0.1", port));
    let start = Instant::now();
    ssc.start().unwrap();
    let total = lines.div_ceil(BLOCK) * BLOCK;
    wait_for(&n, total);
    let secs = start.elapsed().as_secs_f64();
    ssc.stop(false).unwrap();
    row("socket_text_stream", workers, total, bytes, secs);
}

fn main() {
    // `quick` shortens the run; `files` or `socket` runs only that source (for profiling).
    let args: Vec<String> = std::env::args().collect();
    let has = |a: &str| args.iter().any(|x| x == a);
    let scale = if has("quick") { 1 } else { 5 };
    let all = !has("files") && !has("socket");
    println!("| source | workers | lines | MB/s | lines/s |");
    println!("|---|---|---|---|---|");
    for workers in [1, 2] {
        if all || has("files") {
            file_stream(workers, 20 * scale, 50_000);
        }
    }
    for workers in [1, 2] {
        if all || has("socket") {
            socket(workers, 1_000_000 * scale);
        }
    }
}
