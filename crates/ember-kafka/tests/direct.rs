//! The direct stream against librdkafka's mock cluster (a real Kafka protocol implementation
//! on loopback): exact counts over 4 partitions on 1 and 2 workers, the per-partition rate, a
//! broker taken down mid-run, and the errors a user meets (brokers unreachable, a missing
//! topic, an offset out of range, a record that does not decode).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use ember::prelude::*;
use ember_kafka::{KafkaDirectStream, MockKafka, OnBadRecord, StartingOffsets, TopicPartition};

const PARTITIONS: i32 = 4;

/// Record `i`'s line: three words from a small vocabulary.
fn line(i: u64) -> String {
    format!("w{} w{} w{}", i % 7, i % 3, i % 11)
}

fn expected_counts(records: std::ops::Range<u64>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for i in records {
        for w in line(i).split(' ') {
            *counts.entry(w.to_owned()).or_default() += 1;
        }
    }
    counts
}

/// Writes records `range` round-robin over the partitions and waits for the acknowledgements.
fn produce(kafka: &MockKafka, topic: &str, range: std::ops::Range<u64>) {
    for i in range {
        kafka.send(topic, (i % PARTITIONS as u64) as i32, None, line(i).as_bytes()).unwrap();
    }
    kafka.flush().unwrap();
}

fn mock(topic: &str) -> MockKafka {
    let kafka = MockKafka::start(1).unwrap();
    kafka.create_topic(topic, PARTITIONS).unwrap();
    kafka
}

/// Waits until `done` holds, for at most `secs` seconds.
fn wait_for(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + StdDuration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {secs} s waiting for {what}");
        std::thread::sleep(StdDuration::from_millis(20));
    }
}

type Seen = Arc<Mutex<Vec<(i32, i64)>>>;

/// A word count over the topic, and every (partition, offset) the stream delivered.
fn word_count(ssc: &StreamingContext, stream: KafkaDirectStream) -> (Arc<Mutex<BTreeMap<String, u64>>>, Seen) {
    let records = stream.create_strings(ssc).unwrap();
    let totals = Arc::new(Mutex::new(BTreeMap::new()));
    let seen: Seen = Arc::default();
    let t = Arc::clone(&totals);
    records
        .flat_map(|r| r.value.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .map(|w| (w, 1u64))
        .reduce_by_key(|a, b| a + b)
        .foreach_rdd(move |batch, _| {
            let mut totals = t.lock().unwrap();
            for (w, n) in batch.collect() {
                *totals.entry(w).or_default() += n;
            }
        })
        .unwrap();
    let s = Arc::clone(&seen);
    records
        .foreach_rdd(move |batch, _| {
            s.lock()
                .unwrap()
                .extend(batch.collect().into_iter().map(|r| (r.partition, r.offset)))
        })
        .unwrap();
    (totals, seen)
}

fn assert_each_offset_once(seen: &Seen, records: u64) {
    let seen = seen.lock().unwrap();
    let unique: BTreeSet<(i32, i64)> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "an offset was delivered twice");
    let expected: BTreeSet<(i32, i64)> = (0..records)
        .map(|i| ((i % PARTITIONS as u64) as i32, (i / PARTITIONS as u64) as i64))
        .collect();
    assert_eq!(unique, expected);
}

fn exact_counts_on(workers: usize) {
    let kafka = mock("words");
    produce(&kafka, "words", 0..2000);
    let ssc = StreamingContext::builder(milliseconds(50)).workers(workers).build().unwrap();
    let stream = KafkaDirectStream::new(kafka.bootstrap_servers())
        .topics(["words"])
        .starting_offsets(StartingOffsets::Earliest);
    let (totals, seen) = word_count(&ssc, stream);
    ssc.start().unwrap();
    // More records while the job runs.
    produce(&kafka, "words", 2000..5000);
    let expected = expected_counts(0..5000);
    let want: u64 = expected.values().sum();
    wait_for(60, "every word counted", || totals.lock().unwrap().values().sum::<u64>() >= want);
    // A few more batches: nothing more arrives.
    std::thread::sleep(StdDuration::from_millis(300));
    ssc.stop(false).unwrap();
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
    assert_eq!(*totals.lock().unwrap(), expected);
    assert_each_offset_once(&seen, 5000);
}

#[test]
fn exact_counts_across_four_partitions_on_one_worker() {
    exact_counts_on(1);
}

