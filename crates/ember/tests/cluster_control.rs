//! A 2-process cluster on loopback behaves as one program: processes started apart agree on
//! the batch times, a `stop` anywhere stops everyone, a lost process is reported by name,
//! different plans are refused at start, key groups are the same in every process, and with a
//! cluster secret strangers are turned away while a process with another secret cannot join.
//!
//! Each test starts this test binary again as the cluster's processes (`cluster_child` runs
//! a scenario when `EMBER_CLUSTER_PROCESS` is set) and reads what they print.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use ember::keys::{DEFAULT_KEY_GROUPS, KeySpace};
use ember::prelude::*;

/// Keys whose groups the parent and a child compare.
fn key_groups() -> Vec<(&'static str, u32)> {
    let space = KeySpace::new(DEFAULT_KEY_GROUPS, 4);
    vec![
        ("hello", space.group(&"hello")),
        ("spark", space.group(&"spark")),
        ("42u64", space.group(&42u64)),
        ("empty", space.group(&"")),
    ]
}

// ---------------------------------------------------------------------------------------------
// The child: one process of the cluster.
// ---------------------------------------------------------------------------------------------

/// Exit codes of a child that met something unexpected (0 means the scenario went as planned).
mod exit {
    pub const BUILD_FAILED: i32 = 2;
    pub const START_FAILED: i32 = 3;
    pub const NOT_ENOUGH_BATCHES: i32 = 4;
    pub const STOP_FAILED: i32 = 5;
    pub const AWAIT_TIMED_OUT: i32 = 6;
    pub const AWAIT_FAILED: i32 = 7;
    pub const AWAIT_RETURNED_OK: i32 = 8;
    pub const START_ERROR_WITHOUT_PLANS_DIFFER: i32 = 9;
    pub const START_SUCCEEDED_WITH_DIFFERENT_PLANS: i32 = 10;
    pub const OUTPUT_FAILED: i32 = 11;
    pub const LOST_PEER: i32 = 12;
    pub const UNKNOWN_SCENARIO: i32 = 13;
    pub const WATCHDOG: i32 = 90;
}

/// Writes one line to stdout at once and flushes it, so the parent sees it right away.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn quit(code: i32, why: &str) -> ! {
    say(&format!("EXIT {code} {why}"));
    eprintln!("child exits with {code}: {why}");
    std::process::exit(code)
}

/// Batch times this process has seen in `foreach_partition`, each printed once.
#[derive(Clone, Default)]
struct SeenTimes(Arc<Mutex<BTreeSet<u64>>>);

