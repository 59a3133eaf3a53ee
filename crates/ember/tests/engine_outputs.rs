//! Outputs run off the dataflow thread: a slow output does not hold up the processing of the
//! next batch's input on any worker; outputs still run in batch order.

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use ember::prelude::*;

#[test]
fn a_slow_foreach_rdd_does_not_delay_the_next_batchs_input() {
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1))
        .workers(2)
        .manual_clock(&clock)
        .build()
        .unwrap();
    // Batch i holds 100*i .. 100*i+9, in 2 partitions spread over the 2 workers.
    let batches: Vec<Option<Vec<u64>>> = (1..=3).map(|i| Some((100 * i..100 * i + 10).collect())).collect();
    let mapped = Arc::new(Mutex::new(BTreeSet::new()));
    let seen = Arc::clone(&mapped);
    let doubled = ssc.replay_stream(batches, 2).map(move |x| {
        seen.lock().unwrap().insert(x);
        x * 2
    });
    // The first batch's output blocks until the test releases it.
    let (release, released) = mpsc::channel::<()>();
    let released = Mutex::new(released);
    let outputs = Arc::new(Mutex::new(Vec::new()));
    let order = Arc::clone(&outputs);
    doubled
        .foreach_rdd(move |b, t| {
            if t == Time::from_millis(1000) {
                let _ = released.lock().unwrap().recv_timeout(StdDuration::from_secs(30));
            }
            let mut items = b.collect();
            items.sort_unstable();
            order.lock().unwrap().push((t.milliseconds(), items));
        })
        .unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(2));
    // While batch 1's output is blocked, both workers map batch 2's input (200..210).
    let deadline = Instant::now() + StdDuration::from_secs(20);
    while (200..210).any(|x| !mapped.lock().unwrap().contains(&x)) {
        assert!(
            Instant::now() < deadline,
            "batch 2's input was not processed while batch 1's output was blocked: {:?}",
            mapped.lock().unwrap()
        );
        std::thread::sleep(StdDuration::from_millis(5));
    }
    assert!(outputs.lock().unwrap().is_empty(), "batch 1's output finished early");
    release.send(()).unwrap();
    clock.advance(seconds(1));
    assert!(ssc.await_batch(Time::from_millis(3000), seconds(30)).unwrap());
    ssc.stop(true).unwrap();
    let got = outputs.lock().unwrap().clone();
    let times: Vec<u64> = got.iter().map(|(t, _)| *t).collect();
    assert_eq!(times, vec![1000, 2000, 3000], "outputs ran out of batch order");
    assert_eq!(got[1].1, (200..210).map(|x| x * 2).collect::<Vec<_>>());
}

#[test]
fn foreach_partition_runs_on_every_worker_with_its_own_partitions() {
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1))
        .workers(2)
        .manual_clock(&clock)
        .build()
        .unwrap();
    let batches: Vec<Option<Vec<u64>>> = vec![Some((0..40).collect()), Some((40..80).collect())];
    let parts = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&parts);
    ssc.replay_stream(batches, 4)
        .foreach_partition(move |partition: Vec<u64>, time| {
            let thread = std::thread::current().name().unwrap_or_default().to_owned();
            sink.lock().unwrap().push((time.milliseconds(), thread, partition));
        })
        .unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(2));
    assert!(ssc.await_batch(Time::from_millis(2000), seconds(30)).unwrap());
    ssc.stop(true).unwrap();
    let parts = parts.lock().unwrap().clone();
    for (time, first) in [(1000u64, 0u64), (2000, 40)] {
        let mut items: Vec<u64> = parts
            .iter()
            .filter(|(t, _, _)| *t == time)
            .flat_map(|(_, _, p)| p.clone())
            .collect();
        items.sort_unstable();
        assert_eq!(items, (first..first + 40).collect::<Vec<_>>(), "batch {time}");
        assert_eq!(parts.iter().filter(|(t, _, _)| *t == time).count(), 4, "4 partitions per batch");
    }
    // Each worker writes its own partitions, on its output thread or (quick outputs) its
    // worker thread: `ember-output-N` or `timely:work-N`.
    let workers: BTreeSet<&str> = parts.iter().filter_map(|(_, t, _)| t.rsplit('-').next()).collect();
    assert_eq!(workers, BTreeSet::from(["0", "1"]), "each worker writes its own: {parts:?}");
    assert!(
        parts
            .iter()
            .all(|(_, t, _)| t.starts_with("ember-output-") || t.starts_with("timely:work-"))
    );
}

