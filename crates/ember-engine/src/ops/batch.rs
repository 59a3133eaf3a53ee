//! Per-batch operators: they see every batch time once it is complete, empty batches too.
//!
//! Batch `t` is complete on an operator when its input frontier has passed `t`. Batch times
//! are deterministic (`zero + k * interval`), so the operator enumerates every aligned time
//! its frontier passed, whether or not data arrived for it, and holds a capability at its
//! input frontier so that it can still emit at those times.

use std::collections::BTreeMap;
use std::rc::Rc;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::Operator;
use timely::progress::frontier::MutableAntichain;

use crate::msg::{Data, JobFailure, Msg, Part};
use crate::ops::stateless::catch_user;
use crate::runtime::{EStream, Grid, WorkerEnv};

/// What a per-batch operator learns about a completed batch besides its data.
#[derive(Clone, Debug)]
pub struct BatchInfo {
    /// Batch time (ms).
    pub time: u64,
    /// The batch has no RDD on some input (Spark's `None`); for binary operators, per input.
    pub no_rdd: [bool; 2],
    /// Whether an upstream failure was seen for this batch (it is forwarded automatically).
    pub failed: bool,
}

pub(super) struct Pending<A> {
    acc: A,
    no_rdd: [bool; 2],
    failed: Vec<JobFailure>,
}

impl<A: Default> Default for Pending<A> {
    fn default() -> Self {
        Pending {
            acc: A::default(),
            no_rdd: [false; 2],
            failed: Vec::new(),
        }
    }
}

/// Tracks which batch times an operator has completed.
pub(super) struct Walker<A> {
    pending: BTreeMap<u64, Pending<A>>,
    next: u64,
    interval: u64,
    cap: Option<Capability<u64>>,
    env: Rc<WorkerEnv>,
}

impl<A: Default> Walker<A> {
    pub(super) fn new(grid: &Grid, cap: Capability<u64>) -> Self {
        Walker {
            pending: BTreeMap::new(),
            next: grid.first(),
            interval: grid.step_ms,
            cap: Some(cap),
            env: Rc::clone(&grid.env),
        }
    }

    pub(super) fn slot(&mut self, time: u64) -> &mut Pending<A> {
        self.pending.entry(time).or_default()
    }

    /// Completes, in time order, every batch the frontier has passed, then moves the held
    /// capability up to the frontier (or drops it once the input is closed).
    pub(super) fn complete<F>(&mut self, frontier: Option<u64>, mut on_batch: F)
    where
        F: FnMut(&Capability<u64>, BatchInfo, Vec<JobFailure>, A),
    {
        // Exclusive bound on the times that are complete.
        let limit = match frontier {
            Some(f) => f,
            None => self.env.shared.final_time().map_or(0, |t| t + 1),
        };
        loop {
            let next_pending = self.pending.keys().next().copied();
            let aligned = (self.next < limit).then_some(self.next);
            let time = match (aligned, next_pending) {
                (Some(a), Some(p)) => a.min(p),
                (Some(a), None) => a,
                (None, Some(p)) if p < limit || frontier.is_none() => p,
                _ => break,
            };
            if aligned == Some(time) {
                self.next += self.interval;
            }
            let slot = self.pending.remove(&time).unwrap_or_default();
            let Some(cap) = self.cap.as_ref() else { break };
            if time < *cap.time() {
                // Unreachable while the frontier is respected; never emit behind the capability.
                continue;
            }
            let at = cap.delayed(&time);
            let info = BatchInfo {
                time,
                no_rdd: slot.no_rdd,
                failed: !slot.failed.is_empty(),
            };
            on_batch(&at, info, slot.failed, slot.acc);
        }
        match frontier {
            Some(f) => {
                if let Some(cap) = self.cap.as_mut()
                    && f > *cap.time()
                {
                    cap.downgrade(&f);
                }
            }
            None => self.cap = None,
        }
    }
}

pub(super) fn frontier_min(frontiers: &[&MutableAntichain<u64>]) -> Option<u64> {
    frontiers.iter().filter_map(|f| f.frontier().first().copied()).min()
}

pub(super) fn absorb_msgs<T, A>(
    pending: &mut Pending<A>,
    input: usize,
    msgs: &mut Vec<Msg<T>>,
    absorb: &mut impl FnMut(&mut A, Part<T>),
    operator: &str,
    time: u64,
) {
    for msg in msgs.drain(..) {
        match msg {
            Msg::Part(part) => {
                let acc = &mut pending.acc;
                if let Err(failure) = catch_user(operator, time, || absorb(acc, part)) {
                    pending.failed.push(failure);
                }
            }
            Msg::NoRdd => pending.no_rdd[input] = true,
            Msg::Failed(f) => pending.failed.push(f),
        }
    }
}

