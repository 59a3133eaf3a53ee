//! `ember`: runs ember's built-in jobs.
//!
//! `ember wordcount` is the main job: a streaming word count over a real local TCP socket,
//! fed by the built-in generator, printing every batch in Spark's format. It stops by itself
//! after `--batches` batches, or on Ctrl-C.
//!
//! `ember gen` is the data generator the examples, tests and benchmarks are fed by: `ember gen
//! socket` serves lines to every client at a rate (the seeds' `DataSourceSocket`), `ember gen
//! files` moves files of lines into a directory at a rate.

mod generator;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use ember::prelude::*;

const USAGE: &str = "usage: ember wordcount [--batches N] [--interval-ms MS] [--workers W] [--lines-per-sec R]
       ember queue-wordcount
       ember gen socket [--host H] [--port P] [--kind K] [--rate LINES_PER_SEC] [--count LINES] [--seconds S] [--acknowledged]
       ember gen files --dir DIR [--kind K] [--rate FILES_PER_SEC] [--lines-per-file N] [--count FILES] [--seconds S]
   kinds: words (default), sales, network, file:PATH (random lines of a file)";

struct Options {
    batches: u64,
    interval_ms: u64,
    workers: usize,
    lines_per_sec: u64,
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options {
        batches: 5,
        interval_ms: 1000,
        workers: 2,
        lines_per_sec: 2000,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || -> anyhow::Result<u64> {
            let v = it.next().with_context(|| format!("{a} needs a value\n{USAGE}"))?;
            v.parse().with_context(|| format!("{a}: `{v}` is not a number"))
        };
        match a.as_str() {
            "--batches" => o.batches = value()?,
            "--interval-ms" => o.interval_ms = value()?,
            "--workers" => o.workers = value()? as usize,
            "--lines-per-sec" => o.lines_per_sec = value()?,
            other => bail!("unknown option {other}\n{USAGE}"),
        }
    }
    Ok(o)
}

fn wordcount(o: &Options) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot open the generator's socket")?;
    let pace = generator::Pace {
        rate: o.lines_per_sec as f64,
        count: None,
    };
    let addr = generator::serve(listener, generator::Kind::Words, pace, Arc::clone(&stop))?;
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    ctrlc::set_handler(move || flag.store(true, Ordering::Release)).context("cannot install the Ctrl-C handler")?;

    let ssc = StreamingContext::builder(milliseconds(o.interval_ms)).workers(o.workers).build()?;
    let lines = ssc.socket_text_stream("127.0.0.1", addr.port());
    let counts = lines
        .flat_map(|l: String| l.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .map(|w| (w, 1u64))
        .reduce_by_key(|a, b| a + b);
    counts.print()?;
    ssc.start()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(o.batches * o.interval_ms);
    while std::time::Instant::now() < deadline && !interrupted.load(Ordering::Acquire) {
        if ssc.await_termination_or_timeout(milliseconds(50))? {
            break;
        }
    }
    ssc.stop(true)?;
    stop.store(true, Ordering::Release);
    Ok(())
}

/// The seeds' RDD-queue word count on a manual clock, so its output is the same on every run:
/// batch `i` (from 0) holds the numbers `0..i`, counted by `x % 10`; a sixth batch holds
/// `0..25` counted by `x % 20`, which shows the `...` line.
fn queue_wordcount() -> anyhow::Result<()> {
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1)).manual_clock(&clock).build()?;
    let queue = BatchQueue::new();
    for i in 0..5i64 {
        queue.push((0..i).map(|x| x % 10).collect());
    }
    queue.push((0..25i64).map(|x| x % 20).collect());
    let counts = ssc
        .queue_stream(&queue, true, None)
        .map(|k| (k, 1u64))
        .reduce_by_key(|a, b| a + b)
        .transform(|b| b.sort_by_key());
    counts.print()?;
    ssc.start()?;
    clock.advance(seconds(7));
    if !ssc.await_batch(Time::from_millis(7000), seconds(60))? {
        bail!("the batches did not complete within 60 s");
    }
    ssc.stop(true)?;
    Ok(())
}

/// `ember gen socket|files ...`: runs until `--seconds` pass, `--count` files are written, or
/// Ctrl-C.
fn gen_command(args: &[String]) -> anyhow::Result<()> {
    let mode = args.first().map(String::as_str);
    let (mut host, mut port, mut dir) = ("127.0.0.1".to_owned(), 9999u16, None::<std::path::PathBuf>);
    let (mut kind, mut rate, mut count, mut seconds, mut lines_per_file) = ("words".to_owned(), None, None, None, 100u64);
    let mut acknowledged = false;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--acknowledged" {
            acknowledged = true;
            continue;
        }
        let v = it.next().with_context(|| format!("{a} needs a value\n{USAGE}"))?;
        let number = |v: &str| v.parse::<f64>().with_context(|| format!("{a}: `{v}` is not a number"));
        match a.as_str() {
            "--host" => host = v.clone(),
            "--port" => port = v.parse().with_context(|| format!("--port: `{v}` is not a port"))?,
            "--dir" => dir = Some(v.into()),
            "--kind" => kind = v.clone(),
            "--rate" => rate = Some(number(v)?),
            "--count" => count = Some(number(v)? as u64),
            "--seconds" => seconds = Some(number(v)?),
            "--lines-per-file" => lines_per_file = number(v)? as u64,
            other => bail!("unknown option {other}\n{USAGE}"),
        }
    }
    let kind = generator::Kind::parse(&kind)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::Release)).context("cannot install the Ctrl-C handler")?;
    if let Some(s) = seconds {
        let flag = Arc::clone(&stop);
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs_f64(s));
            flag.store(true, Ordering::Release);
        });
    }
    match mode {
        Some("socket") => {
            let listener = TcpListener::bind((host.as_str(), port)).with_context(|| format!("cannot listen on {host}:{port}"))?;
            let pace = generator::Pace {
                rate: rate.unwrap_or(10.0),
                count,
            };
            let addr = if acknowledged {
                generator::serve_acknowledged(listener, kind, pace, Arc::clone(&stop))?
            } else {
                generator::serve(listener, kind, pace, Arc::clone(&stop))?
            };
            eprintln!("ember gen: serving {} lines/s per client on {addr}", pace.rate);
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Ok(())
        }
        Some("files") => {
            let dir = dir.with_context(|| format!("ember gen files needs --dir\n{USAGE}"))?;
            let pace = generator::Pace {
                rate: rate.unwrap_or(1.0),
                count,
            };
            let written = generator::write_files(&dir, kind, lines_per_file, pace, &stop)?;
            eprintln!("ember gen: wrote {written} files of {lines_per_file} lines into {}", dir.display());
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("wordcount") => wordcount(&parse(&args[1..])?),
        Some("queue-wordcount") => queue_wordcount(),
        Some("gen") => gen_command(&args[1..]),
        _ => bail!("{USAGE}"),
    }
}
