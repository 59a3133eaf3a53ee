//! `StreamingContext`: configuration, lifecycle (start, await, stop) and the registry of the
//! plan's outputs and receivers.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use ember_engine::{BuildPlan, Clock, ClusterConfig, Compiler, Data, EStream, JoinError, LaunchError, RunConfig, RunShared, Runtime};

use crate::batch::Batch;
use crate::dstream::DStream;
use crate::error::{Error, Result};
use crate::plan::{NodeSpec, Partitioning, Plan};
use crate::time::{Duration, Time};

/// A receiver's driver-side half: started with the context (on the process that hosts worker 0)
/// and stopped before the last batch is cut.
pub(crate) trait ReceiverHost: Send + Sync {
    /// Opens the receiver's write-ahead log in `checkpoint_dir`, before it starts: for a run
    /// recovered from checkpoint `after`, with the blocks to replay.
    fn open_wal(&self, plan: &crate::plan::CompiledPlan, checkpoint_dir: &crate::storage::Location, after: Option<u64>) -> Result<()>;
    /// Starts the receiver's thread.
    fn start(&self, ctx: Arc<ContextInner>) -> Result<JoinHandle<()>>;
    /// Asks the receiver to stop; its thread exits soon after.
    fn request_stop(&self);
    /// The receiver's state now.
    fn info(&self) -> crate::sources::ReceiverInfo;
}

const INITIALIZED: u8 = 0;
const ACTIVE: u8 = 1;
const STOPPED: u8 = 2;

/// Where a context is in its life (Spark's `StreamingContextState`), from
/// [`StreamingContext::get_state`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamingContextState {
    /// Created, not started yet: streams and outputs can still be added.
    Initialized,
    /// Started and not stopped.
    Active,
    /// Stopped (by `stop`, or by the loss of a process of its cluster); it cannot be restarted.
    Stopped,
}

/// Settings of a context, fixed at construction.
#[derive(Clone, Debug)]
struct Settings {
    batch_interval: Duration,
    workers: usize,
    cluster: Option<ClusterConfig>,
    clock: Clock,
    max_batches_in_flight: u64,
    key_groups: u32,
    control_address: Option<String>,
    cluster_start_timeout: std::time::Duration,
    /// The cluster's secret, when set on the builder (else from the environment at start).
    cluster_secret: Option<ember_engine::auth::ClusterSecret>,
    /// TLS between the processes, when set on the builder (else from the environment at start).
    cluster_tls: Option<bool>,
    /// How long a graceful stop may wait; `None` = ten batch intervals.
    graceful_stop_timeout: Option<std::time::Duration>,
    /// Where the web UI listens (host, port), if it does.
    ui: Option<(String, u16)>,
    receivers: ReceiverSettings,
    /// Where stateful operators write their checkpoint snapshots (the fault-tolerance layer).
    snapshot_sink: Option<ember_engine::state::SnapshotSink>,
    /// Operator state to restore before the first batch.
    restore: Option<ember_engine::state::RestoreImage>,
    /// The batch grid's zero for a run with no checkpoint to resume (`zero_time`).
    zero_ms: Option<u64>,
}

/// How receivers run (Spark's `spark.streaming.receiver.*` and `backpressure.*` settings).
#[derive(Clone, Debug)]
pub(crate) struct ReceiverSettings {
    /// Most records per second each receiver stores; `None` = unlimited.
    pub(crate) max_rate: Option<u64>,
    /// Whether a controller adapts each receiver's rate to the processing rate.
    pub(crate) backpressure: bool,
    /// The rate receivers start at under backpressure, before the first estimate.
    pub(crate) initial_rate: Option<u64>,
    /// Records a receiver may hold before `store` blocks.
    pub(crate) buffer_records: usize,
    /// Bytes a receiver may hold before `store` blocks.
    pub(crate) buffer_bytes: usize,
    /// Failures in a row (nothing stored in between) that stop a receiver; 0 = never.
    pub(crate) max_failed_restarts: u32,
    /// The longest line a text source takes, in bytes.
    pub(crate) max_line_bytes: usize,
    /// What a text source does with a longer line.
    pub(crate) long_lines: crate::sources::LongLinePolicy,
    /// Pause before a receiver that asked to restart (or failed) is started again.
    pub(crate) restart_delay: std::time::Duration,
    /// Whether receivers write a write-ahead log.
    pub(crate) write_ahead_log: bool,
}

impl Default for ReceiverSettings {
    fn default() -> Self {
        ReceiverSettings {
            max_rate: None,
            backpressure: false,
            initial_rate: None,
            buffer_records: usize::MAX,
            buffer_bytes: DEFAULT_RECEIVER_BUFFER_BYTES,
            max_failed_restarts: DEFAULT_MAX_FAILED_RESTARTS,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            long_lines: crate::sources::LongLinePolicy::Skip,
            restart_delay: std::time::Duration::from_secs(2),
            write_ahead_log: false,
        }
    }
}

/// Bytes a receiver may hold before `store` blocks, by default: what 1 s batches of about
/// 40 million words a second take as text.
pub const DEFAULT_RECEIVER_BUFFER_BYTES: usize = 256 << 20;
/// The longest line a text source takes, by default.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 << 20;
/// Failures in a row that stop a receiver, by default.
pub const DEFAULT_MAX_FAILED_RESTARTS: u32 = 10;

struct Running {
    runtime: Runtime,
    receivers: Vec<JoinHandle<()>>,
}

pub(crate) struct ContextInner {
    settings: Settings,
    plan: Arc<Plan>,
    phase: AtomicU8,
    /// Set when the first `stop` has finished: workers joined, checkpoints committed,
    /// listeners told. `await_termination` waits for it, so that a context it reports stopped
    /// has no thread still writing (a restart on the same checkpoint is safe).
    stop_done: std::sync::atomic::AtomicBool,
    receivers: Mutex<Vec<Arc<dyn ReceiverHost>>>,
    running: Mutex<Option<Running>>,
    shared: Mutex<Option<Arc<RunShared>>>,
    source_errors: Mutex<Vec<Error>>,
    reported_failures: AtomicUsize,
    cluster_failure_reported: std::sync::atomic::AtomicBool,
    remember: Mutex<Option<Duration>>,
    /// Where checkpoints go (`ssc.checkpoint(dir)`), if anywhere.
    checkpoint_dir: Mutex<Option<crate::storage::Location>>,
    /// The checkpoint this context resumes from (`get_or_create`).
    recovered: Mutex<Option<crate::checkpoint::Recovered>>,
    /// Writes checkpoints while the context runs.
    checkpoint_writer: Mutex<Option<crate::checkpoint::CheckpointWriter>>,
    /// Each text source's bad-line counts.
    bad_records: Mutex<Vec<Arc<crate::sources::BadRecords>>>,
    /// The streaming listeners and the queue of events to them.
    pub(crate) bus: Arc<crate::listener::ListenerBus>,
    /// The web UI, while it runs.
    ui: Mutex<Option<crate::ui::UiServer>>,
}

pub(crate) use crate::lock::lock;

/// The contexts started in this process, oldest first (for `get_active`).
static STARTED: Mutex<Vec<std::sync::Weak<ContextInner>>> = Mutex::new(Vec::new());

impl ContextInner {
    /// Each receiver's state.
    pub(crate) fn receiver_infos(&self) -> Vec<crate::sources::ReceiverInfo> {
        lock(&self.receivers).iter().map(|r| r.info()).collect()
    }

    /// Each text source's bad-line counts.
    pub(crate) fn bad_record_counts(&self) -> Vec<crate::sources::BadRecordCounts> {
        lock(&self.bad_records).iter().map(|b| b.counts()).collect()
    }

