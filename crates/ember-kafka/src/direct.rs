//! The direct stream: Spark's `KafkaUtils.createDirectStream`, without a receiver.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ember::{DStream, DirectBatch, DirectSource, StreamingContext, Time};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::decode::{Deserializer, OnBadRecord, Utf8};
use crate::offsets::{self, OffsetRange, OffsetReset, StartingOffsets, TopicPartition};

/// One record of a topic (Spark's `ConsumerRecord`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerRecord<K, V> {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The record's offset in its partition.
    pub offset: i64,
    /// The record's timestamp (ms since the Unix epoch), when it has one.
    pub timestamp: Option<i64>,
    /// The key, when the record has one.
    pub key: Option<K>,
    /// The value.
    pub value: V,
}

/// How often the partitions of the subscribed topics are looked up again.
const DISCOVERY_EVERY: Duration = Duration::from_secs(1);
/// How many batches' offset ranges [`KafkaStream::offset_ranges`] keeps.
const RANGES_KEPT: usize = 1000;

/// Builds a direct stream of Kafka topics (Spark's `KafkaUtils.createDirectStream` with
/// `ConsumerStrategies.Subscribe`).
///
/// No receiver: at every batch worker 0 asks the brokers how far each partition of the topics
/// goes and decides the batch's offset range of each partition; the batch has one partition per
/// topic partition, in order of topic name and partition number, and partition `i` is read by
/// worker `i % workers` (numbered across the processes of a cluster) with a consumer of its own
/// that stays assigned to that partition. With checkpoints on, the offsets are part of every
/// checkpoint and the ranges of every batch are logged before the batch is cut, so a recovered
/// job reads exactly the batches it had not finished, with the same records: nothing is lost or
/// read twice. Committing the offsets back to a consumer group ([`KafkaDirectStream::commit_to_group`])
/// is only for monitoring the lag; the checkpoint, not the group, decides where a recovery starts.
///
/// ```no_run
/// use ember::prelude::*;
/// use ember_kafka::{KafkaDirectStream, StartingOffsets};
///
/// # fn main() -> ember::Result<()> {
/// let ssc = StreamingContext::new(seconds(1))?;
/// let records = KafkaDirectStream::new("localhost:9092")
///     .topics(["wdsender"])
///     .starting_offsets(StartingOffsets::Earliest)
///     .create_strings(&ssc)?;
/// records
///     .flat_map(|r| r.value.split(' ').map(str::to_owned).collect::<Vec<_>>())
///     .map(|w| (w, 1u64))
///     .reduce_by_key(|a, b| a + b)
///     .print()?;
/// ssc.start()?;
/// ssc.await_termination()
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct KafkaDirectStream {
    bootstrap_servers: String,
    topics: BTreeSet<String>,
    params: BTreeMap<String, String>,
    starting: StartingOffsets,
    max_rate_per_partition: Option<u64>,
    max_records_per_batch: Option<u64>,
    on_out_of_range: OffsetReset,
    group: Option<String>,
    on_bad_record: OnBadRecord,
    retry_for: Duration,
    poll_timeout: Duration,
    request_timeout: Duration,
    /// Read only up to the partitions' ends at the first planned batch; the time (ms) + 1 of
    /// the batch that planned the last of it goes here.
    until_end: Option<Arc<AtomicU64>>,
}

