//! The direct stream across processes, against a mock cluster that lives in the test process:
//! a 2-process cluster counts exactly, each process reading its own partitions; and a job
//! killed with SIGKILL again and again while records keep arriving, restarted each time with
//! `get_or_create`, in the end has every record exactly once in its output files and in its
//! state (the offsets and each batch's ranges come from the checkpoint directory).
//!
//! The processes are this test binary run again with `EMBER_KAFKA_CHILD` set; `kafka_child`
//! runs the scenario it names.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use ember::prelude::*;
use ember::testing::TempDir;
use ember_kafka::{KafkaDirectStream, MockKafka, StartingOffsets};

const PARTITIONS: i32 = 4;

fn line(i: u64) -> String {
    format!("w{} w{}", i % 5, i % 9)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

// ---------------------------------------------------------------------------------------------
// The children.
// ---------------------------------------------------------------------------------------------

#[test]
fn kafka_child() {
    let Ok(spec) = std::env::var("EMBER_KAFKA_CHILD") else { return };
    let args: Vec<&str> = spec.split(';').collect();
    match args[0] {
        "cluster" => cluster_process(args[1].parse().unwrap(), args[2], args[3], args[4], args[5].parse().unwrap()),
        "crash" => crash_job(Path::new(args[1]), args[2], args[3].parse().unwrap()),
        other => panic!("unknown scenario {other}"),
    }
}

/// One process of a 2-process cluster: prints which partitions it read; process 0 prints the
/// word counts once `words` words were counted, then stops the cluster.
fn cluster_process(process: usize, addresses: &str, control: &str, brokers: &str, words: u64) {
    let ssc = StreamingContext::builder(milliseconds(50))
        .cluster(process, addresses.split(',').map(str::to_owned).collect())
        .cluster_control_address(control)
        .build()
        .unwrap();
    let records = KafkaDirectStream::new(brokers)
        .topics(["words"])
        .starting_offsets(StartingOffsets::Earliest)
        .create_strings(&ssc)
        .unwrap();
    let read = Mutex::new(BTreeSet::new());
    records
        .foreach_partition(move |part, _| {
            for r in part {
                if read.lock().unwrap().insert(r.partition) {
                    say(&format!("READ {process} {}", r.partition));
                }
            }
        })
        .unwrap();
    let totals: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let t = Arc::clone(&totals);
    records
        .flat_map(|r| r.value.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .map(|w| (w, 1u64))
        .reduce_by_key(|a, b| a + b)
        .foreach_rdd(move |batch, _| {
            let mut totals = t.lock().unwrap();
            for (w, n) in batch.collect() {
                *totals.entry(w).or_default() += n;
            }
        })
        .unwrap();
    ssc.start().unwrap();
    if process == 0 {
        let deadline = Instant::now() + StdDuration::from_secs(60);
        while totals.lock().unwrap().values().sum::<u64>() < words {
            assert!(Instant::now() < deadline, "not every word was counted within 60 s");
            std::thread::sleep(StdDuration::from_millis(20));
        }
        // A few more batches: nothing more may arrive.
        std::thread::sleep(StdDuration::from_millis(300));
        say(&format!("TOTALS {}", serde_json::to_string(&*totals.lock().unwrap()).unwrap()));
        ssc.stop(false).unwrap();
    } else {
        assert!(
            ssc.await_termination_or_timeout(seconds(90)).unwrap(),
            "process 0 did not stop the cluster"
        );
    }
    say("EXIT");
}

/// The crash scenario's job: every record written to text files, and counted in a state
/// checkpointed every 5 batches; prints DONE once the state has counted `records`.
fn crash_job(dir: &Path, brokers: &str, records: u64) {
    let checkpoint = dir.join("checkpoint");
    let resumed = std::fs::read_dir(&checkpoint)
        .map(|entries| entries.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".manifest")))
        .unwrap_or(false);
    say(if resumed { "RESUMED" } else { "FRESH" });
    if !resumed {
        // A run killed before its first checkpoint is void: a fresh start begins a new batch
        // grid and reads from the earliest offsets again.
        for out in [dir.join("out"), dir.join("once")] {
            std::fs::remove_dir_all(&out).unwrap();
            std::fs::create_dir(&out).unwrap();
        }
    }
    let counted = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&counted);
    let prefix = dir.join("out").join("records").to_string_lossy().into_owned();
    let once_dir = dir.join("once");
    let brokers = brokers.to_owned();
    let ssc = StreamingContext::get_or_create(&checkpoint, move || {
        let ssc = StreamingContext::builder(milliseconds(20)).workers(2).build()?;
        let records = KafkaDirectStream::new(&brokers)
            .topics(["events"])
            .starting_offsets(StartingOffsets::Earliest)
            .max_rate_per_partition(10_000)
            .create_strings(&ssc)?;
        let lines = records.map(|r| format!("{}:{}:{}", r.partition, r.offset, r.value));
        lines.save_as_text_files(&prefix, "txt")?;
        // A sink that writes each batch once and skips it when it runs again (as a database
        // sink with batch records does): only batches recomputed with the same records keep
        // it exact.
        let once = once_dir.clone();
        lines.try_foreach_rdd(move |batch, time| {
            let text: String = batch.collect().iter().map(|l| format!("{l}\n")).collect();
            let tmp = once.join(format!(".{}.tmp", time.milliseconds()));
            std::fs::write(&tmp, text).map_err(|e| e.to_string())?;
            // The first write of a batch wins.
            let _ = std::fs::hard_link(&tmp, once.join(format!("records-{}", time.milliseconds())));
            std::fs::remove_file(&tmp).map_err(|e| e.to_string())
        })?;
        let c = Arc::clone(&c);
        records
            .map(|_| ("records".to_owned(), 1u64))
            .update_state_by_key(|vs: Vec<u64>, s: Option<u64>| Some(vs.iter().sum::<u64>() + s.unwrap_or(0)))
            .checkpoint(milliseconds(100))?
            .foreach_rdd(move |batch, _| {
                if let Some((_, n)) = batch.collect().first() {
                    c.store(*n, Ordering::SeqCst);
                }
            })?;
        Ok(ssc)
    })
    .unwrap();
    ssc.start().unwrap();
    let deadline = Instant::now() + StdDuration::from_secs(120);
    while counted.load(Ordering::SeqCst) < records {
        assert!(Instant::now() < deadline, "the job did not count every record within 2 minutes");
        if let Err(e) = ssc.await_termination_or_timeout(milliseconds(10)) {
            panic!("the job failed: {e}");
        }
    }
    std::thread::sleep(StdDuration::from_millis(200));
    let failures = ssc.failures();
    assert!(failures.is_empty(), "{failures:?}");
    say(&format!("DONE {}", counted.load(Ordering::SeqCst)));
    ssc.stop(false).unwrap();
}

