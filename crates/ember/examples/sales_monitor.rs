//! The seeds' sales-record example (`DStream基础`, sections 3 and 7): CSV lines
//! `timestamp,product,region,price` are parsed, malformed ones dropped, expensive items
//! (price > 500) filtered, and each batch summarised with `foreach_rdd`.
//!
//! Run: `cargo run -p ember --example sales_monitor`
//!
//! Prints, for three 200 ms batches of generated records: the parsed records, the expensive
//! ones, and a line `batch total: $N over M records (average $A)`.

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

fn main() -> ember::Result<()> {
    let ssc = StreamingContext::new(milliseconds(200))?;
    let queue = BatchQueue::new();
    let mut seed = 42u64;
    for _ in 0..3 {
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
    ssc.start()?;
    ssc.await_termination_or_timeout(milliseconds(700))?;
    ssc.stop(true)
}
