//! `bench/compare.sh`'s Structured Streaming job: seed 002's word count (lines from a socket, or
//! with `--files DIR` the text file source over a directory new files are moved into;
//! `explode(split(value, " "))`, `groupBy("word").count()`, complete mode, the console sink),
//! on a processing-time trigger, printing one line per micro-batch for `bench/verdict.py`:
//!
//! ```text
//! BATCH time_ms=T keys=K words=W proc_ms=P sched_ms=0 total_ms=D
//! ```
//!
//! `words` is the micro-batch's input lines times WORDS_PER_LINE (the generator's lines have a
//! fixed number of words), `keys` the groups in the state, `proc_ms` and `total_ms` the time
//! from the micro-batch's time to the sink's commit (Spark's `durationMs.triggerExecution`).
//!
//! Arguments: (HOST PORT | --files DIR) BATCHES INTERVAL_MS WORKERS [WORDS_PER_LINE, 10]. It stops after
//! BATCHES micro-batches with input.

use std::time::Duration;

use ember_sql::functions::{col, explode, split};
use ember_sql::{SparkSession, Trigger};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 {
        return Err("arguments: (HOST PORT | --files DIR) BATCHES INTERVAL_MS WORKERS [WORDS_PER_LINE]".into());
    }
    let (host, port) = (&args[0], &args[1]);
    let batches: usize = args[2].parse()?;
    let interval_ms: u64 = args[3].parse()?;
    let workers: usize = args[4].parse()?;
    let words_per_line: u64 = args.get(5).map_or(Ok(10), |w| w.parse())?;

    let spark = SparkSession::builder()
        .app_name("StructuredNetworkWordCount")
        .master(&format!("local[{workers}]"))
        .get_or_create()?;
    let lines = if host == "--files" {
        spark.read_stream().format("text").load_path(port)?
    } else {
        spark
            .read_stream()
            .format("socket")
            .option("host", host)
            .option("port", port)
            .load()?
    };
    let words = lines.select([explode(split(col("value"), " ")).alias("word")])?;
    let word_counts = words.group_by([col("word")]).count()?;
    let query = word_counts
        .write_stream()
        .output_mode("complete")
        .format("console")
        .trigger(Trigger::ProcessingTime(Duration::from_millis(interval_ms)))
        .start()?;

    let mut printed = 0usize;
    let mut next_batch = 0i64;
    while printed < batches {
        if query.await_termination_timeout(Duration::from_millis(20))? {
            break;
        }
        let fresh: Vec<_> = query.recent_progress().into_iter().filter(|r| r.batch_id >= next_batch).collect();
        for report in fresh {
            println!(
                "BATCH time_ms={} keys={} words={} proc_ms={} sched_ms=0 total_ms={}",
                report.timestamp_ms,
                report.state_rows.unwrap_or(0),
                report.num_input_rows * words_per_line,
                report.trigger_execution_ms,
                report.trigger_execution_ms
            );
            next_batch = report.batch_id + 1;
            printed += 1;
        }
    }
    query.stop()?;
    Ok(())
}
