//! Windowed reduces and keyed state. Run: `cargo bench -p ember --bench window_state`
//! (`-- quick` for a short run). Prints Markdown rows for BENCHMARKS.md.
//!
//! Input: every batch holds `RECORDS` `(key, 1)` records over `KEYS` keys, generated on the
//! worker from one seed element per batch (so input memory does not grow with the run). The
//! per-batch time is measured in steady state: over the last batches of the run, once the
//! window is full, on the no-wait clock (each batch starts as soon as the pipeline has room).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use ember::prelude::*;

const KEYS: u64 = 10_000;
const RECORDS: u64 = 20_000;

fn xorshift(mut s: u64) -> u64 {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    s
}

/// One seed per batch, expanded on the worker into `records` pairs over `keys` keys.
fn records(ssc: &StreamingContext, batches: u64, records: u64, keys: u64) -> DStream<(u64, i64)> {
    let seeds: Vec<Option<Vec<u64>>> = (1..=batches).map(|b| Some(vec![b])).collect();
    ssc.replay_stream(seeds, 1).flat_map(move |seed: u64| {
        let mut s = xorshift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        (0..records)
            .map(|_| {
                s = xorshift(s);
                (s % keys, 1i64)
            })
            .collect::<Vec<_>>()
    })
}

/// Records when each batch finished; returns the mean time per batch over the last `tail`
/// of the first `batches` batches (the no-wait clock runs on past them until stopped).
fn run_timed<T: ember::Data>(ssc: StreamingContext, out: DStream<T>, batches: u64, tail: usize) -> f64 {
    let done = Arc::new(Mutex::new(Vec::new()));
    let d = Arc::clone(&done);
    out.foreach_rdd(move |b, t| {
        std::hint::black_box(b.count());
        if t.milliseconds() <= batches {
            d.lock().unwrap().push(Instant::now());
        }
    })
    .unwrap();
    ssc.start().unwrap();
    assert!(ssc.await_batch(Time::from_millis(batches), seconds(3600)).unwrap());
    ssc.stop(false).unwrap();
    let done = done.lock().unwrap();
    if std::env::var_os("EMBER_BENCH_DEBUG").is_some() {
        eprintln!(
            "{:?}",
            done.windows(2).map(|w| (w[1] - w[0]).as_secs_f64() * 1e3).collect::<Vec<_>>()
        );
    }
    let last = done.len() - 1;
    let first = last.saturating_sub(tail);
    (done[last] - done[first]).as_secs_f64() * 1e3 / (last - first) as f64
}

fn context(workers: usize) -> StreamingContext {
    StreamingContext::builder(milliseconds(1))
        .workers(workers)
        .no_wait()
        .build()
        .unwrap()
}

fn windowed(workers: usize, window: u64, inverse: bool, tail: u64) {
    let ssc = context(workers);
    let batches = window + tail;
    let pairs = records(&ssc, batches, RECORDS, KEYS);
    let (w, s) = (milliseconds(window), milliseconds(1));
    let counts = if inverse {
        pairs.reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, w, s).unwrap()
    } else {
        pairs.reduce_by_key_and_window(|a, b| a + b, w, s).unwrap()
    };
    let per_batch = run_timed(ssc, counts, batches, tail as usize);
    let form = if inverse { "with inverse" } else { "without inverse" };
    println!("| reduce_by_key_and_window {form} | {window} batches | {workers} | {per_batch:.2} ms |");
}

fn baseline(workers: usize, tail: u64) {
    let ssc = context(workers);
    let counts = records(&ssc, tail, RECORDS, KEYS).reduce_by_key(|a, b| a + b);
    let per_batch = run_timed(ssc, counts, tail, tail as usize);
    println!("| reduce_by_key (no window), for reference | 1 batch | {workers} | {per_batch:.2} ms |");
}

fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// The process's peak resident set size so far (KiB).
fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Keeps the largest resident set size seen after each batch of `stream` in `peak`.
fn track_peak_rss<T: ember::Data>(stream: &DStream<T>, peak: Arc<Mutex<u64>>) {
    stream
        .foreach_rdd(move |_, _| {
            let mut p = peak.lock().unwrap();
            *p = (*p).max(rss_kib());
        })
        .unwrap();
}

