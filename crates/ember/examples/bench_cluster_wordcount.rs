//! The seeds' word count as a cluster benchmark: every worker generates its share of each batch
//! (lines of 10 words from a 5,000-word vocabulary, from one seed per batch, so input memory does
//! not grow), `flat_map` + `(w, 1)` + `reduce_by_key` exchange the partial counts between the
//! processes, batches back to back (the no-wait clock). Process 0 prints the words per second
//! over the batches after the first `WARMUP`.
//!
//! Run on its own (one process) or under `ember cluster` (`bench/netns-wordcount.sh` runs it on
//! 1, 2 and 3 network namespaces and reads the bytes the links carried). Arguments: batches,
//! lines per batch and partition.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ember::prelude::*;

const WARMUP: u64 = 5;
const VOCABULARY: u64 = 5_000;
const PARTITIONS: usize = 6;

fn xorshift(mut s: u64) -> u64 {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    s
}

fn main() -> ember::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let batches: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(40);
    let lines: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let words: Vec<String> = (0..VOCABULARY)
        .map(|i| format!("w{:x}", i.wrapping_mul(0x9e37_79b9) % 0xff_ffff))
        .collect();
    let words = Arc::new(words);
    let mut builder = StreamingContext::builder(milliseconds(100)).no_wait().workers(1);
    if std::env::var_os("EMBER_CLUSTER_ADDRESSES").is_some() {
        builder = builder.cluster_from_env()?;
    }
    let ssc = builder.build()?;
    // One seed per partition and batch; each worker expands its seeds into lines.
    let seeds: Vec<Option<Vec<u64>>> = (0..batches)
        .map(|b| Some((0..PARTITIONS as u64).map(|p| b * 1000 + p + 1).collect()))
        .collect();
    let counts = ssc
        .replay_stream(seeds, PARTITIONS)
        .flat_map(move |seed: u64| {
            let mut s = xorshift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let mut text = Vec::with_capacity(lines as usize);
            for _ in 0..lines {
                let line: Vec<&str> = (0..10)
                    .map(|_| {
                        s = xorshift(s);
                        words[(s % VOCABULARY) as usize].as_str()
                    })
                    .collect();
                text.push(line.join(" "));
            }
            text
        })
        .flat_map(|line: String| line.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .map(|w| (w, 1u64))
        .reduce_by_key(|a, b| a + b);
    let counted = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let started: Arc<Mutex<Option<Instant>>> = Arc::default();
    let (c, d, s) = (Arc::clone(&counted), Arc::clone(&done), Arc::clone(&started));
    counts.foreach_rdd(move |batch, _| {
        let n = d.fetch_add(1, Ordering::SeqCst) + 1;
        if n == WARMUP {
            *s.lock().unwrap() = Some(Instant::now());
        } else if n > WARMUP {
            c.fetch_add(batch.collect().iter().map(|(_, n)| n).sum(), Ordering::SeqCst);
        }
    })?;
    ssc.start()?;
    let process = std::env::var("EMBER_CLUSTER_PROCESS").unwrap_or_else(|_| "0".into());
    if process != "0" {
        ssc.await_termination()?;
        return Ok(());
    }
    while done.load(Ordering::SeqCst) < batches {
        if ssc.await_termination_or_timeout(milliseconds(5))? {
            break;
        }
    }
    let elapsed = started.lock().unwrap().map(|t| t.elapsed().as_secs_f64()).unwrap_or(f64::NAN);
    ssc.stop(true)?;
    let processes = std::env::var("EMBER_CLUSTER_ADDRESSES").map_or(1, |a| a.split(',').count());
    println!(
        "EMBER-BENCH processes={processes} words={} seconds={elapsed:.3} words_per_s={:.0}",
        counted.load(Ordering::SeqCst),
        counted.load(Ordering::SeqCst) as f64 / elapsed
    );
    Ok(())
}
