//! `save_to_kafka` against librdkafka's mock cluster: every record of every batch arrives,
//! written by every worker; a cluster that cannot be reached fails the batch with an error
//! naming the topic and what was not delivered.

use std::collections::BTreeMap;
use std::time::{Duration as StdDuration, Instant};

use ember::prelude::*;
use ember_kafka::{KafkaSink, MockKafka, ProducerRecord, SaveToKafka};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Every record of `topic` (partitions 0..`partitions`) as (key, value), read from the start
/// until `expected` arrived or 30 s passed.
fn read_all(brokers: &str, topic: &str, partitions: i32, expected: usize) -> Vec<(String, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "sink-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut records = Vec::new();
    let deadline = Instant::now() + StdDuration::from_secs(30);
    while records.len() < expected && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(StdDuration::from_millis(100)) {
            let text = |b: Option<&[u8]>| String::from_utf8(b.unwrap_or_default().to_vec()).unwrap();
            records.push((text(m.key()), text(m.payload())));
        }
    }
    // Anything beyond what was expected would be a duplicate.
    if let Some(Ok(m)) = consumer.poll(StdDuration::from_millis(500)) {
        panic!("an unexpected record at offset {} of partition {}", m.offset(), m.partition());
    }
    records
}

#[test]
fn every_record_of_every_batch_arrives_from_every_worker() {
    let kafka = MockKafka::start(1).unwrap();
    kafka.create_topic("counts", 3).unwrap();
    let batches: Vec<Option<Vec<String>>> = (0..10)
        .map(|b| Some((0..50).map(|i| format!("w{}", (b * 50 + i) % 13)).collect()))
        .collect();
    let mut expected: Vec<(String, String)> = Vec::new();
    for (b, batch) in batches.iter().enumerate() {
        let mut counts: BTreeMap<&String, u64> = BTreeMap::new();
        for w in batch.as_ref().unwrap() {
            *counts.entry(w).or_default() += 1;
        }
        expected.extend(counts.into_iter().map(|(w, n)| (w.clone(), format!("{b}:{n}"))));
    }
    let ssc = StreamingContext::builder(milliseconds(20)).workers(2).no_wait().build().unwrap();
    let zero = std::sync::Arc::new(std::sync::OnceLock::new());
    let z = std::sync::Arc::clone(&zero);
    ssc.replay_stream(batches, 4)
        .map(|w| (w, 1u64))
        .reduce_by_key(|a, b| a + b)
        .transform(move |batch| {
            // The batch number, from the first batch's time.
            let time = batch.time();
            let first = *z.get_or_init(|| time.milliseconds());
            batch.map(move |(w, n)| (w, format!("{}:{n}", (time.milliseconds() - first) / 20)))
        })
        .save_to_kafka(KafkaSink::new(kafka.bootstrap_servers(), "counts"), |(w, v): &(String, String)| {
            ProducerRecord::new(v.clone()).key(w.clone())
        })
        .unwrap();
    ssc.start().unwrap();
    assert!(ssc.await_batch(Time::from_millis(200), seconds(60)).unwrap());
    ssc.stop(false).unwrap();
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
    let mut got = read_all(&kafka.bootstrap_servers(), "counts", 3, expected.len());
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
}

#[test]
fn an_unreachable_cluster_fails_the_batch_naming_the_topic() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let ssc = StreamingContext::builder(milliseconds(50)).build().unwrap();
    ssc.replay_stream(vec![Some(vec!["a".to_owned(), "b".to_owned()])], 1)
        .save_to_kafka(
            KafkaSink::new(format!("127.0.0.1:{port}"), "nowhere").delivery_timeout(seconds(1)),
            |w: &String| ProducerRecord::new(w.clone()),
        )
        .unwrap();
    ssc.start().unwrap();
    let error = match ssc.await_termination_or_timeout(seconds(30)) {
        Err(e) => e.to_string(),
        Ok(stopped) => panic!("no error (stopped: {stopped})"),
    };
    ssc.stop(false).unwrap();
    assert!(error.contains("save_to_kafka"), "{error}");
    assert!(error.contains("2 of 2 records of batch "), "{error}");
    assert!(
        error.contains(&format!("were not delivered to topic nowhere at 127.0.0.1:{port}")),
        "{error}"
    );
    assert!(error.contains("Message timed out"), "{error}");
}
