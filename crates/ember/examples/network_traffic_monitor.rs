//! The seeds' network-traffic exercise (`DStream基础`, 练习2): generated records
//! `timestamp,ip,action,bytes` from a queue, bytes per IP over a 3-batch window every batch
//! (`reduce_by_key_and_window`), and IPs above twice the average reported as anomalies.
//!
//! Run: `cargo run -p ember --example network_traffic_monitor`
//!
//! The seed uses 3 s batches with a 9 s window; this runs 300 ms batches with a 900 ms window
//! and stops after 6 batches. Each window prints the average, the threshold and the anomalies.

use ember::prelude::*;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Request {
    ip: String,
    action: String,
    bytes: u64,
}

/// The seed's `generate_network_data`, with a fixed seed so runs repeat. One IP sends far
/// more than the others, so that there is something to detect.
fn generate_network_data(seed: &mut u64) -> Vec<String> {
    const IPS: &[&str] = &["192.168.1.1", "192.168.1.2", "192.168.1.3", "10.0.0.1", "10.0.0.2"];
    const ACTIONS: &[&str] = &["GET", "POST", "PUT", "DELETE"];
    let mut next = move || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    };
    let mut data: Vec<String> = (0..20)
        .map(|_| {
            let ip = IPS[(next() % 5) as usize];
            let action = ACTIONS[(next() % 4) as usize];
            let bytes = 100 + next() % 9901;
            format!("1700000000,{ip},{action},{bytes}")
        })
        .collect();
    data.push("1700000000,10.0.0.2,POST,90000".to_owned());
    data.push("a malformed line".to_owned());
    data
}

/// The seed's `parse_network_line`; malformed lines give `None` and are dropped.
fn parse_network_line(line: String) -> Option<Request> {
    match line.split(',').collect::<Vec<_>>().as_slice() {
        [_ts, ip, action, bytes] => Some(Request {
            ip: (*ip).to_owned(),
            action: (*action).to_owned(),
            bytes: bytes.parse().ok()?,
        }),
        _ => None,
    }
}

/// The seed's `detect_traffic_anomalies`.
fn detect_traffic_anomalies(rdd: Batch<(String, u64)>, time: Time) {
    if rdd.is_empty() {
        return;
    }
    let mut traffic_data = rdd.collect();
    traffic_data.sort();
    let total_bytes: u64 = traffic_data.iter().map(|(_, b)| b).sum();
    let avg_bytes = total_bytes as f64 / traffic_data.len() as f64;
    let threshold = avg_bytes * 2.0;
    println!("=== network traffic at {time} ===");
    println!("average traffic: {avg_bytes:.2} bytes");
    println!("anomaly threshold: {threshold:.2} bytes");
    let anomalies: Vec<&(String, u64)> = traffic_data.iter().filter(|(_, b)| *b as f64 > threshold).collect();
    if anomalies.is_empty() {
        println!("no anomalous traffic");
    } else {
        println!("anomalous traffic:");
        for (ip, bytes) in anomalies {
            println!("  {ip}: {bytes} bytes");
        }
    }
    println!("{}", "=".repeat(25));
}

fn main() -> ember::Result<()> {
    let batch = milliseconds(300);
    let ssc = StreamingContext::new(batch)?;
    let queue = BatchQueue::new();
    let mut seed = 7u64;
    for _ in 0..4 {
        queue.push(generate_network_data(&mut seed));
    }
    let network_stream = ssc.queue_stream(&queue, true, None);
    let parsed_network = network_stream.flat_map(parse_network_line);
    let ip_traffic = parsed_network.map(|r| (r.ip, r.bytes));
    let ip_totals = ip_traffic.reduce_by_key_and_window(|x, y| x + y, milliseconds(900), batch)?;
    ip_totals.foreach_rdd(detect_traffic_anomalies)?;
    parsed_network
        .map(|r| (r.action, 1u64))
        .reduce_by_key(|a, b| a + b)
        .transform(|b| b.sort_by_key())
        .print()?;
    ssc.start()?;
    ssc.await_termination_or_timeout(milliseconds(6 * 300 + 150))?;
    ssc.stop(true)
}
