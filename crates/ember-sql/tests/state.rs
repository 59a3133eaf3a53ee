//! Arbitrary state per group (`flat_map_groups_with_state`, Spark's `flatMapGroupsWithState`)
//! beyond the PySpark goldens (`golden-eventtime/state_*`): processing-time timeouts, state
//! restored from `checkpointLocation`, and the errors a function can meet.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ember_sql::arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use ember_sql::arrow::datatypes::Int64Type;
use ember_sql::functions::col;
use ember_sql::{DataFrame, GroupState, GroupStateTimeout, ScalarValue, SparkSession, Trigger};

mod common;

fn lines(spark: &SparkSession, dir: &std::path::Path) -> DataFrame {
    spark
        .read_stream()
        .format("text")
        .option("maxFilesPerTrigger", 1)
        .load_path(dir)
        .unwrap()
}

fn word_count_schema() -> ember_sql::arrow::datatypes::SchemaRef {
    ember_sql::schema_from_ddl("word string, count long").unwrap()
}

fn row(schema: &ember_sql::arrow::datatypes::SchemaRef, word: &str, count: i64) -> RecordBatch {
    RecordBatch::try_new(
        Arc::clone(schema),
        vec![Arc::new(StringArray::from(vec![word])), Arc::new(Int64Array::from(vec![count]))],
    )
    .unwrap()
}

type Rows = Arc<Mutex<Vec<(String, i64)>>>;

fn collect_into(rows: &Rows) -> impl Fn(&[RecordBatch], i64) -> Result<(), String> + Send + Sync + 'static {
    let rows = Arc::clone(rows);
    move |batches: &[RecordBatch], _| {
        let mut rows = rows.lock().unwrap();
        for b in batches {
            let words = b.column(0).as_string::<i32>();
            let counts = b.column(1).as_primitive::<Int64Type>();
            rows.extend((0..b.num_rows()).map(|i| (words.value(i).to_owned(), counts.value(i))));
        }
        Ok(())
    }
}

