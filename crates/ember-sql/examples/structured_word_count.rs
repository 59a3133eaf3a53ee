//! Seed 002's Structured Streaming word count, in Rust: lines from a socket, one row per word,
//! a running count per word, printed to the console in Spark's format after every micro-batch.
//!
//! ```text
//! ember gen socket --port 9999 --rate 2          # or: nc -lk 9999, then type lines
//! cargo run -p ember-sql --example structured_word_count -- localhost 9999 complete
//! ```
//!
//! Arguments: HOST PORT [OUTPUT_MODE] [SECONDS]: the output mode is `complete` (the default)
//! or `update`; with SECONDS the query stops after that long.

use std::time::Duration;

use ember_sql::SparkSession;
use ember_sql::functions::{col, explode, split};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let host = args.first().map_or("localhost", String::as_str);
    let port = args.get(1).map_or("9999", String::as_str);
    let mode = args.get(2).map_or("complete", String::as_str);
    let seconds: Option<u64> = args.get(3).map(|s| s.parse()).transpose()?;

    let spark = SparkSession::builder()
        .app_name("StructuredNetworkWordCount")
        .master("local[2]")
        .get_or_create()?;
    // The lines arriving on the socket, one row each in a column named `value`.
    let lines = spark
        .read_stream()
        .format("socket")
        .option("host", host)
        .option("port", port)
        .load()?;
    // One row per word, then a running count per word.
    let words = lines.select([explode(split(col("value"), " ")).alias("word")])?;
    let word_counts = words.group_by([col("word")]).count()?;
    let query = word_counts.write_stream().output_mode(mode).format("console").start()?;
    match seconds {
        Some(s) => {
            query.await_termination_timeout(Duration::from_secs(s))?;
            query.stop()?;
        }
        None => query.await_termination()?,
    }
    Ok(())
}
