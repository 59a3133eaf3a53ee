//! `replay_stream`: pre-recorded batches, replayed one per interval (Spark's test input stream).

use std::sync::Arc;

use ember_engine::ops::batch_source;
use ember_engine::{Data, Msg};

use crate::context::StreamingContext;
use crate::dstream::{DStream, spread};
use crate::sources::{parallelize, partition_msgs};

impl StreamingContext {
    /// A stream that replays `batches`: batch `i` (from 0) at the `i+1`-th batch time, split
    /// into `num_partitions` partitions by Spark's `parallelize` rule. `None` means "no RDD at
    /// this time" (Spark's `TestInputStream` returning `None`); after the list, batches are
    /// empty. Useful for tests, backfills and benchmarks (with the no-wait clock).
    pub fn replay_stream<T: Data>(&self, batches: Vec<Option<Vec<T>>>, num_partitions: usize) -> DStream<T> {
        let batches = Arc::new(batches);
        self.source("replay_stream", move |c, label| {
            let (batches, is_root) = (Arc::clone(&batches), c.env.index == 0);
            // Batch `i` belongs at the `i+1`-th batch time past zero, also in a run recovered
            // from a checkpoint (which starts later): the replay is a recoverable source.
            let (first, interval) = (c.env.zero_ms + c.env.interval_ms, c.env.interval_ms);
            let stream = batch_source(c, label, false, move |batch| -> Vec<Msg<T>> {
                if !is_root {
                    return Vec::new();
                }
                let index = ((batch.time - first) / interval) as usize;
                match batches.get(index) {
                    Some(Some(items)) => partition_msgs(parallelize(items.clone(), num_partitions)),
                    Some(None) => vec![Msg::NoRdd],
                    None => partition_msgs(parallelize(Vec::new(), num_partitions)),
                }
            });
            spread(c, stream)
        })
    }
}
