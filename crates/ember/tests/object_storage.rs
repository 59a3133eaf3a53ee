//! Everything ember keeps in a directory, on a real S3-protocol server (moto, which `test.sh`
//! and `.ci/run` start on 127.0.0.1 and point `AWS_ENDPOINT_URL` at): checkpoints and
//! `get_or_create`, a file stream over a prefix with its replay log, and text and object files
//! committed by their `_SUCCESS` object (the write-ahead log on S3: `write_ahead_log.rs`). Each test works under a
//! fresh prefix of the test bucket.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use ember::prelude::*;
use ember::storage::Location;
use ember::testing::s3_test_dir as s3_dir;

fn location(url: &str) -> Location {
    Location::parse(url).unwrap()
}

/// The committed checkpoints under `dir`, oldest first.
fn manifests(dir: &Location) -> Vec<u64> {
    let mut times: Vec<u64> = dir
        .list()
        .unwrap()
        .iter()
        .filter_map(|e| e.name.strip_prefix("checkpoint-")?.strip_suffix(".manifest")?.parse().ok())
        .collect();
    times.sort_unstable();
    times
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + StdDuration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(StdDuration::from_millis(10));
    }
}

type Outputs = Arc<Mutex<Vec<(u64, Vec<(String, u64)>)>>>;

/// The seeds' stateful word count (running totals and an incremental window, checkpointed
/// every 2 batches) over a replayable input of 10 batches, on a manual clock.
fn word_count(clock: &ManualClock, workers: usize) -> ember::Result<(StreamingContext, Outputs)> {
    let ssc = StreamingContext::builder(seconds(1)).workers(workers).manual_clock(clock).build()?;
    let input = (0..10)
        .map(|i| Some((0..7).filter(|j| (i + j) % 3 != 0).map(|j| format!("w{}", (i * j) % 5)).collect()))
        .collect();
    let pairs = ssc.replay_stream(input, 2).map(|w: String| (w, 1u64));
    let totals = pairs
        .update_state_by_key(|vs: Vec<u64>, s: Option<u64>| Some(vs.iter().sum::<u64>() + s.unwrap_or(0)))
        .checkpoint(seconds(2))?;
    let windowed = pairs
        .reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, seconds(3), seconds(1))?
        .checkpoint(seconds(2))?
        .map(|(k, v)| (format!("window {k}"), v));
    let out: Outputs = Arc::default();
    let seen = Arc::clone(&out);
    totals.union(&windowed)?.foreach_rdd(move |b, t| {
        let mut items = b.collect();
        items.sort();
        seen.lock().unwrap().push((t.milliseconds(), items));
    })?;
    Ok((ssc, out))
}

/// Starts `ssc`, runs it to batch `until_ms` and stops it.
fn run_until(ssc: &StreamingContext, clock: &ManualClock, until_ms: u64) {
    ssc.start().unwrap();
    clock.set_ms(until_ms);
    assert!(ssc.await_batch(Time::from_millis(until_ms), seconds(30)).unwrap());
    ssc.stop(false).unwrap();
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
}

/// As [`run_until`], one batch at a time, waiting at every checkpoint time (every 2 s) until
/// its checkpoint is committed: a writer that falls behind commits only the newest ready one.
fn run_committing(ssc: &StreamingContext, clock: &ManualClock, dir: &Location, until_ms: u64) {
    ssc.start().unwrap();
    for t in (1000..=until_ms).step_by(1000) {
        clock.set_ms(t);
        assert!(ssc.await_batch(Time::from_millis(t), seconds(30)).unwrap());
        if t % 2000 == 0 {
            wait_until(&format!("checkpoint {t} is committed"), || manifests(dir).contains(&t));
        }
    }
    ssc.stop(false).unwrap();
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
}

#[test]
fn a_job_checkpointed_on_s3_resumes_with_the_uninterrupted_output_on_any_number_of_workers() {
    let clock = ManualClock::new();
    let (ssc, whole) = word_count(&clock, 1).unwrap();
    run_until(&ssc, &clock, 10_000);
    let whole = whole.lock().unwrap().clone();
    assert_eq!(whole.len(), 10);

    for workers in [1, 3] {
        let url = s3_dir("checkpoint");
        let dir = location(&url);
        let clock = ManualClock::new();
        let ssc = StreamingContext::get_or_create(&url, || Ok(word_count(&clock, 2)?.0)).unwrap();
        run_committing(&ssc, &clock, &dir, 5_000);
        // Two committed checkpoints are kept (2 s and 4 s); each has its state objects.
        assert_eq!(manifests(&dir), vec![2000, 4000]);
        let state: Vec<String> = dir.join("checkpoint-4000").list().unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(state, vec!["worker-0.state", "worker-1.state"]);

        let clock = ManualClock::new();
        let outputs: Mutex<Option<Outputs>> = Mutex::new(None);
        let ssc = StreamingContext::get_or_create(&url, || {
            let (ssc, out) = word_count(&clock, workers)?;
            *outputs.lock().unwrap() = Some(out);
            Ok(ssc)
        })
        .unwrap();
        run_until(&ssc, &clock, 10_000);
        let rest = outputs.lock().unwrap().take().unwrap().lock().unwrap().clone();
        // From the checkpoint at 4 s: batch 5 s runs again, then the rest.
        assert_eq!(rest, whole[4..].to_vec(), "recovered on {workers} workers");
        // Older checkpoints were deleted, manifest and state alike.
        // (A writer that falls behind commits only the newest ready one: 6 s may be skipped.)
        let kept = manifests(&dir);
        assert!(kept.len() == 2 && kept[0] >= 6000 && kept[1] == 10_000, "{kept:?}");
        assert!(dir.join("checkpoint-4000").list().unwrap().is_empty());
    }
}

