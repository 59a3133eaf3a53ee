//! What the engine tells a listener about a run: batches cut, input records counted, output
//! jobs run, batches completed. The events go to an [`EventSink`] (ember's listener bus), which
//! must not block: it runs on the worker and output threads.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

/// One thing that happened in this process's part of a run.
#[derive(Clone, Debug)]
pub enum EngineEvent {
    /// A local source cut batch `time` (once per batch time and process).
    BatchCut { time: u64, at: Instant },
    /// `records` records of input `source` (its label, `kind#id`) in batch `time`, counted on
    /// one worker; a batch's count is the sum over workers.
    Input { source: Arc<str>, time: u64, records: u64 },
    /// An output job of batch `time` started (per worker for outputs that run on every worker).
    OutputStarted {
        output: usize,
        name: Arc<str>,
        per_worker: bool,
        time: u64,
        at: Instant,
    },
    /// An output job of batch `time` ended, with the failure that ended it if any.
    OutputCompleted {
        output: usize,
        name: Arc<str>,
        per_worker: bool,
        time: u64,
        started: Instant,
        ended: Instant,
        failure: Option<String>,
    },
    /// After batch `time`, the state of stateful operator `operator` on one worker holds
    /// `keys` keys; the operator's count is the sum over workers.
    StateKeys { operator: Arc<str>, time: u64, keys: u64 },
    /// Every batch up to `through` (inclusive) finished on every local worker.
    BatchCompleted { through: u64, at: Instant },
}

/// Where the engine sends its [`EngineEvent`]s. The function must return at once (queue the
/// event, or drop it).
#[derive(Clone)]
pub struct EventSink(pub Arc<dyn Fn(EngineEvent) + Send + Sync>);

impl fmt::Debug for EventSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EventSink")
    }
}