impl SeenTimes {
    fn record(&self, process: usize, time: Time) {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if seen.insert(time.milliseconds()) {
            say(&format!("BATCH {process} {}", time.milliseconds()));
        }
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Waits until at least `n` batch times were seen; false after `timeout`.
    fn wait_for(&self, n: usize, timeout: std::time::Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.len() >= n {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.len() >= n
    }
}

/// Runs as one process of a 2-process cluster when `EMBER_CLUSTER_PROCESS` is set (the tests
/// below start this test binary as the processes); otherwise does nothing.
#[test]
fn cluster_child() {
    let Ok(process) = std::env::var("EMBER_CLUSTER_PROCESS") else {
        return;
    };
    // libtest has printed `test cluster_child ... ` without a newline: end that line so every
    // marker below starts a line.
    say("");
    // Whatever happens below, this process ends.
    std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_secs(55));
        quit(exit::WATCHDOG, "the watchdog fired after 55 s");
    });
    let process: usize = process.parse().expect("EMBER_CLUSTER_PROCESS is a number");
    let scenario = std::env::var("EMBER_CLUSTER_SCENARIO").unwrap_or_default();
    if scenario == "key_groups" {
        for (name, group) in key_groups() {
            say(&format!("GROUP {name} {group}"));
        }
        return;
    }
    let addresses: Vec<String> = std::env::var("EMBER_CLUSTER_ADDRESSES")
        .expect("EMBER_CLUSTER_ADDRESSES is set")
        .split(',')
        .map(str::to_owned)
        .collect();
    let control = std::env::var("EMBER_CLUSTER_CONTROL").expect("EMBER_CLUSTER_CONTROL is set");
    let mut builder = StreamingContext::builder(milliseconds(200))
        .cluster(process, addresses)
        .cluster_control_address(control);
    if scenario == "wrong_secret" {
        builder = builder.cluster_start_timeout(seconds(3));
    }
    let ssc = match builder.build() {
        Ok(ssc) => ssc,
        Err(e) => quit(exit::BUILD_FAILED, &format!("build: {e}")),
    };
    let input: Vec<Option<Vec<u64>>> = (0..200u64).map(|b| Some((b * 10..b * 10 + 8).collect())).collect();
    let stream = ssc.replay_stream(input, 4);
    // Process 1 of the plan-mismatch scenario builds a different plan.
    let stream = if scenario == "plan_mismatch" && process == 1 {
        stream.map(|x| x + 1)
    } else {
        stream
    };
    let seen = SeenTimes::default();
    let sink = seen.clone();
    if let Err(e) = stream.foreach_partition(move |_items: Vec<u64>, time: Time| sink.record(process, time)) {
        quit(exit::OUTPUT_FAILED, &format!("foreach_partition: {e}"));
    }
    let started = ssc.start();
    if scenario == "plan_mismatch" {
        match started {
            Err(e) if e.to_string().contains("plans differ") => {
                say(&format!("START_ERROR {e}"));
                return;
            }
            Err(e) => {
                say(&format!("START_ERROR {e}"));
                quit(exit::START_ERROR_WITHOUT_PLANS_DIFFER, "start failed for another reason");
            }
            Ok(()) => quit(exit::START_SUCCEEDED_WITH_DIFFERENT_PLANS, "start accepted different plans"),
        }
    }
    if scenario == "wrong_secret" {
        match started {
            Err(e) => {
                say(&format!("START_ERROR {e}"));
                return;
            }
            Ok(()) => quit(exit::START_SUCCEEDED_WITH_DIFFERENT_PLANS, "start succeeded with another secret"),
        }
    }
    if let Err(e) = started {
        quit(exit::START_FAILED, &format!("start: {e}"));
    }
    say("STARTED");
    let await_stop = |timeout| match ssc.await_termination_or_timeout(timeout) {
        Ok(true) => say("AWAIT stopped"),
        Ok(false) => quit(exit::AWAIT_TIMED_OUT, "await_termination_or_timeout timed out"),
        Err(e) => {
            say(&format!("ERROR {e}"));
            quit(exit::AWAIT_FAILED, "await_termination_or_timeout failed");
        }
    };
    let stop_after = |batches| {
        if !seen.wait_for(batches, std::time::Duration::from_secs(40)) {
            quit(exit::NOT_ENOUGH_BATCHES, &format!("saw {} batch times in 40 s", seen.len()));
        }
        match ssc.stop(true) {
            Ok(()) => say("STOPPED"),
            Err(e) => quit(exit::STOP_FAILED, &format!("stop: {e}")),
        }
    };
    match (scenario.as_str(), process) {
        ("late_start" | "strangers", 0) => stop_after(6),
        ("late_start" | "strangers", _) => await_stop(seconds(30)),
        ("remote_stop", 1) => stop_after(3),
        ("remote_stop", _) => await_stop(seconds(30)),
        ("kill", _) => match ssc.await_termination_or_timeout(seconds(60)) {
            Ok(stopped) => quit(exit::AWAIT_RETURNED_OK, &format!("await returned Ok({stopped})")),
            Err(e) => {
                say(&format!("ERROR {e}"));
                // A program whose `main` returns the error drops the context on the way out.
                drop(ssc);
                say("DROPPED");
                quit(exit::LOST_PEER, "await_termination reported the lost peer");
            }
        },
        _ => quit(exit::UNKNOWN_SCENARIO, &format!("unknown scenario {scenario:?}")),
    }
    drop(ssc);
    say("DROPPED");
}

// ---------------------------------------------------------------------------------------------
// The parent: starts the processes, watches them, checks what they printed.
// ---------------------------------------------------------------------------------------------

/// Ports of one cluster: two for timely, one for the control plane.
struct ClusterPorts {
    addresses: String,
    control: String,
}

impl ClusterPorts {
    fn new() -> Self {
        // Hold all three listeners at once so the ports differ.
        let bind = || std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let (a, b, c) = (bind(), bind(), bind());
        let port = |l: &std::net::TcpListener| l.local_addr().expect("local address").port();
        ClusterPorts {
            addresses: format!("127.0.0.1:{},127.0.0.1:{}", port(&a), port(&b)),
            control: format!("127.0.0.1:{}", port(&c)),
        }
    }
}

/// A child process whose output is collected by reader threads as it is printed. Dropping it
/// kills the process if it still runs.
struct ChildProcess {
    name: String,
    child: std::process::Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

fn collect<R: Read + Send + 'static>(from: R, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => into.lock().unwrap_or_else(|e| e.into_inner()).push_str(&line),
            }
        }
    })
}