    /// Whether this process runs the receivers (it hosts worker 0).
    pub(crate) fn hosts_receivers(&self) -> bool {
        self.settings.cluster.as_ref().is_none_or(|c| c.process == 0)
    }

    /// Registers a text source's bad-line counts.
    pub(crate) fn add_bad_records(&self, name: &str) -> Arc<crate::sources::BadRecords> {
        let bad = Arc::new(crate::sources::BadRecords::new(name));
        lock(&self.bad_records).push(Arc::clone(&bad));
        bad
    }

    /// Registers a receiver; returns its index (receivers are spread over the local workers
    /// by index).
    pub(crate) fn add_receiver(&self, receiver: Arc<dyn ReceiverHost>) -> usize {
        let mut receivers = lock(&self.receivers);
        receivers.push(receiver);
        receivers.len() - 1
    }

    /// Receiver settings of this context.
    pub(crate) fn receiver_settings(&self) -> &ReceiverSettings {
        &self.settings.receivers
    }

    /// The oldest committed checkpoint kept (batch time), if any.
    pub(crate) fn oldest_checkpoint(&self) -> Option<u64> {
        crate::checkpoint::oldest_kept(&self.checkpoint_dir()?)
    }

    /// The checkpoint directory, if checkpoints are on.
    pub(crate) fn checkpoint_dir(&self) -> Option<crate::storage::Location> {
        lock(&self.checkpoint_dir).clone()
    }

    /// The running engine's shared state, once started.
    pub(crate) fn run_shared(&self) -> Option<Arc<RunShared>> {
        lock(&self.shared).clone()
    }

    /// Records an error of an input source; `await_termination` reports it.
    pub(crate) fn report_source_error(&self, error: Error) {
        tracing::error!(%error, "An input source reported an error.");
        lock(&self.source_errors).push(error);
    }

    /// Stops the workers and receivers if they run (see [`StreamingContext::stop`]).
    fn stop(&self, graceful: bool) -> Result<()> {
        let previous = self.phase.swap(STOPPED, Ordering::AcqRel);
        self.plan.mark_stopped();
        if previous != ACTIVE {
            if previous == INITIALIZED {
                self.stop_done.store(true, Ordering::Release);
            } else if !on_an_engine_thread() {
                // Stopped, or being stopped by another caller: return when that stop has
                // finished, as the first caller does. An engine thread (an output or a
                // listener calling stop) does not wait: the first stop may be joining it.
                while !self.stop_done.load(Ordering::Acquire) {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            return Ok(());
        }
        let _done = StopDone(&self.stop_done);
        let Some(mut running) = lock(&self.running).take() else {
            // `start` failed before the workers ran: end the checkpoint writer it started.
            if let Some(writer) = lock(&self.checkpoint_writer).take() {
                writer.finish();
            }
            return Ok(());
        };
        let timeout = self.graceful_stop_timeout();
        let deadline = Instant::now() + timeout;
        for receiver in lock(&self.receivers).iter() {
            receiver.request_stop();
        }
        let mut abandoned = Vec::new();
        for handle in running.receivers.drain(..) {
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            if !handle.is_finished() {
                // Detached: it ends when its blocking call returns; what it stores then is
                // in no batch.
                abandoned.push(handle.thread().name().unwrap_or("ember-receiver").to_owned());
            } else if handle.join().is_err() {
                tracing::error!("A receiver thread panicked while stopping.");
            }
        }
        if !abandoned.is_empty() {
            tracing::warn!(
                timeout_ms = timeout.as_millis() as u64,
                "The stop did not wait for receivers still blocked after the stop timeout: {}; what they store from now on is in no batch.",
                abandoned.join(", ")
            );
        }
        running.runtime.request_stop(!graceful);
        // A graceful stop that outlives its timeout drops the batches still in flight.
        let (finished, watch) = std::sync::mpsc::channel::<()>();
        if graceful {
            let shared = Arc::clone(running.runtime.shared());
            let remaining = deadline.saturating_duration_since(Instant::now());
            let spawned = std::thread::Builder::new().name("ember-stop-timeout".into()).spawn(move || {
                if watch.recv_timeout(remaining) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                    tracing::warn!(
                        timeout_ms = timeout.as_millis() as u64,
                        "The graceful stop timed out; the batches still in flight were dropped and their outputs did not run."
                    );
                    shared.request_stop(true);
                }
            });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "Cannot start the stop timeout's thread; the stop waits for every batch in flight.");
            }
        }
        // What the workers completed is committed before `stop` returns (in a cluster, before
        // this process leaves the control plane that carries the checkpoint reports).
        let writer = lock(&self.checkpoint_writer).take();
        let joined = running
            .runtime
            .join_then(|| {
                if let Some(writer) = writer {
                    writer.finish();
                }
            })
            .map_err(|e| match e {
                JoinError::Cluster(lost) => Error::Cluster(lost),
                JoinError::Worker(message) => Error::Internal(format!("a worker thread failed: {message}")),
            });
        drop(finished);
        for bad in lock(&self.bad_records).iter() {
            bad.flush();
        }
        // Listeners get every event of the run before `stop` returns (a stuck one is left).
        self.bus.stop(std::time::Duration::from_secs(10));
        if let Some(ui) = lock(&self.ui).take() {
            ui.stop();
        }
        joined?;
        tracing::info!(graceful, "StreamingContext stopped.");
        Ok(())
    }

    /// How long a graceful stop may wait: the setting, or ten batch intervals (at least 10 s,
    /// so that millisecond batches still stop gracefully).
    fn graceful_stop_timeout(&self) -> std::time::Duration {
        self.settings.graceful_stop_timeout.unwrap_or_else(|| {
            let ten = std::time::Duration::from_millis(self.settings.batch_interval.as_millis().saturating_mul(10));
            ten.max(std::time::Duration::from_secs(10))
        })
    }
}

/// Whether the calling thread is one ember or timely started (named `ember-*` or `timely:*`).
fn on_an_engine_thread() -> bool {
    std::thread::current()
        .name()
        .is_some_and(|name| name.starts_with("ember") || name.starts_with("timely"))
}

/// Marks the first stop as finished when it returns, by any path.
struct StopDone<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopDone<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

impl Drop for ContextInner {
    /// A started context dropped without `stop` stops its workers and receivers (at once, not
    /// gracefully), so no thread outlives it.
    fn drop(&mut self) {
        if self.phase.load(Ordering::Acquire) == ACTIVE {
            tracing::warn!("A started StreamingContext was dropped without stop; stopping it now.");
            if let Err(error) = self.stop(false) {
                tracing::error!(%error, "Stopping a dropped StreamingContext failed.");
            }
        }
    }
}

/// The entry point of an ember program (Spark's `StreamingContext`): creates input streams,
/// and starts, awaits and stops the computation.
///
/// # Examples
///
/// ```
/// use ember::prelude::*;
///
/// # fn main() -> ember::Result<()> {
/// let clock = ManualClock::new();
/// let ssc = StreamingContext::builder(milliseconds(100)).manual_clock(&clock).build()?;
/// let queue = BatchQueue::new();
/// queue.push(vec![1, 2, 3]);
/// let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
/// let sink = seen.clone();
/// ssc.queue_stream(&queue, true, None).count().foreach_rdd(move |b, _| sink.lock().unwrap().extend(b.collect()))?;
/// ssc.start()?;
/// clock.advance(milliseconds(200));
/// ssc.await_batch(Time::from_millis(200), seconds(10))?;
/// ssc.stop(true)?;
/// assert_eq!(*seen.lock().unwrap(), vec![3, 0]);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct StreamingContext {
    inner: Arc<ContextInner>,
}