/// Runs `finish`, turning a panic into a failure of the batch.
fn finish_caught<A, U>(
    finish: &mut impl FnMut(BatchInfo, A, &mut Vec<Msg<U>>),
    info: BatchInfo,
    acc: A,
    out: &mut Vec<Msg<U>>,
    operator: &str,
) {
    let time = info.time;
    let mut produced = Vec::new();
    match catch_user(operator, time, || finish(info, acc, &mut produced)) {
        Ok(()) => out.append(&mut produced),
        Err(failure) => out.push(Msg::Failed(failure)),
    }
}

/// Per-batch building blocks.
pub trait PerBatch<'s, T: Data> {
    /// Folds each batch's partitions into an accumulator `A` as they arrive (`absorb`), and
    /// calls `finish` once per completed batch time of `grid`, in time order, empty batches
    /// included.
    /// Upstream failures are forwarded before `finish`'s output.
    fn per_batch<U, A, Ab, Fi>(self, grid: &Grid, name: &str, absorb: Ab, finish: Fi) -> EStream<'s, U>
    where
        U: Data,
        A: Default + 'static,
        Ab: FnMut(&mut A, Part<T>) + 'static,
        Fi: FnMut(BatchInfo, A, &mut Vec<Msg<U>>) + 'static;

    /// Like [`PerBatch::per_batch`] over two inputs, folded into one accumulator.
    fn per_batch2<T2, U, A, Ab1, Ab2, Fi>(
        self,
        other: EStream<'s, T2>,
        grid: &Grid,
        name: &str,
        absorb1: Ab1,
        absorb2: Ab2,
        finish: Fi,
    ) -> EStream<'s, U>
    where
        T2: Data,
        U: Data,
        A: Default + 'static,
        Ab1: FnMut(&mut A, Part<T>) + 'static,
        Ab2: FnMut(&mut A, Part<T2>) + 'static,
        Fi: FnMut(BatchInfo, A, &mut Vec<Msg<U>>) + 'static;
}

impl<'s, T: Data> PerBatch<'s, T> for EStream<'s, T> {
    fn per_batch<U, A, Ab, Fi>(self, grid: &Grid, name: &str, mut absorb: Ab, mut finish: Fi) -> EStream<'s, U>
    where
        U: Data,
        A: Default + 'static,
        Ab: FnMut(&mut A, Part<T>) + 'static,
        Fi: FnMut(BatchInfo, A, &mut Vec<Msg<U>>) + 'static,
    {
        let grid = grid.clone();
        let operator = name.to_owned();
        self.unary_frontier(Pipeline, name, move |cap, _info| {
            let mut walker = Walker::<A>::new(&grid, cap);
            let mut out = Vec::new();
            move |(input, frontier), output| {
                input.for_each(|time, data| {
                    let t = crate::ops::stamp_time(&time);
                    absorb_msgs(walker.slot(t), 0, data, &mut absorb, &operator, t);
                });
                walker.complete(frontier_min(&[frontier]), |cap, info, failed, acc| {
                    out.extend(failed.into_iter().map(Msg::Failed));
                    finish_caught(&mut finish, info, acc, &mut out, &operator);
                    if !out.is_empty() {
                        output.session(cap).give_container(&mut out);
                        out.clear();
                    }
                });
            }
        })
    }

    fn per_batch2<T2, U, A, Ab1, Ab2, Fi>(
        self,
        other: EStream<'s, T2>,
        grid: &Grid,
        name: &str,
        mut absorb1: Ab1,
        mut absorb2: Ab2,
        mut finish: Fi,
    ) -> EStream<'s, U>
    where
        T2: Data,
        U: Data,
        A: Default + 'static,
        Ab1: FnMut(&mut A, Part<T>) + 'static,
        Ab2: FnMut(&mut A, Part<T2>) + 'static,
        Fi: FnMut(BatchInfo, A, &mut Vec<Msg<U>>) + 'static,
    {
        let grid = grid.clone();
        let operator = name.to_owned();
        self.binary_frontier(other, Pipeline, Pipeline, name, move |cap, _info| {
            let mut walker = Walker::<A>::new(&grid, cap);
            let mut out = Vec::new();
            move |(input1, frontier1), (input2, frontier2), output| {
                input1.for_each(|time, data| {
                    let t = crate::ops::stamp_time(&time);
                    absorb_msgs(walker.slot(t), 0, data, &mut absorb1, &operator, t);
                });
                input2.for_each(|time, data| {
                    let t = crate::ops::stamp_time(&time);
                    absorb_msgs(walker.slot(t), 1, data, &mut absorb2, &operator, t);
                });
                // The combined frontier is the lesser one; a closed input does not hold it back.
                let frontier = frontier_min(&[frontier1, frontier2]);
                walker.complete(frontier, |cap, info, failed, acc| {
                    out.extend(failed.into_iter().map(Msg::Failed));
                    finish_caught(&mut finish, info, acc, &mut out, &operator);
                    if !out.is_empty() {
                        output.session(cap).give_container(&mut out);
                        out.clear();
                    }
                });
            }
        })
    }
}
