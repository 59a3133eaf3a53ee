//! Launching workers, compiling a plan on each of them, and the state they share.

#![allow(unsafe_code)] // `Compiler::memo` erases a stream lifetime; see the SAFETY note there.
use std::any::Any;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use timely::communication::WorkerGuards;
use timely::dataflow::Scope;

use crate::clock::Clock;
use crate::control::{ControlConfig, ControlError, ControlPlane};
use crate::msg::{Data, JobFailure};
use crate::scheduler::{OutputScheduler, ProgressSink};

/// A stream of ember messages inside one worker's dataflow: the timely timestamp is the batch
/// time in milliseconds.
pub type EStream<'s, T> = timely::dataflow::Stream<'s, u64, Vec<crate::msg::Msg<T>>>;

/// Where this process sits in a cluster (timely's `-n/-p/-h`).
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This process's index, from 0.
    pub process: usize,
    /// `host:port` of every process, in process order.
    pub addresses: Vec<String>,
    /// `host:port` where process 0's control plane listens; `None` for the default, the host of
    /// process 0's address with its port plus 1000 (minus 1000 above 64535).
    pub control_address: Option<String>,
    /// How long the processes wait for each other at start.
    pub start_timeout: Duration,
    /// The cluster's secret: every control and data connection between its processes must
    /// prove it (see [`crate::auth`]). `None` admits any process that speaks the protocol.
    pub secret: Option<crate::auth::ClusterSecret>,
    /// TLS on every connection between the processes (it needs `secret`; see
    /// [`crate::transport::Tls`]).
    pub tls: Option<crate::transport::Tls>,
}

impl ClusterConfig {
    /// Process `process` of a cluster at `addresses`, with the default control address and a
    /// 60 s start timeout.
    pub fn new(process: usize, addresses: Vec<String>) -> Self {
        ClusterConfig {
            process,
            addresses,
            control_address: None,
            start_timeout: Duration::from_secs(60),
            secret: None,
            tls: None,
        }
    }

    /// The control plane's address (see [`ClusterConfig::control_address`]).
    pub fn coordinator(&self) -> String {
        if let Some(address) = &self.control_address {
            return address.clone();
        }
        let first = self.addresses.first().map(String::as_str).unwrap_or("localhost:2101");
        match first
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
        {
            Some((host, port)) if port <= 64535 => format!("{host}:{}", port + 1000),
            Some((host, port)) => format!("{host}:{}", port - 1000),
            None => format!("{first}:3101"),
        }
    }
}

/// Why the workers ended badly.
#[derive(Debug)]
pub enum JoinError {
    /// A peer process of the cluster was lost.
    Cluster(ControlError),
    /// A worker thread panicked (an ember bug).
    Worker(String),
}

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinError::Cluster(e) => e.fmt(f),
            JoinError::Worker(message) => write!(f, "a worker thread failed: {message}"),
        }
    }
}

impl std::error::Error for JoinError {}

/// Why the workers could not start.
#[derive(Debug)]
pub enum LaunchError {
    /// The cluster's processes did not agree to start (a peer missing, different plans).
    Control(ControlError),
    /// Timely could not start the workers.
    Timely(String),
}

impl std::fmt::Display for LaunchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LaunchError::Control(e) => e.fmt(f),
            LaunchError::Timely(message) => write!(f, "cannot start the workers: {message}"),
        }
    }
}

impl std::error::Error for LaunchError {}

/// Everything the engine needs to run a plan.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Worker threads in this process.
    pub workers: usize,
    /// Cluster membership, or `None` for a single process.
    pub cluster: Option<ClusterConfig>,
    /// The clock that cuts batches.
    pub clock: Clock,
    /// The batch interval (ms).
    pub interval_ms: u64,
    /// How many batches sources may run ahead of the slowest output.
    pub max_batches_in_flight: u64,
    /// Number of key groups keyed state is spread over.
    pub key_groups: u32,
    /// The plan's fingerprint; every process of a cluster must have the same.
    pub fingerprint: u64,
    /// Where stateful operators write their checkpoint snapshots, if anywhere.
    pub snapshot_sink: Option<crate::snapshot::SnapshotSink>,
    /// State to restore before the first batch.
    pub restore: Option<crate::snapshot::RestoreImage>,
    /// Where a recovered run resumes, or `None` for a fresh start.
    pub resume: Option<Resume>,
    /// Where the run's events go (ember's listener bus), if anywhere.
    pub events: Option<crate::events::EventSink>,
}

/// Where a run recovered from a checkpoint goes on: the original run's zero time (so batch
/// times and window alignment stay the same) and the checkpoint's batch time; the first batch
/// is the one after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume {
    /// The zero time of the run that wrote the checkpoint (ms).
    pub zero_ms: u64,
    /// The batch time of the checkpoint (ms).
    pub after_ms: u64,
}

