//! The seeds' stateful network word count (`calcultor.py`, and the running-total example of
//! the English tutorial): words read from a TCP socket, with a running count per word kept by
//! `update_state_by_key`.
//!
//! Run against your own server (`nc -lk 9999`):
//! `cargo run -p ember --example stateful_network_word_count -- localhost 9999`
//!
//! As a cluster of two processes under the supervisor (the receiver and the printing run on
//! process 0, the state is split over both):
//! `ember cluster -n 2 -- target/debug/examples/stateful_network_word_count`
//!
//! Without arguments it serves the tutorial's lines itself, one line per 500 ms batch, and
//! stops after 8 batches. The counts accumulate: `(hello,1)`, then `(hello,2)`, and a word
//! keeps its count in later batches even when it is not seen again.

mod common;

use std::time::Duration as StdDuration;

use ember::prelude::*;

/// The seeds' `updatefun`: the new values added to the previous sum.
fn update(new_values: Vec<u64>, last_sum: Option<u64>) -> Option<u64> {
    Some(new_values.iter().sum::<u64>() + last_sum.unwrap_or(0))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let batch = milliseconds(500);
    let (host, port, run_for) = match common::server_from_args() {
        Some((host, port)) => (host, port, None),
        None => {
            let lines = ["hello world", "hello spark streaming", "spark spark", "world"];
            let groups = lines.iter().map(|l| vec![(*l).to_owned()]).collect();
            let port = common::serve_lines(groups, batch.to_std(), StdDuration::from_secs(5))?;
            ("127.0.0.1".to_owned(), port, Some(milliseconds(8 * 500 + 250)))
        }
    };
    // A cluster when `ember cluster -n N -- <this example>` (or timely's `-n/-p/-h`) says so.
    let ssc = StreamingContext::builder(batch).from_args(std::env::args())?.build()?;
    let lines = ssc.socket_text_stream(&host, port);
    let words = lines.flat_map(|line: String| line.split(' ').map(str::to_owned).collect::<Vec<_>>());
    let pairs = words.map(|word| (word, 1u64));
    let word_counts = pairs.update_state_by_key(update);
    word_counts.transform(|b| b.sort_by_key()).print()?;
    common::run(&ssc, run_for)?;
    Ok(())
}
