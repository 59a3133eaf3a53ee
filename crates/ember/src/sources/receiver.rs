//! `receiver_stream`: custom receivers (Spark's `Receiver`), their supervisor, bounded buffer,
//! rate limit and backpressure controller.
//!
//! A receiver runs on its own thread on the process that hosts worker 0. What it stores goes
//! into a bounded buffer; the source operator of one local worker takes the whole buffer at
//! every batch cut, in blocks, and spreads the blocks over the workers. When the buffer is
//! full, `store` blocks: the receiver stops reading and its producer is slowed down (TCP
//! backpressure for a socket) instead of memory growing. The engine cuts batches no more than
//! `max_batches_in_flight` ahead of the slowest output, so a slow job makes the buffer fill and
//! the receiver wait.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ember_engine::ops::{SourceBatch, batch_source};
use ember_engine::{Compiler, Data, EStream, Msg, RunShared};

use crate::context::{ContextInner, ReceiverHost, ReceiverSettings, StreamingContext, lock};
use crate::dstream::{DStream, spread};
use crate::error::{Error, Result};
use crate::listener::{BusEvent, ReceiverEventKind};
use crate::sources::partition_msgs;

/// A source of records that runs on its own thread (Spark's `Receiver`): implement it to read
/// from any system and hand records to ember with [`ReceiverContext::store`].
///
/// `on_start` runs on the receiver's thread. It may receive right there, in a loop that ends
/// once [`ReceiverContext::is_stopped`] is true, or start threads of its own (given a clone of
/// the context) and return. Either way the receiver counts as running until it asks to
/// [`restart`](ReceiverContext::restart) or [`stop`](ReceiverContext::stop), or the
/// streaming context stops; then `on_stop` runs on the same thread. After a restart request
/// (or a panic in `on_start`), the receiver is started again after the context's
/// `receiver_restart_delay`.
///
/// Blocking calls inside a receiver should use timeouts and check `is_stopped`, or
/// `StreamingContext::stop` waits for them.
///
/// # Examples
///
/// ```
/// use ember::prelude::*;
///
/// /// Counts from 0 to 9, then stops itself.
/// struct Counter;
///
/// impl Receiver<u64> for Counter {
///     fn on_start(&mut self, ctx: &ReceiverContext<u64>) {
///         ctx.store_many(0..10);
///         ctx.stop("done counting");
///     }
/// }
///
/// # fn main() -> ember::Result<()> {
/// let ssc = StreamingContext::new(milliseconds(50))?;
/// let total = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
/// let sink = total.clone();
/// ssc.receiver_stream(Counter).foreach_rdd(move |b, _| {
///     sink.fetch_add(b.collect().iter().sum::<u64>(), std::sync::atomic::Ordering::Relaxed);
/// })?;
/// ssc.start()?;
/// std::thread::sleep(std::time::Duration::from_millis(200));
/// ssc.stop(true)?;
/// assert_eq!(total.load(std::sync::atomic::Ordering::Relaxed), 45);
/// # Ok(())
/// # }
/// ```
pub trait Receiver<T>: Send + 'static {
    /// Starts receiving; see the trait's docs.
    fn on_start(&mut self, ctx: &ReceiverContext<T>);

    /// Releases what `on_start` acquired; runs after the receiver stopped receiving, before a
    /// restart or when the context stops.
    fn on_stop(&mut self) {}
}

/// Records per block: the unit a receiver's data is spread over the workers in.
const BLOCK_RECORDS: usize = 16 * 1024;
/// Bytes per block, for receivers that store large items (text receivers store line blocks).
const BLOCK_BYTES: usize = 256 << 10;
/// How long a blocked `store` or a restart delay waits before re-checking for a stop.
const POLL: Duration = Duration::from_millis(20);

/// Why a receiver is not (or no longer) running.
#[derive(Clone, Debug, PartialEq)]
enum Phase {
    Running,
    Restart(String),
    Stopped(String),
    ContextStopping,
}

/// How much a run of stored items counts against a receiver's buffer: records (for the record
/// bound, rates and counts) and bytes (for the byte bound).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Weight {
    pub(crate) records: usize,
    pub(crate) bytes: usize,
}

/// Weighs stored items.
pub(crate) type Weigh<T> = fn(&[T]) -> Weight;

/// Builds, on one worker, the stream of the items a receiver stored (gets the source's label).
type BuildItems<S> = Arc<dyn for<'s> Fn(&mut Compiler<'s>, &str) -> EStream<'s, S> + Send + Sync>;

