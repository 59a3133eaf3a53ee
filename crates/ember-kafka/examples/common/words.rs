//! The seed's KafkaWordProducer loop, shared by the examples: every second, `messages`
//! messages of `words` random digits separated by spaces.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

/// Produces to `topic` at `brokers` until `until` (for ever when `None`); prints each message
/// when `echo` is set, as the seed's producer does.
pub fn produce_digits(brokers: &str, topic: &str, messages: u64, words: u64, until: Option<Instant>, echo: bool) -> Result<u64, String> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| format!("cannot create a producer for {brokers}: {e}"))?;
    // A small xorshift generator: the digits need not be cryptographic.
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut digit = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % 10
    };
    let mut sent = 0;
    while until.is_none_or(|u| Instant::now() < u) {
        let second = Instant::now();
        for _ in 0..messages {
            let line: Vec<String> = (0..words).map(|_| digit().to_string()).collect();
            let line = line.join(" ");
            if echo {
                println!("{line}");
            }
            let record: BaseRecord<'_, (), str> = BaseRecord::to(topic).payload(&line);
            producer
                .send(record)
                .map_err(|(e, _)| format!("cannot send to topic {topic}: {e}"))?;
            sent += 1;
        }
        std::thread::sleep(Duration::from_secs(1).saturating_sub(second.elapsed()));
    }
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| format!("messages not acknowledged: {e}"))?;
    Ok(sent)
}
