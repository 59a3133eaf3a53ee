//! Custom receivers and socket receivers against real threads and sockets: several receivers
//! unioned, restarts after failures, graceful stop, errors, rate limit.

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use ember::prelude::*;

fn total(stream: &DStream<u64>) -> Arc<Mutex<Vec<u64>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    stream.foreach_rdd(move |b, _| sink.lock().unwrap().extend(b.collect())).unwrap();
    seen
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + StdDuration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(StdDuration::from_millis(10));
    }
}

/// A server that sends `n` numbered lines (`first..first+n`) to its first client, then keeps
/// the connection open.
fn number_server(first: u64, n: u64) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let text: String = (first..first + n).map(|i| format!("{i}\n")).collect();
        conn.write_all(text.as_bytes()).unwrap();
        std::thread::sleep(StdDuration::from_secs(30));
    });
    port
}

#[test]
fn four_socket_receivers_unioned_give_the_exact_total() {
    const PER: u64 = 50_000;
    let ssc = StreamingContext::builder(milliseconds(50)).workers(2).build().unwrap();
    let streams: Vec<DStream<u64>> = (0..4)
        .map(|r| {
            let port = number_server(r * PER, PER);
            ssc.socket_text_stream("127.0.0.1", port).map(|l: String| l.parse::<u64>().unwrap())
        })
        .collect();
    let seen = total(&ssc.union(&streams).unwrap());
    ssc.start().unwrap();
    wait_until("every line arrived", || seen.lock().unwrap().len() as u64 >= 4 * PER);
    ssc.stop(true).unwrap();
    let mut got = seen.lock().unwrap().clone();
    got.sort_unstable();
    assert_eq!(got, (0..4 * PER).collect::<Vec<_>>());
}

/// Stores ten numbers per start; fails its first two starts in two different ways.
struct Flaky {
    starts: Arc<AtomicU64>,
    stops: Arc<AtomicU64>,
}

impl Receiver<u64> for Flaky {
    fn on_start(&mut self, ctx: &ReceiverContext<u64>) {
        let start = self.starts.fetch_add(1, Ordering::SeqCst);
        ctx.store_many(start * 10..start * 10 + 10);
        match start {
            0 => ctx.restart("lost the upstream connection"),
            1 => panic!("upstream sent garbage"),
            _ => ctx.stop("upstream finished"),
        }
    }

    fn on_stop(&mut self) {
        self.stops.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_receiver_that_fails_is_restarted_and_the_stream_goes_on() {
    let (starts, stops) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let ssc = StreamingContext::builder(milliseconds(20))
        .receiver_restart_delay(milliseconds(50))
        .build()
        .unwrap();
    let seen = total(&ssc.receiver_stream(Flaky {
        starts: Arc::clone(&starts),
        stops: Arc::clone(&stops),
    }));
    ssc.start().unwrap();
    wait_until("all three starts stored", || seen.lock().unwrap().len() >= 30);
    ssc.stop(true).unwrap();
    assert_eq!(starts.load(Ordering::SeqCst), 3);
    assert_eq!(stops.load(Ordering::SeqCst), 3);
    let mut got = seen.lock().unwrap().clone();
    got.sort_unstable();
    assert_eq!(got, (0..30).collect::<Vec<_>>());
}

/// Stores numbers one at a time until stopped, counting what `store` accepted.
struct Firehose {
    stored: Arc<AtomicU64>,
}

impl Receiver<u64> for Firehose {
    fn on_start(&mut self, ctx: &ReceiverContext<u64>) {
        let mut i = 0;
        while !ctx.is_stopped() {
            ctx.store(i);
            i += 1;
            self.stored.store(i, Ordering::SeqCst);
        }
    }
}

#[test]
fn graceful_stop_processes_everything_already_received() {
    let stored = Arc::new(AtomicU64::new(0));
    // A job slower than the receiver: batches are still in flight when stop is called.
    let ssc = StreamingContext::builder(milliseconds(10)).workers(2).build().unwrap();
    let stream = ssc.receiver_stream(Firehose {
        stored: Arc::clone(&stored),
    });
    let seen = total(&stream.map(|x| {
        if x % 10_000 == 0 {
            std::thread::sleep(StdDuration::from_millis(5));
        }
        x
    }));
    ssc.start().unwrap();
    wait_until("the receiver stored a lot", || stored.load(Ordering::SeqCst) > 200_000);
    ssc.stop(true).unwrap();
    let n = stored.load(Ordering::SeqCst);
    let mut got = seen.lock().unwrap().clone();
    got.sort_unstable();
    assert_eq!(got.len() as u64, n, "records stored but not processed");
    assert!(got.iter().copied().eq(0..n), "records lost or repeated");
}

/// Reports one problem, then keeps storing.
struct Complainer;

impl Receiver<u64> for Complainer {
    fn on_start(&mut self, ctx: &ReceiverContext<u64>) {
        ctx.report_error("record 7 has a bad checksum");
        ctx.store(8);
    }
}

#[test]
fn a_reported_error_reaches_await_termination_naming_the_receiver() {
    let ssc = StreamingContext::new(milliseconds(20)).unwrap();
    let seen = total(&ssc.receiver_stream(Complainer));
    ssc.start().unwrap();
    let err = ssc.await_termination_or_timeout(seconds(10)).unwrap_err().to_string();
    wait_until("the record after the error arrived", || !seen.lock().unwrap().is_empty());
    ssc.stop(true).unwrap();
    assert_eq!(err, "source receiver_stream(Complainer) failed: record 7 has a bad checksum");
    assert_eq!(*seen.lock().unwrap(), vec![8]);
}

#[test]
fn the_maximum_rate_paces_store() {
    // 300 records at 1000/s cannot be stored in less than 0.29 s, however fast the machine.
    let stored = Arc::new(AtomicU64::new(0));
    let ssc = StreamingContext::builder(milliseconds(20)).receiver_max_rate(1000).build().unwrap();
    let seen = total(&ssc.receiver_stream(Firehose {
        stored: Arc::clone(&stored),
    }));
    ssc.start().unwrap();
    let began = Instant::now();
    wait_until("300 records stored", || stored.load(Ordering::SeqCst) >= 300);
    let took = began.elapsed();
    ssc.stop(true).unwrap();
    assert!(took >= StdDuration::from_millis(290), "300 records stored in {took:?} at 1000/s");
    assert_eq!(seen.lock().unwrap().len() as u64, stored.load(Ordering::SeqCst));
}