#[test]
fn a_failure_on_any_worker_before_a_per_worker_output_is_reported() {
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1))
        .workers(2)
        .manual_clock(&clock)
        .build()
        .unwrap();
    // Two partitions, 0..5 and 5..10, one per worker: only the second one's elements fail.
    let mapped = ssc.replay_stream(vec![Some((0..10).collect::<Vec<u64>>())], 2).map(|x| {
        assert!(x < 5, "element {x} is bad");
        x
    });
    mapped.foreach_partition(|_, _| {}).unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(1));
    assert!(ssc.await_batch(Time::from_millis(1000), seconds(30)).unwrap());
    ssc.stop(false).unwrap();
    let failures: Vec<String> = ssc.failures().iter().map(ToString::to_string).collect();
    assert!(
        failures.iter().any(|f| f.contains("is bad")),
        "the failure of the partition on worker 1 was not reported: {failures:?}"
    );
}

#[test]
fn a_stop_without_grace_does_not_wait_for_an_output_stuck_forever() {
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1)).manual_clock(&clock).build().unwrap();
    let (entered, in_output) = mpsc::channel::<()>();
    let entered = Mutex::new(entered);
    ssc.replay_stream(vec![Some(vec![1u64])], 1)
        .foreach_rdd(move |_, _| {
            let _ = entered.lock().unwrap().send(());
            // A write to a server that never answers.
            std::thread::sleep(StdDuration::from_secs(3600));
        })
        .unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(1));
    in_output.recv_timeout(StdDuration::from_secs(30)).expect("the output never ran");
    let started = Instant::now();
    ssc.stop(false).unwrap();
    assert!(
        started.elapsed() < StdDuration::from_secs(20),
        "stop(false) waited {:?} for a stuck output",
        started.elapsed()
    );
}

#[test]
fn a_context_stopping_on_another_thread_is_awaited_until_its_outputs_end() {
    let clock = ManualClock::new();
    let ssc = Arc::new(StreamingContext::builder(seconds(1)).manual_clock(&clock).build().unwrap());
    let (entered, in_output) = mpsc::channel::<()>();
    let entered = Mutex::new(entered);
    let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let output_ended = Arc::clone(&ended);
    ssc.replay_stream(vec![Some(vec![1u64])], 1)
        .foreach_rdd(move |_, _| {
            let _ = entered.lock().unwrap().send(());
            std::thread::sleep(StdDuration::from_millis(500));
            output_ended.store(true, std::sync::atomic::Ordering::SeqCst);
        })
        .unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(1));
    in_output.recv_timeout(StdDuration::from_secs(30)).expect("the output never ran");
    // Another thread stops the context gracefully (as a query's trigger thread does).
    let stopper = {
        let ssc = Arc::clone(&ssc);
        std::thread::spawn(move || ssc.stop(true))
    };
    while ssc.get_state() != ember::StreamingContextState::Stopped {
        std::thread::sleep(StdDuration::from_millis(1));
    }
    // The state says stopped at once; waiting for the termination waits for the output.
    assert!(ssc.await_termination_or_timeout(seconds(30)).unwrap());
    assert!(
        ended.load(std::sync::atomic::Ordering::SeqCst),
        "await_termination returned while the stop was still running an output"
    );
    // A second stop returns when the first has finished, as the first does.
    ssc.stop(true).unwrap();
    stopper.join().unwrap().unwrap();
}
