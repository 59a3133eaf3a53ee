//! The data generator behind `ember gen` and the main job: the seeds' `DataSourceSocket`
//! (random lines of a file, served to every client at a rate), plus the records the seed
//! examples generate (random words, sales, network requests), over TCP or as files moved
//! atomically into a directory.

use std::io::{BufWriter, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const WORDS: &[&str] = &[
    "spark", "ember", "stream", "batch", "window", "state", "timely", "rust", "hello", "world", "data", "flow",
];
const PRODUCTS: &[&str] = &["laptop", "phone", "tablet", "watch", "headphones"];
const REGIONS: &[&str] = &["North", "South", "East", "West"];
const IPS: &[&str] = &["192.168.1.1", "192.168.1.2", "192.168.1.3", "10.0.0.1", "10.0.0.2"];
const ACTIONS: &[&str] = &["GET", "POST", "PUT", "DELETE"];

/// What the generated lines look like.
#[derive(Clone, Debug)]
pub enum Kind {
    /// Eight random words per line.
    Words,
    /// Random lines of a file (the seeds' `DataSourceSocket`).
    Lines(Arc<Vec<String>>),
    /// `timestamp,product,region,price` (the seeds' `generate_sample_data`).
    Sales,
    /// `timestamp,ip,action,bytes` (the seeds' `generate_network_data`).
    Network,
}

impl Kind {
    /// Parses `words`, `sales`, `network`, or `file:PATH`.
    pub fn parse(spec: &str) -> anyhow::Result<Kind> {
        Ok(match spec {
            "words" => Kind::Words,
            "sales" => Kind::Sales,
            "network" => Kind::Network,
            _ => match spec.strip_prefix("file:") {
                Some(path) => {
                    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the lines file {path}"))?;
                    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
                    if lines.is_empty() {
                        bail!("the lines file {path} is empty");
                    }
                    Kind::Lines(Arc::new(lines))
                }
                None => bail!("unknown kind `{spec}`: use words, sales, network or file:PATH"),
            },
        })
    }
}

/// A deterministic stream of lines of one kind (xorshift; the seed makes runs repeatable).
pub struct Lines {
    kind: Kind,
    state: u64,
}

impl Lines {
    /// Lines of `kind` from `seed`.
    pub fn new(kind: Kind, seed: u64) -> Self {
        Lines {
            kind,
            state: seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15).max(1),
        }
    }

    /// Appends the next line (without its newline) to `out`.
    pub fn write_line(&mut self, out: &mut String) {
        use std::fmt::Write as _;
        let Lines { kind, state } = self;
        match kind {
            Kind::Words => {
                for i in 0..8 {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(pick(state, WORDS));
                }
            }
            Kind::Lines(lines) => out.push_str(&lines[below(state, lines.len())]),
            Kind::Sales => {
                let (product, region) = (pick(state, PRODUCTS), pick(state, REGIONS));
                let price = 100 + xorshift(state) % 901;
                let _ = write!(out, "{},{product},{region},{price}", unix_seconds());
            }
            Kind::Network => {
                let (ip, action) = (pick(state, IPS), pick(state, ACTIONS));
                let bytes = 100 + xorshift(state) % 9901;
                let _ = write!(out, "{},{ip},{action},{bytes}", unix_seconds());
            }
        }
    }
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// A random index below `n`: the high half of a 64x64-bit product (no division, which would
/// cost more than the rest of a word: at full rate the generator shares the machine with the
/// job it feeds).
fn below(state: &mut u64, n: usize) -> usize {
    ((u128::from(xorshift(state)) * n as u128) >> 64) as usize
}

fn pick<'a>(state: &mut u64, from: &[&'a str]) -> &'a str {
    from[below(state, from.len())]
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How much to generate and how fast.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Lines (socket) or files (directory) per second.
    pub rate: f64,
    /// Lines per client (socket) or files in all (directory); `None` = no limit.
    pub count: Option<u64>,
}

