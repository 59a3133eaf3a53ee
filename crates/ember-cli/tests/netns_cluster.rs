//! A cluster across hosts: three Linux network namespaces with their own addresses, joined by
//! veth pairs to a bridge that only they (and this test, for the S3 server) are on, so the
//! processes share no loopback and every exchange crosses a network interface. `ember cluster
//! --hosts` starts one process in each (`ip netns exec`), the checkpoint directory and the
//! output are on moto's S3 server (reached through a forwarder on the bridge), and:
//!
//! - a random process is killed with SIGKILL 10 times while the job runs; the supervisor
//!   brings the whole cluster back each time and the job ends counting every word once;
//! - the cluster is rescaled 3 -> 2 -> 3 through the scale file; every word is counted once.
//!
//! The namespaces, links and bridge are created by the test and removed after it (it needs
//! root, as CI has; without it the test fails saying so). The job is this test binary again,
//! running `netns_child` with `EMBER_NETNS_CHILD` set.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ember::storage::Location;

const BATCHES: u64 = 240;
const INTERVAL_MS: u64 = 50;

fn words_of_batch(b: u64) -> Vec<String> {
    (0..12).map(|j| format!("w{}", (b * 7 + j * 5) % 29)).collect()
}

fn expected() -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for b in 0..BATCHES {
        for w in words_of_batch(b) {
            *counts.entry(w).or_insert(0) += 1;
        }
    }
    counts
}

/// The job: running word counts over a replayable input, checkpointed every 5 batches, each
/// batch's totals saved as text; process 0 stops the cluster once the input is counted and
/// the test has written the `finish` file.
#[test]
fn netns_child() {
    use ember::prelude::*;
    let Ok(spec) = std::env::var("EMBER_NETNS_CHILD") else { return };
    let [checkpoint, out, finish]: [&str; 3] = spec.split(';').collect::<Vec<_>>().try_into().unwrap();
    let process: usize = std::env::var("EMBER_CLUSTER_PROCESS").unwrap().parse().unwrap();
    let total: u64 = expected().values().sum();
    let counted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = std::sync::Arc::clone(&counted);
    let resumed = Location::parse(checkpoint)
        .unwrap()
        .list()
        .unwrap()
        .iter()
        .any(|e| e.name.ends_with(".manifest"));
    if resumed && process == 0 {
        eprintln!("EMBER-RESUMED");
    }
    let ssc = StreamingContext::get_or_create(checkpoint, || {
        let ssc = StreamingContext::builder(milliseconds(INTERVAL_MS))
            .cluster_from_env()?
            .cluster_start_timeout(seconds(20))
            .build()?;
        let input = (0..BATCHES).map(|b| Some(words_of_batch(b))).collect();
        let totals = ssc
            .replay_stream(input, 3)
            .map(|w: String| (w, 1u64))
            .update_state_by_key(|vs: Vec<u64>, s: Option<u64>| Some(vs.iter().sum::<u64>() + s.unwrap_or(0)))
            .checkpoint(milliseconds(5 * INTERVAL_MS))?;
        totals.save_as_text_files(&format!("{out}/state"), "")?;
        totals.foreach_rdd(move |b, _| seen.store(b.collect().iter().map(|(_, n)| n).sum(), std::sync::atomic::Ordering::SeqCst))?;
        Ok(ssc)
    })
    .unwrap();
    ssc.start().unwrap();
    if process != 0 {
        // A lost peer ends this process with an error: the supervisor restarts the cluster.
        if let Err(e) = ssc.await_termination() {
            eprintln!("EMBER-FAILED: {e}");
            std::process::exit(3);
        }
        return;
    }
    let deadline = Instant::now() + std::time::Duration::from_secs(180);
    while counted.load(std::sync::atomic::Ordering::SeqCst) < total || !std::path::Path::new(finish).exists() {
        assert!(Instant::now() < deadline, "the job did not finish");
        if ssc.await_termination_or_timeout(milliseconds(20)).unwrap() {
            panic!("the cluster stopped before the job was done");
        }
    }
    ssc.stop(true).unwrap();
}

/// Runs `ip` with `args`, failing the test with what it said.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("cannot run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {} failed (this test needs root to make network namespaces): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Three namespaces on a bridge of their own; removed on drop.
struct Hosts {
    namespaces: Vec<String>,
    bridge: String,
    /// The namespaces' addresses, and the bridge's.
    addresses: Vec<String>,
    gateway: String,
}

