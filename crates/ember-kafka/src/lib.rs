//! Kafka for ember: a direct stream (Spark's `KafkaUtils.createDirectStream`) whose offsets
//! live in ember's checkpoint, and a sink, `save_to_kafka`.
//!
//! The seeds' KafkaWordCount, reading the topic the KafkaWordProducer writes:
//!
//! ```no_run
//! use ember::prelude::*;
//! use ember_kafka::{KafkaDirectStream, StartingOffsets};
//!
//! # fn main() -> ember::Result<()> {
//! let ssc = StreamingContext::new(seconds(10))?;
//! ssc.checkpoint("/tmp/kafka-checkpoint")?;
//! let lines = KafkaDirectStream::new("localhost:9092")
//!     .topics(["wdsender"])
//!     .starting_offsets(StartingOffsets::Earliest)
//!     .create_strings(&ssc)?
//!     .map(|record| record.value);
//! lines
//!     .flat_map(|l| l.split(' ').map(str::to_owned).collect::<Vec<_>>())
//!     .map(|w| (w, 1i64))
//!     .reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, minutes(2), seconds(10))?
//!     .print()?;
//! ssc.start()?;
//! ssc.await_termination()
//! # }
//! ```
//!
//! What differs from Spark's integration, on purpose:
//! - The offsets are in the checkpoint, always: a job recovered with
//!   [`StreamingContext::get_or_create`](ember::StreamingContext::get_or_create) reads exactly
//!   the batches it had not finished, with the records they had before the crash, with nothing
//!   to write by hand (Spark's guide asks users to store offsets themselves for exactly-once).
//!   Committing to a consumer group is optional and only for monitoring.
//! - A record the deserializers refuse fails its batch naming the topic, partition and offset,
//!   unless [`OnBadRecord::Skip`] says to leave such records out (counted and logged).
//! - Partitions added to a subscribed topic while the job runs are found within a second and
//!   read from their earliest offset.
//!
//! librdkafka is built from its bundled source (a few minutes the first time). Tests and
//! examples run against librdkafka's mock cluster ([`MockKafka`]), a real implementation of
//! the Kafka protocol in-process.
#![deny(missing_docs)]

mod decode;
mod direct;
mod mock;
mod offsets;
mod sink;

pub use decode::{Bytes, Deserializer, Json, OnBadRecord, Utf8};
pub use direct::{ConsumerRecord, KafkaDirectStream, KafkaStream, OffsetRanges};
pub use mock::MockKafka;
pub use offsets::{OffsetRange, OffsetReset, StartingOffsets, TopicPartition};
pub use sink::{KafkaSink, KafkaWriter, ProducerRecord, SaveToKafka};
