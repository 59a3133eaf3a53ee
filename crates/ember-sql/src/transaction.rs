//! `foreach_partition_in_transaction`: a user's own SQL per batch, in one pooled transaction
//! that also records the batch, so that a batch run again is skipped.

use ember::Time;
use sqlx::Row as _;

use crate::sink::{Failure, Writer};
use crate::value::SqlValue;
use crate::{Backend, Error, Result, message};

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

/// One row's columns as values.
pub(crate) fn row_values(row: &sqlx::any::AnyRow) -> Vec<SqlValue> {
    (0..row.len())
        .map(|i| {
            if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                return v.map_or(SqlValue::Null, SqlValue::Int);
            }
            if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
                return v.map_or(SqlValue::Null, SqlValue::Float);
            }
            if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                return v.map_or(SqlValue::Null, SqlValue::Text);
            }
            if let Ok(v) = row.try_get::<Option<bool>, _>(i) {
                return v.map_or(SqlValue::Null, SqlValue::Bool);
            }
            row.try_get::<Option<Vec<u8>>, _>(i)
                .ok()
                .flatten()
                .map_or(SqlValue::Null, SqlValue::Bytes)
        })
        .collect()
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds a non-null value (ember's own statements write nulls as literals).
pub(crate) fn bind<'q>(query: AnyQuery<'q>, value: &'q SqlValue) -> AnyQuery<'q> {
    match value {
        SqlValue::Null => query,
        other => bind_param(query, other),
    }
}

/// Binds `params` in order (nulls as text `NULL`s).
pub(crate) fn bind_all<'q>(mut query: AnyQuery<'q>, params: &'q [SqlValue]) -> AnyQuery<'q> {
    for value in params {
        query = bind_param(query, value);
    }
    query
}

/// Binds a value; a null as a text `NULL`.
fn bind_param<'q>(query: AnyQuery<'q>, value: &'q SqlValue) -> AnyQuery<'q> {
    match value {
        SqlValue::Null => query.bind(None::<String>),
        SqlValue::Bool(b) => query.bind(*b),
        SqlValue::Int(i) => query.bind(*i),
        SqlValue::Float(x) => query.bind(*x),
        SqlValue::Text(s) => query.bind(s.as_str()),
        SqlValue::Bytes(b) => query.bind(b.as_slice()),
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
