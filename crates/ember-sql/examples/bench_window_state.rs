//! `bench/window_state.sh`'s ember-sql job (issue 28's benchmark): a windowed count over many
//! keys with a watermark, in append mode, fed by the rate source, written to the `noop` sink:
//!
//! ```text
//! rate(rowsPerSecond=R, numPartitions=2)
//!   .withWatermark("timestamp", "10 seconds")
//!   .groupBy(window("timestamp", "10 seconds"), (value % KEYS).alias("key")).count()
//! ```
//!
//! on a 1-second processing-time trigger; with QUERY `join`, instead, a stream-stream inner join of
//! two such rate sources on the value, each with that watermark, within 5 seconds of each other:
//!
//! ```text
//! left.join(right, expr("lkey = rkey AND rtime >= ltime - interval 5 seconds
//!                                    AND rtime <= ltime + interval 5 seconds"))
//! ```
//!
//! One line per micro-batch with input:
//! `BATCH t_ms=T rows=N proc_ms=P state=S watermark=W` (T: since the query started; P: the
//! batch's triggerExecution; S: groups in state after it).
//!
//! Arguments: ROWS_PER_SECOND SECONDS KEYS WORKERS [QUERY: window (default) or join]; a join
//! reads ROWS_PER_SECOND from each of its two sources, and ignores KEYS.

use std::time::{Duration, Instant};

use ember_sql::functions::{col, expr, lit, window};
use ember_sql::{SparkSession, Trigger};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (rate, seconds, keys, workers, query) = match args.as_slice() {
        [rate, seconds, keys, workers] => (rate, seconds, keys, workers, "window"),
        [rate, seconds, keys, workers, query] => (rate, seconds, keys, workers, query.as_str()),
        _ => return Err("arguments: ROWS_PER_SECOND SECONDS KEYS WORKERS [window|join]".into()),
    };
    let (seconds, keys, workers): (u64, i64, usize) = (seconds.parse()?, keys.parse()?, workers.parse()?);
    let spark = SparkSession::builder()
        .app_name("WindowState")
        .master(&format!("local[{workers}]"))
        .get_or_create()?;
    let rate_rows = || {
        spark
            .read_stream()
            .format("rate")
            .option("rowsPerSecond", rate)
            .option("numPartitions", 2)
            .load()
    };
    let counts = match query {
        "window" => rate_rows()?
            .with_watermark("timestamp", "10 seconds")?
            .group_by([
                window(col("timestamp"), "10 seconds", None, None),
                col("value").modulo(lit(keys)).alias("key"),
            ])
            .count()?,
        "join" => {
            let left = rate_rows()?
                .select([col("value").alias("lkey"), col("timestamp").alias("ltime")])?
                .with_watermark("ltime", "10 seconds")?;
            let right = rate_rows()?
                .select([col("value").alias("rkey"), col("timestamp").alias("rtime")])?
                .with_watermark("rtime", "10 seconds")?;
            let within = "lkey = rkey AND rtime >= ltime - interval 5 seconds AND rtime <= ltime + interval 5 seconds";
            left.join_on(&right, expr(within), "inner")?
        }
        other => return Err(format!("QUERY is window or join, not {other}").into()),
    };
    let query = counts
        .write_stream()
        .output_mode("append")
        .format("noop")
        .trigger(Trigger::ProcessingTime(Duration::from_secs(1)))
        .start()?;
    let started = Instant::now();
    let mut next_batch = 0i64;
    while started.elapsed() < Duration::from_secs(seconds) {
        if query.await_termination_timeout(Duration::from_millis(200))? {
            break;
        }
        let unseen = next_batch;
        for report in query.recent_progress().into_iter().filter(|r| r.batch_id >= unseen) {
            let json: serde_json::Value = serde_json::from_str(&report.json())?;
            println!(
                "BATCH t_ms={} rows={} proc_ms={} state={} watermark={}",
                started.elapsed().as_millis(),
                report.num_input_rows,
                report.trigger_execution_ms,
                report.state_rows.unwrap_or(0),
                json["eventTime"]["watermark"].as_str().unwrap_or("-")
            );
            next_batch = report.batch_id + 1;
        }
    }
    query.stop()?;
    Ok(())
}
