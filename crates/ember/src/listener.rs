//! `StreamingListener`: Spark's events of a running job (streaming started; batches submitted,
//! started and completed with their `BatchInfo`; output operations started and completed;
//! receivers started, failing and stopped), delivered on a thread of their own.
//!
//! The engine and the receivers put events on a bounded queue without waiting
//! ([`QUEUE_CAPACITY`]); the `ember-listener` thread assembles each batch's `BatchInfo` and calls
//! the listeners in registration order. A listener slower than the job makes the queue fill:
//! events are then dropped and counted (`StreamingContext::dropped_listener_events`), with a
//! warning at most every 10 seconds, and the job never waits for a listener.
//!
//! Events are queued only while some listener is registered: a listener added while the job
//! runs sees the batches cut after it was added.
//!
//! In a cluster every process has its own listeners, which see that process's part of the
//! job: receivers and gathered outputs (`print`, `foreach_rdd`) run on process 0.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ember_engine::events::{EngineEvent, EventSink};
use serde::Serialize;

use crate::lock::lock;
use crate::sources::ReceiverInfo;
use crate::time::Time;

/// How many events wait for the listener thread before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 10_000;

/// Receives the events of a running job (Spark's `StreamingListener`). Every method has an
/// empty default; implement those you need. They run on the `ember-listener` thread, one event
/// at a time, in the order the events happened.
pub trait StreamingListener: Send + 'static {
    /// The context started.
    fn on_streaming_started(&mut self, _event: &StreamingStarted) {}
    /// A receiver started (and again after each restart).
    fn on_receiver_started(&mut self, _receiver: &ReceiverInfo) {}
    /// A receiver reported an error or asked to be restarted.
    fn on_receiver_error(&mut self, _receiver: &ReceiverInfo) {}
    /// A receiver stopped for good.
    fn on_receiver_stopped(&mut self, _receiver: &ReceiverInfo) {}
    /// A batch was cut: its time came and the sources handed over its input.
    fn on_batch_submitted(&mut self, _batch: &BatchInfo) {}
    /// A batch started processing (when it was cut, or when the batch before it completed).
    fn on_batch_started(&mut self, _batch: &BatchInfo) {}
    /// Every output operation of a batch has run.
    fn on_batch_completed(&mut self, _batch: &BatchInfo) {}
    /// An output operation of a batch started.
    fn on_output_operation_started(&mut self, _output: &OutputOperationInfo) {}
    /// An output operation of a batch ended, successfully or not.
    fn on_output_operation_completed(&mut self, _output: &OutputOperationInfo) {}
}

/// Spark's `StreamingListenerStreamingStarted`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StreamingStarted {
    /// When the context started (ms since the Unix epoch).
    pub time: u64,
}

/// One batch, as Spark's `BatchInfo` describes it. Times are milliseconds since the Unix epoch
/// (wall clock, whatever clock cuts the batches).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BatchInfo {
    /// The batch's time.
    pub batch_time: Time,
    /// Records each input stream brought into the batch, by the stream's name (`kind#id`).
    pub input_records: BTreeMap<String, u64>,
    /// When the batch was cut.
    pub submission_time: u64,
    /// When it started processing, once it has.
    pub processing_start_time: Option<u64>,
    /// When its last output operation ended, once it has.
    pub processing_end_time: Option<u64>,
    /// Its output operations, by their index in the order they were registered.
    pub output_operations: BTreeMap<usize, OutputOperationInfo>,
    /// Keys held by each stateful stream (`update_state_by_key`, `map_with_state`; by its name,
    /// `kind#id`) after the batch, over this process's workers (an ember addition).
    pub state_keys: BTreeMap<String, u64>,
}

impl BatchInfo {
    /// Records over every input stream (Spark's `numRecords`).
    pub fn num_records(&self) -> u64 {
        self.input_records.values().sum()
    }

    /// How long the batch waited before processing started (ms; Spark's `schedulingDelay`).
    pub fn scheduling_delay(&self) -> Option<u64> {
        Some(self.processing_start_time?.saturating_sub(self.submission_time))
    }

    /// How long processing took (ms; Spark's `processingDelay`).
    pub fn processing_delay(&self) -> Option<u64> {
        Some(self.processing_end_time?.saturating_sub(self.processing_start_time?))
    }

