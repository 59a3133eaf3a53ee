//! `kill -9` at random moments of a query with `checkpointLocation`: the file source
//! (`maxFilesPerTrigger` 1) into the file sink (`json`). The killed query is started again on the
//! same checkpoint each time, and finally run to the end (`availableNow`); the files its
//! `_spark_metadata` log lists must then hold every input line exactly once, and the directory
//! no file the log does not list.
//!
//! The child (this test binary again, running `checkpoint_crash_child` with
//! `EMBER_SQL_CRASH_CHILD` set) runs the query; `EMBER_SQL_CRASH_SEED` repeats a run's kill
//! times and `EMBER_SQL_CRASH_KILLS` sets how many kills (default 10).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use ember_sql::{SparkSession, Trigger};

const FILES: usize = 40;
const LINES_PER_FILE: usize = 25;

/// The child's side: the query, from the checkpoint when there is one, until killed (`run`) or
/// until every file is read (`finish`).
#[test]
fn checkpoint_crash_child() {
    let Ok(spec) = std::env::var("EMBER_SQL_CRASH_CHILD") else { return };
    let parts: Vec<&str> = spec.split(';').collect();
    let [input, checkpoint, output, how] = parts.as_slice() else {
        panic!("EMBER_SQL_CRASH_CHILD is input;checkpoint;output;run|finish, got {spec}")
    };
    let spark = SparkSession::builder()
        .app_name("crash")
        .master("local[2]")
        .get_or_create()
        .unwrap();
    let lines = spark
        .read_stream()
        .format("text")
        .option("maxFilesPerTrigger", 1)
        .load_path(input)
        .unwrap();
    let trigger = if *how == "finish" {
        Trigger::AvailableNow
    } else {
        Trigger::ProcessingTime(Duration::from_millis(20))
    };
    let query = lines
        .select_expr(&["value", "length(value) AS len"])
        .unwrap()
        .write_stream()
        .format("json")
        .option("path", output)
        .option("checkpointLocation", checkpoint)
        .trigger(trigger)
        .start()
        .unwrap();
    assert!(
        query.await_termination_timeout(Duration::from_secs(120)).unwrap(),
        "the query did not end"
    );
}

fn spawn(input: &Path, checkpoint: &Path, output: &Path, how: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "checkpoint_crash_child", "--nocapture", "--test-threads=1"])
        .env(
            "EMBER_SQL_CRASH_CHILD",
            format!("{};{};{};{how}", input.display(), checkpoint.display(), output.display()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn input_dir(root: &Path) -> (PathBuf, Vec<String>) {
    let dir = root.join("input");
    std::fs::create_dir_all(&dir).unwrap();
    let start = SystemTime::now() - Duration::from_secs(1000);
    let mut all = Vec::new();
    for f in 0..FILES {
        let lines: Vec<String> = (0..LINES_PER_FILE).map(|l| format!("f{f:02}-l{l:02}")).collect();
        let path = dir.join(format!("part-{f:03}.txt"));
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(start + Duration::from_secs(f as u64))
            .unwrap();
        all.extend(lines);
    }
    (dir, all)
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

#[test]
fn file_source_into_file_sink_exactly_once_across_kill_9() {
    if std::env::var("EMBER_SQL_CRASH_CHILD").is_ok() {
        return;
    }
    let seed = std::env::var("EMBER_SQL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
    let kills: usize = std::env::var("EMBER_SQL_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    println!("ember-sql crash test seed: {seed} (set EMBER_SQL_CRASH_SEED to repeat)");
    let mut random = Random(seed);
    let root = std::env::temp_dir().join(format!("ember-sql-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (input, expected) = input_dir(&root);
    let (checkpoint, output) = (root.join("checkpoint"), root.join("output"));

    for _ in 0..kills {
        let mut child = spawn(&input, &checkpoint, &output, "run");
        std::thread::sleep(Duration::from_millis(50 + random.below(600)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let child = spawn(&input, &checkpoint, &output, "finish");
    let started = Instant::now();
    let finished = child.wait_with_output().unwrap();
    assert!(
        finished.status.success(),
        "the last run failed after {:?} (seed {seed}): {}",
        started.elapsed(),
        String::from_utf8_lossy(&finished.stderr)
    );

    let files = ember_sql::committed_files(&output).unwrap();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for file in &files {
        for line in std::fs::read_to_string(file).unwrap().lines() {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            let value = row["value"].as_str().unwrap().to_owned();
            assert_eq!(row["len"].as_i64(), Some(value.chars().count() as i64), "{line}");
            *seen.entry(value).or_default() += 1;
        }
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "rows written more than once after {kills} kills (seed {seed}): {repeated:?}"
    );
    let mut want = expected.clone();
    want.sort();
    let got: Vec<String> = seen.into_keys().collect();
    let missing: Vec<_> = want.iter().filter(|w| got.binary_search(w).is_err()).collect();
    assert!(missing.is_empty(), "rows lost after {kills} kills (seed {seed}): {missing:?}");
    assert_eq!(got, want);

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
        "ember-sql crash test: {kills} kills, {} rows in {} committed files, each once",
        want.len(),
        files.len()
    );
    let _ = std::fs::remove_dir_all(&root);
}
