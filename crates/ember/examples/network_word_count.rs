//! The seeds' `NetworkWordCount`: counts the words of lines read from a TCP socket.
//!
//! Run a server first (`nc -lk 9999`, or `cargo run -p ember-cli -- wordcount` for a
//! self-contained version), then: `cargo run -p ember --example network_word_count -- localhost 9999`
//!
//! Prints, every second, the `(word,count)` pairs of that second's lines, in Spark's format.
//! Stops on Ctrl-C.

use ember::prelude::*;

fn main() -> ember::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let host = args.get(1).map_or("localhost", String::as_str);
    let port: u16 = args.get(2).and_then(|p| p.parse().ok()).unwrap_or(9999);
    let ssc = StreamingContext::new(seconds(1))?;
    let lines = ssc.socket_text_stream(host, port);
    let words = lines.flat_map(|l: String| l.split(' ').map(str::to_owned).collect::<Vec<_>>());
    let word_counts = words.map(|x| (x, 1u64)).reduce_by_key(|a, b| a + b);
    word_counts.print()?;
    ssc.start()?;
    ssc.await_termination()
}
