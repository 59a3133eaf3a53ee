//! Launching workers, compiling a plan on each of them, and the state they share.

#![allow(unsafe_code)] // `Compiler::memo` erases a stream lifetime; see the SAFETY note there.
use std::any::Any;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use timely::communication::WorkerGuards;
use timely::dataflow::Scope;
use timely::scheduling::Activator;

use crate::clock::Clock;
use crate::msg::{Data, JobFailure};

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
}

/// Everything the engine needs to run a plan.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Worker threads in this process.
    pub workers: usize,
    /// Cluster membership, or `None` for a single process.
    pub cluster: Option<ClusterConfig>,
    /// The clock that cuts batches.
    pub clock: Clock,
    /// The graph's zero time (ms); the first batch is at `zero_ms + interval_ms`.
    pub zero_ms: u64,
    /// The batch interval (ms).
    pub interval_ms: u64,
    /// How many batches sources may run ahead of the slowest output.
    pub max_batches_in_flight: u64,
    /// Number of key groups keyed state is spread over.
    pub key_groups: u32,
}

/// State shared by the driver and every worker of this process.
#[derive(Debug)]
pub struct RunShared {
    stop_requested: AtomicBool,
    abort: AtomicBool,
    final_time: AtomicU64,
    failures: Mutex<Vec<JobFailure>>,
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
    fn new(workers: usize) -> Self {
        RunShared {
            stop_requested: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            final_time: AtomicU64::new(0),
            failures: Mutex::new(Vec::new()),
            progress: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            exited: AtomicUsize::new(0),
            last_completed: AtomicU64::new(0),
            completions: Mutex::new(VecDeque::new()),
        }
    }

    /// Records a failed job. The first failure of a batch and operator is kept; repeats are not.
    pub fn report(&self, failure: JobFailure) {
        tracing::error!(operator = %failure.operator, batch_time_ms = failure.time, message = %failure.message, "A batch's job failed.");
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if !failures.contains(&failure) {
            failures.push(failure);
        }
    }

    /// Every failure reported so far, in the order they were reported.
    pub fn failures(&self) -> Vec<JobFailure> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether a stop was requested.
    pub fn stop_requested(&self) -> bool {
        self.stop_requested.load(Ordering::Acquire)
    }

    /// The last batch time the sources will generate, once they have agreed on it.
    pub fn final_time(&self) -> Option<u64> {
        match self.final_time.load(Ordering::Acquire) {
            0 => None,
            t => Some(t),
        }
    }

    /// Raises the last batch time to at least `t`, returning the agreed value.
    pub(crate) fn propose_final_time(&self, t: u64) -> u64 {
        self.final_time.fetch_max(t, Ordering::AcqRel).max(t)
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
        let completions = self.completions.lock().unwrap_or_else(|e| e.into_inner());
        completions.iter().find(|(t, _)| *t >= time).map(|(_, at)| *at)
    }

    /// Records that every batch up to `done` has finished, if that is news.
    fn note_completed(&self, done: u64) {
        if done == 0 || self.last_completed.fetch_max(done, Ordering::AcqRel) >= done {
            return;
        }
        let mut completions = self.completions.lock().unwrap_or_else(|e| e.into_inner());
        if completions.len() == COMPLETIONS_KEPT {
            completions.pop_front();
        }
        completions.push_back((done, Instant::now()));
    }

    /// Whether every local worker has exited.
    pub fn all_exited(&self) -> bool {
        self.exited.load(Ordering::Acquire) >= self.progress.len()
    }

    pub(crate) fn aborted(&self) -> bool {
        self.abort.load(Ordering::Acquire)
    }
}

/// Runs registered outputs of one worker in batch order and, within a batch, in registration
/// order, as Spark's job scheduler does.
#[derive(Default)]
pub struct OutputScheduler {
    /// Per output: every batch time below this has been handed over.
    handed_over: Vec<u64>,
    pending: BTreeMap<(u64, usize), Box<dyn FnOnce()>>,
    processed: u64,
    sources: Vec<Activator>,
}

impl OutputScheduler {
    pub(crate) fn register(&mut self, first_batch: u64) -> usize {
        self.handed_over.push(first_batch);
        self.processed = self.handed_over.iter().copied().min().unwrap_or(first_batch);
        self.handed_over.len() - 1
    }

    pub(crate) fn submit(&mut self, output: usize, time: u64, action: Box<dyn FnOnce()>) {
        self.pending.insert((time, output), action);
    }

    pub(crate) fn advance(&mut self, output: usize, handed_over: u64) {
        if let Some(slot) = self.handed_over.get_mut(output) {
            *slot = (*slot).max(handed_over);
        }
    }

