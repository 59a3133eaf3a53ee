//! `save_to_database` and `foreach_partition_in_transaction` against real SQLite, PostgreSQL
//! and MariaDB: rows per batch exact, upserts, a batch run again writes nothing twice, a server
//! that goes away and comes back loses nothing, a refused row is named, and credentials never
//! show. PostgreSQL and MariaDB are at `EMBER_TEST_POSTGRES_URL` and `EMBER_TEST_MYSQL_URL`
//! (defaults: the machine's local servers); a server that cannot be reached fails the test.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use ember::prelude::*;
use ember_database::{DatabaseSink, SaveToDatabase, SqlValue};
use sqlx::Row as _;

fn postgres_url() -> String {
    std::env::var("EMBER_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn mysql_url() -> String {
    std::env::var("EMBER_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// A fresh SQLite database file for one test.
fn sqlite_url(test: &str) -> (tempdir::Dir, String) {
    let dir = tempdir::Dir::new(test);
    let url = format!("sqlite://{}", dir.path.join("test.db").display());
    (dir, url)
}

mod tempdir {
    pub struct Dir {
        pub path: std::path::PathBuf,
    }
    impl Dir {
        pub fn new(name: &str) -> Dir {
            let path = std::env::temp_dir().join(format!("ember-database-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Dir { path }
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Runs SQL statements and queries from the test, on its own runtime and connection.
struct Admin {
    rt: tokio::runtime::Runtime,
    pool: sqlx::AnyPool,
}

impl Admin {
    fn new(url: &str) -> Admin {
        sqlx::any::install_default_drivers();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let full = if url.starts_with("sqlite:") {
            format!("{url}?mode=rwc")
        } else {
            url.to_owned()
        };
        let pool = rt
            .block_on(sqlx::any::AnyPoolOptions::new().max_connections(1).connect(&full))
            .unwrap_or_else(|e| panic!("cannot reach the test database at {url}: {e} (is the server running? .ci/run starts it)"));
        Admin { rt, pool }
    }

    fn exec(&self, sql: &str) {
        self.rt
            .block_on(sqlx::query(sql).execute(&self.pool))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The rows of a query whose columns are text or integers, each column as text.
    fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        let rows = self
            .rt
            .block_on(sqlx::query(sql).fetch_all(&self.pool))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| match row.try_get::<i64, _>(i) {
                        Ok(n) => n.to_string(),
                        Err(_) => row.try_get::<String, _>(i).unwrap_or_else(|e| panic!("{sql} column {i}: {e}")),
                    })
                    .collect()
            })
            .collect()
    }

    /// A fresh table: dropped if there, then created with `columns`.
    fn table(&self, name: &str, columns: &str) {
        self.exec(&format!("DROP TABLE IF EXISTS {name}"));
        self.exec(&format!("CREATE TABLE {name} ({columns})"));
    }

    fn forget_sink(&self, sink_id: &str) {
        self.exec(
            "CREATE TABLE IF NOT EXISTS ember_sink_batches (sink_id VARCHAR(200) NOT NULL, batch_time BIGINT NOT NULL, \
             row_count BIGINT NOT NULL, PRIMARY KEY (sink_id, batch_time))",
        );
        self.exec(&format!("DELETE FROM ember_sink_batches WHERE sink_id = '{sink_id}'"));
    }
}

/// Expected rows of two columns, as `Admin::rows` reads them.
fn pairs<A: ToString, B: ToString>(rows: &[(A, B)]) -> Vec<Vec<String>> {
    rows.iter().map(|(a, b)| vec![a.to_string(), b.to_string()]).collect()
}

/// A name unique to this test run and backend.
fn unique(base: &str, backend: &str) -> String {
    format!("{base}_{backend}_{}", std::process::id())
}

/// Batch `b` (1-based) of the word input: `(word, batch)` pairs.
fn words(batches: &[&str]) -> Vec<Option<Vec<(String, i64)>>> {
    batches
        .iter()
        .enumerate()
        .map(|(i, line)| Some(line.split_whitespace().map(|w| (w.to_owned(), i as i64 + 1)).collect()))
        .collect()
}

/// Runs `build` over a manual clock for `n` batches on 2 workers; returns the failures.
fn run(n: u64, build: impl FnOnce(&StreamingContext)) -> Vec<String> {
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1))
        .workers(2)
        .manual_clock(&clock)
        .build()
        .unwrap();
    build(&ssc);
    ssc.start().unwrap();
    clock.advance(seconds(n));
    assert!(
        ssc.await_batch(Time::from_millis(n * 1000), seconds(120)).unwrap(),
        "batches did not complete"
    );
    ssc.stop(false).unwrap();
    ssc.failures().iter().map(ToString::to_string).collect()
}

/// Every row is written once, in the batch it belongs to; empty batches record themselves.
fn rows_per_batch_are_exact(url: &str, backend: &str) {
    let admin = Admin::new(url);
    let table = unique("rows", backend);
    admin.table(&table, "word VARCHAR(50) NOT NULL, batch BIGINT NOT NULL");
    admin.forget_sink(&table);
    let input = words(&["a b c a", "", "d e", "f g h i j k l m n o p"]);
    let failures = run(4, |ssc| {
        ssc.replay_stream(input.clone(), 3)
            .save_to_database(DatabaseSink::new(url, &table).columns(["word", "batch"]).rows_per_statement(4))
            .unwrap();
    });
    assert!(failures.is_empty(), "{failures:?}");
    let per_batch = admin.rows(&format!("SELECT batch, COUNT(*) FROM {table} GROUP BY batch ORDER BY batch"));
    assert_eq!(per_batch, pairs(&[(1, 4), (3, 2), (4, 11)]));
    let a = admin.rows(&format!("SELECT COUNT(*) FROM {table} WHERE word = 'a'"));
    assert_eq!(a, vec![vec!["2".to_owned()]]);
    let records = admin.rows(&format!(
        "SELECT batch_time, row_count FROM ember_sink_batches WHERE sink_id = '{table}' ORDER BY batch_time"
    ));
    let want = pairs(&[(1000, 4), (2000, 0), (3000, 2), (4000, 11)]);
    assert_eq!(records, want);
}

/// A stateful word count upserted by word: the table holds the latest count of each word.
fn upsert_keeps_the_latest_value_per_key(url: &str, backend: &str) {
    let admin = Admin::new(url);
    let table = unique("counts", backend);
    admin.table(&table, "word VARCHAR(50) NOT NULL PRIMARY KEY, count BIGINT NOT NULL");
    admin.forget_sink(&table);
    let input = words(&["hello spark", "hello ember hello", "spark"]);
    let failures = run(3, |ssc| {
        ssc.replay_stream(input.clone(), 2)
            .map(|(w, _)| (w, 1i64))
            .update_state_by_key(|new: Vec<i64>, old: Option<i64>| Some(old.unwrap_or(0) + new.iter().sum::<i64>()))
            .save_to_database(DatabaseSink::new(url, &table).columns(["word", "count"]).upsert_on(["word"]))
            .unwrap();
    });
    assert!(failures.is_empty(), "{failures:?}");
    let rows = admin.rows(&format!("SELECT word, count FROM {table} ORDER BY word"));
    let want = pairs(&[("ember", 1), ("hello", 3), ("spark", 2)]);
    assert_eq!(rows, want);
}

/// A second run over the same batch times (a restart that replays batches) writes only the
/// batches the first did not commit.
fn a_batch_run_again_writes_nothing_twice(url: &str, backend: &str) {
    let admin = Admin::new(url);
    let table = unique("replay", backend);
    admin.table(&table, "word VARCHAR(50) NOT NULL, batch BIGINT NOT NULL");
    admin.forget_sink(&table);
    let input = words(&["a b", "c d e", "f", "g h"]);
    let first: Vec<_> = input[..3].to_vec();
    let failures = run(3, |ssc| {
        ssc.replay_stream(first, 2)
            .save_to_database(DatabaseSink::new(url, &table).columns(["word", "batch"]))
            .unwrap();
    });
    assert!(failures.is_empty(), "{failures:?}");
    // Batches 1000 to 3000 again, then 4000.
    let failures = run(4, |ssc| {
        ssc.replay_stream(input.clone(), 2)
            .save_to_database(DatabaseSink::new(url, &table).columns(["word", "batch"]))
            .unwrap();
    });
    assert!(failures.is_empty(), "{failures:?}");
    let per_batch = admin.rows(&format!("SELECT batch, COUNT(*) FROM {table} GROUP BY batch ORDER BY batch"));
    let want = pairs(&[(1, 2), (2, 3), (3, 1), (4, 2)]);
    assert_eq!(per_batch, want);
}

/// A row the table refuses fails its batch with the row and the database's message; the batch
/// writes nothing and the next batches are written.
fn a_refused_row_is_named(url: &str, backend: &str) {
    let admin = Admin::new(url);
    let table = unique("refused", backend);
    admin.table(&table, "word VARCHAR(50) NOT NULL, n BIGINT NOT NULL");
    admin.forget_sink(&table);
    let input: Vec<Option<Vec<(String, Option<i64>)>>> = vec![
        Some(vec![("a".into(), Some(1))]),
        Some(vec![("b".into(), Some(2)), ("bad".into(), None), ("c".into(), Some(3))]),
        Some(vec![("d".into(), Some(4))]),
    ];
    let failures = run(3, |ssc| {
        ssc.replay_stream(input.clone(), 1)
            .save_to_database(DatabaseSink::new(url, &table).columns(["word", "n"]))
            .unwrap();
    });
    assert_eq!(failures.len(), 1, "{failures:?}");
    let failure = &failures[0];
    assert!(failure.contains("batch 2000 ms"), "{failure}");
    assert!(failure.contains("row 2 of 3 (word=\"bad\", n=NULL)"), "{failure}");
    assert!(failure.contains(&format!("table {table}")), "{failure}");
    let rows = admin.rows(&format!("SELECT word FROM {table} ORDER BY word"));
    assert_eq!(rows, vec![vec!["a".to_owned()], vec!["d".to_owned()]]);
}

/// The seed's pattern with a pooled transaction: the function's own SQL per partition,
/// skipped for a batch committed before.
fn foreach_partition_in_transaction_writes_once(url: &str, backend: &str) {
    let admin = Admin::new(url);
    let table = unique("own_sql", backend);
    let sink_id = unique("own_sql_sink", backend);
    admin.table(&table, "word VARCHAR(50) NOT NULL, batch BIGINT NOT NULL");
    admin.forget_sink(&sink_id);
    let input = words(&["a b c", "d"]);
    for _ in 0..2 {
        let (table, sink_id, url) = (table.clone(), sink_id.clone(), url.to_owned());
        let failures = run(2, |ssc| {
            ssc.replay_stream(input.clone(), 2)
                .foreach_partition_in_transaction(&url, &sink_id, move |tx, partition| {
                    let sql = match tx.backend() {
                        ember_database::Backend::Postgres => format!("INSERT INTO {table} (word, batch) VALUES ($1, $2)"),
                        _ => format!("INSERT INTO {table} (word, batch) VALUES (?, ?)"),
                    };
                    let batch = tx.batch_time().milliseconds() as i64 / 1000;
                    for (word, _) in partition {
                        tx.execute(&sql, &[SqlValue::from(word.as_str()), SqlValue::Int(batch)])?;
                    }
                    Ok(())
                })
                .unwrap();
        });
        assert!(failures.is_empty(), "{failures:?}");
    }
    let rows = admin.rows(&format!("SELECT word, batch FROM {table} ORDER BY word"));
    let want = pairs(&[("a", 1), ("b", 1), ("c", 1), ("d", 2)]);
    assert_eq!(rows, want);
}

/// A TCP proxy in front of a database server that can go down (connections cut, port closed)
/// and come back on the same port: what a client sees when the server restarts.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Proxy {
            port,
            up: Arc::new(AtomicBool::new(true)),
            open: Arc::new(Mutex::new(Vec::new())),
        };
        let (up, open) = (Arc::clone(&proxy.up), Arc::clone(&proxy.open));
        std::thread::spawn(move || {
            let mut listener = Some(listener);
            loop {
                match (&listener, up.load(Ordering::Acquire)) {
                    (Some(_), false) => listener = None,
                    (None, true) => listener = TcpListener::bind(("127.0.0.1", port)).ok(),
                    _ => {}
                }
                let Some(l) = &listener else {
                    std::thread::sleep(StdDuration::from_millis(20));
                    continue;
                };
                l.set_nonblocking(true).unwrap();
                match l.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(&upstream) else { continue };
                        let mut guard = open.lock().unwrap();
                        guard.push(client.try_clone().unwrap());
                        guard.push(server.try_clone().unwrap());
                        pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                        pipe(server, client);
                    }
                    Err(_) => std::thread::sleep(StdDuration::from_millis(10)),
                }
            }
        });
        proxy
    }

    /// The server goes away: open connections are cut and new ones refused.
    fn down(&self) {
        self.up.store(false, Ordering::Release);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn back_up(&self) {
        self.up.store(true, Ordering::Release);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}

/// `url` with its host and port replaced by the proxy's.
fn through(url: &str, port: u16) -> (String, String) {
    let mut parsed = url::Url::parse(url).unwrap();
    let upstream = format!("{}:{}", parsed.host_str().unwrap(), parsed.port().unwrap());
    parsed.set_host(Some("127.0.0.1")).unwrap();
    parsed.set_port(Some(port)).unwrap();
    (parsed.to_string(), upstream)
}

/// The server goes away while batches are written and comes back: every batch is written
/// once, and the stream goes on.
fn a_server_restart_loses_nothing(url: &str, backend: &str) {
    let admin = Admin::new(url);
    let table = unique("outage", backend);
    admin.table(&table, "word VARCHAR(50) NOT NULL, batch BIGINT NOT NULL");
    admin.forget_sink(&table);
    let upstream = through(url, 0).1;
    let proxy = Proxy::start(upstream);
    let (proxied, _) = through(url, proxy.port);
    let input = words(&["a b", "c", "d e f", "g", "h i"]);
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1))
        .workers(2)
        .manual_clock(&clock)
        .build()
        .unwrap();
    ssc.replay_stream(input, 2)
        .save_to_database(DatabaseSink::new(&proxied, &table).columns(["word", "batch"]))
        .unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(2));
    assert!(ssc.await_batch(Time::from_millis(2000), seconds(60)).unwrap());
    proxy.down();
    clock.advance(seconds(2));
    std::thread::sleep(StdDuration::from_secs(2));
    // The outage is real: batches 3 and 4 could not be written while the server was away.
    let during = admin.rows(&format!("SELECT COUNT(*) FROM {table} WHERE batch >= 3"));
    assert_eq!(during, vec![vec!["0".to_owned()]]);
    proxy.back_up();
    clock.advance(seconds(1));
    assert!(ssc.await_batch(Time::from_millis(5000), seconds(60)).unwrap());
    ssc.stop(false).unwrap();
    let failures: Vec<String> = ssc.failures().iter().map(ToString::to_string).collect();
    assert!(failures.is_empty(), "{failures:?}");
    let per_batch = admin.rows(&format!("SELECT batch, COUNT(*) FROM {table} GROUP BY batch ORDER BY batch"));
    let want = pairs(&[(1, 2), (2, 1), (3, 3), (4, 1), (5, 2)]);
    assert_eq!(per_batch, want);
}

