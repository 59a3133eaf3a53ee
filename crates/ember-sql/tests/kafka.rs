//! Kafka as a Structured Streaming source and sink (`format("kafka")`), against librdkafka's
//! mock cluster (a real implementation of the Kafka protocol, in-process): Spark's columns,
//! `startingOffsets`, `maxOffsetsPerTrigger`, the record timestamp as event time, a restart
//! from `checkpointLocation` reading each record once, `availableNow` and `once`, the sink's
//! records and its refusals.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ember_kafka::MockKafka;
use ember_sql::arrow::array::{Array, AsArray, RecordBatch};
use ember_sql::arrow::datatypes::{Int32Type, Int64Type, TimestampMicrosecondType};
use ember_sql::functions::{col, explode, expr, split, window};
use ember_sql::{DataFrame, Error, SparkSession, Trigger};

mod common;

fn session() -> SparkSession {
    SparkSession::builder().master("local[2]").get_or_create().unwrap()
}

fn kafka(spark: &SparkSession, servers: &str, topic: &str) -> DataFrame {
    spark
        .read_stream()
        .format("kafka")
        .option("kafka.bootstrap.servers", servers)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .load()
        .unwrap()
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The rows of a memory table as (column name -> values as text) per row, sorted.
fn table(spark: &SparkSession, sql: &str) -> Vec<Vec<String>> {
    let batches = spark.sql(sql).unwrap().collect().unwrap();
    let mut rows: Vec<Vec<String>> = Vec::new();
    for batch in &batches {
        for row in 0..batch.num_rows() {
            rows.push(
                batch
                    .columns()
                    .iter()
                    .map(|c| ember_sql::arrow::util::display::array_value_to_string(c, row).unwrap())
                    .collect(),
            );
        }
    }
    rows.sort();
    rows
}

/// Sends `values` to `topic`'s two partitions in turn (value `i` to partition `i % 2`), flushed.
fn send_alternating(cluster: &MockKafka, topic: &str, values: impl IntoIterator<Item = String>) {
    for (i, value) in values.into_iter().enumerate() {
        cluster.send(topic, (i % 2) as i32, None, value.as_bytes()).unwrap();
    }
    cluster.flush().unwrap();
}

fn progress_rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

#[test]
fn records_arrive_with_sparks_columns_and_count_words_once() {
    let cluster = MockKafka::start(1).unwrap();
    cluster.create_topic("lines", 2).unwrap();
    let before = now_ms();
    for (i, line) in ["a b", "b c", "c c", "a"].iter().enumerate() {
        let key = format!("k{i}");
        cluster
            .send("lines", (i % 2) as i32, Some(key.as_bytes()), line.as_bytes())
            .unwrap();
    }
    cluster.flush().unwrap();
    let spark = session();
    let records = kafka(&spark, &cluster.bootstrap_servers(), "lines");
    assert_eq!(
        records.dtypes(),
        [
            ("key", "binary"),
            ("value", "binary"),
            ("topic", "string"),
            ("partition", "int"),
            ("offset", "bigint"),
            ("timestamp", "timestamp"),
            ("timestampType", "int")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let raw = records
        .write_stream()
        .format("memory")
        .query_name("kafka_records")
        .trigger(Trigger::ProcessingTime(Duration::from_millis(100)))
        .start()
        .unwrap();
    let words = records
        .select_expr(&["CAST(value AS STRING) AS line"])
        .unwrap()
        .select([explode(split(col("line"), " ")).alias("word")])
        .unwrap()
        .group_by([col("word")])
        .count()
        .unwrap();
    let counts = words
        .write_stream()
        .format("memory")
        .query_name("kafka_counts")
        .output_mode("complete")
        .trigger(Trigger::ProcessingTime(Duration::from_millis(100)))
        .start()
        .unwrap();
    raw.process_all_available().unwrap();
    counts.process_all_available().unwrap();
    // More records while the queries run.
    cluster.send("lines", 0, None, b"d a").unwrap();
    cluster.flush().unwrap();
    raw.process_all_available().unwrap();
    counts.process_all_available().unwrap();
    let after = now_ms();
    raw.stop().unwrap();
    counts.stop().unwrap();
    assert_eq!(
        table(&spark, "SELECT word, count FROM kafka_counts"),
        [["a", "3"], ["b", "2"], ["c", "3"], ["d", "1"]].map(|r| r.map(str::to_owned).to_vec())
    );
    let batches = spark.sql("SELECT * FROM kafka_records").unwrap().collect().unwrap();
    assert_eq!(progress_rows(&batches), 5);
    let mut seen = BTreeMap::new();
    for batch in &batches {
        let keys = batch.column(0).as_binary::<i32>();
        let values = batch.column(1).as_binary::<i32>();
        let topics = batch.column(2).as_string::<i32>();
        let partitions = batch.column(3).as_primitive::<Int32Type>();
        let offsets = batch.column(4).as_primitive::<Int64Type>();
        let stamps = batch.column(5).as_primitive::<TimestampMicrosecondType>();
        let types = batch.column(6).as_primitive::<Int32Type>();
        for row in 0..batch.num_rows() {
            assert_eq!(topics.value(row), "lines");
            let ms = stamps.value(row) / 1000;
            assert!(
                (before - 1000..=after + 1000).contains(&ms),
                "timestamp {ms} outside [{before}, {after}]"
            );
            assert_eq!(types.value(row), 0, "CreateTime");
            let key = keys.is_valid(row).then(|| String::from_utf8(keys.value(row).to_vec()).unwrap());
            let value = String::from_utf8(values.value(row).to_vec()).unwrap();
            seen.insert((partitions.value(row), offsets.value(row)), (key, value));
        }
    }
    let expected: BTreeMap<(i32, i64), (Option<String>, String)> = [
        ((0, 0), (Some("k0"), "a b")),
        ((0, 1), (Some("k2"), "c c")),
        ((0, 2), (None, "d a")),
        ((1, 0), (Some("k1"), "b c")),
        ((1, 1), (Some("k3"), "a")),
    ]
    .into_iter()
    .map(|(at, (k, v))| (at, (k.map(str::to_owned), v.to_owned())))
    .collect();
    assert_eq!(seen, expected);
}

#[test]
fn max_offsets_per_trigger_bounds_every_batch_and_latest_skips_what_was_there() {
    let cluster = MockKafka::start(1).unwrap();
    cluster.create_topic("many", 2).unwrap();
    send_alternating(&cluster, "many", (0..60).map(|i| format!("old{i}")));
    let spark = session();
    let bounded = spark
        .read_stream()
        .format("kafka")
        .option("kafka.bootstrap.servers", cluster.bootstrap_servers())
        .option("subscribe", "many")
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", 7)
        .load()
        .unwrap();
    let query = bounded
        .select_expr(&["CAST(value AS STRING) AS v"])
        .unwrap()
        .write_stream()
        .format("memory")
        .query_name("bounded")
        .trigger(Trigger::ProcessingTime(Duration::from_millis(50)))
        .start()
        .unwrap();
    // Only new records for a query starting at the latest offsets.
    let latest = spark
        .read_stream()
        .format("kafka")
        .option("kafka.bootstrap.servers", cluster.bootstrap_servers())
        .option("subscribe", "many")
        .load()
        .unwrap()
        .select_expr(&["CAST(value AS STRING) AS v"])
        .unwrap()
        .write_stream()
        .format("memory")
        .query_name("latest")
        .trigger(Trigger::ProcessingTime(Duration::from_millis(50)))
        .start()
        .unwrap();
    // An empty batch of the latest query: it has taken the partitions' ends as its start.
    latest.process_all_available().unwrap();
    cluster.send("many", 1, None, b"new").unwrap();
    cluster.flush().unwrap();
    query.process_all_available().unwrap();
    latest.process_all_available().unwrap();
    query.stop().unwrap();
    latest.stop().unwrap();
    let rows = table(&spark, "SELECT v FROM bounded");
    assert_eq!(rows.len(), 61, "every record once");
    let reports = query.recent_progress();
    assert!(reports.len() >= 9, "61 records at most 7 a batch: {} batches", reports.len());
    assert!(
        reports.iter().all(|r| r.num_input_rows <= 7),
        "{:?}",
        reports.iter().map(|r| r.num_input_rows).collect::<Vec<_>>()
    );
    assert_eq!(table(&spark, "SELECT v FROM latest"), [["new".to_owned()]]);
}

#[test]
fn the_record_timestamp_is_event_time_for_a_windowed_count() {
    let cluster = MockKafka::start(1).unwrap();
    cluster.create_topic("events", 1).unwrap();
    for word in ["x", "y", "x"] {
        cluster.send("events", 0, None, word.as_bytes()).unwrap();
    }
    cluster.flush().unwrap();
    let spark = session();
    let counts = kafka(&spark, &cluster.bootstrap_servers(), "events")
        .select_expr(&["CAST(value AS STRING) AS word", "timestamp"])
        .unwrap()
        .with_watermark("timestamp", "1 hour")
        .unwrap()
        .group_by([window(col("timestamp"), "1 day", None, None), col("word")])
        .count()
        .unwrap();
    let query = counts
        .select([expr("word"), expr("count"), expr("window.start <= current_timestamp() AS started")])
        .unwrap()
        .write_stream()
        .format("memory")
        .query_name("windowed")
        .output_mode("update")
        .trigger(Trigger::ProcessingTime(Duration::from_millis(100)))
        .start()
        .unwrap();
    query.process_all_available().unwrap();
    query.stop().unwrap();
    // Each update of a window's count is a row: the last per word is the count.
    let rows = table(&spark, "SELECT word, max(count), bool_and(started) FROM windowed GROUP BY word");
    assert_eq!(
        rows,
        [["x", "2", "true"], ["y", "1", "true"]].map(|r| r.map(str::to_owned).to_vec())
    );
    let progress = query.last_progress().unwrap();
    assert!(progress.event_time.is_some(), "the watermark on the Kafka timestamp is reported");
}

#[test]
fn a_restart_from_the_checkpoint_reads_each_record_once_into_the_file_sink() {
    let cluster = MockKafka::start(1).unwrap();
    cluster.create_topic("once", 2).unwrap();
    let dir = common::temp_dir("kafka-once");
    let checkpoint = dir.join("checkpoint");
    let out = dir.join("out");
    let run = |expected_total: usize| {
        let spark = session();
        let query = kafka(&spark, &cluster.bootstrap_servers(), "once")
            .select_expr(&["CAST(value AS STRING) AS v", "partition", "offset"])
            .unwrap()
            .write_stream()
            .format("json")
            .option("path", out.to_str().unwrap())
            .option("checkpointLocation", checkpoint.to_str().unwrap())
            .trigger(Trigger::ProcessingTime(Duration::from_millis(100)))
            .start()
            .unwrap();
        query.process_all_available().unwrap();
        query.stop().unwrap();
        let mut values: Vec<String> = Vec::new();
        for file in ember_sql::committed_files(&out).unwrap() {
            for line in std::fs::read_to_string(&file).unwrap().lines() {
                let row: serde_json::Value = serde_json::from_str(line).unwrap();
                values.push(row["v"].as_str().unwrap().to_owned());
            }
        }
        values.sort();
        assert_eq!(values.len(), expected_total, "{values:?}");
        values
    };
    send_alternating(&cluster, "once", (0..10).map(|i| format!("r{i:02}")));
    run(10);
    send_alternating(&cluster, "once", (10..25).map(|i| format!("r{i:02}")));
    let values = run(25);
    assert_eq!(values, (0..25).map(|i| format!("r{i:02}")).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `availableNow`: what the partitions held at the start, in batches of at most
/// `maxOffsetsPerTrigger`, then the query stops by itself; a record sent meanwhile waits for
/// the next run, which (from the checkpoint) reads only it. `once`: all of it in one batch.
#[test]
fn available_now_and_once_read_what_was_there_at_the_start_then_stop() {
    let cluster = MockKafka::start(1).unwrap();
    cluster.create_topic("finite", 2).unwrap();
    send_alternating(&cluster, "finite", (0..30).map(|i| format!("r{i:02}")));
    let dir = common::temp_dir("kafka-available-now");
    let checkpoint = dir.join("checkpoint");
    let spark = session();
    let run = |trigger: Trigger, name: &str, checkpoint: &std::path::Path| {
        let query = spark
            .read_stream()
            .format("kafka")
            .option("kafka.bootstrap.servers", cluster.bootstrap_servers())
            .option("subscribe", "finite")
            .option("startingOffsets", "earliest")
            .option("maxOffsetsPerTrigger", 8)
            .load()
            .unwrap()
            .select_expr(&["CAST(value AS STRING) AS v"])
            .unwrap()
            .write_stream()
            .format("memory")
            .query_name(name)
            .option("checkpointLocation", checkpoint.to_str().unwrap())
            .trigger(trigger)
            .start()
            .unwrap();
        assert!(
            query.await_termination_timeout(Duration::from_secs(60)).unwrap(),
            "{name}: the query did not stop by itself"
        );
        query.recent_progress().iter().map(|p| p.num_input_rows).collect::<Vec<u64>>()
    };
    let batches = run(Trigger::AvailableNow, "now1", &checkpoint);
    assert_eq!(batches.iter().sum::<u64>(), 30, "{batches:?}");
    assert!(batches.len() >= 4 && batches.iter().all(|n| *n <= 8), "{batches:?}");
    assert_eq!(table(&spark, "SELECT v FROM now1").len(), 30);
    cluster.send("finite", 0, None, b"late").unwrap();
    cluster.flush().unwrap();
    let batches = run(Trigger::AvailableNow, "now2", &checkpoint);
    assert_eq!(batches, [1]);
    assert_eq!(table(&spark, "SELECT v FROM now2"), [["late".to_owned()]]);
    // Once, from the start of the topic: everything in one micro-batch, whatever the limit.
    let batches = run(Trigger::Once, "once", &dir.join("checkpoint-once"));
    assert_eq!(batches, [31]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_sink_writes_each_row_as_a_record_and_refuses_rows_without_a_value() {
    let cluster = MockKafka::start(1).unwrap();
    cluster.create_topic("in", 1).unwrap();
    cluster.create_topic("out", 1).unwrap();
    cluster.create_topic("other", 1).unwrap();
    for line in ["a 1", "b 2", "c 3"] {
        cluster.send("in", 0, None, line.as_bytes()).unwrap();
    }
    cluster.flush().unwrap();
    let spark = session();
    let servers = cluster.bootstrap_servers();
    let parsed = kafka(&spark, &servers, "in")
        .select_expr(&[
            "split(CAST(value AS STRING), ' ')[0] AS key",
            "upper(CAST(value AS STRING)) AS value",
            "CASE WHEN split(CAST(value AS STRING), ' ')[0] = 'c' THEN 'other' ELSE 'out' END AS topic",
        ])
        .unwrap();
    let written = parsed
        .write_stream()
        .format("kafka")
        .option("kafka.bootstrap.servers", servers.as_str())
        .option("checkpointLocation", common::temp_dir("kafka-sink").to_str().unwrap())
        .trigger(Trigger::ProcessingTime(Duration::from_millis(100)))
        .start()
        .unwrap();
    written.process_all_available().unwrap();
    written.stop().unwrap();
    // Read back with the source.
    let back = kafka(&spark, &servers, "out,other")
        .select_expr(&["topic", "CAST(key AS STRING) AS key", "CAST(value AS STRING) AS value"])
        .unwrap()
        .write_stream()
        .format("memory")
        .query_name("written")
        .trigger(Trigger::ProcessingTime(Duration::from_millis(100)))
        .start()
        .unwrap();
    back.process_all_available().unwrap();
    back.stop().unwrap();
    assert_eq!(
        table(&spark, "SELECT topic, key, value FROM written"),
        [["other", "c", "C 3"], ["out", "a", "A 1"], ["out", "b", "B 2"]].map(|r| r.map(str::to_owned).to_vec())
    );
    // The topic option wins over the column.
    let forced = parsed
        .write_stream()
        .format("kafka")
        .option("kafka.bootstrap.servers", servers.as_str())
        .option("topic", "other")
        .trigger(Trigger::ProcessingTime(Duration::from_millis(100)))
        .start()
        .unwrap();
    forced.process_all_available().unwrap();
    forced.stop().unwrap();
    let back = kafka(&spark, &servers, "other")
        .select_expr(&["CAST(value AS STRING) AS value"])
        .unwrap()
        .write_stream()
        .format("memory")
        .query_name("forced")
        .trigger(Trigger::ProcessingTime(Duration::from_millis(100)))
        .start()
        .unwrap();
    back.process_all_available().unwrap();
    back.stop().unwrap();
    assert_eq!(
        table(&spark, "SELECT value FROM forced"),
        [["A 1"], ["B 2"], ["C 3"], ["C 3"]].map(|r| r.map(str::to_owned).to_vec())
    );
    // Refusals, at start.
    let start = |df: &DataFrame, topic: Option<&str>| {
        let mut writer = df
            .write_stream()
            .format("kafka")
            .option("kafka.bootstrap.servers", servers.as_str());
        if let Some(t) = topic {
            writer = writer.option("topic", t);
        }
        writer.start().map(|q| q.stop())
    };
    let no_value = parsed.select_expr(&["key"]).unwrap();
    assert!(matches!(start(&no_value, Some("out")), Err(Error::Analysis(m)) if m == "Required attribute 'value' not found"));
    let no_topic = parsed.select_expr(&["key", "value"]).unwrap();
    assert!(
        matches!(start(&no_topic, None), Err(Error::Analysis(m)) if m.starts_with("topic option required when no 'topic' attribute is present"))
    );
    let number = parsed.select_expr(&["length(value) AS value"]).unwrap();
    assert!(
        matches!(start(&number, Some("out")), Err(Error::Analysis(m)) if m.starts_with("value attribute type must be a string or binary"))
    );
    let two = kafka(&spark, &servers, "in").union(&kafka(&spark, &servers, "out")).unwrap();
    let refused = two.write_stream().format("console").start().map(|q| q.stop());
    assert!(
        matches!(&refused, Err(Error::Unsupported(m)) if m.contains("two Kafka sources in one query")),
        "{refused:?}"
    );
    let missing = spark.read_stream().format("kafka").option("subscribe", "in").load();
    assert!(
        matches!(&missing, Err(Error::IllegalArgument(m)) if m.starts_with("Option 'kafka.bootstrap.servers' must be specified")),
        "{missing:?}"
    );
}
