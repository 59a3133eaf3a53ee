//! The seeds' file-stream word count (`TestStreaming`): counts the words of every new file
//! that appears in a directory.
//!
//! Run: `cargo run -p ember --example file_word_count -- /tmp/logfile [SECONDS]`, then move
//! files into the directory, or let the generator do it:
//! `cargo run -p ember-cli -- gen files --dir /tmp/logfile --rate 1 --kind file:log.txt`.
//!
//! Prints, every second, the `(word,count)` pairs of the files that appeared in that second,
//! in Spark's format. Runs for SECONDS (then stops gracefully), or until Ctrl-C. Files must
//! appear atomically: write them elsewhere (or under a name starting with `.`), then rename.

use ember::prelude::*;

#[allow(dead_code)] // each example uses part of it
mod common;

fn main() -> ember::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).map_or("file:///tmp/logfile", String::as_str);
    let run_for = args.get(2).and_then(|s| s.parse().ok()).map(seconds);
    let ssc = StreamingContext::new(seconds(1))?;
    let lines = ssc.text_file_stream(dir)?;
    let words = lines.flat_map(|l: String| l.split(' ').map(str::to_owned).collect::<Vec<_>>());
    let word_counts = words.map(|x| (x, 1u64)).reduce_by_key(|a, b| a + b);
    word_counts.print()?;
    common::run(&ssc, run_for)
}
