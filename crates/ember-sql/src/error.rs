//! Errors of Structured Streaming, named as Spark names them.

/// What can go wrong defining or running a streaming query.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Spark's `AnalysisException`: a query Spark refuses (unknown column, an unsupported
    /// operation on a stream, an output mode that cannot work), with Spark's message.
    #[error("{0}")]
    Analysis(String),
    /// Spark's `IllegalArgumentException`: a bad option value.
    #[error("{0}")]
    IllegalArgument(String),
    /// Something Spark has and ember does not yet.
    #[error("{0}")]
    Unsupported(String),
    /// DataFusion failed to plan or run part of the query.
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// Arrow failed on a record batch.
    #[error("{0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// ember's engine failed.
    #[error(transparent)]
    Ember(#[from] ember::Error),
    /// The query stopped because a micro-batch failed (Spark's `StreamingQueryException`).
    #[error("Query {name} terminated with exception: {message}")]
    StreamingQuery { name: String, message: String },
}

impl Error {
    pub(crate) fn analysis(message: impl Into<String>) -> Self {
        Error::Analysis(message.into())
    }

    pub(crate) fn illegal_argument(message: impl Into<String>) -> Self {
        Error::IllegalArgument(message.into())
    }

    pub(crate) fn unsupported(message: impl Into<String>) -> Self {
        Error::Unsupported(message.into())
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