/// State shared by the driver and every worker of this process.
#[derive(Debug)]
pub struct RunShared {
    stop_requested: AtomicBool,
    abort: AtomicBool,
    /// The agreed last batch time plus one; 0 until agreed.
    final_time: AtomicU64,
    /// The largest final batch time proposed by a local source.
    local_final: AtomicU64,
    /// Source operators compiled on the local workers, and how many proposed a final time.
    sources: AtomicUsize,
    proposed: AtomicUsize,
    /// Local workers that finished compiling their dataflow.
    compiled: AtomicUsize,
    /// Operators that write snapshots at checkpoint times, over all local workers.
    snapshotting: AtomicUsize,
    /// Checkpoint times are the multiples of this past zero (ms); 0 until compiled.
    checkpoint_every: AtomicU64,
    /// Why the restore image does not fit the plan, if it does not (found while compiling).
    restore_refusals: Mutex<Vec<String>>,
    /// The ids of the stateful operators the local workers registered (while restoring).
    registered: Mutex<std::collections::BTreeSet<String>>,
    /// Whether this process's proposal went to the control plane.
    proposal_sent: AtomicBool,
    /// The cluster's control plane (cluster mode only).
    control: Option<Arc<ControlPlane>>,
    snapshot_sink: Option<crate::snapshot::SnapshotSink>,
    events: Option<crate::events::EventSink>,
    /// The last batch time a local source cut.
    last_cut: AtomicU64,
    /// Dropped once every local worker has compiled (and so restored its state).
    restore: Mutex<Option<crate::snapshot::RestoreImage>>,
    failures: Mutex<Vec<JobFailure>>,
    /// The message of the first local worker that panicked for a reason other than a lost peer.
    worker_panic: Mutex<Option<String>>,
    progress: Vec<AtomicU64>,
    exited: AtomicUsize,
    /// The last batch time recorded in `completions`.
    last_completed: AtomicU64,
    /// When recent batches finished on every local worker, oldest first (bounded).
    completions: Mutex<VecDeque<(u64, Instant)>>,
}

/// How many batch completions `RunShared` remembers (rate controllers read recent ones).
const COMPLETIONS_KEPT: usize = 256;

impl RunShared {
    fn new(workers: usize, control: Option<Arc<ControlPlane>>, config: &RunConfig, restore: Option<crate::snapshot::RestoreImage>) -> Self {
        RunShared {
            stop_requested: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            final_time: AtomicU64::new(0),
            local_final: AtomicU64::new(0),
            sources: AtomicUsize::new(0),
            proposed: AtomicUsize::new(0),
            compiled: AtomicUsize::new(0),
            snapshotting: AtomicUsize::new(0),
            checkpoint_every: AtomicU64::new(0),
            restore_refusals: Mutex::new(Vec::new()),
            registered: Mutex::new(std::collections::BTreeSet::new()),
            proposal_sent: AtomicBool::new(false),
            control,
            snapshot_sink: config.snapshot_sink.clone(),
            events: config.events.clone(),
            last_cut: AtomicU64::new(0),
            restore: Mutex::new(restore),
            failures: Mutex::new(Vec::new()),
            worker_panic: Mutex::new(None),
            progress: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            exited: AtomicUsize::new(0),
            last_completed: AtomicU64::new(0),
            completions: Mutex::new(VecDeque::new()),
        }
    }

    /// Records a failed job. The first failure of a batch and operator is kept; repeats are not.
    pub fn report(&self, failure: JobFailure) {
        tracing::error!(operator = %failure.operator, batch_time_ms = failure.time, cause = %failure.cause, "A batch's job failed.");
        let mut failures = crate::msg::lock(&self.failures);
        if !failures.contains(&failure) {
            failures.push(failure);
        }
    }

    /// Every failure reported so far, in the order they were reported.
    pub fn failures(&self) -> Vec<JobFailure> {
        crate::msg::lock(&self.failures).clone()
    }

    /// Where the run's events go, if anywhere.
    pub fn events(&self) -> Option<&crate::events::EventSink> {
        self.events.as_ref()
    }

    /// Sends `event` to the event sink, if there is one.
    pub(crate) fn emit(&self, event: impl FnOnce() -> crate::events::EngineEvent) {
        if let Some(sink) = &self.events {
            (sink.0)(event());
        }
    }

    /// Records that a local source cut batch `time` (the first source to cut it tells).
    pub(crate) fn note_cut(&self, time: u64) {
        if self.events.is_some() && self.last_cut.fetch_max(time, Ordering::AcqRel) < time {
            self.emit(|| crate::events::EngineEvent::BatchCut { time, at: Instant::now() });
        }
    }

    /// Where stateful operators write their snapshots, if anywhere.
    pub fn snapshot_sink(&self) -> Option<&crate::snapshot::SnapshotSink> {
        self.snapshot_sink.as_ref()
    }

    /// The state to restore before the first batch, if any (until every local worker has
    /// compiled its dataflow).
    pub fn restore_image(&self) -> Option<crate::snapshot::RestoreImage> {
        crate::msg::lock(&self.restore).clone()
    }

    /// Once every local worker has compiled: how many snapshots each checkpoint time gets from
    /// this process (one per stateful operator per worker), and the interval of checkpoint
    /// times (ms past zero).
    pub fn checkpoint_layout(&self) -> Option<(usize, u64)> {
        (self.compiled.load(Ordering::Acquire) >= self.progress.len()).then(|| {
            (
                self.snapshotting.load(Ordering::Acquire),
                self.checkpoint_every.load(Ordering::Acquire),
            )
        })
    }

    /// Refuses the restore image if it holds an operator that no local worker registered
    /// (called once every local worker has compiled). In a cluster, process 0 checks: every
    /// process runs the same plan, and state that lives on one worker only lives on worker 0.
    fn check_image_covered(&self) {
        if self.control.as_ref().is_some_and(|c| c.process() != 0) {
            return;
        }
        let Some(image) = self.restore_image() else { return };
        let registered = crate::msg::lock(&self.registered).clone();
        for (id, restored) in image.iter().filter(|(id, _)| !registered.contains(*id)) {
            self.refuse_restore(format!(
                "the checkpoint holds state of operator {id} (a {}), which the plan does not have; \
                 a stateful operator cannot be removed or renamed across a restart",
                restored.kind
            ));
        }
    }

    /// Records that the restore image does not fit the plan (at compile time).
    pub(crate) fn refuse_restore(&self, why: String) {
        let mut refusals = crate::msg::lock(&self.restore_refusals);
        if !refusals.contains(&why) {
            refusals.push(why);
        }
    }