// ---------------------------------------------------------------------------------------------
// The parent.
// ---------------------------------------------------------------------------------------------

/// A child whose stdout lines are collected as they come.
struct Process {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Process {
    fn spawn(spec: String) -> Process {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "kafka_child", "--nocapture", "--test-threads=1"])
            .env("EMBER_KAFKA_CHILD", spec)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let out = child.stdout.take().unwrap();
        let l = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                // The first line the child says follows libtest's own "test kafka_child ... ".
                let line = line.strip_prefix("test kafka_child ... ").map(str::to_owned).unwrap_or(line);
                l.lock().unwrap().push(line);
            }
        });
        Process { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits for the process to exit successfully within `secs` seconds.
    fn finish(&mut self, secs: u64) {
        let deadline = Instant::now() + StdDuration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "a child failed ({status}); it printed {:?}", self.lines());
                // The reader thread may still hold the last lines.
                std::thread::sleep(StdDuration::from_millis(100));
                return;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("a child did not finish within {secs} s; it printed {:?}", self.lines());
            }
            std::thread::sleep(StdDuration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_processes_count_exactly_each_reading_its_own_partitions() {
    let kafka = MockKafka::start(1).unwrap();
    kafka.create_topic("words", PARTITIONS).unwrap();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..4000u64 {
        kafka
            .send("words", (i % PARTITIONS as u64) as i32, None, line(i).as_bytes())
            .unwrap();
        for w in line(i).split(' ') {
            *expected.entry(w.to_owned()).or_default() += 1;
        }
    }
    kafka.flush().unwrap();
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (a, b, c) = (bind(), bind(), bind());
    let port = |l: &std::net::TcpListener| l.local_addr().unwrap().port();
    let addresses = format!("127.0.0.1:{},127.0.0.1:{}", port(&a), port(&b));
    let control = format!("127.0.0.1:{}", port(&c));
    drop((a, b, c));
    let words: u64 = expected.values().sum();
    let mut processes: Vec<Process> = (0..2)
        .map(|p| Process::spawn(format!("cluster;{p};{addresses};{control};{};{words}", kafka.bootstrap_servers())))
        .collect();
    for p in &mut processes {
        p.finish(120);
    }
    let totals = processes[0]
        .lines()
        .iter()
        .find_map(|l| l.strip_prefix("TOTALS ").map(str::to_owned))
        .expect("process 0 printed the totals");
    let totals: BTreeMap<String, u64> = serde_json::from_str(&totals).unwrap();
    assert_eq!(totals, expected);
    // Partition i is read by worker i % 2: process 0 reads 0 and 2, process 1 reads 1 and 3.
    for (p, process) in processes.iter().enumerate() {
        let read: BTreeSet<i32> = process
            .lines()
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("READ {p} ")).map(|n| n.parse().unwrap()))
            .collect();
        let expected: BTreeSet<i32> = (0..PARTITIONS).filter(|i| *i as usize % 2 == p).collect();
        assert_eq!(read, expected, "the partitions process {p} read; it printed {:?}", process.lines());
    }
}

