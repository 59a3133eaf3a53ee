//! `kill -9` at random moments of a query with `checkpointLocation`: the file source
//! (`maxFilesPerTrigger` 1) into the file sink (`json`), and into the database sink (`jdbc`:
//! SQLite, and PostgreSQL at `EMBER_TEST_POSTGRES_URL`, by default the local server). The
//! killed query is started again on the same checkpoint each time, and finally run to the end
//! (`availableNow`); the files its `_spark_metadata` log lists, or the table, must then hold
//! every input line exactly once (and the directory no file the log does not list). The file
//! case runs again with the input, the checkpoint and the output on moto's S3 server
//! (`s3://`, see `ember::storage`).
//!
//! The child (this test binary again, running `checkpoint_crash_child` with
//! `EMBER_SQL_CRASH_CHILD` set) runs the query; `EMBER_SQL_CRASH_SEED` repeats a run's kill
//! times and `EMBER_SQL_CRASH_KILLS` sets how many kills (default 10). The stateful queries'
//! runs each take 1 to 3 workers (`EMBER_SQL_CRASH_WORKERS`), so that their state, kept per key
//! group by the engine, is restored on another number of workers than wrote it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use ember_sql::{SparkSession, Trigger};

mod common;

const FILES: usize = 40;
const LINES_PER_FILE: usize = 25;

/// The child's side: the query, from the checkpoint when there is one, until killed (`run`) or
/// until every file is read (`finish`).
#[test]
fn checkpoint_crash_child() {
    let Ok(spec) = std::env::var("EMBER_SQL_CRASH_CHILD") else { return };
    let parts: Vec<&str> = spec.split(';').collect();
    let [input, checkpoint, output, how, table] = parts.as_slice() else {
        panic!("EMBER_SQL_CRASH_CHILD is input;checkpoint;output;run|finish;table, got {spec}")
    };
    let workers = std::env::var("EMBER_SQL_CRASH_WORKERS").unwrap_or_else(|_| "2".to_owned());
    let spark = SparkSession::builder()
        .app_name("crash")
        .master(&format!("local[{workers}]"))
        .get_or_create()
        .unwrap();
    let lines = spark
        .read_stream()
        .format("text")
        .option("maxFilesPerTrigger", 1)
        .load_path(input)
        .unwrap();
    // The windowed query's batches come slower, so that the killed runs leave files for the
    // last one (which then starts from their watermark).
    let trigger = match (*how, *table) {
        ("finish", _) => Trigger::AvailableNow,
        (_, "windowed") => Trigger::ProcessingTime(Duration::from_millis(150)),
        _ => Trigger::ProcessingTime(Duration::from_millis(20)),
    };
    // `table` empty: the json file sink in the directory `output`; else the database sink
    // into that table of the database at the URL `output`.
    let writer = lines
        .select_expr(&["value", "length(value) AS len"])
        .unwrap()
        .write_stream()
        .option("checkpointLocation", checkpoint)
        .trigger(trigger);
    let writer = if table.is_empty() {
        writer.format("json").option("path", output)
    } else {
        writer.format("jdbc").option("url", output).option("dbtable", table)
    };
    let query = match *table {
        "aggregation" => aggregation_query(lines, checkpoint, output, trigger),
        "windowed" => windowed_query(lines, checkpoint, output, trigger),
        _ => writer.start().unwrap(),
    };
    assert!(
        query.await_termination_timeout(Duration::from_secs(120)).unwrap(),
        "the query did not end"
    );
    if *table == "windowed" && *how == "finish" {
        // The watermark each micro-batch of the last run ran with.
        let watermarks: Vec<serde_json::Value> = query
            .recent_progress()
            .iter()
            .map(|p| serde_json::from_str::<serde_json::Value>(&p.json()).unwrap()["eventTime"]["watermark"].clone())
            .collect();
        std::fs::write(format!("{output}.watermarks"), serde_json::to_string(&watermarks).unwrap()).unwrap();
    }
}