#[test]
fn exact_counts_across_four_partitions_on_two_workers() {
    exact_counts_on(2);
}

#[test]
fn latest_reads_only_what_is_written_after_the_start() {
    let kafka = mock("late");
    produce(&kafka, "late", 0..400);
    let ssc = StreamingContext::builder(milliseconds(50)).build().unwrap();
    let (totals, seen) = word_count(&ssc, KafkaDirectStream::new(kafka.bootstrap_servers()).topics(["late"]));
    ssc.start().unwrap();
    // The start offsets are taken at the first batch (after 50 ms).
    std::thread::sleep(StdDuration::from_millis(300));
    produce(&kafka, "late", 400..800);
    let want: u64 = expected_counts(400..800).values().sum();
    wait_for(60, "the new records counted", || {
        totals.lock().unwrap().values().sum::<u64>() >= want
    });
    std::thread::sleep(StdDuration::from_millis(200));
    ssc.stop(false).unwrap();
    assert_eq!(*totals.lock().unwrap(), expected_counts(400..800));
    assert!(
        seen.lock().unwrap().iter().all(|&(_, offset)| offset >= 100),
        "records from before the start were read"
    );
}

#[test]
fn the_rate_per_partition_bounds_every_batch_and_the_ranges_are_contiguous() {
    let kafka = mock("rate");
    produce(&kafka, "rate", 0..1600);
    let ssc = StreamingContext::builder(milliseconds(100)).workers(2).build().unwrap();
    let records = KafkaDirectStream::new(kafka.bootstrap_servers())
        .topics(["rate"])
        .starting_offsets(StartingOffsets::Earliest)
        .max_rate_per_partition(500)
        .create_strings(&ssc)
        .unwrap();
    let offsets = records.offsets();
    let batches: Arc<Mutex<Vec<(u64, Vec<ember_kafka::OffsetRange>)>>> = Arc::default();
    let b = Arc::clone(&batches);
    records
        .count()
        .foreach_rdd(move |batch, time| {
            let n = batch.collect().first().copied().unwrap_or(0);
            b.lock().unwrap().push((n, offsets.of(time).expect("the batch's offset ranges")));
        })
        .unwrap();
    ssc.start().unwrap();
    wait_for(60, "every record read", || {
        batches.lock().unwrap().iter().map(|(n, _)| n).sum::<u64>() >= 1600
    });
    ssc.stop(false).unwrap();
    let batches = batches.lock().unwrap();
    let mut next: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    for (n, ranges) in batches.iter() {
        assert_eq!(ranges.len(), PARTITIONS as usize, "one range per partition, always");
        assert_eq!(
            *n,
            ranges.iter().map(|r| r.count()).sum::<u64>(),
            "the batch holds its ranges' records"
        );
        for r in ranges {
            // 500 records/s for 100 ms.
            assert!(r.count() <= 50, "{r} is above the rate");
            let at = next.entry(r.topic_partition()).or_insert(0);
            assert_eq!(r.from_offset, *at, "ranges follow each other");
            *at = r.until_offset;
        }
    }
    assert!(
        batches.iter().filter(|(n, _)| *n == 200).count() >= 7,
        "full batches of 4 x 50: {:?}",
        batches.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    assert!(next.values().all(|&o| o == 400));
}

#[test]
fn a_broker_down_mid_run_delays_the_records_and_loses_none() {
    let kafka = mock("outage");
    let ssc = StreamingContext::builder(milliseconds(50)).workers(2).build().unwrap();
    let stream = KafkaDirectStream::new(kafka.bootstrap_servers())
        .topics(["outage"])
        .starting_offsets(StartingOffsets::Earliest);
    let (totals, seen) = word_count(&ssc, stream);
    ssc.start().unwrap();
    produce(&kafka, "outage", 0..1000);
    let first: u64 = expected_counts(0..1000).values().sum();
    wait_for(60, "the first records counted", || {
        totals.lock().unwrap().values().sum::<u64>() >= first
    });
    kafka.cluster().broker_down(1).unwrap();
    // Records written while the broker is down wait in the producer.
    for i in 1000..2000u64 {
        kafka
            .send("outage", (i % PARTITIONS as u64) as i32, None, line(i).as_bytes())
            .unwrap();
    }
    std::thread::sleep(StdDuration::from_secs(2));
    let during: u64 = totals.lock().unwrap().values().sum();
    assert_eq!(during, first, "nothing can be read while the only broker is down");
    kafka.cluster().broker_up(1).unwrap();
    kafka.flush().unwrap();
    let want: u64 = expected_counts(0..2000).values().sum();
    wait_for(60, "the records written during the outage counted", || {
        totals.lock().unwrap().values().sum::<u64>() >= want
    });
    std::thread::sleep(StdDuration::from_millis(200));
    ssc.stop(false).unwrap();
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
    assert!(ssc.await_termination_or_timeout(milliseconds(1)).is_ok(), "the outage was reported");
    assert_eq!(*totals.lock().unwrap(), expected_counts(0..2000));
    assert_each_offset_once(&seen, 2000);
}

/// Runs a stream until `await_termination` reports an error, and returns its message.
fn reported_error(ssc: &StreamingContext) -> String {
    ssc.start().unwrap();
    let deadline = Instant::now() + StdDuration::from_secs(30);
    loop {
        match ssc.await_termination_or_timeout(milliseconds(100)) {
            Err(e) => {
                ssc.stop(false).unwrap();
                return e.to_string();
            }
            Ok(_) => assert!(Instant::now() < deadline, "no error reported within 30 s"),
        }
    }
}

#[test]
fn unreachable_brokers_are_reported_after_retrying() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let ssc = StreamingContext::builder(milliseconds(100)).build().unwrap();
    let brokers = format!("127.0.0.1:{port}");
    let records = KafkaDirectStream::new(&brokers)
        .topics(["t"])
        .retry_for(seconds(1))
        .create_strings(&ssc)
        .unwrap();
    records.count().foreach_rdd(|_, _| {}).unwrap();
    let error = reported_error(&ssc);
    assert!(
        error.contains(&format!("cannot reach the Kafka brokers {brokers} for 1 s")),
        "{error}"
    );
}