    /// Waits until every local worker has compiled its dataflow (or exited), for at most
    /// `timeout`; then the reasons the restore image does not fit the plan, if any.
    pub fn await_compiled(&self, timeout: Duration) -> Result<(), Vec<String>> {
        let deadline = Instant::now() + timeout;
        while self.compiled.load(Ordering::Acquire) < self.progress.len() && !self.all_exited() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let refusals = crate::msg::lock(&self.restore_refusals).clone();
        if refusals.is_empty() { Ok(()) } else { Err(refusals) }
    }

    /// Asks the sources to cut one last batch and finish (see [`Runtime::request_stop`]).
    pub fn request_stop(&self, abort: bool) {
        self.stop_requested.store(true, Ordering::Release);
        if abort {
            self.abort.store(true, Ordering::Release);
        }
        if let Some(control) = &self.control {
            control.request_stop(!abort);
        }
    }

    /// Whether a stop was requested, here or (in a cluster) on any process.
    pub fn stop_requested(&self) -> bool {
        self.stop_requested.load(Ordering::Acquire) || self.control.as_ref().is_some_and(|c| c.stop_requested().is_some())
    }

    /// The cluster's control plane, when this process is one of several.
    pub fn control(&self) -> Option<&ControlPlane> {
        self.control.as_deref()
    }

    /// The loss of a cluster peer, if one was lost.
    pub fn cluster_failure(&self) -> Option<ControlError> {
        self.control.as_ref().and_then(|c| c.failure())
    }

    /// The last batch time the sources will generate, once they have agreed on it.
    pub fn final_time(&self) -> Option<u64> {
        match self.final_time.load(Ordering::Acquire) {
            0 => self.agree_final_time(),
            t => Some(t - 1),
        }
    }

    /// Registers a source operator of a local worker (at compile time).
    pub(crate) fn register_source(&self) {
        self.sources.fetch_add(1, Ordering::AcqRel);
    }

    /// A local source's proposal for the last batch time: the last batch it cut, or one more
    /// to carry what it still holds. Called once per source after a stop was requested.
    pub(crate) fn propose_final_time(&self, t: u64) {
        self.local_final.fetch_max(t, Ordering::AcqRel);
        self.proposed.fetch_add(1, Ordering::AcqRel);
    }

    /// The agreed last batch time: the largest proposal of every source of every process, known
    /// once all have proposed (sources stop cutting batches when a stop is requested, so the
    /// proposals only wait for each other).
    fn agree_final_time(&self) -> Option<u64> {
        let all_compiled = self.compiled.load(Ordering::Acquire) >= self.progress.len();
        if !all_compiled || self.proposed.load(Ordering::Acquire) < self.sources.load(Ordering::Acquire) {
            return None;
        }
        let local = self.local_final.load(Ordering::Acquire);
        let agreed = match &self.control {
            None => local,
            Some(control) => {
                if !self.proposal_sent.swap(true, Ordering::AcqRel) {
                    control.propose_final_time(local);
                }
                control.final_time()?
            }
        };
        self.final_time.fetch_max(agreed + 1, Ordering::AcqRel);
        Some(agreed)
    }

    /// The batch time up to which every local worker has run all outputs (inclusive), or
    /// `None` before the first batch completes.
    pub fn processed_through(&self) -> Option<u64> {
        let min = self.progress.iter().map(|p| p.load(Ordering::Acquire)).min().unwrap_or(0);
        (min > 0).then_some(min)
    }

    /// When batch `time` finished on every local worker (all outputs run), if it has and is
    /// recent enough to be remembered. Batches that finished together share the instant.
    pub fn completed_at(&self, time: u64) -> Option<Instant> {
        let completions = crate::msg::lock(&self.completions);
        completions.iter().find(|(t, _)| *t >= time).map(|(_, at)| *at)
    }

    /// Records that local worker `local_index` has output every batch up to `done`.
    pub(crate) fn publish_progress(&self, local_index: usize, done: u64) {
        if let Some(slot) = self.progress.get(local_index)
            && slot.swap(done, Ordering::AcqRel) != done
            && let Some(all) = self.processed_through()
        {
            self.note_completed(all);
        }
    }

    /// Records that every batch up to `done` has finished, if that is news.
    fn note_completed(&self, done: u64) {
        if done == 0 || self.last_completed.fetch_max(done, Ordering::AcqRel) >= done {
            return;
        }
        let at = Instant::now();
        {
            let mut completions = crate::msg::lock(&self.completions);
            if completions.len() == COMPLETIONS_KEPT {
                completions.pop_front();
            }
            completions.push_back((done, at));
        }
        self.emit(|| crate::events::EngineEvent::BatchCompleted { through: done, at });
    }

    /// Whether every local worker has exited.
    pub fn all_exited(&self) -> bool {
        self.exited.load(Ordering::Acquire) >= self.progress.len()
    }

    /// Whether workers should drop what is in flight and exit: a stop without grace, here or
    /// on another process, or a lost peer.
    pub(crate) fn aborted(&self) -> bool {
        self.abort.load(Ordering::Acquire)
            || self
                .control
                .as_ref()
                .is_some_and(|c| c.stop_requested() == Some(false) || c.has_failed())
    }
}

impl ProgressSink for RunShared {
    fn publish(&self, local_index: usize, done: u64) {
        self.publish_progress(local_index, done);
    }

    fn aborted(&self) -> bool {
        RunShared::aborted(self)
    }
}

