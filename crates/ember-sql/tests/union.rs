//! `union` of streams: two file sources (each at its own pace: `maxFilesPerTrigger` 1 and 2)
//! into one word count, a stream with itself (every row twice, as in Spark), and a join of two
//! streams in SQL.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ember_sql::functions::{col, explode, split};
use ember_sql::{DataFrame, SparkSession, Trigger};

mod common;

fn directory(name: &str, files: &[&[&str]]) -> PathBuf {
    let batches: Vec<Vec<&str>> = files.iter().map(|f| f.to_vec()).collect();
    let dir = common::temp_dir(&format!("union-{name}"));
    common::batch_files(&dir, &batches);
    dir
}

fn stream(spark: &SparkSession, dir: &Path, per_trigger: usize) -> DataFrame {
    spark
        .read_stream()
        .format("text")
        .option("maxFilesPerTrigger", per_trigger)
        .load_path(dir)
        .unwrap()
}

/// The rows each batch handed to `foreachBatch`, as `value|count` strings, sorted.
fn run(df: &DataFrame, mode: &str) -> Vec<Vec<String>> {
    run_with_progress(df, mode).0
}

/// [`run`], and each progress report's input rows per source.
fn run_with_progress(df: &DataFrame, mode: &str) -> (Vec<Vec<String>>, Vec<Vec<u64>>) {
    let seen: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let into = Arc::clone(&seen);
    let query = df
        .write_stream()
        .output_mode(mode)
        .trigger(Trigger::AvailableNow)
        .foreach_batch(move |batches, _| {
            let mut rows = Vec::new();
            for batch in batches {
                for row in 0..batch.num_rows() {
                    let cells: Vec<String> = batch.columns().iter().map(|c| ember_sql::show::cell(c.as_ref(), row)).collect();
                    rows.push(cells.join("|"));
                }
            }
            rows.sort();
            into.lock().unwrap().push(rows);
            Ok(())
        })
        .start()
        .unwrap();
    assert!(query.await_termination_timeout(Duration::from_secs(60)).unwrap());
    let sources = query
        .recent_progress()
        .iter()
        .map(|p| p.sources.iter().map(|s| s.num_input_rows).collect())
        .collect();
    let seen = seen.lock().unwrap().clone();
    (seen, sources)
}

#[test]
fn a_union_of_two_file_streams_counts_both() {
    let spark = SparkSession::builder().master("local[2]").get_or_create().unwrap();
    let a = directory("a", &[&["x y"], &["y"], &["z"]]);
    let b = directory("b", &[&["x"], &["x w"]]);
    let lines = stream(&spark, &a, 1).union(&stream(&spark, &b, 2)).unwrap();
    let words = lines.select([explode(split(col("value"), " ")).alias("word")]).unwrap();
    let (batches, sources) = run_with_progress(&words.group_by([col("word")]).count().unwrap(), "complete");
    // Progress has an entry per source, with the lines each read (3 files of a, 2 of b).
    assert!(sources.iter().all(|s| s.len() == 2), "{sources:?}");
    let per_source: Vec<u64> = (0..2).map(|k| sources.iter().map(|s| s[k]).sum()).collect();
    assert_eq!(per_source, [3, 2], "{sources:?}");
    // Every file read once: the last table has every word's total over both directories.
    assert_eq!(batches.last().unwrap(), &["w|1", "x|3", "y|2", "z|1"]);
    let total: usize = batches.iter().map(|b| b.len()).sum();
    assert!(batches.len() >= 3 && total > 4, "{batches:?}");
    let _ = std::fs::remove_dir_all(a);
    let _ = std::fs::remove_dir_all(b);
}

#[test]
fn a_stream_with_itself_gives_each_row_twice() {
    let spark = SparkSession::builder().master("local[2]").get_or_create().unwrap();
    let a = directory("self", &[&["p", "q"]]);
    let lines = stream(&spark, &a, 1);
    let batches = run(&lines.union(&lines).unwrap(), "append");
    assert_eq!(batches, [["p", "p", "q", "q"]]);
    let _ = std::fs::remove_dir_all(a);
}

#[test]
fn a_join_of_two_streams_in_sql_pairs_rows_across_batches() {
    let spark = SparkSession::builder().master("local[1]").get_or_create().unwrap();
    // `1` meets its match in the first batch, `2` a batch later (the left side's state), `3`
    // never.
    let a = directory("join-a", &[&["1", "2"], &["3"]]);
    let b = directory("join-b", &[&["1"], &["2"]]);
    stream(&spark, &a, 1).create_or_replace_temp_view("a").unwrap();
    stream(&spark, &b, 1).create_or_replace_temp_view("b").unwrap();
    let joined = spark
        .sql("SELECT a.value AS l, b.value AS r FROM a JOIN b ON a.value = b.value")
        .unwrap();
    let batches = run(&joined, "append");
    let pairs: Vec<String> = batches.concat();
    assert_eq!(pairs, ["1|1", "2|2"], "{batches:?}");
    let _ = std::fs::remove_dir_all(a);
    let _ = std::fs::remove_dir_all(b);
}
