//! A peer that goes silent without closing anything is lost on the heartbeats, and the survivor
//! is done soon after: `await_termination` returns `Error::Cluster` naming it within about 4 s,
//! the process exits within 1 s of that (within 4.5 s of the silence with the default 250 ms
//! heartbeat and 3 s peer timeout), the context says it is stopped, `stop` afterwards is a no-op
//! returning Ok, dropping the context warns nothing, and the loss is logged as one ERROR line.
//!
//! Two ways to go silent, each on a 2-process cluster with 2 workers per process:
//! - a frozen peer: process 1 gets SIGSTOP, its sockets stay open and its kernel still
//!   acknowledges what process 0 sends;
//! - a silent network: every connection between the processes (timely's and the control
//!   plane's) runs through a TCP proxy in this test process, which at a chosen moment keeps
//!   reading both ends and throws the bytes away, writing and closing nothing: traffic is
//!   dropped, not refused. Both processes must then report the other as lost.
//!
//! The processes are this test binary run again with `EMBER_SILENT_CHILD` set, executing only
//! `silent_peer_child`, which prints what it sees as `EMBER-...` lines on stdout and logs at
//! WARN and above on stderr.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration as StdDuration, Instant, SystemTime, UNIX_EPOCH};

use ember::prelude::*;

/// What the issue promises: the survivor's process ends within this long of the silence...
const SILENCE_TO_EXIT_MS: u64 = 4500;
/// ...and within this long of `await_termination` returning.
const RETURN_TO_EXIT_MS: u64 = 1000;
/// Batches each process runs before it is silenced, so the job is well under way.
const BATCHES_BEFORE_SILENCE: usize = 5;
const INTERVAL_MS: u64 = 100;
/// The exit code of a child whose `await_termination` returned, whatever it returned.
const CHILD_EXIT: i32 = 3;

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

// ---------------------------------------------------------------------------------------------
// The child: one process of the cluster.
// ---------------------------------------------------------------------------------------------

/// Writes one line to stdout and flushes it, so the parent sees it even if the process is
/// frozen or killed right after.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Runs as one process of the cluster when `EMBER_SILENT_CHILD` is "process;address,address;
/// control address": a word count on the system clock until the cluster fails, then reports
/// what `await_termination`, `get_state`, `stop` and the drop did, and exits with
/// `CHILD_EXIT`.
#[test]
fn silent_peer_child() {
    let Ok(spec) = std::env::var("EMBER_SILENT_CHILD") else { return };
    // libtest has printed `test silent_peer_child ... ` without a newline.
    say("");
    std::thread::spawn(|| {
        std::thread::sleep(StdDuration::from_secs(30));
        say("EMBER-WATCHDOG");
        std::process::exit(90);
    });
    // The engine logs the way a program using ember would (ember-cli's default level): the
    // parent counts the ERROR lines and looks for the warning of a context dropped unstopped.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .init();
    let mut parts = spec.split(';');
    let process: usize = parts.next().unwrap().parse().unwrap();
    let addresses = parts.next().unwrap().split(',').map(str::to_owned).collect();
    let control = parts.next().unwrap();
    let ssc = StreamingContext::builder(milliseconds(INTERVAL_MS))
        .workers(2)
        .cluster(process, addresses)
        .cluster_control_address(control)
        .cluster_start_timeout(seconds(10))
        .build()
        .unwrap_or_else(|e| panic!("build: {e}"));
    // A minute of input; the job runs until the cluster fails.
    let input: Vec<Option<Vec<String>>> = (0..600u64)
        .map(|i| Some((0..10).map(|j| format!("w{}", (i * 3 + j) % 13)).collect()))
        .collect();
    let counts = ssc.replay_stream(input, 4).map(|w| (w, 1u64)).reduce_by_key(|a, b| a + b);
    let counted = Arc::new(AtomicU64::new(0));
    let total = Arc::clone(&counted);
    counts
        .foreach_rdd(move |batch, _| {
            total.fetch_add(batch.iter().map(|(_, n)| n).sum(), Ordering::AcqRel);
        })
        .unwrap();
    // Every worker runs this for every batch: each process can say how far it got.
    let seen = Mutex::new(BTreeSet::new());
    counts
        .register_output_operation_per_worker("batches", move |batch| {
            let time = batch.time().milliseconds();
            if seen.lock().unwrap_or_else(|e| e.into_inner()).insert(time) {
                say(&format!("EMBER-BATCH {time}"));
            }
            Ok(())
        })
        .unwrap();
    ssc.start().unwrap_or_else(|e| panic!("start: {e}"));
    say("EMBER-STARTED");
    let awaited = ssc.await_termination();
    let returned_ms = unix_ms();
    let outcome = match &awaited {
        Ok(()) => "ok".to_owned(),
        Err(error @ ember::Error::Cluster(_)) => format!("cluster {error}"),
        Err(error) => format!("other {error}"),
    };
    say(&format!("EMBER-AWAIT-RETURNED {returned_ms} {outcome}"));
    say(&format!("EMBER-STATE {:?}", ssc.get_state()));
    say(&format!("EMBER-STOP-GRACEFUL {:?}", ssc.stop(true)));
    say(&format!("EMBER-STOP {:?}", ssc.stop(false)));
    say(&format!("EMBER-COUNTED {}", counted.load(Ordering::Acquire)));
    drop(ssc);
    say("EMBER-DROPPED");
    std::process::exit(CHILD_EXIT);
}