/// What one worker knows while it builds and runs its dataflow.
pub struct WorkerEnv {
    /// Global worker index.
    pub index: usize,
    /// Total number of workers in the cluster.
    pub peers: usize,
    /// Index of this worker among the workers of its process.
    pub local_index: usize,
    /// The graph's zero time (ms).
    pub zero_ms: u64,
    /// Batches at or before this time are not cut in this run: `zero_ms` for a fresh run, the
    /// checkpoint's time for a recovered one.
    pub start_ms: u64,
    /// Batch interval (ms).
    pub interval_ms: u64,
    /// See [`WorkerEnv::checkpoint_every`].
    checkpoint_every: std::cell::Cell<u64>,
    /// The ids of the operators that write snapshots at checkpoint times.
    pub(crate) snapshotting: RefCell<Vec<String>>,
    /// The clock that cuts batches.
    pub clock: Clock,
    /// Maximum number of batches in flight.
    pub max_batches_in_flight: u64,
    /// Number of key groups keyed state is spread over.
    pub key_groups: u32,
    /// State shared with the driver.
    pub shared: Arc<RunShared>,
    pub(crate) scheduler: RefCell<OutputScheduler>,
    /// The worker's stateful operators, by operator id.
    pub states: RefCell<crate::snapshot::StateRegistry>,
}

impl WorkerEnv {
    /// The first batch time of this run (after the checkpoint, for a recovered run).
    pub fn first_batch(&self) -> u64 {
        self.start_ms + self.interval_ms
    }

    /// Checkpoint times are the multiples of this past zero (ms): a multiple of every stateful
    /// operator's checkpoint interval and input slide, so that all of them have a snapshot at
    /// each (known once the worker has compiled its dataflow).
    pub fn checkpoint_every(&self) -> u64 {
        self.checkpoint_every.get()
    }

    /// Makes checkpoint times multiples of `ms` too (at compile time).
    pub(crate) fn require_checkpoint_multiple(&self, ms: u64) {
        let current = self.checkpoint_every.get();
        self.checkpoint_every.set(lcm(current.max(1), ms.max(1)));
    }

    /// Checks, once the dataflow is compiled, that the restore image and the plan's stateful
    /// operators match one for one.
    /// (Operators of the image that no local worker registered are found by
    /// [`RunShared::check_image_covered`] once all have compiled: some state lives on one
    /// worker only, as a file stream's.)
    fn check_restore_image(&self) {
        let Some(image) = self.shared.restore_image() else { return };
        let states = self.states.borrow();
        crate::msg::lock(&self.shared.registered).extend(states.ids().map(str::to_owned));
        for id in self.snapshotting.borrow().iter() {
            if !image.contains_key(id) {
                self.shared.refuse_restore(format!(
                    "operator {id} (a {}) keeps state, but the checkpoint has none for it; \
                     a stateful operator cannot be added across a restart",
                    states.kind(id).unwrap_or("stateful operator")
                ));
            }
        }
    }

    /// Whether an injected fault is due (see [`crate::fault`]): the fault's batch is ready here
    /// and withheld from the outputs, every other local worker has output it and, on process 0
    /// of a cluster, every other process has reported its part of the batch's checkpoint.
    fn fault_due(&self, fault: crate::fault::WorkerFault) -> bool {
        let time = fault.batch_ms;
        if !self.scheduler.borrow().withheld(time) {
            return false;
        }
        let others_done = self
            .shared
            .progress
            .iter()
            .enumerate()
            .all(|(i, p)| i == self.local_index || p.load(Ordering::Acquire) >= time);
        let reported = match self.shared.control() {
            Some(control) if control.process() == 0 => {
                (1..control.processes()).all(|p| control.reported_through(p).is_some_and(|t| t >= time))
            }
            _ => true,
        };
        others_done && reported
    }

    pub(crate) fn add_source_activator(&self, activator: timely::scheduling::SyncActivator) {
        self.scheduler.borrow().add_source(activator);
    }
}

/// Builds one worker's dataflow from the plan; shared nodes are built once (memoised by id).
pub struct Compiler<'s> {
    /// The timely scope being built.
    pub scope: Scope<'s, u64>,
    /// The worker's environment.
    pub env: Rc<WorkerEnv>,
    /// The slide (ms) of the plan node being compiled: the grid its batches sit on.
    slide_ms: u64,
    /// The stable id of the plan node being compiled.
    operator_id: String,
    memo: HashMap<u64, Box<dyn Any>>,
}

/// The batch times a stream produces: `zero + k * step` for `k >= 1` (Spark's valid times of
/// a stream whose slide is `step`).
#[derive(Clone)]
pub struct Grid {
    pub(crate) env: Rc<WorkerEnv>,
    /// Distance between two batch times of the stream (ms).
    pub step_ms: u64,
}

impl Grid {
    /// The first batch time on this grid in this run (after the checkpoint, for a recovered run).
    pub fn first(&self) -> u64 {
        let past = self.env.start_ms.saturating_sub(self.env.zero_ms);
        self.env.zero_ms + (past / self.step_ms + 1) * self.step_ms
    }

    /// Whether `time` is on this grid.
    pub fn contains(&self, time: u64) -> bool {
        time > self.env.zero_ms && (time - self.env.zero_ms).is_multiple_of(self.step_ms)
    }
}

impl<'s> Compiler<'s> {
    /// The grid of the node being compiled.
    pub fn grid(&self) -> Grid {
        self.grid_of(self.slide_ms)
    }

    /// The grid of a stream whose slide is `slide_ms`.
    pub fn grid_of(&self, slide_ms: u64) -> Grid {
        Grid {
            env: Rc::clone(&self.env),
            step_ms: slide_ms.max(1),
        }
    }

    /// The stable id of the plan node being compiled (stateful operators register under it).
    pub fn operator_id(&self) -> &str {
        &self.operator_id
    }

