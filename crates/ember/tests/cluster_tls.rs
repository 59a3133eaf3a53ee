//! TLS between the processes of a cluster (`EMBER_CLUSTER_TLS=1`): a two-process word count
//! whose every connection from process 1 to process 0 (control and data) passes through a
//! forwarder that records the bytes. Without TLS the recording holds the words and the control
//! messages (so the check below can see them); with TLS it holds none of them, only TLS
//! records, and the counts are the same. Needs the `tls` feature (on in `cargo test
//! --workspace`, which the `ember` command's crate turns on).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ember::prelude::*;

const SECRET: &str = "the secret of the cluster under test";
const BATCHES: u64 = 12;

/// The lines of batch `b`: the words `confidential<k>` for several `k`, repeated.
fn lines(b: u64) -> Vec<String> {
    (0..6)
        .map(|l| {
            (0..=l)
                .map(|k| format!("confidential{}", (b + k) % 9))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Each batch's counts, as process 0 prints them.
fn expected() -> BTreeMap<u64, BTreeMap<String, u64>> {
    (0..BATCHES)
        .map(|b| {
            let mut counts = BTreeMap::new();
            for line in lines(b) {
                for word in line.split(' ') {
                    *counts.entry(word.to_owned()).or_insert(0) += 1;
                }
            }
            (b, counts)
        })
        .collect()
}

/// One process of the word count when `EMBER_TLS_TEST_CHILD` is set (the test below starts
/// this binary as both processes); prints `COUNT <batch> <word> <n>` on process 0.
#[test]
fn tls_child() {
    if std::env::var("EMBER_TLS_TEST_CHILD").is_err() {
        return;
    }
    println!();
    let process: usize = std::env::var("EMBER_CLUSTER_PROCESS").unwrap().parse().unwrap();
    let ssc = StreamingContext::builder(milliseconds(100))
        .cluster_from_env()
        .unwrap()
        .cluster_start_timeout(seconds(30))
        .build()
        .unwrap();
    let zero = Arc::new(Mutex::new(None::<u64>));
    let input: Vec<Option<Vec<String>>> = (0..BATCHES).map(|b| Some(lines(b))).collect();
    let counts = ssc
        .replay_stream(input, 4)
        .flat_map(|line: String| line.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .map(|word| (word, 1u64))
        .reduce_by_key(|a, b| a + b);
    let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = Arc::clone(&seen);
    counts
        .foreach_rdd(move |batch, time| {
            let counts = batch.into_vec();
            if counts.is_empty() {
                return;
            }
            let zero = *zero.lock().unwrap().get_or_insert(time.milliseconds());
            let b = (time.milliseconds() - zero) / 100;
            let mut out = std::io::stdout().lock();
            for (word, n) in counts {
                writeln!(out, "COUNT {b} {word} {n}").unwrap();
            }
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        })
        .unwrap();
    ssc.start().unwrap();
    if process == 0 {
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.load(std::sync::atomic::Ordering::SeqCst) < BATCHES {
            assert!(Instant::now() < deadline, "{BATCHES} batches did not come");
            assert!(!ssc.await_termination_or_timeout(milliseconds(20)).unwrap(), "stopped early");
        }
        ssc.stop(true).unwrap();
    } else {
        assert!(ssc.await_termination_or_timeout(seconds(60)).unwrap(), "process 1 was not stopped");
    }
}

/// Forwards every connection made to its address on to `target`, recording the bytes in both
/// directions.
struct Recorder {
    address: String,
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&bytes);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                // The target may not listen yet (process 1 may start first): wait for it, as
                // process 1 would have retried.
                let deadline = Instant::now() + Duration::from_secs(30);
                let server = loop {
                    match TcpStream::connect(&target) {
                        Ok(server) => break Some(server),
                        Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                        Err(_) => break None,
                    }
                };
                let Some(server) = server else { continue };
                for (mut from, mut to) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)] {
                    let recorded = Arc::clone(&recorded);
                    std::thread::spawn(move || {
                        let mut buffer = [0u8; 16 * 1024];
                        while let Ok(n) = from.read(&mut buffer) {
                            if n == 0 || to.write_all(&buffer[..n]).is_err() {
                                break;
                            }
                            recorded.lock().unwrap().extend_from_slice(&buffer[..n]);
                        }
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Recorder { address, bytes }
    }

    fn recorded(&self) -> Vec<u8> {
        self.bytes.lock().unwrap().clone()
    }
}

fn free_port() -> String {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Runs the two processes, process 1 reaching process 0 through recorders; returns the
/// counts process 0 printed, and what the control and data recorders saw.
fn run(tls: bool) -> (BTreeMap<u64, BTreeMap<String, u64>>, Vec<u8>, Vec<u8>) {
    let (data0, data1, control) = (free_port(), free_port(), free_port());
    let control_recorder = Recorder::start(control.clone());
    let data_recorder = Recorder::start(data0.clone());
    let spawn = |process: usize, addresses: String, control: &str| {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["--exact", "tls_child", "--nocapture", "--test-threads=1"])
            .env("EMBER_TLS_TEST_CHILD", "1")
            .env("EMBER_CLUSTER_PROCESS", process.to_string())
            .env("EMBER_CLUSTER_ADDRESSES", addresses)
            .env("EMBER_CLUSTER_CONTROL", control)
            .env("EMBER_CLUSTER_SECRET", SECRET)
            .env_remove("EMBER_CLUSTER_SECRET_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if tls {
            command.env("EMBER_CLUSTER_TLS", "1");
        } else {
            command.env_remove("EMBER_CLUSTER_TLS");
        }
        command.spawn().unwrap()
    };
    let zero = spawn(0, format!("{data0},{data1}"), &control);
    let one = spawn(1, format!("{},{data1}", data_recorder.address), &control_recorder.address);
    let (zero, one) = (zero.wait_with_output().unwrap(), one.wait_with_output().unwrap());
    let describe =
        |out: &std::process::Output| format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        zero.status.success() && one.status.success(),
        "tls {tls}:\n{}\n{}",
        describe(&zero),
        describe(&one)
    );
    let mut counts: BTreeMap<u64, BTreeMap<String, u64>> = BTreeMap::new();
    for line in BufReader::new(&zero.stdout[..]).lines() {
        let line = line.unwrap();
        let Some(rest) = line.strip_prefix("COUNT ") else { continue };
        let fields: Vec<&str> = rest.split(' ').collect();
        let previous = counts
            .entry(fields[0].parse().unwrap())
            .or_default()
            .insert(fields[1].to_owned(), fields[2].parse().unwrap());
        assert_eq!(previous, None, "{line} twice");
    }
    (counts, control_recorder.recorded(), data_recorder.recorded())
}

#[test]
fn with_tls_nothing_readable_crosses_the_wire_and_the_counts_are_the_same() {
    if std::env::var("EMBER_TLS_TEST_CHILD").is_ok() {
        return;
    }
    // Without TLS the recorders see the words and the messages: the check below can see them.
    let (counts, control, data) = run(false);
    assert_eq!(counts, expected());
    assert!(contains(&control, b"\"hello\""), "{}", String::from_utf8_lossy(&control));
    assert!(contains(&data, b"confidential"), "the plain data connection carried no word");

    let (counts, control, data) = run(true);
    assert_eq!(counts, expected());
    for (name, bytes) in [("control", &control), ("data", &data)] {
        assert!(bytes.len() > 1000, "{name}: only {} bytes", bytes.len());
        // A TLS handshake record first (ClientHello), then only TLS records.
        assert_eq!(&bytes[..2], &[0x16, 0x03], "{name} does not start with a TLS record");
        for plain in [&b"confidential"[..], b"EMBERAUTH", b"\"type\"", SECRET.as_bytes()] {
            assert!(
                !contains(bytes, plain),
                "{name} carried {:?} in the clear",
                String::from_utf8_lossy(plain)
            );
        }
    }
}