#[test]
fn a_missing_topic_is_reported_by_name() {
    let kafka = mock("present");
    let ssc = StreamingContext::builder(milliseconds(50)).build().unwrap();
    let records = KafkaDirectStream::new(kafka.bootstrap_servers())
        .topics(["present", "absent"])
        .param("allow.auto.create.topics", "false")
        .create_strings(&ssc)
        .unwrap();
    records.count().foreach_rdd(|_, _| {}).unwrap();
    let error = reported_error(&ssc);
    assert!(error.contains("topic absent does not exist in the cluster"), "{error}");
}

#[test]
fn an_offset_out_of_range_is_reported_with_the_partition_and_offsets() {
    let kafka = mock("short");
    produce(&kafka, "short", 0..40);
    let ssc = StreamingContext::builder(milliseconds(50)).build().unwrap();
    let records = KafkaDirectStream::new(kafka.bootstrap_servers())
        .topics(["short"])
        .starting_offsets(StartingOffsets::Explicit(BTreeMap::from([(TopicPartition::new("short", 2), 500)])))
        .create_strings(&ssc)
        .unwrap();
    records.count().foreach_rdd(|_, _| {}).unwrap();
    let error = reported_error(&ssc);
    assert!(
        error.contains("offset out of range: the next offset of topic short partition 2 is 500, but the partition holds offsets [0, 10)"),
        "{error}"
    );
}

#[test]
fn a_record_that_does_not_decode_fails_its_batch_or_is_skipped() {
    let kafka = mock("bad");
    produce(&kafka, "bad", 0..8);
    kafka.send("bad", 3, Some(b"k"), &[b'o', b'k', 0xff]).unwrap();
    kafka.flush().unwrap();

    let ssc = StreamingContext::builder(milliseconds(50)).build().unwrap();
    let records = KafkaDirectStream::new(kafka.bootstrap_servers())
        .topics(["bad"])
        .starting_offsets(StartingOffsets::Earliest)
        .create_strings(&ssc)
        .unwrap();
    records.count().foreach_rdd(|_, _| {}).unwrap();
    let error = reported_error(&ssc);
    assert!(
        error.contains("cannot decode the record at topic bad partition 3 offset 2: its value is not valid UTF-8"),
        "{error}"
    );

    let ssc = StreamingContext::builder(milliseconds(50)).build().unwrap();
    let records = KafkaDirectStream::new(kafka.bootstrap_servers())
        .topics(["bad"])
        .starting_offsets(StartingOffsets::Earliest)
        .on_bad_record(OnBadRecord::Skip)
        .create_strings(&ssc)
        .unwrap();
    let total = Arc::new(Mutex::new(0u64));
    let t = Arc::clone(&total);
    records
        .count()
        .foreach_rdd(move |batch, _| *t.lock().unwrap() += batch.collect().first().copied().unwrap_or(0))
        .unwrap();
    ssc.start().unwrap();
    wait_for(30, "the good records counted", || *total.lock().unwrap() >= 8);
    ssc.stop(false).unwrap();
    assert_eq!(*total.lock().unwrap(), 8);
    assert_eq!(records.skipped_records(), 1);
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
}

