//! `foreach_partition_in_transaction`: a user's own SQL per batch, in one pooled transaction
//! that also records the batch, so that a batch run again is skipped.

use crate::binding::{bind_all, row_values};
use crate::sink::{Failure, Writer};
use crate::value::SqlValue;
use crate::{Backend, Error, Result, message};
use ember::Time;

/// A batch's open transaction, handed to the function of
/// [`foreach_partition_in_transaction`](crate::SaveToDatabase::foreach_partition_in_transaction).
/// Its statements run synchronously; it commits when the function has seen every partition.
///
/// Placeholders follow the database: `$1, $2, ...` in PostgreSQL, `?` in SQLite and
/// MySQL/MariaDB ([`Transaction::backend`] tells which). A [`SqlValue::Null`] parameter is sent
/// as a text `NULL`; for columns of other types in PostgreSQL write `NULL` in the SQL instead.
pub struct Transaction<'a> {
    tx: &'a mut sqlx::Transaction<'static, sqlx::Any>,
    rt: &'static tokio::runtime::Runtime,
    backend: Backend,
    time: Time,
    /// A failure the function swallowed, which still fails the batch.
    failed: Option<sqlx::Error>,
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("backend", &self.backend)
            .field("time", &self.time)
            .finish_non_exhaustive()
    }
}

impl Transaction<'_> {
    /// The batch's time.
    pub fn batch_time(&self) -> Time {
        self.time
    }

    /// Which database this is (for its SQL dialect).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs a statement; returns the number of rows it affected.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] with the database's message; the batch then fails (or is retried,
    /// when the connection was lost) even if the function goes on.
    pub fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64> {
        let query = bind_all(sqlx::query(sql), params);
        let done = self.rt.block_on(query.execute(&mut **self.tx));
        match done {
            Ok(result) => Ok(result.rows_affected()),
            Err(e) => Err(self.fail(sql, e)),
        }
    }

    /// Runs a query; returns its rows, each column as a [`SqlValue`] (integers as `Int`,
    /// floating point as `Float`, text as `Text`, anything else as `Bytes` or `Null`).
    ///
    /// # Errors
    ///
    /// As [`Transaction::execute`].
    pub fn query(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>> {
        let query = bind_all(sqlx::query(sql), params);
        let fetched = self.rt.block_on(query.fetch_all(&mut **self.tx));
        match fetched {
            Ok(rows) => Ok(rows.iter().map(row_values).collect()),
            Err(e) => Err(self.fail(sql, e)),
        }
    }

    fn fail(&mut self, sql: &str, e: sqlx::Error) -> Error {
        let error = Error::Database(format!("{sql}: {}", message(&e)));
        self.failed.get_or_insert(e);
        error
    }
}

/// Runs `f` over a batch's partitions in one transaction that records the batch, with retries.
pub(crate) fn run<T>(
    writer: &Writer,
    time: Time,
    partitions: &[Vec<T>],
    f: &(dyn Fn(&mut Transaction<'_>, &[T]) -> Result<()> + Send + Sync),
) -> std::result::Result<(), String> {
    let rt = crate::runtime().map_err(|e| e.to_string())?;
    let time_ms = time.milliseconds();
    let rows: usize = partitions.iter().map(Vec::len).sum();
    let written = writer.with_retries(time_ms, |writer| {
        rt.block_on(writer.ensure_table())?;
        let mut tx = rt.block_on(writer.db.pool.begin())?;
        if !rt.block_on(writer.record_batch(&mut tx, time_ms, rows))? {
            rt.block_on(tx.rollback())?;
            return Ok(false);
        }
        let mut handle = Transaction {
            tx: &mut tx,
            rt,
            backend: writer.db.backend(),
            time,
            failed: None,
        };
        for partition in partitions {
            if let Err(e) = f(&mut handle, partition) {
                let failed = handle.failed.take();
                let _ = rt.block_on(tx.rollback());
                return Err(match failed {
                    Some(sql) if crate::transient(&sql) => Failure::Sql(sql),
                    _ => Failure::Refused(e.to_string()),
                });
            }
        }
        if let Some(e) = handle.failed.take() {
            let _ = rt.block_on(tx.rollback());
            return Err(match crate::transient(&e) {
                true => Failure::Sql(e),
                false => Failure::Refused(format!("a statement failed: {}", message(&e))),
            });
        }
        rt.block_on(tx.commit())?;
        rt.block_on(writer.prune(time_ms));
        Ok(true)
    })?;
    if !written {
        tracing::info!(sink = %writer.name, batch_ms = time_ms, "Batch committed before (run again after a recovery): skipped.");
    }
    Ok(())
}
