//! A started context dropped without `stop` stops everything it started: no worker, output,
//! receiver or control thread of ember (or timely) outlives it. Alone in its test binary, so
//! that no other test's threads are counted.

use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use ember::prelude::*;

/// Names of this process's threads started by ember or timely.
fn engine_threads() -> Vec<String> {
    let mut names = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let comm = task.unwrap().path().join("comm");
        if let Ok(name) = std::fs::read_to_string(comm) {
            let name = name.trim().to_owned();
            if name.starts_with("ember") || name.starts_with("timely") {
                names.push(name);
            }
        }
    }
    names.sort();
    names
}

#[test]
fn a_started_context_dropped_without_stop_leaves_no_ember_thread() {
    // A server that keeps sending lines, so the receiver is busy when the context is dropped.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            while conn.write_all(b"a b c\n").is_ok() {
                std::thread::sleep(StdDuration::from_millis(1));
            }
        }
    });
    let seen = Arc::new(Mutex::new(0u64));
    {
        let ssc = StreamingContext::builder(milliseconds(50)).workers(2).build().unwrap();
        let sink = Arc::clone(&seen);
        ssc.socket_text_stream("127.0.0.1", port)
            .flat_map(|l: String| l.split(' ').map(str::to_owned).collect::<Vec<_>>())
            .map(|w| (w, 1u64))
            .reduce_by_key(|a, b| a + b)
            .foreach_rdd(move |b, _| *sink.lock().unwrap() += b.count())
            .unwrap();
        ssc.start().unwrap();
        let deadline = Instant::now() + StdDuration::from_secs(30);
        while *seen.lock().unwrap() == 0 {
            assert!(Instant::now() < deadline, "no batch with data within 30 s");
            std::thread::sleep(StdDuration::from_millis(10));
        }
        let running = engine_threads();
        assert!(running.iter().any(|t| t.starts_with("timely:work")), "{running:?}");
        assert!(running.iter().any(|t| t.starts_with("ember-receiver")), "{running:?}");
        assert!(running.iter().any(|t| t.starts_with("ember-output")), "{running:?}");
        // Dropped here, started and never stopped.
    }
    let left = engine_threads();
    assert!(left.is_empty(), "threads still running after the context was dropped: {left:?}");
}
