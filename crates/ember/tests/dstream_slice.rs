//! `DStream::slice` with `StreamingContext::remember`: the kept batches in a range of times,
//! rounded to the stream's grid as Spark does, on 1 and 2 workers, from the driver and from an
//! output of the same batch; and the errors when nothing can be sliced.

use std::sync::{Arc, Mutex};

use ember::prelude::*;

/// Batch `i` (1-based) holds `10 i + 1` in partition 0 and `10 i + 2` in partition 1.
fn input(n: u64) -> Vec<Option<Vec<u64>>> {
    (1..=n).map(|i| Some(vec![10 * i + 1, 10 * i + 2])).collect()
}

/// Each sliced batch: its time in ms and its partitions.
fn shape(batches: Vec<Batch<u64>>) -> Vec<(u64, Vec<Vec<u64>>)> {
    batches
        .into_iter()
        .map(|b| (b.time().milliseconds(), b.partitions().to_vec()))
        .collect()
}

fn context(workers: usize, clock: &ManualClock) -> StreamingContext {
    StreamingContext::builder(seconds(1))
        .workers(workers)
        .manual_clock(clock)
        .build()
        .unwrap()
}

#[test]
fn slice_returns_the_remembered_batches_in_the_range_with_their_partitions() {
    for workers in [1, 2] {
        let clock = ManualClock::new();
        let ssc = context(workers, &clock);
        let doubled = ssc.replay_stream(input(5), 2).map(|x| x * 2);
        doubled.foreach_rdd(|_, _| {}).unwrap();
        ssc.remember(seconds(3)).unwrap();
        ssc.start().unwrap();
        clock.advance(seconds(5));
        assert!(ssc.await_batch(Time::from_millis(5000), seconds(60)).unwrap());

        // remember = 3 s after batch 5000: 3000, 4000 and 5000 are kept, 1000 and 2000 forgotten.
        let all = shape(doubled.slice(Time::from_millis(0), Time::from_millis(10_000)).unwrap());
        let want = |i: u64| (i * 1000, vec![vec![2 * (10 * i + 1)], vec![2 * (10 * i + 2)]]);
        assert_eq!(all, vec![want(3), want(4), want(5)], "{workers} workers");
        // Both ends included; times off the grid are rounded down to it (Spark's floor).
        let some = shape(doubled.slice(Time::from_millis(3500), Time::from_millis(4999)).unwrap());
        assert_eq!(some, vec![want(3), want(4)], "{workers} workers");
        let one = shape(doubled.slice(Time::from_millis(4000), Time::from_millis(4000)).unwrap());
        assert_eq!(one, vec![want(4)]);
        // Empty ranges: reversed, or after the last batch.
        assert!(doubled.slice(Time::from_millis(5000), Time::from_millis(3000)).unwrap().is_empty());
        assert!(doubled.slice(Time::from_millis(6000), Time::from_millis(9000)).unwrap().is_empty());
        ssc.stop(false).unwrap();
        assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
    }
}

#[test]
fn an_output_of_batch_t_slicing_another_stream_sees_batch_t() {
    let clock = ManualClock::new();
    let ssc = context(2, &clock);
    let numbers = ssc.replay_stream(input(4), 2);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let sliced = numbers.clone();
    // The last two batches of `numbers`, as seen from an output of a stream derived from it.
    numbers
        .count()
        .foreach_rdd(move |_, time| {
            let from = Time::from_millis(time.milliseconds().saturating_sub(1000));
            let batches = sliced.slice(from, time).unwrap();
            let times: Vec<u64> = batches.iter().map(|b| b.time().milliseconds()).collect();
            let total: u64 = batches.iter().map(|b| b.iter().sum::<u64>()).sum();
            sink.lock().unwrap().push((time.milliseconds(), times, total));
        })
        .unwrap();
    numbers.foreach_rdd(|_, _| {}).unwrap();
    ssc.remember(seconds(2)).unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(4));
    assert!(ssc.await_batch(Time::from_millis(4000), seconds(60)).unwrap());
    ssc.stop(false).unwrap();
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
    let batch_sum = |i: u64| 20 * i + 3;
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            (1000, vec![1000], batch_sum(1)),
            (2000, vec![1000, 2000], batch_sum(1) + batch_sum(2)),
            (3000, vec![2000, 3000], batch_sum(2) + batch_sum(3)),
            (4000, vec![3000, 4000], batch_sum(3) + batch_sum(4)),
        ]
    );
}

