//! The seeds' RDD-queue example (`rdd_queue.py`): five batches pushed to a queue, each number
//! mapped to `(x % 10, 1)` and counted per key.
//!
//! Run: `cargo run -p ember --example queue_word_count`
//!
//! Prints five batches in Spark's format, 100 ms apart; batch `i` holds the numbers `0..i`,
//! so the first batch is empty and the last one shows `(0,1)` to `(3,1)`.

use ember::prelude::*;

fn main() -> ember::Result<()> {
    let ssc = StreamingContext::new(milliseconds(100))?;
    let queue = BatchQueue::new();
    for i in 0..5i64 {
        queue.push((0..i).collect());
    }
    let input = ssc.queue_stream(&queue, true, None);
    let reduced = input
        .map(|x| (x % 10, 1u64))
        .reduce_by_key(|a, b| a + b)
        .transform(|b| b.sort_by_key());
    reduced.print()?;
    ssc.start()?;
    ssc.await_termination_or_timeout(milliseconds(550))?;
    ssc.stop(true)
}
