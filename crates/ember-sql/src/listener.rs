//! Listeners of a session's streaming queries (Spark's `StreamingQueryListener`, added with
//! `spark.streams.addListener`): told when a query starts, after each micro-batch's progress
//! report, and when it ends.
//!
//! Calls come from the thread that caused them: `on_query_started` from `start`, progress from
//! the query's output (a slow listener slows the query, as a slow `foreachBatch` does),
//! `on_query_terminated` from the stop. A listener that panics is logged and left in place; the
//! query goes on.

use std::sync::Arc;

use crate::progress::QueryProgress;

/// A query started (Spark's `QueryStartedEvent`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryStartedEvent {
    pub id: String,
    pub run_id: String,
    pub name: Option<String>,
    /// When it started (ms since the epoch).
    pub timestamp_ms: u64,
}

/// A query ended (Spark's `QueryTerminatedEvent`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryTerminatedEvent {
    pub id: String,
    pub run_id: String,
    /// Why, when it failed.
    pub exception: Option<String>,
}

/// What a listener hears (Spark's `StreamingQueryListener`); every method does nothing unless
/// implemented.
pub trait StreamingQueryListener: Send + Sync + 'static {
    /// A query of the session started.
    fn on_query_started(&self, _event: &QueryStartedEvent) {}
    /// A micro-batch of a query reported its progress.
    fn on_query_progress(&self, _progress: &QueryProgress) {}
    /// A query of the session ended (stopped, finished or failed).
    fn on_query_terminated(&self, _event: &QueryTerminatedEvent) {}
}

/// The listeners of a session.
#[derive(Default)]
pub(crate) struct Listeners {
    next: std::sync::atomic::AtomicU64,
    added: std::sync::Mutex<Vec<(u64, Arc<dyn StreamingQueryListener>)>>,
}

impl Listeners {
    pub fn add(&self, listener: Arc<dyn StreamingQueryListener>) -> u64 {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::lock(&self.added).push((id, listener));
        id
    }

    pub fn remove(&self, id: u64) -> bool {
        let mut added = crate::lock(&self.added);
        let before = added.len();
        added.retain(|(i, _)| *i != id);
        added.len() != before
    }

    /// Tells every listener, each call guarded against a panic.
    pub fn tell(&self, what: &str, call: impl Fn(&dyn StreamingQueryListener)) {
        let listeners: Vec<Arc<dyn StreamingQueryListener>> = crate::lock(&self.added).iter().map(|(_, l)| Arc::clone(l)).collect();
        for listener in listeners {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(listener.as_ref()))).is_err() {
                tracing::error!(event = what, "A streaming query listener panicked; the query goes on.");
            }
        }
    }
}

impl crate::session::SparkSession {
    /// Adds a listener of this session's queries (Spark's `spark.streams.addListener`);
    /// returns its id for [`SparkSession::remove_listener`](crate::SparkSession::remove_listener).
    pub fn add_listener(&self, listener: impl StreamingQueryListener) -> u64 {
        self.listeners().add(Arc::new(listener))
    }

    /// Removes a listener (Spark's `removeListener`); returns whether it was there.
    pub fn remove_listener(&self, id: u64) -> bool {
        self.listeners().remove(id)
    }
}