impl KafkaDirectStream {
    /// A stream reading from the cluster at `bootstrap_servers` (`host:port[,host:port…]`).
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaDirectStream {
            bootstrap_servers: bootstrap_servers.into(),
            topics: BTreeSet::new(),
            params: BTreeMap::new(),
            starting: StartingOffsets::default(),
            max_rate_per_partition: None,
            max_records_per_batch: None,
            on_out_of_range: OffsetReset::default(),
            group: None,
            on_bad_record: OnBadRecord::default(),
            retry_for: Duration::from_secs(60),
            poll_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(5),
            until_end: None,
        }
    }

    /// Reads only what the partitions hold when the stream plans its first batch (their end
    /// offsets then: Spark's `Trigger.AvailableNow`), within the batch limits, then plans
    /// empty batches. `done` is set to the time (ms) + 1 of the batch that planned the last of
    /// it (of the first batch when there was nothing to read), so that the caller can stop
    /// once that batch has run. Partitions found later are not read.
    pub fn until_end_at_start(mut self, done: Arc<AtomicU64>) -> Self {
        self.until_end = Some(done);
        self
    }

    /// Subscribes to `topics` (added to those subscribed already).
    pub fn topics<I, S>(mut self, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.topics.extend(topics.into_iter().map(Into::into));
        self
    }

    /// Sets a librdkafka consumer property for every consumer of the stream (Spark's
    /// `kafkaParams`), for example `fetch.max.bytes` or security settings. The stream sets
    /// `bootstrap.servers`, `enable.auto.commit=false` and `auto.offset.reset=error` itself.
    pub fn param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.insert(key.into(), value.into());
        self
    }

    /// Where a fresh start reads from (default [`StartingOffsets::Latest`]). A job recovered
    /// from a checkpoint goes on from the checkpoint's offsets instead.
    pub fn starting_offsets(mut self, starting: StartingOffsets) -> Self {
        self.starting = starting;
        self
    }

    /// At most `records_per_second` records of each partition per second of batch interval
    /// (Spark's `spark.streaming.kafka.maxRatePerPartition`), so that a job that starts far
    /// behind catches up in batches of a bounded size. Backpressure
    /// ([`StreamingContextBuilder::backpressure`](ember::StreamingContextBuilder::backpressure))
    /// lowers it further. Default: unlimited.
    pub fn max_rate_per_partition(mut self, records_per_second: u64) -> Self {
        self.max_rate_per_partition = Some(records_per_second.max(1));
        self
    }

    /// At most `records` records a batch over all partitions, split in proportion to how far
    /// behind each partition is (Structured Streaming's `maxOffsetsPerTrigger`). Default:
    /// unlimited.
    pub fn max_records_per_batch(mut self, records: u64) -> Self {
        self.max_records_per_batch = Some(records.max(1));
        self
    }

    /// What to do when the next offset of a partition is no longer available (default
    /// [`OffsetReset::Fail`]).
    pub fn on_offset_out_of_range(mut self, reset: OffsetReset) -> Self {
        self.on_out_of_range = reset;
        self
    }

    /// Commits each batch's end offsets to consumer group `group` once the batch has
    /// completed (every output ran), so that Kafka's tools show the job's lag. Recovery does
    /// not read them: the checkpoint holds the offsets.
    pub fn commit_to_group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// What to do with a record the deserializers refuse (default [`OnBadRecord::Fail`]).
    pub fn on_bad_record(mut self, policy: OnBadRecord) -> Self {
        self.on_bad_record = policy;
        self
    }

    /// How long the stream retries when the brokers do not answer before it reports the
    /// problem (default 60 s). It keeps retrying afterwards, and goes on where it was once the
    /// brokers answer.
    pub fn retry_for(mut self, retry_for: ember::Duration) -> Self {
        self.retry_for = retry_for.to_std();
        self
    }

    /// How long a worker waits for the records of an offset range before the batch fails
    /// (default 60 s).
    pub fn poll_timeout(mut self, timeout: ember::Duration) -> Self {
        self.poll_timeout = timeout.to_std();
        self
    }

    /// A stream of records with UTF-8 keys and values.
    ///
    /// # Errors
    ///
    /// As [`KafkaDirectStream::create`].
    pub fn create_strings(self, ssc: &StreamingContext) -> ember::Result<KafkaStream<String, String>> {
        self.create(ssc, Utf8, Utf8)
    }

    /// A stream of records whose keys and values `key` and `value` decode.
    ///
    /// # Errors
    ///
    /// [`ember::Error::InvalidArgument`] when no topic is subscribed or librdkafka refuses the
    /// settings. The brokers are not contacted here: a cluster that cannot be reached is
    /// retried while the job runs, then reported.
    pub fn create<K, V>(self, ssc: &StreamingContext, key: K, value: V) -> ember::Result<KafkaStream<K::Output, V::Output>>
    where
        K: Deserializer,
        V: Deserializer,
    {
        let invalid = |message: String| ember::Error::InvalidArgument {
            operation: "kafka_direct_stream",
            message,
        };
        if self.topics.is_empty() {
            return Err(invalid("no topic to read: call `topics` with at least one".into()));
        }
        let config = self.consumer_config();
        // Checked here without creating a client: only worker 0 of process 0 creates one,
        // when it plans the first batch.
        self.metadata_config()
            .create_native_config()
            .map_err(|e| invalid(format!("librdkafka refuses the settings: {e}")))?;
        let offsets = OffsetRanges::default();
        let skipped = Arc::new(AtomicU64::new(0));
        let name = format!(
            "kafka_direct_stream({} from {})",
            self.topics.iter().cloned().collect::<Vec<_>>().join(","),
            self.bootstrap_servers
        );
        let source = KafkaSource {
            settings: self.clone(),
            client: None,
            positions: BTreeMap::new(),
            discovered: None,
            restored: false,
            failing: None,
            reported: BTreeSet::new(),
            ranges: offsets.clone(),
            ends: None,
        };
        let reader = Reader {
            config,
            consumers: Mutex::new(HashMap::new()),
            poll_timeout: self.poll_timeout,
            key,
            value,
            on_bad_record: self.on_bad_record,
            skipped: Arc::clone(&skipped),
        };
        let stream = ssc.direct_stream("kafka_direct_stream", name, source, move |range: &OffsetRange| reader.read(range));
        Ok(KafkaStream { stream, offsets, skipped })
    }

    fn base_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (k, v) in &self.params {
            config.set(k, v);
        }
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "error")
            .set("enable.partition.eof", "false");
        config
    }

    /// Worker 0's client: metadata, watermarks and group commits.
    fn metadata_config(&self) -> ClientConfig {
        let mut config = self.base_config();
        // A group id is needed to commit; without `commit_to_group` none is used.
        config.set("group.id", self.group.as_deref().unwrap_or("ember-direct-stream"));
        config
    }

    /// The readers' consumers: assigned partitions only, never a group member.
    fn consumer_config(&self) -> ClientConfig {
        let mut config = self.base_config();
        config.set("group.id", "ember-direct-stream-reader");
        config
    }
}