    /// Runs `f` compiling plan node `id` (see [`Compiler::operator_id`]).
    pub fn with_operator<R>(&mut self, id: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        let saved = std::mem::replace(&mut self.operator_id, id.to_owned());
        let result = f(self);
        self.operator_id = saved;
        result
    }

    /// Runs `f` with `slide_ms` as the slide of the node being compiled, then restores it.
    pub fn with_slide<R>(&mut self, slide_ms: u64, f: impl FnOnce(&mut Self) -> R) -> R {
        let saved = std::mem::replace(&mut self.slide_ms, slide_ms.max(1));
        let result = f(self);
        self.slide_ms = saved;
        result
    }

    /// The stream of plan node `id`, once compiled.
    pub fn memo_get<T: Data>(&self, id: u64) -> Option<EStream<'s, T>> {
        // `Stream` is covariant in its scope lifetime, so the stored value shortens to `'s`.
        self.memo.get(&id).and_then(|s| s.downcast_ref::<EStream<'static, T>>()).cloned()
    }

    /// Records the stream of plan node `id`.
    pub fn memo_insert<T: Data>(&mut self, id: u64, stream: EStream<'s, T>) {
        let raw = Box::into_raw(Box::new(stream)) as *mut EStream<'static, T>;
        // SAFETY: the two types differ only in lifetime, so the layout is identical. The
        // `'static` value lives only in `self.memo`, which is owned by this `Compiler<'s>`
        // and dropped before `'s` ends; it is handed out again only as `EStream<'s, T>`
        // (above), and dropping it touches no borrowed data (it holds `Rc`s and references).
        let erased: Box<dyn Any> = unsafe { Box::from_raw(raw) };
        self.memo.insert(id, erased);
    }
}

/// The plan builder every worker runs: it registers the plan's streams and outputs.
pub type BuildPlan = Arc<dyn for<'s> Fn(&mut Compiler<'s>) + Send + Sync>;

/// A running set of workers.
pub struct Runtime {
    guards: Option<WorkerGuards<()>>,
    shared: Arc<RunShared>,
    zero_ms: u64,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("shared", &self.shared).finish_non_exhaustive()
    }
}

/// The zero time for batches cut on `clock` every `interval_ms`: the first batch is the first
/// multiple of the interval after now.
fn zero_now(clock: &Clock, interval_ms: u64) -> u64 {
    let now = clock.now_ms().unwrap_or(0);
    (now / interval_ms + 1) * interval_ms - interval_ms
}

thread_local! {
    /// The run and local index of the worker on this thread, until its exit is counted.
    static WORKER: RefCell<Option<(Arc<RunShared>, usize)>> = const { RefCell::new(None) };
    /// The last panic of this thread, as the panic hook classified it.
    static LAST_PANIC: RefCell<Option<PanicRecord>> = const { RefCell::new(None) };
}

/// A panic as the hook saw it.
#[derive(Clone, Debug)]
struct PanicRecord {
    message: String,
    /// A timely thread failing on what a lost peer process left behind (a broken connection,
    /// a poisoned queue): the loss is reported by the control plane, not by this panic.
    peer_loss: bool,
}

/// Counts the worker of this thread as exited, once. Only a worker that finished its dataflow
/// (every batch output: its progress says so) counts as having output everything; one that
/// panicked, or ended on an abort, keeps the progress its outputs published, so that no
/// checkpoint covers a batch whose outputs it did not run.
fn count_worker_exit(finished: bool) {
    let Some((shared, local_index)) = WORKER.with(|w| w.borrow_mut().take()) else {
        return;
    };
    if !finished {
        // The dataflow cannot complete without this worker (the others would wait for it
        // forever): the run stops without grace. A panic of ember's own stops every process
        // of a cluster; one caused by a lost peer stops this process only, and the control
        // plane reports the loss (a stop request would race with that report on the others).
        let after_loss = LAST_PANIC.with(|p| p.borrow().as_ref().is_some_and(|r| r.peer_loss));
        if after_loss {
            shared.abort.store(true, Ordering::Release);
        } else {
            shared.request_stop(true);
        }
    } else if !shared.aborted()
        && let Some(slot) = shared.progress.get(local_index)
    {
        slot.store(u64::MAX, Ordering::Release);
    }
    shared.exited.fetch_add(1, Ordering::AcqRel);
}

/// Counts a worker as exited however its thread ends (see [`count_worker_exit`]).
struct ExitGuard {
    local_index: usize,
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            match LAST_PANIC.with(|p| p.borrow().clone()) {
                Some(PanicRecord { peer_loss: true, message }) => {
                    tracing::debug!(worker = self.local_index, %message, "A worker thread ended after a peer process was lost.");
                }
                Some(PanicRecord { message, .. }) => {
                    tracing::error!(worker = self.local_index, %message, "A worker thread panicked.");
                    if let Some((shared, _)) = WORKER.with(|w| w.borrow().clone()) {
                        crate::msg::lock(&shared.worker_panic).get_or_insert(message);
                    }
                }
                None => tracing::error!(worker = self.local_index, "A worker thread panicked."),
            }
        }
        count_worker_exit(!panicking);
    }
}

/// The messages of timely's panics on what a lost peer leaves behind.
const PEER_LOSS_PANICS: [&str; 4] = [
    "timely communication error",
    "MergeQueue poisoned",
    "Send thread panic",
    "Recv thread panic",
];

/// The messages of the panics Rust turns into an abort of the whole process once the hook
/// returns: a destructor that panicked while its thread was already unwinding.
const ABORTING_PANICS: [&str; 2] = ["panic in a destructor during cleanup", "panic in a function that cannot unwind"];