/// The seeds' KafkaWordCount scaled down: digits counted over a window of 3 batches sliding by
/// one, with the inverse function, on a manual clock. With 5 records per partition per batch
/// (the rate) the batches are known in advance, so every window's counts are too.
#[test]
fn the_seeds_windowed_word_count_counts_each_window_exactly() {
    let kafka = mock("wdsender");
    let digits = |i: u64| format!("{} {} {}", i % 10, (i * 7) % 10, (i * 3 + 1) % 10);
    // Record i goes to partition i % 4 at offset i / 4.
    for i in 0..160u64 {
        kafka.send("wdsender", (i % 4) as i32, None, digits(i).as_bytes()).unwrap();
    }
    kafka.flush().unwrap();
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1))
        .manual_clock(&clock)
        .workers(2)
        .build()
        .unwrap();
    let lines = KafkaDirectStream::new(kafka.bootstrap_servers())
        .topics(["wdsender"])
        .starting_offsets(StartingOffsets::Earliest)
        .max_rate_per_partition(5)
        .create_strings(&ssc)
        .unwrap()
        .map(|r| r.value);
    let windows: Arc<Mutex<Vec<BTreeMap<String, i64>>>> = Arc::default();
    let w = Arc::clone(&windows);
    lines
        .flat_map(|l| l.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .map(|d| (d, 1i64))
        .reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, seconds(3), seconds(1))
        .unwrap()
        .foreach_rdd(move |batch, _| w.lock().unwrap().push(batch.collect().into_iter().collect()))
        .unwrap();
    ssc.start().unwrap();
    for batch in 1..=8u64 {
        clock.advance(seconds(1));
        assert!(ssc.await_batch(Time::from_millis(batch * 1000), seconds(30)).unwrap());
    }
    ssc.stop(false).unwrap();
    // Batch k (from 1) reads offsets [5(k-1), 5k) of every partition: records 20(k-1)..20k.
    let windows = windows.lock().unwrap();
    assert_eq!(windows.len(), 8);
    let mut keys = BTreeSet::new();
    for (k, got) in windows.iter().enumerate() {
        let first = (k as u64).saturating_sub(2) * 20;
        let mut want: BTreeMap<String, i64> = BTreeMap::new();
        for i in first..(k as u64 + 1) * 20 {
            for d in digits(i).split(' ') {
                *want.entry(d.to_owned()).or_default() += 1;
            }
        }
        keys.extend(want.keys().cloned());
        // As Spark without a filter function, keys whose count fell to 0 stay.
        for key in &keys {
            want.entry(key.clone()).or_default();
        }
        assert_eq!(got, &want, "window ending with batch {}", k + 1);
    }
}

#[test]
fn completed_batches_commit_their_offsets_to_the_consumer_group() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let kafka = mock("lag");
    produce(&kafka, "lag", 0..400);
    let ssc = StreamingContext::builder(milliseconds(50)).build().unwrap();
    let stream = KafkaDirectStream::new(kafka.bootstrap_servers())
        .topics(["lag"])
        .starting_offsets(StartingOffsets::Earliest)
        .commit_to_group("ember-lag");
    let (totals, _) = word_count(&ssc, stream);
    ssc.start().unwrap();
    let want: u64 = expected_counts(0..400).values().sum();
    wait_for(60, "every word counted", || totals.lock().unwrap().values().sum::<u64>() >= want);
    let group: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("group.id", "ember-lag")
        .create()
        .unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS {
        list.add_partition("lag", p);
    }
    // Commits follow completions: wait until the group's offsets reach the ends.
    wait_for(30, "the group's offsets at the end of every partition", || {
        let committed = group.committed_offsets(list.clone(), StdDuration::from_secs(5)).unwrap();
        committed.elements().iter().all(|e| e.offset() == rdkafka::Offset::Offset(100))
    });
    ssc.stop(false).unwrap();
}