    /// Runs every action whose batch all outputs have handed over; returns the new processed
    /// frontier (every batch time below it is done).
    pub(crate) fn run_ready(&mut self) -> u64 {
        let limit = self.handed_over.iter().copied().min().unwrap_or(u64::MAX);
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0 >= limit {
                break;
            }
            let action = entry.remove();
            action();
        }
        if limit > self.processed {
            self.processed = limit;
            for source in &self.sources {
                source.activate();
            }
        }
        self.processed
    }

    /// Every batch time below this has been fully output on this worker.
    pub fn processed(&self) -> u64 {
        self.processed
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
    /// Batch interval (ms).
    pub interval_ms: u64,
    /// The clock that cuts batches.
    pub clock: Clock,
    /// Maximum number of batches in flight.
    pub max_batches_in_flight: u64,
    /// Number of key groups keyed state is spread over.
    pub key_groups: u32,
    /// State shared with the driver.
    pub shared: Arc<RunShared>,
    pub(crate) scheduler: RefCell<OutputScheduler>,
}

impl WorkerEnv {
    /// The first batch time.
    pub fn first_batch(&self) -> u64 {
        self.zero_ms + self.interval_ms
    }

    pub(crate) fn add_source_activator(&self, activator: Activator) {
        self.scheduler.borrow_mut().sources.push(activator);
    }

    fn publish_progress(&self) {
        let processed = self.scheduler.borrow().processed();
        // `processed` is exclusive; publish the last batch time that is done.
        let done = processed.saturating_sub(1);
        let done = done - (done.saturating_sub(self.zero_ms) % self.interval_ms.max(1));
        if let Some(slot) = self.shared.progress.get(self.local_index)
            && slot.swap(done, Ordering::AcqRel) != done
            && let Some(all) = self.shared.processed_through()
        {
            self.shared.note_completed(all);
        }
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
    /// The first batch time on this grid.
    pub fn first(&self) -> u64 {
        self.env.zero_ms + self.step_ms
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
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("shared", &self.shared).finish_non_exhaustive()
    }
}

impl Runtime {
    /// Starts the workers of this process, each compiling the plan with `build`.
    ///
    /// # Errors
    ///
    /// Returns timely's message when the workers cannot be started (for example, a cluster peer
    /// cannot be reached).
    pub fn launch(config: RunConfig, build: BuildPlan) -> Result<Runtime, String> {
        let workers = config.workers.max(1);
        let shared = Arc::new(RunShared::new(workers));
        let communication = match &config.cluster {
            None if workers == 1 => timely::CommunicationConfig::Thread,
            None => timely::CommunicationConfig::Process(workers),
            Some(cluster) => timely::CommunicationConfig::Cluster {
                threads: workers,
                process: cluster.process,
                addresses: cluster.addresses.clone(),
                report: false,
                zerocopy: false,
            },
        };
        // Workers of a busy 2-core machine should park rather than spin.
        let worker = timely::WorkerConfig::default().idle_spin(Duration::from_micros(20));
        let timely_config = timely::Config { communication, worker };
        let worker_shared = Arc::clone(&shared);
        let guards = timely::execute(timely_config, move |worker| {
            let index = worker.index();
            let env = Rc::new(WorkerEnv {
                index,
                peers: worker.peers(),
                local_index: index % workers,
                zero_ms: config.zero_ms,
                interval_ms: config.interval_ms.max(1),
                clock: config.clock.clone(),
                max_batches_in_flight: config.max_batches_in_flight.max(1),
                key_groups: config.key_groups.max(1),
                shared: Arc::clone(&worker_shared),
                scheduler: RefCell::new(OutputScheduler::default()),
            });
            worker.dataflow::<u64, _, _>(|scope| {
                let mut compiler = Compiler {
                    scope,
                    env: Rc::clone(&env),
                    slide_ms: env.interval_ms,
                    memo: HashMap::new(),
                };
                build(&mut compiler);
            });
            let park = Duration::from_millis(10);
            while !worker_shared.aborted() {
                let more = worker.step_or_park(Some(park));
                env.publish_progress();
                if !more {
                    break;
                }
            }
            env.shared.progress[env.local_index].store(u64::MAX, Ordering::Release);
            worker_shared.exited.fetch_add(1, Ordering::AcqRel);
        })?;
        Ok(Runtime {
            guards: Some(guards),
            shared,
        })
    }

    /// State shared with the workers.
    pub fn shared(&self) -> &Arc<RunShared> {
        &self.shared
    }

    /// Asks the sources to cut one last batch and finish. With `abort`, workers also drop
    /// batches still in flight.
    pub fn request_stop(&self, abort: bool) {
        self.shared.stop_requested.store(true, Ordering::Release);
        if abort {
            self.shared.abort.store(true, Ordering::Release);
        }
    }

    /// Waits for every worker thread of this process to exit.
    ///
    /// # Errors
    ///
    /// Returns the message of a worker thread that panicked (an ember bug).
    pub fn join(&mut self) -> Result<(), String> {
        if let Some(guards) = self.guards.take() {
            for result in guards.join() {
                result?;
            }
        }
        Ok(())
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