/// Installs (once per process) the hook that sees every panic first.
///
/// Timely's threads panic when a peer process goes away (its network threads on the broken
/// connection, then the workers and the joiner on what those left poisoned). ember reports the
/// lost peer itself, as one error naming it, so these panics are logged at debug level instead
/// of printing backtraces; every other panic goes to the hook that was there before.
///
/// Some of timely's destructors panic too when they run during such a panic, which Rust
/// answers by aborting the process: a survivor would die by SIGABRT instead of returning its
/// cluster error. A timely thread in that state after a peer's loss is parked for good instead
/// (its worker counted as exited, without progress): it is left behind, as a thread blocked on
/// a lost peer is. (A double panic with no peer lost is an ember bug and aborts as Rust does.)
/// The parked thread stays inside the panic hook, which holds the hook's lock: in that process,
/// a later `std::panic::set_hook` or `take_hook` would wait for good, so a program should set
/// its hooks before it starts a cluster's context.
fn install_panic_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = crate::msg::panic_message(info.payload());
            let thread = std::thread::current();
            let name = thread.name().unwrap_or_default();
            let from_timely = name.starts_with("timely:") || name == "ember-join";
            let after_loss = LAST_PANIC.with(|p| p.borrow().as_ref().is_some_and(|r| r.peer_loss));
            if from_timely && after_loss && ABORTING_PANICS.iter().any(|m| message.starts_with(m)) {
                tracing::debug!(thread = name, %message, "A timely thread failed twice after a peer process was lost; it is parked, not aborted.");
                count_worker_exit(false);
                loop {
                    std::thread::park();
                }
            }
            let peer_loss = from_timely && PEER_LOSS_PANICS.iter().any(|m| message.contains(m));
            LAST_PANIC.with(|p| {
                *p.borrow_mut() = Some(PanicRecord {
                    message: message.clone(),
                    peer_loss,
                })
            });
            if peer_loss {
                tracing::debug!(thread = name, %message, "A timely thread ended after a peer process was lost.");
            } else {
                previous(info);
            }
        }));
    });
}

/// How long `join` waits for timely's threads once every worker has exited; longer means a
/// communication thread is stuck, and it is left behind.
const JOIN_GRACE: Duration = Duration::from_secs(5);

/// How long `join` waits for the workers once the control plane has lost a peer: they see the
/// loss at their next step. Timely's network threads may never end (a frozen peer's socket
/// stays open), so they are not waited for at all.
const LOST_PEER_GRACE: Duration = Duration::from_secs(1);

/// How long a cluster process whose worker threads failed waits for the control plane to
/// record a lost peer before it reports the failure as a worker's own: a dropped connection
/// fails timely's threads and the control plane's reader at about the same moment (the
/// control plane's default peer timeout, which bounds a silent peer's detection too).
const LOSS_GRACE: Duration = Duration::from_secs(3);

