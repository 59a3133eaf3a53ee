//! The receivers' write-ahead log: records a receiver stored after the last committed
//! checkpoint come back after a recovery, each in the batch it had before, with the checkpoint
//! directory on local disk and on moto's S3 server (`s3://`, where the log is one object per
//! synced block); without a checkpoint directory the log is refused.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use ember::prelude::*;
use ember::storage::Location;
use ember::testing::TempDir;

/// Stores the blocks the test pushes, each with one `store_many`, and counts what it stored.
#[derive(Clone, Default)]
struct Feed {
    blocks: Arc<Mutex<VecDeque<Vec<u64>>>>,
    stored: Arc<AtomicU64>,
}

impl Receiver<u64> for Feed {
    fn on_start(&mut self, ctx: &ReceiverContext<u64>) {
        while !ctx.is_stopped() {
            let next = self.blocks.lock().unwrap().pop_front();
            match next {
                Some(block) => {
                    let n = block.len() as u64;
                    ctx.store_many(block);
                    self.stored.fetch_add(n, Ordering::SeqCst);
                }
                None => std::thread::sleep(StdDuration::from_millis(1)),
            }
        }
    }
}

impl Feed {
    /// Pushes `block` and waits until `store_many` returned for it.
    fn store(&self, block: Vec<u64>) {
        let target = self.stored.load(Ordering::SeqCst) + block.len() as u64;
        self.blocks.lock().unwrap().push_back(block);
        let deadline = Instant::now() + StdDuration::from_secs(30);
        while self.stored.load(Ordering::SeqCst) < target {
            assert!(Instant::now() < deadline, "the receiver did not store the block");
            std::thread::sleep(StdDuration::from_millis(1));
        }
    }
}

type Totals = Arc<Mutex<Vec<(u64, BTreeMap<u64, u64>)>>>;

/// Running counts of `x % 5` over what `feed` stores, checkpointed every 2 batches.
fn job(clock: &ManualClock, feed: &Feed, wal: bool) -> ember::Result<(StreamingContext, Totals)> {
    let ssc = StreamingContext::builder(seconds(1))
        .manual_clock(clock)
        .write_ahead_log(wal)
        .build()?;
    let totals: Totals = Arc::default();
    let seen = Arc::clone(&totals);
    ssc.receiver_stream(feed.clone())
        .map(|x| (x % 5, 1u64))
        .update_state_by_key(|vs: Vec<u64>, s: Option<u64>| Some(vs.iter().sum::<u64>() + s.unwrap_or(0)))
        .checkpoint(seconds(2))?
        .foreach_rdd(move |b, t| seen.lock().unwrap().push((t.milliseconds(), b.collect().into_iter().collect())))?;
    Ok((ssc, totals))
}

fn advance(ssc: &StreamingContext, clock: &ManualClock, ms: u64) {
    clock.set_ms(ms);
    assert!(ssc.await_batch(Time::from_millis(ms), seconds(30)).unwrap());
}

/// Runs batches 1..4 (a block each) checkpointed in `dir` (a path or an `s3://` URL), stops, and
/// makes the checkpoint of 2 s the last committed one (as if the process had died before
/// committing 4 s); then recovers and stores one more block. Returns the counts after batch 6.
fn stop_and_recover(dir: &str, wal: bool) -> BTreeMap<u64, u64> {
    let location = Location::parse(dir).unwrap();
    let (feed, clock) = (Feed::default(), ManualClock::new());
    let ssc = StreamingContext::get_or_create(dir, || Ok(job(&clock, &feed, wal)?.0)).unwrap();
    ssc.start().unwrap();
    for i in 1..=4u64 {
        feed.store((0..i * 10).collect());
        advance(&ssc, &clock, i * 1000);
        if i == 2 {
            // The writer commits the newest ready checkpoint: let it commit this one.
            let deadline = Instant::now() + StdDuration::from_secs(30);
            while location.get("checkpoint-2000.manifest").unwrap().is_none() {
                assert!(Instant::now() < deadline, "checkpoint 2000 was not committed");
                std::thread::sleep(StdDuration::from_millis(5));
            }
        }
    }
    ssc.stop(false).unwrap();
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
    drop_checkpoints_after(&location, 2000);

    let (feed, clock) = (Feed::default(), ManualClock::new());
    let totals: Mutex<Option<Totals>> = Mutex::new(None);
    let ssc = StreamingContext::get_or_create(dir, || {
        let (ssc, t) = job(&clock, &feed, wal)?;
        *totals.lock().unwrap() = Some(t);
        Ok(ssc)
    })
    .unwrap();
    ssc.start().unwrap();
    // Batch 5 was the stopped run's last (cut empty at the stop): it is replayed as it was.
    advance(&ssc, &clock, 5000);
    feed.store((0..50).collect());
    advance(&ssc, &clock, 6000);
    ssc.stop(false).unwrap();
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
    let totals = totals.lock().unwrap().take().unwrap();
    let totals = totals.lock().unwrap();
    totals.iter().find(|(t, _)| *t == 6000).expect("no output for batch 6").1.clone()
}

