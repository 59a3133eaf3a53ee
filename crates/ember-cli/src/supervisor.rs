//! `ember cluster`: starts the processes of a job as a cluster on this machine and brings the
//! whole cluster back when one of them dies (timely is fail-stop: the others stop too), under
//! a restart strategy like Flink's.
//!
//! Each process gets its place through the environment, as `python -m ember.launch` gives it:
//! `EMBER_CLUSTER_PROCESS` (its index), `EMBER_CLUSTER_ADDRESSES` (every process's `host:port`),
//! `EMBER_CLUSTER_CONTROL` (process 0's control plane) and `EMBER_CLUSTER_SECRET` (the one in the
//! supervisor's environment, else a fresh random secret for this run, that every connection
//! between the processes must prove; never printed). A Rust program reads them with `StreamingContextBuilder::from_args` (or
//! `cluster_from_env`), a Python program with `StreamingContext`. The job resumes from its last
//! committed checkpoint on each restart because it is written with `get_or_create`.
//!
//! Every line a process prints is prefixed with `[pI]`. When a process exits with an error (or
//! is killed), the others are stopped (SIGTERM, then SIGKILL after the grace period), and all
//! of them are started again after the strategy's delay, until the strategy gives up; then the
//! supervisor exits with 1, saying why. When every process exits with 0, so does the
//! supervisor. With `--scale-file`, writing another count into that file stops the processes and
//! starts that many (a rescale from the last checkpoint, not counted as a failure). SIGTERM or Ctrl-C to the supervisor stops the processes with SIGTERM (a second
//! Ctrl-C kills them) and exits.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// `ember cluster`'s arguments.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Processes to start.
    #[arg(short = 'n', long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=256))]
    processes: u64,
    /// The address the processes listen on (this machine's loopback by default).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Restarts allowed (fixed-delay strategy, Flink's `restart-strategy.fixed-delay.attempts`).
    #[arg(long, default_value_t = 3)]
    restart_attempts: u64,
    /// Delay before each restart, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    restart_delay_ms: u64,
    /// Failure-rate strategy instead: at most this many failures within `--failure-interval-s`
    /// (Flink's `failure-rate.max-failures-per-interval`); `--restart-attempts` is then unused.
    #[arg(long)]
    max_failures_per_interval: Option<u64>,
    /// The failure-rate strategy's interval, in seconds.
    #[arg(long, default_value_t = 60, requires = "max_failures_per_interval")]
    failure_interval_s: u64,
    /// How long a process may take to stop after SIGTERM before it is killed, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    grace_ms: u64,
    /// A file holding the number of processes wanted (rescaling, as a Kubernetes replica count
    /// is edited): when its number differs from the running count, the processes are stopped
    /// and that many are started, resuming from the job's last checkpoint. Not a failure.
    #[arg(long)]
    scale_file: Option<std::path::PathBuf>,
    /// The program and its arguments (after `--`).
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    program: Vec<String>,
}

/// When the cluster is started again after a failure.
#[derive(Debug)]
enum Strategy {
    /// At most `attempts` restarts in all.
    FixedDelay { attempts: u64 },
    /// At most `max` failures within any `interval`.
    FailureRate { max: u64, interval: Duration },
}

