//! `queue_stream`: batches taken from a queue that the program can append to while running.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use ember_engine::ops::batch_source;
use ember_engine::{Data, Msg};

use crate::context::StreamingContext;
use crate::dstream::{DStream, spread};
use crate::sources::partition_msgs;

/// A queue of batches for [`StreamingContext::queue_stream`] (Spark's queue of RDDs). Clones
/// share the same queue; push to it before or while the context runs.
#[derive(Debug)]
pub struct BatchQueue<T> {
    inner: Arc<Mutex<VecDeque<Vec<Vec<T>>>>>,
}

impl<T> Clone for BatchQueue<T> {
    fn clone(&self) -> Self {
        BatchQueue {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> Default for BatchQueue<T> {
    fn default() -> Self {
        BatchQueue {
            inner: Arc::new(Mutex::new(VecDeque::new())),
        }
    }
}

impl<T> BatchQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a batch of one partition.
    pub fn push(&self, items: Vec<T>) {
        self.push_partitions(vec![items]);
    }

    /// Appends a batch made of the given partitions.
    pub fn push_partitions(&self, partitions: Vec<Vec<T>>) {
        self.lock().push_back(partitions);
    }

    /// Number of batches waiting.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no batch is waiting.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Vec<Vec<T>>>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pop(&self, one_at_a_time: bool) -> Option<Vec<Vec<T>>> {
        let mut queue = self.lock();
        if one_at_a_time {
            queue.pop_front()
        } else if queue.is_empty() {
            None
        } else {
            Some(queue.drain(..).flatten().collect())
        }
    }
}

impl StreamingContext {
    /// A stream of the batches pushed to `queue` (Spark's `queueStream`): one batch per
    /// interval with `one_at_a_time`, otherwise everything queued so far. When the queue is
    /// empty the batch is `default` if given, else empty. Runs on worker 0 and spreads its
    /// partitions over the workers.
    ///
    /// As in Spark, a queue stream cannot be recovered from a checkpoint.
    pub fn queue_stream<T: Data>(&self, queue: &BatchQueue<T>, one_at_a_time: bool, default: Option<Vec<T>>) -> DStream<T> {
        let queue = queue.clone();
        let default = Arc::new(default);
        self.source("queue_stream", move |c, label| {
            let (queue, default, is_root) = (queue.clone(), Arc::clone(&default), c.env.index == 0);
            let stream = batch_source(c, label, false, move |_batch| -> Vec<Msg<T>> {
                if !is_root {
                    return Vec::new();
                }
                match queue.pop(one_at_a_time) {
                    Some(partitions) => partition_msgs(partitions),
                    None => partition_msgs(vec![default.as_ref().clone().unwrap_or_default()]),
                }
            });
            spread(c, stream)
        })
    }
}