impl Hosts {
    /// `slot` tells apart the tests of one run, which run at the same time.
    fn new(count: usize, slot: u32) -> Hosts {
        let tag = std::process::id() % 100_000 * 2 + slot;
        let subnet = format!("10.211.{}", tag % 250);
        let bridge = format!("ebr{tag}");
        let mut hosts = Hosts {
            namespaces: Vec::new(),
            bridge: bridge.clone(),
            addresses: Vec::new(),
            gateway: format!("{subnet}.254"),
        };
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["addr", "add", &format!("{}/24", hosts.gateway), "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        for i in 0..count {
            let (ns, outer, inner) = (format!("emb{tag}-{i}"), format!("ev{tag}{i}"), format!("ep{tag}{i}"));
            let address = format!("{subnet}.{}", i + 1);
            ip(&["netns", "add", &ns]);
            hosts.namespaces.push(ns.clone());
            ip(&["link", "add", &outer, "type", "veth", "peer", "name", &inner]);
            ip(&["link", "set", &inner, "netns", &ns]);
            ip(&["link", "set", &outer, "master", &bridge]);
            ip(&["link", "set", &outer, "up"]);
            ip(&["netns", "exec", &ns, "ip", "addr", "add", &format!("{address}/24"), "dev", &inner]);
            ip(&["netns", "exec", &ns, "ip", "link", "set", &inner, "up"]);
            ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
            hosts.addresses.push(address);
        }
        hosts
    }

    fn host_file(&self, path: &std::path::Path) {
        let lines: Vec<String> = self
            .addresses
            .iter()
            .zip(&self.namespaces)
            .map(|(address, ns)| format!("{address} ip netns exec {ns}\n"))
            .collect();
        std::fs::write(path, lines.concat()).unwrap();
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).status();
    }
}

/// Forwards connections on `listen` to `target` (the S3 server on this namespace's loopback),
/// so that the namespaces reach it over the bridge; returns the address listened on.
fn forward(listen: &str, target: String) -> String {
    let listener = TcpListener::bind((listen, 0)).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(&target) else { continue };
            let pipe = |mut from: TcpStream, mut to: TcpStream| {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                })
            };
            pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
            pipe(server, client);
        }
    });
    address
}

/// The running processes the supervisor `parent` started (read from `/proc`).
fn children(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: the fields after the last `)`.
        let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent) && fields.first() != Some(&"Z") {
            found.push(pid);
        }
    }
    found
}

struct Run {
    dir: std::path::PathBuf,
    supervisor: Child,
    checkpoint: String,
    /// What the supervisor wrote to stderr so far (read all along: a full pipe would stop it).
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    out: String,
    finish: std::path::PathBuf,
}

/// Starts the job under `ember cluster` on `hosts`, with `extra` supervisor arguments.
fn start(hosts: &Hosts, name: &str, extra: &[&str]) -> Run {
    let dir = std::env::temp_dir().join(format!("ember-netns-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let host_file = dir.join("hosts");
    hosts.host_file(&host_file);
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("the S3 server (run ./test.sh, or .ci/s3-server)");
    let s3 = forward(
        &hosts.gateway,
        endpoint.trim_start_matches("http://").trim_end_matches('/').to_owned(),
    );
    let (checkpoint, out) = (
        ember::testing::s3_test_dir(&format!("netns-{name}-checkpoint")),
        ember::testing::s3_test_dir(&format!("netns-{name}-out")),
    );
    let finish = dir.join("finish");
    let mut supervisor = Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(["cluster", "--hosts"])
        .arg(&host_file)
        .args(["--restart-attempts", "30", "--restart-delay-ms", "100", "--grace-ms", "3000"])
        .args(extra)
        .arg("--")
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "netns_child", "--nocapture", "--test-threads=1"])
        .env("EMBER_NETNS_CHILD", format!("{checkpoint};{out};{}", finish.display()))
        .env("AWS_ENDPOINT_URL", format!("http://{s3}"))
        .env_remove("EMBER_CLUSTER_SECRET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut pipe = supervisor.stderr.take().unwrap();
    let copy = std::sync::Arc::clone(&stderr);
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            copy.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    Run {
        dir,
        supervisor,
        checkpoint,
        stderr,
        out,
        finish,
    }
}

impl Drop for Run {
    /// A failed test leaves no cluster running: SIGTERM to the supervisor stops its processes.
    fn drop(&mut self) {
        if self.supervisor.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill").arg(self.supervisor.id().to_string()).status();
            let _ = self.supervisor.wait();
        }
    }
}