impl std::fmt::Debug for StreamingContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingContext")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// Configures a [`StreamingContext`].
#[derive(Clone, Debug)]
pub struct StreamingContextBuilder {
    settings: Settings,
}

impl StreamingContextBuilder {
    /// Number of worker threads in this process (default 1).
    pub fn workers(mut self, n: usize) -> Self {
        self.settings.workers = n;
        self
    }

    /// Joins a cluster as process `process` of `addresses.len()` (each `host:port`), as timely's
    /// `-n/-p/-h` do. Every process runs the same program; receivers and outputs that gather a
    /// batch run on process 0.
    pub fn cluster(mut self, process: usize, addresses: Vec<String>) -> Self {
        self.settings.cluster = Some(ClusterConfig::new(process, addresses));
        self
    }

    /// Where process 0 of a cluster listens for the other processes' control connections
    /// (`host:port`). Before timely connects, the processes meet there: process 0 decides the
    /// zero time and checks that every process runs the same plan; afterwards a stop on any
    /// process reaches all of them, and the loss of a process is noticed by the others within
    /// seconds. Default: process 0's host, its port plus 1000 (minus 1000 above 64535).
    pub fn cluster_control_address(mut self, address: impl Into<String>) -> Self {
        self.settings.control_address = Some(address.into());
        self
    }

    /// The secret every process of the cluster must prove on each control and data connection
    /// (an HMAC challenge and response, see [`ember_engine::auth`]): a process without it can
    /// neither join, nor pose as a peer, nor stop the job, and a stranger's connection is
    /// closed and logged with its address. Without this call, `start` takes the secret from
    /// `EMBER_CLUSTER_SECRET` (its text, at least 16 bytes) or from the file
    /// `EMBER_CLUSTER_SECRET_FILE` names; without either, connections are not authenticated
    /// (a warning says so when a process is not on this host's loopback).
    pub fn cluster_secret(mut self, secret: ember_engine::auth::ClusterSecret) -> Self {
        self.settings.cluster_secret = Some(secret);
        self
    }

    /// TLS 1.3 on every control and data connection between the processes of the cluster
    /// (needs the `tls` feature of this crate, which the `ember` command and the Python package
    /// have, and a cluster secret). Each process makes a certificate of its own when it
    /// starts; the cluster secret's proofs are bound to each TLS session, so there is no
    /// certificate authority to set up. Without this call, `start` turns TLS on when
    /// `EMBER_CLUSTER_TLS` is `1`. Every process must agree.
    pub fn cluster_tls(mut self, on: bool) -> Self {
        self.settings.cluster_tls = Some(on);
        self
    }

    /// How long the processes of a cluster wait for each other at start (default 60 s); then
    /// `start` fails naming the processes that did not come.
    pub fn cluster_start_timeout(mut self, timeout: Duration) -> Self {
        self.settings.cluster_start_timeout = timeout.to_std();
        self
    }

    /// Joins the cluster the environment describes, as `ember cluster` and
    /// `python -m ember.launch` describe it: `EMBER_CLUSTER_PROCESS` (this process's index),
    /// `EMBER_CLUSTER_ADDRESSES` (every process's `host:port`, comma-separated) and, optionally,
    /// `EMBER_CLUSTER_CONTROL` (process 0's control address); the secret comes from
    /// `EMBER_CLUSTER_SECRET` at start. Without `EMBER_CLUSTER_PROCESS` nothing changes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming the variable that is malformed or missing.
    pub fn cluster_from_env(mut self) -> Result<Self> {
        let bad = |message: String| Error::InvalidArgument {
            operation: "StreamingContextBuilder::cluster_from_env",
            message,
        };
        let Ok(process) = std::env::var("EMBER_CLUSTER_PROCESS") else {
            return Ok(self);
        };
        let process: usize = process
            .trim()
            .parse()
            .map_err(|_| bad(format!("EMBER_CLUSTER_PROCESS is not a process index: {process:?}")))?;
        let addresses: Vec<String> = std::env::var("EMBER_CLUSTER_ADDRESSES")
            .map_err(|_| bad("EMBER_CLUSTER_PROCESS is set but EMBER_CLUSTER_ADDRESSES is not".into()))?
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        if process >= addresses.len() {
            return Err(bad(format!(
                "EMBER_CLUSTER_PROCESS is {process} but EMBER_CLUSTER_ADDRESSES has {} addresses",
                addresses.len()
            )));
        }
        if addresses.len() > 1 {
            self.settings.cluster = Some(ClusterConfig::new(process, addresses));
            if let Ok(control) = std::env::var("EMBER_CLUSTER_CONTROL") {
                self.settings.control_address = Some(control);
            }
        }
        Ok(self)
    }

