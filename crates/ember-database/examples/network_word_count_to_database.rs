//! The seed's `NetworkWordCountStateful` that writes into MySQL, done the way that survives a
//! restart: words from a TCP socket, a running count per word (`update_state_by_key`), and each
//! batch's counts upserted into the table `wordcount` in one transaction per batch, exactly
//! once (the seed opened a connection per partition and inserted every count of every batch).
//!
//! `cargo run -p ember-database --example network_word_count_to_database -- [--url URL] [HOST PORT]`
//!
//! The database is SQLite (`sqlite://wordcount.db`) unless `--url` names another:
//! `postgres://postgres@127.0.0.1:5432/test` or `mysql://root@127.0.0.1:3306/test`. The table is
//! created if missing. Without `HOST PORT` it serves the tutorial's lines itself, one per
//! 500 ms batch, stops after 8 batches and prints the table.

// The socket stand-in of ember's examples; this one parses its own arguments.
#[allow(dead_code)]
#[path = "../../ember/examples/common/mod.rs"]
mod common;

use std::time::Duration as StdDuration;

use ember::prelude::*;
use ember_database::{Database, DatabaseSink, SaveToDatabase, SqlValue};

fn update(new_values: Vec<i64>, last_sum: Option<i64>) -> Option<i64> {
    Some(new_values.iter().sum::<i64>() + last_sum.unwrap_or(0))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut url = "sqlite://wordcount.db".to_owned();
    if let Some(i) = args.iter().position(|a| a == "--url") {
        url = args.get(i + 1).cloned().ok_or("--url needs a value")?;
        args.drain(i..=i + 1);
    }
    let batch = milliseconds(500);
    let (host, port, run_for) = match args.as_slice() {
        [host, port] => (host.clone(), port.parse::<u16>().map_err(|e| format!("port {port}: {e}"))?, None),
        [] => {
            let lines = ["hello world", "hello spark streaming", "spark spark", "world"];
            let groups = lines.iter().map(|l| vec![(*l).to_owned()]).collect();
            let port = common::serve_lines(groups, batch.to_std(), StdDuration::from_secs(5))?;
            ("127.0.0.1".to_owned(), port, Some(milliseconds(8 * 500 + 250)))
        }
        _ => return Err("usage: network_word_count_to_database [--url URL] [HOST PORT]".into()),
    };

    let db = Database::open(&url)?;
    db.execute(
        "CREATE TABLE IF NOT EXISTS wordcount (word VARCHAR(100) NOT NULL PRIMARY KEY, count BIGINT NOT NULL)",
        &[],
    )?;

    let ssc = StreamingContext::new(batch)?;
    let lines = ssc.socket_text_stream(&host, port);
    let words = lines.flat_map(|line: String| line.split(' ').map(str::to_owned).collect::<Vec<_>>());
    let counts = words.map(|word| (word, 1i64)).update_state_by_key(update);
    counts.transform(|b| b.sort_by_key()).print()?;
    counts.save_to_database(DatabaseSink::new(&url, "wordcount").columns(["word", "count"]).upsert_on(["word"]))?;
    common::run(&ssc, run_for)?;

    println!("table wordcount in {}:", db.url());
    for row in db.query("SELECT word, count FROM wordcount ORDER BY word", &[])? {
        if let [SqlValue::Text(word), SqlValue::Int(count)] = row.as_slice() {
            println!("({word},{count})");
        }
    }
    Ok(())
}