// ---------------------------------------------------------------------------------------------
// The parent: the processes, the proxy, and what they printed.
// ---------------------------------------------------------------------------------------------

/// The two tests measure time bounds on a small machine: they run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn in_parent() -> bool {
    std::env::var("EMBER_SILENT_CHILD").is_err()
}

/// A free port on 127.0.0.1 (free when this returns; the processes bind it soon after).
fn free_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

fn read_into<R: Read + Send + 'static>(from: R, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut line = String::new();
        while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
            into.lock().unwrap_or_else(|e| e.into_inner()).push_str(&line);
            line.clear();
        }
    })
}

/// One process of the cluster, its output collected as it comes. Dropping it kills it (a
/// stopped process too).
struct Process {
    index: usize,
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
    /// When this test saw it exited (ms since the epoch, at most 10 ms late).
    exited_ms: Option<u64>,
}

impl Process {
    fn spawn(index: usize, addresses: &[String; 2], control: &str) -> Process {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "silent_peer_child", "--nocapture", "--test-threads=1"])
            .env("EMBER_SILENT_CHILD", format!("{index};{};{control}", addresses.join(",")))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (stdout, stderr) = (Arc::default(), Arc::default());
        let readers = vec![
            read_into(child.stdout.take().unwrap(), Arc::clone(&stdout)),
            read_into(child.stderr.take().unwrap(), Arc::clone(&stderr)),
        ];
        Process {
            index,
            child,
            stdout,
            stderr,
            readers,
            status: None,
            exited_ms: None,
        }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn batches(&self) -> usize {
        self.stdout().lines().filter(|l| l.starts_with("EMBER-BATCH ")).count()
    }

    fn exited(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.child.try_wait().unwrap();
            if self.status.is_some() {
                self.exited_ms = Some(unix_ms());
            }
        }
        self.status.is_some()
    }

    /// The text after `marker` on the line that starts with it.
    fn said(&self, marker: &str) -> Option<String> {
        self.stdout()
            .lines()
            .find_map(|l| l.strip_prefix(marker).map(|rest| rest.trim().to_owned()))
    }

    fn describe(&self) -> String {
        format!(
            "--- process {} (status {:?}) stdout:\n{}--- stderr:\n{}---",
            self.index,
            self.status,
            self.stdout(),
            self.stderr()
        )
    }

    fn freeze(&self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-STOP", &pid]).status().unwrap();
        assert!(status.success(), "kill -STOP {pid} failed: {status}");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if !self.exited() {
            // SIGKILL ends a stopped process too.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

/// Waits until every process has printed `BATCHES_BEFORE_SILENCE` batches (at most 20 s).
fn wait_for_batches(processes: &mut [Process]) {
    let deadline = Instant::now() + StdDuration::from_secs(20);
    loop {
        if processes.iter().all(|p| p.batches() >= BATCHES_BEFORE_SILENCE) {
            return;
        }
        let stalled = Instant::now() >= deadline || processes.iter_mut().any(Process::exited);
        if stalled {
            let report: Vec<String> = processes.iter().map(Process::describe).collect();
            panic!(
                "the cluster did not run {BATCHES_BEFORE_SILENCE} batches on every process:\n{}",
                report.join("\n")
            );
        }
        std::thread::sleep(StdDuration::from_millis(10));
    }
}

/// Polls every 10 ms, so that each exit time is seen at most 10 ms late, until every process
/// has exited (at most 10 s, `how` says after what); then their output is complete.
fn wait_for_exits(processes: &mut [&mut Process], how: &str) {
    let deadline = Instant::now() + StdDuration::from_secs(10);
    while !processes.iter_mut().all(|p| p.exited()) {
        if Instant::now() >= deadline {
            let report: Vec<String> = processes.iter().map(|p| p.describe()).collect();
            panic!("not every process exited within 10 s of {how}:\n{}", report.join("\n"));
        }
        std::thread::sleep(StdDuration::from_millis(10));
    }
    for process in processes {
        for reader in process.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

/// Asserts that `survivor`, which has exited after losing `lost` to silence at `silent_ms`,
/// had `await_termination` return `Error::Cluster` naming it on the heartbeats, exited in time
/// with its context stopped, and logged the loss once; prints the figures.
fn assert_lost_on_heartbeats(survivor: &Process, lost: usize, silent_ms: u64, how: &str) {
    assert_lost(survivor, lost, silent_ms, how, true);
}

/// What a survivor must show after losing process `lost` at `silent_ms`: on the heartbeats
/// when nothing was closed (`on_heartbeats`), or at once when the peer's connections broke.
fn assert_lost(survivor: &Process, lost: usize, silent_ms: u64, how: &str, on_heartbeats: bool) {
    let said = survivor.describe();
    let returned = survivor
        .said("EMBER-AWAIT-RETURNED ")
        .unwrap_or_else(|| panic!("await_termination did not return:\n{said}"));
    let (returned_ms, outcome) = returned.split_once(' ').unwrap();
    let returned_ms: u64 = returned_ms.parse().unwrap();
    let exited_ms = survivor.exited_ms.unwrap();
    let (to_return, to_exit) = (returned_ms.saturating_sub(silent_ms), exited_ms.saturating_sub(returned_ms));
    println!(
        "{how}: process {} returned from await_termination {to_return} ms after it, exited {to_exit} ms later \
         ({} ms in all): {outcome}",
        survivor.index,
        to_return + to_exit
    );
    assert!(
        outcome.starts_with("cluster ") && outcome.contains(&format!("lost process {lost} ")),
        "await_termination should return Error::Cluster naming process {lost}:\n{said}"
    );
    assert!(
        outcome.contains("no heartbeat for") == on_heartbeats,
        "the loss should be seen {} :\n{said}",
        if on_heartbeats {
            "on the heartbeats (nothing was closed)"
        } else {
            "at once (the connections broke)"
        }
    );
    assert!(
        to_exit <= RETURN_TO_EXIT_MS,
        "the process exited {to_exit} ms after await_termination returned (at most {RETURN_TO_EXIT_MS}):\n{said}"
    );
    assert!(
        to_return + to_exit <= SILENCE_TO_EXIT_MS,
        "the process exited {} ms after {how} (at most {SILENCE_TO_EXIT_MS}):\n{said}",
        to_return + to_exit
    );
    assert_eq!(survivor.status.unwrap().code(), Some(CHILD_EXIT), "{said}");
    assert_eq!(survivor.said("EMBER-STATE ").as_deref(), Some("Stopped"), "{said}");
    assert_eq!(survivor.said("EMBER-STOP-GRACEFUL ").as_deref(), Some("Ok(())"), "{said}");
    assert_eq!(survivor.said("EMBER-STOP ").as_deref(), Some("Ok(())"), "{said}");
    assert!(survivor.said("EMBER-DROPPED").is_some(), "{said}");
    let stderr = survivor.stderr();
    assert!(
        !stderr.contains("dropped without stop"),
        "dropping the context after Error::Cluster warned that it was not stopped:\n{said}"
    );
    // The fmt subscriber's line: `<timestamp> ERROR <target>: <message> <fields>`.
    let errors: Vec<&str> = stderr.lines().filter(|l| l.split_whitespace().nth(1) == Some("ERROR")).collect();
    assert!(
        errors.len() == 1 && errors[0].contains(&format!("lost process {lost} ")),
        "the loss should be logged as one ERROR line naming process {lost}, found {}:\n{said}",
        errors.len()
    );
    assert!(!stderr.contains("panicked"), "a panic was printed:\n{said}");
}

/// Process 0 runs the word count's `foreach_rdd` (on worker 0): it counted words before the
/// silence, so the job was really running.
fn assert_counted_words(process_0: &Process) {
    let counted = process_0.said("EMBER-COUNTED ");
    assert!(
        counted.is_some_and(|n| n != "0"),
        "process 0 counted no words:\n{}",
        process_0.describe()
    );
}

/// A 2-process cluster connected directly (no proxy), once both have run a few batches.
fn running_cluster() -> [Process; 2] {
    let addresses = [free_address(), free_address()];
    let control = free_address();
    let mut processes = [Process::spawn(0, &addresses, &control), Process::spawn(1, &addresses, &control)];
    wait_for_batches(&mut processes);
    processes
}

#[test]
fn a_frozen_peer_is_lost_on_the_heartbeats_and_the_survivor_exits_within_a_second_of_await() {
    if !in_parent() {
        return;
    }
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut processes = running_cluster();
    let frozen_ms = unix_ms();
    processes[1].freeze();
    let how = "the freeze of process 1";
    wait_for_exits(&mut [&mut processes[0]], how);
    assert_lost_on_heartbeats(&processes[0], 1, frozen_ms, how);
    assert_counted_words(&processes[0]);
}

/// A peer killed with SIGKILL: its connections break, so the survivor sees the loss at once;
/// timely's threads panic on the broken connections, and still the survivor logs one ERROR
/// line, prints no panic and ends with its error (not by a signal).
#[test]
fn a_killed_peer_is_one_error_line_and_the_survivor_exits_with_its_error() {
    if !in_parent() {
        return;
    }
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut processes = running_cluster();
    let killed_ms = unix_ms();
    let _ = processes[1].child.kill();
    let _ = processes[1].child.wait();
    let how = "the SIGKILL of process 1";
    wait_for_exits(&mut [&mut processes[0]], how);
    assert_lost(&processes[0], 1, killed_ms, how, false);
    assert_counted_words(&processes[0]);
}

/// A TCP proxy with one switch: forwarding both ways, or silent. Silent, it keeps reading both
/// ends and drops the bytes; it writes nothing and closes nothing, not even when an end closes
/// (a peer behind a dead network never hears of it).
struct Proxy {
    address: String,
    forwarding: Arc<AtomicBool>,
    running: Arc<AtomicBool>,
    /// Both ends of every connection, to close them when the proxy is dropped.
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards every connection to `target`.
    fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let proxy = Proxy {
            address: listener.local_addr().unwrap().to_string(),
            forwarding: Arc::new(AtomicBool::new(true)),
            running: Arc::new(AtomicBool::new(true)),
            streams: Arc::default(),
        };
        let (forwarding, running, streams) = (
            Arc::clone(&proxy.forwarding),
            Arc::clone(&proxy.running),
            Arc::clone(&proxy.streams),
        );
        std::thread::spawn(move || {
            while running.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Some(server) = connect_within(&target, StdDuration::from_secs(10)) else {
                            // The client sees its connection end and retries, as it would had
                            // the target refused it.
                            continue;
                        };
                        let mut all = streams.lock().unwrap_or_else(|e| e.into_inner());
                        all.extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                        pump(client.try_clone().unwrap(), server.try_clone().unwrap(), Arc::clone(&forwarding));
                        pump(server, client, Arc::clone(&forwarding));
                    }
                    Err(_) => std::thread::sleep(StdDuration::from_millis(5)),
                }
            }
        });
        proxy
    }

    fn silence(&self) {
        self.forwarding.store(false, Ordering::Release);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Release);
        for stream in self.streams.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Connects to `target`, retrying until `timeout`: the proxy may be reached before the
/// process behind it listens.
fn connect_within(target: &str, timeout: StdDuration) -> Option<TcpStream> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(stream) = TcpStream::connect(target) {
            stream.set_nodelay(true).unwrap();
            return Some(stream);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(StdDuration::from_millis(10));
    }
}