    /// Reads timely-style arguments: `-w N` worker threads, `-n N` processes, `-p I` this
    /// process's index, `-h FILE` a file of `host:port` lines (default: localhost ports from
    /// 2101). Unknown arguments are ignored. Without `-n`, the cluster comes from the
    /// environment (see [`StreamingContextBuilder::cluster_from_env`]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a malformed value or an unreadable host file.
    pub fn from_args<I: IntoIterator<Item = String>>(mut self, args: I) -> Result<Self> {
        let bad = |message: String| Error::InvalidArgument {
            operation: "StreamingContextBuilder::from_args",
            message,
        };
        let (mut processes, mut process, mut hostfile) = (1usize, 0usize, None::<String>);
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().ok_or_else(|| bad(format!("{name} needs a value")));
            match arg.as_str() {
                "-w" | "--threads" => self.settings.workers = value("-w")?.parse().map_err(|e| bad(format!("-w: {e}")))?,
                "-n" | "--processes" => processes = value("-n")?.parse().map_err(|e| bad(format!("-n: {e}")))?,
                "-p" | "--process" => process = value("-p")?.parse().map_err(|e| bad(format!("-p: {e}")))?,
                "-h" | "--hostfile" => hostfile = Some(value("-h")?),
                _ => {}
            }
        }
        if processes > 1 {
            let addresses = match hostfile {
                Some(path) => std::fs::read_to_string(&path)
                    .map_err(|e| bad(format!("cannot read host file {path}: {e}")))?
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect(),
                None => (0..processes).map(|i| format!("localhost:{}", 2101 + i)).collect::<Vec<_>>(),
            };
            if addresses.len() < processes || process >= processes {
                return Err(bad(format!("process {process} of {processes} with {} addresses", addresses.len())));
            }
            self.settings.cluster = Some(ClusterConfig::new(process, addresses.into_iter().take(processes).collect()));
            return Ok(self);
        }
        self.cluster_from_env()
    }

    /// Uses `clock` to decide when batches are due.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.settings.clock = clock;
        self
    }

    /// Uses a manual clock that the caller advances (tests).
    pub fn manual_clock(self, clock: &crate::ManualClock) -> Self {
        self.clock(Clock::Manual(clock.clone()))
    }

    /// Cuts batches as fast as the engine absorbs them (replayable input, benchmarks,
    /// backfills). Batch times stay `zero + k * interval`.
    pub fn no_wait(self) -> Self {
        self.clock(Clock::NoWait)
    }

    /// Puts the batches at `zero + k * interval` (Spark's `zeroTime`) when no checkpoint is
    /// resumed, instead of on the interval after the start. For a program that keeps its own
    /// record of batch times across restarts (ember-sql's commit log): a run killed before its
    /// first checkpoint is restarted on the same grid, so that the input its sources logged for
    /// each batch time is replayed at that time. Batches from `zero` to the start run first.
    pub fn zero_time(mut self, zero: Time) -> Self {
        self.settings.zero_ms = Some(zero.milliseconds());
        self
    }

    /// How many batches sources may run ahead of the batches handed to the outputs (default 2);
    /// outputs run on their own thread, and sources also stay within twice this many batches
    /// of the slowest output's finished batches.
    pub fn max_batches_in_flight(mut self, n: u64) -> Self {
        self.settings.max_batches_in_flight = n.max(1);
        self
    }

    /// Most records per second each receiver may store (Spark's
    /// `spark.streaming.receiver.maxRate`); `store` waits to keep under it. Default: unlimited.
    pub fn receiver_max_rate(mut self, records_per_second: u64) -> Self {
        self.settings.receivers.max_rate = Some(records_per_second.max(1));
        self
    }

    /// Adapts each receiver's rate to how fast batches are processed (Spark's
    /// `spark.streaming.backpressure.enabled`): after every batch a PID controller estimates
    /// the rate the job sustains, and receivers store no faster than that (nor than
    /// [`StreamingContextBuilder::receiver_max_rate`]). Default: off.
    pub fn backpressure(mut self, enabled: bool) -> Self {
        self.settings.receivers.backpressure = enabled;
        self
    }

    /// The rate receivers keep under backpressure until the first batch has been measured
    /// (Spark's `spark.streaming.backpressure.initialRate`). Default: unlimited.
    pub fn backpressure_initial_rate(mut self, records_per_second: u64) -> Self {
        self.settings.receivers.initial_rate = Some(records_per_second.max(1));
        self
    }

    /// How many records each receiver may hold before its next batch is cut; when full,
    /// `store` blocks (a socket receiver then stops reading, and TCP slows the sender).
    /// Default: no bound in records, only the byte bound
    /// ([`StreamingContextBuilder::receiver_buffer_bytes`]). ember's own bound: Spark's
    /// receivers store blocks without limit.
    pub fn receiver_buffer_records(mut self, records: usize) -> Self {
        self.settings.receivers.buffer_records = records.max(1);
        self
    }

    /// Writes what receivers store to a write-ahead log in the checkpoint directory before
    /// `store_many` returns (Spark's `spark.streaming.receiver.writeAheadLog.enable`), so that a
    /// recovery from a checkpoint replays the records received since: the batches cut before
    /// the crash get exactly their records again. Needs a checkpoint directory. A single-record
    /// `store` is synced with the next block or batch cut, as in Spark, where only the
    /// multi-record `store` is reliable. Without the log, what a receiver held at a crash is
    /// lost, as in Spark. Default: off.
    pub fn write_ahead_log(mut self, enabled: bool) -> Self {
        self.settings.receivers.write_ahead_log = enabled;
        self
    }

    /// How many bytes each receiver may hold before its next batch is cut; when full, `store`
    /// blocks, as with [`StreamingContextBuilder::receiver_buffer_records`]. Text receivers
    /// count the bytes of their lines; a user's receiver counts each record's inline size
    /// (`size_of`), not what it owns on the heap. A block stored while the buffer has room is
    /// taken whole, so the buffer can pass the bound by one block. The buffer holds what arrives
    /// within one batch interval, so the bound also caps the input rate at about
    /// `bytes / batch interval`. Default 256 MiB
    /// ([`DEFAULT_RECEIVER_BUFFER_BYTES`]). ember's own bound.
    pub fn receiver_buffer_bytes(mut self, bytes: usize) -> Self {
        self.settings.receivers.buffer_bytes = bytes.max(1);
        self
    }

    /// How many failures in a row stop a receiver for good: a run of the receiver that ends
    /// in a restart request or a panic without having stored anything counts as one. The
    /// stream then fails with the last failure's reason, which `await_termination` returns;
    /// the job goes on with empty batches from that stream. 0 restarts forever, as Spark does.
    /// Default 10 ([`DEFAULT_MAX_FAILED_RESTARTS`]): with the default restart delay, a socket
    /// server that does not answer for about 20 s.
    pub fn receiver_max_failed_restarts(mut self, failures: u32) -> Self {
        self.settings.receivers.max_failed_restarts = failures;
        self
    }

    /// The longest line, in bytes without its newline, that a text source
    /// (`socket_text_stream`, `socket_stream`) takes; a longer line is dropped as it arrives,
    /// never held whole, and handled by [`StreamingContextBuilder::long_line_policy`]. Spark
    /// has no limit. Default 64 MiB ([`DEFAULT_MAX_LINE_BYTES`]).
    pub fn max_line_bytes(mut self, bytes: usize) -> Self {
        self.settings.receivers.max_line_bytes = bytes.max(1);
        self
    }

    /// What a text source does with a line longer than
    /// [`StreamingContextBuilder::max_line_bytes`]: skip it with a counted, rate-limited
    /// warning (the default), or stop the source with an error.
    pub fn long_line_policy(mut self, policy: crate::sources::LongLinePolicy) -> Self {
        self.settings.receivers.long_lines = policy;
        self
    }

    /// How long `stop(true)` may wait for receivers to stop and batches in flight to finish
    /// (Spark's `spark.streaming.gracefulStopTimeout`); after it, the stop goes on without
    /// waiting and logs what it abandoned. Default: ten batch intervals as in Spark, but at
    /// least 10 s (so that millisecond batches still stop gracefully).
    pub fn graceful_stop_timeout(mut self, timeout: Duration) -> Self {
        self.settings.graceful_stop_timeout = Some(timeout.to_std());
        self
    }

    /// Serves the job's web UI, metrics and REST API on `port` (0: any free port, see
    /// [`StreamingContext::ui_address`]) from `start` to `stop`: Spark's Streaming tab. Off by
    /// default; on 127.0.0.1 unless [`ui_host`](Self::ui_host) says otherwise. See the
    /// [`ui`](crate::ui) module for what it serves.
    pub fn ui_port(mut self, port: u16) -> Self {
        let host = self.settings.ui.take().map_or_else(|| "127.0.0.1".to_owned(), |(host, _)| host);
        self.settings.ui = Some((host, port));
        self
    }

    /// The address the web UI listens on (default 127.0.0.1, this machine only); `0.0.0.0`
    /// serves every network the machine is on. Only with [`ui_port`](Self::ui_port).
    pub fn ui_host(mut self, host: &str) -> Self {
        let port = self.settings.ui.take().map_or(0, |(_, port)| port);
        self.settings.ui = Some((host.to_owned(), port));
        self
    }

    /// Pause before a receiver that failed or asked to restart is started again (Spark's
    /// `spark.streaming.receiverRestartDelay`). Default 2 s.
    pub fn receiver_restart_delay(mut self, delay: Duration) -> Self {
        self.settings.receivers.restart_delay = delay.to_std();
        self
    }

    /// How many key groups keyed state is spread over (Flink's max parallelism; default
    /// 256). A key's group comes from a stable hash of the key, so it is the same in every
    /// process and run; the groups are spread over the shuffle partitions, and those over the
    /// workers. Checkpoints can only be restored with the same number of key groups.
    pub fn key_groups(mut self, groups: u32) -> Self {
        self.settings.key_groups = groups.max(1);
        self
    }

    /// Hands every stateful operator's snapshot at its checkpoint batches to `sink`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn snapshot_sink(mut self, sink: ember_engine::state::SnapshotSink) -> Self {
        self.settings.snapshot_sink = Some(sink);
        self
    }

    /// Restores operator state from `image` before the first batch.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn restore(mut self, image: ember_engine::state::RestoreImage) -> Self {
        self.settings.restore = Some(image);
        self
    }

    /// Creates the context.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the batch interval is zero or there are no workers.
    pub fn build(self) -> Result<StreamingContext> {
        if self.settings.batch_interval.as_millis() == 0 {
            return Err(Error::InvalidArgument {
                operation: "StreamingContext::new",
                message: "the batch interval must be at least 1 ms".into(),
            });
        }
        if self.settings.workers == 0 {
            return Err(Error::InvalidArgument {
                operation: "StreamingContext::builder",
                message: "there must be at least one worker".into(),
            });
        }
        Ok(StreamingContext {
            inner: Arc::new(ContextInner {
                settings: self.settings,
                plan: Plan::new(),
                phase: AtomicU8::new(INITIALIZED),
                stop_done: std::sync::atomic::AtomicBool::new(false),
                receivers: Mutex::new(Vec::new()),
                running: Mutex::new(None),
                shared: Mutex::new(None),
                source_errors: Mutex::new(Vec::new()),
                reported_failures: AtomicUsize::new(0),
                cluster_failure_reported: std::sync::atomic::AtomicBool::new(false),
                remember: Mutex::new(None),
                checkpoint_dir: Mutex::new(None),
                recovered: Mutex::new(None),
                checkpoint_writer: Mutex::new(None),
                bad_records: Mutex::new(Vec::new()),
                bus: Arc::new(crate::listener::ListenerBus::new()),
                ui: Mutex::new(None),
            }),
        })
    }
}