#[test]
fn a_damaged_checkpoint_on_s3_is_refused_naming_its_url_and_the_one_before_is_used() {
    let url = s3_dir("damaged");
    let dir = location(&url);
    let clock = ManualClock::new();
    let ssc = StreamingContext::get_or_create(&url, || Ok(word_count(&clock, 1)?.0)).unwrap();
    run_committing(&ssc, &clock, &dir, 5_000);
    dir.put("checkpoint-4000/worker-0.state", b"garbage".to_vec()).unwrap();
    let clock = ManualClock::new();
    let outputs: Mutex<Option<Outputs>> = Mutex::new(None);
    let ssc = StreamingContext::get_or_create(&url, || {
        let (ssc, out) = word_count(&clock, 1)?;
        *outputs.lock().unwrap() = Some(out);
        Ok(ssc)
    })
    .unwrap();
    run_until(&ssc, &clock, 4_000);
    // Recovered from 2 s: batches 3 s and 4 s ran again.
    let rest = outputs.lock().unwrap().take().unwrap().lock().unwrap().clone();
    assert_eq!(rest.iter().map(|(t, _)| *t).collect::<Vec<_>>(), vec![3000, 4000]);
}

#[test]
fn urls_that_cannot_work_are_refused_saying_why_without_echoing_credentials() {
    let ssc = StreamingContext::new(seconds(1)).unwrap();
    let error = ssc.checkpoint("s3://AKIAEXAMPLE:hunter2@bucket/x").unwrap_err().to_string();
    assert!(
        error.contains("must not carry credentials") && !error.contains("hunter2"),
        "{error}"
    );
    let error = ssc.checkpoint("s3:///x").unwrap_err().to_string();
    assert!(error.contains("names no bucket"), "{error}");
    let error = ssc.checkpoint("hdfs://namenode/ckpt").unwrap_err().to_string();
    assert!(error.contains("hdfs:// is not supported yet"), "{error}");
    // A bucket that does not exist is named when the directory is set, not at the first batch.
    let error = ssc.checkpoint("s3://no-such-ember-bucket/ckpt").unwrap_err().to_string();
    assert!(error.contains("s3://no-such-ember-bucket/ckpt"), "{error}");
    assert!(!error.contains(&std::env::var("AWS_SECRET_ACCESS_KEY").unwrap()), "{error}");
}

type Lines = Arc<Mutex<Vec<(u64, String)>>>;

/// A text file stream over `input`, checkpointed in `checkpoint`, every 50 ms.
fn file_job(input: &str) -> ember::Result<(StreamingContext, Lines)> {
    let ssc = StreamingContext::builder(milliseconds(50)).workers(2).build()?;
    let lines: Lines = Arc::default();
    let seen = Arc::clone(&lines);
    ssc.text_file_stream(input)?.foreach_rdd(move |b, t| {
        seen.lock().unwrap().extend(b.collect().into_iter().map(|l| (t.milliseconds(), l)));
    })?;
    Ok((ssc, lines))
}

