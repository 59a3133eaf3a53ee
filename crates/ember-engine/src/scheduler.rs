//! The output scheduler: runs each worker's output actions in batch order and, within a batch,
//! in registration order (as Spark's job scheduler does), on a thread of their own.
//!
//! Output functions (a `foreach_rdd` that writes to a database, a slow `print`) must not stop
//! the worker thread from taking the next batch's input, so the dataflow thread hands ready
//! actions to the worker's output thread, which publishes progress when a batch's actions are
//! done. Handing over costs a thread wake-up (some microseconds), and the output thread then
//! frees the batch the worker allocated (glibc's allocator makes such cross-thread frees cost
//! the worker's next allocations too). So an output whose last run was short, under 50 µs or
//! under 1/16 of the worker's time between batches (at most 1 ms), runs on the worker thread
//! while the output thread has nothing queued; an output's first run, and every run after a
//! slow one, go to the output thread. Sources stay at most `max_batches_in_flight` batches ahead of the batches
//! handed over, and twice that ahead of the finished ones.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use timely::scheduling::SyncActivator;

/// Where the output thread reports: the batches a worker has fully output, and whether a stop
/// without grace means queued outputs are dropped.
pub trait ProgressSink: Send + Sync {
    /// Local worker `local_index` has output every batch up to `done` (inclusive).
    fn publish(&self, local_index: usize, done: u64);
    /// Whether outputs still queued are to be dropped.
    fn aborted(&self) -> bool;
}

/// Outputs whose last run took at most this long run on the worker thread when the output
/// thread has nothing queued: handing them over would cost more than running them.
const INLINE_NS: u64 = 50_000;
/// Outputs whose last run took at most 1/`INLINE_SHARE` of the worker's time between batches
/// also run on the worker thread, up to this long: the worker loses little, and the batch is
/// freed on the thread that allocated it.
const INLINE_MAX_NS: u64 = 1_000_000;
const INLINE_SHARE: u64 = 16;

/// How long a stop without grace waits for an output that is still running.
const ABORT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A worker's output thread: the channel to it, its handle, and a channel that disconnects
/// when it ends.
struct OutputThread {
    sender: Sender<Vec<Job>>,
    handle: JoinHandle<()>,
    ended: std::sync::mpsc::Receiver<()>,
}

/// An output's work for one batch.
pub(crate) type OutputAction = Box<dyn FnOnce() + Send>;

enum Job {
    /// An output's action, with where to record how long it took.
    Run(OutputAction, Arc<AtomicU64>),
    /// Every action of the batches below this time has been sent.
    Done(u64),
}

/// Where the output thread publishes what it finished.
struct Progress {
    shared: Arc<dyn ProgressSink>,
    local_index: usize,
    zero_ms: u64,
    interval_ms: u64,
    /// Every batch time below this has been fully output on this worker.
    processed: AtomicU64,
    /// Hand-overs sent to the output thread and not finished yet.
    queued: AtomicU64,
    sources: Mutex<Vec<SyncActivator>>,
}

impl Progress {
    fn finish(&self, processed: u64) {
        // After a stop without grace (or the loss of a peer) outputs are skipped, so nothing
        // more counts as output: a checkpoint must not claim batches whose outputs never ran.
        if self.shared.aborted() {
            return;
        }
        if self.processed.fetch_max(processed, Ordering::AcqRel) >= processed {
            return;
        }
        // `processed` is exclusive; publish the last batch time that is done.
        let done = processed.saturating_sub(1);
        let done = done - (done.saturating_sub(self.zero_ms) % self.interval_ms.max(1));
        self.shared.publish(self.local_index, done);
        self.wake_sources();
    }

    fn wake_sources(&self) {
        for source in crate::msg::lock(&self.sources).iter() {
            // Fails only once the worker is gone, when nobody needs the wake-up.
            let _ = source.activate();
        }
    }
}