/// A user's receiver stores records: each counts once, and its inline size in bytes (what it
/// owns on the heap is not seen).
fn weigh_records<T>(records: &[T]) -> Weight {
    Weight {
        records: records.len(),
        bytes: std::mem::size_of_val(records),
    }
}

/// Stored items and their weight.
struct Block<T> {
    items: Vec<T>,
    weight: Weight,
}

/// Records stored since the last batch cut.
struct Buffer<T> {
    blocks: Vec<Block<T>>,
    records: usize,
    bytes: usize,
    /// The write-ahead log, when on: appended to under the same lock, so that its order is the
    /// buffer's.
    wal: Option<super::wal::Wal<T>>,
    /// The receiver's position in its source after the last records stored with one (see
    /// [`ReceiverContext::store_many_at`]).
    position: u64,
}

/// What a receiver's thread, its clones of [`ReceiverContext`] and the source operator share.
struct Core<T> {
    name: String,
    buffer: Mutex<Buffer<T>>,
    space: Condvar,
    capacity: AtomicUsize,
    capacity_bytes: AtomicUsize,
    weigh: Weigh<T>,
    phase: Mutex<Phase>,
    phase_changed: Condvar,
    limiter: RateLimiter,
    ctx: Weak<ContextInner>,
    stored: AtomicU64,
    restarts: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl<T> Core<T> {
    fn report(&self, message: String) {
        if let Some(ctx) = self.ctx.upgrade() {
            ctx.report_source_error(Error::Source {
                source_name: self.name.clone(),
                message,
            });
        }
    }

    fn context_stopping(&self) -> bool {
        *lock(&self.phase) == Phase::ContextStopping
    }

    /// Moves to `next` unless the receiver is already leaving `Running` (the first reason wins;
    /// a context stop overrides everything).
    fn request(&self, next: Phase) {
        let mut phase = lock(&self.phase);
        if *phase == Phase::Running || next == Phase::ContextStopping {
            *phase = next;
            self.phase_changed.notify_all();
            self.space.notify_all();
        }
    }
}

impl<T: Data> Core<T> {
    /// Whether the buffer holds as many records or bytes as it may.
    fn full(&self, buffer: &Buffer<T>) -> bool {
        buffer.records >= self.capacity.load(Ordering::Relaxed) || buffer.bytes >= self.capacity_bytes.load(Ordering::Relaxed)
    }

    /// Waits while the buffer is full (unless the context is stopping: what is stored then goes
    /// into the final batch), then writes `records` to the write-ahead log if it is on (synced
    /// when `sync`); returns the buffer, locked, for the records to be added.
    fn make_room(&self, records: &[T], position: Option<u64>, sync: bool) -> MutexGuard<'_, Buffer<T>> {
        let mut buffer = lock(&self.buffer);
        while self.full(&buffer) && !self.context_stopping() {
            buffer = self.space.wait_timeout(buffer, POLL).unwrap_or_else(|e| e.into_inner()).0;
        }
        if let Some(wal) = buffer.wal.as_mut()
            && let Err(e) = wal.append_block(records, position, sync)
        {
            let message = format!(
                "cannot write the write-ahead log {}: {e}; what is stored now is lost in a crash",
                wal.shown()
            );
            buffer = self.report_unlocked(buffer, message);
        }
        buffer
    }

    /// Reports `message` without holding the buffer's lock; returns the lock taken again.
    fn report_unlocked<'a>(&'a self, buffer: MutexGuard<'a, Buffer<T>>, message: String) -> MutexGuard<'a, Buffer<T>> {
        drop(buffer);
        self.report(message);
        lock(&self.buffer)
    }

    /// Counts `weight` added to `buffer`.
    fn added(&self, mut buffer: MutexGuard<'_, Buffer<T>>, weight: Weight) {
        buffer.records += weight.records;
        buffer.bytes += weight.bytes;
        drop(buffer);
        self.stored.fetch_add(weight.records as u64, Ordering::Relaxed);
    }

    /// Appends one record to the last block, or starts a block. With the write-ahead log, the
    /// record is synced with the next block or cut (Spark's single-record `store` is not
    /// reliable either; `store_many` is).
    fn push_one(&self, record: T) {
        let mut buffer = self.make_room(std::slice::from_ref(&record), None, false);
        let weight = (self.weigh)(std::slice::from_ref(&record));
        match buffer.blocks.last_mut() {
            Some(last) if last.weight.records < BLOCK_RECORDS && last.weight.bytes < BLOCK_BYTES => {
                last.items.push(record);
                last.weight.records += weight.records;
                last.weight.bytes += weight.bytes;
            }
            _ => buffer.blocks.push(Block {
                items: vec![record],
                weight,
            }),
        }
        self.added(buffer, weight);
    }

