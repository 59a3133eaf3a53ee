//! ember's console output against PySpark's, byte for byte: each case of `tests/golden/`
//! (made by `tests/golden/make_goldens.py` with the real PySpark) reads its input files with
//! `maxFilesPerTrigger` 1 on the `availableNow` trigger, so batch k reads file k, and prints
//! with the console sink. Spark prints complete- and update-mode rows in its state store's hash
//! order, which is no contract: each batch's table rows are compared in one order; headers,
//! widths, borders, truncation and `only showing top 20 rows` exactly.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ember_sql::arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use ember_sql::arrow::datatypes::TimestampMicrosecondType;
use ember_sql::functions::{avg, col, count, explode, expr, lit, max, min, session_window, split, sum, to_timestamp, when, window};
use ember_sql::{Column, DataFrame, GroupState, GroupStateTimeout, ScalarValue, SparkSession, Trigger};

mod common;

/// The golden cases' `count_words` (`state_count_*`): a running count per word.
fn count_words(events: &DataFrame, mode: &str) -> DataFrame {
    let schema = ember_sql::schema_from_ddl("word string, count long").unwrap();
    let out = Arc::clone(&schema);
    events
        .group_by([col("word")])
        .flat_map_groups_with_state(
            mode,
            GroupStateTimeout::NoTimeout,
            schema,
            move |key: &[ScalarValue], rows: RecordBatch, state: &mut GroupState<(i64,)>| {
                let total = state.get_option().map_or(0, |s| s.0) + rows.num_rows() as i64;
                state.update((total,));
                let word = StringArray::from(vec![key[0].to_string()]);
                Ok(vec![RecordBatch::try_new(
                    Arc::clone(&out),
                    vec![Arc::new(word), Arc::new(Int64Array::from(vec![total]))],
                )?])
            },
        )
        .unwrap()
}

/// The golden cases' `sessions` (`state_session_append`, `state_timeout_update`): per word the
/// count and the first and last event time (ms), emitted when the event-time timeout (the last
/// event plus `gap_ms`, at least the watermark) passes; `each_batch` also emits a row with -1
/// times for every word with rows.
fn sessions(events: &DataFrame, mode: &str, gap_ms: i64, each_batch: bool) -> DataFrame {
    let schema = ember_sql::schema_from_ddl("word string, count long, first long, last long").unwrap();
    let out = Arc::clone(&schema);
    let row = move |word: String, count: i64, first: i64, last: i64| -> ember_sql::Result<RecordBatch> {
        Ok(RecordBatch::try_new(
            Arc::clone(&out),
            vec![
                Arc::new(StringArray::from(vec![word])),
                Arc::new(Int64Array::from(vec![count])),
                Arc::new(Int64Array::from(vec![first])),
                Arc::new(Int64Array::from(vec![last])),
            ],
        )?)
    };
    events
        .with_watermark("timestamp", "10 minutes")
        .unwrap()
        .group_by([col("word")])
        .flat_map_groups_with_state(
            mode,
            GroupStateTimeout::EventTimeTimeout,
            schema,
            move |key: &[ScalarValue], rows: RecordBatch, state: &mut GroupState<(i64, Option<i64>, Option<i64>)>| {
                let word = key[0].to_string();
                if state.has_timed_out() {
                    let (count, first, last) = *state.get()?;
                    state.remove();
                    return Ok(vec![row(word, count, first.unwrap_or(-1), last.unwrap_or(-1))?]);
                }
                let (mut count, mut first, mut last) = state.get_option().copied().unwrap_or((0, None, None));
                let times = rows
                    .column(rows.schema().index_of("timestamp")?)
                    .as_primitive::<TimestampMicrosecondType>()
                    .clone();
                for i in 0..rows.num_rows() {
                    let ms = times.value(i) / 1000;
                    first = Some(first.map_or(ms, |f| f.min(ms)));
                    last = Some(last.map_or(ms, |l| l.max(ms)));
                }
                count += rows.num_rows() as i64;
                state.update((count, first, last));
                let timeout = last.unwrap_or(0) + gap_ms;
                state.set_timeout_timestamp(timeout.max(state.get_current_watermark_ms()?))?;
                if each_batch {
                    Ok(vec![row(word, count, -1, -1)?])
                } else {
                    Ok(Vec::new())
                }
            },
        )
        .unwrap()
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The event-time cases (`tests/golden-eventtime/make_goldens.py`), with each batch's progress.
fn event_time_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden-eventtime")
}