    /// Scheduling plus processing delay (ms; Spark's `totalDelay`).
    pub fn total_delay(&self) -> Option<u64> {
        Some(self.scheduling_delay()? + self.processing_delay()?)
    }

    /// Whether some output operation of the batch failed.
    pub fn failed(&self) -> bool {
        self.output_operations.values().any(|o| o.failure_reason.is_some())
    }
}

/// One output operation of one batch (Spark's `OutputOperationInfo`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutputOperationInfo {
    /// The batch's time.
    pub batch_time: Time,
    /// The output's index, in the order outputs were registered.
    pub id: usize,
    /// The output's name (`foreach_rdd#7`).
    pub name: String,
    /// When it started (ms since the Unix epoch).
    pub start_time: Option<u64>,
    /// When it ended.
    pub end_time: Option<u64>,
    /// Why it failed, if it did.
    pub failure_reason: Option<String>,
}

impl OutputOperationInfo {
    /// An output operation that started at `start_ms` and has not ended yet.
    fn started(time: u64, id: usize, name: &str, start_ms: u64) -> Self {
        OutputOperationInfo {
            batch_time: Time::from_millis(time),
            id,
            name: name.to_owned(),
            start_time: Some(start_ms),
            end_time: None,
            failure_reason: None,
        }
    }

    /// How long it ran (ms).
    pub fn duration(&self) -> Option<u64> {
        Some(self.end_time?.saturating_sub(self.start_time?))
    }
}

/// A registered listener, for [`StreamingContext::remove_streaming_listener`](crate::StreamingContext::remove_streaming_listener).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenerId(u64);

/// What reaches the listener thread.
pub(crate) enum BusEvent {
    Engine(EngineEvent),
    Started(u64),
    Receiver(ReceiverEventKind, ReceiverInfo),
}

/// Which receiver event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReceiverEventKind {
    Started,
    Error,
    Stopped,
}

type Listeners = Arc<Mutex<Vec<(ListenerId, Box<dyn StreamingListener>)>>>;