impl Run {
    /// Lets the job finish; returns the supervisor's messages after checking it succeeded and
    /// that the output holds every word once.
    fn finish(&mut self) -> String {
        std::fs::write(&self.finish, "").unwrap();
        let deadline = Instant::now() + Duration::from_secs(240);
        while self.supervisor.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.supervisor.kill();
                panic!("the job did not finish within 4 minutes");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = self.supervisor.wait().unwrap();
        // The copy ends with the pipe.
        std::thread::sleep(Duration::from_millis(200));
        let stderr = self.stderr.lock().unwrap().clone();
        assert!(status.success(), "the supervisor failed:\n{stderr}");
        let out = Location::parse(&self.out).unwrap();
        let dirs: BTreeMap<u64, String> = out
            .list_dirs()
            .unwrap()
            .into_iter()
            .filter_map(|d| Some((d.strip_prefix("state-")?.parse().ok()?, d)))
            .collect();
        let counts = |dir: &str| -> Option<BTreeMap<String, u64>> {
            let mut counts = BTreeMap::new();
            for (_, bytes) in out.join(dir).read_directory().ok()? {
                for line in String::from_utf8(bytes).unwrap().lines() {
                    let (w, n) = line.trim_matches(|c| c == '(' || c == ')').rsplit_once(',').unwrap();
                    counts.insert(w.to_owned(), n.parse().unwrap());
                }
            }
            Some(counts)
        };
        let expected = expected();
        let (last_time, last) = dirs.iter().next_back().expect("no batch was written");
        assert_eq!(counts(last).as_ref(), Some(&expected), "the last batch, {last_time} ms\n{stderr}");
        for (time, dir) in &dirs {
            for (w, n) in counts(dir).unwrap_or_default() {
                assert!(
                    n <= expected[&w],
                    "batch {time} ms counts {w} {n} times, the input has it {} times",
                    expected[&w]
                );
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        stderr
    }
}

#[test]
fn a_three_host_cluster_killed_ten_times_counts_every_word_once() {
    if std::env::var("EMBER_NETNS_CHILD").is_ok() {
        return;
    }
    let hosts = Hosts::new(3, 0);
    let mut run = start(&hosts, "kills", &[]);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("netns kill test seed: {seed}");
    let mut rng = seed;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    // The first kill comes after the first checkpoint: a cluster killed again and again before
    // it ever checkpoints (the whole test suite slows its start) only starts afresh each time.
    let checkpoint = Location::parse(&run.checkpoint).unwrap();
    while !checkpoint.list().unwrap().iter().any(|e| e.name.ends_with(".manifest")) {
        assert!(
            Instant::now() < deadline,
            "no checkpoint within 5 minutes:\n{}",
            run.stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    while kills < 10 {
        std::thread::sleep(Duration::from_millis(300 + next() % 1200));
        if let Some(status) = run.supervisor.try_wait().unwrap() {
            panic!(
                "the supervisor ended ({status}) after {kills} kills:\n{}",
                run.stderr.lock().unwrap()
            );
        }
        let running = children(run.supervisor.id());
        assert!(
            Instant::now() < deadline,
            "10 kills did not happen within 5 minutes ({kills} did; {} processes running):\n{}",
            running.len(),
            run.stderr.lock().unwrap()
        );
        // Between a failure and the restart there is nothing to kill: wait for all three.
        if running.len() < 3 {
            continue;
        }
        let victim = running[(next() % running.len() as u64) as usize];
        let _ = Command::new("kill").args(["-9", &victim.to_string()]).status();
        kills += 1;
    }
    let stderr = run.finish();
    drop(run);
    let restarts = stderr.matches("restarting all 3 processes").count();
    assert!(restarts >= 10, "{restarts} restarts for 10 kills:\n{stderr}");
    // The restarted clusters resumed from the checkpoint on S3 (not from scratch).
    let resumed = stderr.matches("EMBER-RESUMED").count();
    assert!(
        resumed >= 5,
        "only {resumed} of {restarts} restarts resumed from a checkpoint:\n{stderr}"
    );
    println!(
        "netns: 10 kills of a random process of 3, {restarts} restarts, {resumed} resumed from the checkpoint, every word counted once"
    );
}

#[test]
fn a_three_host_cluster_rescaled_to_two_and_back_counts_every_word_once() {
    if std::env::var("EMBER_NETNS_CHILD").is_ok() {
        return;
    }
    let hosts = Hosts::new(3, 1);
    let scale = std::env::temp_dir().join(format!("ember-netns-scale-{}", std::process::id()));
    std::fs::write(&scale, "3").unwrap();
    let mut run = start(&hosts, "rescale", &["--scale-file", scale.to_str().unwrap()]);
    std::thread::sleep(Duration::from_secs(4));
    std::fs::write(&scale, "2").unwrap();
    std::thread::sleep(Duration::from_secs(4));
    std::fs::write(&scale, "3").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let stderr = run.finish();
    let _ = std::fs::remove_file(&scale);
    assert!(
        stderr.contains("rescaling from 3 to 2 processes") && stderr.contains("rescaling from 2 to 3 processes"),
        "{stderr}"
    );
    println!("netns: rescaled 3 -> 2 -> 3, every word counted once");
}
