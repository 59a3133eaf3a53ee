//! The real PostgreSQL and MariaDB servers stopped and started again while a job writes into
//! them: the batches computed meanwhile wait in the sink's retries and are written once the
//! server is back, each exactly once, and the stream goes on.
//!
//! This binary holds one test, so that no other test uses the servers while they are down
//! (cargo runs test binaries one after another). It stops and starts PostgreSQL with `service`
//! and MariaDB with `mysqladmin shutdown` and `mysqld_safe` (Debian's init script needs a
//! `debian.cnf` these machines lack), as root on the CI machine; if it cannot, it fails, naming
//! the command.

use std::process::Command;
use std::time::{Duration as StdDuration, Instant};

use ember::prelude::*;
use ember_database::{Database, DatabaseSink, SaveToDatabase, SqlValue};

fn command(program: &str, args: &[&str]) {
    let shown = format!("{program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("cannot run `{shown}`: {e}"));
    assert!(status.success(), "`{shown}` failed: {status}");
}

/// Stops (`up == false`) or starts the server of `backend`.
fn server(backend: &str, up: bool) {
    match (backend, up) {
        ("postgresql", false) => command("service", &["postgresql", "stop"]),
        ("postgresql", true) => command("service", &["postgresql", "start"]),
        ("mariadb", false) => command("mysqladmin", &["-h", "127.0.0.1", "-u", "root", "shutdown"]),
        // Detached, so that the server outlives this test.
        ("mariadb", true) => command("setsid", &["-f", "mysqld_safe"]),
        _ => unreachable!("no such server: {backend}"),
    }
}

/// Waits until `check` succeeds (the server answers again), at most a minute.
fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + StdDuration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "{what} did not come back within a minute");
        std::thread::sleep(StdDuration::from_millis(200));
    }
}

fn restart_while_writing(url: &str, service_name: &str) {
    let db = Database::open(url).unwrap();
    let table = format!("restart_{}", std::process::id());
    db.execute(&format!("DROP TABLE IF EXISTS {table}"), &[]).unwrap();
    db.execute(
        &format!("CREATE TABLE {table} (batch BIGINT NOT NULL, word VARCHAR(20) NOT NULL)"),
        &[],
    )
    .unwrap();
    db.forget_batches(&table).unwrap();
    let input: Vec<Option<Vec<(i64, String)>>> = (1..=6).map(|b| Some((0..b).map(|i| (b, format!("w{i}"))).collect())).collect();
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1))
        .workers(2)
        .manual_clock(&clock)
        .build()
        .unwrap();
    ssc.replay_stream(input, 2)
        .save_to_database(DatabaseSink::new(url, &table).columns(["batch", "word"]))
        .unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(2));
    assert!(ssc.await_batch(Time::from_millis(2000), seconds(60)).unwrap());
    server(service_name, false);
    clock.advance(seconds(2));
    std::thread::sleep(StdDuration::from_secs(2));
    server(service_name, true);
    clock.advance(seconds(2));
    assert!(
        ssc.await_batch(Time::from_millis(6000), seconds(120)).unwrap(),
        "batches did not complete after the restart"
    );
    ssc.stop(false).unwrap();
    let failures: Vec<String> = ssc.failures().iter().map(ToString::to_string).collect();
    assert!(failures.is_empty(), "{failures:?}");
    wait_until(service_name, || db.query("SELECT 1", &[]).is_ok());
    let per_batch = db
        .query(&format!("SELECT batch, COUNT(*) FROM {table} GROUP BY batch ORDER BY batch"), &[])
        .unwrap();
    let want: Vec<Vec<SqlValue>> = (1..=6).map(|b| vec![SqlValue::Int(b), SqlValue::Int(b)]).collect();
    assert_eq!(per_batch, want, "{service_name}: rows per batch after the restart");
    db.execute(&format!("DROP TABLE {table}"), &[]).unwrap();
}

#[test]
fn postgres_and_mariadb_stopped_and_started_mid_run_lose_nothing() {
    let postgres = std::env::var("EMBER_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mysql = std::env::var("EMBER_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    restart_while_writing(&postgres, "postgresql");
    restart_while_writing(&mysql, "mariadb");
}