/// Rows counted per 1-minute window of their event time (`timestamp,value` lines) with a
/// 30-second watermark, in append mode into the json file sink at `output`: each window is
/// written once the watermark passes its end.
fn windowed_query(lines: ember_sql::DataFrame, checkpoint: &str, output: &str, trigger: Trigger) -> ember_sql::StreamingQuery {
    use ember_sql::functions::{col, split, to_timestamp, window};
    lines
        .select([to_timestamp(split(col("value"), ",").get_item(0)).alias("timestamp")])
        .unwrap()
        .with_watermark("timestamp", "30 seconds")
        .unwrap()
        .group_by([window(col("timestamp"), "1 minute", None, None)])
        .count()
        .unwrap()
        .write_stream()
        .output_mode("append")
        .format("json")
        .option("path", output)
        .option("checkpointLocation", checkpoint)
        .trigger(trigger)
        .start()
        .unwrap()
}

/// Rows per input file, in complete mode, each batch's whole result written by `foreachBatch`
/// to `output/batch-<id>.txt` (`file,count` lines; a batch run again writes its file again).
fn aggregation_query(lines: ember_sql::DataFrame, checkpoint: &str, output: &str, trigger: Trigger) -> ember_sql::StreamingQuery {
    std::fs::create_dir_all(output).unwrap();
    let output = PathBuf::from(output);
    lines
        .select_expr(&["substr(value, 1, 3) AS file"])
        .unwrap()
        .group_by([ember_sql::functions::col("file")])
        .count()
        .unwrap()
        .write_stream()
        .output_mode("complete")
        .option("checkpointLocation", checkpoint)
        .trigger(trigger)
        .foreach_batch(move |batches, batch_id| {
            let mut text = String::new();
            for batch in batches {
                for row in 0..batch.num_rows() {
                    let file = ember_sql::show::cell(batch.column(0).as_ref(), row);
                    let count = ember_sql::show::cell(batch.column(1).as_ref(), row);
                    text.push_str(&format!("{file},{count}\n"));
                }
            }
            let temp = output.join(format!(".batch-{batch_id}.tmp"));
            std::fs::write(&temp, text).map_err(|e| e.to_string())?;
            std::fs::rename(&temp, output.join(format!("batch-{batch_id}.txt"))).map_err(|e| e.to_string())
        })
        .start()
        .unwrap()
}

