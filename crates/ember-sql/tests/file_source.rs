//! Structured Streaming over the file source on the `availableNow` trigger: batch k reads
//! file k (`maxFilesPerTrigger` 1), so every micro-batch's output is known; results are read
//! back through the memory sink and `foreachBatch`, and compared with a recomputation.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use ember_sql::functions::{avg, col, count, explode, lit, lower, max, min, split, sum};
use ember_sql::{Error, SparkSession, Trigger};

fn session() -> SparkSession {
    SparkSession::builder()
        .app_name("tests")
        .master("local[2]")
        .get_or_create()
        .unwrap()
}

/// A session, and the stream of `dir`'s files, one file a micro-batch.
fn one_file_a_batch(dir: &std::path::Path) -> (SparkSession, ember_sql::DataFrame) {
    let spark = session();
    let lines = spark
        .read_stream()
        .format("text")
        .option("maxFilesPerTrigger", 1)
        .load_path(dir)
        .unwrap();
    (spark, lines)
}

/// A directory with one file per batch, written a few milliseconds apart (the source takes
/// files oldest first).
fn files(batches: &[&[&str]]) -> tempfile_dir::Dir {
    let dir = tempfile_dir::Dir::new();
    for (i, lines) in batches.iter().enumerate() {
        std::fs::write(dir.path().join(format!("part-{i:03}.txt")), lines.join("\n") + "\n").unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    dir
}

mod tempfile_dir {
    use std::path::{Path, PathBuf};

    /// A fresh directory, removed when dropped.
    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new() -> Self {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "ember-sql-test-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Every micro-batch's rows as (word, count) pairs, sorted, by batch id.
fn word_counts(batches: &[RecordBatch]) -> Vec<(String, i64)> {
    let mut rows = Vec::new();
    for b in batches {
        let words = b.column(0).as_string::<i32>();
        let counts = b.column(1).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            rows.push((words.value(i).to_owned(), counts.value(i)));
        }
    }
    rows.sort();
    rows
}

type Seen = Arc<Mutex<Vec<(i64, Vec<RecordBatch>)>>>;

fn collecting() -> (Seen, impl Fn(&[RecordBatch], i64) -> Result<(), String> + Send + Sync + 'static) {
    let seen: Seen = Arc::default();
    let sink = Arc::clone(&seen);
    (seen, move |batches: &[RecordBatch], id: i64| {
        sink.lock().unwrap().push((id, batches.to_vec()));
        Ok(())
    })
}

const INPUT: &[&[&str]] = &[&["the cat sat", "on the mat"], &["the dog"], &["a cat", "the end the"]];

#[test]
fn word_count_in_complete_and_update_mode_batch_by_batch() {
    let dir = files(INPUT);
    for mode in ["complete", "update"] {
        let (_spark, lines) = one_file_a_batch(dir.path());
        let words = lines.select([explode(split(col("value"), " ")).alias("word")]).unwrap();
        let counts = words.group_by([col("word")]).count().unwrap();
        assert_eq!(counts.columns(), ["word", "count"]);
        let (seen, sink) = collecting();
        let query = counts
            .write_stream()
            .output_mode(mode)
            .trigger(Trigger::AvailableNow)
            .foreach_batch(sink)
            .start()
            .unwrap();
        assert!(
            query.await_termination_timeout(Duration::from_secs(30)).unwrap(),
            "{mode}: the query did not stop"
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [0, 1, 2], "{mode}");
        let mut totals: BTreeMap<String, i64> = BTreeMap::new();
        for (k, batch) in INPUT.iter().enumerate() {
            let mut touched = BTreeMap::new();
            for word in batch.iter().flat_map(|l| l.split(' ')) {
                *totals.entry(word.to_owned()).or_default() += 1;
                touched.insert(word.to_owned(), ());
            }
            let expected: Vec<(String, i64)> = totals
                .iter()
                .filter(|(w, _)| mode == "complete" || touched.contains_key(*w))
                .map(|(w, n)| (w.clone(), *n))
                .collect();
            assert_eq!(word_counts(&seen[k].1), expected, "{mode}, batch {k}");
        }
    }
}

#[test]
fn aggregates_and_a_global_count_match_a_recomputation() {
    let dir = files(&[&["3", "5", "x"], &["10"], &["-2", "7"]]);
    let (spark, lines) = one_file_a_batch(dir.path());
    let numbers = lines
        .select([
            col("value").alias("text"),
            ember_sql::functions::expr("CAST(value AS BIGINT)").alias("n"),
        ])
        .unwrap();
    let stats = numbers
        .agg([count("n"), sum("n"), avg("n"), min("n"), max("n"), count("*")])
        .unwrap();
    assert_eq!(stats.columns(), ["count(n)", "sum(n)", "avg(n)", "min(n)", "max(n)", "count(1)"]);
    let query = stats
        .write_stream()
        .output_mode("complete")
        .format("memory")
        .query_name("stats")
        .trigger(Trigger::AvailableNow)
        .start()
        .unwrap();
    assert!(query.await_termination_timeout(Duration::from_secs(30)).unwrap());
    let result = spark.sql("SELECT * FROM stats").unwrap().collect().unwrap();
    let row = &result[0];
    let ints = |i: usize| row.column(i).as_primitive::<Int64Type>().value(0);
    // 3, 5, 10, -2, 7 (and "x", which casts to null).
    assert_eq!((ints(0), ints(1), ints(3), ints(4), ints(5)), (5, 23, -2, 10, 6));
    let mean = row.column(2).as_primitive::<datafusion::arrow::datatypes::Float64Type>().value(0);
    assert!((mean - 23.0 / 5.0).abs() < 1e-12);
    assert!(!row.column(0).is_null(0));
}

#[test]
fn stateless_queries_append_their_rows_batch_by_batch() {
    let dir = files(&[&["Hello World", "skip me"], &["ANOTHER line"]]);
    let (_spark, lines) = one_file_a_batch(dir.path());
    let kept = lines
        .filter(col("value").ne(lit("skip me")))
        .unwrap()
        .select([lower(col("value")).alias("lower"), col("value")])
        .unwrap()
        .with_column("n", ember_sql::functions::length(col("value")))
        .unwrap();
    let (seen, sink) = collecting();
    let query = kept
        .write_stream()
        .trigger(Trigger::AvailableNow)
        .foreach_batch(sink)
        .start()
        .unwrap();
    assert!(query.await_termination_timeout(Duration::from_secs(30)).unwrap());
    let seen = seen.lock().unwrap();
    let rows = |k: usize| -> Vec<(String, i64)> {
        seen[k]
            .1
            .iter()
            .flat_map(|b| {
                let lower = b.column(0).as_string::<i32>().clone();
                let n = b.column(2).as_primitive::<datafusion::arrow::datatypes::Int32Type>().clone();
                (0..b.num_rows()).map(move |i| (lower.value(i).to_owned(), i64::from(n.value(i))))
            })
            .collect()
    };
    assert_eq!(rows(0), [("hello world".to_owned(), 11)]);
    assert_eq!(rows(1), [("another line".to_owned(), 12)]);
}

#[test]
fn the_checker_refuses_what_spark_refuses_with_its_message() {
    let spark = session();
    let lines = spark
        .read_stream()
        .format("socket")
        .option("host", "localhost")
        .option("port", 9)
        .load()
        .unwrap();
    let complete = lines.write_stream().output_mode("complete").format("console").start();
    assert!(
        matches!(&complete, Err(Error::Analysis(m)) if m.starts_with("Complete output mode not supported when there are no streaming aggregations"))
    );
    let counts = lines.group_by([col("value")]).count().unwrap();
    let append = counts.write_stream().output_mode("append").format("console").start();
    assert!(
        matches!(&append, Err(Error::Analysis(m)) if m.starts_with("Append output mode not supported when there are streaming aggregations"))
    );
    let bad = lines.select([col("nope")]);
    assert!(
        matches!(&bad, Err(Error::Analysis(m)) if m.contains("`nope` cannot be resolved")),
        "{bad:?}"
    );
    let mode = lines.write_stream().output_mode("sometimes").start();
    assert!(matches!(&mode, Err(Error::IllegalArgument(m)) if m.starts_with("Unknown output mode sometimes")));
    // A deduplication with an aggregation over it is refused, not run as one of the two
    // (from a DataFrame and from SQL over a view of the deduplicated rows).
    let deduplicated = lines.drop_duplicates(None).unwrap();
    let counted = deduplicated.group_by([col("value")]).count().unwrap();
    let both = counted.write_stream().output_mode("complete").format("console").start();
    assert!(
        matches!(&both, Err(Error::Unsupported(m)) if m.contains("aggregation over the rows of dropDuplicates")),
        "{both:?}"
    );
    deduplicated.create_or_replace_temp_view("distinct_lines").unwrap();
    let sql = spark.sql("SELECT value, count(*) FROM distinct_lines GROUP BY value").unwrap();
    let both = sql.write_stream().output_mode("complete").format("console").start();
    assert!(
        matches!(&both, Err(Error::Unsupported(m)) if m.contains("aggregation over the rows of dropDuplicates")),
        "{both:?}"
    );
}

/// A run killed after committing a batch but before the engine's first checkpoint leaves the
/// commit log, the aggregation's state and the files chosen per batch time, and no engine
/// checkpoint. The next run must take the batch grid of the first, so that the committed batch
/// is replayed at its time (and skipped), not planned again at a new time and counted twice.
#[test]
fn a_restart_without_the_engines_checkpoint_counts_each_file_once() {
    let dir = files(&[&["a b a"]]);
    let checkpoint = tempfile_dir::Dir::new();
    let run = |trigger: Trigger, want: &[(&str, i64)]| -> Vec<(String, i64)> {
        let (_spark, lines) = one_file_a_batch(dir.path());
        let words = lines.select([explode(split(col("value"), " ")).alias("word")]).unwrap();
        let (seen, sink) = collecting();
        let query = words
            .group_by([col("word")])
            .count()
            .unwrap()
            .write_stream()
            .output_mode("complete")
            .option("checkpointLocation", checkpoint.path().to_str().unwrap())
            .trigger(trigger)
            .foreach_batch(sink)
            .start()
            .unwrap();
        let want: Vec<(String, i64)> = want.iter().map(|(w, n)| (w.to_string(), *n)).collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let last = seen.lock().unwrap().last().map(|(_, b)| word_counts(b));
            // Done at the wanted table, or at any table past it (a word counted twice).
            if let Some(last) = last.filter(|l| l.iter().map(|(_, n)| n).sum::<i64>() >= want.iter().map(|(_, n)| n).sum()) {
                query.stop().unwrap();
                return last;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no batch reached {want:?}: {:?}",
                seen.lock().unwrap().len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let trigger = Trigger::ProcessingTime(Duration::from_millis(50));
    assert_eq!(run(trigger, &[("a", 2), ("b", 1)]), [("a".to_owned(), 2), ("b".to_owned(), 1)]);
    // The crash before the engine's first checkpoint: no manifest and no state of it.
    let engine = checkpoint.path().join("engine");
    for entry in std::fs::read_dir(&engine).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_str().unwrap().starts_with("checkpoint-") {
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
    }
    std::fs::write(dir.path().join("part-001.txt"), "b\n").unwrap();
    assert_eq!(
        run(trigger, &[("a", 2), ("b", 2)]),
        [("a".to_owned(), 2), ("b".to_owned(), 2)],
        "the committed batch's file was read again"
    );
}

/// Spark's SQL subscript counts from 0 and gives null below 0 or past the end, in
/// `selectExpr`, `expr` and `spark.sql` alike (DataFusion's counts from 1).
#[test]
fn sql_subscripts_count_from_zero_as_in_spark() {
    let dir = files(&[&["a,b,c", "d"]]);
    let (spark, lines) = one_file_a_batch(dir.path());
    lines.create_or_replace_temp_view("csv_lines").unwrap();
    let from_sql = spark
        .sql("SELECT split(value, ',')[0] AS first, split(value, ',')[2] AS third, split(value, ',')[-1] AS negative FROM csv_lines")
        .unwrap();
    let from_exprs = lines
        .select_expr(&[
            "split(value, ',')[0] AS first",
            "split(value, ',')[2] AS third",
            "split(value, ',')[-1] AS negative",
        ])
        .unwrap();
    for df in [from_sql, from_exprs] {
        let (seen, sink) = collecting();
        let query = df
            .write_stream()
            .trigger(Trigger::AvailableNow)
            .foreach_batch(sink)
            .start()
            .unwrap();
        assert!(query.await_termination_timeout(Duration::from_secs(30)).unwrap());
        let seen = seen.lock().unwrap();
        let mut rows: Vec<[Option<String>; 3]> = Vec::new();
        for b in &seen[0].1 {
            let text = |c: usize, i: usize| {
                let column = b.column(c).as_string::<i32>();
                column.is_valid(i).then(|| column.value(i).to_owned())
            };
            rows.extend((0..b.num_rows()).map(|i| [text(0, i), text(1, i), text(2, i)]));
        }
        rows.sort();
        assert_eq!(
            rows,
            [
                [Some("a".to_owned()), Some("c".to_owned()), None],
                [Some("d".to_owned()), None, None]
            ]
        );
    }
}

/// A failed micro-batch of an `availableNow` query ends `await_termination` with its error.
/// The trigger's thread waits on the engine too, and used to take the engine's report of the
/// failure for itself: the query then ran on, cutting empty batches, and never ended (about
/// one run in three); several runs here catch that race.
#[test]
fn a_failing_available_now_query_ends_with_its_error() {
    let dir = files(&[&["a"]]);
    for _ in 0..8 {
        let (_spark, lines) = one_file_a_batch(dir.path());
        let query = lines
            .write_stream()
            .trigger(Trigger::AvailableNow)
            .foreach_batch(|_, _| Err("boom".to_owned()))
            .start()
            .unwrap();
        let ended = query.await_termination();
        assert!(
            matches!(&ended, Err(Error::StreamingQuery { message, .. }) if message.contains("boom")),
            "{ended:?}"
        );
        assert!(!query.is_active());
    }
}

/// `format("csv")` and `format("json")` streams with a schema: each new file's rows, typed,
/// through a query; without a schema, Spark's refusal.
#[test]
fn csv_and_json_streams_read_new_files_into_their_schema() {
    let spark = session();
    let schema = ember_sql::schema_from_ddl("word string, n long").unwrap();
    let csv = files(&[&["word,n", "dog,1", "cat,2"], &["word,n", "dog,5", "owl,oops"]]);
    let json = files(&[
        &[r#"{"word": "dog", "n": 1}"#, r#"{"word": "cat", "n": 2}"#],
        &[r#"{"n": 5, "word": "dog"}"#, "broken"],
    ]);
    let sums = |df: ember_sql::DataFrame| -> Vec<(String, i64)> {
        let summed = df.group_by([col("word")]).agg([sum("n").alias("n")]).unwrap();
        let (seen, sink) = collecting();
        let query = summed
            .write_stream()
            .output_mode("complete")
            .trigger(Trigger::AvailableNow)
            .foreach_batch(sink)
            .start()
            .unwrap();
        assert!(query.await_termination_timeout(Duration::from_secs(30)).unwrap());
        let seen = seen.lock().unwrap();
        let mut rows = Vec::new();
        for b in &seen.last().unwrap().1 {
            let words = b.column(0).as_string::<i32>();
            let n = b.column(1).as_primitive::<Int64Type>();
            rows.extend((0..b.num_rows()).map(|i| (words.value(i).to_owned(), if n.is_null(i) { -1 } else { n.value(i) })));
        }
        rows.sort();
        rows
    };
    let from_csv = spark
        .read_stream()
        .format("csv")
        .option("header", true)
        .option("maxFilesPerTrigger", 1)
        .schema(schema.clone())
        .load_path(csv.path())
        .unwrap();
    assert_eq!(from_csv.dtypes()[1], ("n".to_owned(), "bigint".to_owned()));
    let expected: Vec<(String, i64)> = vec![("cat".into(), 2), ("dog".into(), 6), ("owl".into(), -1)];
    assert_eq!(sums(from_csv), expected);
    let from_json = spark
        .read_stream()
        .format("json")
        .option("maxFilesPerTrigger", 1)
        .schema(schema)
        .load_path(json.path())
        .unwrap()
        .filter(col("word").is_not_null())
        .unwrap();
    let expected: Vec<(String, i64)> = vec![("cat".into(), 2), ("dog".into(), 6)];
    assert_eq!(sums(from_json), expected);
    let unnamed = spark.read_stream().format("json").load_path(csv.path());
    assert!(
        matches!(&unnamed, Err(Error::IllegalArgument(m)) if m.starts_with("Schema must be specified when creating a streaming source DataFrame")),
        "{unnamed:?}"
    );
}

/// `spark.streams.addListener`: a listener hears each query start, each micro-batch's progress
/// and the end, with the failure when there is one; a removed one hears nothing more.
#[test]
fn a_listener_hears_start_progress_and_end() {
    #[derive(Clone, Default)]
    struct Heard(Arc<Mutex<Vec<String>>>);
    impl ember_sql::StreamingQueryListener for Heard {
        fn on_query_started(&self, event: &ember_sql::QueryStartedEvent) {
            self.0
                .lock()
                .unwrap()
                .push(format!("started {}", event.name.as_deref().unwrap_or("-")));
        }
        fn on_query_progress(&self, progress: &ember_sql::QueryProgress) {
            self.0
                .lock()
                .unwrap()
                .push(format!("progress {} {}", progress.batch_id, progress.num_input_rows));
        }
        fn on_query_terminated(&self, event: &ember_sql::QueryTerminatedEvent) {
            let why = event
                .exception
                .as_deref()
                .map_or("ok", |e| if e.contains("boom") { "boom" } else { "other" });
            self.0.lock().unwrap().push(format!("terminated {why}"));
        }
    }
    let dir = files(&[&["a", "b"], &["c"]]);
    let (spark, lines) = one_file_a_batch(dir.path());
    let heard = Heard::default();
    let id = spark.add_listener(heard.clone());
    let query = lines
        .write_stream()
        .query_name("heard")
        .format("memory")
        .trigger(Trigger::AvailableNow)
        .start()
        .unwrap();
    query.await_termination().unwrap();
    let stream = || {
        spark
            .read_stream()
            .format("text")
            .option("maxFilesPerTrigger", 1)
            .load_path(dir.path())
            .unwrap()
    };
    let failing = stream()
        .write_stream()
        .trigger(Trigger::AvailableNow)
        .foreach_batch(|_, _| Err("boom".to_owned()))
        .start()
        .unwrap();
    assert!(failing.await_termination().is_err());
    assert_eq!(
        *heard.0.lock().unwrap(),
        [
            "started heard",
            "progress 0 2",
            "progress 1 1",
            "terminated ok",
            "started -",
            "terminated boom"
        ]
    );
    assert!(spark.remove_listener(id));
    stream()
        .write_stream()
        .format("memory")
        .query_name("unheard")
        .trigger(Trigger::AvailableNow)
        .start()
        .unwrap()
        .await_termination()
        .unwrap();
    assert_eq!(heard.0.lock().unwrap().len(), 6);
}

/// `from_json` (a function and in SQL): each string's object as a struct of the schema, its
/// fields read with `get_field` and `s.field`; what does not fit is null.
#[test]
fn from_json_reads_objects_into_structs() {
    let dir = files(&[&[r#"{"word": "dog", "n": 2}"#, "not json", r#"{"n": "x", "word": "cat"}"#]]);
    let (spark, lines) = one_file_a_batch(dir.path());
    let parsed = lines
        .select([ember_sql::functions::from_json(col("value"), "word string, n long").alias("s")])
        .unwrap();
    assert_eq!(parsed.dtypes()[0].1, "struct<word:string,n:bigint>");
    let fields = parsed.select([col("s").get_field("word"), col("s").get_field("n")]).unwrap();
    assert_eq!(fields.columns(), ["s.word", "s.n"]);
    lines.create_or_replace_temp_view("json_lines").unwrap();
    let from_sql = spark
        .sql("SELECT s.word AS word, s.n AS n FROM (SELECT from_json(value, 'word string, n long') AS s FROM json_lines)")
        .unwrap();
    for df in [fields, from_sql] {
        let (seen, sink) = collecting();
        let query = df
            .write_stream()
            .trigger(Trigger::AvailableNow)
            .foreach_batch(sink)
            .start()
            .unwrap();
        assert!(query.await_termination_timeout(Duration::from_secs(30)).unwrap());
        let seen = seen.lock().unwrap();
        let mut rows: Vec<(Option<String>, Option<i64>)> = Vec::new();
        for b in &seen[0].1 {
            let words = b.column(0).as_string::<i32>();
            let n = b.column(1).as_primitive::<Int64Type>();
            rows.extend((0..b.num_rows()).map(|i| {
                (
                    words.is_valid(i).then(|| words.value(i).to_owned()),
                    n.is_valid(i).then(|| n.value(i)),
                )
            }));
        }
        rows.sort();
        assert_eq!(
            rows,
            [(None, None), (Some("cat".to_owned()), None), (Some("dog".to_owned()), Some(2))]
        );
    }
}

/// `format("parquet")`: each batch's rows in a parquet file the `_spark_metadata` log commits,
/// read back with the parquet crate's Arrow reader as any parquet reader would; a batch run
/// again after its log entry writes nothing more.
#[test]
fn the_parquet_sink_commits_each_batch_once() {
    let input = files(&[&["a", "bb"], &["ccc"]]);
    let out = tempfile_dir::Dir::new();
    let checkpoint = tempfile_dir::Dir::new();
    let run = || {
        let (_spark, lines) = one_file_a_batch(input.path());
        let query = lines
            .with_column("n", ember_sql::functions::length(col("value")))
            .unwrap()
            .write_stream()
            .format("parquet")
            .option("path", out.path().to_str().unwrap())
            .option("checkpointLocation", checkpoint.path().to_str().unwrap())
            .trigger(Trigger::AvailableNow)
            .start()
            .unwrap();
        assert!(query.await_termination_timeout(Duration::from_secs(30)).unwrap());
    };
    run();
    run();
    let mut rows: Vec<(String, i32)> = Vec::new();
    let committed = ember_sql::committed_files(out.path()).unwrap();
    assert_eq!(committed.len(), 2, "{committed:?}");
    for path in committed {
        assert_eq!(path.extension().and_then(|e| e.to_str()), Some("parquet"));
        let file = std::fs::File::open(&path).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let values = batch.column(0).as_string::<i32>();
            let n = batch.column(1).as_primitive::<datafusion::arrow::datatypes::Int32Type>();
            rows.extend((0..batch.num_rows()).map(|i| (values.value(i).to_owned(), n.value(i))));
        }
    }
    rows.sort();
    assert_eq!(rows, [("a".to_owned(), 1), ("bb".to_owned(), 2), ("ccc".to_owned(), 3)]);
}

/// A query's `status` and `explain`, and the session's `get_query` and
/// `await_any_termination` (Spark's `spark.streams`).
#[test]
fn status_explain_and_the_sessions_queries() {
    let dir = files(&[&["a"]]);
    let (spark, lines) = one_file_a_batch(dir.path());
    let held = lines
        .write_stream()
        .format("memory")
        .query_name("held_for_status")
        .trigger(Trigger::ProcessingTime(Duration::from_millis(50)))
        .start()
        .unwrap();
    held.process_all_available().unwrap();
    let status = held.status();
    assert!(
        status.message.starts_with("Waiting for") || status.message == "Processing new data",
        "{status:?}"
    );
    assert!(held.explain_string().contains("== Physical Plan =="), "{}", held.explain_string());
    assert_eq!(
        spark.get_query(held.id()).map(|q| q.run_id().to_owned()),
        Some(held.run_id().to_owned())
    );
    assert!(
        !spark.await_any_termination(Some(Duration::from_millis(100))).unwrap(),
        "nothing ended yet"
    );
    let stopper = held.clone();
    let stop = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        stopper.stop().unwrap();
    });
    assert!(spark.await_any_termination(Some(Duration::from_secs(30))).unwrap());
    stop.join().unwrap();
    // Ended queries count until reset_terminated.
    assert!(spark.await_any_termination(Some(Duration::ZERO)).unwrap());
    spark.reset_terminated();
    assert!(!spark.await_any_termination(Some(Duration::from_millis(50))).unwrap());
    assert_eq!(held.status().message, "Stopped");
    assert!(!held.status().is_trigger_active);
    assert!(spark.get_query(held.id()).is_none());
}

/// A running query's `/metrics` page on its `ember.ui.port`; the query is stopped after.
fn metrics_page(query: &ember_sql::StreamingQuery) -> String {
    use std::io::{Read, Write};
    query.process_all_available().unwrap();
    let mut connection = std::net::TcpStream::connect(query.ui_address().expect("a UI address")).unwrap();
    write!(connection, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut page = String::new();
    connection.read_to_string(&mut page).unwrap();
    query.stop().unwrap();
    page
}

/// The writer's `ember.ui.port` serves ember's web UI and `/metrics` for the query's
/// micro-batches.
#[test]
fn the_query_s_micro_batches_reach_metrics_on_its_ui_port() {
    let dir = files(&[&["a", "b"], &["c"]]);
    let (_spark, lines) = one_file_a_batch(dir.path());
    let query = lines
        .write_stream()
        .format("memory")
        .query_name("metered")
        .option("ember.ui.port", 0)
        .trigger(Trigger::ProcessingTime(Duration::from_millis(50)))
        .start()
        .unwrap();
    let page = metrics_page(&query);
    let value = |name: &str| -> f64 {
        page.lines()
            .find(|l| l.starts_with(name) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {page}"))
    };
    assert!(value("ember_input_records_total") >= 2.0, "{page}");
    assert!(value("ember_batches_completed_total") >= 2.0, "{page}");
    // An aggregation's groups are engine-owned state: `/metrics` reports how many it holds.
    let counts = lines.group_by([col("value")]).count().unwrap();
    let query = counts
        .write_stream()
        .output_mode("complete")
        .format("memory")
        .query_name("metered_counts")
        .option("ember.ui.port", 0)
        .trigger(Trigger::ProcessingTime(Duration::from_millis(50)))
        .start()
        .unwrap();
    let page = metrics_page(&query);
    let groups: f64 = page
        .lines()
        .find(|l| l.starts_with("ember_state_keys{stream=\"stateStoreSave#"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no state keys of the aggregation in {page}"));
    assert_eq!(groups, 3.0, "{page}");
    let bad = lines
        .write_stream()
        .format("memory")
        .query_name("x")
        .option("ember.ui.port", "port")
        .start();
    assert!(matches!(&bad, Err(Error::IllegalArgument(m)) if m.contains("ember.ui.port")));
}