/// `update_state_by_key` (or `map_with_state`) over `keys` keys: the first batch creates
/// every key, later batches update `updates` random keys each.
fn state(workers: usize, keys: u64, updates: u64, batches: u64, map_with_state: bool) {
    let before = rss_kib();
    let ssc = context(workers);
    let seeds: Vec<Option<Vec<u64>>> = (1..=batches).map(|b| Some(vec![b])).collect();
    let pairs = ssc.replay_stream(seeds, 1).flat_map(move |b: u64| {
        if b == 1 {
            (0..keys).map(|k| (k, 1i64)).collect::<Vec<_>>()
        } else {
            let mut s = xorshift(b | 1);
            (0..updates)
                .map(|_| {
                    s = xorshift(s);
                    (s % keys, 1i64)
                })
                .collect()
        }
    });
    let peak = Arc::new(Mutex::new(0u64));
    let p = Arc::clone(&peak);
    let (name, per_batch) = if map_with_state {
        let spec = StateSpec::function(|_k: &u64, v: Option<i64>, st: &mut State<i64>| {
            let sum = v.unwrap_or(0) + st.get().copied().unwrap_or(0);
            st.update(sum);
            sum
        });
        let mapped = pairs.map_with_state(spec).into_dstream();
        track_peak_rss(&mapped, p);
        (
            "map_with_state (emits the updated keys)",
            run_timed(ssc, mapped, batches, batches as usize - 1),
        )
    } else {
        let counts = pairs.update_state_by_key(|vs: Vec<i64>, s: Option<i64>| Some(vs.iter().sum::<i64>() + s.unwrap_or(0)));
        track_peak_rss(&counts, p);
        (
            "update_state_by_key (emits the full state)",
            run_timed(ssc, counts, batches, batches as usize - 1),
        )
    };
    let grown = peak.lock().unwrap().saturating_sub(before);
    // The sampled figure depends on what else is alive when the output runs; the process's
    // peak does not (it includes the fixed cost of the engine's threads and code).
    let peak_grown = peak_rss_kib().saturating_sub(before);
    println!(
        "| {name} | {keys} keys, {updates} updates/batch | {workers} | {per_batch:.1} ms | {:.0} B/key (peak {:.0} B/key) |",
        grown as f64 * 1024.0 / keys as f64,
        peak_grown as f64 * 1024.0 / keys as f64
    );
}

