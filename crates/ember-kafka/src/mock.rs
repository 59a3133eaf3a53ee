//! A Kafka cluster in this process, for examples and tests: librdkafka's mock cluster, a real
//! implementation of the Kafka protocol on loopback ports that any Kafka client (this process,
//! another process, another language) can use.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

/// librdkafka's mock cluster, with helpers to create topics and write records.
pub struct MockKafka {
    cluster: MockCluster<'static, DefaultProducerContext>,
    producer: ThreadedProducer<DefaultProducerContext>,
}

impl std::fmt::Debug for MockKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockKafka")
            .field("bootstrap_servers", &self.bootstrap_servers())
            .finish()
    }
}

impl MockKafka {
    /// A cluster of `brokers` brokers (numbered from 1).
    ///
    /// # Errors
    ///
    /// librdkafka's message when the cluster cannot be created.
    pub fn start(brokers: i32) -> Result<MockKafka, String> {
        let cluster = MockCluster::new(brokers).map_err(|e| format!("cannot start a mock Kafka cluster: {e}"))?;
        let producer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("linger.ms", "5")
            .set("message.timeout.ms", "60000")
            .create()
            .map_err(|e| format!("cannot create a producer for the mock cluster: {e}"))?;
        Ok(MockKafka { cluster, producer })
    }

    /// The `host:port` list clients connect to.
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// The mock cluster itself, for fault injection (`broker_down`, `request_errors`, …).
    pub fn cluster(&self) -> &MockCluster<'static, DefaultProducerContext> {
        &self.cluster
    }

    /// Creates `topic` with `partitions` partitions.
    ///
    /// # Errors
    ///
    /// librdkafka's message.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), String> {
        self.cluster
            .create_topic(topic, partitions, 1)
            .map_err(|e| format!("cannot create topic {topic}: {e}"))
    }

    /// Writes a record to `partition` of `topic` (acknowledged once [`MockKafka::flush`]
    /// returns).
    ///
    /// # Errors
    ///
    /// librdkafka's message when the record cannot be queued.
    pub fn send(&self, topic: &str, partition: i32, key: Option<&[u8]>, value: &[u8]) -> Result<(), String> {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).partition(partition).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => return Err(format!("cannot write to topic {topic} partition {partition}: {e}")),
            }
        }
    }

    /// Waits until every record sent is acknowledged.
    ///
    /// # Errors
    ///
    /// librdkafka's message when they are not within 60 s.
    pub fn flush(&self) -> Result<(), String> {
        self.producer
            .flush(Duration::from_secs(60))
            .map_err(|e| format!("records not acknowledged by the mock cluster: {e}"))
    }
}
