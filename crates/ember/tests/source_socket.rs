//! The socket receiver against a real local TCP server: reconnects after the server restarts
//! without losing lines, and applies the UTF-8 policy.

use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use ember::prelude::*;

fn collect(stream: &DStream<String>) -> Arc<Mutex<Vec<String>>> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&out);
    stream.foreach_rdd(move |b, _| sink.lock().unwrap().extend(b.collect())).unwrap();
    out
}

fn wait_for(out: &Arc<Mutex<Vec<String>>>, n: usize) {
    let deadline = Instant::now() + StdDuration::from_secs(30);
    while out.lock().unwrap().len() < n && Instant::now() < deadline {
        std::thread::sleep(StdDuration::from_millis(20));
    }
}

#[test]
fn reconnects_after_server_restart_without_losing_lines() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ssc = StreamingContext::builder(milliseconds(50)).workers(2).build().unwrap();
    let out = collect(&ssc.socket_text_stream("127.0.0.1", port));
    ssc.start().unwrap();

    let (mut conn, _) = listener.accept().unwrap();
    for i in 0..100 {
        writeln!(conn, "first-{i}").unwrap();
    }
    drop(conn);
    drop(listener);
    wait_for(&out, 100);

    // The server comes back on the same port; the receiver reconnects.
    std::thread::sleep(StdDuration::from_millis(300));
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    for i in 0..1000 {
        writeln!(conn, "second-{i}").unwrap();
    }
    write!(conn, "last-without-newline").unwrap();
    drop(conn);
    wait_for(&out, 1101);
    ssc.stop(true).unwrap();

    let got = out.lock().unwrap().clone();
    let mut expected: Vec<String> = (0..100).map(|i| format!("first-{i}")).collect();
    expected.extend((0..1000).map(|i| format!("second-{i}")));
    expected.push("last-without-newline".into());
    assert_eq!(got, expected);
}

fn serve_bytes(bytes: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            conn.write_all(bytes).unwrap();
            // Keep the connection open so the receiver does not reconnect and read it twice.
            std::thread::sleep(StdDuration::from_secs(5));
        }
    });
    port
}

#[test]
fn invalid_utf8_is_decoded_lossily_by_default() {
    let port = serve_bytes(b"ok\n\xff\xfebad\nfine\r\n");
    let ssc = StreamingContext::new(milliseconds(50)).unwrap();
    let out = collect(&ssc.socket_text_stream("127.0.0.1", port));
    ssc.start().unwrap();
    wait_for(&out, 3);
    ssc.stop(true).unwrap();
    assert_eq!(
        *out.lock().unwrap(),
        vec!["ok".to_owned(), "\u{FFFD}\u{FFFD}bad".to_owned(), "fine".to_owned()]
    );
}

#[test]
fn invalid_utf8_is_reported_with_its_position_under_the_strict_policy() {
    let port = serve_bytes(b"ok\n\xff\xfebad\nfine\n");
    let ssc = StreamingContext::new(milliseconds(50)).unwrap();
    let out = collect(&ssc.socket_text_stream_with("127.0.0.1", port, Utf8Policy::Fail));
    ssc.start().unwrap();
    wait_for(&out, 2);
    let err = ssc.await_termination_or_timeout(seconds(10)).unwrap_err();
    ssc.stop(true).unwrap();
    let text = err.to_string();
    assert!(
        text.contains("line 2") && text.contains("byte offset 3") && text.contains("UTF-8"),
        "{text}"
    );
    assert_eq!(*out.lock().unwrap(), vec!["ok".to_owned(), "fine".to_owned()]);
}
