//! Receivers under bad input and overload: the byte bound on what a receiver holds, the line
//! limit and its policies, receivers that keep failing, a receiver that blocks a graceful stop,
//! and a cluster whose peer never starts.

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use ember::prelude::*;
use ember::{Error, LongLinePolicy};

fn collect(stream: &DStream<String>) -> Arc<Mutex<Vec<String>>> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&out);
    stream.foreach_rdd(move |b, _| sink.lock().unwrap().extend(b.collect())).unwrap();
    out
}

fn wait_until(what: impl Fn() -> bool) {
    let deadline = Instant::now() + StdDuration::from_secs(60);
    while !what() && Instant::now() < deadline {
        std::thread::sleep(StdDuration::from_millis(20));
    }
}

/// A server that sends `bytes` to its first client, then keeps the connection open.
fn serve(bytes: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(&bytes).unwrap();
        std::thread::sleep(StdDuration::from_secs(60));
    });
    port
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// 64 KB lines, 640 MB in all, into a job slower than the sender: the receiver holds at most
/// its byte bound (8 MiB here), so resident memory stays within the documented margin (README,
/// "Live sources": the bound times `1 + 2 × max_batches_in_flight`, plus one batch decoded),
/// the sender is slowed through TCP, and every line arrives once.
#[test]
fn sixty_four_kb_lines_into_a_slow_pipeline_keep_memory_under_the_byte_bound() {
    const LINES: u64 = 10_000;
    const LINE: usize = 64 * 1024;
    const BOUND: usize = 8 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sender = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut line = vec![b'x'; LINE];
        for i in 0..LINES {
            let tag = format!("{i:08}");
            line[..8].copy_from_slice(tag.as_bytes());
            line[LINE - 1] = b'\n';
            conn.write_all(&line).unwrap();
        }
        std::thread::sleep(StdDuration::from_secs(120));
    });
    let ssc = StreamingContext::builder(milliseconds(50))
        .workers(2)
        .receiver_buffer_bytes(BOUND)
        .build()
        .unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let sum = Arc::new(AtomicU64::new(0));
    let (count_w, sum_w) = (Arc::clone(&count), Arc::clone(&sum));
    ssc.socket_text_stream("127.0.0.1", port)
        .map(|l: String| {
            assert_eq!(l.len(), LINE - 1, "a line arrived cut");
            l[..8].parse::<u64>().unwrap()
        })
        .foreach_rdd(move |batch, _| {
            let tags = batch.collect();
            // Slower than the sender: 300 µs a 64 KB line, about 200 MB/s.
            std::thread::sleep(StdDuration::from_micros(300) * tags.len() as u32);
            sum_w.fetch_add(tags.iter().sum::<u64>(), Ordering::SeqCst);
            count_w.fetch_add(tags.len() as u64, Ordering::SeqCst);
        })
        .unwrap();
    let baseline = rss_bytes();
    ssc.start().unwrap();
    let mut peak = baseline;
    let deadline = Instant::now() + StdDuration::from_secs(120);
    while count.load(Ordering::SeqCst) < LINES && Instant::now() < deadline {
        peak = peak.max(rss_bytes());
        std::thread::sleep(StdDuration::from_millis(10));
    }
    ssc.stop(true).unwrap();
    assert_eq!(count.load(Ordering::SeqCst), LINES, "every line arrives");
    assert_eq!(sum.load(Ordering::SeqCst), LINES * (LINES - 1) / 2, "lines lost or repeated");
    let growth = peak.saturating_sub(baseline);
    // 8 MiB × (1 + 2 × 2) held as raw lines, one more batch decoded, and allocator slack.
    let margin = (BOUND as u64) * 5 + (BOUND as u64) * 2 + (16 << 20);
    println!("resident memory grew by {} MiB (allowed {} MiB)", growth >> 20, margin >> 20);
    assert!(growth < margin, "resident memory grew by {} MiB", growth >> 20);
    drop(sender);
}

#[test]
fn an_over_long_line_is_skipped_and_counted_by_default() {
    let mut input = b"first\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 3 << 20));
    input.extend(b"\nsecond\n");
    let port = serve(input);
    let ssc = StreamingContext::builder(milliseconds(50)).max_line_bytes(1 << 20).build().unwrap();
    let out = collect(&ssc.socket_text_stream("127.0.0.1", port));
    ssc.start().unwrap();
    wait_until(|| out.lock().unwrap().len() >= 2);
    ssc.stop(true).unwrap();
    assert_eq!(*out.lock().unwrap(), ["first", "second"]);
    let bad = ssc.bad_records();
    assert_eq!(bad.len(), 1);
    assert_eq!((bad[0].too_long, bad[0].repaired, bad[0].rejected), (1, 0, 0));
    assert_eq!(bad[0].source, format!("socket_text_stream(127.0.0.1:{port})"));
}

