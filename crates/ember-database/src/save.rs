//! `SaveToDatabase`: the output operations on a `DStream` that write into a database.

use std::sync::Arc;

use ember::{Batch, DStream, Data};

use crate::Result;
use crate::sink::{DatabaseSink, Writer};
use crate::transaction::Transaction;
use crate::value::{SqlValue, ToRow};

/// Output operations that write a stream into a database (import this trait to call them on
/// a `DStream`).
pub trait SaveToDatabase<T> {
    /// Writes every batch into the sink's table, each element one row (see [`ToRow`]), exactly
    /// once per batch (see the [crate] documentation). Empty batches write only their record.
    ///
    /// # Errors
    ///
    /// [`Error::Config`](crate::Error::Config) for a sink set up wrongly (URL scheme, names, upsert key), checked
    /// here rather than at the first batch; ember's errors for an output added after start.
    fn save_to_database(&self, sink: DatabaseSink) -> Result<()>
    where
        T: ToRow;

    /// [`SaveToDatabase::save_to_database`] with each element turned into a row by `to_row`.
    ///
    /// # Errors
    ///
    /// As [`SaveToDatabase::save_to_database`].
    fn save_to_database_with<R: ToRow, F>(&self, sink: DatabaseSink, to_row: F) -> Result<()>
    where
        F: Fn(&T) -> R + Send + Sync + 'static;

    /// Runs `f` on every batch inside one database transaction, with the batch's partitions
    /// one by one (the seed's `foreachRDD(rdd => rdd.foreachPartition(...))` with a pooled
    /// connection instead of one per partition or record), exactly once per batch: the
    /// transaction also records the batch under `sink_id`, and a batch committed before is
    /// skipped. `f` may run again for the same batch when the database was unreachable; it
    /// must only write through the transaction.
    ///
    /// # Errors
    ///
    /// As [`SaveToDatabase::save_to_database`].
    fn foreach_partition_in_transaction<F>(&self, url: &str, sink_id: &str, f: F) -> Result<()>
    where
        F: Fn(&mut Transaction<'_>, &[T]) -> Result<()> + Send + Sync + 'static;
}

impl<T: Data> SaveToDatabase<T> for DStream<T> {
    fn save_to_database(&self, sink: DatabaseSink) -> Result<()>
    where
        T: ToRow,
    {
        register(self, sink, |x: &T, row: &mut Vec<SqlValue>| x.to_row(row))
    }

    fn save_to_database_with<R: ToRow, F>(&self, sink: DatabaseSink, to_row: F) -> Result<()>
    where
        F: Fn(&T) -> R + Send + Sync + 'static,
    {
        register(self, sink, move |x: &T, row: &mut Vec<SqlValue>| to_row(x).to_row(row))
    }

    fn foreach_partition_in_transaction<F>(&self, url: &str, sink_id: &str, f: F) -> Result<()>
    where
        F: Fn(&mut Transaction<'_>, &[T]) -> Result<()> + Send + Sync + 'static,
    {
        let writer = Arc::new(Writer::for_transactions(url, sink_id)?);
        self.register_output_operation("foreach_partition_in_transaction", move |batch: Batch<T>| {
            crate::transaction::run(&writer, batch.time(), batch.partitions(), &f)
        })?;
        Ok(())
    }
}

/// Adds the output of `save_to_database`: each element's values appended by `append`.
fn register<T: Data, A>(stream: &DStream<T>, sink: DatabaseSink, append: A) -> Result<()>
where
    A: Fn(&T, &mut Vec<SqlValue>) + Send + Sync + 'static,
{
    let writer = Arc::new(sink.open()?);
    let width = writer.columns().len();
    stream.register_output_operation("save_to_database", move |batch: Batch<T>| {
        let time_ms = batch.time().milliseconds();
        let mut values = Vec::with_capacity(batch.count() as usize * width);
        for (i, element) in batch.iter().enumerate() {
            let before = values.len();
            append(element, &mut values);
            if values.len() - before != width {
                return Err(format!(
                    "{}: batch {time_ms} ms not written: element {} gives {} values for the {width} columns {:?}",
                    writer.name,
                    i + 1,
                    values.len() - before,
                    writer.columns()
                ));
            }
        }
        writer.write(time_ms, &values)
    })?;
    Ok(())
}
