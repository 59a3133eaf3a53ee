//! Structured Streaming on ember: DataFrames and SQL over streams, as Spark's `sql` module
//! offers them (`spark.readStream`, `DataFrame`, `writeStream`).
//!
//! A stream is an unbounded table; a query on it is written as a batch query, and
//! `write_stream().output_mode(...).format("console").start()` keeps its result up to date.
//! Apache DataFusion parses SQL, plans, and evaluates expressions over Arrow record batches
//! (with `datafusion-spark`'s Spark functions, and Spark's `split` here); ember runs what is
//! incremental: every worker executes the plan's stateless part and the partial aggregates of
//! its partitions for each micro-batch (planned once, executed per batch), and the aggregates'
//! state is merged and finished as output modes say.
//!
//! ```no_run
//! use ember_sql::functions::{col, explode, split};
//! use ember_sql::SparkSession;
//!
//! let spark = SparkSession::builder().app_name("StructuredNetworkWordCount").master("local[2]").get_or_create()?;
//! let lines = spark.read_stream().format("socket").option("host", "localhost").option("port", "9999").load()?;
//! let words = lines.select([explode(split(col("value"), " ")).alias("word")])?;
//! let word_counts = words.group_by([col("word")]).count()?;
//! let query = word_counts.write_stream().output_mode("complete").format("console").start()?;
//! query.await_termination()?;
//! # Ok::<(), ember_sql::Error>(())
//! ```

mod aggregate;
mod checkpoint;
mod dataframe;
mod dedup;
mod error;
mod eventtime;
mod exec;
pub mod functions;
mod fused;
pub mod listener;
mod progress;
mod query;
mod reader;
mod session;
pub mod show;
mod sink;
mod source;
pub mod state;
mod streamjoin;
mod table;
mod types;
mod udf;

pub use dataframe::{DataFrame, GroupedData, Predicate};
/// Arrow, as DataFusion uses it (the record batches `foreach_batch` hands over).
pub use datafusion::arrow;
/// DataFusion's scalar values (the keys of [`GroupedData::flat_map_groups_with_state`]).
pub use datafusion::common::ScalarValue;
pub use error::{Error, Result};
pub use functions::Column;
pub use listener::{QueryStartedEvent, QueryTerminatedEvent, StreamingQueryListener};
pub use progress::{QueryProgress, SourceProgress};
pub use query::{DataStreamWriter, QueryStatus, StreamingQuery, Trigger};
pub use reader::DataStreamReader;
pub use session::{Builder, SparkSession};
pub use sink::OutputMode;
pub use sink::committed_files;
pub use state::{GroupState, GroupStateTimeout};
pub use table::DataFrameReader;
pub use types::schema_from_ddl;

/// A mutex's guard, whether or not a panicking holder poisoned it.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Record batches of `schema` as one Arrow IPC stream (the stateful operators' checkpointed
/// state; the Python bridge's batches for pyarrow).
#[doc(hidden)]
pub fn ipc_stream<'a>(
    schema: &datafusion::arrow::datatypes::SchemaRef,
    batches: impl IntoIterator<Item = &'a datafusion::arrow::array::RecordBatch>,
) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut writer = datafusion::arrow::ipc::writer::StreamWriter::try_new(&mut bytes, schema)?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    drop(writer);
    Ok(bytes)
}
