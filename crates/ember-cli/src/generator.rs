//! A built-in data generator: serves lines of random words over TCP, like the seeds'
//! `DataSourceSocket`.

use std::io::{BufWriter, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const WORDS: &[&str] = &[
    "spark", "ember", "stream", "batch", "window", "state", "timely", "rust", "hello", "world", "data", "flow",
];

/// A small deterministic generator (xorshift), so runs are reproducible.
pub struct Words {
    state: u64,
}

impl Words {
    /// A generator with the given seed.
    pub fn new(seed: u64) -> Self {
        Words { state: seed.max(1) }
    }

    fn next_index(&mut self) -> usize {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state % WORDS.len() as u64) as usize
    }

    /// A line of `n` words separated by spaces.
    pub fn line(&mut self, n: usize) -> String {
        let mut s = String::new();
        for i in 0..n {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(WORDS[self.next_index()]);
        }
        s
    }
}

/// Serves `lines_per_sec` lines of random words to every client of `listener` until `stop`.
pub fn serve(listener: TcpListener, lines_per_sec: u64, stop: Arc<AtomicBool>) -> anyhow::Result<SocketAddr> {
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    std::thread::Builder::new().name("ember-gen".into()).spawn(move || {
        let mut seed = 1u64;
        while !stop.load(Ordering::Acquire) {
            match listener.accept() {
                Ok((conn, _)) => {
                    seed += 1;
                    let stop = Arc::clone(&stop);
                    let _ = std::thread::Builder::new().name("ember-gen-client".into()).spawn(move || {
                        let mut words = Words::new(seed);
                        let mut out = BufWriter::new(conn);
                        let start = Instant::now();
                        let mut sent = 0u64;
                        while !stop.load(Ordering::Acquire) {
                            let due = start.elapsed().as_micros() as u64 * lines_per_sec / 1_000_000;
                            if sent >= due {
                                if out.flush().is_err() {
                                    return;
                                }
                                std::thread::sleep(Duration::from_millis(5));
                                continue;
                            }
                            if writeln!(out, "{}", words.line(8)).is_err() {
                                return;
                            }
                            sent += 1;
                        }
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(10)),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    })?;
    Ok(addr)
}
