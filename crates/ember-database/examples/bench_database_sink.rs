//! Rows per second into each database: `save_to_database` with multi-row statements against one
//! statement per row (the seed's `foreachPartition` way, kept as `row_by_row`), both one
//! transaction per batch.
//!
//! `cargo run --release -p ember-database --example bench_database_sink -- [ROWS_PER_BATCH] [BATCHES] [URL...]`
//!
//! Defaults: 20 000 rows per batch, 5 batches, SQLite in a temporary file, the local PostgreSQL
//! and MariaDB (`EMBER_TEST_POSTGRES_URL`, `EMBER_TEST_MYSQL_URL`).

use std::time::Instant;

use ember::prelude::*;
use ember_database::{Database, DatabaseSink, SaveToDatabase};

fn run(url: &str, rows: usize, batches: u64, row_by_row: bool) -> Result<f64, Box<dyn std::error::Error>> {
    let db = Database::open(url)?;
    db.execute("DROP TABLE IF EXISTS bench_rows", &[])?;
    db.execute(
        "CREATE TABLE bench_rows (word VARCHAR(40) NOT NULL, n BIGINT NOT NULL, batch BIGINT NOT NULL)",
        &[],
    )?;
    db.forget_batches("bench_rows")?;
    let input: Vec<Option<Vec<(String, i64, i64)>>> = (0..batches as i64)
        .map(|b| Some((0..rows as i64).map(|i| (format!("word{}", i % 5000), i, b)).collect()))
        .collect();
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1)).workers(2).manual_clock(&clock).build()?;
    let mut sink = DatabaseSink::new(url, "bench_rows").columns(["word", "n", "batch"]);
    if row_by_row {
        sink = sink.row_by_row();
    }
    ssc.replay_stream(input, 2).save_to_database(sink)?;
    ssc.start()?;
    let started = Instant::now();
    clock.advance(seconds(batches));
    if !ssc.await_batch(Time::from_millis(batches * 1000), seconds(3600))? {
        return Err("the batches did not complete".into());
    }
    let elapsed = started.elapsed().as_secs_f64();
    ssc.stop(false)?;
    if let Some(failure) = ssc.failures().first() {
        return Err(failure.to_string().into());
    }
    let written = db.query("SELECT COUNT(*) FROM bench_rows", &[])?;
    let want = ember_database::SqlValue::Int(rows as i64 * batches as i64);
    if written.first().and_then(|r| r.first()) != Some(&want) {
        return Err(format!("{url}: wrote {written:?} rows, not {want}").into());
    }
    Ok((rows as u64 * batches) as f64 / elapsed)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rows: usize = args.first().map_or(Ok(20_000), |a| a.parse())?;
    let batches: u64 = args.get(1).map_or(Ok(5), |a| a.parse())?;
    let dir = std::env::temp_dir().join(format!("ember-bench-sink-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let urls: Vec<String> = if args.len() > 2 {
        args[2..].to_vec()
    } else {
        vec![
            format!("sqlite://{}", dir.join("bench.db").display()),
            std::env::var("EMBER_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
            std::env::var("EMBER_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into()),
        ]
    };
    println!("{rows} rows per batch, {batches} batches, 2 workers");
    println!("{:<12} {:>16} {:>16} {:>8}", "database", "batched rows/s", "row-by-row", "ratio");
    for url in &urls {
        let batched = run(url, rows, batches, false)?;
        let single = run(url, rows, batches, true)?;
        let name = url.split(':').next().unwrap_or(url);
        println!("{name:<12} {batched:>16.0} {single:>16.0} {:>7.1}x", batched / single);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
