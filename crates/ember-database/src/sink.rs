//! A database sink: its settings (`DatabaseSink`) and the writer that puts each batch into its
//! table in one transaction, exactly once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::binding::bind;
use crate::sql::{self, Mode};
use crate::value::SqlValue;
use crate::{Database, Error, Result, message, transient};

/// Where and how a stream's batches go into a table: the database URL, the table, its columns
/// in the order of each element's values, insert or upsert, and the sink's id for exactly-once.
#[derive(Clone)]
pub struct DatabaseSink {
    url: String,
    table: String,
    columns: Vec<String>,
    mode: Mode,
    sink_id: Option<String>,
    rows_per_statement: usize,
    row_by_row: bool,
    retry_for: Duration,
    keep_batch_records_for: Duration,
}

/// Shows the URL without its password.
impl std::fmt::Debug for DatabaseSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSink")
            .field("url", &crate::redact(&self.url))
            .field("table", &self.table)
            .field("columns", &self.columns)
            .field("mode", &self.mode)
            .field("sink_id", &self.sink_id)
            .finish_non_exhaustive()
    }
}

impl DatabaseSink {
    /// A sink writing into `table` (optionally `schema.table`) of the database at `url`:
    /// `sqlite://path`, `postgres://user:password@host:port/database`,
    /// `mysql://user:password@host:port/database` (MySQL and MariaDB).
    pub fn new(url: &str, table: &str) -> Self {
        DatabaseSink {
            url: url.to_owned(),
            table: table.to_owned(),
            columns: Vec::new(),
            mode: Mode::Insert,
            sink_id: None,
            rows_per_statement: 500,
            row_by_row: false,
            retry_for: Duration::from_secs(60),
            keep_batch_records_for: Duration::from_secs(24 * 3600),
        }
    }

    /// The table's columns that each element's values go into, in order (required).
    pub fn columns<I: IntoIterator<Item = S>, S: Into<String>>(mut self, columns: I) -> Self {
        self.columns = columns.into_iter().map(Into::into).collect();
        self
    }

    /// Upserts instead of inserting: a row whose `key` columns match an existing row's updates
    /// that row's other columns (`ON CONFLICT (key) DO UPDATE` in PostgreSQL and SQLite, `ON
    /// DUPLICATE KEY UPDATE` in MySQL/MariaDB). The table needs a primary or unique key on
    /// exactly these columns. Within one batch, the last row with a key wins.
    pub fn upsert_on<I: IntoIterator<Item = S>, S: Into<String>>(mut self, key: I) -> Self {
        self.mode = Mode::Upsert(key.into_iter().map(Into::into).collect());
        self
    }

    /// The id under which this sink records its committed batches (default: the table name).
    /// Keep it stable across versions of the program; two sinks writing one table need two ids.
    pub fn sink_id(mut self, id: &str) -> Self {
        self.sink_id = Some(id.to_owned());
        self
    }

    /// Rows per multi-row statement (default 500; lowered to stay within the databases' limit
    /// of bound values per statement).
    pub fn rows_per_statement(mut self, rows: usize) -> Self {
        self.rows_per_statement = rows.max(1);
        self
    }

    /// One statement per row, as the Spark seed's `foreachPartition` writes: much slower, kept
    /// to measure against (see BENCHMARKS.md). Still one transaction per batch.
    pub fn row_by_row(mut self) -> Self {
        self.row_by_row = true;
        self
    }

    /// How long an unreachable database is retried before the batch fails (default 60 s).
    /// `Duration::MAX` waits for it however long it takes; later batches queue behind (their
    /// number bounded by `max_batches_in_flight`) and a graceful stop waits too.
    pub fn retry_for(mut self, duration: Duration) -> Self {
        self.retry_for = duration;
        self
    }

    /// How long the records of committed batches are kept (default one day): a batch run
    /// again after a recovery is recognised only while its record is there.
    pub fn keep_batch_records_for(mut self, duration: Duration) -> Self {
        self.keep_batch_records_for = duration;
        self
    }

