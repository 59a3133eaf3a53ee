//! The seeds' KafkaWordProducer: every second, `messagesPerSec` messages of `wordsPerMessage`
//! random digits, written to a topic.
//!
//! ```text
//! cargo run -p ember-kafka --example kafka_word_producer -- localhost:9092 wdsender 3 5
//! cargo run -p ember-kafka --example kafka_word_producer -- --mock wdsender 3 5 --seconds 3
//! ```
//!
//! With `--mock` in place of the brokers, it starts librdkafka's mock cluster in this process
//! first (its address is printed); `--seconds N` stops after N seconds.

#[path = "common/words.rs"]
mod words;

use std::time::{Duration, Instant};

fn main() {
    if let Err(e) = run() {
        eprintln!("kafka_word_producer: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut until = None;
    if let Some(i) = args.iter().position(|a| a == "--seconds") {
        let secs: u64 = args
            .get(i + 1)
            .and_then(|s| s.parse().ok())
            .ok_or("--seconds needs a number of seconds")?;
        until = Some(Instant::now() + Duration::from_secs(secs));
        args.drain(i..i + 2);
    }
    let [brokers, topic, messages, words] = args.as_slice() else {
        return Err(
            "usage: kafka_word_producer <metadataBrokerList|--mock> <topic> <messagesPerSec> <wordsPerMessage> [--seconds N]".into(),
        );
    };
    let number = |s: &str, what: &str| s.parse::<u64>().map_err(|_| format!("{what} must be a number, got {s:?}"));
    let (messages, words) = (number(messages, "messagesPerSec")?, number(words, "wordsPerMessage")?);
    let mock = (brokers == "--mock").then(|| ember_kafka::MockKafka::start(1)).transpose()?;
    let brokers = match &mock {
        Some(kafka) => {
            kafka.create_topic(topic, 4)?;
            eprintln!("mock Kafka cluster at {}", kafka.bootstrap_servers());
            kafka.bootstrap_servers()
        }
        None => brokers.clone(),
    };
    let sent = words::produce_digits(&brokers, topic, messages, words, until, true)?;
    eprintln!("{sent} messages sent to {topic}");
    Ok(())
}