impl Runtime {
    /// Starts the workers of this process, each compiling the plan with `build`. In a cluster,
    /// first joins the control plane: process 0 decides the zero time and checks that every
    /// process runs the same plan.
    ///
    /// # Errors
    ///
    /// [`LaunchError::Control`] when the cluster's processes do not all join in time or run
    /// different plans; [`LaunchError::Timely`] when timely cannot start the workers.
    pub fn launch(mut config: RunConfig, build: BuildPlan) -> Result<Runtime, LaunchError> {
        let launched = Instant::now();
        install_panic_hook();
        // The image goes to the shared state only, which drops it once restored.
        let restore = config.restore.take();
        let workers = config.workers.max(1);
        let interval_ms = config.interval_ms.max(1);
        // The zero time: the recovered run's, or the first multiple of the interval now (in a
        // cluster, process 0 decides).
        let (clock, resume) = (config.clock.clone(), config.resume);
        let choose_zero = move || resume.map_or_else(|| zero_now(&clock, interval_ms), |r| r.zero_ms);
        let (control, zero_ms) = match &config.cluster {
            Some(cluster) if cluster.addresses.len() > 1 => {
                let mut control = ControlConfig::new(cluster.process, cluster.addresses.len(), cluster.coordinator(), config.fingerprint);
                control.start_timeout = cluster.start_timeout;
                control.addresses = cluster.addresses.clone();
                control.resume_ms = config.resume.map(|r| r.after_ms);
                control.secret = cluster.secret.clone();
                control.tls = cluster.tls.clone();
                let plane = ControlPlane::join(control, choose_zero).map_err(LaunchError::Control)?;
                let zero = plane.zero_ms();
                (Some(Arc::new(plane)), zero)
            }
            _ => (None, choose_zero()),
        };
        let start_ms = config.resume.map_or(zero_ms, |r| r.after_ms.max(zero_ms));
        let shared = Arc::new(RunShared::new(workers, control, &config, restore));
        let (allocators, communication_guard) = match (&config.cluster, shared.control()) {
            (Some(cluster), Some(control)) => connect_cluster(cluster, workers, control, launched)?,
            _ => {
                let communication = if workers == 1 {
                    timely::CommunicationConfig::Thread
                } else {
                    timely::CommunicationConfig::Process(workers)
                };
                communication.try_build().map_err(LaunchError::Timely)?
            }
        };
        // Workers of a busy 2-core machine should park rather than spin.
        let worker_config = timely::WorkerConfig::default().idle_spin(Duration::from_micros(20));
        let worker_shared = Arc::clone(&shared);
        let guards = timely::execute::execute_from(allocators, communication_guard, worker_config, move |worker| {
            let index = worker.index();
            WORKER.with(|w| *w.borrow_mut() = Some((Arc::clone(&worker_shared), index % workers)));
            let _exit = ExitGuard {
                local_index: index % workers,
            };
            let fault = crate::fault::worker_fault(index, start_ms + interval_ms, interval_ms);
            let env = Rc::new(WorkerEnv {
                index,
                peers: worker.peers(),
                local_index: index % workers,
                zero_ms,
                start_ms,
                interval_ms,
                checkpoint_every: std::cell::Cell::new(0),
                snapshotting: RefCell::new(Vec::new()),
                clock: config.clock.clone(),
                max_batches_in_flight: config.max_batches_in_flight.max(1),
                key_groups: config.key_groups.max(1),
                shared: Arc::clone(&worker_shared),
                scheduler: RefCell::new(OutputScheduler::new(
                    Arc::clone(&worker_shared) as Arc<dyn ProgressSink>,
                    index % workers,
                    zero_ms,
                    interval_ms,
                    fault.map(|f| f.batch_ms),
                )),
                states: RefCell::new(crate::snapshot::StateRegistry::default()),
            });
            worker.dataflow::<u64, _, _>(|scope| {
                let mut compiler = Compiler {
                    scope,
                    env: Rc::clone(&env),
                    slide_ms: env.interval_ms,
                    operator_id: String::new(),
                    memo: HashMap::new(),
                };
                build(&mut compiler);
            });
            env.check_restore_image();
            // Every worker compiles the same plan, so all arrive at the same interval.
            let every = match env.checkpoint_every() {
                0 => env.interval_ms,
                every => every,
            };
            worker_shared.checkpoint_every.store(every, Ordering::Release);
            worker_shared
                .snapshotting
                .fetch_add(env.snapshotting.borrow().len(), Ordering::AcqRel);
            if worker_shared.compiled.fetch_add(1, Ordering::AcqRel) + 1 == workers {
                // Every local worker has restored what it owns.
                worker_shared.check_image_covered();
                crate::msg::lock(&worker_shared.restore).take();
            }
            // No worker runs a batch before every local worker has checked the restore image
            // (a worker that failed to compile has exited).
            while worker_shared.compiled.load(Ordering::Acquire) < workers
                && worker_shared.exited.load(Ordering::Acquire) == 0
                && !worker_shared.aborted()
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            if !crate::msg::lock(&worker_shared.restore_refusals).is_empty() {
                // No batch runs on state that does not fit the plan; `start` reports why.
                worker_shared.abort.store(true, Ordering::Release);
            }
            let park = Duration::from_millis(10);
            while !worker_shared.aborted() {
                if !worker.step_or_park(Some(park)) {
                    break;
                }
                if let Some(fault) = fault
                    && env.fault_due(fault)
                {
                    panic!(
                        "ember fault injection: worker {index} ends before the outputs of batch {} ms ran",
                        fault.batch_ms
                    );
                }
            }
            env.scheduler.borrow_mut().shut_down();
            if worker_shared.aborted() {
                // Nothing runs after an abort. Timely would otherwise step the dataflow until it
                // completes, which it never does once another worker is gone (a worker that
                // panicked, a lost process): the thread would never end.
                for dataflow in worker.installed_dataflows() {
                    worker.drop_dataflow(dataflow);
                }
            }
        })
        .map_err(LaunchError::Timely)?;
        Ok(Runtime {
            guards: Some(guards),
            shared,
            zero_ms,
        })
    }

    /// The zero time of the batches (ms): the first batch is one interval after it.
    pub fn zero_ms(&self) -> u64 {
        self.zero_ms
    }

    /// State shared with the workers.
    pub fn shared(&self) -> &Arc<RunShared> {
        &self.shared
    }

    /// Asks the sources to cut one last batch and finish. With `abort`, workers also drop
    /// batches still in flight.
    /// In a cluster, every process is asked to stop too.
    pub fn request_stop(&self, abort: bool) {
        self.shared.request_stop(abort);
    }

    /// Waits for every worker thread of this process to exit, then leaves the cluster's
    /// control plane cleanly. Never hangs: once every worker has exited, timely's own threads
    /// get 5 s (`JOIN_GRACE`) to end (one blocked on a lost peer is left behind, with a warning).
    ///
    /// # Errors
    ///
    /// The loss of a cluster peer, or the message of a worker thread that panicked (an ember
    /// bug).
    pub fn join(&mut self) -> Result<(), JoinError> {
        self.join_then(|| {})
    }

