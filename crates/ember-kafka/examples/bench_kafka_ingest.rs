//! Kafka ingestion throughput against librdkafka's mock cluster (BENCHMARKS.md, "Kafka
//! ingestion"): `records` records of `bytes` bytes are written to 16 partitions first, then
//! read from the earliest offsets (1) by one plain librdkafka consumer assigned to the 16
//! partitions, counting (the floor: what librdkafka and the mock broker cost), and (2) by
//! ember's direct stream on 1 and 2 workers, counting records per batch, with 100 ms batches.
//!
//! ```text
//! cargo run --release -p ember-kafka --example bench_kafka_ingest -- [records] [bytes]
//! ```
//!
//! The mock broker keeps at most 100 000 records and 5 MB per partition (older ones are
//! deleted, as by retention), so the default, 700 000 records of 100 B, stays below both.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration as StdDuration, Instant};

use ember::prelude::*;
use ember_kafka::{Bytes, KafkaDirectStream, MockKafka, StartingOffsets};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const PARTITIONS: i32 = 16;

fn main() {
    let mut args = std::env::args().skip(1);
    let records: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(700_000);
    let bytes: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100);
    let kafka = MockKafka::start(1).expect("mock cluster");
    kafka.create_topic("bench", PARTITIONS).expect("topic");
    let value = vec![b'x'; bytes];
    let started = Instant::now();
    for i in 0..records {
        kafka.send("bench", (i % PARTITIONS as u64) as i32, None, &value).expect("send");
    }
    kafka.flush().expect("flush");
    let s = started.elapsed().as_secs_f64();
    println!(
        "written: {records} records of {bytes} B in {s:.2} s ({:.0} records/s)",
        records as f64 / s
    );
    let brokers = kafka.bootstrap_servers();

    let s = plain_consumer(&brokers, records);
    report("librdkafka consumer, 1 thread", records, bytes, s);
    for workers in [1, 2] {
        let s = direct_stream(&brokers, records, workers);
        report(&format!("ember direct stream, {workers} worker(s)"), records, bytes, s);
    }
}

fn report(what: &str, records: u64, bytes: usize, seconds: f64) {
    println!(
        "{what:<36} {seconds:>6.2} s  {:>10.0} records/s  {:>7.1} MB/s",
        records as f64 / seconds,
        (records as f64 * bytes as f64) / seconds / 1e6
    );
}

fn plain_consumer(brokers: &str, records: u64) -> f64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bench")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        list.add_partition_offset("bench", p, Offset::Beginning).expect("partition");
    }
    consumer.assign(&list).expect("assign");
    let started = Instant::now();
    let mut seen = 0u64;
    let mut payload = 0usize;
    while seen < records {
        match consumer.poll(StdDuration::from_millis(100)) {
            Some(Ok(m)) => {
                payload += m.payload().map_or(0, <[u8]>::len);
                seen += 1;
            }
            Some(Err(e)) => panic!("the consumer failed after {seen} records: {e}"),
            None => {}
        }
    }
    assert!(payload > 0);
    started.elapsed().as_secs_f64()
}

fn direct_stream(brokers: &str, records: u64, workers: usize) -> f64 {
    let ssc = StreamingContext::builder(milliseconds(100))
        .workers(workers)
        .build()
        .expect("context");
    let stream = KafkaDirectStream::new(brokers)
        .topics(["bench"])
        .starting_offsets(StartingOffsets::Earliest)
        .create(&ssc, Bytes, Bytes)
        .expect("stream");
    let seen = Arc::new(AtomicU64::new(0));
    let s = Arc::clone(&seen);
    stream
        .count()
        .foreach_rdd(move |batch, _| {
            s.fetch_add(batch.collect().first().copied().unwrap_or(0), Ordering::Relaxed);
        })
        .expect("output");
    let started = Instant::now();
    ssc.start().expect("start");
    while seen.load(Ordering::Relaxed) < records {
        std::thread::sleep(StdDuration::from_millis(5));
    }
    let s = started.elapsed().as_secs_f64();
    ssc.stop(false).expect("stop");
    assert_eq!(seen.load(Ordering::Relaxed), records);
    s
}