/// The queue between the job and the listener thread, and the listeners.
pub(crate) struct ListenerBus {
    sender: Mutex<Option<SyncSender<BusEvent>>>,
    listeners: Listeners,
    /// How many listeners are registered: without any, events are not queued at all (the
    /// job pays nothing for the listener machinery).
    registered: std::sync::atomic::AtomicUsize,
    next_id: AtomicU64,
    dropped: Arc<AtomicU64>,
    last_warning: Mutex<Option<Instant>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl ListenerBus {
    pub(crate) fn new() -> Self {
        ListenerBus {
            sender: Mutex::new(None),
            listeners: Arc::default(),
            registered: std::sync::atomic::AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            dropped: Arc::default(),
            last_warning: Mutex::new(None),
            thread: Mutex::new(None),
        }
    }

    pub(crate) fn add(&self, listener: Box<dyn StreamingListener>) -> ListenerId {
        let id = ListenerId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let mut listeners = lock(&self.listeners);
        listeners.push((id, listener));
        self.registered.store(listeners.len(), Ordering::Release);
        id
    }

    pub(crate) fn remove(&self, id: ListenerId) -> bool {
        let mut listeners = lock(&self.listeners);
        let before = listeners.len();
        listeners.retain(|(i, _)| *i != id);
        self.registered.store(listeners.len(), Ordering::Release);
        listeners.len() != before
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Starts the listener thread; returns the engine's event sink.
    pub(crate) fn start(self: &Arc<Self>) -> std::io::Result<EventSink> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(QUEUE_CAPACITY);
        let listeners = Arc::clone(&self.listeners);
        let thread = std::thread::Builder::new()
            .name("ember-listener".into())
            .spawn(move || deliver(&receiver, &listeners))?;
        *lock(&self.thread) = Some(thread);
        *lock(&self.sender) = Some(sender);
        let bus = Arc::downgrade(self);
        Ok(EventSink(Arc::new(move |event| {
            if let Some(bus) = bus.upgrade() {
                bus.send(BusEvent::Engine(event));
            }
        })))
    }

    /// Queues an event, or drops and counts it when the queue is full.
    pub(crate) fn send(&self, event: BusEvent) {
        if self.registered.load(Ordering::Acquire) == 0 {
            return;
        }
        let sender = lock(&self.sender).clone();
        let Some(sender) = sender else { return };
        if let Err(TrySendError::Full(_)) = sender.try_send(event) {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            let mut last = lock(&self.last_warning);
            if last.is_none_or(|at| at.elapsed().as_secs() >= 10) {
                *last = Some(Instant::now());
                tracing::warn!(
                    dropped,
                    "A streaming listener is slower than the job: its event queue is full and events are dropped."
                );
            }
        }
    }

    /// Delivers what is queued and ends the listener thread (waiting at most `wait` for a slow
    /// listener).
    pub(crate) fn stop(&self, wait: std::time::Duration) {
        drop(lock(&self.sender).take());
        let Some(thread) = lock(&self.thread).take() else { return };
        let deadline = Instant::now() + wait;
        while !thread.is_finished() {
            if Instant::now() >= deadline {
                tracing::warn!("A streaming listener is still busy after the context stopped; not waiting for it.");
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let _ = thread.join();
    }
}

/// Wall-clock milliseconds of an `Instant`.
struct WallClock {
    instant: Instant,
    wall_ms: u64,
}

impl WallClock {
    fn now() -> Self {
        WallClock {
            instant: Instant::now(),
            wall_ms: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.instant) {
            Some(after) => self.wall_ms + after.as_millis() as u64,
            None => self.wall_ms.saturating_sub(self.instant.duration_since(at).as_millis() as u64),
        }
    }
}

/// A batch being assembled.
struct Pending {
    info: BatchInfo,
    started: bool,
    /// Outputs that run on every worker: ended on how many of those that started.
    running: BTreeMap<usize, usize>,
    /// Outputs whose completion listeners were told.
    told: std::collections::BTreeSet<usize>,
}

/// The listener thread: assembles batches from the engine's events and calls the listeners.
fn deliver(receiver: &Receiver<BusEvent>, listeners: &Listeners) {
    let clock = WallClock::now();
    let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
    let mut last_completed: Option<u64> = None;
    let each = |f: &mut dyn FnMut(&mut dyn StreamingListener)| {
        for (_, listener) in lock(listeners).iter_mut() {
            f(listener.as_mut());
        }
    };
    while let Ok(event) = receiver.recv() {
        match event {
            BusEvent::Started(time) => each(&mut |l| l.on_streaming_started(&StreamingStarted { time })),
            BusEvent::Receiver(kind, info) => each(&mut |l| match kind {
                ReceiverEventKind::Started => l.on_receiver_started(&info),
                ReceiverEventKind::Error => l.on_receiver_error(&info),
                ReceiverEventKind::Stopped => l.on_receiver_stopped(&info),
            }),
            BusEvent::Engine(EngineEvent::BatchCut { time, at }) => {
                let info = BatchInfo {
                    batch_time: Time::from_millis(time),
                    input_records: BTreeMap::new(),
                    submission_time: clock.ms(at),
                    processing_start_time: None,
                    processing_end_time: None,
                    output_operations: BTreeMap::new(),
                    state_keys: BTreeMap::new(),
                };
                each(&mut |l| l.on_batch_submitted(&info));
                pending.insert(
                    time,
                    Pending {
                        info,
                        started: false,
                        running: BTreeMap::new(),
                        told: std::collections::BTreeSet::new(),
                    },
                );
            }
            BusEvent::Engine(EngineEvent::Input { source, time, records }) => {
                if let Some(batch) = pending.get_mut(&time) {
                    *batch.info.input_records.entry(source.to_string()).or_default() += records;
                }
            }
            BusEvent::Engine(EngineEvent::StateKeys { operator, time, keys }) => {
                if let Some(batch) = pending.get_mut(&time) {
                    *batch.info.state_keys.entry(operator.to_string()).or_default() += keys;
                }
            }
            BusEvent::Engine(EngineEvent::OutputStarted {
                output,
                name,
                per_worker,
                time,
                at,
            }) => {
                if hidden(&name) {
                    continue;
                }
                let Some(batch) = pending.get_mut(&time) else { continue };
                start_batch(batch, last_completed, &each);
                let entry = batch.info.output_operations.entry(output);
                let first = matches!(entry, std::collections::btree_map::Entry::Vacant(_));
                let op = entry.or_insert_with(|| OutputOperationInfo::started(time, output, &name, clock.ms(at)));
                if per_worker {
                    *batch.running.entry(output).or_default() += 1;
                }
                if first {
                    let op = op.clone();
                    each(&mut |l| l.on_output_operation_started(&op));
                }
            }
            BusEvent::Engine(EngineEvent::OutputCompleted {
                output,
                name,
                per_worker,
                time,
                started,
                ended,
                failure,
            }) => {
                if hidden(&name) {
                    continue;
                }
                let Some(batch) = pending.get_mut(&time) else { continue };
                start_batch(batch, last_completed, &each);
                let op = batch.info.output_operations.entry(output).or_insert_with(|| {
                    // Failed upstream: it never started.
                    let op = OutputOperationInfo::started(time, output, &name, clock.ms(started));
                    each(&mut |l| l.on_output_operation_started(&op));
                    op
                });
                op.end_time = Some(op.end_time.unwrap_or(0).max(clock.ms(ended)));
                if op.failure_reason.is_none() {
                    op.failure_reason = failure;
                }
                let done = match (per_worker, batch.running.get_mut(&output)) {
                    (true, Some(running)) => {
                        *running = running.saturating_sub(1);
                        *running == 0
                    }
                    _ => true,
                };
                if done && !per_worker {
                    let op = op.clone();
                    batch.told.insert(output);
                    each(&mut |l| l.on_output_operation_completed(&op));
                }
            }
            BusEvent::Engine(EngineEvent::BatchCompleted { through, at }) => {
                let done: Vec<u64> = pending.range(..=through).map(|(t, _)| *t).collect();
                for time in done {
                    let Some(mut batch) = pending.remove(&time) else { continue };
                    start_batch(&mut batch, last_completed, &each);
                    // Outputs on every worker (and any other not told yet) end with the batch.
                    for op in batch.info.output_operations.values() {
                        if !batch.told.contains(&op.id) {
                            each(&mut |l| l.on_output_operation_completed(op));
                        }
                    }
                    batch.info.processing_end_time = Some(clock.ms(at));
                    each(&mut |l| l.on_batch_completed(&batch.info));
                    last_completed = Some(clock.ms(at));
                }
            }
        }
    }
}

/// Outputs ember adds itself (`remember`'s): not shown to listeners.
fn hidden(name: &str) -> bool {
    name.starts_with("remember#")
}

/// Marks `batch` started, if it was not: when it was cut, or when the batch before it
/// completed if that was later.
fn start_batch(batch: &mut Pending, last_completed: Option<u64>, each: &dyn Fn(&mut dyn FnMut(&mut dyn StreamingListener))) {
    if batch.started {
        return;
    }
    batch.started = true;
    let start = batch.info.submission_time.max(last_completed.unwrap_or(0));
    batch.info.processing_start_time = Some(start);
    let info = batch.info.clone();
    each(&mut |l| l.on_batch_started(&info));
}

/// Logs a summary of the last `every` completed batches' delays (Spark's
/// `StatsReportListener`): minimum, quartiles and maximum of the scheduling, processing and
/// total delays, at `info` level.
#[derive(Debug)]
pub struct StatsReportListener {
    every: usize,
    batches: Vec<BatchInfo>,
}

impl StatsReportListener {
    /// A listener that reports every `every` batches (Spark's default is 10).
    pub fn new(every: usize) -> Self {
        StatsReportListener {
            every: every.max(1),
            batches: Vec::new(),
        }
    }

    /// The summary line of one delay over `batches`: `min 25% 50% 75% max` in ms.
    pub fn summary(batches: &[BatchInfo], delay: fn(&BatchInfo) -> Option<u64>) -> String {
        let mut values: Vec<u64> = batches.iter().filter_map(delay).collect();
        if values.is_empty() {
            return "no data".into();
        }
        values.sort_unstable();
        let at = |q: usize| values[(values.len() - 1) * q / 4];
        format!("{} {} {} {} {} ms", at(0), at(1), at(2), at(3), at(4))
    }
}

impl StreamingListener for StatsReportListener {
    fn on_batch_completed(&mut self, batch: &BatchInfo) {
        self.batches.push(batch.clone());
        if self.batches.len() >= self.every {
            tracing::info!(
                batches = self.batches.len(),
                scheduling_delay = %Self::summary(&self.batches, BatchInfo::scheduling_delay),
                processing_delay = %Self::summary(&self.batches, BatchInfo::processing_delay),
                total_delay = %Self::summary(&self.batches, BatchInfo::total_delay),
                "Batch delays (min, 25%, 50%, 75%, max)."
            );
            self.batches.clear();
        }
    }
}