#[test]
fn a_file_stream_over_an_s3_prefix_reads_each_new_object_once_across_a_restart() {
    let (input, checkpoint) = (s3_dir("file-stream-input"), s3_dir("file-stream-checkpoint"));
    let at = location(&input);
    at.put("existing.txt", b"old line\n".to_vec()).unwrap();
    let object = |i: usize| (0..20).map(|j| format!("f{i}-{j}\n")).collect::<String>().into_bytes();
    let mut seen_lines = Vec::new();
    for (run, files) in [(0, 0..15), (1, 15..30)] {
        let lines: Mutex<Option<Lines>> = Mutex::new(None);
        let ssc = StreamingContext::get_or_create(&checkpoint, || {
            let (ssc, l) = file_job(&input)?;
            *lines.lock().unwrap() = Some(l);
            Ok(ssc)
        })
        .unwrap();
        let lines = lines.lock().unwrap().take().unwrap();
        ssc.start().unwrap();
        for i in files.clone() {
            at.put(&format!("part-{i:03}.txt"), object(i)).unwrap();
            // Hidden and `_` objects are skipped, as Spark skips such files.
            at.put(&format!("_tmp-{i}"), b"skipped\n".to_vec()).unwrap();
            std::thread::sleep(StdDuration::from_millis(15));
        }
        let want = files.len() * 20;
        wait_until(&format!("run {run} read {want} lines"), || lines.lock().unwrap().len() >= want);
        std::thread::sleep(StdDuration::from_millis(200));
        ssc.stop(true).unwrap();
        assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
        let lines = lines.lock().unwrap().clone();
        // Each object whole in one batch.
        let mut batch_of: BTreeMap<String, u64> = BTreeMap::new();
        for (t, line) in &lines {
            let file = line.split('-').next().unwrap().to_owned();
            assert_eq!(*batch_of.entry(file).or_insert(*t), *t, "{line} in two batches");
        }
        seen_lines.extend(lines.into_iter().map(|(_, l)| l));
    }
    seen_lines.sort();
    let mut expected: Vec<String> = (0..30).flat_map(|i| (0..20).map(move |j| format!("f{i}-{j}"))).collect();
    expected.sort();
    assert_eq!(seen_lines, expected, "every line of every new object once; the existing one never");
}