/// A fresh directory holding one file per batch of the case's input.
/// `input` names the file: `<case>.<input>.json`.
fn input_dir(golden: &Path, case: &str, input: &str) -> PathBuf {
    let text = std::fs::read_to_string(golden.join(format!("{case}.{input}.json"))).unwrap();
    let batches: Vec<Vec<String>> = serde_json::from_str(&text).unwrap();
    let dir = common::temp_dir(&format!("golden-{case}-{input}"));
    common::batch_files(&dir, &batches);
    dir
}

/// A `Write` into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The case's query over `lines`, and its output mode, as `cases.json` writes it in PySpark.
fn query(case: &str, spark: &SparkSession, lines: &DataFrame, _: Option<&DataFrame>) -> (DataFrame, &'static str) {
    let words = || lines.select([explode(split(col("value"), " ")).alias("word")]).unwrap();
    let numbers = || lines.select_expr(&["CAST(value AS BIGINT) AS n"]).unwrap();
    let aggregates = || {
        numbers()
            .group_by([expr("n % 2").alias("parity")])
            .agg([count("n"), sum("n"), avg("n"), min("n"), max("n")])
            .unwrap()
    };
    match case {
        "wordcount_complete" => (words().group_by([col("word")]).count().unwrap(), "complete"),
        "wordcount_update" => (words().group_by([col("word")]).count().unwrap(), "update"),
        "wordcount_sql_complete" => {
            lines.create_or_replace_temp_view("lines").unwrap();
            let sql = "SELECT word, count(*) AS count FROM (SELECT explode(split(value, ' ')) AS word FROM lines) GROUP BY word";
            (spark.sql(sql).unwrap(), "complete")
        }
        "projection_append" => (
            lines
                .select_expr(&["value", "upper(value) AS up", "length(value) AS len", "CAST(value AS INT) AS n"])
                .unwrap()
                .filter("value != 'skip'")
                .unwrap(),
            "append",
        ),
        "projection_sql_append" => {
            lines.create_or_replace_temp_view("lines").unwrap();
            let sql = "SELECT value, upper(value) AS up, length(value) AS len, CAST(value AS INT) AS n FROM lines WHERE value != 'skip'";
            (spark.sql(sql).unwrap(), "append")
        }
        "aggregates_complete" => (aggregates(), "complete"),
        "aggregates_update" => (aggregates(), "update"),
        "global_count_complete" => (lines.group_by(Vec::<Column>::new()).count().unwrap(), "complete"),
        "global_count_sql_complete" => {
            lines.create_or_replace_temp_view("lines").unwrap();
            (spark.sql("SELECT count(*) AS count FROM lines").unwrap(), "complete")
        }
        "aggregates_sql_complete" => {
            lines.create_or_replace_temp_view("lines").unwrap();
            let sql = "SELECT n % 2 AS parity, count(n) AS cnt, sum(n) AS total, avg(n) AS mean, min(n) AS lo, max(n) AS hi \
                       FROM (SELECT CAST(value AS BIGINT) AS n FROM lines) GROUP BY n % 2";
            (spark.sql(sql).unwrap(), "complete")
        }
        other => panic!("no ember query for golden case {other}"),
    }
}

