//! The seeds' `NetworkWordCount`: counts the words of lines read from a TCP socket.
//!
//! Run a server first (`nc -lk 9999`, or the seeds' `DataSourceSocket` built in:
//! `cargo run -p ember-cli -- gen socket --port 9999 --kind file:log.txt --rate 5`), then:
//! `cargo run -p ember --example network_word_count -- localhost 9999 [SECONDS]`
//!
//! Prints, every second, the `(word,count)` pairs of that second's lines, in Spark's format.
//! Runs for SECONDS (then stops gracefully), or until Ctrl-C.

use ember::prelude::*;

#[allow(dead_code)] // each example uses part of it
mod common;

fn main() -> ember::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let host = args.get(1).map_or("localhost", String::as_str);
    let port: u16 = args.get(2).and_then(|p| p.parse().ok()).unwrap_or(9999);
    let run_for = args.get(3).and_then(|s| s.parse().ok()).map(seconds);
    let ssc = StreamingContext::new(seconds(1))?;
    let lines = ssc.socket_text_stream(host, port);
    let words = lines.flat_map(|l: String| l.split(' ').map(str::to_owned).collect::<Vec<_>>());
    let word_counts = words.map(|x| (x, 1u64)).reduce_by_key(|a, b| a + b);
    word_counts.print()?;
    common::run(&ssc, run_for)
}
