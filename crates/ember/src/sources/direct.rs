//! Direct sources (Spark's direct input streams, such as Kafka's `createDirectStream`): no
//! receiver; at every batch worker 0 decides what the batch reads (files, offset ranges), as
//! slices, and each slice becomes one partition, read by the worker that owns it.
//!
//! The machinery here makes such a source recoverable: the source's position (the files seen,
//! the next offsets) is engine-owned state, written at every checkpoint, and the slices each
//! batch chose are appended to a log in the checkpoint directory (`sources/<kind>-<id>.log`,
//! one JSON line per batch that chose any, fsynced before the batch is cut). A recovered run
//! restores the position of the checkpoint, cuts the batches after it with exactly the slices
//! they had before the crash, then plans new batches again: a batch that an output committed
//! before the crash is recomputed with the same input.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex, Weak};

use ember_engine::ops::{PerPart, SourceBatch, batch_source};
use ember_engine::state::{Checkpointed, KeyedState, checkpointed_state};
use ember_engine::{Data, Msg, Part, RunShared};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::context::{ContextInner, StreamingContext, lock};
use crate::dstream::{DStream, spread};
use crate::error::Error;
use crate::sources::partition_msgs;
use crate::sources::receiver::BatchRates;
use crate::time::{Duration, Time};

/// A source planned batch by batch on worker 0: see [`StreamingContext::direct_stream`].
///
/// One value lives on worker 0 of process 0 (the source's planner); the other workers and
/// processes only read the slices it hands out.
pub trait DirectSource: Send + 'static {
    /// One partition's share of a batch, decided on worker 0 and sent to the worker that
    /// reads it (for Kafka, an offset range of one topic partition). It is written to the
    /// checkpoint directory's selection log as JSON.
    type Slice: Data + Serialize + DeserializeOwned;

    /// Decides batch `batch.time()`'s slices: slice `i` becomes partition `i` of the batch,
    /// read by worker `i % workers` (workers numbered across processes). Problems that the
    /// user must see go through [`DirectBatch::report`]; an empty list is an empty batch.
    fn plan(&mut self, batch: &DirectBatch<'_>) -> Vec<Self::Slice>;

    /// A recovered run: batch `time`, planned before the crash, takes `slices` again (from
    /// the selection log) instead of being planned; the source moves its position past them.
    fn replay(&mut self, time: Time, slices: &[Self::Slice]);

    /// How many records `slice` holds, when known before it is read (an offset range knows);
    /// backpressure measures batches by it.
    fn records(&self, slice: &Self::Slice) -> Option<u64> {
        let _ = slice;
        None
    }

    /// Batch `time` has completed on every worker of process 0 (every output ran), for
    /// example to commit offsets back to where they are monitored. Called from worker 0
    /// before a later batch is planned, in order of time.
    fn completed(&mut self, time: Time) {
        let _ = time;
    }

    /// The source's position, for a checkpoint.
    ///
    /// # Errors
    ///
    /// A message when the position cannot be serialised; the checkpoint fails.
    fn snapshot(&self) -> Result<Vec<u8>, String>;

    /// Restores a position [`DirectSource::snapshot`] wrote.
    ///
    /// # Errors
    ///
    /// A message when `bytes` is not such a position; the restore fails naming the source.
    fn restore(&mut self, bytes: &[u8]) -> Result<(), String>;
}

/// What [`DirectSource::plan`] knows of the batch it plans.
pub struct DirectBatch<'a> {
    time: Time,
    interval: Duration,
    is_final: bool,
    rate_limit: Option<f64>,
    report: &'a dyn Fn(String),
}

impl std::fmt::Debug for DirectBatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectBatch")
            .field("time", &self.time)
            .field("interval", &self.interval)
            .field("is_final", &self.is_final)
            .field("rate_limit", &self.rate_limit)
            .finish_non_exhaustive()
    }
}

impl DirectBatch<'_> {
    /// The batch time.
    pub fn time(&self) -> Time {
        self.time
    }

    /// The batch interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// This is the last batch before the context stops.
    pub fn is_final(&self) -> bool {
        self.is_final
    }

    /// Records per second the whole stream should bring under backpressure
    /// ([`StreamingContextBuilder::backpressure`](crate::StreamingContextBuilder::backpressure)),
    /// estimated from the batches that completed; `None` when backpressure is off or nothing
    /// has been measured yet (then the initial rate, when one is set).
    pub fn rate_limit(&self) -> Option<f64> {
        self.rate_limit
    }

    /// Reports a problem the user must see: [`StreamingContext::await_termination`] returns it
    /// as [`Error::Source`] naming the stream. Transient trouble that the source retries
    /// should be logged instead, and reported once retrying gives up.
    pub fn report(&self, message: String) {
        (self.report)(message);
    }
}

/// The source's position as engine-owned state: one key group (0), owned by worker 0.
struct Position<S: DirectSource>(S);

