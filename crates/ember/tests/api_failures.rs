//! Failures: a failing user function fails its batch with the operator and batch time, later
//! batches go on; misuse of the context is an `Err`, not a panic.

use std::sync::{Arc, Mutex};

use ember::prelude::*;

#[test]
fn failing_user_function_names_operator_and_batch_time() {
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1))
        .workers(2)
        .manual_clock(&clock)
        .build()
        .unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&out);
    let input = ssc.replay_stream(vec![Some(vec![1]), Some(vec![2]), Some(vec![3])], 1);
    let mapped = input.map(|x: i32| {
        assert!(x != 2, "cannot handle two");
        x * 10
    });
    let op = mapped.operator_name().to_owned();
    mapped
        .foreach_rdd(move |b, t| sink.lock().unwrap().push((t.milliseconds(), b.collect())))
        .unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(3));
    assert!(ssc.await_batch(Time::from_millis(3000), seconds(30)).unwrap());
    let err = ssc.await_termination_or_timeout(milliseconds(10)).unwrap_err();
    ssc.stop(false).unwrap();
    match err {
        ember::Error::JobFailed { operator, time, message } => {
            assert_eq!(operator, op);
            assert!(operator.starts_with("map#"));
            assert_eq!(time, Time::from_millis(2000));
            assert!(message.contains("cannot handle two"), "{message}");
        }
        other => panic!("unexpected error {other}"),
    }
    assert_eq!(*out.lock().unwrap(), vec![(1000, vec![10]), (3000, vec![30])]);
}

#[test]
fn misuse_is_an_error() {
    let ssc = StreamingContext::new(seconds(1)).unwrap();
    assert!(matches!(ssc.start(), Err(ember::Error::IllegalState(m)) if m.contains("No output operations")));
    assert!(ssc.start().is_err(), "start after a failed start");

    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1)).manual_clock(&clock).build().unwrap();
    let s = ssc.replay_stream(vec![Some(vec![1u8])], 1);
    s.count().foreach_rdd(|_, _| {}).unwrap();
    ssc.start().unwrap();
    assert!(matches!(ssc.start(), Err(ember::Error::IllegalState(m)) if m.contains("already been started")));
    assert!(matches!(s.print(), Err(ember::Error::IllegalState(m)) if m.contains("after the StreamingContext has been started")));
    // A stream made after start never runs: the first such is reported once.
    let _late = s.map(|x| x + 1);
    let _input = ssc.replay_stream(vec![Some(vec![2u8])], 1);
    let late = ssc.await_termination_or_timeout(milliseconds(10)).unwrap_err();
    assert!(
        matches!(&late, ember::Error::IllegalState(m) if m.contains("cannot create a stream (map) after the StreamingContext has been started")),
        "{late}"
    );
    assert!(ssc.await_termination_or_timeout(milliseconds(10)).is_ok(), "reported once");
    ssc.stop(true).unwrap();
    ssc.stop(true).unwrap();
    assert!(ssc.start().is_err());
    assert!(StreamingContext::new(milliseconds(0)).is_err());
    assert!(s.repartition(0).is_err());
}

#[test]
fn a_transform_over_a_parent_without_an_rdd_fails_with_sparks_message() {
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1)).manual_clock(&clock).build().unwrap();
    let a = ssc.replay_stream(vec![Some(vec![1]), None, Some(vec![3])], 1);
    let b = ssc.replay_stream(vec![Some(vec![10]), Some(vec![20]), Some(vec![30])], 1);
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&out);
    ssc.transform(&[a, b], |batches| {
        let time = batches[0].time();
        Batch::from_vec(time, batches.into_iter().flat_map(|b| b.into_vec()).collect::<Vec<i32>>())
    })
    .unwrap()
    .foreach_rdd(move |b, t| sink.lock().unwrap().push((t.milliseconds(), b.collect())))
    .unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(3));
    assert!(ssc.await_batch(Time::from_millis(3000), seconds(30)).unwrap());
    let err = ssc.await_termination_or_timeout(milliseconds(10)).unwrap_err();
    ssc.stop(false).unwrap();
    let text = err.to_string();
    assert!(text.contains("Couldn't generate RDD from parent at time 2000 ms"), "{text}");
    assert_eq!(*out.lock().unwrap(), vec![(1000, vec![1, 10]), (3000, vec![3, 30])]);
}
