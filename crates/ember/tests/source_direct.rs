//! `StreamingContext::direct_stream` through its public API, with a source of numbered records
//! (as an offset range of a log that always has more): slices become partitions on their
//! workers, completions are reported in order, problems reach `await_termination`, and with
//! backpressure the planner is given a rate that follows what the job sustains.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use ember::prelude::*;
use ember::{DirectBatch, DirectSource};
use serde::{Deserialize, Serialize};

/// Records `[from, until)` of an endless log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Range {
    part: u32,
    from: u64,
    until: u64,
}

/// Plans `per_batch` records for each of `parts` parts (fewer under a rate limit), and records
/// what it was told.
struct Log {
    parts: u32,
    per_batch: u64,
    next: u64,
    completed: Arc<Mutex<Vec<u64>>>,
    limits: Arc<Mutex<Vec<Option<f64>>>>,
    report_at: Option<u64>,
}

impl DirectSource for Log {
    type Slice = Range;

    fn plan(&mut self, batch: &DirectBatch<'_>) -> Vec<Range> {
        self.limits.lock().unwrap().push(batch.rate_limit());
        if self.report_at == Some(batch.time().milliseconds()) {
            batch.report(format!("the log is unhappy at {} ms", batch.time().milliseconds()));
        }
        let mut per_part = self.per_batch;
        if let Some(rate) = batch.rate_limit() {
            let allowed = rate * batch.interval().as_millis() as f64 / 1000.0;
            per_part = per_part.min((allowed / f64::from(self.parts)).max(1.0) as u64);
        }
        let from = self.next;
        self.next += per_part;
        (0..self.parts)
            .map(|part| Range {
                part,
                from,
                until: from + per_part,
            })
            .collect()
    }

    fn replay(&mut self, _time: Time, slices: &[Range]) {
        self.next = slices.iter().map(|s| s.until).max().unwrap_or(self.next);
    }

    fn records(&self, slice: &Range) -> Option<u64> {
        Some(slice.until - slice.from)
    }

    fn completed(&mut self, time: Time) {
        self.completed.lock().unwrap().push(time.milliseconds());
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        Ok(self.next.to_le_bytes().to_vec())
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.next = u64::from_le_bytes(bytes.try_into().map_err(|_| "not 8 bytes".to_owned())?);
        Ok(())
    }
}

fn log(parts: u32, per_batch: u64) -> (Log, Arc<Mutex<Vec<u64>>>, Arc<Mutex<Vec<Option<f64>>>>) {
    let (completed, limits) = (Arc::default(), Arc::default());
    let source = Log {
        parts,
        per_batch,
        next: 0,
        completed: Arc::clone(&completed),
        limits: Arc::clone(&limits),
        report_at: None,
    };
    (source, completed, limits)
}

/// The records of a range, each tagged with the worker thread that read it.
fn read(range: &Range) -> Result<Vec<(u32, u64, String)>, String> {
    let thread = std::thread::current().name().unwrap_or_default().to_owned();
    Ok((range.from..range.until).map(|i| (range.part, i, thread.clone())).collect())
}

#[test]
fn slices_become_partitions_read_on_their_workers_and_completions_come_in_order() {
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1))
        .manual_clock(&clock)
        .workers(2)
        .build()
        .unwrap();
    let (source, completed, _) = log(4, 3);
    let stream = ssc.direct_stream("numbered_log", "numbered log".into(), source, read);
    let batches: Arc<Mutex<Vec<Vec<Vec<(u32, u64, String)>>>>> = Arc::default();
    let b = Arc::clone(&batches);
    stream
        .foreach_rdd(move |batch, _| b.lock().unwrap().push(batch.into_partitions()))
        .unwrap();
    ssc.start().unwrap();
    for k in 1..=4u64 {
        clock.advance(seconds(1));
        assert!(ssc.await_batch(Time::from_millis(k * 1000), seconds(30)).unwrap());
    }
    // Completions are reported before a later batch is planned.
    clock.advance(seconds(1));
    assert!(ssc.await_batch(Time::from_millis(5000), seconds(30)).unwrap());
    ssc.stop(false).unwrap();
    let batches = batches.lock().unwrap();
    for (k, partitions) in batches.iter().enumerate() {
        assert_eq!(partitions.len(), 4, "one partition per slice");
        for (i, partition) in partitions.iter().enumerate() {
            let first = k as u64 * 3;
            let expected: Vec<(u32, u64)> = (first..first + 3).map(|n| (i as u32, n)).collect();
            let got: Vec<(u32, u64)> = partition.iter().map(|(p, n, _)| (*p, *n)).collect();
            assert_eq!(got, expected, "batch {} partition {i}", k + 1);
            // Slice i is read by worker i % 2.
            assert!(
                partition.iter().all(|(_, _, t)| t.ends_with(&format!("-{}", i % 2))),
                "{partition:?}"
            );
        }
    }
    let completed = completed.lock().unwrap();
    assert!(completed.starts_with(&[1000, 2000, 3000, 4000]), "{completed:?}");
}

#[test]
fn a_reported_problem_reaches_await_termination_naming_the_stream() {
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1)).manual_clock(&clock).build().unwrap();
    let (mut source, _, _) = log(1, 1);
    source.report_at = Some(2000);
    ssc.direct_stream("numbered_log", "numbered log".into(), source, read)
        .foreach_rdd(|_, _| {})
        .unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(2));
    assert!(ssc.await_batch(Time::from_millis(2000), seconds(30)).unwrap());
    let error = ssc.await_termination_or_timeout(milliseconds(100)).unwrap_err().to_string();
    ssc.stop(false).unwrap();
    assert!(error.contains("numbered log"), "{error}");
    assert!(error.contains("the log is unhappy at 2000 ms"), "{error}");
}

#[test]
fn backpressure_gives_the_planner_a_rate_that_follows_what_the_job_sustains() {
    // The job costs 50 µs a record (20 000 records/s); the source offers 2 000 records per
    // 20 ms batch (100 000/s), five times that.
    let ssc = StreamingContext::builder(milliseconds(20)).backpressure(true).build().unwrap();
    let (source, _, limits) = log(2, 1000);
    let processed = Arc::new(AtomicU64::new(0));
    let p = Arc::clone(&processed);
    ssc.direct_stream("numbered_log", "numbered log".into(), source, read)
        .foreach_rdd(move |batch, _| {
            let n = batch.count();
            std::thread::sleep(StdDuration::from_micros(50 * n));
            p.fetch_add(n, Ordering::Relaxed);
        })
        .unwrap();
    ssc.start().unwrap();
    std::thread::sleep(StdDuration::from_secs(4));
    ssc.stop(false).unwrap();
    let limits = limits.lock().unwrap();
    let rates: Vec<f64> = limits.iter().flatten().copied().collect();
    assert!(!rates.is_empty(), "no rate was ever estimated");
    // Once estimated, the rate stays near what the job sustains, far below the offered 100 000/s.
    let last = &rates[rates.len().saturating_sub(20)..];
    let mean = last.iter().sum::<f64>() / last.len() as f64;
    assert!(
        (5_000.0..40_000.0).contains(&mean),
        "the estimated rates end at {mean:.0}/s: {last:?}"
    );
    assert!(limits.first() == Some(&None), "the first batch has no estimate");
}
