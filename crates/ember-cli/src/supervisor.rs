//! `ember cluster`: starts the processes of a job as a cluster, on this machine or on the hosts
//! of a host file, and brings the whole cluster back when one of them dies (timely is
//! fail-stop: the others stop too), under a restart strategy like Flink's.
//!
//! With `--hosts FILE`, each line of the file is a host: the address its processes listen on
//! (and the others reach them at), then optionally the command that runs a program there, for
//! example `10.0.0.2 ssh -o BatchMode=yes ember@worker-2` or `10.200.0.2 ip netns exec
//! ember-b`. Process `i` runs on host `i mod hosts`. Without a command a process runs on this
//! machine. Through `ssh`, the environment is set in the remote command, except the secret,
//! which goes through the connection's input (never on a command line); a remote process whose
//! connection is closed loses its peers and exits (timely is fail-stop). Their ports are fixed
//! (`--base-port`, moved on at every start so that a killed process's port is never reused at
//! once); on this machine alone, free ports are picked.
//!
//! Each process gets its place through the environment, as `python -m ember.launch` gives it:
//! `EMBER_CLUSTER_PROCESS` (its index), `EMBER_CLUSTER_ADDRESSES` (every process's `host:port`),
//! `EMBER_CLUSTER_CONTROL` (process 0's control plane) and `EMBER_CLUSTER_SECRET` (the one in the
//! supervisor's environment, else a fresh random secret for this run, that every connection
//! between the processes must prove; never printed), and with `--tls` `EMBER_CLUSTER_TLS=1`
//! (TLS on those connections). A Rust program reads them with `StreamingContextBuilder::from_args` (or
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
    /// Processes to start [default: one per host of `--hosts`, else 2].
    #[arg(short = 'n', long, value_parser = clap::value_parser!(u64).range(1..=256))]
    processes: Option<u64>,
    /// The address the processes listen on (this machine's loopback by default).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// A file of hosts, one a line: `ADDRESS [COMMAND...]` (see above); `#` starts a comment.
    #[arg(long)]
    hosts: Option<std::path::PathBuf>,
    /// The lowest port of the processes on the hosts of `--hosts`.
    #[arg(long, default_value_t = 17000)]
    base_port: u16,
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
    /// TLS on every connection between the processes (`EMBER_CLUSTER_TLS=1` in each one's
    /// environment; a Rust program needs the `tls` feature of the `ember` crate).
    #[arg(long)]
    tls: bool,
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

/// Where processes run: an address, and the command that starts a program there (none: here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    address: String,
    launcher: Vec<String>,
}

impl Host {
    fn describe(&self) -> String {
        match self.launcher.is_empty() {
            true => self.address.clone(),
            false => format!("{} (via `{}`)", self.address, self.launcher.join(" ")),
        }
    }
}

/// The hosts of a host file; every address must resolve.
fn read_hosts(path: &std::path::Path) -> anyhow::Result<Vec<Host>> {
    use std::net::ToSocketAddrs;
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the host file {}", path.display()))?;
    let mut hosts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace().map(str::to_owned);
        let Some(address) = words.next() else { continue };
        if let Err(e) = (address.as_str(), 0u16).to_socket_addrs() {
            bail!("host {address} ({} line {}) cannot be resolved: {e}", path.display(), i + 1);
        }
        hosts.push(Host {
            address,
            launcher: words.collect(),
        });
    }
    if hosts.is_empty() {
        bail!("the host file {} names no host", path.display());
    }
    Ok(hosts)
}

/// `text` quoted for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The command that runs `program` on `host` with `env`, and whether the secret goes to its
/// input (through `ssh`) rather than into its environment.
fn command_on(host: &Host, program: &[String], env: &[(&str, String)]) -> (Command, bool) {
    let Some((launcher, launcher_args)) = host.launcher.split_first() else {
        let mut command = Command::new(&program[0]);
        command.args(&program[1..]).envs(env.iter().map(|(k, v)| (*k, v)));
        return (command, false);
    };
    let mut command = Command::new(launcher);
    command.args(launcher_args);
    let through_ssh = std::path::Path::new(launcher).file_name().is_some_and(|n| n == "ssh");
    if through_ssh {
        // One command line for the remote shell: the secret is read from the input first.
        let assignments: Vec<String> = env.iter().map(|(k, v)| format!("{k}={}", shell_quote(v))).collect();
        let words: Vec<String> = program.iter().map(|w| shell_quote(w)).collect();
        command.arg(format!(
            "read -r EMBER_CLUSTER_SECRET && export EMBER_CLUSTER_SECRET && exec env {} {}",
            assignments.join(" "),
            words.join(" ")
        ));
    } else {
        command.args(program).envs(env.iter().map(|(k, v)| (*k, v)));
    }
    (command, through_ssh)
}

/// One running process of the cluster.
struct Process {
    index: usize,
    /// Where it runs, for messages.
    host: String,
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