/// A direct Kafka stream: a [`DStream`] of [`ConsumerRecord`]s (it dereferences to one), with
/// the offset ranges of each batch.
pub struct KafkaStream<K, V> {
    stream: DStream<ConsumerRecord<K, V>>,
    offsets: OffsetRanges,
    skipped: Arc<AtomicU64>,
}

impl<K, V> std::fmt::Debug for KafkaStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaStream").finish_non_exhaustive()
    }
}

impl<K, V> std::ops::Deref for KafkaStream<K, V> {
    type Target = DStream<ConsumerRecord<K, V>>;

    fn deref(&self) -> &Self::Target {
        &self.stream
    }
}

impl<K, V> KafkaStream<K, V> {
    /// The offset ranges of the stream's batches, a handle to use inside `foreach_rdd`
    /// (Spark's `rdd.asInstanceOf[HasOffsetRanges].offsetRanges`).
    pub fn offsets(&self) -> OffsetRanges {
        self.offsets.clone()
    }

    /// The offset ranges batch `time` reads: see [`OffsetRanges::of`].
    pub fn offset_ranges(&self, time: Time) -> Option<Vec<OffsetRange>> {
        self.offsets.of(time)
    }

    /// Records left out because the deserializers refused them ([`OnBadRecord::Skip`]), in
    /// this process.
    pub fn skipped_records(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}

/// The offset ranges of a direct stream's batches, shared with the stream's planner.
#[derive(Clone, Debug, Default)]
pub struct OffsetRanges(Arc<Mutex<BTreeMap<u64, Vec<OffsetRange>>>>);

impl OffsetRanges {
    /// The offset ranges batch `time` reads, one per topic partition in the batch's partition
    /// order, on process 0 of a cluster (where the batches are planned), for the last 1000
    /// batches; `None` for a batch not planned here (yet).
    pub fn of(&self, time: Time) -> Option<Vec<OffsetRange>> {
        lock(&self.0).get(&time.milliseconds()).cloned()
    }

