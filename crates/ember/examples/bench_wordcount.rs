//! The seeds' socket word count, instrumented for `bench/compare.sh`: one parseable line per
//! batch with the batch's words and delays, so that ember and Spark Streaming are judged by
//! the same numbers.
//!
//! Run a server first (`ember gen socket --port 9999 --kind words --rate 100000`), then:
//! `cargo run --release -p ember --example bench_wordcount -- HOST PORT BATCHES INTERVAL_MS WORKERS`
//!
//! The job is the seed program as a user writes it (`flat_map` of `split(' ')`, `map` to
//! `(w, 1)`, `reduce_by_key`); its output gathers each batch's counts, as Spark's `collect()`
//! does, and prints
//!
//! ```text
//! BATCH time_ms=T keys=K words=W proc_ms=P sched_ms=S total_ms=D
//! ```
//!
//! with Spark's meanings: `total_ms` is the wall clock when the output runs minus the batch
//! time (the end of the batch's interval); `proc_ms` is the time since the batch could start,
//! the later of its batch time and the previous batch's output, as Spark runs one batch after
//! the other; `sched_ms` is the rest. Stops (at once, not gracefully) after BATCHES batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ember::prelude::*;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

fn main() -> ember::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let host = args.first().map_or("127.0.0.1", String::as_str);
    let port: u16 = arg(&args, 1, "PORT", 9999);
    let batches: u64 = arg(&args, 2, "BATCHES", 20);
    let interval_ms: u64 = arg(&args, 3, "INTERVAL_MS", 1000);
    let workers: usize = arg(&args, 4, "WORKERS", 2);

    let ssc = StreamingContext::builder(milliseconds(interval_ms.max(1)))
        .workers(workers.max(1))
        .build()?;
    let counts = ssc
        .socket_text_stream(host, port)
        .flat_map(|l: String| l.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .map(|w| (w, 1u64))
        .reduce_by_key(|a, b| a + b);

    let done = Arc::new(AtomicU64::new(0));
    let previous_output = Arc::new(AtomicU64::new(0));
    {
        let done = Arc::clone(&done);
        counts.foreach_rdd(move |batch, time| {
            let (keys, words) = batch.iter().fold((0u64, 0u64), |(k, w), (_, c)| (k + 1, w + c));
            let out = now_ms();
            let batch_ms = time.milliseconds();
            let started = batch_ms.max(previous_output.swap(out, Ordering::AcqRel));
            let total = out.saturating_sub(batch_ms);
            let processing = out.saturating_sub(started);
            println!(
                "BATCH time_ms={batch_ms} keys={keys} words={words} proc_ms={processing} sched_ms={} total_ms={total}",
                total.saturating_sub(processing)
            );
            done.fetch_add(1, Ordering::AcqRel);
        })?;
    }
    ssc.start()?;
    while done.load(Ordering::Acquire) < batches {
        if ssc.await_termination_or_timeout(milliseconds(20))? {
            return Ok(());
        }
    }
    ssc.stop(false)
}
