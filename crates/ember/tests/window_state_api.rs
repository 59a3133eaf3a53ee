//! Construction-time checks of windows, checkpoint intervals and their defaults, and misuse of
//! `map_with_state`'s `State`.

use ember::prelude::*;
use ember::testing::run_batches;

fn stream(batch: Duration) -> (StreamingContext, DStream<(String, i64)>) {
    let ssc = StreamingContext::builder(batch).manual_clock(&ManualClock::new()).build().unwrap();
    let s = ssc.replay_stream(Vec::<Option<Vec<(String, i64)>>>::new(), 1);
    (ssc, s)
}

fn message<T: std::fmt::Debug>(r: ember::Result<T>) -> String {
    r.expect_err("should be rejected").to_string()
}

#[test]
fn windows_that_do_not_fit_the_batch_interval_are_rejected_naming_both_durations() {
    let (_ssc, s) = stream(milliseconds(500));
    let m = message(s.window(milliseconds(700), milliseconds(500)));
    assert!(
        m.contains("windowDuration must be multiple of the parent dstream's slide (batch) duration (500 ms)"),
        "{m}"
    );
    assert!(m.contains("700 ms"), "{m}");
    let m = message(s.reduce_by_key_and_window(|a, b| a + b, seconds(1), milliseconds(100)));
    assert!(
        m.contains("slideDuration must be multiple of the parent dstream's slide (batch) duration (500 ms)"),
        "{m}"
    );
    assert!(m.contains("100 ms"), "{m}");
    let m = message(s.reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, milliseconds(100), milliseconds(100)));
    assert!(m.contains("windowDuration"), "{m}");
    assert!(message(s.count_by_window(milliseconds(0), seconds(1))).contains("windowDuration must be positive"));
    assert!(message(s.group_by_key_and_window(seconds(1), milliseconds(0))).contains("slideDuration must be positive"));
    assert!(message(s.map(|(k, _)| k).count_by_value_and_window(milliseconds(750), seconds(1))).contains("750 ms"));
    // A window of a window is checked against the first window's slide.
    let w = s.window(seconds(2), seconds(1)).unwrap();
    assert_eq!(w.slide_duration(), seconds(1));
    assert!(message(w.window(milliseconds(1500), seconds(1))).contains("(1000 ms)"));
    // The window may be shorter than the slide.
    assert!(s.window(seconds(1), seconds(2)).is_ok());
}

#[test]
fn stateful_streams_default_to_the_first_slide_multiple_of_ten_seconds() {
    let (_ssc, s) = stream(milliseconds(300));
    assert_eq!(s.checkpoint_interval(), None);
    let state = s.update_state_by_key(|vs: Vec<i64>, st: Option<i64>| Some(vs.iter().sum::<i64>() + st.unwrap_or(0)));
    assert_eq!(state.checkpoint_interval(), Some(milliseconds(10_200)));
    let inv = s
        .reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, milliseconds(3000), milliseconds(3000))
        .unwrap();
    assert_eq!(inv.checkpoint_interval(), Some(seconds(12)));
    // An explicit interval wins and must be a multiple of the slide.
    assert_eq!(
        state.checkpoint(milliseconds(900)).unwrap().checkpoint_interval(),
        Some(milliseconds(900))
    );
    let m = message(state.checkpoint(milliseconds(1000)));
    assert!(m.contains("(1000 ms)") && m.contains("(300 ms)"), "{m}");
    assert!(message(s.checkpoint(milliseconds(0))).contains("positive multiple"));
    let mapped = s.map(|x| x).checkpoint(milliseconds(600)).unwrap();
    assert_eq!(mapped.checkpoint_interval(), Some(milliseconds(600)));
}

#[test]
fn map_with_state_checkpoint_defaults_to_ten_slides_and_is_forwarded_to_the_state() {
    for (batch, default, explicit) in [(100, 1_000, 2_000), (1_000, 10_000, 2_000), (10_000, 100_000, 20_000)] {
        let (_ssc, s) = stream(milliseconds(batch));
        let spec = StateSpec::function(|_k: &String, v: Option<i64>, st: &mut State<i64>| {
            st.update(v.unwrap_or(0));
        });
        let mapped = s.map_with_state(spec);
        assert_eq!(mapped.checkpoint_interval(), Some(milliseconds(default)));
        let mapped = mapped.checkpoint(milliseconds(explicit)).unwrap();
        assert_eq!(mapped.checkpoint_interval(), Some(milliseconds(explicit)));
        // The mapped stream itself keeps no state and has no interval of its own.
        assert_eq!(mapped.clone().into_dstream().checkpoint_interval(), None);
    }
}