    /// Checks the sink and opens it for writing batches one call at a time, exactly once per
    /// batch time, for output layers above ember's DStreams (Structured Streaming's database
    /// sink); a `DStream` uses [`SaveToDatabase`](crate::SaveToDatabase) instead.
    ///
    /// # Errors
    ///
    /// As [`SaveToDatabase::save_to_database`](crate::SaveToDatabase::save_to_database).
    pub fn open_batch_writer(self) -> Result<BatchWriter> {
        Ok(BatchWriter { writer: self.open()? })
    }

    /// Checks the sink and opens its database's pool.
    pub(crate) fn open(self) -> Result<Writer> {
        sql::check_identifier("table", &self.table, true)?;
        if self.columns.is_empty() {
            return Err(Error::Config(format!(
                "the sink for table {} has no columns: call .columns([...])",
                self.table
            )));
        }
        for column in &self.columns {
            sql::check_identifier("column", column, false)?;
        }
        if let Mode::Upsert(key) = &self.mode {
            if key.is_empty() {
                return Err(Error::Config(format!("upsert_on for table {} names no column", self.table)));
            }
            if let Some(missing) = key.iter().find(|k| !self.columns.contains(k)) {
                return Err(Error::Config(format!(
                    "upsert_on for table {} names {missing}, which is not one of its columns {:?}",
                    self.table, self.columns
                )));
            }
        }
        let sink_id = self.sink_id.clone().unwrap_or_else(|| self.table.clone());
        if sink_id.is_empty() || sink_id.len() > 200 {
            return Err(Error::Config(format!("invalid sink id {sink_id:?}: 1 to 200 characters")));
        }
        let db = Database::open(&self.url)?;
        // At most ~30 000 bound values per statement (SQLite's limit is 32 766, MySQL's and
        // PostgreSQL's 65 535).
        let per_statement = if self.row_by_row {
            1
        } else {
            self.rows_per_statement.min((30_000 / self.columns.len()).max(1))
        };
        let full_statement = sql::insert(db.backend(), &self.table, &self.columns, &self.mode, per_statement);
        Ok(Writer {
            name: format!("save_to_database(sink {sink_id:?}, table {}, {})", self.table, db.url()),
            record_sql: db.backend().insert_batch_record(),
            prune_sql: db.backend().prune_batch_records(),
            sink_id,
            full_statement,
            per_statement,
            db,
            spec: self,
            table_ready: AtomicBool::new(false),
            batches: AtomicU64::new(0),
        })
    }
}

/// An opened [`DatabaseSink`] that writes whole batches (see
/// [`DatabaseSink::open_batch_writer`]).
pub struct BatchWriter {
    writer: Writer,
}

impl std::fmt::Debug for BatchWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchWriter").field("sink", &self.writer.name).finish()
    }
}

impl BatchWriter {
    /// The table's columns, in the order of each row's values.
    pub fn columns(&self) -> &[String] {
        self.writer.columns()
    }

    /// Writes the rows of the batch of `batch_time_ms` (`values` holds `columns().len()` values a
    /// row, row after row) in one transaction with the batch's record, unless that record is
    /// there already (the batch was committed before: nothing is written); retries while the
    /// database cannot be reached. The error names the sink and the URL without its password.
    ///
    /// # Errors
    ///
    /// The batch was not written: the database stayed unreachable, or refused a row.
    pub fn write_batch(&self, batch_time_ms: u64, values: &[SqlValue]) -> std::result::Result<(), String> {
        self.writer.write(batch_time_ms, values)
    }
}

/// What writing a batch came to.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Written(usize),
    /// The batch was committed before (its record is there): nothing written.
    AlreadyCommitted,
}

/// A sink at work: its checked settings, its pool, and its statements.
pub(crate) struct Writer {
    /// The sink in messages: `save_to_database(sink "id", table t, url)`.
    pub(crate) name: String,
    pub(crate) sink_id: String,
    record_sql: String,
    prune_sql: String,
    /// The statement for a full chunk of `per_statement` rows.
    full_statement: String,
    per_statement: usize,
    pub(crate) db: Database,
    spec: DatabaseSink,
    table_ready: AtomicBool,
    batches: AtomicU64,
}

