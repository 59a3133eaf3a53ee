//! Database sinks for ember: write each batch of a stream into a table of SQLite, PostgreSQL or
//! MySQL/MariaDB, exactly once per batch, with multi-row statements over a pooled connection.
//!
//! ```no_run
//! use ember::prelude::*;
//! use ember_database::{DatabaseSink, SaveToDatabase};
//!
//! # fn main() -> Result<(), ember_database::Error> {
//! let ssc = StreamingContext::builder(seconds(1)).build()?;
//! let counts = ssc
//!     .socket_text_stream("localhost", 9999)
//!     .flat_map(|line: String| line.split(' ').map(str::to_owned).collect::<Vec<_>>())
//!     .map(|w| (w, 1i64))
//!     .reduce_by_key(|a, b| a + b);
//! // CREATE TABLE wordcount (word VARCHAR(100) PRIMARY KEY, count BIGINT)
//! counts.save_to_database(
//!     DatabaseSink::new("sqlite://counts.db", "wordcount").columns(["word", "count"]).upsert_on(["word"]),
//! )?;
//! ssc.start()?;
//! ssc.await_termination()?;
//! # Ok(())
//! # }
//! ```
//!
//! # Exactly once per batch
//!
//! A batch's rows and a record of the batch (the sink's id and the batch time) are committed in
//! one transaction. The record goes in first, into the table `ember_sink_batches` that ember
//! creates when missing:
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS ember_sink_batches (
//!     sink_id VARCHAR(200) NOT NULL, batch_time BIGINT NOT NULL, row_count BIGINT NOT NULL,
//!     PRIMARY KEY (sink_id, batch_time))
//! ```
//!
//! If the record is already there, the batch was committed before (a batch run again after a
//! recovery from a checkpoint with `StreamingContext::get_or_create`, or a commit whose
//! acknowledgement was lost and is retried): the transaction is rolled back and nothing is
//! written. The primary key makes this safe under the databases' default isolation (read
//! committed in PostgreSQL, repeatable read in MySQL/MariaDB, serialized writers in SQLite): a
//! second writer of the same batch waits for the first and then finds its record. Records older
//! than [`DatabaseSink::keep_batch_records_for`] (default one day) are deleted as batches go
//! by; a recovery replays only batches after the last checkpoint, far younger than that.
//!
//! The sink's id defaults to the table's name; give each sink writing the same table its own
//! with [`DatabaseSink::sink_id`], and keep it when the program changes, or batches run again
//! after a recovery are written twice.
//!
//! # Connections and threads
//!
//! ember's workers are synchronous. The drivers (sqlx) are asynchronous: one Tokio runtime per
//! process, with one thread named `ember-database`, runs them, and the output thread of worker 0
//! waits for each batch's transaction. A pool per database URL and process holds up to four
//! connections; statements are prepared once per connection and reused. The batch is gathered
//! on worker 0 and written by one transaction there, so a slow database delays the outputs of
//! later batches (at most `max_batches_in_flight` batches are computed ahead), never the
//! workers' processing.
//!
//! # Failures
//!
//! A database that cannot be reached (down at start or during a run, a dropped connection, a
//! deadlock or serialization failure) is retried with backoff (0.1 s doubling to 5 s) for
//! [`DatabaseSink::retry_for`] (default 60 s), then the batch fails with an error naming the
//! sink and the URL without its password; `await_termination` reports it and later batches go
//! on. A batch the database refuses (a row that violates the table's schema) is rolled back and
//! written again row by row to find the row, which the error shows with the database's message.
//! Credentials are never logged.

use std::sync::{Mutex, OnceLock};

mod binding;
mod save;
mod sink;
mod sql;
mod transaction;
mod value;

pub use save::SaveToDatabase;
pub use sink::{BatchWriter, DatabaseSink};
pub use sql::{BATCHES_TABLE, Backend};
pub use transaction::Transaction;
pub use value::{SqlValue, ToRow};

/// What can go wrong with a database sink.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A sink set up wrongly: an unsupported URL, a bad table or column name.
    #[error("{0}")]
    Config(String),
    /// A statement the database refused or a connection that failed, with the URL (without its
    /// password) and the database's message.
    #[error("{0}")]
    Database(String),
    /// An error of ember's (registering the output operation).
    #[error(transparent)]
    Ember(#[from] ember::Error),
}

/// The result of this crate's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `url` without its password (user info keeps the user name; `password=` query parameters
/// go), for messages and logs.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(None);
            }
            let pairs: Vec<(String, String)> = parsed
                .query_pairs()
                .filter(|(k, _)| !k.eq_ignore_ascii_case("password"))
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if parsed.query().is_some() {
                if pairs.is_empty() {
                    parsed.set_query(None);
                } else {
                    parsed.query_pairs_mut().clear().extend_pairs(pairs);
                }
            }
            parsed.to_string()
        }
        // Not a URL: show only its scheme, in case the rest holds a secret.
        Err(_) => format!("{}://…", url.split_once(':').map_or("?", |(s, _)| s)),
    }
}