/// Every `p:offset:value` line of the job's output files, with the batch directory it is in.
fn output_lines(dir: &Path) -> Vec<(String, String)> {
    let mut lines = Vec::new();
    let Ok(batches) = std::fs::read_dir(dir) else { return lines };
    for batch in batches.flatten() {
        let name = batch.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if batch.path().is_file() {
            let text = std::fs::read_to_string(batch.path()).unwrap();
            lines.extend(text.lines().map(|l| (name.clone(), l.to_owned())));
            continue;
        }
        for part in std::fs::read_dir(batch.path()).unwrap().flatten() {
            if part.file_name().to_string_lossy().starts_with("part-") {
                let text = std::fs::read_to_string(part.path()).unwrap();
                lines.extend(text.lines().map(|l| (name.clone(), l.to_owned())));
            }
        }
    }
    lines
}

#[test]
fn sigkill_and_recovery_read_every_record_exactly_once() {
    const RECORDS: u64 = 9000;
    const KILLS: usize = 8;
    let kafka = MockKafka::start(1).unwrap();
    kafka.create_topic("events", PARTITIONS).unwrap();
    let dir = TempDir::new("kafka-crash").unwrap();
    std::fs::create_dir(dir.path().join("out")).unwrap();
    std::fs::create_dir(dir.path().join("once")).unwrap();
    let spec = format!("crash;{};{};{RECORDS}", dir.path().display(), kafka.bootstrap_servers());
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("seed {seed}");
    let mut random = seed;
    let mut next = move |bound: u64| {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random % bound
    };
    // Records arrive while the job runs and dies (about 2 per ms), so what a batch reads
    // depends on when it was planned: only the logged ranges make a replayed batch the same.
    let mut produced = 0u64;
    let mut resumed = 0;
    for _ in 0..KILLS {
        let mut job = Process::spawn(spec.clone());
        let die_at = Instant::now() + StdDuration::from_millis(400 + next(900));
        while Instant::now() < die_at {
            for _ in 0..20 {
                if produced < RECORDS {
                    kafka
                        .send("events", (produced % PARTITIONS as u64) as i32, None, line(produced).as_bytes())
                        .unwrap();
                    produced += 1;
                }
            }
            std::thread::sleep(StdDuration::from_millis(10));
        }
        job.child.kill().unwrap();
        job.child.wait().unwrap();
        std::thread::sleep(StdDuration::from_millis(50));
        resumed += usize::from(job.lines().iter().any(|l| l == "RESUMED"));
    }
    while produced < RECORDS {
        kafka
            .send("events", (produced % PARTITIONS as u64) as i32, None, line(produced).as_bytes())
            .unwrap();
        produced += 1;
    }
    kafka.flush().unwrap();
    let mut job = Process::spawn(spec);
    job.finish(150);
    assert!(
        job.lines().iter().any(|l| l == "RESUMED"),
        "the last run did not resume: {:?}",
        job.lines()
    );
    assert!(
        resumed >= KILLS / 2,
        "only {resumed} of {KILLS} killed runs had resumed from a checkpoint"
    );
    assert!(job.lines().contains(&format!("DONE {RECORDS}")), "{:?}", job.lines());

    for output in ["out", "once"] {
        assert_exactly_once(&output_lines(&dir.path().join(output)), RECORDS, &format!("{output} (seed {seed})"));
    }
}

fn assert_exactly_once(lines: &[(String, String)], records: u64, what: &str) {
    let mut batches_of: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (batch, line) in lines {
        batches_of.entry(line).or_default().push(batch);
    }
    let twice: Vec<_> = batches_of.iter().filter(|(_, b)| b.len() > 1).take(5).collect();
    assert!(twice.is_empty(), "{what}: records written by two batches, for example {twice:?}");
    let expected: BTreeSet<String> = (0..records)
        .map(|i| format!("{}:{}:{}", i % PARTITIONS as u64, i / PARTITIONS as u64, line(i)))
        .collect();
    let written: BTreeSet<String> = batches_of.keys().map(|l| (*l).to_owned()).collect();
    let lost: Vec<_> = expected.difference(&written).take(5).collect();
    assert!(
        lost.is_empty(),
        "{what}: {} records lost, for example {lost:?}",
        expected.len() - written.len().min(expected.len())
    );
    assert_eq!(written, expected, "{what}");
}