    // The secret in the supervisor's own environment (one a user pins for several supervisors),
    // else a fresh one.
    let secret = match ember::auth::ClusterSecret::from_env().map_err(anyhow::Error::msg)? {
        Some(secret) => secret,
        None => ember::auth::ClusterSecret::generate().map_err(anyhow::Error::msg)?,
    };
    let secret = String::from_utf8(secret.expose().to_vec()).context("the generated secret is hex")?;
    let hosts = match &args.hosts {
        Some(path) => read_hosts(path)?,
        None => vec![Host {
            address: args.host.clone(),
            launcher: Vec::new(),
        }],
    };
    let mut n = args
        .processes
        .map_or(if args.hosts.is_some() { hosts.len() } else { 2 }, |n| n as usize);
    let mut starts: usize = 0;
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
        // Fresh ports for every start: the count may have changed, and a killed process's port
        // may still be taken.
        let host_of = |index: usize| &hosts[index % hosts.len()];
        let ports: Vec<u16> = if args.hosts.is_none() {
            free_ports(&args.host, n + 1)?
        } else {
            let first = u32::from(args.base_port) + (starts % 64 * (n + 1)) as u32;
            let last = first + n as u32;
            if last > u32::from(u16::MAX) {
                bail!("--base-port {} leaves too few ports for {n} processes", args.base_port);
            }
            (first..=last).map(|p| p as u16).collect()
        };
        starts += 1;
        let addresses: Vec<String> = (0..n).map(|i| format!("{}:{}", host_of(i).address, ports[i])).collect();
        let control = format!("{}:{}", host_of(0).address, ports[n]);
        let mut processes = Vec::with_capacity(n);
        for index in 0..n {
            let host = host_of(index);
            let mut env = vec![
                ("EMBER_CLUSTER_PROCESS", index.to_string()),
                ("EMBER_CLUSTER_ADDRESSES", addresses.join(",")),
                ("EMBER_CLUSTER_CONTROL", control.clone()),
            ];
            if args.tls {
                env.push((ember::transport::TLS_ENV, "1".to_owned()));
            }
            let (mut command, secret_on_input) = command_on(host, &args.program, &env);
            if !secret_on_input {
                command.env("EMBER_CLUSTER_SECRET", &secret);
            }
            command
                .stdin(if secret_on_input { Stdio::piped() } else { Stdio::null() })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = match command.spawn() {
                Ok(child) => child,
                Err(e) => {
                    stop_all(&mut processes, Duration::from_millis(args.grace_ms));
                    let what = host.launcher.first().unwrap_or(&args.program[0]);
                    let on = if args.hosts.is_some() {
                        format!(" on {}", host.describe())
                    } else {
                        String::new()
                    };
                    bail!("cannot start process {index}{on}: {what} ({e})");
                }
            };
            if let Some(mut input) = child.stdin.take() {
                // Dropped at once: the remote side reads one line, then sees the end.
                let _ = input.write_all(format!("{secret}\n").as_bytes());
            }
            let prefix = format!("[p{index}] ");
            let readers = vec![
                prefix_lines(child.stdout.take().expect("piped stdout"), prefix.clone(), false),
                prefix_lines(child.stderr.take().expect("piped stderr"), prefix, true),
            ];
            processes.push(Process {
                index,
                host: host.describe(),
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
        let on = if args.hosts.is_some() {
            format!(
                " on {}",
                processes.iter().find(|p| p.index == index).map_or("?", |p| p.host.as_str())
            )
        } else {
            String::new()
        };
        let why = format!("process {index}{on} {}", describe(status));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_file_names_addresses_and_how_to_run_there_and_a_bad_host_is_named() {
        let dir = std::env::temp_dir().join(format!("ember-hosts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hosts");
        std::fs::write(
            &file,
            "# the cluster\n127.0.0.1\n\n127.0.0.2 ip netns exec ember-b  # a namespace\n",
        )
        .unwrap();
        let hosts = read_hosts(&file).unwrap();
        assert_eq!(
            hosts[0],
            Host {
                address: "127.0.0.1".into(),
                launcher: vec![]
            }
        );
        assert_eq!(hosts[1].launcher, ["ip", "netns", "exec", "ember-b"]);
        std::fs::write(&file, "127.0.0.1\nno-such-host.invalid ssh x\n").unwrap();
        let error = read_hosts(&file).unwrap_err().to_string();
        assert!(error.contains("host no-such-host.invalid") && error.contains("line 2"), "{error}");
        std::fs::write(&file, "# nothing\n").unwrap();
        assert!(read_hosts(&file).unwrap_err().to_string().contains("names no host"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn through_ssh_the_environment_is_in_the_remote_command_and_the_secret_is_not() {
        let host = Host {
            address: "10.0.0.2".into(),
            launcher: vec!["ssh".into(), "-o".into(), "BatchMode=yes".into(), "w2".into()],
        };
        let program = vec!["/opt/job".to_string(), "it's".to_string()];
        let (command, secret_on_input) = command_on(&host, &program, &[("EMBER_CLUSTER_PROCESS", "1".into())]);
        assert!(secret_on_input);
        let args: Vec<String> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(&args[..3], ["-o", "BatchMode=yes", "w2"]);
        assert_eq!(
            args[3],
            "read -r EMBER_CLUSTER_SECRET && export EMBER_CLUSTER_SECRET && exec env EMBER_CLUSTER_PROCESS='1' '/opt/job' 'it'\\''s'"
        );
        let netns = Host {
            address: "10.0.0.3".into(),
            launcher: vec!["ip".into(), "netns".into(), "exec".into(), "b".into()],
        };
        let (command, secret_on_input) = command_on(&netns, &program, &[]);
        assert!(!secret_on_input);
        assert_eq!(command.get_program(), "ip");
        let args: Vec<String> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["netns", "exec", "b", "/opt/job", "it's"]);
    }
}