/// The process's runtime for the database drivers.
fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("ember-database")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the database runtime: {e}"))
        })
        .as_ref()
        .map_err(|e| Error::Database(e.clone()))
}

/// A database: its URL and the process's pool of connections to it.
#[derive(Clone, Debug)]
pub struct Database {
    backend: Backend,
    /// The URL without its password, for messages.
    shown: String,
    pool: sqlx::AnyPool,
}

impl Database {
    /// The process's pool for `url` (made on first use; no connection is opened until one is
    /// needed, so a database down now is only retried when a batch is written).
    ///
    /// `sqlite://path` creates the file when missing (`?mode=rwc`) unless the URL says
    /// otherwise.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an unsupported scheme or a URL the driver cannot parse.
    pub fn open(url: &str) -> Result<Database> {
        static POOLS: Mutex<Vec<(String, Database)>> = Mutex::new(Vec::new());
        let backend = Backend::of(url)?;
        let mut pools = POOLS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, db)) = pools.iter().find(|(u, _)| u == url) {
            return Ok(db.clone());
        }
        let mut full = url.to_owned();
        if backend == Backend::Sqlite && !url.contains("mode=") {
            full.push_str(if url.contains('?') { "&mode=rwc" } else { "?mode=rwc" });
        }
        static DRIVERS: std::sync::Once = std::sync::Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let _context = runtime()?.enter();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_lazy(&full)
            .map_err(|e| Error::Config(format!("invalid database URL {}: {e}", redact(url))))?;
        let db = Database {
            backend,
            shown: redact(url),
            pool,
        };
        pools.push((url.to_owned(), db.clone()));
        Ok(db)
    }

    /// Runs one statement outside any stream (creating a table, say), waiting for it; returns
    /// the number of rows it affected. Parameters as in [`Transaction::execute`].
    ///
    /// # Errors
    ///
    /// [`Error::Database`] with the URL (without its password) and the database's message.
    pub fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<u64> {
        let query = binding::bind_all(sqlx::query(sql), params);
        runtime()?
            .block_on(query.execute(&self.pool))
            .map(|done| done.rows_affected())
            .map_err(|e| Error::Database(format!("{} ({}): {}", sql, self.shown, message(&e))))
    }

    /// Runs one query outside any stream, waiting for its rows (values as in
    /// [`Transaction::query`]).
    ///
    /// # Errors
    ///
    /// As [`Database::execute`].
    pub fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>> {
        let query = binding::bind_all(sqlx::query(sql), params);
        runtime()?
            .block_on(query.fetch_all(&self.pool))
            .map(|rows| rows.iter().map(binding::row_values).collect())
            .map_err(|e| Error::Database(format!("{} ({}): {}", sql, self.shown, message(&e))))
    }

    /// Forgets which batches the sink `sink_id` committed, so that the batches of a new run
    /// with the same times are written again (for a job started afresh, without its
    /// checkpoint, whose old rows you deleted). Returns how many records went.
    ///
    /// # Errors
    ///
    /// As [`Database::execute`].
    pub fn forget_batches(&self, sink_id: &str) -> Result<u64> {
        self.execute(&self.backend.create_batches_table(), &[])?;
        let sql = format!("DELETE FROM {BATCHES_TABLE} WHERE sink_id = {}", self.backend.placeholder_text(1));
        self.execute(&sql, &[SqlValue::from(sink_id)])
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL without its password.
    pub fn url(&self) -> &str {
        &self.shown
    }
}

/// Whether a failure may go away by trying again: the connection, the server's availability,
/// a deadlock or a serialization failure, SQLite's busy database.
pub(crate) fn transient(error: &sqlx::Error) -> bool {
    use sqlx::Error as E;
    match error {
        E::Io(_) | E::PoolTimedOut | E::PoolClosed | E::Tls(_) | E::Protocol(_) | E::WorkerCrashed => true,
        E::Database(db) => {
            let code = db.code().unwrap_or_default();
            // SQLSTATE class 08: connection exceptions (MySQL's server shutdown is 08S01);
            // 40001 serialization failure / MySQL deadlock; 40P01 deadlock; 57P01-03 server
            // shutting down or starting; 53300 too many connections; SQLite 5/6 busy/locked
            // (extended codes keep the primary code in the low byte).
            code.starts_with("08")
                || matches!(code.as_ref(), "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300")
                || code.parse::<u32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
        }
        _ => false,
    }
}

/// The database's message for an error.
pub(crate) fn message(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (code {code})", db.message()),
            None => db.message().to_owned(),
        },
        other => other.to_string(),
    }
}