fn spawn(input: &str, checkpoint: &str, output: &str, how: &str, table: &str, workers: u64) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .env("EMBER_SQL_CRASH_WORKERS", workers.to_string())
        .args(["--exact", "checkpoint_crash_child", "--nocapture", "--test-threads=1"])
        .env("EMBER_SQL_CRASH_CHILD", format!("{input};{checkpoint};{output};{how};{table}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The input files: `fNN-lLL` lines; for the windowed query, file NN's lines are at
/// 12:NN:LL (event time) before a comma.
fn input_files(table: &str) -> Vec<Vec<String>> {
    let line = |f: usize, l: usize| {
        if table == "windowed" {
            format!("2017-04-23 12:{f:02}:{l:02},f{f:02}-l{l:02}")
        } else {
            format!("f{f:02}-l{l:02}")
        }
    };
    (0..FILES).map(|f| (0..LINES_PER_FILE).map(|l| line(f, l)).collect()).collect()
}

fn input_dir(root: &Path, table: &str) -> (PathBuf, Vec<String>) {
    let files = input_files(table);
    let dir = root.join("input");
    common::batch_files(&dir, &files);
    (dir, files.concat())
}

/// A small xorshift generator: the kill times of a run follow from its seed.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn seed_and_kills() -> (u64, usize) {
    let seed = std::env::var("EMBER_SQL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
    let kills: usize = std::env::var("EMBER_SQL_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    println!("ember-sql crash test seed: {seed} (set EMBER_SQL_CRASH_SEED to repeat)");
    (seed, kills)
}

/// Kills the query `kills` times at random moments, then runs it to the end; returns the root
/// directory (input, checkpoint, and the file sink's output when `table` is empty).
fn kill_and_finish(name: &str, seed: u64, kills: usize, output: Option<&str>, table: &str) -> (PathBuf, Vec<String>) {
    let mut random = Random(seed);
    let root = common::temp_dir(&format!("crash-{name}"));
    let _ = std::fs::remove_dir_all(&root);
    let (input, expected) = input_dir(&root, table);
    let checkpoint = root.join("checkpoint");
    let output = output.map_or_else(|| root.join("output").display().to_string(), str::to_owned);
    let (input_url, checkpoint_url) = (input.display().to_string(), checkpoint.display().to_string());
    kill(&input_url, &checkpoint_url, &output, table, kills, &mut random);
    if table == "windowed" {
        // The watermark the killed runs left in the commit log, for the last run to start from.
        let last_commit = std::fs::read_dir(checkpoint.join("commits"))
            .map(|entries| entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i64>().ok()).max())
            .unwrap_or(None);
        let watermark = last_commit.map_or(0, |id| {
            let text = std::fs::read_to_string(checkpoint.join("commits").join(id.to_string())).unwrap();
            serde_json::from_str::<serde_json::Value>(&text).unwrap()["nextBatchWatermarkMs"]
                .as_i64()
                .unwrap()
        });
        std::fs::write(root.join("watermark-before-finish"), watermark.to_string()).unwrap();
    }
    finish(&input_url, &checkpoint_url, &output, table, seed, &mut random);
    (root, expected)
}

/// The number of workers a run of `table`'s query takes: 1 to 3 for a stateful one.
fn workers(table: &str, random: &mut Random) -> u64 {
    if matches!(table, "aggregation" | "windowed") {
        1 + random.below(3)
    } else {
        2
    }
}

/// Starts the query `kills` times and kills each run at a random moment.
fn kill(input: &str, checkpoint: &str, output: &str, table: &str, kills: usize, random: &mut Random) {
    for _ in 0..kills {
        let mut child = spawn(input, checkpoint, output, "run", table, workers(table, random));
        std::thread::sleep(Duration::from_millis(50 + random.below(600)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
}

/// Runs the query to the end (`availableNow`).
fn finish(input: &str, checkpoint: &str, output: &str, table: &str, seed: u64, random: &mut Random) {
    let child = spawn(input, checkpoint, output, "finish", table, workers(table, random));
    let started = Instant::now();
    let finished = child.wait_with_output().unwrap();
    assert!(
        finished.status.success(),
        "the last run failed after {:?} (seed {seed}): {}",
        started.elapsed(),
        String::from_utf8_lossy(&finished.stderr)
    );
}

/// Every expected value seen exactly once, with its length right.
fn assert_each_once(rows: &[(String, i64)], expected: &[String], what: &str, seed: u64) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (value, len) in rows {
        assert_eq!(*len, value.chars().count() as i64, "{value}");
        *seen.entry(value).or_default() += 1;
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "{what}: rows written more than once (seed {seed}): {repeated:?}"
    );
    let missing: Vec<_> = expected.iter().filter(|w| !seen.contains_key(w.as_str())).collect();
    assert!(missing.is_empty(), "{what}: rows lost (seed {seed}): {missing:?}");
    assert_eq!(seen.len(), expected.len(), "{what}: rows that were not in the input (seed {seed})");
}

#[test]
fn file_source_into_file_sink_exactly_once_across_kill_9() {
    if std::env::var("EMBER_SQL_CRASH_CHILD").is_ok() {
        return;
    }
    let (seed, kills) = seed_and_kills();
    let (root, expected) = kill_and_finish("file", seed, kills, None, "");
    let output = root.join("output");
    let files = ember_sql::committed_files(&output).unwrap();
    let mut rows = Vec::new();
    for file in &files {
        for line in std::fs::read_to_string(file).unwrap().lines() {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            rows.push((row["value"].as_str().unwrap().to_owned(), row["len"].as_i64().unwrap()));
        }
    }
    assert_each_once(&rows, &expected, &format!("file sink after {kills} kills"), seed);

    // Nothing outside the log: a batch run again rewrites the same file names.
    let mut listed: Vec<PathBuf> = std::fs::read_dir(&output)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("part-"))
        .map(|e| std::fs::canonicalize(e.path()).unwrap())
        .collect();
    listed.sort();
    let mut committed: Vec<PathBuf> = files.iter().map(|f| std::fs::canonicalize(f).unwrap()).collect();
    committed.sort();
    assert_eq!(listed, committed, "files the sink's log does not list (seed {seed})");
    // The log's batch ids go 0, 1, 2, ... with no gap.
    let mut ids: Vec<i64> = std::fs::read_dir(output.join("_spark_metadata"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..ids.len() as i64).collect::<Vec<_>>());
    println!(
        "ember-sql crash test (file sink): {kills} kills, {} rows in {} committed files, each once",
        expected.len(),
        files.len()
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn file_source_into_file_sink_on_s3_exactly_once_across_kill_9() {
    use ember::storage::Location;
    if std::env::var("EMBER_SQL_CRASH_CHILD").is_ok() {
        return;
    }
    let (seed, kills) = seed_and_kills();
    // Object storage's acceptance asks for at least 20 kills per case.
    let kills = kills.max(20);
    let mut random = Random(seed);
    let [input, checkpoint, output] = ["input", "checkpoint", "output"].map(|d| ember::testing::s3_test_dir(&format!("sql-crash-{d}")));
    let files = input_files("");
    let at = Location::parse(&input).unwrap();
    for (i, lines) in files.iter().enumerate() {
        at.put(&format!("batch-{i:03}.txt"), (lines.join("\n") + "\n").into_bytes())
            .unwrap();
    }
    kill(&input, &checkpoint, &output, "", kills, &mut random);
    finish(&input, &checkpoint, &output, "", seed, &mut random);

    let out = Location::parse(&output).unwrap();
    let committed = ember_sql::committed_files(&output).unwrap();
    let mut rows = Vec::new();
    let mut names = Vec::new();
    for file in &committed {
        let name = file.to_string_lossy().rsplit('/').next().unwrap().to_owned();
        let text = String::from_utf8(out.get(&name).unwrap().expect("a committed file is missing")).unwrap();
        for line in text.lines() {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            rows.push((row["value"].as_str().unwrap().to_owned(), row["len"].as_i64().unwrap()));
        }
        assert_eq!(file.to_string_lossy(), out.show(&name), "the log names the object by its URL");
        names.push(name);
    }
    assert_each_once(&rows, &files.concat(), &format!("file sink on s3 after {kills} kills"), seed);
    // Nothing outside the log: a batch run again rewrites the same object names.
    let mut listed: Vec<String> = out
        .list()
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .filter(|n| n.starts_with("part-"))
        .collect();
    listed.sort();
    names.sort();
    assert_eq!(listed, names, "objects the sink's log does not list (seed {seed})");
    println!(
        "ember-sql crash test (file sink on s3): {kills} kills, {} rows in {} committed objects, each once",
        rows.len(),
        committed.len()
    );
}

/// The database sink into a fresh table of `url`: every row once after the kills.
fn database_sink_across_kill_9(url_of: impl FnOnce(&Path) -> String, name: &str) {
    let (seed, kills) = seed_and_kills();
    let scratch = common::temp_dir(&format!("crash-db-{name}"));
    std::fs::create_dir_all(&scratch).unwrap();
    let url = url_of(&scratch);
    let table = format!("sql_crash_{}_{}", name, std::process::id());
    let db = ember_database::Database::open(&url).unwrap();
    db.execute(&format!("DROP TABLE IF EXISTS {table}"), &[]).unwrap();
    db.execute(&format!("CREATE TABLE {table} (value VARCHAR(20), len BIGINT)"), &[])
        .unwrap();
    let (root, expected) = kill_and_finish(name, seed, kills, Some(&url), &table);
    let rows: Vec<(String, i64)> = db
        .query(&format!("SELECT value, len FROM {table}"), &[])
        .unwrap()
        .into_iter()
        .map(|row| match row.as_slice() {
            [ember_database::SqlValue::Text(v), ember_database::SqlValue::Int(n)] => (v.clone(), *n),
            other => panic!("unexpected row {other:?}"),
        })
        .collect();
    assert_each_once(&rows, &expected, &format!("database sink ({name}) after {kills} kills"), seed);
    println!(
        "ember-sql crash test (database sink, {name}): {kills} kills, {} rows, each once",
        expected.len()
    );
    db.execute(&format!("DROP TABLE {table}"), &[]).unwrap();
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn file_source_into_sqlite_exactly_once_across_kill_9() {
    if std::env::var("EMBER_SQL_CRASH_CHILD").is_ok() {
        return;
    }
    database_sink_across_kill_9(|dir| format!("sqlite://{}", dir.join("out.db").display()), "sqlite");
}

#[test]
fn file_source_into_postgres_exactly_once_across_kill_9() {
    if std::env::var("EMBER_SQL_CRASH_CHILD").is_ok() {
        return;
    }
    // PostgreSQL runs on the project's machines (`.ci/run` starts it and sets the URL).
    let url = std::env::var("EMBER_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    database_sink_across_kill_9(|_| url, "postgres");
}

#[test]
fn aggregation_state_survives_kill_9() {
    if std::env::var("EMBER_SQL_CRASH_CHILD").is_ok() {
        return;
    }
    let (seed, kills) = seed_and_kills();
    let (root, _) = kill_and_finish("aggregation", seed, kills, None, "aggregation");
    let output = root.join("output");
    let mut ids: Vec<i64> = std::fs::read_dir(&output)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_str()?.to_owned();
            name.strip_prefix("batch-")?.strip_suffix(".txt")?.parse().ok()
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..ids.len() as i64).collect::<Vec<_>>(), "batch ids with gaps (seed {seed})");
    // The last batch's table: every file's 25 rows counted once, across every restart.
    let last = std::fs::read_to_string(output.join(format!("batch-{}.txt", ids.last().unwrap()))).unwrap();
    let mut counts: Vec<(String, u64)> = last
        .lines()
        .map(|l| {
            let (file, count) = l.split_once(',').unwrap();
            (file.to_owned(), count.parse().unwrap())
        })
        .collect();
    counts.sort();
    let want: Vec<(String, u64)> = (0..FILES).map(|f| (format!("f{f:02}"), LINES_PER_FILE as u64)).collect();
    assert_eq!(counts, want, "the aggregation after {kills} kills (seed {seed})");
    println!(
        "ember-sql crash test (aggregation state): {kills} kills, {} batches, every count right",
        ids.len()
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn windowed_append_into_file_sink_exactly_once_across_kill_9() {
    if std::env::var("EMBER_SQL_CRASH_CHILD").is_ok() {
        return;
    }
    let (seed, kills) = seed_and_kills();
    let (root, _) = kill_and_finish("windowed", seed, kills, None, "windowed");
    let output = root.join("output");
    let mut windows: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for file in ember_sql::committed_files(&output).unwrap() {
        for line in std::fs::read_to_string(file).unwrap().lines() {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            let start = row["window"]["start"].as_str().unwrap().to_owned();
            windows.entry(start).or_default().push(row["count"].as_i64().unwrap());
        }
    }
    // The last run ends at watermark 12:39:24 - 30 s: the windows up to 12:37-12:38 are out,
    // each once with all its rows; 12:38 and 12:39 are still open.
    let want: BTreeMap<String, Vec<i64>> = (0..FILES - 2)
        .map(|f| (format!("2017-04-23T12:{f:02}:00.000Z"), vec![LINES_PER_FILE as i64]))
        .collect();
    assert_eq!(windows, want, "windows written after {kills} kills (seed {seed})");
    // The last run started from the watermark the killed runs committed, and never went back.
    let before: i64 = std::fs::read_to_string(root.join("watermark-before-finish"))
        .unwrap()
        .parse()
        .unwrap();
    let text = std::fs::read_to_string(root.join("output.watermarks")).unwrap();
    let watermarks: Vec<String> = serde_json::from_str(&text).unwrap();
    if let Some(first) = watermarks.first() {
        assert_eq!(first, &progress_time(before), "the last run's first watermark (seed {seed})");
    }
    assert!(
        watermarks.windows(2).all(|w| w[0] <= w[1]),
        "the watermark went back: {watermarks:?}"
    );
    println!(
        "ember-sql crash test (windowed append): {kills} kills, {} windows each once, the last run from watermark {before} ms ({} batches)",
        windows.len(),
        watermarks.len()
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// A watermark as progress reports show it, for the epoch or a time of 2017-04-23 12:xx (UTC).
fn progress_time(ms: i64) -> String {
    const NOON: i64 = 1_492_948_800_000; // 2017-04-23T12:00:00Z
    if ms == 0 {
        return "1970-01-01T00:00:00.000Z".to_owned();
    }
    let since = ms - NOON;
    assert!((0..3_600_000).contains(&since), "a watermark outside the test's hour: {ms}");
    format!("2017-04-23T12:{:02}:{:02}.{:03}Z", since / 60_000, since / 1000 % 60, since % 1000)
}