    /// Appends records: a small run joins the last block, a large one is a block of its own.
    fn push(&self, records: Vec<T>) {
        let n = records.len();
        if n == 0 {
            return;
        }
        let buffer = self.make_room(&records, None, true);
        self.append(buffer, records);
    }

    /// Adds `records` to the locked buffer: a small run joins the last block while it has room,
    /// a large one is a block of its own.
    fn append(&self, mut buffer: MutexGuard<'_, Buffer<T>>, mut records: Vec<T>) {
        let weight = (self.weigh)(&records);
        match buffer.blocks.last_mut() {
            Some(last)
                if last.weight.records < BLOCK_RECORDS
                    && last.weight.bytes < BLOCK_BYTES
                    && weight.records < BLOCK_RECORDS / 2
                    && weight.bytes < BLOCK_BYTES / 2 =>
            {
                last.items.append(&mut records);
                last.weight.records += weight.records;
                last.weight.bytes += weight.bytes;
            }
            _ => buffer.blocks.push(Block { items: records, weight }),
        }
        self.added(buffer, weight);
    }

    /// Appends records and moves the source position to `position` (when given), in one step
    /// (and, with the write-ahead log, in one durable frame).
    fn push_at(&self, records: Vec<T>, position: Option<u64>) {
        let mut buffer = self.make_room(&records, position, true);
        if let Some(position) = position {
            buffer.position = position;
        }
        if records.is_empty() {
            return;
        }
        self.append(buffer, records);
    }

    /// Takes everything stored since the last cut, for batch `time`. With the write-ahead log,
    /// a batch cut before a crash takes the blocks it had then (what was stored since stays
    /// for the next batch), and a batch cut afresh is logged first.
    fn drain(&self, time: u64) -> Vec<Vec<T>> {
        let mut buffer = lock(&self.buffer);
        let mut blocks = Vec::new();
        if let Some(wal) = buffer.wal.as_mut() {
            if let Some(replayed) = wal.replayed(time) {
                return replayed;
            }
            let keep_after = || self.ctx.upgrade().and_then(|ctx| ctx.oldest_checkpoint());
            match wal.cut(time, keep_after) {
                Ok(carried) => blocks = carried,
                Err(e) => {
                    let message = format!(
                        "cannot write the write-ahead log {}: {e}; batch {time} ms is lost in a crash",
                        wal.shown()
                    );
                    buffer = self.report_unlocked(buffer, message);
                }
            }
        }
        buffer.records = 0;
        buffer.bytes = 0;
        blocks.extend(buffer.blocks.drain(..).map(|b| b.items));
        self.space.notify_all();
        blocks
    }
}

/// A running receiver's handle to ember (Spark's `Receiver` methods `store`, `restart`,
/// `stop`, `reportError`, `isStopped`). Clones share the receiver; hand them to threads the
/// receiver starts.
pub struct ReceiverContext<T> {
    core: Arc<Core<T>>,
}

impl<T> Clone for ReceiverContext<T> {
    fn clone(&self) -> Self {
        ReceiverContext {
            core: Arc::clone(&self.core),
        }
    }
}

impl<T> std::fmt::Debug for ReceiverContext<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverContext")
            .field("name", &self.core.name)
            .finish_non_exhaustive()
    }
}

impl<T: Data> ReceiverContext<T> {
    /// Stores one record for the next batch. Waits while the receiver is over its rate or its
    /// buffer is full.
    pub fn store(&self, record: T) {
        self.core.limiter.wait_for(1, &|| self.core.context_stopping());
        self.core.push_one(record);
    }

    /// Stores many records for the next batch, keeping their order (one block of Spark's
    /// `store(ArrayBuffer)`). Waits as [`ReceiverContext::store`] does; a large call is paced in
    /// slices when a rate applies.
    pub fn store_many<I: IntoIterator<Item = T>>(&self, records: I) {
        let records: Vec<T> = records.into_iter().collect();
        match self.core.limiter.rate() {
            None => self.core.push(records),
            Some(rate) => {
                // About a tenth of a second of records at a time, so pacing stays smooth.
                let slice = ((rate / 10.0) as usize).max(1);
                let mut records = records.into_iter().peekable();
                while records.peek().is_some() {
                    let chunk: Vec<T> = records.by_ref().take(slice).collect();
                    self.core.limiter.wait_for(chunk.len(), &|| self.core.context_stopping());
                    self.core.push(chunk);
                }
            }
        }
    }

