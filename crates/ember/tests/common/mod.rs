//! Helpers shared by the crash and recovery tests.

use std::collections::BTreeMap;
use std::path::Path;

/// Reads a `state-<ms>` directory written by `save_as_text_files` of `(word, count)` pairs as
/// word counts.
pub fn read_counts(dir: &Path) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.file_name().unwrap().to_string_lossy().starts_with("part-") {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let (word, n) = line.trim_matches(|c| c == '(' || c == ')').rsplit_once(',').unwrap();
            counts.insert(word.to_owned(), n.parse().unwrap());
        }
    }
    counts
}

/// Fresh loopback addresses for a 2-process cluster: its two processes' `host:port`s
/// (comma-separated) and its control plane's. New ports for every run: a killed process's may
/// still be taken.
pub fn cluster_addresses() -> (String, String) {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listeners = [bind(), bind(), bind()];
    let port = |i: usize| listeners[i].local_addr().unwrap().port();
    (
        format!("127.0.0.1:{},127.0.0.1:{}", port(0), port(1)),
        format!("127.0.0.1:{}", port(2)),
    )
}

/// The context builder of a test's child process: `workers` threads every `interval_ms`, as one
/// process of a cluster when `cluster` is "process;address,address;control address" (a process
/// killed before the others reached it looks like one not started yet: the others wait
/// `start_timeout`).
pub fn child_builder(
    interval_ms: u64,
    workers: usize,
    cluster: Option<&str>,
    start_timeout: ember::Duration,
) -> ember::StreamingContextBuilder {
    let mut builder = ember::StreamingContext::builder(ember::milliseconds(interval_ms)).workers(workers);
    if let Some(cluster) = cluster {
        let mut parts = cluster.split(';');
        let process = parts.next().unwrap().parse().unwrap();
        let addresses = parts.next().unwrap().split(',').map(str::to_owned).collect();
        builder = builder
            .cluster(process, addresses)
            .cluster_control_address(parts.next().unwrap())
            .cluster_start_timeout(start_timeout);
    }
    builder
}
