//! Spark's `CustomReceiver` example: a user-written [`Receiver`] that reads lines from a TCP
//! server, restarts itself when the connection fails, and feeds a word count.
//!
//! Run a server (the seeds' `DataSourceSocket`, built in:
//! `cargo run -p ember-cli -- gen socket --port 9999 --kind file:log.txt --rate 5`), then:
//! `cargo run -p ember --example custom_receiver -- localhost 9999 [SECONDS]`
//!
//! Prints, every second, the `(word,count)` pairs of the lines received in that second.
//! Runs for SECONDS (then stops gracefully), or until Ctrl-C.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::time::Duration as StdDuration;

use ember::prelude::*;

#[allow(dead_code)] // each example uses part of it
mod common;

/// Connects to `host:port` and stores each line it receives.
struct LineReceiver {
    host: String,
    port: u16,
}

impl Receiver<String> for LineReceiver {
    fn on_start(&mut self, ctx: &ReceiverContext<String>) {
        let socket = match TcpStream::connect((self.host.as_str(), self.port)) {
            Ok(socket) => socket,
            Err(e) => return ctx.restart(format!("error connecting to {}:{}: {e}", self.host, self.port)),
        };
        // A read timeout lets the loop notice a stop request while the server is quiet.
        if let Err(e) = socket.set_read_timeout(Some(StdDuration::from_millis(100))) {
            return ctx.restart(format!("cannot set a read timeout: {e}"));
        }
        let mut reader = BufReader::new(socket);
        let mut line = String::new();
        while !ctx.is_stopped() {
            match reader.read_line(&mut line) {
                Ok(0) => return ctx.restart("the server closed the connection"),
                Ok(_) if line.ends_with('\n') => {
                    ctx.store(line.trim_end().to_owned());
                    line.clear();
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => return ctx.restart(format!("error receiving data: {e}")),
            }
        }
    }
}

fn main() -> ember::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let host = args.get(1).cloned().unwrap_or_else(|| "localhost".into());
    let port: u16 = args.get(2).and_then(|p| p.parse().ok()).unwrap_or(9999);
    let run_for = args.get(3).and_then(|s| s.parse().ok()).map(seconds);
    let ssc = StreamingContext::new(seconds(1))?;
    let lines = ssc.receiver_stream(LineReceiver { host, port });
    let words = lines.flat_map(|l: String| l.split(' ').map(str::to_owned).collect::<Vec<_>>());
    let word_counts = words.map(|x| (x, 1u64)).reduce_by_key(|a, b| a + b);
    word_counts.print()?;
    common::run(&ssc, run_for)
}