impl ChildProcess {
    fn spawn(scenario: &str, process: usize, ports: Option<&ClusterPorts>) -> Self {
        Self::spawn_with(scenario, process, ports, None)
    }

    /// [`ChildProcess::spawn`] with `secret` in `EMBER_CLUSTER_SECRET`.
    fn spawn_with(scenario: &str, process: usize, ports: Option<&ClusterPorts>, secret: Option<&str>) -> Self {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut command = Command::new(exe);
        match secret {
            Some(secret) => command.env("EMBER_CLUSTER_SECRET", secret),
            None => command.env_remove("EMBER_CLUSTER_SECRET"),
        };
        command
            .args(["--exact", "cluster_child", "--nocapture", "--test-threads", "1"])
            .env("EMBER_CLUSTER_PROCESS", process.to_string())
            .env("EMBER_CLUSTER_SCENARIO", scenario)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(ports) = ports {
            command
                .env("EMBER_CLUSTER_ADDRESSES", &ports.addresses)
                .env("EMBER_CLUSTER_CONTROL", &ports.control);
        }
        let mut child = command.spawn().expect("start the test binary as a child");
        let (stdout, stderr) = (Arc::default(), Arc::default());
        let readers = vec![
            collect(child.stdout.take().expect("piped stdout"), Arc::clone(&stdout)),
            collect(child.stderr.take().expect("piped stderr"), Arc::clone(&stderr)),
        ];
        ChildProcess {
            name: format!("{scenario} process {process}"),
            child,
            stdout,
            stderr,
            readers,
            status: None,
        }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the process has exited (polls without blocking).
    fn exited(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("poll the child");
        }
        self.status.is_some()
    }

