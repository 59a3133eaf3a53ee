//! What flows between ember operators: one batch's partitions, plus in-band markers.

use serde::{Deserialize, Serialize};

/// Elements that can flow through an ember stream.
///
/// Every element crosses worker threads and, in cluster mode, process boundaries (serialised
/// with bincode), so it must be cloneable, thread-safe and serde-serialisable.
pub trait Data: Clone + Send + Sync + Serialize + for<'de> Deserialize<'de> + 'static {}
impl<T: Clone + Send + Sync + Serialize + for<'de> Deserialize<'de> + 'static> Data for T {}

/// Keys of pair streams: data that can be hashed and compared.
pub trait Key: Data + std::hash::Hash + Eq {}
impl<T: Data + std::hash::Hash + Eq> Key for T {}

/// The position of a partition within its batch.
///
/// Ids compare lexicographically, which gives Spark's partition order: `union` prefixes the
/// left stream's ids with 0 and the right's with 1, so the left partitions come first.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartId(pub Vec<u32>);

impl PartId {
    /// The id of partition `index` of a freshly created batch.
    pub fn new(index: u32) -> Self {
        PartId(vec![index])
    }

    /// This id nested under `prefix` (used by unions).
    pub fn prefixed(mut self, prefix: u32) -> Self {
        self.0.insert(0, prefix);
        self
    }

    /// The outermost component, used to route a partition to a worker.
    pub fn head(&self) -> u32 {
        self.0.first().copied().unwrap_or(0)
    }
}

/// One partition of one batch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Part<T> {
    /// Where the partition sits in its batch.
    pub id: PartId,
    /// The partition's elements, in order.
    pub data: Vec<T>,
}

/// Why a batch's job failed: which operator, at which batch time, and what happened.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobFailure {
    /// Name of the operator that failed, with its plan id (for example `map#3`).
    pub operator: String,
    /// Batch time in milliseconds.
    pub time: u64,
    /// What went wrong.
    pub cause: FailureCause,
}

/// What made a batch's job fail, by who is at fault.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FailureCause {
    /// A user function panicked (the panic's message).
    Panic(String),
    /// A user function, or the input it read, returned an error (its message).
    Error(String),
    /// An operator needed its input's RDD for the batch and there was none (Spark's message).
    MissingInput(String),
    /// Operator state could not be written or read.
    State {
        /// The key group, if the problem is with one.
        group: Option<u32>,
        /// What went wrong.
        message: String,
    },
}

impl std::fmt::Display for FailureCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailureCause::Panic(message) | FailureCause::Error(message) | FailureCause::MissingInput(message) => f.write_str(message),
            FailureCause::State {
                group: Some(group),
                message,
            } => write!(f, "state of key group {group}: {message}"),
            FailureCause::State { group: None, message } => write!(f, "state: {message}"),
        }
    }
}

impl JobFailure {
    /// A failure of `operator` at batch `time` because of `cause`.
    pub fn new(operator: impl Into<String>, time: u64, cause: FailureCause) -> Self {
        JobFailure {
            operator: operator.into(),
            time,
            cause,
        }
    }
}

impl std::fmt::Display for JobFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "job for batch {} ms failed in {}: {}", self.time, self.operator, self.cause)
    }
}

/// A message on an ember stream.
///
/// Besides partitions, two markers travel in-band so that every operator downstream learns of
/// them in batch order: `NoRdd` (the source produced no RDD at all for this batch, Spark's
/// `None`, which element-wise operators pass on and combining operators turn into an error) and
/// `Failed` (the batch's job failed upstream; outputs skip the batch and report the failure).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Msg<T> {
    /// One partition of the batch.
    Part(Part<T>),
    /// The batch has no RDD.
    NoRdd,
    /// The batch's job failed.
    Failed(JobFailure),
}

/// Locks `m`, going on with the data if a panicking thread poisoned it: a thread that
/// panicked while holding a lock (a failing user function) must not take the engine, the
/// context or a source down with it.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Extracts a readable message from a caught panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "user function panicked with a non-string payload".to_owned()
    }
}
