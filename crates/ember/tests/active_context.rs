//! `StreamingContext::get_active` and `get_active_or_create` (Spark's `getActive`,
//! `getActiveOrCreate`). Its own test binary: no other context runs in this process.

use std::sync::atomic::{AtomicBool, Ordering};

use ember::prelude::*;
use ember::testing::TempDir;

fn context(clock: &ManualClock) -> ember::Result<StreamingContext> {
    let ssc = StreamingContext::builder(seconds(1)).manual_clock(clock).build()?;
    ssc.replay_stream(vec![Some(vec![1u64, 2, 3])], 1)
        .map(|x| (x % 2, x))
        .reduce_by_key(|a, b| a + b)
        .print()?;
    Ok(ssc)
}

#[test]
fn get_active_or_create_returns_the_running_context_and_creates_one_otherwise() {
    let dir = TempDir::new("active").unwrap();
    let clock = ManualClock::new();
    assert!(StreamingContext::get_active().is_none());
    let ssc = context(&clock).unwrap();
    assert!(
        StreamingContext::get_active().is_none(),
        "a context that is not started is not active"
    );
    ssc.start().unwrap();
    let active = StreamingContext::get_active_or_create(dir.path(), || panic!("a context is running")).unwrap();
    assert_eq!(active.explain(), ssc.explain());
    ssc.stop(false).unwrap();
    assert!(StreamingContext::get_active().is_none(), "a stopped context is not active");
    let built = AtomicBool::new(false);
    let created = StreamingContext::get_active_or_create(dir.path(), || {
        built.store(true, Ordering::Relaxed);
        context(&clock)
    })
    .unwrap();
    assert!(built.load(Ordering::Relaxed), "no context was created");
    created.start().unwrap();
    assert!(StreamingContext::get_active().is_some());
    created.stop(false).unwrap();
}