#[test]
fn a_windowed_stream_is_sliced_on_its_own_slide() {
    let clock = ManualClock::new();
    let ssc = context(2, &clock);
    let windows = ssc.replay_stream(input(6), 2).window(seconds(2), seconds(2)).unwrap();
    windows.foreach_rdd(|_, _| {}).unwrap();
    ssc.remember(seconds(4)).unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(6));
    assert!(ssc.await_batch(Time::from_millis(6000), seconds(60)).unwrap());
    ssc.stop(false).unwrap();
    let sums =
        |batches: Vec<Batch<u64>>| -> Vec<(u64, u64)> { batches.iter().map(|b| (b.time().milliseconds(), b.iter().sum())).collect() };
    let window_sum = |end: u64| (end - 1..=end).map(|i| 20 * i + 3).sum::<u64>();
    // Windows end at 2000, 4000, 6000; remember = 4 s after 6000 keeps 4000 and 6000.
    assert_eq!(
        sums(windows.slice(Time::from_millis(0), Time::from_millis(6000)).unwrap()),
        vec![(4000, window_sum(4)), (6000, window_sum(6))]
    );
    // 3000 and 5000 are off the 2 s grid: rounded down to 2000 and 4000.
    assert_eq!(
        sums(windows.slice(Time::from_millis(3000), Time::from_millis(5000)).unwrap()),
        vec![(4000, window_sum(4))]
    );
}

#[test]
fn slice_fails_clearly_when_nothing_can_be_sliced() {
    let clock = ManualClock::new();
    let ssc = context(1, &clock);
    let numbers = ssc.replay_stream(input(2), 1);
    let unused = numbers.map(|x| x + 1);
    numbers.foreach_rdd(|_, _| {}).unwrap();
    // Before start: Spark's "has not been initialized".
    let err = numbers.slice(Time::from_millis(0), Time::from_millis(1000)).unwrap_err();
    assert!(matches!(err, ember::Error::IllegalState(_)), "{err}");
    assert!(err.to_string().contains("has not been initialized"), "{err}");
    ssc.start().unwrap();
    clock.advance(seconds(2));
    assert!(ssc.await_batch(Time::from_millis(2000), seconds(60)).unwrap());
    // Without remember ember keeps no batch, and says so.
    let err = numbers.slice(Time::from_millis(0), Time::from_millis(2000)).unwrap_err();
    assert!(err.to_string().contains("remember"), "{err}");
    assert!(err.to_string().contains(&numbers.operator_name()), "{err}");
    ssc.stop(false).unwrap();

    let clock = ManualClock::new();
    let ssc = context(1, &clock);
    let numbers = ssc.replay_stream(input(2), 1);
    let unused2 = numbers.map(|x| x + 1);
    numbers.foreach_rdd(|_, _| {}).unwrap();
    ssc.remember(seconds(10)).unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(2));
    assert!(ssc.await_batch(Time::from_millis(2000), seconds(60)).unwrap());
    // A stream no output uses is not computed, so there is nothing to slice.
    let err = unused2.slice(Time::from_millis(0), Time::from_millis(2000)).unwrap_err();
    assert!(err.to_string().contains("no output operation uses it"), "{err}");
    assert_eq!(numbers.slice(Time::from_millis(0), Time::from_millis(2000)).unwrap().len(), 2);
    ssc.stop(false).unwrap();
    drop(unused);
}

#[test]
fn only_streams_whose_handles_are_held_at_start_keep_batches() {
    let clock = ManualClock::new();
    let ssc = context(1, &clock);
    let numbers = ssc.replay_stream(input(1), 1);
    // The intermediate streams of this chain are dropped before start: nothing is kept for them.
    numbers.map(|x| x + 1).filter(|x| x % 2 == 0).foreach_rdd(|_, _| {}).unwrap();
    ssc.remember(seconds(10)).unwrap();
    ssc.start().unwrap();
    let plan = ssc.explain();
    assert_eq!(plan.matches("remember#").count(), 1, "{plan}");
    // It keeps the source's batches, the one stream whose handle is still held.
    assert!(plan.contains("remember#5 [output, slide 1000 ms]\n  replay_stream#1"), "{plan}");
    ssc.stop(false).unwrap();
}

#[test]
fn an_empty_batch_is_kept_and_returned_empty() {
    let clock = ManualClock::new();
    let ssc = context(2, &clock);
    let numbers = ssc.replay_stream(vec![Some(vec![1, 2]), Some(vec![]), Some(vec![3])], 2);
    numbers.foreach_rdd(|_, _| {}).unwrap();
    ssc.remember(seconds(5)).unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(3));
    assert!(ssc.await_batch(Time::from_millis(3000), seconds(60)).unwrap());
    ssc.stop(false).unwrap();
    let batches = numbers.slice(Time::from_millis(1000), Time::from_millis(3000)).unwrap();
    let counts: Vec<(u64, u64)> = batches.iter().map(|b| (b.time().milliseconds(), b.count())).collect();
    assert_eq!(counts, vec![(1000, 2), (2000, 0), (3000, 1)]);
}