    /// Stores `records` as one block and records that the receiver's position in its source
    /// after them is `position` (for example, lines consumed), both at once: with the
    /// write-ahead log, in the same durable frame, so that after a crash
    /// [`ReceiverContext::position`] is the position of exactly the records that survived, and
    /// the source can resend from there with nothing lost or repeated. `records` may be empty
    /// (input that was skipped still moves the position). Waits as
    /// [`ReceiverContext::store`] does, for the whole block at once. An ember extension.
    pub fn store_many_at<I: IntoIterator<Item = T>>(&self, records: I, position: u64) {
        let records: Vec<T> = records.into_iter().collect();
        self.core.limiter.wait_for(records.len(), &|| self.core.context_stopping());
        self.core.push_at(records, Some(position));
    }

    /// Stores items that each hold many records (line blocks), as one block: paced and
    /// bounded by their weight, with the position as in [`ReceiverContext::store_many_at`].
    pub(crate) fn store_weighed(&self, items: Vec<T>, position: Option<u64>) {
        let weight = (self.core.weigh)(&items);
        self.core.limiter.wait_for(weight.records, &|| self.core.context_stopping());
        self.core.push_at(items, position);
    }

    /// The position last stored with [`ReceiverContext::store_many_at`]; after a recovery with
    /// the write-ahead log, the position of the last durable block (0 when none).
    pub fn position(&self) -> u64 {
        lock(&self.core.buffer).position
    }

    /// Whether [`ReceiverContext::position`] survives what the job survives: the write-ahead
    /// log is on, or the job has no checkpoint to recover from (a restart then starts fresh).
    pub fn position_is_durable(&self) -> bool {
        lock(&self.core.buffer).wal.is_some() || self.core.ctx.upgrade().is_none_or(|ctx| ctx.checkpoint_dir().is_none())
    }

    /// Whether the receiver should stop receiving: it asked to restart or stop, or the
    /// streaming context is stopping. Receiving loops check this.
    pub fn is_stopped(&self) -> bool {
        *lock(&self.core.phase) != Phase::Running
    }

    /// Asks for the receiver to be stopped and started again after the restart delay (for
    /// example after its connection dropped). `on_start` should return soon after.
    pub fn restart(&self, reason: impl Into<String>) {
        self.core.request(Phase::Restart(reason.into()));
    }

    /// Stops the receiver for good; the stream goes on with empty batches.
    pub fn stop(&self, reason: impl Into<String>) {
        self.core.request(Phase::Stopped(reason.into()));
    }

    /// Reports a problem without stopping: `await_termination` returns it as
    /// [`Error::Source`] naming this receiver.
    pub fn report_error(&self, message: impl Into<String>) {
        let message = message.into();
        *lock(&self.core.last_error) = Some(message.clone());
        self.core.tell(ReceiverEventKind::Error);
        if let Some(ctx) = self.core.ctx.upgrade() {
            ctx.report_source_error(Error::Source {
                source_name: self.core.name.clone(),
                message,
            });
        }
    }

    /// The stream's name, for messages (for example `socket_text_stream(localhost:9999)`).
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The rate `store` keeps under now, in records per second, if any.
    pub(crate) fn rate(&self) -> Option<f64> {
        self.core.limiter.rate()
    }

    /// Records stored so far, over all restarts.
    pub fn stored(&self) -> u64 {
        self.core.stored.load(Ordering::Relaxed)
    }
}

/// A receiver's state, as Spark's `ReceiverInfo` shows it
/// ([`StreamingContext::receivers`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ReceiverInfo {
    /// The stream's name (for example `socket_text_stream(localhost:9999)`).
    pub name: String,
    /// Whether it is receiving now (not stopped, not waiting to restart).
    pub active: bool,
    /// Records stored, over all restarts.
    pub stored: u64,
    /// How many times it was restarted after a failure or a restart request.
    pub restarts: u64,
    /// Why it last failed, asked to restart, or stopped.
    pub last_error: Option<String>,
    /// Records stored and not yet handed to a batch.
    pub buffered_records: u64,
    /// Their size in bytes (line bytes for text receivers).
    pub buffered_bytes: u64,
    /// The rate `store` is held to now (records per second): the lower of `receiver_max_rate`
    /// and the backpressure controller's estimate; `None` when unlimited.
    pub rate_limit: Option<f64>,
}