/// Copies `from` to `to` while `forwarding`; drops what it reads once not.
fn pump(mut from: TcpStream, mut to: TcpStream, forwarding: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            let n = from.read(&mut buffer).unwrap_or(0);
            let forward = forwarding.load(Ordering::Acquire);
            if n == 0 {
                if forward {
                    let _ = to.shutdown(Shutdown::Write);
                }
                return;
            }
            if forward && to.write_all(&buffer[..n]).is_err() {
                return;
            }
        }
    });
}

#[test]
fn a_silent_network_loses_each_process_for_the_other_and_both_exit_within_a_second_of_await() {
    if !in_parent() {
        return;
    }
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Each process binds its own real address; the one connection timely makes between them
    // (process 1 connects to process 0's address, see ember-engine's mesh.rs) and process 1's
    // control connection go to proxies in front of process 0's addresses.
    let (mesh_0, mesh_1, control) = (free_address(), free_address(), free_address());
    let mesh_proxy = Proxy::start(mesh_0.clone());
    let control_proxy = Proxy::start(control.clone());
    let mut processes = [
        Process::spawn(0, &[mesh_0, mesh_1.clone()], &control),
        Process::spawn(1, &[mesh_proxy.address.clone(), mesh_1], &control_proxy.address),
    ];
    wait_for_batches(&mut processes);
    let silent_ms = unix_ms();
    mesh_proxy.silence();
    control_proxy.silence();
    let how = "the network's silence";
    let [process_0, process_1] = &mut processes;
    wait_for_exits(&mut [process_0, process_1], how);
    assert_lost_on_heartbeats(&processes[0], 1, silent_ms, how);
    assert_lost_on_heartbeats(&processes[1], 0, silent_ms, how);
    assert_counted_words(&processes[0]);
}