impl StreamingContext {
    /// A context with batches every `batch_interval`, one worker thread and the system clock.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the interval is zero.
    pub fn new(batch_interval: Duration) -> Result<Self> {
        Self::builder(batch_interval).build()
    }

    /// A builder for a context with batches every `batch_interval`.
    pub fn builder(batch_interval: Duration) -> StreamingContextBuilder {
        StreamingContextBuilder {
            settings: Settings {
                batch_interval,
                workers: 1,
                cluster: None,
                clock: Clock::System,
                max_batches_in_flight: 2,
                key_groups: ember_engine::keys::DEFAULT_KEY_GROUPS,
                control_address: None,
                cluster_start_timeout: std::time::Duration::from_secs(60),
                cluster_secret: None,
                cluster_tls: None,
                graceful_stop_timeout: None,
                ui: None,
                receivers: ReceiverSettings::default(),
                snapshot_sink: None,
                restore: None,
                zero_ms: None,
            },
        }
    }

    pub(crate) fn inner(&self) -> &Arc<ContextInner> {
        &self.inner
    }

    /// Each text source's bad lines so far: repaired (invalid UTF-8 replaced), rejected by the
    /// decoder, or over the line limit. Warnings about them are rate-limited (the first ten
    /// of each source one by one, then a summary at most every 10 s and at the stop); these
    /// counts are exact.
    pub fn bad_records(&self) -> Vec<crate::sources::BadRecordCounts> {
        self.inner.bad_record_counts()
    }

    /// Each receiver's state (Spark's `ReceiverInfo`): whether it is receiving, records
    /// stored, restarts and the last failure.
    pub fn receivers(&self) -> Vec<crate::sources::ReceiverInfo> {
        self.inner.receiver_infos()
    }

    /// Where the web UI listens, while it runs (see
    /// [`StreamingContextBuilder::ui_port`]).
    pub fn ui_address(&self) -> Option<std::net::SocketAddr> {
        lock(&self.inner.ui).as_ref().map(crate::ui::UiServer::address)
    }

    /// The plan as text, one line per operation with its id, partitioning and slide: outputs
    /// first, each followed by the streams it reads, indented (Spark's `toDebugString` of the
    /// DStream graph). A stream read by several operations is listed once, then marked
    /// "(see above)". From start on, a narrow operation that runs inside the operation reading
    /// it (one pass over each partition, as Spark pipelines a stage) is marked "fused into its
    /// consumer".
    pub fn explain(&self) -> String {
        self.inner.plan.explain()
    }

    /// The batch interval.
    pub fn batch_interval(&self) -> Duration {
        self.inner.settings.batch_interval
    }

    /// Turns on checkpoints (Spark's `ssc.checkpoint(directory)`): stateful operators write
    /// their state to `directory` at their checkpoint intervals, and
    /// [`StreamingContext::get_or_create`] on the same directory resumes from the last
    /// checkpoint after a crash or a stop. The directory is a local path, a `file://` URL, or
    /// with the `s3` feature a prefix of an S3 bucket, `s3://bucket/prefix` (settings from the
    /// environment, see [`storage`](crate::storage)); a local one is created if missing. In a
    /// cluster it must be shared by all processes, as Spark requires a reliable shared file
    /// system: a bucket is, a local path only on a shared file system.
    ///
    /// # Errors
    ///
    /// [`Error::IllegalState`] after start; [`Error::InvalidArgument`] for another URL scheme
    /// (`hdfs://` is not supported yet); [`Error::Io`] when the directory cannot be created or
    /// the bucket does not answer.
    pub fn checkpoint(&self, directory: impl AsRef<std::path::Path>) -> Result<()> {
        self.checkpoint_at(checkpoint_path(directory.as_ref())?)
    }

    fn checkpoint_at(&self, dir: crate::storage::Location) -> Result<()> {
        self.inner.plan.check_open("set the checkpoint directory")?;
        dir.prepare().map_err(|source| Error::Io {
            context: "cannot prepare the checkpoint directory".into(),
            source,
        })?;
        *lock(&self.inner.checkpoint_dir) = Some(dir);
        Ok(())
    }

    /// The context recovered from the last checkpoint in `directory`, or a new one (Spark's
    /// `StreamingContext.getOrCreate(checkpointPath, creatingFunc)`).
    ///
    /// `build` creates the context and its whole plan in both cases: closures cannot be stored,
    /// so ember rebuilds the plan from the program and matches it with the checkpoint by
    /// operator id (see [`DStream::name`](crate::DStream::name)). With no checkpoint in
    /// `directory`, the context starts fresh and checkpoints there. With one, its state is
    /// restored at start and batches go on from the one after the checkpoint, on the original
    /// batch grid; batches since then run again (their outputs at least once, as in Spark), and
    /// with the system clock the batches missed while the job was down are run at once. A
    /// damaged checkpoint (bad checksum, truncated file) is refused with a warning naming the
    /// file and the one before it is used.
    ///
    /// # Errors
    ///
    /// What `build` returns; [`Error::Checkpoint`] when checkpoints exist but none is intact,
    /// or the plan does not fit the checkpoint (another batch interval or number of key groups;
    /// at start: a stateful operator added, removed or changed, or a queue stream, whose
    /// batches cannot be replayed); [`Error::Io`] when the directory cannot be read.
    pub fn get_or_create<F>(directory: impl AsRef<std::path::Path>, build: F) -> Result<StreamingContext>
    where
        F: FnOnce() -> Result<StreamingContext>,
    {
        let dir = checkpoint_path(directory.as_ref())?;
        let recovered = crate::checkpoint::recover(&dir)?;
        let ssc = build()?;
        ssc.checkpoint_at(dir.clone())?;
        let Some(recovered) = recovered else {
            return Ok(ssc);
        };
        let manifest = &recovered.manifest;
        let interval = ssc.batch_interval().as_millis();
        if manifest.batch_interval_ms != interval {
            return Err(Error::Checkpoint(format!(
                "the checkpoint in {} was written with a batch interval of {} ms, the program now has {interval} ms",
                dir, manifest.batch_interval_ms
            )));
        }
        if manifest.key_groups != ssc.inner.settings.key_groups {
            return Err(Error::Checkpoint(format!(
                "the checkpoint in {} has {} key groups, the program now has {}",
                dir, manifest.key_groups, ssc.inner.settings.key_groups
            )));
        }
        tracing::info!(
            checkpoint_ms = manifest.time_ms,
            directory = %dir,
            "Recovering from a checkpoint: state restored, batches after it run again. \
             Data a receiver had not yet handed to a batch at the crash is lost unless the write-ahead log is on."
        );
        *lock(&ssc.inner.recovered) = Some(recovered);
        Ok(ssc)
    }