    /// Waits for the process to exit until `deadline`; kills it after that. Returns its exit
    /// status, or `None` when it had to be killed.
    fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        while Instant::now() < deadline {
            if self.exited() {
                self.join_readers();
                return self.status;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if self.exited() {
            self.join_readers();
            return self.status;
        }
        self.kill();
        None
    }

    fn kill(&mut self) {
        if !self.exited() {
            let _ = self.child.kill();
            // A killed process is reaped at once.
            self.status = self.child.wait().ok();
        }
        self.join_readers();
    }

    fn join_readers(&mut self) {
        // The process has exited, so its pipes are closed and the readers end.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }

    /// Everything known about the process, for failure messages.
    fn describe(&self) -> String {
        format!(
            "--- {} (status {:?}) stdout:\n{}--- stderr:\n{}---",
            self.name,
            self.status,
            self.stdout(),
            self.stderr.lock().unwrap_or_else(|e| e.into_inner())
        )
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits for every child until `deadline` (killing those that outlive it) and asserts they all
/// exited with code 0.
fn assert_all_succeed(children: &mut [&mut ChildProcess], deadline: Instant) {
    let statuses: Vec<Option<ExitStatus>> = children.iter_mut().map(|c| c.wait_until(deadline)).collect();
    if statuses.iter().any(|s| !s.is_some_and(|s| s.success())) {
        let report: Vec<String> = children.iter().map(|c| c.describe()).collect();
        panic!(
            "not every process exited with 0 in time (None = killed at the deadline):\n{}",
            report.join("\n")
        );
    }
}

/// The batch times a process printed (`BATCH <process> <time_ms>`).
fn batch_times(child: &ChildProcess, process: usize) -> BTreeSet<u64> {
    child
        .stdout()
        .lines()
        .filter_map(|l| {
            let mut words = l.split(' ');
            (words.next() == Some("BATCH") && words.next() == Some(&process.to_string()))
                .then(|| words.next().and_then(|t| t.parse().ok()))
                .flatten()
        })
        .collect()
}

fn in_parent() -> bool {
    std::env::var("EMBER_CLUSTER_PROCESS").is_err()
}

#[test]
fn processes_started_2_s_apart_see_the_same_batch_times() {
    if !in_parent() {
        return;
    }
    let ports = ClusterPorts::new();
    let mut p0 = ChildProcess::spawn("late_start", 0, Some(&ports));
    std::thread::sleep(std::time::Duration::from_secs(2));
    let mut p1 = ChildProcess::spawn("late_start", 1, Some(&ports));
    assert_all_succeed(&mut [&mut p0, &mut p1], Instant::now() + std::time::Duration::from_secs(45));
    let (t0, t1) = (batch_times(&p0, 0), batch_times(&p1, 1));
    let context = || format!("{}\n{}", p0.describe(), p1.describe());
    assert!(t0.len() >= 3, "process 0 printed {} batch times:\n{}", t0.len(), context());
    assert!(t1.len() >= 3, "process 1 printed {} batch times:\n{}", t1.len(), context());
    let (max0, min1) = (*t0.last().unwrap(), *t1.first().unwrap());
    let only_1: Vec<u64> = t1.iter().copied().filter(|t| *t <= max0 && !t0.contains(t)).collect();
    let only_0: Vec<u64> = t0.iter().copied().filter(|t| *t >= min1 && !t1.contains(t)).collect();
    assert!(
        only_1.is_empty() && only_0.is_empty(),
        "batch times differ on the common range: only process 0 saw {only_0:?}, only process 1 saw {only_1:?}\n\
         process 0: {t0:?}\nprocess 1: {t1:?}\n{}",
        context()
    );
    let first = *t0.first().unwrap();
    let off_grid: Vec<u64> = t0.iter().chain(&t1).copied().filter(|t| t.abs_diff(first) % 200 != 0).collect();
    assert!(
        off_grid.is_empty(),
        "times off the 200 ms grid of {first}: {off_grid:?}\n{}",
        context()
    );
}

/// A cluster with a secret: while process 0 waits for process 1, strangers knock on its control
/// port (a well-formed hello as process 1, a `stop`, garbage) and its data port (a bare index,
/// garbage); all are turned away, and the real process 1 then joins and both run to the end
/// on the same batches.
#[test]
fn with_a_secret_strangers_are_refused_and_the_job_runs_unchanged() {
    if !in_parent() {
        return;
    }
    let ports = ClusterPorts::new();
    let secret = "a secret only this cluster knows";
    let mut p0 = ChildProcess::spawn_with("strangers", 0, Some(&ports), Some(secret));
    let data0 = ports.addresses.split(',').next().unwrap().to_owned();
    // `must`: the port is known to open; else a knock that finds it closed (the moment passed)
    // is skipped.
    let knock = |address: &str, bytes: &[u8], must: bool| {
        let deadline = Instant::now() + std::time::Duration::from_secs(if must { 20 } else { 3 });
        loop {
            if let Ok(mut stream) = std::net::TcpStream::connect(address) {
                let _ = stream.write_all(bytes);
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                let mut answer = Vec::new();
                let _ = stream.read_to_end(&mut answer);
                // Nothing but the authentication challenge (10 + 32 bytes) comes back.
                assert!(answer.len() <= 42, "a stranger at {address} was told {answer:?}");
                return;
            }
            if !must && Instant::now() >= deadline {
                return;
            }
            assert!(Instant::now() < deadline, "{address} never listened");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    knock(
        &ports.control,
        b"{\"type\":\"hello\",\"process\":1,\"processes\":2,\"fingerprint\":1}\n",
        true,
    );
    knock(&ports.control, b"{\"type\":\"stop\",\"graceful\":false}\n", true);
    knock(&ports.control, &[0xff; 100], true);
    let mut p1 = ChildProcess::spawn_with("strangers", 1, Some(&ports), Some(secret));
    // Process 0 listens for data connections once process 1 has joined the control plane.
    knock(&data0, &1u64.to_be_bytes(), false);
    knock(&data0, &[0xff; 100], false);
    assert_all_succeed(&mut [&mut p0, &mut p1], Instant::now() + std::time::Duration::from_secs(45));
    let (t0, t1) = (batch_times(&p0, 0), batch_times(&p1, 1));
    assert!(t0.len() >= 6 && t1.len() >= 3, "{}\n{}", p0.describe(), p1.describe());
    assert!(
        p0.stdout().contains("STOPPED") && p1.stdout().contains("AWAIT stopped"),
        "{}\n{}",
        p0.describe(),
        p1.describe()
    );
    let common: Vec<&u64> = t1.iter().filter(|t| **t <= *t0.last().unwrap()).collect();
    assert!(common.iter().all(|t| t0.contains(t)), "{}\n{}", p0.describe(), p1.describe());
}

/// A process given another secret cannot join: its `start` fails saying process 0 refused it.
#[test]
fn a_process_with_another_secret_fails_to_join_saying_why() {
    if !in_parent() {
        return;
    }
    let ports = ClusterPorts::new();
    let mut p0 = ChildProcess::spawn_with("wrong_secret", 0, Some(&ports), Some("a secret only this cluster knows"));
    let mut p1 = ChildProcess::spawn_with("wrong_secret", 1, Some(&ports), Some("some other secret entirely"));
    assert_all_succeed(&mut [&mut p0, &mut p1], Instant::now() + std::time::Duration::from_secs(30));
    let error = p1.stdout();
    assert!(
        error.contains("START_ERROR") && error.contains("refused") && error.contains("secret"),
        "{}",
        p1.describe()
    );
    assert!(
        !error.contains("a secret only this cluster knows") && !error.contains("some other secret"),
        "{}",
        p1.describe()
    );
    assert!(p0.stdout().contains("START_ERROR"), "{}", p0.describe());
}

#[test]
fn stop_on_process_1_stops_both() {
    if !in_parent() {
        return;
    }
    let ports = ClusterPorts::new();
    let mut p0 = ChildProcess::spawn("remote_stop", 0, Some(&ports));
    let mut p1 = ChildProcess::spawn("remote_stop", 1, Some(&ports));
    assert_all_succeed(&mut [&mut p0, &mut p1], Instant::now() + std::time::Duration::from_secs(30));
    assert!(p1.stdout().contains("STOPPED"), "process 1 did not stop:\n{}", p1.describe());
    assert!(
        p0.stdout().contains("AWAIT stopped"),
        "process 0's await_termination_or_timeout did not return Ok(true):\n{}",
        p0.describe()
    );
    assert!(batch_times(&p1, 1).len() >= 3, "{}", p1.describe());
}

#[test]
fn killing_a_process_makes_the_other_exit_naming_it() {
    if !in_parent() {
        return;
    }
    let ports = ClusterPorts::new();
    let mut p0 = ChildProcess::spawn("kill", 0, Some(&ports));
    let mut p1 = ChildProcess::spawn("kill", 1, Some(&ports));
    let running = |c: &ChildProcess, process: usize| c.stdout().contains("STARTED") && !batch_times(c, process).is_empty();
    let deadline = Instant::now() + std::time::Duration::from_secs(40);
    while !(running(&p0, 0) && running(&p1, 1)) {
        if Instant::now() >= deadline || p0.exited() || p1.exited() {
            p0.kill();
            p1.kill();
            panic!(
                "the processes did not both start and run a batch:\n{}\n{}",
                p0.describe(),
                p1.describe()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    p1.kill();
    let killed = Instant::now();
    let status = p0.wait_until(killed + std::time::Duration::from_secs(20));
    let elapsed = killed.elapsed();
    let stdout = p0.stdout();
    assert!(
        status.is_some_and(|s| !s.success()),
        "process 0 should exit with a non-zero code after losing process 1 (None = killed after 20 s):\n{}",
        p0.describe()
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("ERROR ") && l.contains("lost process 1")),
        "process 0 should report `lost process 1` from await_termination:\n{}",
        p0.describe()
    );
    assert!(
        elapsed < std::time::Duration::from_secs(10),
        "process 0 took {elapsed:?} to exit after process 1 was killed:\n{}",
        p0.describe()
    );
}

#[test]
fn different_plans_fail_at_start_on_both() {
    if !in_parent() {
        return;
    }
    let ports = ClusterPorts::new();
    let mut p0 = ChildProcess::spawn("plan_mismatch", 0, Some(&ports));
    let mut p1 = ChildProcess::spawn("plan_mismatch", 1, Some(&ports));
    assert_all_succeed(&mut [&mut p0, &mut p1], Instant::now() + std::time::Duration::from_secs(30));
    for child in [&p0, &p1] {
        let stdout = child.stdout();
        let error = stdout.lines().find(|l| l.starts_with("START_ERROR "));
        assert!(
            error.is_some_and(|e| e.contains("the plans differ: process 1 has plan fingerprint") && e.contains("but process 0 has")),
            "expected a start error naming both fingerprints:\n{}",
            child.describe()
        );
    }
}

#[test]
fn key_groups_are_the_same_in_another_process() {
    if !in_parent() {
        return;
    }
    let mine = key_groups();
    let fixed = [("hello", 73), ("42u64", 47), ("empty", 115)];
    for (name, group) in fixed {
        let got = mine.iter().find(|(n, _)| *n == name).map(|(_, g)| *g);
        assert_eq!(got, Some(group), "group of {name} in this process");
    }
    let mut child = ChildProcess::spawn("key_groups", 0, None);
    assert_all_succeed(&mut [&mut child], Instant::now() + std::time::Duration::from_secs(30));
    let theirs: Vec<(String, u32)> = child
        .stdout()
        .lines()
        .filter_map(|l| {
            let mut words = l.strip_prefix("GROUP ")?.split(' ');
            Some((words.next()?.to_owned(), words.next()?.parse().ok()?))
        })
        .collect();
    let mine: Vec<(String, u32)> = mine.into_iter().map(|(n, g)| (n.to_owned(), g)).collect();
    assert_eq!(theirs, mine, "key groups in the child:\n{}", child.describe());
}
