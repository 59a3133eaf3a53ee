//! The rate source (`format("rate")`): `rowsPerSecond` rows a second with Spark's `timestamp`
//! and `value` columns, values counting up from 0 without gap or repeat across partitions and
//! micro-batches, row `v` stamped `v / rowsPerSecond` seconds after the first.

use std::time::Duration;

use ember_sql::arrow::array::AsArray;
use ember_sql::arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use ember_sql::{SparkSession, Trigger};

#[test]
fn rate_rows_count_up_on_time_in_every_partition() {
    let spark = SparkSession::builder().master("local[2]").get_or_create().unwrap();
    let rate = spark
        .read_stream()
        .format("rate")
        .option("rowsPerSecond", 200)
        .option("numPartitions", 3)
        .load()
        .unwrap();
    assert_eq!(rate.columns(), ["timestamp", "value"]);
    assert_eq!(
        rate.dtypes(),
        [
            ("timestamp".to_owned(), "timestamp".to_owned()),
            ("value".to_owned(), "bigint".to_owned())
        ]
    );
    let query = rate
        .write_stream()
        .format("memory")
        .query_name("rate_rows")
        .trigger(Trigger::ProcessingTime(Duration::from_millis(100)))
        .start()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    query.stop().unwrap();
    let batches = spark.sql("SELECT value, timestamp FROM rate_rows").unwrap().collect().unwrap();
    let mut rows: Vec<(i64, i64)> = Vec::new();
    for batch in &batches {
        let values = batch.column(0).as_primitive::<Int64Type>();
        let stamps = batch.column(1).as_primitive::<TimestampMicrosecondType>();
        rows.extend((0..batch.num_rows()).map(|i| (values.value(i), stamps.value(i))));
    }
    rows.sort_unstable();
    assert!(rows.len() >= 150, "only {} rows in 1.5 s at 200 rows/s", rows.len());
    let values: Vec<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(values, (0..rows.len() as i64).collect::<Vec<_>>(), "values with a gap or a repeat");
    let start = rows[0].1;
    for (value, stamp) in &rows {
        assert_eq!(stamp - start, value * 5_000, "row {value} is due {value} / 200 s after the first");
    }
    let reports = query.recent_progress();
    assert!(
        reports
            .iter()
            .all(|r| r.sources.len() == 1 && r.sources[0].description.starts_with("RateStreamV2[rowsPerSecond=200"))
    );
}

#[test]
fn bad_rate_options_are_refused_with_sparks_message() {
    let spark = SparkSession::builder().master("local[1]").get_or_create().unwrap();
    let err = spark.read_stream().format("rate").option("rowsPerSecond", "-3").load().unwrap_err();
    assert_eq!(err.to_string(), "Invalid value '-3'. The option 'rowsPerSecond' must be positive");
    let rate = spark.read_stream().format("rate").load().unwrap();
    let once = rate.write_stream().format("memory").query_name("r").trigger(Trigger::Once).start();
    assert!(once.unwrap_err().to_string().contains("cannot run with Trigger.Once"));
}