impl Strategy {
    /// Whether the failures so far (their times) allow another restart; else why not.
    fn allows(&self, failures: &[Instant]) -> Result<(), String> {
        match self {
            Strategy::FixedDelay { attempts } => {
                let restarts = failures.len() as u64;
                if restarts > *attempts {
                    return Err(format!("the fixed-delay strategy allows {attempts} restarts and all were used"));
                }
            }
            Strategy::FailureRate { max, interval } => {
                let last = *failures.last().expect("a failure");
                let recent = failures.iter().filter(|t| last.duration_since(**t) <= *interval).count() as u64;
                if recent > *max {
                    return Err(format!(
                        "{recent} failures within {} s, more than the failure-rate strategy's {max}",
                        interval.as_secs()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One running process of the cluster.
struct Process {
    index: usize,
    child: Child,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Process {
    fn poll(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    fn signal(&self, signal: Signal) {
        if self.status.is_none() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), signal);
        }
    }

    /// Waits for the process, then for its output to be copied: at most a second, since a
    /// child the process left behind may hold its pipes open (its later lines are then still
    /// copied, but nobody waits for them).
    fn finish(&mut self) {
        if self.status.is_none() {
            self.status = self.child.wait().ok();
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline && self.readers.iter().any(|r| !r.is_finished()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        for reader in self.readers.drain(..).filter(|r| r.is_finished()) {
            let _ = reader.join();
        }
    }
}

/// Copies `from` line by line to the supervisor's `to`, each line prefixed with `prefix`.
fn prefix_lines<R: Read + Send + 'static>(from: R, prefix: String, to_stderr: bool) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if !line.ends_with(b"\n") {
                        line.push(b'\n');
                    }
                    let mut text = prefix.clone().into_bytes();
                    text.extend_from_slice(&line);
                    let _ = if to_stderr {
                        std::io::stderr().lock().write_all(&text)
                    } else {
                        std::io::stdout().lock().write_all(&text)
                    };
                }
            }
        }
    })
}

/// Free ports on `host`, all different.
fn free_ports(host: &str, count: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| std::net::TcpListener::bind((host, 0)).with_context(|| format!("cannot listen on {host}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr().context("a listener's address")?.port()))
        .collect()
}

/// How an exit status reads in a message.
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => format!("ended ({status})"),
    }
}

/// Runs the cluster until it succeeds, the strategy gives up, or the supervisor is stopped.
pub fn run(args: &ClusterArgs, presses: &Arc<AtomicUsize>) -> anyhow::Result<()> {
    let strategy = match args.max_failures_per_interval {
        Some(max) => Strategy::FailureRate {
            max,
            interval: Duration::from_secs(args.failure_interval_s),
        },
        None => Strategy::FixedDelay {
            attempts: args.restart_attempts,
        },
    };
    let mut n = args.processes as usize;
    // The secret in the supervisor's own environment (one a user pins for several supervisors),
    // else a fresh one.
    let secret = match ember::auth::ClusterSecret::from_env().map_err(anyhow::Error::msg)? {
        Some(secret) => secret,
        None => ember::auth::ClusterSecret::generate().map_err(anyhow::Error::msg)?,
    };
    let secret = String::from_utf8(secret.expose().to_vec()).context("the generated secret is hex")?;
    let mut failures: Vec<Instant> = Vec::new();
    let mut after_failure = false;
    let mut bad_scale: Option<String> = None;
    // A scale file that already asks for a count starts with it.
    if let Some(path) = &args.scale_file
        && let Some(wanted) = wanted_scale(path, &mut bad_scale)
    {
        n = wanted;
    }
    loop {
        if after_failure {
            eprintln!(
                "ember cluster: restarting all {n} processes in {} ms (restart {})",
                args.restart_delay_ms,
                failures.len()
            );
            std::thread::sleep(Duration::from_millis(args.restart_delay_ms));
        }
        // Fresh ports for every start: the count may have changed, and nothing keeps them.
        let ports = free_ports(&args.host, n + 1)?;
        let addresses: Vec<String> = ports[..n].iter().map(|p| format!("{}:{p}", args.host)).collect();
        let control = format!("{}:{}", args.host, ports[n]);
        let mut processes = Vec::with_capacity(n);
        for index in 0..n {
            let mut command = Command::new(&args.program[0]);
            command
                .args(&args.program[1..])
                .env("EMBER_CLUSTER_PROCESS", index.to_string())
                .env("EMBER_CLUSTER_ADDRESSES", addresses.join(","))
                .env("EMBER_CLUSTER_CONTROL", &control)
                .env("EMBER_CLUSTER_SECRET", &secret)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = match command.spawn() {
                Ok(child) => child,
                Err(e) => {
                    stop_all(&mut processes, Duration::from_millis(args.grace_ms));
                    bail!("cannot start process {index}: {} ({e})", args.program[0]);
                }
            };
            let prefix = format!("[p{index}] ");
            let readers = vec![
                prefix_lines(child.stdout.take().expect("piped stdout"), prefix.clone(), false),
                prefix_lines(child.stderr.take().expect("piped stderr"), prefix, true),
            ];
            processes.push(Process {
                index,
                child,
                readers,
                status: None,
            });
        }
        // Until every process succeeded, one failed, the scale changed, or the supervisor is
        // stopped.
        let failed = loop {
            if let Some(path) = &args.scale_file
                && let Some(wanted) = wanted_scale(path, &mut bad_scale)
                && wanted != n
            {
                eprintln!("ember cluster: rescaling from {n} to {wanted} processes");
                stop_all(&mut processes, Duration::from_millis(args.grace_ms));
                n = wanted;
                break None;
            }
            if presses.load(Ordering::Acquire) > 0 {
                eprintln!("ember cluster: stopping the {n} processes");
                stop_all(&mut processes, Duration::from_millis(args.grace_ms));
                return Ok(());
            }
            let mut done = 0;
            let mut failed = None;
            for process in &mut processes {
                match process.poll() {
                    Some(status) if status.success() => done += 1,
                    Some(status) => {
                        failed = Some((process.index, status));
                        break;
                    }
                    None => {}
                }
            }
            if let Some(failed) = failed {
                break Some(failed);
            }
            if done == n {
                for process in &mut processes {
                    process.finish();
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let Some((index, status)) = failed else {
            after_failure = false;
            continue;
        };
        after_failure = true;
        let why = format!("process {index} {}", describe(status));
        eprintln!("ember cluster: {why}; stopping the others");
        stop_all(&mut processes, Duration::from_millis(args.grace_ms));
        failures.push(Instant::now());
        if let Err(limit) = strategy.allows(&failures) {
            bail!("giving up: {why}, and {limit}");
        }
    }
}

/// The process count `path` asks for, if it holds one (1 to 256); a bad content is reported
/// once (kept in `bad`) and ignored.
fn wanted_scale(path: &std::path::Path, bad: &mut Option<String>) -> Option<usize> {
    let text = std::fs::read_to_string(path).ok()?;
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=256).contains(&n) => {
            *bad = None;
            Some(n)
        }
        _ => {
            if bad.as_deref() != Some(text.as_str()) {
                eprintln!(
                    "ember cluster: {} holds {:?}, not a process count from 1 to 256; ignored",
                    path.display(),
                    text.trim()
                );
                *bad = Some(text);
            }
            None
        }
    }
}

/// Stops every process still running: SIGTERM, then SIGKILL after `grace`.
fn stop_all(processes: &mut [Process], grace: Duration) {
    for process in processes.iter() {
        process.signal(Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && processes.iter_mut().any(|p| p.poll().is_none()) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for process in processes.iter_mut() {
        process.signal(Signal::SIGKILL);
        process.finish();
    }
}