/// Hands one worker's ready output actions to its output thread, in order.
pub struct OutputScheduler {
    /// Per output: every batch time below this has been handed over.
    handed_over: Vec<u64>,
    pending: BTreeMap<(u64, usize), OutputAction>,
    /// Every batch time below this has been sent to the output thread.
    sent: u64,
    progress: Arc<Progress>,
    /// Per output: how long its last run took (ns); `u64::MAX` before its first run.
    last_run_ns: Vec<Arc<AtomicU64>>,
    /// The output thread and the channel to it; each message is every job of one hand-over,
    /// so that the thread is woken once per batch at most.
    thread: Option<OutputThread>,
    /// When batches were last handed over, and the longest output run that is done here.
    last_hand_over: Option<Instant>,
    inline_ns: u64,
    /// An injected fault's batch (see [`crate::fault`]): it and every batch after it are never
    /// handed over.
    withhold_from: Option<u64>,
    /// Every batch time below this is ready to hand over (the same as `sent` unless withheld).
    ready: u64,
}

impl OutputScheduler {
    pub(crate) fn new(
        shared: Arc<dyn ProgressSink>,
        local_index: usize,
        zero_ms: u64,
        interval_ms: u64,
        withhold_from: Option<u64>,
    ) -> Self {
        OutputScheduler {
            handed_over: Vec::new(),
            pending: BTreeMap::new(),
            sent: 0,
            last_run_ns: Vec::new(),
            progress: Arc::new(Progress {
                shared,
                local_index,
                zero_ms,
                interval_ms,
                processed: AtomicU64::new(0),
                queued: AtomicU64::new(0),
                sources: Mutex::new(Vec::new()),
            }),
            thread: None,
            last_hand_over: None,
            inline_ns: INLINE_NS,
            withhold_from,
            ready: 0,
        }
    }

    pub(crate) fn register(&mut self, first_batch: u64) -> usize {
        self.handed_over.push(first_batch);
        self.last_run_ns.push(Arc::new(AtomicU64::new(u64::MAX)));
        let lowest = self.handed_over.iter().copied().min().unwrap_or(first_batch);
        self.progress.processed.store(lowest, Ordering::Release);
        self.sent = lowest;
        self.handed_over.len() - 1
    }

    pub(crate) fn add_source(&self, activator: SyncActivator) {
        crate::msg::lock(&self.progress.sources).push(activator);
    }

    pub(crate) fn submit(&mut self, output: usize, time: u64, action: OutputAction) {
        self.pending.insert((time, output), action);
    }

    pub(crate) fn advance(&mut self, output: usize, handed_over: u64) {
        if let Some(slot) = self.handed_over.get_mut(output) {
            *slot = (*slot).max(handed_over);
        }
    }

    /// Sends every action whose batch all outputs have handed over to the output thread.
    pub(crate) fn run_ready(&mut self) {
        let ready = self.handed_over.iter().copied().min().unwrap_or(u64::MAX);
        self.ready = self.ready.max(ready);
        let limit = self.withhold_from.map_or(ready, |from| ready.min(from));
        if limit <= self.sent {
            return;
        }
        let now = Instant::now();
        if let Some(last) = self.last_hand_over.replace(now) {
            let gap = u64::try_from(now.duration_since(last).as_nanos()).unwrap_or(u64::MAX);
            self.inline_ns = (gap / INLINE_SHARE).clamp(INLINE_NS, INLINE_MAX_NS);
        }
        let mut jobs = Vec::new();
        let mut all_quick = true;
        while let Some(entry) = self.pending.first_entry() {
            let (time, output) = *entry.key();
            if time >= limit {
                break;
            }
            let timer = Arc::clone(&self.last_run_ns[output]);
            all_quick &= timer.load(Ordering::Relaxed) <= self.inline_ns;
            jobs.push(Job::Run(entry.remove(), timer));
        }
        self.sent = limit;
        if all_quick && self.progress.queued.load(Ordering::Acquire) == 0 {
            // Nothing queued before, and nothing to run but outputs whose last run was short
            // (or nothing at all: workers without a gathered output, empty batches of outputs
            // that skip them): run here, in order.
            // An output whose run turns slow goes to the output thread from then on, and every
            // output's first run goes there.
            for job in jobs {
                run_job(&self.progress, job);
            }
            self.progress.finish(limit);
            return;
        }
        jobs.push(Job::Done(limit));
        self.progress.queued.fetch_add(1, Ordering::AcqRel);
        // The batches are handed over: sources may cut more.
        self.progress.wake_sources();
        // Without an output thread (none could be started, or it died), run here rather than
        // lose output.
        let unsent = match self.output_thread() {
            Some(thread) => match thread.sender.send(jobs) {
                Ok(()) => return,
                Err(unsent) => unsent.0,
            },
            None => jobs,
        };
        for job in unsent {
            run_job(&self.progress, job);
        }
        self.progress.queued.fetch_sub(1, Ordering::AcqRel);
    }

