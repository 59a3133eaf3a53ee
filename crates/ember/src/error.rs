//! ember's error type.

use crate::time::Time;

/// ember's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, grouped by who is at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The program asked for something invalid while building the pipeline (the user's fault),
    /// for example a window that is not a multiple of the batch interval.
    #[error("invalid argument to {operation}: {message}")]
    InvalidArgument {
        /// The operation that was called.
        operation: &'static str,
        /// What is wrong with its arguments.
        message: String,
    },
    /// The context was used in a state that does not allow the call (the user's fault), for
    /// example adding an output after `start`.
    #[error("illegal state: {0}")]
    IllegalState(String),
    /// A batch's job failed: a user function panicked or returned an error, or an input had no
    /// data where an operator needed it.
    #[error("job for batch {time} failed in {operator}: {message}")]
    JobFailed {
        /// The operator, with its plan id (for example `map#3`).
        operator: String,
        /// The batch time.
        time: Time,
        /// What went wrong.
        message: String,
    },
    /// An input source met bad data or a failing external system.
    #[error("source {source_name} failed: {message}")]
    Source {
        /// The source (for example `socket_text_stream(localhost:9999)`).
        source_name: String,
        /// What went wrong, with the position where known.
        message: String,
    },
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What ember was doing.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The processes of a cluster could not work together: one did not join in time, they run
    /// different plans, or one was lost while running (it crashed or its machine went away).
    #[error("cluster: {0}")]
    Cluster(ember_engine::control::ControlError),
    /// A checkpoint cannot be used: none is intact, or it does not fit the plan (a stateful
    /// operator changed, the batch interval differs, the plan has a source that cannot be
    /// recovered).
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// Something that should not happen did; this is a bug in ember.
    #[error("internal error (this is a bug in ember): {0}")]
    Internal(String),
}

impl From<ember_engine::JobFailure> for Error {
    fn from(failure: ember_engine::JobFailure) -> Self {
        Error::JobFailed {
            operator: failure.operator,
            time: Time::from_millis(failure.time),
            message: failure.cause.to_string(),
        }
    }
}
