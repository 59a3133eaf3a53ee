//! Per-batch aggregates: `count`, `reduce`, `count_by_value`.

use std::sync::Arc;

use ember_engine::ops::PerBatch;
use ember_engine::{Data, FailureCause, JobFailure, Key, Msg, Part, PartId};

use crate::dstream::{DStream, gather};

/// Spark's message when a combining operator finds no RDD for a batch.
pub(crate) const NO_RDD_FROM_PARENT: &str = "Couldn't generate RDD from parent";

impl<T: Data> DStream<T> {
    /// A stream of one element per batch: the number of elements (0 for an empty batch).
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    /// use ember::testing::run_batches;
    ///
    /// let out = run_batches(vec![vec![], vec![7, 8]], |s| s.count()).unwrap();
    /// assert_eq!(out, vec![vec![0u64], vec![2]]);
    /// ```
    pub fn count(&self) -> DStream<u64> {
        self.derive("count", move |c, s, label| {
            let operator = label.to_owned();
            let is_root = c.env.index == 0;
            let local = s.per_batch(
                &c.grid(),
                label,
                |n: &mut u64, p: Part<T>| *n += p.data.len() as u64,
                |info, n, out| {
                    out.push(Msg::Part(Part {
                        id: PartId::new(0),
                        data: vec![(n, info.no_rdd[0])],
                    }))
                },
            );
            gather(c, local).per_batch(
                &c.grid(),
                label,
                |acc: &mut (u64, bool), p: Part<(u64, bool)>| {
                    for (n, no_rdd) in p.data {
                        acc.0 += n;
                        acc.1 |= no_rdd;
                    }
                },
                move |info, (n, no_rdd), out| {
                    if !is_root {
                        return;
                    }
                    // As in Spark, `count` goes through `transform`, which needs an RDD.
                    if no_rdd {
                        let message = format!("{NO_RDD_FROM_PARENT} at time {} ms", info.time);
                        out.push(Msg::Failed(JobFailure::new(
                            operator.clone(),
                            info.time,
                            FailureCause::MissingInput(message),
                        )));
                    } else {
                        out.push(Msg::Part(Part {
                            id: PartId::new(0),
                            data: vec![n],
                        }));
                    }
                },
            )
        })
    }

    /// A stream of at most one element per batch: all elements combined with `f`. An empty
    /// batch gives an empty batch (not a zero), as in Spark.
    pub fn reduce<F>(&self, f: F) -> DStream<T>
    where
        F: Fn(T, T) -> T + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.derive("reduce", move |c, s, label| {
            let (f1, f2) = (Arc::clone(&f), Arc::clone(&f));
            let is_root = c.env.index == 0;
            let fold = move |f: &Arc<F>, acc: &mut Option<T>, data: Vec<T>| {
                for x in data {
                    *acc = Some(match acc.take() {
                        Some(a) => f(a, x),
                        None => x,
                    });
                }
            };
            let local = s.per_batch(
                &c.grid(),
                label,
                move |acc: &mut Option<T>, p: Part<T>| fold(&f1, acc, p.data),
                |info, acc, out| {
                    if info.no_rdd[0] {
                        out.push(Msg::NoRdd);
                    }
                    out.extend(acc.map(|v| {
                        Msg::Part(Part {
                            id: PartId::new(0),
                            data: vec![v],
                        })
                    }));
                },
            );
            gather(c, local).per_batch(
                &c.grid(),
                label,
                move |acc: &mut Option<T>, p: Part<T>| fold(&f2, acc, p.data),
                move |info, acc, out| {
                    if !is_root {
                        return;
                    }
                    if info.no_rdd[0] && acc.is_none() {
                        out.push(Msg::NoRdd);
                    }
                    out.push(Msg::Part(Part {
                        id: PartId::new(0),
                        data: acc.into_iter().collect(),
                    }));
                },
            )
        })
    }
}

impl<T: Key> DStream<T> {
    /// A stream of `(value, count)` pairs: how often each distinct element occurs in the batch.
    pub fn count_by_value(&self) -> DStream<(T, u64)> {
        self.one_op("count_by_value", || self.map(|x| (x, 1u64)).reduce_by_key(|a, b| a + b))
    }
}
