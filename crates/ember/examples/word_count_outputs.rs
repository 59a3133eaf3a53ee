//! The seeds' output patterns inside `foreach_rdd`, on the stateful word count
//! (`NetworkWordCountStateful.scala` and the HDFS example): each batch's counts
//!
//! - saved with `rdd.saveAsTextFile(path)` (ember: `Batch::save_as_text_file`), one directory
//!   per batch, in Spark's layout (`part-0000N`, `_SUCCESS`);
//! - written row by row with `rdd.repartition(3).foreachPartition(func)`, one "connection" per
//!   partition as the seed's MySQL example does (here each partition appends its rows to a CSV
//!   file; database sinks with exactly-once commits are `save_to_database`'s job);
//! - and the three most frequent words, with `takeOrdered`.
//!
//! `cargo run -p ember --example word_count_outputs -- [HOST PORT]`, writing under
//! `EMBER_OUTPUT_DIR` (default: a new directory under the system's temporary one).
//!
//! Without a server it serves the tutorial's lines itself, one line per 500 ms batch, and stops
//! after 6 batches.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration as StdDuration;

use ember::prelude::*;

/// The seeds' `updateFunc`: the new values added to the previous sum.
fn update(new_values: Vec<u64>, last_sum: Option<u64>) -> Option<u64> {
    Some(new_values.iter().sum::<u64>() + last_sum.unwrap_or(0))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out: PathBuf = match std::env::var_os("EMBER_OUTPUT_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::temp_dir().join(format!("ember-word-count-outputs-{}", std::process::id())),
    };
    std::fs::create_dir_all(&out)?;
    let batch = milliseconds(500);
    let (host, port, run_for) = match common::server_from_args() {
        Some((host, port)) => (host, port, None),
        None => {
            let lines = ["hello world", "hello spark streaming", "spark spark", "world"];
            let groups = lines.iter().map(|l| vec![(*l).to_owned()]).collect();
            let port = common::serve_lines(groups, batch.to_std(), StdDuration::from_secs(4))?;
            ("127.0.0.1".to_owned(), port, Some(milliseconds(6 * 500 + 250)))
        }
    };

    let ssc = StreamingContext::builder(batch).workers(2).build()?;
    let counts = ssc
        .socket_text_stream(&host, port)
        .flat_map(|line: String| line.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .map(|word| (word, 1u64))
        .update_state_by_key(update);

    let rows_file = out.join("wordcount.csv");
    let rows_written = std::sync::Arc::new(AtomicU64::new(0));
    let written = std::sync::Arc::clone(&rows_written);
    counts.foreach_rdd(move |rdd, time| {
        if rdd.is_empty() {
            return;
        }
        // rdd.saveAsTextFile(path): one directory per batch.
        let dir = out.join(format!("wordcount-{}", time.milliseconds()));
        match rdd.save_as_text_file(&dir) {
            Ok(()) => println!(
                "saved batch {} to {} ({} part files)",
                time.milliseconds(),
                dir.display(),
                rdd.num_partitions()
            ),
            Err(e) => eprintln!("{e}"),
        }

        // rdd.repartition(3).foreachPartition(func): one "connection" per partition, rows
        // written one by one, as the seed's MySQL example does.
        let partitions = match rdd.clone().repartition(3) {
            Ok(repartitioned) => repartitioned,
            Err(e) => return eprintln!("{e}"),
        };
        let mut rows = 0;
        partitions.foreach_partition(|records| {
            let Ok(mut connection) = std::fs::OpenOptions::new().create(true).append(true).open(&rows_file) else {
                return eprintln!("cannot open {}", rows_file.display());
            };
            for (word, count) in records {
                if writeln!(connection, "{},{word},{count}", time.milliseconds()).is_ok() {
                    rows += 1;
                }
            }
        });
        written.fetch_add(rows, Ordering::Relaxed);
        println!(
            "wrote {rows} rows in {} partitions to {}",
            partitions.num_partitions(),
            rows_file.display()
        );

        // rdd.takeOrdered(3, key = -count): the three most frequent words.
        let top = rdd.take_ordered_by(3, |(word, count)| (std::cmp::Reverse(*count), word.clone()));
        let top: Vec<String> = top.iter().map(|(w, c)| format!("({w},{c})")).collect();
        println!("top 3: {}", top.join(" "));
    })?;
    common::run(&ssc, run_for)?;
    println!("{} rows in all", rows_written.load(Ordering::Relaxed));
    Ok(())
}