/// Paces `store` to a rate in records per second: a fixed maximum, an adaptive one set by the
/// backpressure controller, or the lower of both.
struct RateLimiter {
    max: AtomicU64,
    /// `f64` bits of the controller's rate; 0 = no estimate.
    adaptive: AtomicU64,
    /// When the next record may be stored.
    next: Mutex<Instant>,
}

impl RateLimiter {
    fn new() -> Self {
        RateLimiter {
            max: AtomicU64::new(0),
            adaptive: AtomicU64::new(0),
            next: Mutex::new(Instant::now()),
        }
    }

    fn rate(&self) -> Option<f64> {
        let max = match self.max.load(Ordering::Relaxed) {
            0 => None,
            m => Some(m as f64),
        };
        let adaptive = match self.adaptive.load(Ordering::Relaxed) {
            0 => None,
            bits => Some(f64::from_bits(bits)),
        };
        match (max, adaptive) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn set_adaptive(&self, rate: f64) {
        self.adaptive.store(rate.to_bits(), Ordering::Relaxed);
    }

    /// Waits until `n` more records fit the rate (or `stopping` says to give up waiting).
    fn wait_for(&self, n: usize, stopping: &dyn Fn() -> bool) {
        let Some(rate) = self.rate() else { return };
        let slot = {
            let mut next = lock(&self.next);
            let now = Instant::now();
            // An idle receiver does not save up a burst.
            let start = (*next).max(now);
            *next = start + Duration::from_secs_f64(n as f64 / rate);
            start
        };
        loop {
            let now = Instant::now();
            if now >= slot || stopping() {
                return;
            }
            std::thread::sleep((slot - now).min(POLL));
        }
    }
}

/// Spark's PID rate estimator, in ember's words: after each batch, the rate the job sustained
/// is the batch's records over its processing time. The new rate moves the current one
/// towards it (proportional term), and lower still by the backlog the scheduling delay shows
/// (integral term), never below `min_rate`.
#[derive(Debug)]
pub(crate) struct PidRateEstimator {
    batch_interval_s: f64,
    proportional: f64,
    integral: f64,
    derivative: f64,
    min_rate: f64,
    latest: Option<(u64, f64, f64)>,
}

impl PidRateEstimator {
    pub(crate) fn new(batch_interval_ms: u64) -> Self {
        PidRateEstimator {
            batch_interval_s: batch_interval_ms.max(1) as f64 / 1000.0,
            proportional: 1.0,
            integral: 0.2,
            derivative: 0.0,
            min_rate: 100.0,
            latest: None,
        }
    }

    /// The new rate after batch `time_ms` carried `records` in `processing_ms`, having waited
    /// `scheduling_ms`; `None` when there is nothing to learn from (or on the first batch,
    /// which only sets the starting point).
    pub(crate) fn compute(&mut self, time_ms: u64, records: u64, processing_ms: f64, scheduling_ms: f64) -> Option<f64> {
        if records == 0 || processing_ms <= 0.0 || self.latest.is_some_and(|(t, _, _)| time_ms <= t) {
            return None;
        }
        let processing_rate = records as f64 / (processing_ms / 1000.0);
        let Some((latest_time, latest_rate, latest_error)) = self.latest else {
            self.latest = Some((time_ms, processing_rate, 0.0));
            return None;
        };
        let since = (time_ms - latest_time) as f64 / 1000.0;
        let error = latest_rate - processing_rate;
        let backlog_error = (scheduling_ms / 1000.0) * processing_rate / self.batch_interval_s;
        let d_error = (error - latest_error) / since;
        let rate = (latest_rate - self.proportional * error - self.integral * backlog_error - self.derivative * d_error).max(self.min_rate);
        self.latest = Some((time_ms, rate, error));
        Some(rate)
    }
}

/// Backpressure's measurements: the estimator fed from batch completions. Receivers and
/// direct sources note each batch they cut, then ask for the new rate before the next one.
#[derive(Debug)]
pub(crate) struct BatchRates {
    estimator: PidRateEstimator,
    /// Batches cut but not yet measured: (time, records, when cut).
    pending: VecDeque<(u64, u64, Instant)>,
    last_done: Option<Instant>,
}

impl BatchRates {
    pub(crate) fn new(batch_interval_ms: u64) -> Self {
        BatchRates {
            estimator: PidRateEstimator::new(batch_interval_ms),
            pending: VecDeque::new(),
            last_done: None,
        }
    }