#[test]
fn state_misuse_fails_the_batch_with_sparks_message() {
    let spec = StateSpec::function(|_k: &char, v: Option<i32>, st: &mut State<i32>| {
        assert!(st.try_remove().is_err() || st.try_update(1).is_err());
        assert!(st.try_remove().is_err(), "a second remove must be refused");
        st.update(v.unwrap_or(0));
    });
    let err = run_batches(vec![vec![('a', 1)]], move |s| s.map_with_state(spec.clone()).into_dstream()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("Cannot update the state after it has been removed"), "{text}");
    assert!(text.contains("map_with_state#"), "{text}");
    assert!(text.contains("1000 ms"), "{text}");
}

#[test]
fn update_state_by_key_function_panics_fail_the_batch_and_later_batches_go_on() {
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1)).manual_clock(&clock).build().unwrap();
    let input = ssc.replay_stream(vec![Some(vec![('a', 1), ('b', 1)]), Some(vec![('a', 13)]), Some(vec![('b', 1)])], 1);
    let state = input.update_state_by_key(|vs: Vec<i32>, st: Option<i32>| {
        let sum = vs.iter().sum::<i32>() + st.unwrap_or(0);
        assert!(sum != 14, "unlucky sum");
        Some(sum)
    });
    let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&out);
    state
        .foreach_rdd(move |b, t| {
            let mut v = b.into_vec();
            v.sort();
            sink.lock().unwrap().push((t.milliseconds(), v));
        })
        .unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(3));
    assert!(ssc.await_batch(Time::from_millis(3000), seconds(30)).unwrap());
    ssc.stop(false).unwrap();
    let failures = ssc.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].to_string().contains("unlucky sum"));
    // Batch 2 failed (key `a` lost its state, `b` was updated); batch 3 goes on.
    let out = out.lock().unwrap().clone();
    assert_eq!(out, vec![(1000, vec![('a', 1), ('b', 1)]), (3000, vec![('b', 2)])]);
}

#[test]
fn the_incremental_window_applies_batches_in_time_order() {
    // Concatenation is not commutative; its inverse strips the oldest values off the front.
    let input: Vec<Vec<(char, String)>> = ["a", "b", "c", "d", "e", "f", "", ""]
        .iter()
        .map(|s| if s.is_empty() { vec![] } else { vec![('k', (*s).to_owned())] })
        .collect();
    let out = run_batches(input, |s| {
        s.reduce_by_key_and_window_inv(
            |a: String, b: String| a + &b,
            |a: String, b: String| a.strip_prefix(b.as_str()).map(str::to_owned).expect("the oldest values come first"),
            seconds(4),
            seconds(2),
        )
        .unwrap()
    })
    .unwrap();
    let values: Vec<Vec<String>> = out.into_iter().map(|b| b.into_iter().map(|(_, v)| v).collect()).collect();
    assert_eq!(values, vec![vec!["ab"], vec!["abcd"], vec!["cdef"], vec!["ef"]]);
}

#[test]
fn joining_streams_of_different_slides_fails_at_start() {
    let (ssc, s) = stream(seconds(1));
    let windowed = s.window(seconds(4), seconds(2)).unwrap();
    windowed.join(&s).foreach_rdd(|_, _| {}).unwrap();
    let m = message(ssc.start());
    assert!(m.contains("different slide durations (2000 ms and 1000 ms)"), "{m}");
    assert!(
        message(ssc.start()).contains("stopped"),
        "the context is stopped after a failed start"
    );
    let (ssc, s) = stream(seconds(1));
    let windowed = s.window(seconds(4), seconds(2)).unwrap();
    windowed.transform_with(&s, |a, _b| a).foreach_rdd(|_, _| {}).unwrap();
    assert!(message(ssc.start()).contains("transform_with"));
}
