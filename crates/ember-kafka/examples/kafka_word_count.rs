//! The seeds' KafkaWordCount: the digits KafkaWordProducer writes, counted over a sliding
//! window with `reduce_by_key_and_window` and its inverse, checkpointed, printed every slide.
//!
//! ```text
//! cargo run -p ember-kafka --example kafka_word_count -- --mock
//! cargo run -p ember-kafka --example kafka_word_count -- --brokers localhost:9092 --topic wdsender \
//!     --batch-seconds 10 --window-seconds 120
//! ```
//!
//! `--mock` runs everything in this process: librdkafka's mock cluster, the producer (3
//! messages of 5 digits per second, as in the seed, unless `--rate` says otherwise) and the
//! count, scaled down to 1 s batches and a 4 s window, for 6 batches (`--batches N`). The
//! seed's settings are 10 s batches and a 2 minute window.

#[path = "common/words.rs"]
mod words;

use std::time::{Duration as StdDuration, Instant};

use ember::prelude::*;
use ember_kafka::{KafkaDirectStream, MockKafka, StartingOffsets};

struct Options {
    brokers: Option<String>,
    topic: String,
    mock: bool,
    batch_seconds: u64,
    window_seconds: u64,
    batches: Option<u64>,
    rate: u64,
    checkpoint: std::path::PathBuf,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        brokers: None,
        topic: "wdsender".into(),
        mock: false,
        batch_seconds: 10,
        window_seconds: 120,
        batches: None,
        rate: 3,
        checkpoint: std::env::temp_dir().join(format!("ember-kafka-word-count-{}", std::process::id())),
    };
    let mut args = std::env::args().skip(1);
    let mut scaled = false;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let number = |s: String, name: &str| s.parse::<u64>().map_err(|_| format!("{name} must be a number, got {s:?}"));
        match arg.as_str() {
            "--brokers" => o.brokers = Some(value("--brokers")?),
            "--topic" => o.topic = value("--topic")?,
            "--mock" => o.mock = true,
            "--batch-seconds" => (o.batch_seconds, scaled) = (number(value("--batch-seconds")?, "--batch-seconds")?, true),
            "--window-seconds" => (o.window_seconds, scaled) = (number(value("--window-seconds")?, "--window-seconds")?, true),
            "--batches" => o.batches = Some(number(value("--batches")?, "--batches")?),
            "--rate" => o.rate = number(value("--rate")?, "--rate")?,
            "--checkpoint" => o.checkpoint = value("--checkpoint")?.into(),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if o.mock && !scaled {
        (o.batch_seconds, o.window_seconds) = (1, 4);
        o.batches = o.batches.or(Some(6));
    }
    if o.brokers.is_none() && !o.mock {
        return Err("give --brokers host:port or --mock".into());
    }
    Ok(o)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("kafka_word_count: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let o = options()?;
    let mock = o.mock.then(|| MockKafka::start(1)).transpose()?;
    let brokers = match &mock {
        Some(kafka) => {
            kafka.create_topic(&o.topic, 4)?;
            eprintln!("mock Kafka cluster at {}", kafka.bootstrap_servers());
            kafka.bootstrap_servers()
        }
        None => o.brokers.clone().unwrap_or_default(),
    };
    let producer = mock.as_ref().map(|_| {
        let (brokers, topic, rate) = (brokers.clone(), o.topic.clone(), o.rate);
        let until = o.batches.map(|n| Instant::now() + StdDuration::from_secs(n * o.batch_seconds + 1));
        std::thread::spawn(move || words::produce_digits(&brokers, &topic, rate, 5, until, false))
    });

    let ssc = StreamingContext::new(seconds(o.batch_seconds)).map_err(|e| e.to_string())?;
    ssc.checkpoint(&o.checkpoint).map_err(|e| e.to_string())?;
    let lines = KafkaDirectStream::new(&brokers)
        .topics([o.topic.clone()])
        .starting_offsets(StartingOffsets::Earliest)
        .create_strings(&ssc)
        .map_err(|e| e.to_string())?
        .map(|record| record.value);
    let words = lines.flat_map(|l| l.split(' ').map(str::to_owned).collect::<Vec<_>>());
    let pairs = words.map(|w| (w, 1i64));
    let counts = pairs
        .reduce_by_key_and_window_inv_filtered(
            |a, b| a + b,
            |a, b| a - b,
            seconds(o.window_seconds),
            seconds(o.batch_seconds),
            Some(2),
            // Spark's default: keys whose count fell to 0 stay.
            |_, _| true,
        )
        .map_err(|e| e.to_string())?;
    counts.print().map_err(|e| e.to_string())?;
    ssc.start().map_err(|e| e.to_string())?;
    match o.batches {
        Some(n) => {
            let done = ssc.await_termination_or_timeout(milliseconds(n * o.batch_seconds * 1000 + 500));
            ssc.stop(true).map_err(|e| e.to_string())?;
            done.map_err(|e| e.to_string())?;
        }
        None => ssc.await_termination().map_err(|e| e.to_string())?,
    }
    if let Some(producer) = producer {
        let sent = producer.join().map_err(|_| "the producer panicked".to_owned())??;
        eprintln!("{sent} messages produced");
    }
    if o.mock {
        let _ = std::fs::remove_dir_all(&o.checkpoint);
    }
    Ok(())
}
