//! `save_to_kafka`: every batch written to a topic, each worker producing its own partitions.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ember::{DStream, Data};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

/// How much longer than the delivery timeout a batch waits for its records' acknowledgements.
const FLUSH_MARGIN: Duration = Duration::from_secs(5);

/// A record to write: an optional key, a value, and optionally the partition (otherwise
/// librdkafka's partitioner chooses one from the key).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    /// The key's bytes.
    pub key: Option<Vec<u8>>,
    /// The value's bytes.
    pub value: Vec<u8>,
    /// The partition, when the program chooses it.
    pub partition: Option<i32>,
    /// The topic, when not the sink's.
    pub topic: Option<String>,
}

impl ProducerRecord {
    /// A record with `value` and no key.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        ProducerRecord {
            key: None,
            value: value.into(),
            partition: None,
            topic: None,
        }
    }

    /// The record with `key`.
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The record for `partition`.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// The record for `topic` instead of the sink's.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }
}

/// Where and how [`SaveToKafka::save_to_kafka`] writes.
#[derive(Clone, Debug)]
pub struct KafkaSink {
    bootstrap_servers: String,
    topic: String,
    params: BTreeMap<String, String>,
    delivery_timeout: Duration,
}

impl KafkaSink {
    /// Writes to `topic` of the cluster at `bootstrap_servers`.
    pub fn new(bootstrap_servers: impl Into<String>, topic: impl Into<String>) -> Self {
        KafkaSink {
            bootstrap_servers: bootstrap_servers.into(),
            topic: topic.into(),
            params: BTreeMap::new(),
            delivery_timeout: Duration::from_secs(60),
        }
    }

    /// Sets a librdkafka producer property (for example `compression.type`, `linger.ms`).
    /// The sink sets `enable.idempotence=true` (so `acks=all`) and `message.timeout.ms` from
    /// [`KafkaSink::delivery_timeout`].
    pub fn param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.insert(key.into(), value.into());
        self
    }

    /// How long a batch's records may take to be acknowledged by the brokers, retries
    /// included (default 60 s); then the batch fails naming what was not delivered (the batch
    /// waits up to 5 s more for librdkafka to report each record that timed out).
    pub fn delivery_timeout(mut self, timeout: ember::Duration) -> Self {
        self.delivery_timeout = timeout.to_std().max(Duration::from_millis(1));
        self
    }

    /// A producer with these settings, for writing records outside a stream's output (the
    /// Structured Streaming sink writes each micro-batch's rows with one).
    ///
    /// # Errors
    ///
    /// When librdkafka refuses the settings.
    pub fn writer(&self) -> Result<KafkaWriter, String> {
        Ok(KafkaWriter {
            sink: self.clone(),
            producer: self.producer()?,
        })
    }

    fn producer(&self) -> Result<ThreadedProducer<Deliveries>, String> {
        let mut config = ClientConfig::new();
        for (k, v) in &self.params {
            config.set(k, v);
        }
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", self.delivery_timeout.as_millis().to_string());
        config
            .create_with_context(Deliveries)
            .map_err(|e| format!("librdkafka refuses the producer settings for topic {}: {e}", self.topic))
    }
}

/// What one worker's share of one batch delivered.
#[derive(Default)]
struct BatchDelivery {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

/// Counts delivery failures into the batch each record belongs to.
struct Deliveries;

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Arc<BatchDelivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, batch: Arc<BatchDelivery>) {
        if let Err((e, _)) = result {
            batch.failed.fetch_add(1, Ordering::Relaxed);
            let mut first = batch.first_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            first.get_or_insert_with(|| e.to_string());
        }
    }
}

/// Writing a stream to Kafka.
pub trait SaveToKafka<T> {
    /// Writes every batch to the sink's topic, `record` turning each element into a
    /// [`ProducerRecord`]. Every worker produces its own partitions (one idempotent producer
    /// per process); a batch counts as done once all its records are acknowledged by the
    /// brokers, and fails otherwise, naming the topic, how many records were not delivered
    /// and the first error. A batch computed again after a recovery is written again: the
    /// topic holds each record at least once (the producer's idempotence removes the
    /// duplicates of its own retries, not those of a recomputed batch).
    ///
    /// # Errors
    ///
    /// As [`DStream::print`].
    fn save_to_kafka<F>(&self, sink: KafkaSink, record: F) -> ember::Result<()>
    where
        F: Fn(&T) -> ProducerRecord + Send + Sync + 'static;
}

impl<T: Data> SaveToKafka<T> for DStream<T> {
    fn save_to_kafka<F>(&self, sink: KafkaSink, record: F) -> ember::Result<()>
    where
        F: Fn(&T) -> ProducerRecord + Send + Sync + 'static,
    {
        let writer: OnceLock<Result<KafkaWriter, String>> = OnceLock::new();
        self.register_output_operation_per_worker("save_to_kafka", move |batch| {
            let writer = writer.get_or_init(|| sink.writer()).as_ref().map_err(Clone::clone)?;
            let what = format!("batch {} ms", batch.time().milliseconds());
            writer.write_all(&what, batch.iter().map(&record)).map(|_| ())
        })
    }
}

/// A producer of a [`KafkaSink`]'s settings (see [`KafkaSink::writer`]).
pub struct KafkaWriter {
    sink: KafkaSink,
    producer: ThreadedProducer<Deliveries>,
}

impl std::fmt::Debug for KafkaWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaWriter").field("sink", &self.sink).finish()
    }
}

impl KafkaWriter {
    /// Writes `records` and waits until the brokers have acknowledged every one; returns how
    /// many were written. `what` names the records in errors (`"batch 1000 ms"`).
    ///
    /// # Errors
    ///
    /// Naming the topic, how many records were not delivered and the first error, when a
    /// record cannot be sent or is not acknowledged within the delivery timeout.
    pub fn write_all(&self, what: &str, records: impl IntoIterator<Item = ProducerRecord>) -> Result<u64, String> {
        let sink = &self.sink;
        let delivery = Arc::new(BatchDelivery::default());
        let mut sent = 0u64;
        for out in records {
            let topic = out.topic.as_deref().unwrap_or(&sink.topic);
            let mut base = BaseRecord::with_opaque_to(topic, Arc::clone(&delivery)).payload(&out.value);
            if let Some(key) = &out.key {
                base = base.key(key);
            }
            if let Some(partition) = out.partition {
                base = base.partition(partition);
            }
            loop {
                match self.producer.send(base) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // The local queue is full: let librdkafka deliver some first.
                        base = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) => {
                        return Err(format!("cannot write a record of {what} to topic {topic}: {e}"));
                    }
                }
            }
            sent += 1;
        }
        if sent == 0 {
            return Ok(0);
        }
        // librdkafka fails an undelivered record once its delivery timeout has passed, but
        // looks for such records only about once a second, and later still on a busy
        // machine: the flush waits beyond the timeout so that those failures, which say
        // what went wrong, come back before it gives up.
        let wait = sink.delivery_timeout + FLUSH_MARGIN;
        if let Err(e) = self.producer.flush(wait) {
            return Err(format!(
                "the records of {what} were not all acknowledged by {} for topic {} within {:.1} s: {e}",
                sink.bootstrap_servers,
                sink.topic,
                wait.as_secs_f64()
            ));
        }
        let failed = delivery.failed.load(Ordering::Relaxed);
        if failed > 0 {
            let first = delivery
                .first_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            return Err(format!(
                "{failed} of {sent} records of {what} were not delivered to topic {} at {}: {}",
                sink.topic,
                sink.bootstrap_servers,
                first.unwrap_or_default()
            ));
        }
        Ok(sent)
    }
}