/// Removes the committed checkpoints after `time` (their manifests), as a crash before they
/// were committed would have left the directory.
fn drop_checkpoints_after(dir: &Location, time: u64) {
    for entry in dir.list().unwrap() {
        if let Some(t) = entry.name.strip_prefix("checkpoint-").and_then(|n| n.strip_suffix(".manifest"))
            && t.parse::<u64>().unwrap() > time
        {
            dir.delete(&entry.name).unwrap();
        }
    }
}

/// Everything `stop_and_recover` stores: blocks of 10, 20, 30, 40 and 50 records, counted by
/// x % 5.
fn all_stored() -> BTreeMap<u64, u64> {
    let mut expected = BTreeMap::new();
    for n in [10u64, 20, 30, 40, 50] {
        for x in 0..n {
            *expected.entry(x % 5).or_insert(0) += 1;
        }
    }
    expected
}

#[test]
fn records_stored_after_the_checkpoint_come_back_after_a_recovery() {
    let dir = TempDir::new("wal").unwrap();
    assert_eq!(stop_and_recover(dir.path().to_str().unwrap(), true), all_stored());
    // Without the log, the blocks of batches 3 and 4 are lost, as in Spark.
    let dir = TempDir::new("wal").unwrap();
    let without = stop_and_recover(dir.path().to_str().unwrap(), false);
    assert_eq!(without.values().sum::<u64>(), 10 + 20 + 50, "{without:?}");
}

#[test]
fn the_write_ahead_log_on_s3_brings_back_what_was_stored_after_the_checkpoint() {
    let url = ember::testing::s3_test_dir("wal");
    assert_eq!(stop_and_recover(&url, true), all_stored(), "every stored record counted once");
    // The log is objects, one per synced group of frames, under the receiver's name.
    let receivers = Location::parse(&url).unwrap().join("receivers");
    let logs = receivers.list_dirs().unwrap();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(!receivers.join(&logs[0]).list().unwrap().is_empty());
}

#[test]
fn the_write_ahead_log_needs_a_checkpoint_directory() {
    let clock = ManualClock::new();
    let (ssc, _) = job(&clock, &Feed::default(), true).unwrap();
    let error = ssc.start().unwrap_err().to_string();
    assert!(error.contains("write-ahead log needs a checkpoint directory"), "{error}");
}

#[test]
fn an_acknowledged_socket_in_a_checkpointed_job_needs_the_write_ahead_log() {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (dir, clock) = (TempDir::new("wal-ack").unwrap(), ManualClock::new());
    let ssc = StreamingContext::builder(seconds(1)).manual_clock(&clock).build().unwrap();
    ssc.checkpoint(dir.path()).unwrap();
    ssc.socket_text_stream_acknowledged("127.0.0.1", port).count().print().unwrap();
    ssc.start().unwrap();
    // The receiver connects, then stops without asking for lines.
    let (stream, _) = listener.accept().unwrap();
    stream.set_read_timeout(Some(StdDuration::from_secs(10))).unwrap();
    let mut said = String::new();
    let _ = BufReader::new(stream).read_line(&mut said);
    assert_eq!(said, "", "the receiver asked for lines it could lose");
    let error = ssc.await_termination_or_timeout(seconds(10)).unwrap_err();
    assert!(error.to_string().contains("needs the write-ahead log"), "{error}");
    ssc.stop(false).unwrap();
}

#[test]
fn an_acknowledged_socket_resumes_where_the_dropped_connection_left_off() {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1)).manual_clock(&clock).build().unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&seen);
    ssc.socket_text_stream_acknowledged("127.0.0.1", port)
        .foreach_rdd(move |b, _| sink.lock().unwrap().extend(b.collect()))
        .unwrap();
    ssc.start().unwrap();
    // First connection: two whole lines and half of a third, then the connection drops.
    let (mut stream, _) = listener.accept().unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "EMBER-RESUME 0\n");
    stream.write_all(b"a\nb\nhal").unwrap();
    await_ack(&mut reader, 2);
    drop((stream, reader));
    // The receiver reconnects and asks for line 2, which it did not store half of.
    let (mut stream, _) = listener.accept().unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "EMBER-RESUME 2\n");
    stream.write_all(b"half\nd\n").unwrap();
    await_ack(&mut reader, 4);
    clock.advance(seconds(1));
    assert!(ssc.await_batch(Time::from_millis(1000), seconds(10)).unwrap());
    ssc.stop(false).unwrap();
    assert_eq!(*seen.lock().unwrap(), ["a", "b", "half", "d"]);
}

/// Reads acknowledgements until one says `n` lines are stored (a read may split the lines).
fn await_ack(reader: &mut impl std::io::BufRead, n: u64) {
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let acked: u64 = line
            .trim()
            .strip_prefix("EMBER-ACK ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not an acknowledgement: {line:?}"));
        assert!(acked <= n, "acknowledged {acked} lines, only {n} were sent whole");
        if acked == n {
            return;
        }
    }
}