impl<S: DirectSource> KeyedState for Position<S> {
    fn owns(&self, group: u32) -> bool {
        group == 0
    }

    fn snapshot(&self) -> Result<BTreeMap<u32, Vec<u8>>, String> {
        Ok(BTreeMap::from([(0, self.0.snapshot()?)]))
    }

    fn restore(&mut self, _group: u32, bytes: &[u8]) -> Result<(), String> {
        self.0.restore(bytes)
    }
}

/// One line of a direct source's selection log.
#[derive(Debug, Serialize, Deserialize)]
struct Selection<V> {
    time: u64,
    #[serde(alias = "files")]
    slices: V,
}

/// The slices each batch chose, appended to the checkpoint directory before the batch is
/// cut, and the choices a recovered run replays.
#[derive(Debug)]
pub(crate) struct SelectionLog<S> {
    /// The log, when checkpoints are on.
    log: Option<crate::storage::AppendLog>,
    /// Batches after the restored checkpoint that chose slices before the crash.
    replay: BTreeMap<u64, Vec<S>>,
}

impl<S> Default for SelectionLog<S> {
    fn default() -> Self {
        SelectionLog {
            log: None,
            replay: BTreeMap::new(),
        }
    }
}

impl<S: Serialize + DeserializeOwned + Clone> SelectionLog<S> {
    /// Opens the log `<kind>-<id>.log` in `checkpoint_dir/sources`, keeping the choices of
    /// the batches after `after_ms` (the restored checkpoint; older ones are not needed
    /// again) to replay.
    pub(crate) fn open(checkpoint_dir: &crate::storage::Location, kind: &str, id: &str, after_ms: u64) -> std::io::Result<Self> {
        let name = format!("sources/{kind}-{}.log", super::file_name_of(id));
        let (mut log, bytes) = crate::storage::AppendLog::open(checkpoint_dir, &name)?;
        let mut replay = BTreeMap::new();
        // A torn last line is a batch whose choice was never durable, so never cut.
        for line in bytes.split(|b| *b == b'\n') {
            if let Ok(selection) = serde_json::from_slice::<Selection<Vec<S>>>(line)
                && selection.time > after_ms
            {
                replay.insert(selection.time, selection.slices);
            }
        }
        // Rewritten with only what is still needed, then appended to.
        let mut text = String::new();
        for (time, slices) in &replay {
            text.push_str(&serde_json::to_string(&Selection { time: *time, slices }).map_err(std::io::Error::other)?);
            text.push('\n');
        }
        log.rewrite(text.into_bytes())?;
        Ok(SelectionLog { log: Some(log), replay })
    }

    /// Appends batch `time`'s choice durably.
    pub(crate) fn record(&mut self, time: u64, slices: &[S]) -> Result<(), String> {
        let Some(log) = self.log.as_mut() else { return Ok(()) };
        let mut line = serde_json::to_string(&Selection { time, slices }).map_err(|e| e.to_string())?;
        line.push('\n');
        log.append(line.as_bytes())
            .and_then(|()| log.sync())
            .map_err(|e| format!("cannot record the input chosen for batch {time} ms: {e}"))
    }

    /// What batch `time` chose before the crash, when it is to be replayed: `Some(empty)`
    /// for a batch before the next replayed one (it chose nothing then: every choice is
    /// logged), `None` once the replay is over.
    pub(crate) fn replayed(&mut self, time: u64) -> Option<Vec<S>> {
        if let Some(slices) = self.replay.remove(&time) {
            return Some(slices);
        }
        self.replay.keys().next().is_some_and(|next| *next > time).then(Vec::new)
    }
}

/// Backpressure for a direct source: the rate Spark's PID estimator finds from the batches'
/// completions.
struct Backpressure {
    rates: BatchRates,
    rate: Option<f64>,
}

/// Worker 0's half of a direct source: plans, logs and replays its batches.
struct Planner<S: DirectSource> {
    name: String,
    source: Rc<RefCell<Position<S>>>,
    checkpointed: Checkpointed,
    selections: SelectionLog<S::Slice>,
    ctx: Weak<ContextInner>,
    shared: Arc<RunShared>,
    interval_ms: u64,
    backpressure: Option<Backpressure>,
    /// Batches cut whose completion the source has not been told of.
    unfinished: std::collections::VecDeque<u64>,
}

impl<S: DirectSource> Planner<S> {
    fn report(&self, message: String) {
        if let Some(ctx) = self.ctx.upgrade() {
            ctx.report_source_error(Error::Source {
                source_name: self.name.clone(),
                message,
            });
        }
    }

    fn batch(&mut self, batch: SourceBatch) -> Vec<S::Slice> {
        while let Some(&time) = self.unfinished.front() {
            if self.shared.completed_at(time).is_none() {
                break;
            }
            self.unfinished.pop_front();
            self.source.borrow_mut().0.completed(Time::from_millis(time));
        }
        let slices = self.choose(batch);
        self.unfinished.push_back(batch.time);
        if let Some(failure) = self.checkpointed.after_batch(batch.time) {
            self.report(failure.to_string());
        }
        slices
    }