    /// Batch `time`, cut now, carries `records`.
    pub(crate) fn cut(&mut self, time: u64, records: u64) {
        self.pending.push_back((time, records, Instant::now()));
    }

    /// Measures the batches that completed since the last call; the latest new rate, if any.
    pub(crate) fn observe(&mut self, shared: &RunShared) -> Option<f64> {
        let mut latest = None;
        while let Some(&(time, records, cut)) = self.pending.front() {
            let Some(done) = shared.completed_at(time) else { break };
            self.pending.pop_front();
            // A batch starts when it is cut, or when the one before it finished if later.
            let start = self.last_done.map_or(cut, |d| d.max(cut)).min(done);
            self.last_done = Some(done);
            let processing = (done - start).as_secs_f64() * 1000.0;
            let scheduling = (start - cut).as_secs_f64() * 1000.0;
            if let Some(rate) = self.estimator.compute(time, records, processing, scheduling) {
                tracing::debug!(batch_time_ms = time, rate, "Backpressure: new rate.");
                latest = Some(rate);
            }
        }
        latest
    }
}

/// The driver-side half of a receiver: starts its supervising thread.
struct ReceiverRunner<T> {
    core: Arc<Core<T>>,
    receiver: Mutex<Option<Box<dyn Receiver<T>>>>,
    /// The stream's plan node (its id names the write-ahead log).
    node: std::sync::OnceLock<usize>,
}

impl<T: Data> ReceiverHost for ReceiverRunner<T> {
    fn open_wal(&self, plan: &crate::plan::CompiledPlan, checkpoint_dir: &crate::storage::Location, after: Option<u64>) -> Result<()> {
        let Some(id) = self.node.get().and_then(|n| plan.id_of(*n)) else {
            return Ok(());
        };
        let wal = super::wal::Wal::open(checkpoint_dir, id, after).map_err(|source| Error::Io {
            context: format!(
                "cannot open the write-ahead log of receiver {} in {}",
                self.core.name, checkpoint_dir
            ),
            source,
        })?;
        let mut buffer = lock(&self.core.buffer);
        buffer.position = wal.position().unwrap_or(0);
        buffer.wal = Some(wal);
        Ok(())
    }

    fn start(&self, ctx: Arc<ContextInner>) -> Result<JoinHandle<()>> {
        let receiver = lock(&self.receiver)
            .take()
            .ok_or_else(|| Error::IllegalState(format!("receiver {} was already started", self.core.name)))?;
        let settings: &ReceiverSettings = ctx.receiver_settings();
        self.core.capacity.store(settings.buffer_records, Ordering::Relaxed);
        self.core.capacity_bytes.store(settings.buffer_bytes, Ordering::Relaxed);
        self.core.limiter.max.store(settings.max_rate.unwrap_or(0), Ordering::Relaxed);
        if settings.backpressure
            && let Some(initial) = settings.initial_rate
        {
            self.core.limiter.set_adaptive(initial as f64);
        }
        let policy = RestartPolicy {
            delay: settings.restart_delay,
            max_failures: settings.max_failed_restarts,
        };
        let core = Arc::clone(&self.core);
        std::thread::Builder::new()
            .name(format!("ember-receiver-{}", self.core.name))
            .spawn(move || supervise(receiver, core, policy))
            .map_err(|e| Error::Io {
                context: format!("cannot start the thread of receiver {}", self.core.name),
                source: e,
            })
    }

    fn request_stop(&self) {
        self.core.request(Phase::ContextStopping);
    }

    fn info(&self) -> ReceiverInfo {
        self.core.info()
    }
}

impl<T> Core<T> {
    fn info(&self) -> ReceiverInfo {
        let buffered = {
            let buffer = lock(&self.buffer);
            (buffer.records, buffer.bytes)
        };
        ReceiverInfo {
            name: self.name.clone(),
            active: *lock(&self.phase) == Phase::Running,
            stored: self.stored.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
            last_error: lock(&self.last_error).clone(),
            buffered_records: buffered.0 as u64,
            buffered_bytes: buffered.1 as u64,
            rate_limit: self.limiter.rate(),
        }
    }