    /// [`Runtime::join`], calling `before_leaving` once the workers have exited and before
    /// this process leaves the cluster's control plane (for work that still talks to the other
    /// processes, such as committing a last checkpoint).
    ///
    /// # Errors
    ///
    /// As [`Runtime::join`].
    pub fn join_then(&mut self, before_leaving: impl FnOnce()) -> Result<(), JoinError> {
        let Some(guards) = self.guards.take() else {
            before_leaving();
            return Ok(());
        };
        let (done, joined) = std::sync::mpsc::channel();
        let joiner = std::thread::Builder::new().name("ember-join".into()).spawn(move || {
            let results: Vec<Result<(), String>> = guards.join();
            let _ = done.send(results);
        });
        let results = match joiner {
            Err(e) => vec![Err(format!("cannot start a thread to join the workers: {e}"))],
            Ok(joiner) => {
                let mut exited_at = None;
                loop {
                    match joined.recv_timeout(Duration::from_millis(20)) {
                        Ok(results) => {
                            // It has sent its last message; let it end before returning.
                            let _ = joiner.join();
                            break results;
                        }
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                            break vec![Err("the thread joining the workers panicked".to_owned())];
                        }
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    }
                    let lost = self.shared.cluster_failure().is_some();
                    if lost || self.shared.all_exited() {
                        let since = *exited_at.get_or_insert_with(Instant::now);
                        if lost && (self.shared.all_exited() || since.elapsed() > LOST_PEER_GRACE) {
                            tracing::debug!("The cluster lost a peer; timely's threads still running are left behind.");
                            break Vec::new();
                        }
                        if since.elapsed() > JOIN_GRACE {
                            tracing::warn!("Timely's threads did not end after the workers exited; leaving them behind.");
                            break Vec::new();
                        }
                    }
                }
            }
        };
        if self.shared.control.is_some() && results.iter().any(Result::is_err) {
            // In a cluster, timely's network threads fail the moment a peer's connection drops,
            // often before the control plane's reader has recorded the loss: give it the time
            // it needs, so that the error names the lost process rather than a failed thread.
            let deadline = Instant::now() + LOSS_GRACE;
            while self.shared.cluster_failure().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        before_leaving();
        if let Some(control) = &self.shared.control {
            control.close();
        }
        if let Some(lost) = self.shared.cluster_failure() {
            return Err(JoinError::Cluster(lost));
        }
        // Timely's join reports a panic as `Any { .. }`: the hook kept the message.
        if let Some(message) = crate::msg::lock(&self.shared.worker_panic).take() {
            return Err(JoinError::Worker(message));
        }
        match results.into_iter().find_map(Result::err) {
            Some(message) => Err(JoinError::Worker(message)),
            None => Ok(()),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if self.guards.is_some() {
            self.request_stop(true);
            let _ = self.join();
        }
    }
}

/// Connects this process to the others of the cluster (see [`crate::mesh`]) and builds timely's
/// allocators on the connections: never waits past the cluster's start timeout, nor once the
/// control plane has lost a process.
fn connect_cluster(
    cluster: &ClusterConfig,
    workers: usize,
    control: &ControlPlane,
    launched: Instant,
) -> Result<(Vec<timely::communication::AllocatorBuilder>, Box<dyn std::any::Any + Send>), LaunchError> {
    use timely::communication::allocator::ProcessBuilder;
    use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
    let deadline = launched + cluster.start_timeout;
    let lost = || control.failure().map(|e| e.to_string());
    let sockets = crate::mesh::connect(
        &cluster.addresses,
        cluster.process,
        deadline,
        &lost,
        cluster.secret.as_ref(),
        cluster.tls.as_ref(),
    )
    .map_err(|e| match e {
        crate::mesh::MeshError::Lost(_) => LaunchError::Control(
            control
                .failure()
                .unwrap_or_else(|| ControlError::Protocol("a process was lost".into())),
        ),
        crate::mesh::MeshError::Timeout(missing) => LaunchError::Control(ControlError::StartTimeout {
            addresses: missing.iter().filter_map(|p| cluster.addresses.get(*p).cloned()).collect(),
            missing,
            waited: launched.elapsed(),
        }),
        crate::mesh::MeshError::Failed(message) => LaunchError::Timely(message),
    })?;
    let hooks = timely::communication::Hooks::default();
    let process_allocators = ProcessBuilder::new_typed_vector(workers, hooks.refill.clone(), hooks.spill.clone());
    let (builders, guard) = initialize_networking_from_sockets(process_allocators, sockets, cluster.process, workers, hooks)
        .map_err(|e| LaunchError::Timely(format!("cannot start the network threads: {e}")))?;
    let allocators = builders.into_iter().map(timely::communication::AllocatorBuilder::Tcp).collect();
    Ok((allocators, Box::new(guard)))
}

/// The least common multiple of two positive numbers.
fn lcm(a: u64, b: u64) -> u64 {
    let (mut x, mut y) = (a, b);
    while y != 0 {
        (x, y) = (y, x % y);
    }
    (a / x).saturating_mul(b)
}

#[cfg(test)]
mod tests {
    use super::install_panic_hook;
    use std::process::Command;
    use std::sync::mpsc::{RecvTimeoutError, channel};
    use std::time::Duration;

    /// Rust aborts the process when a destructor panics while its thread unwinds; timely's
    /// channel endpoints do that after a peer's loss. The hook parks such a timely thread
    /// instead. Run in a child process (this test binary again): the parked thread keeps the
    /// panic hook's lock, which the test harness takes when it ends, so the child leaves with
    /// `exit` once it has seen the thread parked; without the parking it dies by SIGABRT.
    #[test]
    fn a_timely_thread_panicking_while_it_unwinds_after_a_peer_loss_is_parked_instead_of_aborting() {
        if std::env::var("EMBER_PARK_CHILD").is_ok() {
            return park_child();
        }
        let output = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "runtime::tests::a_timely_thread_panicking_while_it_unwinds_after_a_peer_loss_is_parked_instead_of_aborting",
                "--nocapture",
            ])
            .env("EMBER_PARK_CHILD", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.code() == Some(0) && stdout.contains("EMBER-PARKED"),
            "the child did not see its thread parked ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn park_child() {
        install_panic_hook();
        struct PanicsOnDrop;
        impl Drop for PanicsOnDrop {
            fn drop(&mut self) {
                panic!("MergeQueue poisoned.");
            }
        }
        let (ended, watch) = channel::<()>();
        let thread = std::thread::Builder::new()
            .name("timely:recv-9".into())
            .spawn(move || {
                let _ended = ended;
                let _endpoint = PanicsOnDrop;
                panic!("timely communication error: a peer went away (a test)");
            })
            .unwrap();
        assert_eq!(watch.recv_timeout(Duration::from_secs(1)), Err(RecvTimeoutError::Timeout));
        assert!(!thread.is_finished(), "the thread should be parked for good");
        println!("EMBER-PARKED");
        std::process::exit(0);
    }
}