    fn choose(&mut self, batch: SourceBatch) -> Vec<S::Slice> {
        if let Some(slices) = self.selections.replayed(batch.time) {
            // A recovered run: the batch takes what it took before the crash.
            self.source.borrow_mut().0.replay(Time::from_millis(batch.time), &slices);
            return slices;
        }
        let rate_limit = self.backpressure.as_mut().and_then(|b| {
            if let Some(rate) = b.rates.observe(&self.shared) {
                b.rate = Some(rate);
            }
            b.rate
        });
        let report = |message: String| self.report(message);
        let plan = DirectBatch {
            time: Time::from_millis(batch.time),
            interval: Duration::from_millis(self.interval_ms),
            is_final: batch.is_final,
            rate_limit,
            report: &report,
        };
        let slices = self.source.borrow_mut().0.plan(&plan);
        if let Some(backpressure) = self.backpressure.as_mut() {
            let source = self.source.borrow();
            let records: u64 = slices.iter().filter_map(|s| source.0.records(s)).sum();
            backpressure.rates.cut(batch.time, records);
        }
        if !slices.is_empty()
            && let Err(message) = self.selections.record(batch.time, &slices)
        {
            self.report(format!("{message}; after a crash this batch may be recomputed with other input"));
        }
        slices
    }
}

impl StreamingContext {
    /// A stream planned batch by batch on worker 0 (Spark's direct input streams, such as
    /// Kafka's `createDirectStream`): at every batch `source` decides the batch's slices
    /// ([`DirectSource::plan`]), slice `i` becomes partition `i` and worker `i % workers`
    /// turns it into records with `read`. An error from `read` fails the batch
    /// ([`Error::JobFailed`]) with its message.
    ///
    /// With checkpoints on, the stream is recoverable: the source's position is part of every
    /// checkpoint and the slices of every batch are logged before the batch is cut, so a
    /// recovered run recomputes the batches after the checkpoint with exactly the input they
    /// had before the crash. `kind` names the log (`sources/<kind>-<operator id>.log`) and
    /// the stream's plan node. With backpressure on, [`DirectBatch::rate_limit`] carries the
    /// rate Spark's PID estimator finds, which the source is expected to honour.
    pub fn direct_stream<S, T, R>(&self, kind: &'static str, name: String, source: S, read: R) -> DStream<T>
    where
        S: DirectSource,
        T: Data,
        R: Fn(&S::Slice) -> Result<Vec<T>, String> + Send + Sync + 'static,
    {
        let ctx = Arc::downgrade(self.inner());
        let source = Mutex::new(Some(source));
        let read = Arc::new(read);
        let log_kind = kind.replace('_', "-");
        self.source(kind, move |c, label| {
            let mut planner = (c.env.index == 0).then(|| lock(&source).take()).flatten().map(|source| {
                let source = Rc::new(RefCell::new(Position(source)));
                let interval = c.env.interval_ms;
                let checkpointed = checkpointed_state(c, label, Rc::clone(&source), interval, interval);
                let context = ctx.upgrade();
                let selections = match context.as_ref().and_then(|ctx| ctx.checkpoint_dir()) {
                    None => SelectionLog::default(),
                    Some(dir) => SelectionLog::open(&dir, &log_kind, c.operator_id(), c.env.start_ms).unwrap_or_else(|e| {
                        if let Some(ctx) = &context {
                            ctx.report_source_error(Error::Source {
                                source_name: name.clone(),
                                message: format!(
                                    "cannot open the selection log in {dir}: {e}; batches after the last checkpoint are not recoverable"
                                ),
                            });
                        }
                        SelectionLog::default()
                    }),
                };
                let backpressure = context.as_ref().and_then(|ctx| {
                    let settings = ctx.receiver_settings();
                    settings.backpressure.then(|| Backpressure {
                        rates: BatchRates::new(interval),
                        rate: settings.initial_rate.map(|r| r as f64),
                    })
                });
                Planner {
                    name: name.clone(),
                    source,
                    checkpointed,
                    selections,
                    ctx: ctx.clone(),
                    shared: Arc::clone(&c.env.shared),
                    interval_ms: interval,
                    backpressure,
                    unfinished: std::collections::VecDeque::new(),
                }
            });
            let slices = batch_source(c, label, false, move |batch| -> Vec<Msg<S::Slice>> {
                let Some(planner) = planner.as_mut() else { return Vec::new() };
                partition_msgs(planner.batch(batch).into_iter().map(|slice| vec![slice]).collect())
            });
            let read = Arc::clone(&read);
            spread(c, slices).try_per_part(label, move |part: Part<S::Slice>| {
                let mut data = Vec::new();
                for slice in &part.data {
                    data.extend(read(slice)?);
                }
                Ok(Part { id: part.id, data })
            })
        })
    }
}
