//! SIGKILL at random moments while a job writes every batch into a database with
//! `save_to_database`: restarted with `get_or_create` each time, it replays the batches after
//! its last checkpoint, and in the end every input row is in the table exactly once (SQLite and
//! PostgreSQL). Without the batch records a replayed batch would be written twice.
//!
//! The job runs in a child process: this test binary run again with `EMBER_SQL_CRASH_CHILD`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration as StdDuration, Instant};

use ember::prelude::*;
use ember::testing::TempDir;
use ember_database::{Database, DatabaseSink, SaveToDatabase, SqlValue};

const BATCHES: u64 = 150;
const INTERVAL_MS: u64 = 10;
const ROWS_PER_BATCH: u64 = 7;

/// Batch `b`'s rows: `(b, i, word)`.
fn input() -> Vec<Option<Vec<(i64, i64, String)>>> {
    (0..BATCHES as i64)
        .map(|b| {
            Some(
                (0..ROWS_PER_BATCH as i64)
                    .map(|i| (b, i, format!("w{}", (b * 7 + i * 13) % 50)))
                    .collect(),
            )
        })
        .collect()
}

/// The child: the job from the checkpoint in `dir` (or fresh), to the end.
#[test]
fn sql_crash_child() {
    let Ok(spec) = std::env::var("EMBER_SQL_CRASH_CHILD") else { return };
    let (dir, rest) = spec.split_once(';').unwrap();
    let (url, table) = rest.split_once(';').unwrap();
    let resumed = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".manifest")))
        .unwrap_or(false);
    println!("{}", if resumed { "EMBER-RESUMED" } else { "EMBER-FRESH" });
    if !resumed {
        // A fresh start begins a new batch grid: what runs before it wrote is void.
        let db = Database::open(url).unwrap();
        db.execute(&format!("DELETE FROM {table}"), &[]).unwrap();
        db.forget_batches(table).unwrap();
    }
    let ssc = StreamingContext::get_or_create(dir, || {
        let ssc = StreamingContext::builder(milliseconds(INTERVAL_MS)).workers(2).no_wait().build()?;
        let rows = ssc.replay_stream(input(), 2);
        // State, checkpointed every 5 batches: a recovery replays up to 4 batches that were
        // written already.
        rows.map(|(_, _, w)| (w, 1u64))
            .update_state_by_key(|vs: Vec<u64>, s: Option<u64>| Some(vs.iter().sum::<u64>() + s.unwrap_or(0)))
            .checkpoint(milliseconds(5 * INTERVAL_MS))?
            .foreach_rdd(|_, _| {})?;
        rows.save_to_database(DatabaseSink::new(url, table).columns(["batch", "seq", "word"]))
            .map_err(|e| ember::Error::IllegalState(e.to_string()))?;
        Ok(ssc)
    })
    .unwrap();
    ssc.start().unwrap();
    let last = Time::from_millis(BATCHES * INTERVAL_MS);
    let deadline = Instant::now() + StdDuration::from_secs(120);
    while !ssc.await_batch(last, milliseconds(10)).unwrap() {
        assert!(Instant::now() < deadline, "the job did not finish within 2 minutes");
    }
    ssc.stop(false).unwrap();
    let failures = ssc.failures();
    assert!(failures.is_empty(), "{failures:?}");
}

fn spawn(dir: &Path, url: &str, table: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "sql_crash_child", "--nocapture", "--test-threads=1"])
        .env("EMBER_SQL_CRASH_CHILD", format!("{};{url};{table}", dir.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn run_to_end(dir: &Path, url: &str, table: &str) -> String {
    let output = spawn(dir, url, table).wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the job failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn killed_at_random_moments(url: &str, table: &str) {
    let db = Database::open(url).unwrap();
    db.execute(&format!("DROP TABLE IF EXISTS {table}"), &[]).unwrap();
    db.execute(
        &format!("CREATE TABLE {table} (batch BIGINT NOT NULL, seq BIGINT NOT NULL, word VARCHAR(20) NOT NULL)"),
        &[],
    )
    .unwrap();
    // How long a run without faults takes, to kill within it.
    let clean = TempDir::new("sql-crash-clean").unwrap();
    let started = Instant::now();
    run_to_end(clean.path(), url, table);
    let duration = started.elapsed().as_millis().max(50) as u64;
    assert_eq!(rows(&db, table), expected(), "the run without faults");

    let dir = TempDir::new("sql-crash").unwrap();
    let mut rng = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("seed {rng}");
    let mut resumed = 0;
    for _ in 0..10 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut child = spawn(dir.path(), url, table);
        std::thread::sleep(StdDuration::from_millis(rng % duration));
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        if String::from_utf8_lossy(&output.stdout).contains("EMBER-RESUMED") {
            resumed += 1;
        }
    }
    let last = run_to_end(dir.path(), url, table);
    assert!(resumed > 0 || last.contains("EMBER-RESUMED"), "no run resumed from a checkpoint");
    assert_eq!(rows(&db, table), expected(), "after 10 kills ({resumed} runs resumed)");
}

/// The table's rows, sorted.
fn rows(db: &Database, table: &str) -> Vec<(i64, i64, String)> {
    db.query(&format!("SELECT batch, seq, word FROM {table} ORDER BY batch, seq"), &[])
        .unwrap()
        .into_iter()
        .map(|row| match row.as_slice() {
            [SqlValue::Int(b), SqlValue::Int(s), SqlValue::Text(w)] => (*b, *s, w.clone()),
            other => panic!("unexpected row {other:?}"),
        })
        .collect()
}

fn expected() -> Vec<(i64, i64, String)> {
    input().into_iter().flatten().flatten().collect()
}

#[test]
fn sqlite_sink_after_kill_nine_holds_every_row_once() {
    let dir = TempDir::new("sql-crash-db").unwrap();
    let url = format!("sqlite://{}", dir.path().join("crash.db").display());
    killed_at_random_moments(&url, "crash_rows");
}

#[test]
fn postgres_sink_after_kill_nine_holds_every_row_once() {
    let url = std::env::var("EMBER_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    killed_at_random_moments(&url, &format!("crash_rows_{}", std::process::id()));
}