    fn output_thread(&mut self) -> Option<&OutputThread> {
        if self.thread.is_none() {
            let (sender, receiver) = channel::<Vec<Job>>();
            let (ended, ended_rx) = channel::<()>();
            let progress = Arc::clone(&self.progress);
            let name = format!("ember-output-{}", self.progress.local_index);
            match std::thread::Builder::new().name(name).spawn(move || {
                // Dropped when the thread ends, however it ends.
                let _ended = ended;
                for jobs in receiver {
                    for job in jobs {
                        run_job(&progress, job);
                    }
                    progress.queued.fetch_sub(1, Ordering::AcqRel);
                }
            }) {
                Ok(handle) => {
                    self.thread = Some(OutputThread {
                        sender,
                        handle,
                        ended: ended_rx,
                    })
                }
                Err(error) => tracing::error!(%error, "Cannot start an output thread; outputs run on the worker thread."),
            }
        }
        self.thread.as_ref()
    }

    /// Whether batch `time` is ready here but withheld from the outputs by an injected fault.
    pub(crate) fn withheld(&self, time: u64) -> bool {
        self.withhold_from.is_some_and(|from| from <= time) && self.ready > time
    }

    /// Every batch time below this has been handed to the output thread (or output already).
    pub fn handed_over(&self) -> u64 {
        self.sent
    }

    /// Every batch time below this has been fully output on this worker.
    pub fn processed(&self) -> u64 {
        self.progress.processed.load(Ordering::Acquire)
    }

    /// Lets the output thread finish what it was given (skipping it after an abort) and joins
    /// it. After an abort, an output stuck in user code (a write to a server that never
    /// answers) is waited for [`ABORT_GRACE`] at most, then left behind with a warning, so that
    /// a stop without grace never hangs.
    pub(crate) fn shut_down(&mut self) {
        let Some(OutputThread { sender, handle, ended }) = self.thread.take() else {
            return;
        };
        drop(sender);
        if self.progress.shared.aborted()
            && let Err(RecvTimeoutError::Timeout) = ended.recv_timeout(ABORT_GRACE)
        {
            tracing::warn!(
                worker = self.progress.local_index,
                "An output is still running {} s after the stop; it is left behind.",
                ABORT_GRACE.as_secs()
            );
            return;
        }
        if handle.join().is_err() {
            tracing::error!("An output thread panicked; this is a bug in ember.");
        }
    }
}

impl Drop for OutputScheduler {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn run_job(progress: &Progress, job: Job) {
    match job {
        // After a stop without grace, batches still in flight are dropped.
        Job::Run(action, timer) if !progress.shared.aborted() => {
            let start = std::time::Instant::now();
            action();
            timer.store(start.elapsed().as_nanos().min(u128::from(u64::MAX - 1)) as u64, Ordering::Relaxed);
        }
        Job::Run(..) => {}
        Job::Done(limit) => progress.finish(limit),
    }
}
