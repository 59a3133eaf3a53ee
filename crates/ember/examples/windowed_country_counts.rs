//! The seeds' windowed country counts (`top.py`): country codes read from a TCP socket are
//! mapped to names and counted over a 6-batch window every 3 batches, incrementally, with an
//! inverse function (`reduce_by_key_and_window_inv`).
//!
//! Run against your own server (`nc -lk 9999`, one code per line: usa, ind, aus, ...):
//! `cargo run -p ember --example windowed_country_counts -- localhost 9999`
//!
//! Without arguments it serves codes itself (200 ms batches) and stops after 12 batches. As in
//! Spark, a country whose codes have left the window is still printed, with count 0.

mod common;

use std::time::Duration as StdDuration;

use ember::prelude::*;

/// The seeds' `get_countryname`.
fn get_countryname(line: String) -> (String, i64) {
    let output = match line.trim() {
        "usa" => "USA",
        "ind" => "India",
        "aus" => "Australia",
        _ => "Unknown",
    };
    (output.to_owned(), 1)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let batch_interval = milliseconds(200);
    let window_length = milliseconds(6 * 200);
    let frequency = milliseconds(3 * 200);
    let (host, port, run_for) = match common::server_from_args() {
        Some((host, port)) => (host, port, None),
        None => {
            let codes = [
                vec!["usa", "ind"],
                vec!["usa"],
                vec!["aus", "xyz"],
                vec!["usa"],
                vec![],
                vec!["ind"],
            ];
            let groups = codes.iter().map(|g| g.iter().map(|c| (*c).to_owned()).collect()).collect();
            let port = common::serve_lines(groups, batch_interval.to_std(), StdDuration::from_secs(5))?;
            ("127.0.0.1".to_owned(), port, Some(milliseconds(12 * 200 + 100)))
        }
    };
    let ssc = StreamingContext::new(batch_interval)?;
    let lines = ssc.socket_text_stream(&host, port);
    let add_func = |x: i64, y: i64| x + y;
    let inv_add_func = |x: i64, y: i64| x - y;
    let word_counts = lines
        .map(get_countryname)
        .reduce_by_key_and_window_inv(add_func, inv_add_func, window_length, frequency)?;
    word_counts.transform(|b| b.sort_by_key()).print()?;
    common::run(&ssc, run_for)?;
    Ok(())
}