#[test]
fn under_the_fail_policy_an_over_long_line_stops_the_stream_with_an_error_naming_it() {
    let mut input = b"first\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 2000));
    input.extend(b"\nsecond\n");
    let port = serve(input);
    let ssc = StreamingContext::builder(milliseconds(50))
        .max_line_bytes(1000)
        .long_line_policy(LongLinePolicy::Fail)
        .build()
        .unwrap();
    let out = collect(&ssc.socket_text_stream("127.0.0.1", port));
    ssc.start().unwrap();
    let error = ssc.await_termination_or_timeout(seconds(20)).unwrap_err();
    ssc.stop(true).unwrap();
    let text = error.to_string();
    assert!(matches!(error, Error::Source { .. }), "{error:?}");
    assert!(
        text.contains("line 2 (byte offset 6) of connection 1") && text.contains("longer than the limit of 1000 bytes"),
        "{text}"
    );
    assert_eq!(*out.lock().unwrap(), ["first"], "nothing after the line is taken");
    assert!(!ssc.receivers()[0].active);
}

#[test]
fn a_hundred_thousand_bad_lines_are_all_kept_and_counted_exactly() {
    let mut input = Vec::new();
    for i in 0..100_000 {
        input.extend(format!("bad{i}-").as_bytes());
        input.extend(b"\xff\xfe\n");
    }
    let port = serve(input);
    let ssc = StreamingContext::builder(milliseconds(50)).workers(2).build().unwrap();
    let out = collect(&ssc.socket_text_stream("127.0.0.1", port));
    ssc.start().unwrap();
    wait_until(|| out.lock().unwrap().len() >= 100_000);
    ssc.stop(true).unwrap();
    let mut got = out.lock().unwrap().clone();
    got.sort_by_key(|l| l[3..l.find('-').unwrap()].parse::<u32>().unwrap());
    let want: Vec<String> = (0..100_000).map(|i| format!("bad{i}-\u{fffd}\u{fffd}")).collect();
    assert_eq!(got, want);
    assert_eq!(ssc.bad_records()[0].repaired, 100_000);
}

/// A receiver whose `on_start` always panics.
struct Broken;

impl Receiver<u64> for Broken {
    fn on_start(&mut self, _: &ReceiverContext<u64>) {
        panic!("the device is gone");
    }
}

#[test]
fn a_receiver_that_always_fails_makes_await_termination_return_its_error() {
    let ssc = StreamingContext::builder(milliseconds(20))
        .receiver_restart_delay(milliseconds(10))
        .receiver_max_failed_restarts(3)
        .build()
        .unwrap();
    ssc.receiver_stream(Broken).count().foreach_rdd(|_, _| {}).unwrap();
    ssc.start().unwrap();
    let error = ssc.await_termination_or_timeout(seconds(20)).unwrap_err();
    let info = ssc.receivers();
    ssc.stop(false).unwrap();
    let text = error.to_string();
    assert!(
        text.contains("receiver_stream(Broken)") && text.contains("failed 3 times in a row") && text.contains("the device is gone"),
        "{text}"
    );
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].restarts, 2, "restarted after the first two failures, stopped at the third");
    assert!(!info[0].active);
    assert!(info[0].last_error.as_deref().is_some_and(|e| e.contains("the device is gone")));
}

/// A receiver stuck in a call that never checks `is_stopped`.
struct Stuck;

impl Receiver<u64> for Stuck {
    fn on_start(&mut self, _: &ReceiverContext<u64>) {
        std::thread::sleep(StdDuration::from_secs(30));
    }
}

#[test]
fn a_graceful_stop_with_a_blocked_receiver_returns_within_its_timeout() {
    let ssc = StreamingContext::builder(milliseconds(20))
        .graceful_stop_timeout(seconds(1))
        .build()
        .unwrap();
    let batches = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&batches);
    ssc.receiver_stream(Stuck)
        .count()
        .foreach_rdd(move |_, _| {
            seen.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    ssc.start().unwrap();
    wait_until(|| batches.load(Ordering::SeqCst) >= 3);
    let began = Instant::now();
    ssc.stop(true).unwrap();
    let took = began.elapsed();
    assert!(took < StdDuration::from_secs(5), "stop took {took:?}");
    assert!(
        took >= StdDuration::from_millis(900),
        "the stop waited for the receiver first: {took:?}"
    );
}

#[test]
fn a_cluster_start_without_its_peer_fails_within_the_timeout_naming_its_address() {
    let free = || TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let addresses = vec![free(), free()];
    let ssc = StreamingContext::builder(milliseconds(100))
        .cluster(0, addresses.clone())
        .cluster_start_timeout(seconds(2))
        .build()
        .unwrap();
    ssc.queue_stream(&BatchQueue::<u64>::new(), true, None)
        .count()
        .foreach_rdd(|_, _| {})
        .unwrap();
    let began = Instant::now();
    let error = ssc.start().unwrap_err();
    let took = began.elapsed();
    assert!(took < StdDuration::from_secs(8), "start took {took:?}");
    let text = error.to_string();
    assert!(text.contains(&format!("process 1 (at {}) did not join", addresses[1])), "{text}");
}
