//! `StreamingListener`: the events of a run with two inputs, two outputs, an empty batch and a
//! failing batch, in Spark's order with the right `BatchInfo`s; a blocked listener does not hold
//! back the job.

use std::sync::{Arc, Condvar, Mutex};

use ember::prelude::*;
use ember::{BatchInfo, OutputOperationInfo, StreamingListener, StreamingStarted};

/// Records every event as a line of text, and every completed batch.
#[derive(Clone, Default)]
struct Recorder {
    events: Arc<Mutex<Vec<String>>>,
    batches: Arc<Mutex<Vec<BatchInfo>>>,
}

impl StreamingListener for Recorder {
    fn on_streaming_started(&mut self, _event: &StreamingStarted) {
        self.events.lock().unwrap().push("streaming started".into());
    }
    fn on_batch_submitted(&mut self, b: &BatchInfo) {
        self.events
            .lock()
            .unwrap()
            .push(format!("submitted {}", b.batch_time.milliseconds()));
    }
    fn on_batch_started(&mut self, b: &BatchInfo) {
        self.events.lock().unwrap().push(format!("started {}", b.batch_time.milliseconds()));
    }
    fn on_batch_completed(&mut self, b: &BatchInfo) {
        self.events
            .lock()
            .unwrap()
            .push(format!("completed {}", b.batch_time.milliseconds()));
        self.batches.lock().unwrap().push(b.clone());
    }
    fn on_output_operation_started(&mut self, o: &OutputOperationInfo) {
        self.events
            .lock()
            .unwrap()
            .push(format!("output {} started {}", o.name, o.batch_time.milliseconds()));
    }
    fn on_output_operation_completed(&mut self, o: &OutputOperationInfo) {
        let result = if o.failure_reason.is_some() { "failed" } else { "ok" };
        self.events
            .lock()
            .unwrap()
            .push(format!("output {} {result} {}", o.name, o.batch_time.milliseconds()));
    }
}