#[test]
fn a_processing_time_timeout_calls_the_function_once_without_rows() {
    let dir = common::temp_dir("state-processing-timeout");
    common::batch_files(&dir, &[vec!["a", "b", "a"]]);
    let spark = SparkSession::builder().master("local[2]").get_or_create().unwrap();
    let schema = word_count_schema();
    let out = Arc::clone(&schema);
    let counted = lines(&spark, &dir)
        .group_by([col("value")])
        .flat_map_groups_with_state(
            "append",
            GroupStateTimeout::ProcessingTimeTimeout,
            schema,
            move |key: &[ScalarValue], rows: RecordBatch, state: &mut GroupState<i64>| {
                let word = key[0].to_string();
                if state.has_timed_out() {
                    assert_eq!(rows.num_rows(), 0, "a timeout comes without rows");
                    let count = *state.get()?;
                    state.remove();
                    return Ok(vec![row(&out, &word, count)]);
                }
                // Event-time timeouts are for EventTimeTimeout only.
                assert!(state.set_timeout_timestamp(0).is_err());
                state.update(state.get_option().copied().unwrap_or(0) + rows.num_rows() as i64);
                state.set_timeout_duration("300 milliseconds")?;
                Ok(Vec::new())
            },
        )
        .unwrap();
    let rows: Rows = Arc::default();
    let query = counted
        .write_stream()
        .trigger(Trigger::ProcessingTime(Duration::from_millis(50)))
        .foreach_batch(collect_into(&rows))
        .start()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while rows.lock().unwrap().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // A few more batches: nothing more times out.
    std::thread::sleep(Duration::from_millis(500));
    query.stop().unwrap();
    assert_eq!(query.exception(), None);
    let mut got = rows.lock().unwrap().clone();
    got.sort();
    assert_eq!(got, [("a".to_owned(), 2), ("b".to_owned(), 1)]);
    assert_eq!(
        query.last_progress().unwrap().state_rows,
        Some(0),
        "the timed-out states are removed"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn state_comes_back_from_the_checkpoint() {
    let dir = common::temp_dir("state-checkpoint");
    let checkpoint = common::temp_dir("state-checkpoint-cp");
    let _ = std::fs::remove_dir_all(&checkpoint);
    let run = |first: bool| -> Vec<(String, i64)> {
        if first {
            common::batch_files(&dir, &[vec!["x", "y"]]);
        } else {
            std::fs::write(dir.join("part-001.txt"), "x\nz\n").unwrap();
        }
        let spark = SparkSession::builder().master("local[2]").get_or_create().unwrap();
        let schema = word_count_schema();
        let out = Arc::clone(&schema);
        let rows: Rows = Arc::default();
        let query = lines(&spark, &dir)
            .group_by([col("value")])
            .flat_map_groups_with_state(
                "update",
                GroupStateTimeout::NoTimeout,
                schema,
                move |key: &[ScalarValue], rows: RecordBatch, state: &mut GroupState<i64>| {
                    let total = state.get_option().copied().unwrap_or(0) + rows.num_rows() as i64;
                    state.update(total);
                    Ok(vec![row(&out, &key[0].to_string(), total)])
                },
            )
            .unwrap()
            .write_stream()
            .output_mode("update")
            .option("checkpointLocation", checkpoint.to_str().unwrap())
            .trigger(Trigger::AvailableNow)
            .foreach_batch(collect_into(&rows))
            .start()
            .unwrap();
        assert!(query.await_termination_timeout(Duration::from_secs(30)).unwrap());
        let mut got = rows.lock().unwrap().clone();
        got.sort();
        got
    };
    assert_eq!(run(true), [("x".to_owned(), 1), ("y".to_owned(), 1)]);
    // The second run reads the new file only, and counts on from the first run's state.
    assert_eq!(run(false), [("x".to_owned(), 2), ("z".to_owned(), 1)]);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&checkpoint);
}

#[test]
fn a_functions_errors_fail_the_query_naming_them() {
    let dir = common::temp_dir("state-errors");
    common::batch_files(&dir, &[vec!["a"]]);
    let spark = SparkSession::builder().master("local[1]").get_or_create().unwrap();
    let start = |df: DataFrame| {
        let query = df.write_stream().trigger(Trigger::AvailableNow).format("console").start().unwrap();
        let error = query.await_termination().unwrap_err().to_string();
        assert!(!query.is_active());
        error
    };
    // Rows of another shape than the output schema.
    let schema = word_count_schema();
    let wrong = lines(&spark, &dir)
        .group_by([col("value")])
        .flat_map_groups_with_state(
            "append",
            GroupStateTimeout::NoTimeout,
            schema,
            |key: &[ScalarValue], _: RecordBatch, _: &mut GroupState<i64>| {
                let one = ember_sql::schema_from_ddl("word string").unwrap();
                Ok(vec![RecordBatch::try_new(
                    one,
                    vec![Arc::new(StringArray::from(vec![key[0].to_string()]))],
                )?])
            },
        )
        .unwrap();
    let error = start(wrong);
    assert!(
        error.contains("The function of flatMapGroupsWithState returned rows of 1 columns, but its output schema has 2 (word, count)"),
        "{error}"
    );
    // A state that is not there, and a processing-time timeout without ProcessingTimeTimeout.
    let absent = lines(&spark, &dir)
        .group_by([col("value")])
        .flat_map_groups_with_state(
            "append",
            GroupStateTimeout::NoTimeout,
            word_count_schema(),
            |_: &[ScalarValue], _: RecordBatch, state: &mut GroupState<i64>| {
                let timeout = state.set_timeout_duration(1000).unwrap_err().to_string();
                assert!(
                    timeout.contains("Cannot set timeout duration without enabling processing time timeout in flatMapGroupsWithState"),
                    "{timeout}"
                );
                state.get()?;
                Ok(Vec::new())
            },
        )
        .unwrap();
    let error = start(absent);
    assert!(
        error.contains("[STATE_NOT_EXISTS] State is either not defined or has already been removed."),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
