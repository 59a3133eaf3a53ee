//! `ember`: runs ember's built-in jobs.
//!
//! `ember wordcount` is the main job: a streaming word count over a real local TCP socket,
//! fed by the built-in generator, printing every batch in Spark's format. It stops by itself
//! after `--batches` batches, or on Ctrl-C.
//!
//! `ember gen` is the data generator the examples, tests and benchmarks are fed by: `ember gen
//! socket` serves lines to every client at a rate (the seeds' `DataSourceSocket`), `ember gen
//! files` moves files of lines into a directory at a rate.
//!
//! `ember cluster -n N -- PROGRAM ARGS` runs a job as a cluster of N processes on this machine
//! and restarts all of them when one dies (see `supervisor.rs`).

mod generator;
mod supervisor;

use std::io::IsTerminal;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration as StdDuration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use ember::prelude::*;
use ember::{BatchInfo, StreamingListener};

/// Runs ember's built-in jobs and its data generator.
#[derive(Debug, Parser)]
#[command(name = "ember", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The main job: a streaming word count over a TCP socket (fed by the built-in generator
    /// unless --port is given), printing every batch in Spark's format.
    Wordcount(WordcountArgs),
    /// The seeds' RDD-queue word count on a manual clock: the same output on every run.
    QueueWordcount,
    /// The data generator the examples, tests and benchmarks are fed by.
    #[command(subcommand)]
    Gen(GenCommand),
    /// Runs a job (a program built on ember, after `--`) as a cluster of processes on this
    /// machine, each told its place and one secret; when one dies, restarts all of them (they
    /// resume from the job's last checkpoint) under a restart strategy, until it gives up.
    Cluster(supervisor::ClusterArgs),
}

#[derive(Debug, Args)]
struct WordcountArgs {
    /// Stop after this many batches (Ctrl-C stops earlier: once gracefully, twice at once).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    batches: u64,
    /// The batch interval, in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    interval_ms: u64,
    /// Worker threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=1024))]
    workers: u64,
    /// Lines per second the built-in generator sends.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    lines_per_sec: u64,
    /// Read lines from a server at this host instead of the built-in generator (with --port).
    #[arg(long, requires = "port")]
    host: Option<String>,
    /// Read lines from a server at this port instead of the built-in generator.
    #[arg(long)]
    port: Option<u16>,
    /// Serve the Streaming web UI, /metrics and the REST API on this port (0: any free port;
    /// the address is printed on stderr).
    #[arg(long)]
    ui_port: Option<u16>,
    /// The address the web UI listens on (0.0.0.0 for every network; default this machine only).
    #[arg(long, requires = "ui_port", default_value = "127.0.0.1")]
    ui_host: String,
    /// Also print a line per completed batch on stdout, from the streaming listener:
    /// `BATCH time_ms=T records=N proc_ms=P sched_ms=S total_ms=D` (input lines, and Spark's
    /// processing, scheduling and total delays), as bench/compare.sh reads it.
    #[arg(long)]
    report: bool,
}

#[derive(Debug, Subcommand)]
enum GenCommand {
    /// Serve lines to every client of a TCP port at a rate (the seeds' DataSourceSocket).
    Socket(GenSocketArgs),
    /// Move files of lines into a directory at a rate.
    Files(GenFilesArgs),
}

/// What to generate and for how long, for both generators.
#[derive(Debug, Args)]
struct GenCommon {
    /// What the lines look like: words, sales, network, or file:PATH (random lines of a file).
    #[arg(long, default_value = "words")]
    kind: String,
    /// Stop after this many seconds.
    #[arg(long, value_parser = positive_seconds, allow_negative_numbers = true)]
    seconds: Option<f64>,
}

#[derive(Debug, Args)]
struct GenSocketArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The port to listen on.
    #[arg(long, default_value_t = 9999)]
    port: u16,
    /// Lines per second, per client.
    #[arg(long, default_value_t = 10.0, value_parser = positive_rate, allow_negative_numbers = true)]
    rate: f64,
    /// Lines per client, then the connection stays open, idle.
    #[arg(long)]
    count: Option<u64>,
    /// Speak the acknowledged socket stream's protocol: every connection resumes at the line
    /// the receiver asks for (one stream of lines over all connections).
    #[arg(long)]
    acknowledged: bool,
    #[command(flatten)]
    common: GenCommon,
}

