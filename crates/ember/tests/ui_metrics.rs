//! The web UI's endpoints on a short run with a receiver, two outputs and a failing batch:
//! `/metrics` parses as Prometheus' text format, the JSON endpoints have Spark's shapes, and
//! their numbers agree with what a listener saw; the page and the charts are served.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use ember::prelude::*;
use ember::{BatchInfo, StreamingListener};
use serde_json::Value;

#[derive(Clone, Default)]
struct Batches(Arc<Mutex<Vec<BatchInfo>>>);

impl StreamingListener for Batches {
    fn on_batch_completed(&mut self, b: &BatchInfo) {
        self.0.lock().unwrap().push(b.clone());
    }
}

/// `GET path`: the status code and the body.
fn get(address: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no body in {response:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    (status, body.to_owned())
}

fn json(address: SocketAddr, path: &str) -> Value {
    let (status, body) = get(address, path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

#[test]
fn metrics_json_and_page_agree_with_the_listener() {
    // A line server for the receiver: three lines, then the connection stays open.
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut client, _) = server.accept().unwrap();
        client.write_all(b"a b\nc\nd e f\n").unwrap();
        std::thread::sleep(StdDuration::from_secs(30));
    });
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1))
        .workers(2)
        .manual_clock(&clock)
        .ui_port(0)
        .build()
        .unwrap();
    let seen = Batches::default();
    ssc.add_streaming_listener(seen.clone());
    let numbers = ssc.replay_stream(vec![Some(vec![1, 2, 3]), Some(vec![]), Some(vec![4, 5])], 2);
    let lines = ssc.socket_text_stream("127.0.0.1", port);
    numbers.count().foreach_rdd(|_, _| {}).unwrap();
    numbers
        .try_foreach_rdd(|_, t| {
            if t.milliseconds() == 3000 {
                Err("refused on purpose")
            } else {
                Ok(())
            }
        })
        .unwrap();
    lines.foreach_rdd(|_, _| {}).unwrap();
    // A stateful stream: its keys (odd and even) are a metric.
    let parity = numbers
        .map(|x: i32| (x % 2, 1u64))
        .update_state_by_key(|new: Vec<u64>, old: Option<u64>| Some(old.unwrap_or(0) + new.iter().sum::<u64>()));
    parity.foreach_rdd(|_, _| {}).unwrap();
    ssc.start().unwrap();
    let address = ssc.ui_address().expect("the UI runs");
    assert!(address.ip().is_loopback(), "{address}");
    // Let the receiver store the three lines before the first batch is cut.
    let deadline = Instant::now() + StdDuration::from_secs(30);
    while ssc.receivers().first().is_none_or(|r| r.stored < 3) {
        assert!(
            Instant::now() < deadline,
            "the receiver did not store the lines: {:?}",
            ssc.receivers()
        );
        std::thread::sleep(StdDuration::from_millis(10));
    }
    clock.advance(seconds(3));
    assert!(ssc.await_batch(Time::from_millis(3000), seconds(60)).unwrap());
    let deadline = Instant::now() + StdDuration::from_secs(30);
    let statistics = loop {
        let s = json(address, "/api/v1/streaming/statistics");
        if s["numTotalCompletedBatches"] == 3 {
            break s;
        }
        assert!(Instant::now() < deadline, "the UI did not see 3 batches: {s}");
        std::thread::sleep(StdDuration::from_millis(20));
    };
    let batches = seen.0.lock().unwrap().clone();
    assert_eq!(batches.len(), 3);
    let records: u64 = batches.iter().map(BatchInfo::num_records).sum();
    assert_eq!(records, 5 + 3, "{batches:#?}");

    // Spark's StreamingStatistics.
    assert_eq!(statistics["batchDuration"], 1000);
    assert_eq!(statistics["numProcessedRecords"], records);
    assert_eq!(statistics["numRetainedCompletedBatches"], 3);
    assert_eq!(statistics["numFailedBatches"], 1);
    assert_eq!(statistics["numReceivers"], 1);
    assert_eq!(statistics["numActiveReceivers"], 1);
    let mean = |f: fn(&BatchInfo) -> Option<u64>| batches.iter().filter_map(f).sum::<u64>() as f64 / 3.0;
    assert_eq!(statistics["avgTotalDelay"].as_f64(), Some(mean(BatchInfo::total_delay)));
    assert_eq!(statistics["avgProcessingTime"].as_f64(), Some(mean(BatchInfo::processing_delay)));
    assert!(statistics["startTime"].as_u64().unwrap() > 0);

    // Batches, newest first, as the listener saw them.
    let list = json(address, "/api/v1/streaming/batches");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3);
    for (item, batch) in list.iter().zip(batches.iter().rev()) {
        assert_eq!(item["batchTime"], batch.batch_time.milliseconds());
        assert_eq!(item["status"], "COMPLETED");
        assert_eq!(item["inputSize"], batch.num_records());
        assert_eq!(item["totalDelay"], batch.total_delay().unwrap());
        assert_eq!(item["numTotalOutputOps"], 4);
        assert_eq!(item["stateKeys"][parity.operator_name()], 2, "{item}");
        let failed = if batch.batch_time.milliseconds() == 3000 { 1 } else { 0 };
        assert_eq!(item["numFailedOutputOps"], failed, "{item}");
    }
    let one = json(address, "/api/v1/streaming/batches/3000");
    let ops = one["outputOperations"].as_array().unwrap();
    assert_eq!(ops.len(), 4);
    assert!(
        ops.iter()
            .any(|o| o["failureReason"].as_str().is_some_and(|r| r.contains("refused on purpose"))),
        "{one}"
    );
    assert_eq!(get(address, "/api/v1/streaming/batches/999").0, 404);

    let receivers = json(address, "/api/v1/streaming/receivers");
    assert_eq!(receivers[0]["streamName"], format!("socket_text_stream(127.0.0.1:{port})"));
    assert_eq!(receivers[0]["recordsStored"], 3);
    assert_eq!(receivers[0]["isActive"], true);
    assert_eq!(receivers[0]["bufferedRecords"], 0);
    assert_eq!(receivers[0]["rateLimit"], Value::Null);

    // Prometheus' text format, parsed.
    let (status, text) = get(address, "/metrics");
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let value = |name: &str, label: Option<(&str, &str)>| -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("no sample {name} {label:?} in\n{text}"));
        match sample.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: {other:?}"),
        }
    };
    assert_eq!(value("ember_batches_completed_total", None), 3.0);
    assert_eq!(value("ember_batches_failed_total", None), 1.0);
    assert_eq!(value("ember_input_records_total", None), records as f64);
    assert_eq!(
        value("ember_stream_input_records_total", Some(("stream", &numbers.operator_name()))),
        5.0
    );
    assert_eq!(
        value("ember_stream_input_records_total", Some(("stream", &lines.operator_name()))),
        3.0
    );
    assert_eq!(value("ember_receiver_records_stored_total", None), 3.0);
    assert_eq!(value("ember_receiver_buffered_records", None), 0.0);
    assert_eq!(value("ember_state_keys", Some(("stream", &parity.operator_name()))), 2.0);
    let last = batches.last().unwrap();
    assert_eq!(
        value("ember_last_batch_total_delay_seconds", None),
        last.total_delay().unwrap() as f64 / 1000.0
    );

    // The page and its charts.
    let (status, page) = get(address, "/");
    assert_eq!(status, 200);
    assert!(page.contains("Streaming statistics") && page.contains("/api/v1/streaming/statistics"));
    for chart in ["input_rate", "scheduling_delay", "processing_time", "total_delay"] {
        for kind in ["timeline", "histogram"] {
            let (status, svg) = get(address, &format!("/charts/{chart}-{kind}.svg"));
            assert_eq!(status, 200, "{chart}-{kind}: {svg}");
            assert!(svg.starts_with("<svg"), "{chart}-{kind}: {svg}");
            if kind == "timeline" {
                assert_eq!(svg.matches("<circle").count(), 3, "{chart}: one point per batch\n{svg}");
            }
        }
    }
    assert_eq!(get(address, "/charts/nothing-timeline.svg").0, 404);
    ssc.stop(false).unwrap();
    // The UI stops with the context (its listening socket closes as its accept thread ends).
    let deadline = Instant::now() + StdDuration::from_secs(10);
    while TcpStream::connect(address).is_ok() {
        assert!(Instant::now() < deadline, "the UI still answers after stop");
        std::thread::sleep(StdDuration::from_millis(20));
    }
}