#[test]
fn text_and_object_files_on_s3_are_committed_by_success_and_a_rerun_replaces_them_whole() {
    let out = s3_dir("files-out");
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1))
        .workers(3)
        .manual_clock(&clock)
        .build()
        .unwrap();
    let input = (0..3)
        .map(|i| Some((0..12).map(|j| format!("w{}", (i + j) % 4)).collect()))
        .collect();
    let counts = ssc.replay_stream(input, 3).map(|w: String| (w, 1u64)).reduce_by_key(|a, b| a + b);
    counts.save_as_text_files(&format!("{out}/counts"), "txt").unwrap();
    counts.save_as_object_files(&format!("{out}/objects"), "").unwrap();
    run_until(&ssc, &clock, 3_000);

    let root = location(&out);
    for t in [1000, 2000, 3000] {
        let text = root.join(&format!("counts-{t}.txt")).read_directory().unwrap();
        let mut lines: Vec<String> = text
            .iter()
            .flat_map(|(_, bytes)| {
                String::from_utf8(bytes.clone())
                    .unwrap()
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        lines.sort();
        assert_eq!(lines, vec!["(w0,3)", "(w1,3)", "(w2,3)", "(w3,3)"], "batch {t}");
        let batch: Batch<(String, u64)> = Batch::read_object_files(format!("{out}/objects-{t}")).unwrap();
        assert_eq!(batch.time(), Time::from_millis(t));
        let mut items = batch.collect();
        items.sort();
        assert_eq!(items, (0..4).map(|k| (format!("w{k}"), 3)).collect::<Vec<_>>());
    }

    // A batch written again (as after a recovery) with fewer partitions: the commit names
    // only the new parts, and the old third part is gone.
    let again = Batch::from_partitions(
        Time::from_millis(2000),
        vec![vec![("w0".to_string(), 3u64)], vec![("w1".to_string(), 3)]],
    );
    again.save_as_object_file(format!("{out}/objects-2000")).unwrap();
    let back: Batch<(String, u64)> = Batch::read_object_files(format!("{out}/objects-2000")).unwrap();
    assert_eq!(back.partitions(), again.partitions());
    let parts: Vec<String> = root.join("objects-2000").list().unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(parts.len(), 3, "two parts and _SUCCESS: {parts:?}");

    // Without its commit a directory is not read.
    root.join("objects-3000").delete("_SUCCESS").unwrap();
    let error = Batch::<(String, u64)>::read_object_files(format!("{out}/objects-3000"))
        .unwrap_err()
        .to_string();
    assert!(error.contains(&format!("{out}/objects-3000/_SUCCESS is missing")), "{error}");
}

/// Forwards connections from a port of its own to the S3 server until told to go down: then it
/// closes every connection and stops listening, as a server that went away.
struct Outage {
    address: String,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl Outage {
    fn new() -> Outage {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        let target = std::env::var("AWS_ENDPOINT_URL")
            .unwrap()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = Arc::clone(&down);
        std::thread::spawn(move || {
            let mut open: Vec<TcpStream> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(&target) else { continue };
                        for (mut from, mut to) in [
                            (client.try_clone().unwrap(), server.try_clone().unwrap()),
                            (server.try_clone().unwrap(), client.try_clone().unwrap()),
                        ] {
                            std::thread::spawn(move || {
                                let mut buf = [0u8; 16 * 1024];
                                while let Ok(n) = from.read(&mut buf) {
                                    if n == 0 || to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                                let _ = to.shutdown(std::net::Shutdown::Both);
                            });
                        }
                        open.extend([client, server]);
                    }
                    Err(_) => std::thread::sleep(StdDuration::from_millis(5)),
                }
            }
            // Gone: every connection cut, nothing listening.
            for stream in open {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        });
        Outage { address, down }
    }
}

const OUTAGE_BATCHES: u64 = 60;

/// The outage test's job: running totals over a replayable input, 100 ms batches, checkpointed
/// every batch to `EMBER_S3_OUTAGE_CHILD`; prints `EMBER-FAILED` and the error when the job
/// fails, else the last batch's totals once the input is counted.
#[test]
fn s3_outage_child() {
    let Ok(checkpoint) = std::env::var("EMBER_S3_OUTAGE_CHILD") else {
        return;
    };
    let totals: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let seen = Arc::clone(&totals);
    let ssc = StreamingContext::get_or_create(&checkpoint, || {
        let ssc = StreamingContext::builder(milliseconds(100)).build()?;
        let input = (0..OUTAGE_BATCHES)
            .map(|i| Some(vec![format!("w{}", i % 7), format!("w{}", i % 3)]))
            .collect();
        ssc.replay_stream(input, 1)
            .map(|w: String| (w, 1u64))
            .update_state_by_key(|vs: Vec<u64>, s: Option<u64>| Some(vs.iter().sum::<u64>() + s.unwrap_or(0)))
            .checkpoint(milliseconds(100))?
            .foreach_rdd(move |b, _| *seen.lock().unwrap() = b.collect().into_iter().collect())?;
        Ok(ssc)
    })
    .unwrap_or_else(|e| {
        println!("EMBER-FAILED: {e}");
        std::process::exit(3)
    });
    ssc.start().unwrap();
    let deadline = Instant::now() + StdDuration::from_secs(120);
    while totals.lock().unwrap().values().sum::<u64>() < 2 * OUTAGE_BATCHES {
        if let Err(e) = ssc.await_termination_or_timeout(milliseconds(20)) {
            println!("EMBER-FAILED: {e}");
            std::process::exit(3);
        }
        assert!(Instant::now() < deadline, "the job did not count its input");
    }
    ssc.stop(true).unwrap();
    // A failure can come while the stop it asked for drains the last batches.
    if let Some(failure) = ssc.failures().first() {
        println!("EMBER-FAILED: {failure}");
        std::process::exit(3);
    }
    println!("EMBER-TOTALS: {:?}", totals.lock().unwrap());
}

#[test]
fn a_server_that_goes_away_is_retried_then_the_job_fails_naming_the_url_and_nothing_committed_is_lost() {
    if std::env::var("EMBER_S3_OUTAGE_CHILD").is_ok() {
        return;
    }
    let url = s3_dir("outage");
    let dir = location(&url);
    let outage = Outage::new();
    const SECRET: &str = "ember-outage-secret-7f3a";
    let child = |endpoint: &str| {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "s3_outage_child", "--nocapture", "--test-threads=1"])
            .env("EMBER_S3_OUTAGE_CHILD", &url)
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("EMBER_S3_RETRY_TIMEOUT_S", "2")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let running = child(&format!("http://{}", outage.address));
    wait_until("a checkpoint is committed through the forwarder", || manifests(&dir).len() >= 2);
    outage.down.store(true, Ordering::SeqCst);
    let went_away = Instant::now();
    let committed = manifests(&dir);
    let output = running.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(3), "{stdout}\n{stderr}");
    // Retried for a bounded time: the retry timeout, plus a request's own timeouts.
    assert!(
        went_away.elapsed() < StdDuration::from_secs(60),
        "failed only after {:?}",
        went_away.elapsed()
    );
    assert!(
        stdout.contains("EMBER-FAILED") && stdout.contains(&url),
        "the failure names the URL: {stdout}"
    );
    assert!(
        !stdout.contains(SECRET) && !stderr.contains(SECRET),
        "the secret key leaked:\n{stdout}\n{stderr}"
    );
    // What was committed before the outage is all there, and the job resumes from it (on the
    // server directly) to count every word once.
    let after = manifests(&dir);
    assert!(after.last() >= committed.last(), "{committed:?} then {after:?}");
    let output = child(&std::env::var("AWS_ENDPOINT_URL").unwrap()).wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..OUTAGE_BATCHES {
        *expected.entry(format!("w{}", i % 7)).or_default() += 1;
        *expected.entry(format!("w{}", i % 3)).or_default() += 1;
    }
    assert!(stdout.contains(&format!("EMBER-TOTALS: {expected:?}")), "{stdout}");
}
