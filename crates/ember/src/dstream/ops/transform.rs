//! `transform`, `try_transform` and `transform_with`: arbitrary functions of whole batches.
//!
//! The batch is gathered to worker 0, where the function runs once per batch (as Spark runs
//! the transform function on the driver); its result continues from worker 0.

use std::fmt::Display;
use std::sync::Arc;

use ember_engine::ops::PerBatch;
use ember_engine::{Data, FailureCause, JobFailure, Msg, Part};

use crate::batch::Batch;
use crate::dstream::ops::aggregate::NO_RDD_FROM_PARENT;
use crate::dstream::{DStream, batch_parts, gather, sorted_partitions};
use crate::plan::{NodeSpec, Partitioning};
use crate::time::Time;

/// Runs a batch function's outcome into messages: partitions on success, a failure otherwise.
pub(crate) fn emit_result<U, E: Display>(operator: &str, time: u64, result: Result<Batch<U>, E>, out: &mut Vec<Msg<U>>) {
    match result {
        Ok(batch) => out.extend(batch_parts(batch.into_partitions())),
        Err(e) => out.push(Msg::Failed(JobFailure {
            operator: operator.to_owned(),
            time,
            cause: FailureCause::Error(e.to_string()),
        })),
    }
}

pub(crate) fn no_rdd_failure<U>(operator: &str, time: u64) -> Msg<U> {
    Msg::Failed(JobFailure {
        operator: operator.to_owned(),
        time,
        cause: FailureCause::MissingInput(format!("{NO_RDD_FROM_PARENT} at time {time} ms")),
    })
}

impl<T: Data> DStream<T> {
    /// A stream computed batch by batch with `f` (Spark's `transform`): `f` sees the whole
    /// batch, with its time, and may use any [`Batch`] operation.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    /// use ember::testing::run_batches;
    ///
    /// let out = run_batches(vec![vec![('b', 1), ('a', 2)]], |s| s.transform(|b| b.sort_by_key())).unwrap();
    /// assert_eq!(out, vec![vec![('a', 2), ('b', 1)]]);
    /// ```
    pub fn transform<U: Data, F>(&self, f: F) -> DStream<U>
    where
        F: Fn(Batch<T>) -> Batch<U> + Send + Sync + 'static,
    {
        self.try_transform(move |b| Ok::<_, std::convert::Infallible>(f(b)))
    }

    /// Like [`DStream::transform`], for a function that can fail: an `Err` fails the batch's
    /// job with the error's message.
    pub fn try_transform<U: Data, E: Display, F>(&self, f: F) -> DStream<U>
    where
        F: Fn(Batch<T>) -> Result<Batch<U>, E> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.derive_as("transform", Partitioning::Gathered, move |c, s, label| {
            let (f, operator, is_root) = (Arc::clone(&f), label.to_owned(), c.env.index == 0);
            gather(c, s).per_batch(
                &c.grid(),
                label,
                |acc: &mut Vec<Part<T>>, p| acc.push(p),
                move |info, parts, out| {
                    if !is_root {
                        return;
                    }
                    if info.no_rdd[0] && parts.is_empty() {
                        out.push(no_rdd_failure(&operator, info.time));
                        return;
                    }
                    let batch = Batch::from_partitions(Time::from_millis(info.time), sorted_partitions(parts));
                    emit_result(&operator, info.time, f(batch), out);
                },
            )
        })
    }

    /// A stream computed batch by batch from this stream and `other` (Spark's `transformWith`).
    pub fn transform_with<U: Data, V: Data, F>(&self, other: &DStream<U>, f: F) -> DStream<V>
    where
        F: Fn(Batch<T>, Batch<U>) -> Batch<V> + Send + Sync + 'static,
    {
        self.require_same_slide("transform_with", other);
        let f = Arc::new(f);
        let other = other.node_ref();
        let spec = NodeSpec::new("transform_with", self.slide, vec![self.index, other.index()]).partitioning(Partitioning::Gathered);
        self.derive_node(spec, move |c, s, label| {
            let (f, operator, is_root) = (Arc::clone(&f), label.to_owned(), c.env.index == 0);
            let right = other.stream(c);
            let right = gather(c, right);
            gather(c, s).per_batch2(
                right,
                &c.grid(),
                label,
                |acc: &mut (Vec<Part<T>>, Vec<Part<U>>), p| acc.0.push(p),
                |acc: &mut (Vec<Part<T>>, Vec<Part<U>>), p| acc.1.push(p),
                move |info, (left, right), out| {
                    if !is_root {
                        return;
                    }
                    if (info.no_rdd[0] && left.is_empty()) || (info.no_rdd[1] && right.is_empty()) {
                        out.push(no_rdd_failure(&operator, info.time));
                        return;
                    }
                    let time = Time::from_millis(info.time);
                    let result = f(
                        Batch::from_partitions(time, sorted_partitions(left)),
                        Batch::from_partitions(time, sorted_partitions(right)),
                    );
                    out.extend(batch_parts(result.into_partitions()));
                },
            )
        })
    }
}

/// `StreamingContext::transform`: `f` over the batches of several streams, in list order.
pub(crate) fn transform_all<T: Data, U: Data, F>(streams: &[DStream<T>], f: F) -> crate::error::Result<DStream<U>>
where
    F: Fn(Vec<Batch<T>>) -> Batch<U> + Send + Sync + 'static,
{
    // One operation in the plan: the union below is internal to it.
    let plan = streams.first().map(|s| Arc::clone(&s.plan));
    let op = plan.as_ref().map(|p| p.begin_op());
    // A parent without an RDD fails the batch with Spark's `TransformedDStream` message.
    let tagged = super::union::union_all_with(streams, NO_RDD_FROM_PARENT)?;
    let count = streams.len();
    let f = Arc::new(f);
    // The union tags each partition with its stream's index, and turns a missing RDD into
    // Spark's error; here the partitions are split back per stream.
    let transformed = tagged.derive_as("transform", Partitioning::Gathered, move |c, s, label| {
        let (f, operator, is_root) = (Arc::clone(&f), label.to_owned(), c.env.index == 0);
        gather(c, s).per_batch(
            &c.grid(),
            label,
            |acc: &mut Vec<Part<T>>, p| acc.push(p),
            move |info, parts, out| {
                if !is_root {
                    return;
                }
                let time = Time::from_millis(info.time);
                let mut per_stream: Vec<Vec<Part<T>>> = (0..count).map(|_| Vec::new()).collect();
                for mut p in parts {
                    let index = p.id.head() as usize;
                    p.id.0.remove(0);
                    if let Some(slot) = per_stream.get_mut(index) {
                        slot.push(p);
                    }
                }
                let batches = per_stream
                    .into_iter()
                    .map(|parts| Batch::from_partitions(time, sorted_partitions(parts)))
                    .collect();
                emit_result(&operator, info.time, Ok::<_, std::convert::Infallible>(f(batches)), out);
            },
        )
    });
    if let Some(op) = op {
        op.end(transformed.index, None);
    }
    Ok(transformed)
}