    fn remember(&self, time: Time, ranges: &[OffsetRange]) {
        let mut kept = lock(&self.0);
        kept.insert(time.milliseconds(), ranges.to_vec());
        while kept.len() > RANGES_KEPT {
            kept.pop_first();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The position the checkpoint holds: the next offset of every partition.
#[derive(Serialize, Deserialize)]
struct Position {
    next: Vec<(TopicPartition, i64)>,
}

/// Worker 0's planner.
struct KafkaSource {
    settings: KafkaDirectStream,
    /// Metadata, watermarks and group commits; created when the first batch is planned.
    client: Option<BaseConsumer>,
    /// The next offset of every partition found.
    positions: BTreeMap<TopicPartition, i64>,
    /// When the topics' partitions were last looked up.
    discovered: Option<Instant>,
    /// The positions came from a checkpoint.
    restored: bool,
    /// Since when, and why, the brokers have not answered.
    failing: Option<(Instant, String)>,
    /// Problems reported already (each is reported once).
    reported: BTreeSet<String>,
    ranges: OffsetRanges,
    /// With `until_end_at_start`: the partitions' ends at the first planned batch.
    ends: Option<BTreeMap<TopicPartition, i64>>,
}

impl KafkaSource {
    fn report_once(&mut self, batch: &DirectBatch<'_>, message: String) {
        if self.reported.insert(message.clone()) {
            batch.report(message);
        }
    }

    /// Notes that the brokers did not answer; reports it once it has lasted `retry_for`.
    fn unreachable(&mut self, batch: &DirectBatch<'_>, what: String) {
        let since = match &self.failing {
            Some((since, _)) => *since,
            None => {
                tracing::warn!(brokers = %self.settings.bootstrap_servers, problem = %what, "Kafka does not answer; retrying.");
                Instant::now()
            }
        };
        self.failing = Some((since, what.clone()));
        if since.elapsed() >= self.settings.retry_for {
            let message = format!(
                "cannot reach the Kafka brokers {} for {} s: {what}; still retrying",
                self.settings.bootstrap_servers,
                self.settings.retry_for.as_secs()
            );
            if self.reported.insert("unreachable".into()) {
                batch.report(message);
            }
        }
    }

    /// Looks the topics' partitions up; new ones start where the settings say (at start) or
    /// at their earliest offset (added while running).
    fn discover(&mut self, batch: &DirectBatch<'_>, marks: &mut BTreeMap<TopicPartition, offsets::Watermarks>) -> bool {
        let fresh = self.discovered.is_none() && !self.restored;
        let topics: Vec<String> = self.settings.topics.iter().cloned().collect();
        for topic in topics {
            let Some(client) = self.client.as_ref() else { return false };
            let metadata = match client.fetch_metadata(Some(&topic), self.settings.request_timeout) {
                Ok(metadata) => metadata,
                Err(e) => {
                    self.unreachable(batch, format!("metadata of topic {topic}: {e}"));
                    return false;
                }
            };
            let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
                continue;
            };
            if found.error().is_some() || found.partitions().is_empty() {
                let known = self.positions.keys().any(|tp| tp.topic == topic);
                let message = if known {
                    format!("topic {topic} was deleted: its partitions are no longer in the cluster")
                } else {
                    format!("topic {topic} does not exist in the cluster at {}", self.settings.bootstrap_servers)
                };
                self.report_once(batch, message);
                continue;
            }
            for partition in found.partitions() {
                let tp = TopicPartition::new(topic.clone(), partition.id());
                if self.positions.contains_key(&tp) {
                    continue;
                }
                let (low, high) = match self.watermarks(&tp) {
                    Ok(m) => m,
                    Err(e) => {
                        self.unreachable(batch, e);
                        return false;
                    }
                };
                marks.insert(tp.clone(), (low, high));
                let start = if fresh {
                    match &self.settings.starting {
                        StartingOffsets::Earliest => low,
                        StartingOffsets::Latest => high,
                        StartingOffsets::Explicit(offsets) => offsets.get(&tp).copied().unwrap_or(high),
                    }
                } else {
                    tracing::info!(topic = %tp.topic, partition = tp.partition, "A new partition: reading it from its earliest offset.");
                    low
                };
                self.positions.insert(tp, start);
            }
        }
        self.discovered = Some(Instant::now());
        true
    }

    fn watermarks(&self, tp: &TopicPartition) -> Result<offsets::Watermarks, String> {
        let client = self.client.as_ref().ok_or("no Kafka client")?;
        client
            .fetch_watermarks(&tp.topic, tp.partition, self.settings.request_timeout)
            .map_err(|e| format!("watermarks of topic {} partition {}: {e}", tp.topic, tp.partition))
    }
}

impl DirectSource for KafkaSource {
    type Slice = OffsetRange;

    fn plan(&mut self, batch: &DirectBatch<'_>) -> Vec<OffsetRange> {
        if self.client.is_none() {
            match self.settings.metadata_config().create() {
                Ok(client) => self.client = Some(client),
                Err(e) => {
                    self.report_once(batch, format!("cannot create a Kafka client: {e}"));
                    return Vec::new();
                }
            }
        }
        let mut marks = BTreeMap::new();
        if self.discovered.is_none_or(|at| at.elapsed() >= DISCOVERY_EVERY) && !self.discover(batch, &mut marks) {
            return self.empty_ranges(batch);
        }
        let partitions: Vec<TopicPartition> = self.positions.keys().filter(|tp| !marks.contains_key(*tp)).cloned().collect();
        let mut failed = Vec::new();
        for tp in partitions {
            match self.watermarks(&tp) {
                Ok(m) => {
                    marks.insert(tp, m);
                }
                Err(e) => failed.push(e),
            }
        }
        if !failed.is_empty() {
            if marks.is_empty() {
                // No partition answers: the brokers are unreachable.
                self.unreachable(batch, failed.swap_remove(0));
                return self.empty_ranges(batch);
            }
            // Some partitions answer (a deleted topic's do not, a broker of a cluster is
            // down): those are read; the others get empty ranges this batch.
            for e in failed {
                // Once per distinct problem, not once per batch.
                if self.reported.insert(format!("partition: {e}")) {
                    tracing::warn!(problem = %e, "A partition's offsets are unknown; it is not read until they are.");
                }
            }
        }
        if self.failing.take().is_some() {
            tracing::info!(brokers = %self.settings.bootstrap_servers, "Kafka answers again.");
            self.reported.remove("unreachable");
        }
        let interval_s = batch.interval().as_millis() as f64 / 1000.0;
        let per_partition = self
            .settings
            .max_rate_per_partition
            .map(|r| ((r as f64 * interval_s) as u64).max(1));
        let total = batch.rate_limit().map(|r| ((r * interval_s) as u64).max(1));
        let total = match (total, self.settings.max_records_per_batch) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if self.settings.until_end.is_some() {
            // Nothing past the ends at the first planned batch (a partition found later has
            // none: it is not read).
            let ends = self
                .ends
                .get_or_insert_with(|| marks.iter().map(|(tp, (_, high))| (tp.clone(), *high)).collect());
            for (tp, (_, high)) in marks.iter_mut() {
                let end = ends.get(tp).copied().or_else(|| self.positions.get(tp).copied()).unwrap_or(*high);
                *high = (*high).min(end);
            }
        }
        let planned = offsets::plan(&mut self.positions, &marks, per_partition, total, self.settings.on_out_of_range);
        if let (Some(done), Some(ends)) = (&self.settings.until_end, &self.ends)
            && done.load(Ordering::SeqCst) == 0
            && ends.iter().all(|(tp, end)| self.positions.get(tp).is_none_or(|p| p >= end))
        {
            done.store(batch.time().milliseconds() + 1, Ordering::SeqCst);
        }
        for what in planned.out_of_range {
            self.report_once(
                batch,
                format!(
                    "offset out of range: {what} (records were deleted before they were read, or the topic was recreated); \
                     the partition is not read further. `on_offset_out_of_range(OffsetReset::Earliest)` skips to the earliest offset"
                ),
            );
        }
        for what in planned.reset {
            tracing::warn!("Offset out of range: {what}; going on from the earliest offset, the offsets in between are lost.");
        }
        self.remember(batch.time(), &planned.ranges);
        planned.ranges
    }

    fn replay(&mut self, time: Time, ranges: &[OffsetRange]) {
        for range in ranges {
            self.positions.insert(range.topic_partition(), range.until_offset);
        }
        self.remember(time, ranges);
    }

    fn records(&self, range: &OffsetRange) -> Option<u64> {
        Some(range.count())
    }

    fn completed(&mut self, time: Time) {
        if self.settings.group.is_none() {
            return;
        }
        let Some(ranges) = self.ranges.of(time) else { return };
        let mut list = TopicPartitionList::new();
        for range in ranges.iter().filter(|r| r.count() > 0) {
            if let Err(e) = list.add_partition_offset(&range.topic, range.partition, Offset::Offset(range.until_offset)) {
                tracing::warn!(%range, error = %e, "Cannot commit an offset to the consumer group.");
            }
        }
        if list.count() > 0
            && let Some(client) = self.client.as_ref()
            && let Err(e) = client.commit(&list, CommitMode::Async)
        {
            tracing::warn!(batch_time_ms = time.milliseconds(), error = %e, "Cannot commit the batch's offsets to the consumer group.");
        }
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        serde_json::to_vec(&Position {
            next: self.positions.iter().map(|(tp, o)| (tp.clone(), *o)).collect(),
        })
        .map_err(|e| e.to_string())
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let position: Position = serde_json::from_slice(bytes).map_err(|e| format!("not a Kafka stream's offsets: {e}"))?;
        self.positions = position.next.into_iter().collect();
        // The partitions of the checkpoint go on from its offsets; any other found now was
        // added while the job was down, and is read from its earliest offset.
        self.restored = true;
        Ok(())
    }
}

impl KafkaSource {
    /// A batch that reads nothing (the brokers did not answer): an empty range per partition,
    /// so that partitions keep their workers.
    fn empty_ranges(&mut self, batch: &DirectBatch<'_>) -> Vec<OffsetRange> {
        let ranges: Vec<OffsetRange> = self
            .positions
            .iter()
            .map(|(tp, &o)| OffsetRange {
                topic: tp.topic.clone(),
                partition: tp.partition,
                from_offset: o,
                until_offset: o,
            })
            .collect();
        self.remember(batch.time(), &ranges);
        ranges
    }

    fn remember(&self, time: Time, ranges: &[OffsetRange]) {
        self.ranges.remember(time, ranges);
    }
}

/// A consumer assigned to one partition, and the offset it will return next.
struct Assigned {
    consumer: BaseConsumer,
    next: i64,
}

/// The workers' half: reads offset ranges with one consumer per partition, kept between
/// batches so that the next batch's records are already fetched.
struct Reader<K, V> {
    config: ClientConfig,
    consumers: Mutex<HashMap<TopicPartition, Assigned>>,
    poll_timeout: Duration,
    key: K,
    value: V,
    on_bad_record: OnBadRecord,
    skipped: Arc<AtomicU64>,
}

impl<K: Deserializer, V: Deserializer> Reader<K, V> {
    fn read(&self, range: &OffsetRange) -> Result<Vec<ConsumerRecord<K::Output, V::Output>>, String> {
        if range.count() == 0 {
            return Ok(Vec::new());
        }
        let tp = range.topic_partition();
        // Each partition is read by one worker, so the consumer is taken out of the map while
        // it reads; another worker never waits for it.
        let taken = lock(&self.consumers).remove(&tp);
        let mut assigned = match taken {
            Some(assigned) => assigned,
            None => Assigned {
                consumer: self
                    .config
                    .create()
                    .map_err(|e| format!("cannot create a Kafka consumer for {range}: {e}"))?,
                next: -1,
            },
        };
        if assigned.next != range.from_offset {
            let mut list = TopicPartitionList::new();
            list.add_partition_offset(&range.topic, range.partition, Offset::Offset(range.from_offset))
                .and_then(|()| assigned.consumer.assign(&list))
                .map_err(|e| format!("cannot assign {range} to a consumer: {e}"))?;
            assigned.next = range.from_offset;
        }
        let result = self.poll_range(&mut assigned, range);
        if result.is_ok() {
            lock(&self.consumers).insert(tp, assigned);
        }
        result
    }

    fn poll_range(&self, assigned: &mut Assigned, range: &OffsetRange) -> Result<Vec<ConsumerRecord<K::Output, V::Output>>, String> {
        let mut records = Vec::with_capacity(range.count().min(1 << 20) as usize);
        let deadline = Instant::now() + self.poll_timeout;
        let mut last_problem: Option<String> = None;
        while assigned.next < range.until_offset {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "timed out after {} s reading {range}: read up to offset {}{}",
                    self.poll_timeout.as_secs(),
                    assigned.next,
                    last_problem.map(|p| format!(" ({p})")).unwrap_or_default()
                ));
            }
            let message = match assigned.consumer.poll(left.min(Duration::from_millis(100))) {
                None => continue,
                Some(Ok(message)) => message,
                Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::OffsetOutOfRange))) => {
                    return Err(format!(
                        "offset out of range reading {range}: the records are no longer in the partition"
                    ));
                }
                Some(Err(e)) => {
                    // Transport trouble: librdkafka reconnects; wait for the records.
                    if last_problem.is_none() {
                        tracing::warn!(%range, error = %e, "Reading a Kafka partition failed; retrying.");
                    }
                    last_problem = Some(e.to_string());
                    continue;
                }
            };
            let offset = message.offset();
            if offset < assigned.next {
                continue;
            }
            if offset >= range.until_offset {
                // A gap (a compacted topic, transaction markers) ran past the range: the next
                // batch starts at `until_offset`, and must seek back to it.
                assigned.next = -1;
                break;
            }
            assigned.next = offset + 1;
            let key = message.key().map(|k| self.key.deserialize(k)).transpose();
            let value = match message.payload() {
                Some(v) => self.value.deserialize(v),
                None => Err("the record has no value (null)".to_owned()),
            };
            let key = key.map_err(|e| format!("its key is {e}"));
            let value = value.map_err(|e| format!("its value is {e}"));
            match key.and_then(|key| value.map(|value| (key, value))) {
                Ok((key, value)) => records.push(ConsumerRecord {
                    topic: range.topic.clone(),
                    partition: range.partition,
                    offset,
                    timestamp: message.timestamp().to_millis(),
                    key,
                    value,
                }),
                Err(why) => {
                    let what = format!(
                        "the record at topic {} partition {} offset {offset}: {why}",
                        range.topic, range.partition
                    );
                    match self.on_bad_record {
                        OnBadRecord::Fail => return Err(format!("cannot decode {what}")),
                        OnBadRecord::Skip => {
                            let n = self.skipped.fetch_add(1, Ordering::Relaxed) + 1;
                            if n <= 10 || n.is_multiple_of(1000) {
                                tracing::warn!(skipped = n, "Skipping {what}.");
                            }
                        }
                    }
                }
            }
        }
        Ok(records)
    }
}