/// The event-time case's query over `lines` (`timestamp,word` lines), and its output mode; a
/// case with a static table reads it from `<case>.static.jsonl`.
fn event_time_query(case: &str, spark: &SparkSession, lines: &DataFrame, lines2: Option<&DataFrame>) -> (DataFrame, &'static str) {
    let table = || spark.read().json(event_time_dir().join(format!("{case}.static.jsonl"))).unwrap();
    let parts = || split(col("value"), ",");
    let events = lines
        .select([
            to_timestamp(parts().get_item(0)).alias("timestamp"),
            parts().get_item(1).alias("word"),
        ])
        .unwrap();
    let watermarked = |delay| events.with_watermark("timestamp", delay).unwrap();
    let sliding = || window(col("timestamp"), "10 minutes", Some("5 minutes"), None);
    let guide = || watermarked("10 minutes").group_by([sliding(), col("word")]).count().unwrap();
    let session = |df: DataFrame| df.group_by([session_window(col("timestamp"), "5 minutes"), col("word")]);
    let keyed = |delay, window: Column| watermarked(delay).group_by([window, col("word")]).count().unwrap();
    match case {
        "guide_update" | "late_dropped_update" => (guide(), "update"),
        "guide_append" | "late_dropped_append" => (guide(), "append"),
        "timestamp_key_append" => (watermarked("5 minutes").group_by([col("timestamp")]).count().unwrap(), "append"),
        "nulls_and_start_update" => (
            keyed(
                "10 minutes",
                window(col("timestamp"), "10 minutes", Some("5 minutes"), Some("2 minutes")),
            ),
            "update",
        ),
        "sliding_filter_append" => (
            keyed("1 minute", window(col("timestamp"), "12 minutes", Some("5 minutes"), None)),
            "append",
        ),
        "watermark_stateless_append" => (watermarked("10 minutes").select([col("timestamp"), col("word")]).unwrap(), "append"),
        "join_inner_append" => (events.join(&table(), &["word"], "inner").unwrap(), "append"),
        "join_left_append" => (events.join(&table(), &["word"], "left_outer").unwrap(), "append"),
        "join_semi_append" => (events.join(&table(), &["word"], "left_semi").unwrap(), "append"),
        "join_anti_append" => (events.join(&table(), &["word"], "left_anti").unwrap(), "append"),
        "join_count_update" => (
            events
                .join(&table(), &["word"], "inner")
                .unwrap()
                .group_by([col("kind")])
                .count()
                .unwrap(),
            "update",
        ),
        "join_window_append" => (
            watermarked("10 minutes")
                .join(&table(), &["word"], "inner")
                .unwrap()
                .group_by([window(col("timestamp"), "10 minutes", None, None), col("kind")])
                .count()
                .unwrap(),
            "append",
        ),
        "dedup_append" => (events.drop_duplicates(Some(&["word"])).unwrap(), "append"),
        "dedup_update" => (events.drop_duplicates(Some(&["word"])).unwrap(), "update"),
        "dedup_all_append" => (events.drop_duplicates(None).unwrap(), "append"),
        "dedup_watermark_append" => (
            watermarked("10 minutes").drop_duplicates(Some(&["word", "timestamp"])).unwrap(),
            "append",
        ),
        "dedup_within_watermark_append" => (
            watermarked("10 minutes").drop_duplicates_within_watermark(Some(&["word"])).unwrap(),
            "append",
        ),
        "session_append" => (session(watermarked("10 minutes")).count().unwrap(), "append"),
        "session_complete" => (session(events.clone()).count().unwrap(), "complete"),
        "session_agg_append" => (
            session(watermarked("10 minutes"))
                .agg([
                    count("*").alias("n"),
                    min("timestamp").alias("first"),
                    max("timestamp").alias("last"),
                ])
                .unwrap(),
            "append",
        ),
        "renamed_watermark_append" => (
            watermarked("10 minutes")
                .select([col("timestamp").alias("time"), col("word").alias("animal")])
                .unwrap()
                .group_by([window(col("time"), "10 minutes", None, None), col("animal")])
                .count()
                .unwrap(),
            "append",
        ),
        "session_dynamic_append" => {
            // One gap per row: 2 minutes for a, 20 for b, none that counts for c (0 seconds).
            let gap = when(col("word").eq(lit("a")), lit("2 minutes"))
                .when(col("word").eq(lit("b")), lit("20 minutes"))
                .unwrap()
                .when(col("word").eq(lit("c")), lit("0 seconds"))
                .unwrap();
            let grouped = watermarked("10 minutes").group_by([session_window(col("timestamp"), gap), col("word")]);
            (grouped.count().unwrap(), "append")
        }
        "session_dynamic_sql_append" => {
            watermarked("10 minutes").create_or_replace_temp_view("events").unwrap();
            let sql = "SELECT session_window(timestamp, CASE WHEN word = 'a' THEN '2 minutes' WHEN word = 'b' THEN '20 minutes' END) AS session, \
                       word, count(*) AS n FROM events \
                       GROUP BY session_window(timestamp, CASE WHEN word = 'a' THEN '2 minutes' WHEN word = 'b' THEN '20 minutes' END), word";
            (spark.sql(sql).unwrap(), "append")
        }
        "session_sql_append" => {
            watermarked("10 minutes").create_or_replace_temp_view("events").unwrap();
            let sql = "SELECT session_window(timestamp, '5 minutes') AS session, word, count(*) AS n FROM events \
                       GROUP BY session_window(timestamp, '5 minutes'), word";
            (spark.sql(sql).unwrap(), "append")
        }
        "ss_inner_append" | "ss_inner_late_append" | "ss_left_outer_append" | "ss_full_outer_append" | "ss_inner_no_watermark_append" => {
            let clicks_lines = lines2.expect("the case's second stream");
            let impressions = lines
                .select([
                    to_timestamp(parts().get_item(0)).alias("impressionTime"),
                    parts().get_item(1).alias("impressionAdId"),
                ])
                .unwrap();
            let click_parts = || split(col("value"), ",");
            let clicks = clicks_lines
                .select([
                    to_timestamp(click_parts().get_item(0)).alias("clickTime"),
                    click_parts().get_item(1).alias("clickAdId"),
                ])
                .unwrap();
            if case == "ss_inner_no_watermark_append" {
                return (
                    impressions.join_on(&clicks, expr("clickAdId = impressionAdId"), "inner").unwrap(),
                    "append",
                );
            }
            let condition =
                expr("clickAdId = impressionAdId AND clickTime >= impressionTime AND clickTime <= impressionTime + interval 15 minutes");
            let how = match case {
                "ss_left_outer_append" => "left_outer",
                "ss_full_outer_append" => "full_outer",
                _ => "inner",
            };
            let joined = impressions
                .with_watermark("impressionTime", "10 minutes")
                .unwrap()
                .join_on(&clicks.with_watermark("clickTime", "20 minutes").unwrap(), condition, how)
                .unwrap();
            (joined, "append")
        }
        "sql_tumbling_complete" => {
            events.create_or_replace_temp_view("events").unwrap();
            let sql = "SELECT window(timestamp, '10 minutes') AS window, count(*) AS n, max(word) AS last FROM events \
                       GROUP BY window(timestamp, '10 minutes')";
            (spark.sql(sql).unwrap(), "complete")
        }
        "tumbling_append" => (
            watermarked("5 minutes")
                .group_by([window(col("timestamp"), "10 minutes", None, None), col("word")])
                .count()
                .unwrap(),
            "append",
        ),
        "guide_sql_update" => {
            watermarked("10 minutes").create_or_replace_temp_view("events").unwrap();
            let sql = "SELECT window(timestamp, '10 minutes', '5 minutes') AS window, word, count(*) AS count FROM events \
                       GROUP BY window(timestamp, '10 minutes', '5 minutes'), word";
            (spark.sql(sql).unwrap(), "update")
        }
        "agg_window_complete" => (
            events
                .group_by([window(col("timestamp"), "10 minutes", None, None)])
                .agg([count("*"), min("word"), max("word")])
                .unwrap(),
            "complete",
        ),
        "state_count_update" => (count_words(&events, "update"), "update"),
        "state_count_append" => (count_words(&events, "append"), "append"),
        "state_session_append" => (sessions(&events, "append", 300_000, false), "append"),
        "state_timeout_update" => (sessions(&events, "update", 60_000, true), "update"),
        other => panic!("no ember query for event-time golden case {other}"),
    }
}