/// A database that cannot be reached fails the batch after `retry_for`, naming the sink and
/// the URL without its password.
#[test]
fn an_unreachable_database_fails_the_batch_without_showing_the_password() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("postgres://ember:s3cret-pw@127.0.0.1:{port}/test");
    let failures = run(1, |ssc| {
        ssc.replay_stream(words(&["a"]), 1)
            .save_to_database(
                DatabaseSink::new(&url, "nowhere")
                    .columns(["word", "batch"])
                    .retry_for(StdDuration::from_millis(700)),
            )
            .unwrap();
    });
    assert_eq!(failures.len(), 1, "{failures:?}");
    let failure = &failures[0];
    assert!(!failure.contains("s3cret"), "{failure}");
    assert!(failure.contains(&format!("postgres://ember@127.0.0.1:{port}/test")), "{failure}");
    assert!(failure.contains("unreachable"), "{failure}");
    let shown = format!("{:?}", DatabaseSink::new(&url, "t"));
    assert!(!shown.contains("s3cret") && shown.contains("postgres://ember@"), "{shown}");
}

#[test]
fn a_bad_sink_is_refused_when_registered() {
    let ssc = StreamingContext::new(seconds(1)).unwrap();
    let stream = ssc.replay_stream(words(&["a"]), 1);
    let err = stream
        .save_to_database(DatabaseSink::new("oracle://x", "t").columns(["a", "b"]))
        .unwrap_err();
    assert!(err.to_string().contains("unsupported database URL scheme"), "{err}");
    let err = stream
        .save_to_database(DatabaseSink::new("sqlite://x.db", "t; drop").columns(["a"]))
        .unwrap_err();
    assert!(err.to_string().contains("invalid table name"), "{err}");
    let err = stream
        .save_to_database(DatabaseSink::new("sqlite://x.db", "t").columns(["a", "b"]).upsert_on(["c"]))
        .unwrap_err();
    assert!(err.to_string().contains("names c"), "{err}");
    let err = stream.save_to_database(DatabaseSink::new("sqlite://x.db", "t")).unwrap_err();
    assert!(err.to_string().contains("no columns"), "{err}");
}

macro_rules! on_every_database {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $check() { let (_dir, url) = super::sqlite_url(stringify!($check)); super::$check(&url, "sqlite"); })*
        }
        mod postgres {
            $(#[test] fn $check() { super::$check(&super::postgres_url(), "pg"); })*
        }
        mod mariadb {
            $(#[test] fn $check() { super::$check(&super::mysql_url(), "my"); })*
        }
    };
}

on_every_database!(
    rows_per_batch_are_exact,
    upsert_keeps_the_latest_value_per_key,
    a_batch_run_again_writes_nothing_twice,
    a_refused_row_is_named,
    foreach_partition_in_transaction_writes_once,
);

#[test]
fn postgres_restart_loses_nothing() {
    a_server_restart_loses_nothing(&postgres_url(), "pg");
}

#[test]
fn mariadb_restart_loses_nothing() {
    a_server_restart_loses_nothing(&mysql_url(), "my");
}
