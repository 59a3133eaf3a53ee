//! The output scheduler: runs each worker's output actions in batch order and, within a batch,
//! in registration order (as Spark's job scheduler does), on a thread of their own.
//!
//! Output functions (a `foreach_rdd` that writes to a database, a slow `print`) must not stop
//! the worker thread from taking the next batch's input, so the dataflow thread only hands
//! ready actions to the worker's output thread. That thread publishes progress when a batch's
//! actions are done; sources read it to stay at most `max_batches_in_flight` batches ahead.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use timely::scheduling::SyncActivator;

/// Where the output thread reports: the batches a worker has fully output, and whether a stop
/// without grace means queued outputs are dropped.
pub trait ProgressSink: Send + Sync {
    /// Local worker `local_index` has output every batch up to `done` (inclusive).
    fn publish(&self, local_index: usize, done: u64);
    /// Whether outputs still queued are to be dropped.
    fn aborted(&self) -> bool;
}

/// An output's work for one batch.
pub(crate) type OutputAction = Box<dyn FnOnce() + Send>;

enum Job {
    Run(OutputAction),
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
    /// The output thread and the channel to it; each message is every job of one hand-over,
    /// so that the thread is woken once per batch at most.
    thread: Option<(Sender<Vec<Job>>, JoinHandle<()>)>,
}

impl OutputScheduler {
    pub(crate) fn new(shared: Arc<dyn ProgressSink>, local_index: usize, zero_ms: u64, interval_ms: u64) -> Self {
        OutputScheduler {
            handed_over: Vec::new(),
            pending: BTreeMap::new(),
            sent: 0,
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
        }
    }

    pub(crate) fn register(&mut self, first_batch: u64) -> usize {
        self.handed_over.push(first_batch);
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
        let limit = self.handed_over.iter().copied().min().unwrap_or(u64::MAX);
        if limit <= self.sent {
            return;
        }
        let mut jobs = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0 >= limit {
                break;
            }
            jobs.push(Job::Run(entry.remove()));
        }
        self.sent = limit;
        if jobs.is_empty() && self.progress.queued.load(Ordering::Acquire) == 0 {
            // Nothing to run and nothing queued before: the batches are done already (the
            // common case of workers that hold no gathered output, and of empty batches of
            // outputs that skip them), with no hand-over to the output thread.
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
            Some((sender, _)) => match sender.send(jobs) {
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

    fn output_thread(&mut self) -> Option<&(Sender<Vec<Job>>, JoinHandle<()>)> {
        if self.thread.is_none() {
            let (sender, receiver) = channel::<Vec<Job>>();
            let progress = Arc::clone(&self.progress);
            let name = format!("ember-output-{}", self.progress.local_index);
            match std::thread::Builder::new().name(name).spawn(move || {
                for jobs in receiver {
                    for job in jobs {
                        run_job(&progress, job);
                    }
                    progress.queued.fetch_sub(1, Ordering::AcqRel);
                }
            }) {
                Ok(handle) => self.thread = Some((sender, handle)),
                Err(error) => tracing::error!(%error, "Cannot start an output thread; outputs run on the worker thread."),
            }
        }
        self.thread.as_ref()
    }

    /// Every batch time below this has been handed to the output thread (or output already).
    pub fn handed_over(&self) -> u64 {
        self.sent
    }

    /// Every batch time below this has been fully output on this worker.
    pub fn processed(&self) -> u64 {
        self.progress.processed.load(Ordering::Acquire)
    }

    /// Lets the output thread finish what it was given (skipping it after an abort) and joins it.
    pub(crate) fn shut_down(&mut self) {
        if let Some((sender, handle)) = self.thread.take() {
            drop(sender);
            if handle.join().is_err() {
                tracing::error!("An output thread panicked; this is a bug in ember.");
            }
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
        Job::Run(action) if !progress.shared.aborted() => action(),
        Job::Run(_) => {}
        Job::Done(limit) => progress.finish(limit),
    }
}