/// The batches of a console output, each with its table rows in one order.
fn normalised(text: &str, sort_rows: bool) -> Vec<String> {
    let header = "-------------------------------------------\nBatch: ";
    text.split(header)
        .filter(|b| !b.is_empty())
        .map(|batch| {
            let mut lines: Vec<&str> = batch.lines().collect();
            // Batch N, dashes, border, column names, border, rows..., border, [only showing], blank.
            if sort_rows && lines.len() > 6 {
                let end = lines.iter().rposition(|l| l.starts_with('+')).unwrap_or(lines.len());
                lines[5..end].sort_unstable();
            }
            lines.join("\n")
        })
        .collect()
}

/// The names of the cases in `golden` (its `.out` files), sorted.
fn cases(golden: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(golden)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_string_lossy().strip_suffix(".out").map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// Runs `case` of `golden` on the `availableNow` trigger, one file a micro-batch; its console
/// output, and the query's progress reports.
fn run(
    golden: &Path,
    case: &str,
    query: fn(&str, &SparkSession, &DataFrame, Option<&DataFrame>) -> (DataFrame, &'static str),
) -> (String, &'static str, Vec<ember_sql::QueryProgress>) {
    let dir = input_dir(golden, case, "input");
    // A second stream, from `<case>.input2.json`, when the case has one.
    let dir2 = golden
        .join(format!("{case}.input2.json"))
        .exists()
        .then(|| input_dir(golden, case, "input2"));
    let spark = SparkSession::builder()
        .app_name("golden")
        .master("local[2]")
        .get_or_create()
        .unwrap();
    let lines = spark
        .read_stream()
        .format("text")
        .option("maxFilesPerTrigger", 1)
        .load_path(&dir)
        .unwrap();
    let lines2 = dir2.as_ref().map(|dir| {
        spark
            .read_stream()
            .format("text")
            .option("maxFilesPerTrigger", 1)
            .load_path(dir)
            .unwrap()
    });
    let (df, mode) = query(case, &spark, &lines, lines2.as_ref());
    let out = Captured::default();
    let running = df
        .write_stream()
        .output_mode(mode)
        .format("console")
        .trigger(Trigger::AvailableNow)
        .console_output(out.clone())
        .start()
        .unwrap();
    assert!(
        running.await_termination_timeout(Duration::from_secs(60)).unwrap(),
        "{case}: did not stop"
    );
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(dir2) = dir2 {
        let _ = std::fs::remove_dir_all(dir2);
    }
    let got = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    (got, mode, running.recent_progress())
}

#[test]
fn console_output_matches_pysparks_batch_by_batch() {
    let cases = cases(&golden_dir());
    assert!(cases.len() >= 10, "golden cases missing: {cases:?}");
    let mut failures = Vec::new();
    for case in &cases {
        let (got, mode, _) = run(&golden_dir(), case, query);
        let want = std::fs::read_to_string(golden_dir().join(format!("{case}.out"))).unwrap();
        let sort = mode != "append";
        if normalised(&got, sort) != normalised(&want, sort) {
            failures.push(format!("== {case}: ember printed\n{got}\n== PySpark printed\n{want}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// What PySpark's progress report of a micro-batch says about event time and state, as
/// `make_goldens.py` keeps it.
fn event_time_progress(report: &serde_json::Value) -> serde_json::Value {
    let operators: Vec<serde_json::Value> = report["stateOperators"]
        .as_array()
        .map(|ops| {
            ops.iter()
                .map(|op| {
                    serde_json::json!({
                        "numRowsTotal": op["numRowsTotal"],
                        "numRowsUpdated": op["numRowsUpdated"],
                        "numRowsRemoved": op["numRowsRemoved"],
                        "numRowsDroppedByWatermark": op["numRowsDroppedByWatermark"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({
        "batchId": report["batchId"],
        "numInputRows": report["numInputRows"],
        "eventTime": report.get("eventTime").cloned().unwrap_or(serde_json::Value::Null),
        "stateOperators": operators,
    })
}

#[test]
fn event_time_output_and_progress_match_pysparks() {
    let golden = event_time_dir();
    let cases = cases(&golden);
    assert!(cases.len() >= 5, "event-time golden cases missing: {cases:?}");
    let mut failures = Vec::new();
    for case in &cases {
        failures.extend(event_time_differences(&golden, case, event_time_query));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// How ember's run of `case` through `query` differs from PySpark's golden output and progress.
fn event_time_differences(
    golden: &Path,
    case: &str,
    query: fn(&str, &SparkSession, &DataFrame, Option<&DataFrame>) -> (DataFrame, &'static str),
) -> Vec<String> {
    let mut failures = Vec::new();
    let (got, _, progress) = run(golden, case, query);
    // Aggregations print in hash order in every mode.
    let want = std::fs::read_to_string(golden.join(format!("{case}.out"))).unwrap();
    if normalised(&got, true) != normalised(&want, true) {
        failures.push(format!("== {case}: ember printed\n{got}\n== PySpark printed\n{want}"));
    }
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden.join(format!("{case}.progress.json"))).unwrap()).unwrap();
    let got: Vec<serde_json::Value> = progress
        .iter()
        .map(|p| event_time_progress(&serde_json::from_str(&p.json()).unwrap()))
        .collect();
    if serde_json::Value::from(got.clone()) != want {
        failures.push(format!(
            "== {case}: ember's progress\n{}\n== PySpark's\n{}",
            serde_json::to_string_pretty(&got).unwrap(),
            serde_json::to_string_pretty(&want).unwrap()
        ));
    }
    // The operator's name as PySpark 3.5.9 reports it (read off a scratch run; the saved
    // progress files leave it out), Scala's name for the Rust state function.
    let operator = match case {
        c if c.starts_with("dedup_within") => Some("dedupeWithinWatermark"),
        c if c.starts_with("dedup_") => Some("dedupe"),
        c if c.starts_with("session_") => Some("defaultName"),
        c if c.starts_with("ss_") => Some("symmetricHashJoin"),
        c if c.starts_with("state_") => Some("flatMapGroupsWithState"),
        _ => None,
    };
    if let (Some(name), Some(last)) = (operator, progress.last()) {
        let json: serde_json::Value = serde_json::from_str(&last.json()).unwrap();
        if json["stateOperators"][0]["operatorName"] != name {
            failures.push(format!(
                "== {case}: operator {} where Spark names it {name}",
                json["stateOperators"][0]["operatorName"]
            ));
        }
    }
    failures
}

/// PySpark's left outer stream-stream join, with each side's watermark set on a column that is
/// renamed afterwards: the watermark follows the column, so state is freed and outer rows
/// emitted as in the golden run, whose columns had their final names from the start.
#[test]
fn a_join_over_columns_renamed_after_their_watermarks_matches_pysparks() {
    fn renamed(_: &str, _: &SparkSession, lines: &DataFrame, lines2: Option<&DataFrame>) -> (DataFrame, &'static str) {
        let side = |lines: &DataFrame, time: &str, id: &str, delay: &str| {
            let parts = || split(col("value"), ",");
            lines
                .select([to_timestamp(parts().get_item(0)).alias("t"), parts().get_item(1).alias("id")])
                .unwrap()
                .with_watermark("t", delay)
                .unwrap()
                .select([col("t").alias(time), col("id").alias(id)])
                .unwrap()
        };
        let impressions = side(lines, "impressionTime", "impressionAdId", "10 minutes");
        let clicks = side(lines2.expect("the case's second stream"), "clickTime", "clickAdId", "20 minutes");
        let condition =
            expr("clickAdId = impressionAdId AND clickTime >= impressionTime AND clickTime <= impressionTime + interval 15 minutes");
        (impressions.join_on(&clicks, condition, "left_outer").unwrap(), "append")
    }
    let failures = event_time_differences(&event_time_dir(), "ss_left_outer_append", renamed);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The query of a check of `golden-eventtime/checker_errors.json`, started with the console
/// sink: Spark refuses each, while the DataFrame is built or at `start`.
fn refused(name: &str, spark: &SparkSession, lines: &DataFrame, lines2: &DataFrame, table: &Path) -> ember_sql::Result<()> {
    let parts = || split(col("value"), ",");
    let impressions = || {
        lines.select([
            to_timestamp(parts().get_item(0)).alias("impressionTime"),
            parts().get_item(1).alias("impressionAdId"),
        ])
    };
    let clicks = || {
        lines2.select([
            to_timestamp(parts().get_item(0)).alias("clickTime"),
            parts().get_item(1).alias("clickAdId"),
        ])
    };
    let ranged = "clickAdId = impressionAdId AND clickTime >= impressionTime AND clickTime <= impressionTime + interval 15 minutes";
    let watermarked = |how: &str| -> ember_sql::Result<DataFrame> {
        impressions()?.with_watermark("impressionTime", "10 minutes")?.join_on(
            &clicks()?.with_watermark("clickTime", "20 minutes")?,
            expr(ranged),
            how,
        )
    };
    let events = lines.select([
        to_timestamp(parts().get_item(0)).alias("timestamp"),
        parts().get_item(1).alias("word"),
    ])?;
    let table = spark.read().json(table)?;
    let (df, mode) = match name {
        "static_left_join_stream" => (table.join(&events, &["word"], "left_outer")?, "append"),
        "stream_right_join_static" => (events.join(&table, &["word"], "right_outer")?, "append"),
        "stream_full_join_static" => (events.join(&table, &["word"], "full_outer")?, "append"),
        "static_full_join_stream" => (table.join(&events, &["word"], "full_outer")?, "append"),
        "static_semi_join_stream" => (table.join(&events, &["word"], "left_semi")?, "append"),
        "static_anti_join_stream" => (table.join(&events, &["word"], "left_anti")?, "append"),
        "dedup_complete" => (events.drop_duplicates(Some(&["word"]))?, "complete"),
        "within_watermark_without_watermark" => (events.drop_duplicates_within_watermark(Some(&["word"]))?, "append"),
        "bad_delay" => (events.with_watermark("timestamp", "10 mins")?, "append"),
        "negative_delay" => (events.with_watermark("timestamp", "-1 minute")?, "append"),
        "watermark_on_string" => (events.with_watermark("word", "1 minute")?, "append"),
        "session_update" => (
            events
                .with_watermark("timestamp", "10 minutes")?
                .group_by([session_window(col("timestamp"), "5 minutes"), col("word")])
                .count()?,
            "update",
        ),
        "ss_left_outer_without_watermark" => (
            impressions()?.join_on(&clicks()?, expr("clickAdId = impressionAdId"), "left_outer")?,
            "append",
        ),
        "ss_full_outer" => (watermarked("full_outer")?, "append"),
        "ss_inner_update_mode" => (watermarked("inner")?, "update"),
        "ss_join_then_aggregate_complete" => (
            impressions()?
                .join_on(&clicks()?, expr("clickAdId = impressionAdId"), "inner")?
                .group_by([col("impressionAdId")])
                .count()?,
            "complete",
        ),
        "state_append_in_update_mode" => (count_words(&events, "append"), "update"),
        "state_update_in_append_mode" => (count_words(&events, "update"), "append"),
        "state_update_in_complete_mode" => (count_words(&events, "update"), "complete"),
        "state_event_timeout_without_watermark" => (
            events.group_by([col("word")]).flat_map_groups_with_state(
                "append",
                GroupStateTimeout::EventTimeTimeout,
                ember_sql::schema_from_ddl("word string").unwrap(),
                |_: &[ScalarValue], _: RecordBatch, _: &mut GroupState<i64>| Ok(Vec::new()),
            )?,
            "append",
        ),
        "state_bad_mode" => (
            events.group_by([col("word")]).flat_map_groups_with_state(
                "complete",
                GroupStateTimeout::NoTimeout,
                ember_sql::schema_from_ddl("word string").unwrap(),
                |_: &[ScalarValue], _: RecordBatch, _: &mut GroupState<i64>| Ok(Vec::new()),
            )?,
            "update",
        ),
        other => panic!("no ember query for check {other}"),
    };
    let query = df.write_stream().format("console").output_mode(mode).start()?;
    query.stop()
}

#[test]
fn join_dedup_and_watermark_refusals_match_sparks() {
    let goldens: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(event_time_dir().join("checker_errors.json")).unwrap()).unwrap();
    let batches = |value: &serde_json::Value| -> Vec<Vec<String>> { serde_json::from_value(value.clone()).unwrap() };
    let dir = common::temp_dir("refusals");
    let dir2 = common::temp_dir("refusals-2");
    common::batch_files(&dir2, &batches(&goldens["input2"]));
    let table = dir.with_extension("static.jsonl");
    let rows: String = goldens["static"].as_array().unwrap().iter().map(|row| format!("{row}\n")).collect();
    std::fs::write(&table, rows).unwrap();
    let spark = SparkSession::builder().master("local[2]").get_or_create().unwrap();
    let lines2 = spark.read_stream().format("text").load_path(&dir2).unwrap();
    let mut failures = Vec::new();
    for check in goldens["checks"].as_array().unwrap() {
        let name = check["name"].as_str().unwrap();
        if name == "state_bad_timeout" {
            // PySpark's own `assert` on the timeout's name; Rust's timeout is an enum.
            continue;
        }
        // A check may read its own first stream.
        common::batch_files(&dir, &batches(check.get("input").unwrap_or(&goldens["input"])));
        let lines = spark.read_stream().format("text").load_path(&dir).unwrap();
        let (class, first_line) = match refused(name, &spark, &lines, &lines2, &table) {
            Ok(()) => ("none".to_owned(), "(started)".to_owned()),
            Err(e) => {
                let class = match e {
                    ember_sql::Error::Analysis(_) => "AnalysisException",
                    ember_sql::Error::IllegalArgument(_) => "IllegalArgumentException",
                    _ => "another error",
                };
                // Spark names the Scala operation flatMapGroupsWithState, the Python one
                // applyInPandasWithState (the goldens are PySpark's).
                let text = e.to_string().replace("flatMapGroupsWithState", "applyInPandasWithState");
                (class.to_owned(), text.lines().next().unwrap_or_default().to_owned())
            }
        };
        // Spark started the query: so must ember.
        let want = (
            check["exception"].as_str().unwrap_or("none"),
            check["first_line"].as_str().unwrap_or("(started)"),
        );
        if (class.as_str(), first_line.as_str()) != want {
            failures.push(format!(
                "{name}: ember {class}: {first_line}\n  Spark {}: {}",
                check["exception"], check["first_line"]
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
    let _ = std::fs::remove_file(&table);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