impl Writer {
    /// The table's columns, in the order of each row's values.
    pub(crate) fn columns(&self) -> &[String] {
        &self.spec.columns
    }

    /// Opens a writer for `transaction` helpers: the batch-record table and retries only.
    pub(crate) fn for_transactions(url: &str, sink_id: &str) -> Result<Writer> {
        DatabaseSink::new(url, "unused").columns(["unused"]).sink_id(sink_id).open()
    }

    /// Writes one batch's values (`columns` per row) exactly once, retrying while the database
    /// cannot be reached.
    pub(crate) fn write(&self, time_ms: u64, values: &[SqlValue]) -> std::result::Result<(), String> {
        let rt = crate::runtime().map_err(|e| e.to_string())?;
        let outcome = self.with_retries(time_ms, |writer| rt.block_on(writer.try_write(time_ms, values)))?;
        if outcome == Outcome::AlreadyCommitted {
            tracing::info!(sink = %self.name, batch_ms = time_ms, "Batch committed before (run again after a recovery): not written again.");
        }
        Ok(())
    }

    /// Runs `attempt` until it succeeds, fails for good, or the database stayed unreachable for
    /// `retry_for`. A refused statement is explained by `explain`.
    pub(crate) fn with_retries<R>(
        &self,
        time_ms: u64,
        mut attempt: impl FnMut(&Self) -> Result<R, Failure>,
    ) -> std::result::Result<R, String> {
        // `None`: retried for ever (`retry_for` too long to add to the clock).
        let deadline = Instant::now().checked_add(self.spec.retry_for);
        let mut backoff = Duration::from_millis(100);
        let mut warned = false;
        loop {
            match attempt(self) {
                Ok(result) => {
                    if warned {
                        tracing::info!(sink = %self.name, batch_ms = time_ms, "The database answers again.");
                    }
                    return Ok(result);
                }
                Err(Failure::Sql(e)) if transient(&e) => {
                    if deadline.is_some_and(|d| Instant::now() + backoff > d) {
                        return Err(format!(
                            "{}: batch {time_ms} ms not written: the database stayed unreachable for {:?}: {}",
                            self.name,
                            self.spec.retry_for,
                            message(&e)
                        ));
                    }
                    if !warned {
                        tracing::warn!(sink = %self.name, batch_ms = time_ms, error = %message(&e), "Cannot reach the database; retrying.");
                        warned = true;
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(Failure::Sql(e)) => {
                    return Err(format!("{}: batch {time_ms} ms not written: {}", self.name, message(&e)));
                }
                Err(Failure::Refused(detail)) => {
                    return Err(format!("{}: batch {time_ms} ms not written: {detail}", self.name));
                }
            }
        }
    }

    /// Creates the batch-record table once per writer.
    pub(crate) async fn ensure_table(&self) -> Result<(), sqlx::Error> {
        if !self.table_ready.load(Ordering::Acquire) {
            let created = sqlx::query(&self.db.backend().create_batches_table()).execute(&self.db.pool).await;
            if let Err(e) = created {
                // Two processes creating it at once: fine if it is there now.
                let probe = format!("SELECT 1 FROM {} WHERE 1 = 0", sql::BATCHES_TABLE);
                if sqlx::query(&probe).execute(&self.db.pool).await.is_err() {
                    return Err(e);
                }
            }
            self.table_ready.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Inserts this batch's record in `tx`; `false` when it was committed before.
    pub(crate) async fn record_batch(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        time_ms: u64,
        rows: usize,
    ) -> Result<bool, sqlx::Error> {
        let inserted = sqlx::query(&self.record_sql)
            .bind(self.sink_id.as_str())
            .bind(time_ms as i64)
            .bind(rows as i64)
            .execute(&mut **tx)
            .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every so often, forgets batch records older than `keep_batch_records_for`.
    pub(crate) async fn prune(&self, time_ms: u64) {
        if !self.batches.fetch_add(1, Ordering::Relaxed).is_multiple_of(100) {
            return;
        }
        let before = time_ms.saturating_sub(self.spec.keep_batch_records_for.as_millis() as u64);
        let pruned = sqlx::query(&self.prune_sql)
            .bind(self.sink_id.as_str())
            .bind(before as i64)
            .execute(&self.db.pool)
            .await;
        if let Err(e) = pruned {
            tracing::debug!(sink = %self.name, error = %message(&e), "Could not delete old batch records; will try again.");
        }
    }

    /// One attempt at writing a batch in one transaction.
    async fn try_write(&self, time_ms: u64, values: &[SqlValue]) -> Result<Outcome, Failure> {
        self.ensure_table().await?;
        let width = self.spec.columns.len();
        let rows = values.len() / width;
        let mut tx = self.db.pool.begin().await?;
        if !self.record_batch(&mut tx, time_ms, rows).await? {
            tx.rollback().await?;
            return Ok(Outcome::AlreadyCommitted);
        }
        for chunk in values.chunks(width * self.per_statement) {
            if let Err(e) = self.insert(&mut tx, chunk).await {
                let _ = tx.rollback().await;
                if transient(&e) {
                    return Err(e.into());
                }
                return Err(Failure::Refused(self.explain(values, &e).await));
            }
        }
        tx.commit().await?;
        self.prune(time_ms).await;
        Ok(Outcome::Written(rows))
    }

    /// Inserts the rows of `chunk` with one statement.
    async fn insert(&self, tx: &mut sqlx::Transaction<'static, sqlx::Any>, chunk: &[SqlValue]) -> Result<(), sqlx::Error> {
        let width = self.spec.columns.len();
        let rows = chunk.len() / width;
        let has_null = chunk.contains(&SqlValue::Null);
        let statement = match (has_null, rows == self.per_statement) {
            (false, true) => std::borrow::Cow::Borrowed(self.full_statement.as_str()),
            (false, false) => sql::insert(self.db.backend(), &self.spec.table, &self.spec.columns, &self.spec.mode, rows).into(),
            (true, _) => {
                let rows: Vec<Vec<SqlValue>> = chunk.chunks(width).map(<[SqlValue]>::to_vec).collect();
                sql::insert_with_nulls(self.db.backend(), &self.spec.table, &self.spec.columns, &self.spec.mode, &rows).into()
            }
        };
        // Statements with NULL literals vary with the data: not worth preparing.
        let mut query = sqlx::query(&statement).persistent(!has_null);
        for value in chunk {
            query = bind(query, value);
        }
        query.execute(&mut **tx).await?;
        Ok(())
    }

    /// Finds the row the database refuses, writing the batch again row by row in a transaction
    /// that is rolled back; says which row, its values, and the database's message.
    async fn explain(&self, values: &[SqlValue], error: &sqlx::Error) -> String {
        let width = self.spec.columns.len();
        let found = async {
            let mut tx = self.db.pool.begin().await.ok()?;
            for (i, row) in values.chunks(width).enumerate() {
                if let Err(e) = self.insert(&mut tx, row).await {
                    let _ = tx.rollback().await;
                    return Some((i, e));
                }
            }
            let _ = tx.rollback().await;
            None
        }
        .await;
        match found {
            Some((i, e)) => {
                let row: Vec<String> = self
                    .spec
                    .columns
                    .iter()
                    .zip(&values[i * width..(i + 1) * width])
                    .map(|(c, v)| format!("{c}={v}"))
                    .collect();
                format!(
                    "row {} of {} ({}) refused by the database: {}",
                    i + 1,
                    values.len() / width,
                    row.join(", "),
                    message(&e)
                )
            }
            None => format!("refused by the database: {}", message(error)),
        }
    }
}

/// Why an attempt failed.
pub(crate) enum Failure {
    Sql(sqlx::Error),
    /// The database refused the batch; the explanation names the row.
    Refused(String),
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Failure::Sql(e)
    }
}
