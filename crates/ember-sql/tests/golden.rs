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

use ember_sql::functions::{avg, col, count, explode, expr, max, min, split, sum};
use ember_sql::{Column, DataFrame, SparkSession, Trigger};

mod common;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// A fresh directory holding one file per batch of the case's input.
fn input_dir(case: &str) -> PathBuf {
    let text = std::fs::read_to_string(golden_dir().join(format!("{case}.input.json"))).unwrap();
    let batches: Vec<Vec<String>> = serde_json::from_str(&text).unwrap();
    let dir = common::temp_dir(&format!("golden-{case}"));
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
fn query(case: &str, spark: &SparkSession, lines: &DataFrame) -> (DataFrame, &'static str) {
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

#[test]
fn console_output_matches_pysparks_batch_by_batch() {
    let cases: Vec<String> = {
        let mut names: Vec<String> = std::fs::read_dir(golden_dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_string_lossy().strip_suffix(".out").map(str::to_owned))
            .collect();
        names.sort();
        names
    };
    assert!(cases.len() >= 10, "golden cases missing: {cases:?}");
    let mut failures = Vec::new();
    for case in &cases {
        let dir = input_dir(case);
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
        let (df, mode) = query(case, &spark, &lines);
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
        let got = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let want = std::fs::read_to_string(golden_dir().join(format!("{case}.out"))).unwrap();
        let sort = mode != "append";
        if normalised(&got, sort) != normalised(&want, sort) {
            failures.push(format!("== {case}: ember printed\n{got}\n== PySpark printed\n{want}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