#[derive(Debug, Args)]
struct GenFilesArgs {
    /// The directory the files are moved into.
    #[arg(long)]
    dir: PathBuf,
    /// Files per second.
    #[arg(long, default_value_t = 1.0, value_parser = positive_rate, allow_negative_numbers = true)]
    rate: f64,
    /// Lines in each file.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    lines_per_file: u64,
    /// Files in all.
    #[arg(long)]
    count: Option<u64>,
    /// Write only this many distinct files, first, into `<dir>.staging`, then hard-link them
    /// into the directory in turn under new names: for benchmarks, so that the writer's copies
    /// into the page cache do not take the machine's cores from the job it feeds.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    distinct: Option<u64>,
    #[command(flatten)]
    common: GenCommon,
}

/// A rate: a finite number above 0.
fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{text}` is not a positive number")),
    }
}

/// A duration in seconds: a finite number of at least 0.
fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.0..1e9).contains(&v) => Ok(v),
        _ => Err(format!("`{text}` is not a number of seconds (0 or more)")),
    }
}

/// Ctrl-C presses: the first asks for a graceful stop, the second exits at once.
fn install_ctrl_c() -> anyhow::Result<Arc<AtomicUsize>> {
    let presses = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&presses);
    ctrlc::set_handler(move || {
        if seen.fetch_add(1, Ordering::AcqRel) >= 1 {
            eprintln!("\nember: stopped at once (second Ctrl-C)");
            std::process::exit(130);
        }
    })
    .context("cannot install the Ctrl-C handler")?;
    Ok(presses)
}

/// What the live status line shows.
#[derive(Default)]
struct Status {
    batches: AtomicU64,
    records: AtomicU64,
    delay_ms: AtomicU64,
}

/// Keeps the live status up to date and, with `report`, prints each completed batch's line.
struct BatchWatch {
    status: Arc<Status>,
    report: bool,
}

impl StreamingListener for BatchWatch {
    fn on_batch_completed(&mut self, batch: &BatchInfo) {
        let (records, time_ms) = (batch.num_records(), batch.batch_time.milliseconds());
        let total = batch.total_delay().unwrap_or(0);
        self.status.batches.fetch_add(1, Ordering::Relaxed);
        self.status.records.store(records, Ordering::Relaxed);
        self.status.delay_ms.store(total, Ordering::Relaxed);
        if self.report {
            println!(
                "BATCH time_ms={time_ms} records={records} proc_ms={} sched_ms={} total_ms={total}",
                batch.processing_delay().unwrap_or(0),
                batch.scheduling_delay().unwrap_or(0),
            );
        }
    }
}

fn wordcount(args: &WordcountArgs) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let (host, port) = match args.port {
        Some(port) => (args.host.clone().unwrap_or_else(|| "127.0.0.1".into()), port),
        None => {
            let listener = TcpListener::bind("127.0.0.1:0").context("cannot open the generator's socket")?;
            let pace = generator::Pace {
                rate: args.lines_per_sec as f64,
                count: None,
            };
            let addr = generator::serve(listener, generator::Kind::Words, pace, Arc::clone(&stop))?;
            ("127.0.0.1".into(), addr.port())
        }
    };
    let presses = install_ctrl_c()?;

    let mut builder = StreamingContext::builder(milliseconds(args.interval_ms)).workers(args.workers as usize);
    if let Some(ui_port) = args.ui_port {
        builder = builder.ui_port(ui_port).ui_host(&args.ui_host);
    }
    let ssc = builder.build()?;
    let lines = ssc.socket_text_stream(&host, port);
    let counts = lines
        .flat_map(|l: String| l.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .map(|w| (w, 1u64))
        .reduce_by_key(|a, b| a + b);
    counts.print()?;
    // A one-line live status on a terminal (none when the output goes elsewhere) and the batch
    // report come from a listener, so that the job is the same with them as without.
    let status = Arc::new(Status::default());
    let live = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    if live || args.report {
        ssc.add_streaming_listener(BatchWatch {
            status: Arc::clone(&status),
            report: args.report,
        });
    }
    ssc.start()?;
    if let Some(address) = ssc.ui_address() {
        eprintln!("Streaming UI: http://{address}/");
    }
    let deadline = Instant::now() + StdDuration::from_millis(args.batches * args.interval_ms);
    let mut next_status = Instant::now();
    while Instant::now() < deadline && presses.load(Ordering::Acquire) == 0 {
        if ssc.await_termination_or_timeout(milliseconds(50))? {
            break;
        }
        if live && Instant::now() >= next_status {
            next_status += StdDuration::from_millis(500);
            let rate = status.records.load(Ordering::Relaxed) as f64 * 1000.0 / args.interval_ms as f64;
            eprint!(
                "\r\x1b[2K{} batches, {rate:.0} lines/s, delay {} ms",
                status.batches.load(Ordering::Relaxed),
                status.delay_ms.load(Ordering::Relaxed)
            );
        }
    }
    if live {
        eprintln!();
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
fn gen_command(command: &GenCommand) -> anyhow::Result<()> {
    let common = match command {
        GenCommand::Socket(a) => &a.common,
        GenCommand::Files(a) => &a.common,
    };
    let kind = generator::Kind::parse(&common.kind)?;
    let stop = Arc::new(AtomicBool::new(false));
    let presses = install_ctrl_c()?;
    {
        let (flag, seconds) = (Arc::clone(&stop), common.seconds);
        std::thread::spawn(move || {
            let until = seconds.map(|s| Instant::now() + StdDuration::from_secs_f64(s));
            while presses.load(Ordering::Acquire) == 0 && until.is_none_or(|u| Instant::now() < u) {
                std::thread::sleep(StdDuration::from_millis(20));
            }
            flag.store(true, Ordering::Release);
        });
    }
    match command {
        GenCommand::Socket(a) => {
            let listener =
                TcpListener::bind((a.host.as_str(), a.port)).with_context(|| format!("cannot listen on {}:{}", a.host, a.port))?;
            let pace = generator::Pace {
                rate: a.rate,
                count: a.count,
            };
            let addr = if a.acknowledged {
                generator::serve_acknowledged(listener, kind, pace, Arc::clone(&stop))?
            } else {
                generator::serve(listener, kind, pace, Arc::clone(&stop))?
            };
            eprintln!("ember gen: serving {} lines/s per client on {addr}", pace.rate);
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(StdDuration::from_millis(20));
            }
            Ok(())
        }
        GenCommand::Files(a) => {
            let pace = generator::Pace {
                rate: a.rate,
                count: a.count,
            };
            let written = generator::write_files(&a.dir, kind, a.lines_per_file, a.distinct, pace, &stop)?;
            eprintln!(
                "ember gen: wrote {written} files of {} lines into {}",
                a.lines_per_file,
                a.dir.display()
            );
            Ok(())
        }
    }
}

/// Exit codes: 0 done, 1 the job failed, 2 a usage error (one line on stderr); help and
/// version print to stdout and exit 0.
fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if !error.use_stderr() => {
            // --help and --version.
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            // clap's message up to its usage hint, on one line.
            let text = error.render().to_string();
            let message: Vec<&str> = text.lines().map(str::trim).take_while(|l| !l.is_empty()).collect();
            eprintln!("{} (see ember --help)", message.join(" "));
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let result = match &cli.command {
        Command::Wordcount(args) => wordcount(args),
        Command::QueueWordcount => queue_wordcount(),
        Command::Gen(command) => gen_command(command),
        Command::Cluster(args) => install_ctrl_c().and_then(|presses| supervisor::run(args, &presses)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ember: {error:#}");
            ExitCode::FAILURE
        }
    }
}