    /// Worker threads in this process.
    pub(crate) fn workers(&self) -> usize {
        self.inner.settings.workers
    }

    /// Keeps every stream's generated batches for `duration` after newer ones (Spark's
    /// `remember`), so that [`DStream::slice`](crate::DStream::slice) can return them. Without
    /// it ember keeps no batch beyond what windows need, and `slice` fails.
    ///
    /// Spark keeps lineage and recomputes a sliced batch; ember keeps the batches themselves,
    /// gathered on worker 0, and only for the streams the program still holds a handle to when
    /// it calls `start` (no other stream can be sliced) and that some output computes. That
    /// costs a copy of each such batch on worker 0 and the memory of `duration` worth of them;
    /// drop the handles of streams you will not slice before `start` to avoid it.
    ///
    /// # Errors
    ///
    /// [`Error::IllegalState`] after start.
    pub fn remember(&self, duration: Duration) -> Result<()> {
        self.inner.plan.check_open("set the remember duration")?;
        *lock(&self.inner.remember) = Some(duration);
        Ok(())
    }

    /// The union of several streams of the same type and slide, partitions in list order.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an empty list or streams with different slides.
    pub fn union<T: Data>(&self, streams: &[DStream<T>]) -> Result<DStream<T>> {
        crate::dstream::union_all(streams)
    }

    /// A stream computed batch by batch from several streams (Spark's
    /// `StreamingContext.transform`): `f` gets their batches in list order.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an empty list or streams with different slides.
    pub fn transform<T: Data, U: Data, F>(&self, streams: &[DStream<T>], f: F) -> Result<DStream<U>>
    where
        F: Fn(Vec<Batch<T>>) -> Batch<U> + Send + Sync + 'static,
    {
        crate::dstream::transform_all(streams, f)
    }

    /// This process's TLS settings when the cluster asks for TLS (the builder's
    /// [`StreamingContextBuilder::cluster_tls`], else `EMBER_CLUSTER_TLS`); `None` without a
    /// cluster of several processes or without TLS.
    fn cluster_tls(&self, has_secret: bool) -> std::result::Result<Option<ember_engine::transport::Tls>, String> {
        let Some(cluster) = &self.inner.settings.cluster else {
            return Ok(None);
        };
        if cluster.addresses.len() < 2 {
            return Ok(None);
        }
        let wanted = match self.inner.settings.cluster_tls {
            Some(on) => on,
            None => ember_engine::transport::tls_from_env()?,
        };
        if !wanted {
            return Ok(None);
        }
        if !has_secret {
            return Err(format!(
                "TLS between the processes needs a cluster secret (EMBER_CLUSTER_SECRET or EMBER_CLUSTER_SECRET_FILE): \
                 it proves who is on the other side of each connection ({} is on)",
                ember_engine::transport::TLS_ENV
            ));
        }
        ember_engine::transport::Tls::generate().map(Some)
    }