#[test]
fn a_listener_sees_every_event_in_sparks_order() {
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1))
        .workers(2)
        .manual_clock(&clock)
        .build()
        .unwrap();
    let recorder = Recorder::default();
    ssc.add_streaming_listener(recorder.clone());
    let a = ssc.replay_stream(vec![Some(vec![1, 2, 3]), Some(vec![]), Some(vec![4, 5])], 2);
    let b = ssc.replay_stream(vec![Some(vec![10]), Some(vec![]), Some(vec![20, 30])], 2);
    let (a_name, b_name) = (a.operator_name(), b.operator_name());
    let both = a.union(&b).unwrap();
    both.foreach_rdd(|_, _| {}).unwrap();
    let both_name = format!("foreach_rdd#{}", 4);
    // The second output fails on the third batch.
    a.try_foreach_rdd(|batch, time| match time.milliseconds() {
        3000 => Err(format!("batch of {} elements refused", batch.count())),
        _ => Ok(()),
    })
    .unwrap();
    let failing_name = "foreach_rdd#5".to_owned();
    // A third output, on every worker, whose input fails on the third batch.
    a.map(|x: i32| if x == 5 { panic!("five is not allowed") } else { x })
        .foreach_partition(|_, _| {})
        .unwrap();
    let per_worker_name = "foreach_partition#7".to_owned();
    ssc.start().unwrap();
    clock.advance(seconds(3));
    assert!(ssc.await_batch(Time::from_millis(3000), seconds(60)).unwrap());
    ssc.stop(false).unwrap();

    let events = recorder.events.lock().unwrap().clone();
    assert_eq!(events.first().map(String::as_str), Some("streaming started"), "{events:#?}");
    let at = |line: &str| {
        events
            .iter()
            .position(|e| e == line)
            .unwrap_or_else(|| panic!("no event {line:?} in {events:#?}"))
    };
    for t in [1000, 2000, 3000] {
        let submitted = at(&format!("submitted {t}"));
        let started = at(&format!("started {t}"));
        let completed = at(&format!("completed {t}"));
        assert!(submitted < started && started < completed, "batch {t}: {events:#?}");
        for output in [&both_name, &failing_name, &per_worker_name] {
            let result = if t == 3000 && output != &both_name { "failed" } else { "ok" };
            let output_started = at(&format!("output {output} started {t}"));
            let output_done = at(&format!("output {output} {result} {t}"));
            assert!(
                started < output_started && output_started < output_done && output_done < completed,
                "batch {t}, {output}: {events:#?}"
            );
        }
        if t > 1000 {
            assert!(at(&format!("completed {}", t - 1000)) < completed, "{events:#?}");
        }
    }
    assert_eq!(events.iter().filter(|e| e.starts_with("completed")).count(), 3, "{events:#?}");

    let batches = recorder.batches.lock().unwrap().clone();
    let records: Vec<(u64, u64, u64)> = batches
        .iter()
        .map(|b| {
            let of = |name: &str| b.input_records.get(name).copied().unwrap_or(0);
            (b.batch_time.milliseconds(), of(&a_name), of(&b_name))
        })
        .collect();
    assert_eq!(records, vec![(1000, 3, 1), (2000, 0, 0), (3000, 2, 2)]);
    for b in &batches {
        let (start, end) = (b.processing_start_time.unwrap(), b.processing_end_time.unwrap());
        assert!(b.submission_time <= start && start <= end, "{b:?}");
        assert_eq!(b.total_delay(), Some(b.scheduling_delay().unwrap() + b.processing_delay().unwrap()));
        assert_eq!(b.output_operations.len(), 3, "{b:?}");
        let failures: Vec<String> = b.output_operations.values().filter_map(|o| o.failure_reason.clone()).collect();
        match b.batch_time.milliseconds() {
            3000 => {
                assert_eq!(failures.len(), 2, "{failures:?}");
                assert!(failures.iter().any(|f| f.contains("batch of 2 elements refused")), "{failures:?}");
                assert!(failures.iter().any(|f| f.contains("five is not allowed")), "{failures:?}");
            }
            _ => assert!(failures.is_empty(), "{failures:?}"),
        }
    }
    assert_eq!(batches[2].num_records(), 4);
    assert!(batches.iter().all(|b| b.state_keys.is_empty()), "no stateful stream here");
    assert!(batches[2].failed() && !batches[0].failed());
}

/// A listener that waits, in its first call, until the test releases it.
#[derive(Clone, Default)]
struct Blocked {
    released: Arc<(Mutex<bool>, Condvar)>,
    completed: Arc<Mutex<Vec<u64>>>,
}

impl StreamingListener for Blocked {
    fn on_batch_completed(&mut self, b: &BatchInfo) {
        let (lock, released) = &*self.released;
        let mut go = lock.lock().unwrap();
        while !*go {
            go = released.wait(go).unwrap();
        }
        self.completed.lock().unwrap().push(b.batch_time.milliseconds());
    }
}

#[test]
fn a_blocked_listener_does_not_hold_back_the_job() {
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1))
        .workers(2)
        .manual_clock(&clock)
        .build()
        .unwrap();
    let listener = Blocked::default();
    let id = ssc.add_streaming_listener(listener.clone());
    let counted = Arc::new(Mutex::new(0u64));
    let sink = Arc::clone(&counted);
    ssc.replay_stream((1..=10).map(|i| Some(vec![i])).collect(), 2)
        .foreach_rdd(move |b, _| *sink.lock().unwrap() += b.count())
        .unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(10));
    // Every batch completes while the listener is still stuck in its first call.
    assert!(ssc.await_batch(Time::from_millis(10_000), seconds(60)).unwrap());
    assert_eq!(*counted.lock().unwrap(), 10);
    assert!(listener.completed.lock().unwrap().is_empty());
    {
        let (lock, released) = &*listener.released;
        *lock.lock().unwrap() = true;
        released.notify_all();
    }
    ssc.stop(false).unwrap();
    assert_eq!(*listener.completed.lock().unwrap(), (1..=10).map(|i| i * 1000).collect::<Vec<_>>());
    assert_eq!(ssc.dropped_listener_events(), 0);
    assert!(ssc.remove_streaming_listener(id));
    assert!(!ssc.remove_streaming_listener(id));
}
