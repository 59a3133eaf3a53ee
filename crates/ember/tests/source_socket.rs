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

#[test]
fn a_converter_turns_the_raw_byte_stream_into_records_and_the_receiver_reconnects() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ssc = StreamingContext::builder(milliseconds(50))
        .workers(2)
        .receiver_restart_delay(milliseconds(50))
        .build()
        .unwrap();
    // Big-endian u32 records, four bytes each, read lazily as they arrive.
    let numbers = ssc.socket_stream_converted("127.0.0.1", port, |mut input: Box<dyn std::io::Read + Send>| {
        std::iter::from_fn(move || {
            let mut bytes = [0u8; 4];
            input.read_exact(&mut bytes).ok().map(|()| u32::from_be_bytes(bytes))
        })
    });
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&out);
    numbers.foreach_rdd(move |b, _| sink.lock().unwrap().extend(b.collect())).unwrap();
    ssc.start().unwrap();
    for round in 0..2u32 {
        let (mut conn, _) = listener.accept().unwrap();
        let bytes: Vec<u8> = (0..1000u32).flat_map(|i| (round * 1000 + i).to_be_bytes()).collect();
        // Split mid-record: the converter's reads wait for the rest.
        conn.write_all(&bytes[..1001]).unwrap();
        std::thread::sleep(StdDuration::from_millis(100));
        conn.write_all(&bytes[1001..]).unwrap();
        drop(conn);
        let deadline = Instant::now() + StdDuration::from_secs(30);
        while out.lock().unwrap().len() < 1000 * (round as usize + 1) && Instant::now() < deadline {
            std::thread::sleep(StdDuration::from_millis(20));
        }
    }
    ssc.stop(true).unwrap();
    let mut got = out.lock().unwrap().clone();
    got.sort_unstable();
    assert_eq!(got, (0..2000).collect::<Vec<u32>>());
    assert!(ssc.receivers()[0].restarts >= 1, "reconnected after the first connection ended");
}

#[test]
fn stopping_interrupts_a_converter_blocked_in_a_read() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        // Accepts and then sends nothing, keeping the connection open.
        let (conn, _) = listener.accept().unwrap();
        std::thread::sleep(StdDuration::from_secs(30));
        drop(conn);
    });
    let ssc = StreamingContext::builder(milliseconds(50)).build().unwrap();
    ssc.socket_stream_converted("127.0.0.1", port, |input: Box<dyn std::io::Read + Send>| {
        std::io::BufRead::lines(std::io::BufReader::new(input)).map_while(Result::ok)
    })
    .count()
    .foreach_rdd(|_, _| {})
    .unwrap();
    ssc.start().unwrap();
    std::thread::sleep(StdDuration::from_millis(300));
    let began = Instant::now();
    ssc.stop(true).unwrap();
    assert!(began.elapsed() < StdDuration::from_secs(5), "stop took {:?}", began.elapsed());
    drop(server);
}