    /// Starts the computation: launches the workers and receivers. Batches are generated at
    /// every multiple of the batch interval after the current time.
    ///
    /// # Errors
    ///
    /// [`Error::IllegalState`] when no output operation was registered, or the context was
    /// already started or stopped (Spark ignores a second `start`; ember reports it).
    /// [`Error::InvalidArgument`] when the plan combines streams of different slides (for
    /// example joining a windowed stream with its unwindowed parent); the context is then
    /// stopped.
    pub fn start(&self) -> Result<()> {
        match self
            .inner
            .phase
            .compare_exchange(INITIALIZED, ACTIVE, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {}
            Err(ACTIVE) => return Err(Error::IllegalState("StreamingContext has already been started".into())),
            Err(_) => {
                return Err(Error::IllegalState(
                    "StreamingContext has already been stopped and cannot be started again".into(),
                ));
            }
        }
        let secret = match (&self.inner.settings.cluster, &self.inner.settings.cluster_secret) {
            (Some(cluster), None) if cluster.addresses.len() > 1 => match ember_engine::auth::ClusterSecret::from_env() {
                Ok(secret) => secret,
                Err(message) => {
                    self.inner.stop(false)?;
                    return Err(Error::InvalidArgument {
                        operation: "StreamingContext::start",
                        message,
                    });
                }
            },
            (_, secret) => secret.clone(),
        };
        let tls = match self.cluster_tls(secret.is_some()) {
            Ok(tls) => tls,
            Err(message) => {
                self.inner.stop(false)?;
                return Err(Error::InvalidArgument {
                    operation: "StreamingContext::start",
                    message,
                });
            }
        };
        if let Some(cluster) = &self.inner.settings.cluster
            && cluster.addresses.len() > 1
            && secret.is_none()
            && !cluster.addresses.iter().all(|a| is_loopback(a))
        {
            tracing::warn!(
                "The cluster's connections are not authenticated: any process that reaches its ports can join it or stop it. \
                 Give every process the same secret in EMBER_CLUSTER_SECRET (or EMBER_CLUSTER_SECRET_FILE)."
            );
        }
        let plan = &self.inner.plan;
        if let Some(keep) = *lock(&self.inner.remember) {
            plan.retain(keep, self.inner.hosts_receivers())?;
        }
        plan.mark_started();
        if let Some((operation, message)) = plan.first_problem() {
            self.inner.stop(false)?;
            return Err(Error::InvalidArgument { operation, message });
        }
        let (compiled, plan_fingerprint) = plan.freeze();
        if compiled.is_empty() {
            self.inner.stop(false)?;
            return Err(Error::IllegalState("No output operations registered, so nothing to execute".into()));
        }
        let settings = &self.inner.settings;
        let interval = settings.batch_interval.as_millis();
        let cluster = settings.cluster.clone().map(|mut cluster| {
            cluster.control_address = settings.control_address.clone();
            cluster.start_timeout = settings.cluster_start_timeout;
            cluster.secret = secret.clone();
            cluster.tls = tls.clone();
            cluster
        });
        // What every process of a cluster must agree on besides the plan itself.
        let fingerprint = {
            use std::hash::{Hash, Hasher};
            let mut h = ember_engine::keys::StableHasher::default();
            (plan_fingerprint, interval, settings.key_groups, settings.workers as u64).hash(&mut h);
            h.finish()
        };
        let checkpoint_dir = lock(&self.inner.checkpoint_dir).clone();
        let recovered = lock(&self.inner.recovered).take();
        let mut snapshot_sink = settings.snapshot_sink.clone();
        let mut restore = settings.restore.clone();
        let mut resume = None;
        if checkpoint_dir.is_none() && !compiled.stateful_labels().is_empty() {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    operators = ?compiled.stateful_labels(),
                    "Stateful streams run without a checkpoint directory: a crash loses their state. \
                     Call ssc.checkpoint(dir) or use StreamingContext::get_or_create."
                );
            });
        }
        if let Some(recovered) = &recovered {
            if let Some(label) = compiled.find_kind("queue_stream") {
                self.inner.stop(false)?;
                return Err(Error::Checkpoint(format!(
                    "the plan reads {label}: its batches cannot be replayed after a recovery (as in Spark); use replay_stream"
                )));
            }
            restore = Some(Arc::clone(&recovered.image));
            resume = Some(ember_engine::runtime::Resume {
                zero_ms: recovered.manifest.zero_ms,
                after_ms: recovered.manifest.time_ms,
            });
        } else if let Some(zero_ms) = settings.zero_ms {
            // A fresh run on a given grid: nothing done after its zero.
            resume = Some(ember_engine::runtime::Resume {
                zero_ms,
                after_ms: zero_ms,
            });
        }
        if let Some(dir) = &checkpoint_dir {
            let writer = match crate::checkpoint::CheckpointWriter::start(dir, recovered.as_ref().map(|r| r.manifest.time_ms)) {
                Ok(writer) => writer,
                Err(error) => {
                    self.inner.stop(false)?;
                    return Err(error);
                }
            };
            snapshot_sink = Some(writer.sink());
            *lock(&self.inner.checkpoint_writer) = Some(writer);
        }
        let config = RunConfig {
            workers: settings.workers,
            cluster,
            clock: settings.clock.clone(),
            interval_ms: interval,
            max_batches_in_flight: settings.max_batches_in_flight,
            key_groups: settings.key_groups,
            fingerprint,
            snapshot_sink,
            restore,
            resume,
            events: None,
        };
        let mut receivers = Vec::new();
        let fail = |receivers: Vec<JoinHandle<()>>, error: Error| {
            for receiver in lock(&self.inner.receivers).iter() {
                receiver.request_stop();
            }
            for handle in receivers {
                let _ = handle.join();
            }
            let _ = self.inner.stop(false);
            Err(error)
        };
        if settings.receivers.write_ahead_log && self.inner.hosts_receivers() {
            let Some(dir) = &checkpoint_dir else {
                return fail(
                    receivers,
                    Error::IllegalState(
                        "the write-ahead log needs a checkpoint directory: call ssc.checkpoint(dir) or use get_or_create".into(),
                    ),
                );
            };
            let after = recovered.as_ref().map(|r| r.manifest.time_ms);
            for host in lock(&self.inner.receivers).iter() {
                if let Err(e) = host.open_wal(&compiled, dir, after) {
                    return fail(receivers, e);
                }
            }
        }
        let mut config = config;
        match self.inner.bus.start() {
            Ok(sink) => config.events = Some(sink),
            Err(e) => tracing::warn!(error = %e, "Cannot start the streaming listeners' thread; listeners get no events."),
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        if let Some((host, port)) = &settings.ui {
            let stats = Arc::default();
            self.inner.bus.add(Box::new(crate::ui::StatsListener(Arc::clone(&stats))));
            match crate::ui::UiServer::start(host, *port, Arc::new(UiJob(Arc::downgrade(&self.inner))), stats, interval) {
                Ok(server) => *lock(&self.inner.ui) = Some(server),
                Err(e) => {
                    return fail(
                        receivers,
                        Error::Io {
                            context: "cannot start the web UI".into(),
                            source: e,
                        },
                    );
                }
            }
        }
        self.inner.bus.send(crate::listener::BusEvent::Started(now_ms));
        if self.inner.hosts_receivers() {
            let hosts: Vec<Arc<dyn ReceiverHost>> = lock(&self.inner.receivers).clone();
            for receiver in hosts {
                match receiver.start(Arc::clone(&self.inner)) {
                    Ok(handle) => receivers.push(handle),
                    Err(e) => return fail(receivers, e),
                }
            }
        }
        let build: BuildPlan = Arc::new(move |c: &mut Compiler<'_>| compiled.compile(c));
        let runtime = match Runtime::launch(config, build) {
            Ok(runtime) => runtime,
            Err(LaunchError::Control(e)) => return fail(receivers, Error::Cluster(e)),
            Err(LaunchError::Timely(e)) => return fail(receivers, Error::Internal(format!("cannot start the workers: {e}"))),
        };
        let zero_ms = runtime.zero_ms();
        let shared = Arc::clone(runtime.shared());
        *lock(&self.inner.shared) = Some(Arc::clone(&shared));
        *lock(&self.inner.running) = Some(Running { runtime, receivers });
        if recovered.is_some()
            && let Err(refusals) = shared.await_compiled(std::time::Duration::from_secs(60))
        {
            self.inner.stop(false)?;
            return Err(Error::Checkpoint(format!(
                "the checkpoint does not fit the plan: {}",
                refusals.join("; ")
            )));
        }
        if let Some(writer) = lock(&self.inner.checkpoint_writer).as_ref() {
            writer.started(
                shared,
                crate::checkpoint::RunFacts {
                    zero_ms,
                    batch_interval_ms: interval,
                    key_groups: settings.key_groups,
                },
            );
        }
        tracing::info!(
            batch_interval_ms = interval,
            first_batch_ms = zero_ms + interval,
            "StreamingContext started."
        );
        let mut started = lock(&STARTED);
        started.retain(|c| c.strong_count() > 0);
        started.push(Arc::downgrade(&self.inner));
        Ok(())
    }

    /// Where the context is in its life (Spark's `getState`).
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    /// use ember::StreamingContextState;
    ///
    /// let ssc = StreamingContext::new(seconds(1))?;
    /// assert_eq!(ssc.get_state(), StreamingContextState::Initialized);
    /// ssc.stop(false)?;
    /// assert_eq!(ssc.get_state(), StreamingContextState::Stopped);
    /// # Ok::<(), ember::Error>(())
    /// ```
    pub fn get_state(&self) -> StreamingContextState {
        match self.inner.phase.load(Ordering::Acquire) {
            INITIALIZED => StreamingContextState::Initialized,
            ACTIVE => StreamingContextState::Active,
            _ => StreamingContextState::Stopped,
        }
    }

    /// The most recently started context that is still running, if any (Spark's
    /// `StreamingContext.getActive`). Spark allows one active context per JVM; ember allows
    /// several in a process (tests, independent jobs), and this returns the newest.
    pub fn get_active() -> Option<StreamingContext> {
        lock(&STARTED)
            .iter()
            .rev()
            .filter_map(std::sync::Weak::upgrade)
            .find(|inner| inner.phase.load(Ordering::Acquire) == ACTIVE)
            .map(|inner| StreamingContext { inner })
    }

    /// The running context if there is one ([`StreamingContext::get_active`]), otherwise
    /// [`StreamingContext::get_or_create`] on `directory` (Spark's `getActiveOrCreate`).
    ///
    /// # Errors
    ///
    /// As [`StreamingContext::get_or_create`].
    pub fn get_active_or_create<F>(directory: impl AsRef<std::path::Path>, build: F) -> Result<StreamingContext>
    where
        F: FnOnce() -> Result<StreamingContext>,
    {
        match StreamingContext::get_active() {
            Some(active) => Ok(active),
            None => StreamingContext::get_or_create(directory, build),
        }
    }

    /// Stops the computation. With `graceful`, receivers are stopped first and everything they
    /// received is processed before `stop` returns (Spark's `stopGracefully`); otherwise
    /// batches still in flight are dropped. Stopping twice, or before start, is allowed.
    ///
    /// The final batch is cut right away instead of waiting for its boundary on the clock.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when a worker thread panicked.
    pub fn stop(&self, graceful: bool) -> Result<()> {
        self.inner.stop(graceful)
    }

    /// Waits until the context is stopped, or returns the first failure not reported yet (a
    /// failed batch job or a source error), as Spark's `awaitTermination` throws it. The
    /// computation goes on after a failure; call again to keep waiting. The loss of a process
    /// of the cluster is the exception: it ends the cluster's run, so the context is stopped
    /// (its state says so, and `stop` afterwards does nothing) before the error is returned.
    ///
    /// # Errors
    ///
    /// [`Error::JobFailed`] or [`Error::Source`] for the failure; [`Error::Cluster`] for a lost
    /// process of the cluster.
    pub fn await_termination(&self) -> Result<()> {
        self.await_until(None).map(|_| ())
    }

    /// Like [`StreamingContext::await_termination`], giving up after `timeout`; returns whether
    /// the context stopped.
    ///
    /// # Errors
    ///
    /// As [`StreamingContext::await_termination`].
    pub fn await_termination_or_timeout(&self, timeout: Duration) -> Result<bool> {
        self.await_until(Some(Instant::now() + timeout.to_std()))
    }

    fn await_until(&self, deadline: Option<Instant>) -> Result<bool> {
        loop {
            if let Some(error) = self.take_failure() {
                if matches!(error, Error::Cluster(_)) {
                    // The cluster is over (timely is fail-stop): this process's part of it is
                    // stopped before the error is returned, so the context says it stopped and
                    // a later `stop` has nothing to do. The stop's own error is this one.
                    let _ = self.inner.stop(false);
                }
                return Err(error);
            }
            let finished = match self.inner.phase.load(Ordering::Acquire) {
                // Stopped once the stop has finished: its checkpoint and outputs are done.
                STOPPED => self.inner.stop_done.load(Ordering::Acquire),
                INITIALIZED => false,
                _ => lock(&self.inner.shared).as_ref().is_some_and(|s| s.all_exited()),
            };
            if finished {
                // The workers ended by themselves (a stop from another process of the cluster,
                // or a lost peer): stop the receivers and leave the cluster cleanly.
                let stopped = self.inner.stop(true);
                // A lost peer can end the workers before the control plane has recorded the
                // loss; by now it has, and it is the answer.
                if let Some(error) = self.take_failure() {
                    return Err(error);
                }
                return match stopped {
                    Err(Error::Cluster(_)) | Ok(()) => Ok(true),
                    Err(e) => Err(e),
                };
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// Waits until every output has run for batch `time` (and all before it); returns `false`
    /// on timeout. An ember extension for tests and drivers that feed a manual clock.
    ///
    /// # Errors
    ///
    /// [`Error::IllegalState`] when the context is not started.
    pub fn await_batch(&self, time: Time, timeout: Duration) -> Result<bool> {
        let shared = lock(&self.inner.shared)
            .clone()
            .ok_or_else(|| Error::IllegalState("StreamingContext has not been started".into()))?;
        let deadline = Instant::now() + timeout.to_std();
        loop {
            if shared.processed_through().is_some_and(|t| t >= time.milliseconds()) {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(std::time::Duration::from_micros(500));
        }
    }

    /// Every batch failure reported so far (including ones already returned by
    /// `await_termination`).
    pub fn failures(&self) -> Vec<Error> {
        let shared = lock(&self.inner.shared).clone();
        shared
            .map(|s| s.failures().into_iter().map(Error::from).collect())
            .unwrap_or_default()
    }

    fn take_failure(&self) -> Option<Error> {
        if let Some(message) = self.inner.plan.take_late() {
            return Some(Error::IllegalState(message));
        }
        if let Some(error) = {
            let mut errors = lock(&self.inner.source_errors);
            (!errors.is_empty()).then(|| errors.remove(0))
        } {
            return Some(error);
        }
        let shared = lock(&self.inner.shared).clone()?;
        if let Some(lost) = shared.cluster_failure()
            && !self.inner.cluster_failure_reported.swap(true, Ordering::AcqRel)
        {
            return Some(Error::Cluster(lost));
        }
        let failures = shared.failures();
        let seen = self.inner.reported_failures.load(Ordering::Acquire);
        let failure = failures.get(seen)?.clone();
        self.inner.reported_failures.store(seen + 1, Ordering::Release);
        Some(failure.into())
    }

    /// A source stream whose workers are given stored items (built by `build`) and decode
    /// each into records with `step`, inside the source's consumer when it takes chains (see
    /// [`DStream::decoded_source`]). `records` counts the records of a partition of items,
    /// for listeners.
    pub(crate) fn decoded_source<S: Data, T: Data, B, St>(
        &self,
        name: &str,
        build: B,
        records: impl Fn(&[S]) -> usize + Clone + Send + Sync + 'static,
        step: St,
    ) -> DStream<T>
    where
        B: for<'s> Fn(&mut Compiler<'s>, &str) -> EStream<'s, S> + Send + Sync + 'static,
        St: Fn(S, &mut dyn FnMut(T)) + Send + Sync + 'static,
    {
        let spec = NodeSpec::new(name, self.inner.settings.batch_interval, Vec::new()).partitioning(Partitioning::Source);
        DStream::decoded_source(
            &self.inner.plan,
            spec,
            move |c, label| {
                let stream = build(c, label);
                ember_engine::ops::count_input_by(c, stream, label, records.clone())
            },
            step,
        )
    }

    /// A source stream built from a per-worker generator.
    pub(crate) fn source<T: Data, B>(&self, name: &str, build: B) -> DStream<T>
    where
        B: for<'s> Fn(&mut Compiler<'s>, &str) -> EStream<'s, T> + Send + Sync + 'static,
    {
        let spec = NodeSpec::new(name, self.inner.settings.batch_interval, Vec::new()).partitioning(Partitioning::Source);
        // Listeners see how many records each source brought into each batch.
        DStream::node(&self.inner.plan, spec, move |c, label| {
            let stream = build(c, label);
            ember_engine::ops::count_input(c, stream, label)
        })
    }
}

impl StreamingContext {
    /// Registers a listener for this context's events (Spark's `addStreamingListener`); it may
    /// be added before or after `start`. See [`StreamingListener`](crate::StreamingListener).
    pub fn add_streaming_listener(&self, listener: impl crate::listener::StreamingListener) -> crate::listener::ListenerId {
        self.inner.bus.add(Box::new(listener))
    }

    /// Removes a listener (Spark's `removeStreamingListener`); returns whether it was there.
    pub fn remove_streaming_listener(&self, id: crate::listener::ListenerId) -> bool {
        self.inner.bus.remove(id)
    }

    /// Events dropped because the listeners fell behind (see [`StreamingListener`](crate::StreamingListener)).
    pub fn dropped_listener_events(&self) -> u64 {
        self.inner.bus.dropped()
    }
}

/// What the web UI reads of a running context.
struct UiJob(std::sync::Weak<ContextInner>);

impl crate::ui::Job for UiJob {
    fn receivers(&self) -> Vec<crate::sources::ReceiverInfo> {
        self.0.upgrade().map(|c| c.receiver_infos()).unwrap_or_default()
    }

    fn bad_records(&self) -> Vec<crate::sources::BadRecordCounts> {
        self.0.upgrade().map(|c| c.bad_record_counts()).unwrap_or_default()
    }

    fn dropped_events(&self) -> u64 {
        self.0.upgrade().map_or(0, |c| c.bus.dropped())
    }

    fn alive(&self) -> bool {
        self.0.strong_count() > 0
    }
}

/// A checkpoint directory from a path, a `file://` URL or an `s3://` URL.
fn checkpoint_path(directory: &std::path::Path) -> Result<crate::storage::Location> {
    crate::storage::Location::parse(&directory.to_string_lossy()).map_err(|e| Error::InvalidArgument {
        operation: "checkpoint",
        message: format!("checkpoint directory {e}"),
    })
}

/// Whether `address` (`host:port`) is on this host's loopback (`localhost`, `127.x`, `::1`).
fn is_loopback(address: &str) -> bool {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