    /// Tells the streaming listeners about this receiver.
    fn tell(&self, kind: ReceiverEventKind) {
        if let Some(ctx) = self.ctx.upgrade() {
            ctx.bus.send(BusEvent::Receiver(kind, self.info()));
        }
    }
}

/// When a receiver is started again.
#[derive(Clone, Copy, Debug)]
struct RestartPolicy {
    /// The pause before a restart.
    delay: Duration,
    /// How many failures in a row, with nothing stored in between, stop the receiver for good
    /// and fail the stream (0 = never).
    max_failures: u32,
}

/// Runs a receiver until it stops or the context does, restarting it after failures. A run
/// that ends in a restart request or a panic without having stored anything counts as a
/// failure; [`RestartPolicy::max_failures`] of them in a row stop the receiver with an error.
fn supervise<T: Data>(mut receiver: Box<dyn Receiver<T>>, core: Arc<Core<T>>, policy: RestartPolicy) {
    let ctx = ReceiverContext { core: Arc::clone(&core) };
    let mut failures = 0u32;
    loop {
        {
            let mut phase = lock(&core.phase);
            if *phase == Phase::ContextStopping {
                break;
            }
            *phase = Phase::Running;
        }
        tracing::info!(receiver = %core.name, "Receiver started.");
        core.tell(ReceiverEventKind::Started);
        let stored_before = core.stored.load(Ordering::Relaxed);
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| receiver.on_start(&ctx))) {
            let message = ember_engine::msg::panic_message(payload.as_ref());
            ctx.restart(format!("on_start panicked: {message}"));
        }
        let phase = {
            let mut phase = lock(&core.phase);
            while *phase == Phase::Running {
                phase = core.phase_changed.wait(phase).unwrap_or_else(|e| e.into_inner());
            }
            phase.clone()
        };
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| receiver.on_stop())) {
            let message = ember_engine::msg::panic_message(payload.as_ref());
            tracing::error!(receiver = %core.name, %message, "Receiver's on_stop panicked.");
        }
        match phase {
            Phase::Restart(reason) => {
                *lock(&core.last_error) = Some(reason.clone());
                core.tell(ReceiverEventKind::Error);
                let stored_nothing = core.stored.load(Ordering::Relaxed) == stored_before;
                failures = if stored_nothing { failures + 1 } else { 1 };
                if policy.max_failures > 0 && failures >= policy.max_failures {
                    let message = format!(
                        "the receiver failed {failures} times in a row without storing anything and was stopped; the last failure: {reason}"
                    );
                    ctx.stop(message.clone());
                    ctx.report_error(message);
                    break;
                }
                core.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(receiver = %core.name, %reason, failures, delay_ms = policy.delay.as_millis() as u64, "Restarting receiver after a delay.");
                let wake = Instant::now() + policy.delay;
                while Instant::now() < wake && !core.context_stopping() {
                    std::thread::sleep(POLL.min(policy.delay));
                }
            }
            Phase::Stopped(reason) => {
                tracing::info!(receiver = %core.name, %reason, "Receiver stopped itself.");
                break;
            }
            Phase::Running | Phase::ContextStopping => break,
        }
    }
    tracing::info!(receiver = %core.name, stored = core.stored.load(Ordering::Relaxed), "Receiver finished.");
    core.tell(ReceiverEventKind::Stopped);
}

impl StreamingContext {
    /// A stream of what `receiver` stores (Spark's `receiverStream`). The receiver starts with
    /// the context, on its own thread, and is stopped before the last batch when the context
    /// stops. Several receivers run in parallel; union their streams to scale ingestion.
    pub fn receiver_stream<T: Data, R: Receiver<T>>(&self, receiver: R) -> DStream<T> {
        let short = std::any::type_name::<R>().rsplit("::").next().unwrap_or("receiver");
        self.receiver_stream_named(format!("receiver_stream({short})"), "receiver_stream", Box::new(receiver))
    }

    pub(crate) fn receiver_stream_named<T: Data>(&self, name: String, label: &str, receiver: Box<dyn Receiver<T>>) -> DStream<T> {
        let (runner, items) = self.receiver_items(name, receiver, weigh_records::<T>);
        let stream = self.source(label, move |c, label| items(c, label));
        // Nodes are never removed, so the index stays the stream's.
        let _ = runner.node.set(stream.index);
        stream
    }

