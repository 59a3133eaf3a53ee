//! Batch intervals down to 1 ms work on the system clock: every batch time is generated, in
//! order, with no gaps, empty batches included.

use std::sync::{Arc, Mutex};

use ember::prelude::*;

#[test]
fn one_millisecond_batches_on_the_system_clock_have_no_gaps() {
    let ssc = StreamingContext::builder(milliseconds(1)).workers(2).build().unwrap();
    let queue = BatchQueue::new();
    for i in 0..50u32 {
        queue.push(vec![i; 3]);
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    ssc.queue_stream(&queue, true, None)
        .count()
        .foreach_rdd(move |b, t| sink.lock().unwrap().push((t.milliseconds(), b.collect())))
        .unwrap();
    ssc.start().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    ssc.stop(true).unwrap();
    let seen = seen.lock().unwrap();
    assert!(seen.len() >= 60, "only {} batches in 300 ms", seen.len());
    for pair in seen.windows(2) {
        assert_eq!(pair[1].0, pair[0].0 + 1, "batch times must be consecutive milliseconds");
    }
    // The queue's 50 batches come first, one per batch, then empty batches count 0.
    let counts: Vec<u64> = seen.iter().map(|(_, c)| c[0]).collect();
    assert_eq!(&counts[..50], &[3u64; 50][..]);
    assert!(counts[50..].iter().all(|&c| c == 0));
}