#[test]
fn a_topic_created_while_running_is_reported_missing_then_read_from_its_beginning() {
    let kafka = mock("first");
    let ssc = StreamingContext::builder(milliseconds(50)).workers(2).build().unwrap();
    let stream = KafkaDirectStream::new(kafka.bootstrap_servers()).topics(["first", "second"]);
    let (totals, seen) = word_count(&ssc, stream);
    ssc.start().unwrap();
    let error = ssc.await_termination_or_timeout(seconds(30)).unwrap_err().to_string();
    assert!(error.contains("topic second does not exist"), "{error}");
    // The job goes on; the topic appears with records already in it, which are read.
    kafka.create_topic("second", PARTITIONS).unwrap();
    produce(&kafka, "second", 0..200);
    let want: u64 = expected_counts(0..200).values().sum();
    wait_for(60, "the new topic's records counted", || {
        totals.lock().unwrap().values().sum::<u64>() >= want
    });
    std::thread::sleep(StdDuration::from_millis(200));
    ssc.stop(false).unwrap();
    assert_eq!(*totals.lock().unwrap(), expected_counts(0..200));
    assert_each_offset_once(&seen, 200);
}

#[test]
fn request_errors_injected_into_offsets_and_fetches_are_retried_and_lose_nothing() {
    use rdkafka::types::RDKafkaApiKey;
    use rdkafka::types::RDKafkaRespErr;
    let kafka = mock("flaky");
    let ssc = StreamingContext::builder(milliseconds(50)).workers(2).build().unwrap();
    let stream = KafkaDirectStream::new(kafka.bootstrap_servers())
        .topics(["flaky"])
        .starting_offsets(StartingOffsets::Earliest);
    let (totals, seen) = word_count(&ssc, stream);
    ssc.start().unwrap();
    produce(&kafka, "flaky", 0..600);
    // The next watermark queries and fetches fail: timeouts, a lost leader, dropped connections.
    let errors = [
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
    ];
    kafka.cluster().request_errors(RDKafkaApiKey::ListOffsets, &errors);
    kafka.cluster().request_errors(RDKafkaApiKey::Fetch, &errors);
    produce(&kafka, "flaky", 600..1200);
    let want: u64 = expected_counts(0..1200).values().sum();
    wait_for(60, "every word counted", || totals.lock().unwrap().values().sum::<u64>() >= want);
    std::thread::sleep(StdDuration::from_millis(200));
    ssc.stop(false).unwrap();
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
    assert_eq!(*totals.lock().unwrap(), expected_counts(0..1200));
    assert_each_offset_once(&seen, 1200);
}

#[test]
fn a_topic_that_disappears_is_reported_and_the_others_are_still_read() {
    use rdkafka::types::RDKafkaRespErr;
    let kafka = mock("stays");
    kafka.create_topic("goes", 2).unwrap();
    let ssc = StreamingContext::builder(milliseconds(50)).build().unwrap();
    let stream = KafkaDirectStream::new(kafka.bootstrap_servers())
        .topics(["stays", "goes"])
        .starting_offsets(StartingOffsets::Earliest);
    let (totals, _) = word_count(&ssc, stream);
    ssc.start().unwrap();
    produce(&kafka, "stays", 0..100);
    let first: u64 = expected_counts(0..100).values().sum();
    wait_for(60, "the first records counted", || {
        totals.lock().unwrap().values().sum::<u64>() >= first
    });
    // The cluster now answers that the topic does not exist, as after a deletion.
    kafka
        .cluster()
        .topic_error("goes", RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
        .unwrap();
    let error = ssc.await_termination_or_timeout(seconds(30)).unwrap_err().to_string();
    assert!(error.contains("topic goes was deleted"), "{error}");
    produce(&kafka, "stays", 100..200);
    let want: u64 = expected_counts(0..200).values().sum();
    wait_for(60, "the other topic's new records counted", || {
        totals.lock().unwrap().values().sum::<u64>() >= want
    });
    ssc.stop(false).unwrap();
    assert_eq!(*totals.lock().unwrap(), expected_counts(0..200));
}