/// `update_state_by_key` over `keys` keys with checkpoints every `every` batches (Spark's
/// default is 10 batch intervals at 1 s batches, 10 s) against the same job without a
/// checkpoint directory; then the time to recover from the last checkpoint (`get_or_create`
/// and `start`, which returns once every worker has restored its key groups), and the time to
/// write and read the newest checkpoint's state files alone. The checkpoint directory is under
/// `EMBER_BENCH_DIR` (a path or an `s3://` URL; by default the temporary directory).
fn checkpointing(keys: u64, updates: u64, batches: u64, every: u64) {
    let job = |ssc: &StreamingContext| {
        let seeds: Vec<Option<Vec<u64>>> = (1..=batches).map(|b| Some(vec![b])).collect();
        ssc.replay_stream(seeds, 1)
            .flat_map(move |b: u64| {
                if b == 1 {
                    (0..keys).map(|k| (k, 1i64)).collect::<Vec<_>>()
                } else {
                    let mut s = xorshift(b | 1);
                    (0..updates)
                        .map(|_| {
                            s = xorshift(s);
                            (s % keys, 1i64)
                        })
                        .collect()
                }
            })
            .update_state_by_key(|vs: Vec<i64>, s: Option<i64>| Some(vs.iter().sum::<i64>() + s.unwrap_or(0)))
            .checkpoint(milliseconds(every))
            .unwrap()
    };
    let off = {
        let ssc = context(1);
        let out = job(&ssc);
        run_timed(ssc, out, batches, batches as usize - 1)
    };
    let base = std::env::var("EMBER_BENCH_DIR")
        .ok()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| std::env::temp_dir().display().to_string());
    let dir = format!("{base}/ember-bench-checkpoint-{}", std::process::id());
    let location = ember::storage::Location::parse(&dir).unwrap();
    let on = {
        let ssc = context(1);
        ssc.checkpoint(&dir).unwrap();
        let out = job(&ssc);
        run_timed(ssc, out, batches, batches as usize - 1)
    };
    let newest = location
        .list_dirs()
        .unwrap()
        .into_iter()
        .filter_map(|d| Some((d.strip_prefix("checkpoint-")?.parse::<u64>().ok()?, d)))
        .max()
        .expect("no checkpoint was written")
        .1;
    let files = location.join(&newest).list().unwrap();
    let size: u64 = files.iter().map(|f| f.size).sum();
    // The state files alone, read and written again (what a checkpoint's I/O costs).
    let started = Instant::now();
    let contents: Vec<Vec<u8>> = files
        .iter()
        .map(|f| location.join(&newest).get(&f.name).unwrap().unwrap())
        .collect();
    let read = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    for (f, bytes) in files.iter().zip(contents) {
        location.join("copy").put(&f.name, bytes).unwrap();
    }
    let write = started.elapsed().as_secs_f64() * 1e3;
    location.delete_all("copy").unwrap();
    let started = Instant::now();
    let ssc = StreamingContext::get_or_create(&dir, || {
        let ssc = context(1);
        job(&ssc).foreach_rdd(|_, _| {})?;
        Ok(ssc)
    })
    .unwrap();
    ssc.start().unwrap();
    let recovered = started.elapsed().as_secs_f64() * 1e3;
    ssc.stop(false).unwrap();
    let _ = location.parent().0.delete_all(&location.file_name().unwrap());
    println!(
        "| update_state_by_key, checkpoint every {every} batches, in {base} | {keys} keys, {updates} updates/batch | {off:.1} ms | {on:.1} ms | {:+.1}% | {:.1} MB | write {write:.0} ms, read {read:.0} ms | {recovered:.0} ms |",
        (on / off - 1.0) * 100.0,
        size as f64 / 1e6
    );
}

/// Runs one state benchmark in a fresh process, so that its resident memory is its own.
fn state_in_child(keys: u64, updates: u64, batches: u64, map_with_state: bool) {
    let exe = std::env::current_exe().unwrap();
    let kind = if map_with_state { "map_with_state" } else { "update_state_by_key" };
    let out = std::process::Command::new(exe)
        .args(["state-child", kind, &keys.to_string(), &updates.to_string(), &batches.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    print!("{}", String::from_utf8_lossy(&out.stdout));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "checkpoint") {
        println!(
            "| operation | state | time per batch, no checkpoints | with checkpoints | difference | checkpoint size | its state files alone | recovery (get_or_create + start) |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        let quick = args.iter().any(|a| a == "quick");
        let keys = if quick { 100_000 } else { 1_000_000 };
        checkpointing(keys, 100_000, 41, 10);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "state-child") {
        let n = |j: usize| args[i + j].parse::<u64>().unwrap();
        state(1, n(2), n(3), n(4), args[i + 1] == "map_with_state");
        return;
    }
    let quick = args.iter().any(|a| a == "quick");
    let tail = if quick { 20 } else { 100 };
    println!("| operation | window | workers | time per batch |");
    println!("|---|---|---|---|");
    baseline(1, tail);
    for window in [10, 100, 1000] {
        windowed(1, window, true, tail);
    }
    windowed(1, 10, false, tail);
    windowed(1, 100, false, tail);
    windowed(2, 100, true, tail);
    windowed(2, 100, false, tail);
    println!();
    println!("| operation | state | workers | time per batch | resident memory growth per key, sampled after each batch (process peak) |");
    println!("|---|---|---|---|---|");
    let keys = if quick { 100_000 } else { 1_000_000 };
    let batches = if quick { 6 } else { 22 };
    state_in_child(keys, 100_000, batches, false);
    state_in_child(keys, 100_000, batches, true);
}