/// Serves lines of `kind` to every client of `listener` at `pace`, until `stop`. A client that
/// got `pace.count` lines keeps its connection open, idle, so a receiver does not reconnect
/// and read them again.
pub fn serve(listener: TcpListener, kind: Kind, pace: Pace, stop: Arc<AtomicBool>) -> anyhow::Result<SocketAddr> {
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    std::thread::Builder::new().name("ember-gen".into()).spawn(move || {
        let mut seed = 0u64;
        while !stop.load(Ordering::Acquire) {
            match listener.accept() {
                Ok((conn, peer)) => {
                    seed += 1;
                    eprintln!("ember gen: client connected from {peer}");
                    let (stop, kind) = (Arc::clone(&stop), kind.clone());
                    let _ = std::thread::Builder::new()
                        .name("ember-gen-client".into())
                        .spawn(move || serve_client(conn, Lines::new(kind, seed), pace, &stop));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    })?;
    Ok(addr)
}

/// Serves one stream of lines of `kind` at `pace` to a receiver that speaks ember's
/// acknowledgement protocol (`socket_text_stream_acknowledged`): every connection starts at the
/// line the receiver asks for with `EMBER-RESUME <n>`, so a receiver that reconnects, or
/// recovers from a crash with its write-ahead log, gets every line exactly once. Lines are the
/// same on every connection (one seed), `pace.count` lines in all.
pub fn serve_acknowledged(listener: TcpListener, kind: Kind, pace: Pace, stop: Arc<AtomicBool>) -> anyhow::Result<SocketAddr> {
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    std::thread::Builder::new().name("ember-gen".into()).spawn(move || {
        while !stop.load(Ordering::Acquire) {
            match listener.accept() {
                Ok((conn, peer)) => {
                    let (stop, kind) = (Arc::clone(&stop), kind.clone());
                    let _ = std::thread::Builder::new()
                        .name("ember-gen-client".into())
                        .spawn(move || match resume_point(&conn) {
                            Ok(from) => {
                                eprintln!("ember gen: client {peer} resumes from line {from}");
                                let mut lines = Lines::new(kind, 1);
                                let mut skipped = String::new();
                                for _ in 0..from {
                                    skipped.clear();
                                    lines.write_line(&mut skipped);
                                }
                                let pace = Pace {
                                    rate: pace.rate,
                                    count: pace.count.map(|c| c.saturating_sub(from)),
                                };
                                serve_client(conn, lines, pace, &stop);
                            }
                            Err(e) => eprintln!("ember gen: client {peer} did not say where to resume: {e}"),
                        });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    })?;
    Ok(addr)
}

/// Reads the receiver's `EMBER-RESUME <n>`, and starts a thread that reads (and drops) its
/// acknowledgements so that they never fill the connection.
fn resume_point(conn: &std::net::TcpStream) -> anyhow::Result<u64> {
    use std::io::BufRead;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = std::io::BufReader::new(conn.try_clone()?);
    let mut hello = String::new();
    reader.read_line(&mut hello)?;
    let from = hello
        .trim()
        .strip_prefix("EMBER-RESUME ")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("expected EMBER-RESUME <n>, got {:?}", hello.trim()))?;
    conn.set_read_timeout(None)?;
    std::thread::Builder::new().name("ember-gen-acks".into()).spawn(move || {
        let mut ack = String::new();
        while reader.read_line(&mut ack).is_ok_and(|n| n > 0) {
            ack.clear();
        }
    })?;
    Ok(from)
}

/// Lines generated and written at once: the clock is read, and the socket written, once per
/// chunk rather than per line.
const CHUNK_LINES: u64 = 256;

fn serve_client(conn: std::net::TcpStream, mut lines: Lines, pace: Pace, stop: &AtomicBool) {
    let mut out = BufWriter::with_capacity(64 * 1024, conn);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut chunk = String::new();
    while !stop.load(Ordering::Acquire) {
        let left = pace.count.map_or(u64::MAX, |c| c.saturating_sub(sent));
        if left == 0 {
            let _ = out.flush();
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let due = (start.elapsed().as_secs_f64() * pace.rate) as u64;
        if sent >= due {
            if out.flush().is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        let n = (due - sent).min(left).min(CHUNK_LINES);
        chunk.clear();
        for _ in 0..n {
            lines.write_line(&mut chunk);
            chunk.push('\n');
        }
        if out.write_all(chunk.as_bytes()).is_err() {
            return;
        }
        sent += n;
    }
}

/// Writes `pace.rate` files per second of `lines_per_file` lines into `dir`, each written under
/// a hidden name and renamed into place, until `pace.count` files or `stop`. With `distinct`,
/// that many files are written first into `<dir>.staging` (removed at the end) and each new
/// file is a hard link to one of them, in turn. Returns the number of files written.
pub fn write_files(
    dir: &Path,
    kind: Kind,
    lines_per_file: u64,
    distinct: Option<u64>,
    pace: Pace,
    stop: &AtomicBool,
) -> anyhow::Result<u64> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create directory {}", dir.display()))?;
    let mut lines = Lines::new(kind, 1);
    let mut text = String::new();
    let mut next_text = |text: &mut String| {
        text.clear();
        for _ in 0..lines_per_file {
            lines.write_line(text);
            text.push('\n');
        }
    };
    let staging = distinct.map(|_| {
        let mut name = dir.as_os_str().to_owned();
        name.push(".staging");
        PathBuf::from(name)
    });
    let mut staged = Vec::new();
    if let (Some(n), Some(staging)) = (distinct, &staging) {
        std::fs::create_dir_all(staging).with_context(|| format!("cannot create directory {}", staging.display()))?;
        for i in 0..n {
            next_text(&mut text);
            let path = staging.join(format!("staged-{i:04}.txt"));
            std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
            staged.push(path);
        }
    }
    let start = Instant::now();
    let mut written = 0u64;
    let run_id = std::process::id();
    let result = (|| -> anyhow::Result<()> {
        while !stop.load(Ordering::Acquire) && pace.count.is_none_or(|c| written < c) {
            let due = (start.elapsed().as_secs_f64() * pace.rate) as u64 + 1;
            if written >= due {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            let name = format!("part-{run_id}-{written:06}.txt");
            if staged.is_empty() {
                next_text(&mut text);
                let tmp: PathBuf = dir.join(format!(".{name}.tmp"));
                std::fs::write(&tmp, &text).with_context(|| format!("cannot write {}", tmp.display()))?;
                std::fs::rename(&tmp, dir.join(&name)).with_context(|| format!("cannot move {} into place", tmp.display()))?;
            } else {
                let from = &staged[(written % staged.len() as u64) as usize];
                std::fs::hard_link(from, dir.join(&name))
                    .with_context(|| format!("cannot link {} into {}", from.display(), dir.display()))?;
            }
            written += 1;
        }
        Ok(())
    })();
    if let Some(staging) = &staging {
        let _ = std::fs::remove_dir_all(staging);
    }
    result.map(|()| written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_generate_the_seed_formats() {
        let mut out = String::new();
        Lines::new(Kind::Sales, 3).write_line(&mut out);
        let fields: Vec<&str> = out.split(',').collect();
        assert_eq!(fields.len(), 4);
        assert!(PRODUCTS.contains(&fields[1]) && REGIONS.contains(&fields[2]));
        assert!((100..=1000).contains(&fields[3].parse::<u64>().unwrap()));
        out.clear();
        Lines::new(Kind::Words, 3).write_line(&mut out);
        assert_eq!(out.split(' ').count(), 8);
        assert!(Kind::parse("bogus").is_err());
        assert!(Kind::parse("file:/no/such/file").unwrap_err().to_string().contains("/no/such/file"));
    }

    #[test]
    fn files_appear_complete_under_visible_names() {
        for distinct in [None, Some(2)] {
            let dir = std::env::temp_dir().join(format!("ember-gen-test-{}-{distinct:?}", std::process::id()));
            let stop = AtomicBool::new(false);
            let n = write_files(
                &dir,
                Kind::Network,
                5,
                distinct,
                Pace {
                    rate: 1000.0,
                    count: Some(3),
                },
                &stop,
            )
            .unwrap();
            assert_eq!(n, 3);
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            assert_eq!(names.len(), 3);
            let texts: Vec<String> = names.iter().map(|name| std::fs::read_to_string(dir.join(name)).unwrap()).collect();
            for (name, text) in names.iter().zip(&texts) {
                assert!(!name.starts_with('.'), "{name}");
                assert_eq!(text.lines().count(), 5);
            }
            if distinct.is_some() {
                // Two distinct files, linked in turn; the staging directory is gone.
                assert_eq!(texts[0], texts[2]);
                assert_ne!(texts[0], texts[1]);
                assert!(!std::path::Path::new(&format!("{}.staging", dir.display())).exists());
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn an_acknowledged_stream_resumes_at_the_line_the_receiver_asks_for() {
        use std::io::{BufRead, BufReader};
        let stop = Arc::new(AtomicBool::new(false));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let pace = Pace {
            rate: 10_000.0,
            count: Some(5),
        };
        let addr = serve_acknowledged(listener, Kind::Words, pace, Arc::clone(&stop)).unwrap();
        let read = |from: u64| -> Vec<String> {
            let mut conn = std::net::TcpStream::connect(addr).unwrap();
            writeln!(conn, "EMBER-RESUME {from}").unwrap();
            let mut reader = BufReader::new(conn);
            (from..5)
                .map(|_| {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    line
                })
                .collect()
        };
        let all = read(0);
        assert_eq!(all.len(), 5);
        assert_eq!(read(3), all[3..], "a resumed connection continues the same lines");
        stop.store(true, Ordering::Release);
    }
}
