//! A socket sender that tries to send ten times what the job can process, for 30 s: memory
//! stays bounded (the receiver's buffer fills, the receiver stops reading, TCP slows the
//! sender down) and every line the sender managed to send is processed exactly once.
//!
//! The bound asserted here, and documented in README's "Live sources": resident memory grows
//! by less than 64 MiB. Without the bound the backlog would be about 13 million lines
//! (hundreds of MiB).

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use ember::prelude::*;

/// The job's cost per record: it sustains about 50 000 records/s.
const COST_PER_RECORD: StdDuration = StdDuration::from_micros(20);
/// What the sender attempts: ten times that.
const ATTEMPTED_PER_SECOND: u64 = 500_000;
const RUN: StdDuration = StdDuration::from_secs(30);
const RSS_BOUND_BYTES: u64 = 64 << 20;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[test]
fn input_at_ten_times_capacity_keeps_memory_bounded_and_loses_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = Arc::new(AtomicU64::new(0));
    let sender_done = Arc::new(AtomicBool::new(false));
    let (sent_w, done_w) = (Arc::clone(&sent), Arc::clone(&sender_done));
    let sender = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let began = Instant::now();
        let mut next = 0u64;
        while began.elapsed() < RUN {
            // Every 10 ms, what is due at the attempted rate, but never more than 10 ms worth:
            // time spent blocked in a write is lost, as for a real producer that is slowed.
            let due = (began.elapsed().as_secs_f64() * ATTEMPTED_PER_SECOND as f64) as u64;
            let due = due.min(next + ATTEMPTED_PER_SECOND / 100);
            if due > next {
                let text: String = (next..due).map(|i| format!("{i}\n")).collect();
                conn.write_all(text.as_bytes()).unwrap();
                next = due;
                sent_w.store(next, Ordering::SeqCst);
            }
            std::thread::sleep(StdDuration::from_millis(10));
        }
        done_w.store(true, Ordering::SeqCst);
        // Keep the connection open until the test is done reading.
        std::thread::sleep(StdDuration::from_secs(120));
        drop(conn);
    });

    let ssc = StreamingContext::builder(milliseconds(100))
        .workers(2)
        .backpressure(true)
        .receiver_buffer_records(50_000)
        .build()
        .unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let sum = Arc::new(Mutex::new(0u128));
    let (count_w, sum_w) = (Arc::clone(&count), Arc::clone(&sum));
    ssc.socket_text_stream("127.0.0.1", port)
        .map(|l: String| l.parse::<u64>().unwrap())
        .foreach_rdd(move |batch, _| {
            let values = batch.collect();
            std::thread::sleep(COST_PER_RECORD * values.len() as u32);
            *sum_w.lock().unwrap() += values.iter().map(|&v| u128::from(v)).sum::<u128>();
            count_w.fetch_add(values.len() as u64, Ordering::SeqCst);
        })
        .unwrap();
    ssc.start().unwrap();
    std::thread::sleep(StdDuration::from_millis(500));
    let baseline = rss_bytes();
    let mut peak = baseline;
    while !sender_done.load(Ordering::SeqCst) {
        peak = peak.max(rss_bytes());
        std::thread::sleep(StdDuration::from_millis(100));
    }
    let total_sent = sent.load(Ordering::SeqCst);
    let deadline = Instant::now() + StdDuration::from_secs(120);
    while count.load(Ordering::SeqCst) < total_sent && Instant::now() < deadline {
        peak = peak.max(rss_bytes());
        std::thread::sleep(StdDuration::from_millis(50));
    }
    ssc.stop(true).unwrap();
    let processed = count.load(Ordering::SeqCst);
    println!(
        "sent {total_sent} lines in {RUN:?} (attempted {}), processed {processed}; RSS baseline {} MiB, peak {} MiB",
        ATTEMPTED_PER_SECOND * RUN.as_secs(),
        baseline >> 20,
        peak >> 20
    );
    assert_eq!(processed, total_sent, "every line sent is processed once");
    let expected_sum = u128::from(total_sent) * u128::from(total_sent.saturating_sub(1)) / 2;
    assert_eq!(*sum.lock().unwrap(), expected_sum, "lines lost or repeated");
    assert!(
        total_sent < ATTEMPTED_PER_SECOND * RUN.as_secs() / 2,
        "the sender was not slowed down: it sent {total_sent} lines"
    );
    assert!(
        peak.saturating_sub(baseline) < RSS_BOUND_BYTES,
        "resident memory grew by {} MiB",
        (peak - baseline) >> 20
    );
    drop(sender);
}