    /// A receiver's stream, where the receiver stores items weighed by `weigh` and the workers
    /// turn the items they are given into the stream's records with `step` (text receivers
    /// store line blocks and the workers split and decode them in parallel, inside the
    /// stream's consumer when it takes chains: see [`DStream::decoded_source`]).
    pub(crate) fn receiver_stream_decoded<S: Data, T: Data, St>(
        &self,
        name: String,
        label: &str,
        receiver: Box<dyn Receiver<S>>,
        weigh: Weigh<S>,
        step: St,
    ) -> DStream<T>
    where
        St: Fn(S, &mut dyn FnMut(T)) + Send + Sync + 'static,
    {
        let (runner, items) = self.receiver_items(name, receiver, weigh);
        let stream = self.decoded_source(
            label,
            move |c, label| items(c, label),
            move |items: &[S]| weigh(items).records,
            step,
        );
        let _ = runner.node.set(stream.index);
        stream
    }

    /// Registers `receiver` and returns it with what builds, on each worker, the stream of the
    /// items it stored (given to the workers in turn).
    fn receiver_items<S: Data>(
        &self,
        name: String,
        receiver: Box<dyn Receiver<S>>,
        weigh: Weigh<S>,
    ) -> (Arc<ReceiverRunner<S>>, BuildItems<S>) {
        let inner = self.inner();
        let core = Arc::new(Core {
            name,
            buffer: Mutex::new(Buffer {
                blocks: Vec::new(),
                records: 0,
                bytes: 0,
                wal: None,
                position: 0,
            }),
            space: Condvar::new(),
            capacity: AtomicUsize::new(usize::MAX),
            capacity_bytes: AtomicUsize::new(usize::MAX),
            weigh,
            phase: Mutex::new(Phase::Running),
            phase_changed: Condvar::new(),
            limiter: RateLimiter::new(),
            ctx: Arc::downgrade(inner),
            stored: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            last_error: Mutex::new(None),
        });
        let runner = Arc::new(ReceiverRunner {
            core: Arc::clone(&core),
            receiver: Mutex::new(Some(receiver)),
            node: std::sync::OnceLock::new(),
        });
        let index = inner.add_receiver(Arc::clone(&runner) as Arc<dyn ReceiverHost>);
        // Receivers run on the process hosting worker 0, whose workers are 0..workers; they
        // take turns draining receivers.
        let owner = index % self.workers();
        let backpressure = inner.receiver_settings().backpressure;
        let interval_ms = self.batch_interval().as_millis();
        let ctx = Arc::downgrade(inner);
        let items: BuildItems<S> = Arc::new(move |c: &mut Compiler<'_>, label: &str| {
            let core = (c.env.index == owner).then(|| Arc::clone(&core));
            let ctx = ctx.clone();
            let mut rates = backpressure.then(|| BatchRates::new(interval_ms));
            let stream = batch_source(c, label, true, move |batch: SourceBatch| -> Vec<Msg<S>> {
                let Some(core) = core.as_ref() else { return Vec::new() };
                let blocks = core.drain(batch.time);
                if let Some(rates) = rates.as_mut()
                    && let Some(shared) = ctx.upgrade().and_then(|c| c.run_shared())
                {
                    if let Some(rate) = rates.observe(&shared) {
                        core.limiter.set_adaptive(rate);
                    }
                    let records: usize = blocks.iter().map(|b| (core.weigh)(b).records).sum();
                    rates.cut(batch.time, records as u64);
                }
                partition_msgs(blocks)
            });
            spread(c, stream)
        });
        (runner, items)
    }
}

#[cfg(test)]
mod tests {
    use super::PidRateEstimator;

    #[test]
    fn pid_rate_follows_the_processing_rate_and_backs_off_under_delay() {
        let mut pid = PidRateEstimator::new(1000);
        // First batch: 10k records in 1 s sets the starting point only.
        assert_eq!(pid.compute(1000, 10_000, 1000.0, 0.0), None);
        // Then the job processes 5k records/s: the rate drops to the processing rate.
        let rate = pid.compute(2000, 10_000, 2000.0, 0.0).unwrap();
        assert!((rate - 5000.0).abs() < 1.0, "{rate}");
        // Same rate but batches wait 1 s to start: the rate drops further, by the backlog.
        let rate = pid.compute(3000, 5000, 1000.0, 1000.0).unwrap();
        assert!((rate - 4000.0).abs() < 1.0, "{rate}");
        // Never below the minimum; stale or empty batches change nothing.
        assert_eq!(pid.compute(4000, 1, 100_000.0, 100_000.0), Some(100.0));
        assert_eq!(pid.compute(4000, 10, 1.0, 0.0), None);
        assert_eq!(pid.compute(5000, 0, 1.0, 0.0), None);
    }
}
