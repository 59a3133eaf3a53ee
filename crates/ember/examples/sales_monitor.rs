//! The seeds' sales-record example (`DStream基础`, sections 3 to 7): CSV lines
//! `timestamp,product,region,price` are parsed, malformed ones dropped, expensive items
//! (price > 500) filtered, and each batch summarised with `foreach_rdd`; then the stateful
//! parts: running sales count per product (`update_state_by_key`), product counts over a
//! sliding window with an inverse function, sales per region, the top 3 products by sales
//! over a window, and anomalously expensive items (more than twice the batch average).
//!
//! Run: `cargo run -p ember --example sales_monitor`
//!
//! The seed uses 2-3 s batches; this runs five 200 ms batches of generated records (windows
//! scaled the same way: 3 batches every 2, and 3 batches every batch) and stops after 7.

use ember::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Sale {
    timestamp: u64,
    product: String,
    region: String,
    price: u64,
}

impl SparkDisplay for Sale {
    fn fmt_spark(&self, out: &mut String) {
        out.push_str(&format!(
            "{{'timestamp': {}, 'product': '{}', 'region': '{}', 'price': {}}}",
            self.timestamp, self.product, self.region, self.price
        ));
    }
}

fn parse_line(line: String) -> Option<Sale> {
    let parts: Vec<&str> = line.split(',').collect();
    match parts.as_slice() {
        [ts, product, region, price] => Some(Sale {
            timestamp: ts.parse().ok()?,
            product: (*product).to_owned(),
            region: (*region).to_owned(),
            price: price.parse().ok()?,
        }),
        _ => None,
    }
}

/// The seed's `generate_sample_data`, with a fixed seed so runs repeat.
fn generate_sample_data(seed: &mut u64) -> Vec<String> {
    const PRODUCTS: &[&str] = &["laptop", "phone", "tablet", "watch", "headphones"];
    const REGIONS: &[&str] = &["North", "South", "East", "West"];
    let mut next = move || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    };
    let mut data: Vec<String> = (0..10)
        .map(|_| {
            let product = PRODUCTS[(next() % 5) as usize];
            let region = REGIONS[(next() % 4) as usize];
            let price = 100 + next() % 901;
            format!("1700000000,{product},{region},{price}")
        })
        .collect();
    data.push("not,a,valid,record,line".to_owned());
    data
}

/// The seeds' `update_function`: the running count.
fn update_function(new_values: Vec<u64>, running_count: Option<u64>) -> Option<u64> {
    Some(new_values.iter().sum::<u64>() + running_count.unwrap_or(0))
}

/// The seeds' `get_top_products`.
fn get_top_products(rdd: Batch<(String, u64)>, time: Time) {
    if !rdd.is_empty() {
        let top_products = rdd.take_ordered_by(3, |(product, sales)| (std::cmp::Reverse(*sales), product.clone()));
        println!("=== top products at {time} ===");
        for (i, (product, sales)) in top_products.iter().enumerate() {
            println!("{}. {product}: ${sales}", i + 1);
        }
        println!("{}", "=".repeat(25));
    }
}

/// The seeds' `detect_anomalies`: items priced above twice the batch average.
fn detect_anomalies(rdd: Batch<Sale>, _time: Time) {
    let sales_data = rdd.collect();
    if sales_data.len() > 1 {
        let avg_price = sales_data.iter().map(|s| s.price).sum::<u64>() as f64 / sales_data.len() as f64;
        let threshold = avg_price * 2.0;
        let anomalies: Vec<&Sale> = sales_data.iter().filter(|s| s.price as f64 > threshold).collect();
        if !anomalies.is_empty() {
            println!("=== anomaly detection ===");
            println!("{} anomalously expensive items:", anomalies.len());
            for item in anomalies {
                println!("  {} - ${} (threshold: ${threshold:.2})", item.product, item.price);
            }
            println!("{}", "=".repeat(20));
        }
    }
}

fn main() -> ember::Result<()> {
    let batch = milliseconds(200);
    let ssc = StreamingContext::new(batch)?;
    let queue = BatchQueue::new();
    let mut seed = 42u64;
    for _ in 0..5 {
        queue.push(generate_sample_data(&mut seed));
    }
    let lines = ssc.queue_stream(&queue, true, None);
    let parsed = lines.flat_map(parse_line);
    parsed.print()?;
    let expensive = parsed.filter(|s| s.price > 500);
    expensive.print()?;
    parsed.foreach_rdd(|rdd, _time| {
        if !rdd.is_empty() {
            let total: u64 = rdd.iter().map(|s| s.price).sum();
            let count = rdd.count();
            println!(
                "batch total: ${total} over {count} records (average ${:.2})",
                total as f64 / count as f64
            );
        }
    })?;

    // Section 5: running sales count per product.
    let product_counts = parsed.map(|s| (s.product, 1u64));
    let running_counts = product_counts.update_state_by_key(update_function);
    running_counts.transform(|b| b.sort_by_key()).print()?;

    // Section 6: product counts over a window of 3 batches, every 2 batches.
    let windowed_counts = product_counts.reduce_by_key_and_window_inv(|x, y| x + y, |x, y| x - y, batch_times(3), batch_times(2))?;
    windowed_counts.transform(|b| b.sort_by_key()).print()?;

    // Section 7: sales per region, top products over a window of 3 batches, anomalies.
    let region_totals = parsed.map(|s| (s.region, s.price)).reduce_by_key(|x, y| x + y);
    region_totals.transform(|b| b.sort_by_key()).print()?;
    let product_sales = parsed.map(|s| (s.product, s.price));
    let windowed_product_sales = product_sales.reduce_by_key_and_window(|x, y| x + y, batch_times(3), batch)?;
    windowed_product_sales.foreach_rdd(get_top_products)?;
    parsed.foreach_rdd(detect_anomalies)?;

    ssc.start()?;
    ssc.await_termination_or_timeout(milliseconds(7 * 200 + 100))?;
    ssc.stop(true)
}

/// `n` batch intervals.
fn batch_times(n: u64) -> Duration {
    milliseconds(n * 200)
}
