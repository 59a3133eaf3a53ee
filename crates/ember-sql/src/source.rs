//! Streaming sources (`spark.readStream.format(...)`): what each reads, its schema, and how its
//! rows reach a query's plan.
//!
//! A streaming DataFrame's plan scans a [`StreamTable`]: a DataFusion table whose scan is a
//! [`LazyMemoryExec`] reading from a [`Slot`]. A query plans once per worker and, for every
//! micro-batch, puts the batch's rows in that worker's slot and executes the same physical
//! plan again: no planning per batch.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::common::tree_node::TreeNode;
use datafusion::datasource::TableType;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::memory::{LazyBatchGenerator, LazyMemoryExec};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What a streaming DataFrame reads.
#[derive(Clone, Debug)]
pub enum SourceSpec {
    /// `format("socket")`: lines of text from `host:port`, one `value` column.
    Socket { host: String, port: u16 },
    /// `format("text" | "csv" | "json")`: the files of a directory; text gives one `value`
    /// column of lines, csv and json the rows of the schema given.
    Files(FileOptions),
    /// `format("rate")`: `rows_per_second` rows a second, `timestamp` and `value` columns, in
    /// `num_partitions` partitions (0: one per worker thread).
    Rate { rows_per_second: u64, num_partitions: usize },
    /// `format("kafka")`: the records of topics, with Spark's columns (`key`, `value`, `topic`,
    /// `partition`, `offset`, `timestamp`, `timestampType`).
    Kafka(KafkaOptions),
}

/// The options of the Kafka source.
#[derive(Clone, Debug)]
pub struct KafkaOptions {
    /// `kafka.bootstrap.servers`.
    pub bootstrap_servers: String,
    /// `subscribe`: the topics.
    pub topics: Vec<String>,
    /// `startingOffsets`: where a query without a checkpoint starts.
    pub starting: ember_kafka::StartingOffsets,
    /// `maxOffsetsPerTrigger`: at most this many records a micro-batch.
    pub max_offsets_per_trigger: Option<u64>,
    /// `failOnDataLoss`: fail when offsets to read were deleted (else go on from the earliest).
    pub fail_on_data_loss: bool,
    /// The other `kafka.`-prefixed options, without the prefix, for librdkafka.
    pub params: BTreeMap<String, String>,
}

impl KafkaOptions {
    fn from_options(options: &BTreeMap<String, String>) -> Result<KafkaOptions> {
        let get = |key: &str| options.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str());
        for strategy in ["subscribePattern", "assign"] {
            if get(strategy).is_some() {
                return Err(Error::unsupported(format!(
                    "the Kafka source's option {strategy} (ember subscribes to the topics of \"subscribe\" so far)"
                )));
            }
        }
        if get("includeHeaders").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Err(Error::unsupported("the Kafka source's headers (includeHeaders)"));
        }
        if get("endingOffsets").is_some() {
            return Err(Error::illegal_argument("ending offset not valid in streaming queries"));
        }
        let bootstrap_servers = get("kafka.bootstrap.servers")
            .ok_or_else(|| Error::illegal_argument("Option 'kafka.bootstrap.servers' must be specified for configuring Kafka consumer"))?
            .to_owned();
        let topics: Vec<String> = get("subscribe")
            .ok_or_else(|| {
                Error::illegal_argument(
                    "One of the following options must be specified for Kafka source: subscribe, subscribepattern, assign. See the docs for more details.",
                )
            })?
            .split(',')
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        if topics.is_empty() {
            return Err(Error::illegal_argument(
                "No topics to subscribe to as specified value for option 'subscribe' is ''",
            ));
        }
        let starting = match get("startingOffsets").map(str::trim) {
            None | Some("latest") => ember_kafka::StartingOffsets::Latest,
            Some("earliest") => ember_kafka::StartingOffsets::Earliest,
            Some(json) => starting_offsets_json(json)?,
        };
        let max_offsets_per_trigger = match get("maxOffsetsPerTrigger") {
            None => None,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    return Err(Error::illegal_argument(format!(
                        "Invalid value '{v}' for option 'maxOffsetsPerTrigger', must be a positive integer"
                    )));
                }
            },
        };
        let fail_on_data_loss = match get("failOnDataLoss") {
            None => true,
            Some(v) => v
                .parse::<bool>()
                .map_err(|_| Error::illegal_argument(format!("Invalid value '{v}' for option 'failOnDataLoss', must be true or false")))?,
        };
        // Spark's rule: the source manages offsets and groups itself.
        for own in [
            "kafka.auto.offset.reset",
            "kafka.enable.auto.commit",
            "kafka.key.deserializer",
            "kafka.value.deserializer",
        ] {
            if get(own).is_some() {
                let name = own.trim_start_matches("kafka.");
                return Err(Error::illegal_argument(format!(
                    "Kafka option '{name}' is not supported as the source manages it itself."
                )));
            }
        }
        let params = options
            .iter()
            .filter_map(|(k, v)| {
                let key = k.strip_prefix("kafka.")?;
                (!key.eq_ignore_ascii_case("bootstrap.servers")).then(|| (key.to_owned(), v.clone()))
            })
            .collect();
        Ok(KafkaOptions {
            bootstrap_servers,
            topics,
            starting,
            max_offsets_per_trigger,
            fail_on_data_loss,
            params,
        })
    }
}

/// Spark's JSON form of `startingOffsets`: `{"topic": {"0": 23, "1": -1}}`, -1 meaning the
/// latest offset.
fn starting_offsets_json(json: &str) -> Result<ember_kafka::StartingOffsets> {
    let bad = |why: String| {
        Error::illegal_argument(format!(
            "Expected e.g. {{\"topicA\":{{\"0\":23,\"1\":-1}},\"topicB\":{{\"0\":-2}}}}, got {json}: {why}"
        ))
    };
    let parsed: BTreeMap<String, BTreeMap<String, i64>> = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
    let mut offsets = BTreeMap::new();
    for (topic, partitions) in parsed {
        for (partition, offset) in partitions {
            let partition: i32 = partition
                .parse()
                .map_err(|_| bad(format!("partition {partition:?} is not a number")))?;
            match offset {
                // The latest offset: what an unlisted partition gets.
                -1 => {}
                -2 => {
                    return Err(Error::unsupported(format!(
                        "startingOffsets -2 (the earliest) for topic {topic} partition {partition} (use \"earliest\" for every partition)"
                    )));
                }
                o if o >= 0 => {
                    offsets.insert(ember_kafka::TopicPartition::new(topic.clone(), partition), o);
                }
                o => return Err(bad(format!("offset {o} of topic {topic} partition {partition}"))),
            }
        }
    }
    Ok(ember_kafka::StartingOffsets::Explicit(offsets))
}

/// The options of a file source.
#[derive(Clone, Debug)]
pub struct FileOptions {
    /// The directory (Spark's `path`).
    pub path: PathBuf,
    /// At most this many new files a micro-batch (`maxFilesPerTrigger`).
    pub max_files_per_trigger: Option<usize>,
    /// Newest files first (`latestFirst`).
    pub latest_first: bool,
    /// How the files are read.
    pub format: FileFormat,
}

/// How a file source reads its files.
#[derive(Clone, Debug)]
pub enum FileFormat {
    /// Lines, one `value` column.
    Text,
    /// Comma-separated values (`sep`, `header`), into `schema`; a field that does not parse as
    /// its column's type is null, a short row is padded with nulls, as Spark's `PERMISSIVE`.
    Csv { schema: SchemaRef, header: bool, sep: u8 },
    /// One JSON object a line, into `schema`; a value that does not fit its column, or a line
    /// that is not a JSON object, gives nulls, as Spark's `PERMISSIVE`.
    Json { schema: SchemaRef },
}

impl SourceSpec {
    /// Reads a source from `format` and its options, as `DataStreamReader.load` does.
    pub fn from_options(
        format: &str,
        options: &BTreeMap<String, String>,
        path: Option<&str>,
        schema: Option<SchemaRef>,
    ) -> Result<SourceSpec> {
        let get = |key: &str| options.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str());
        match format.to_ascii_lowercase().as_str() {
            "socket" => {
                let host = get("host").ok_or_else(|| Error::analysis("Set a host to read from with option(\"host\", ...)."))?;
                let port = get("port").ok_or_else(|| Error::analysis("Set a port to read from with option(\"port\", ...)."))?;
                let port = port
                    .parse::<u16>()
                    .map_err(|_| Error::analysis(format!("Invalid value '{port}' for option 'port', must be a positive integer")))?;
                Ok(SourceSpec::Socket {
                    host: host.to_owned(),
                    port,
                })
            }
            file_format @ ("text" | "csv" | "json") => {
                let file_format = match file_format {
                    "text" => FileFormat::Text,
                    _ => {
                        let schema = schema.clone().ok_or_else(|| {
                            Error::illegal_argument(
                                "Schema must be specified when creating a streaming source DataFrame. If some files already exist in the directory, then depending on the file format you may be able to create a static DataFrame on that directory with 'spark.read.load(directory)' and infer schema from it.",
                            )
                        })?;
                        if file_format == "json" {
                            FileFormat::Json { schema }
                        } else {
                            let flag = |key: &str| -> Result<bool> {
                                match get(key) {
                                    None => Ok(false),
                                    Some(v) => v
                                        .parse::<bool>()
                                        .map_err(|_| Error::illegal_argument(format!("{key} flag can be true or false, got '{v}'"))),
                                }
                            };
                            let sep = match get("sep").or_else(|| get("delimiter")) {
                                None => b',',
                                Some("\\t") => b'\t',
                                Some(v) if v.len() == 1 => v.as_bytes()[0],
                                Some(v) => {
                                    return Err(Error::illegal_argument(format!("Delimiter cannot be more than one character: {v}")));
                                }
                            };
                            FileFormat::Csv {
                                schema,
                                header: flag("header")?,
                                sep,
                            }
                        }
                    }
                };
                let path = path
                    .or_else(|| get("path"))
                    .ok_or_else(|| Error::analysis("'path' is not specified"))?;
                let max_files_per_trigger = match get("maxFilesPerTrigger") {
                    None => None,
                    Some(v) => match v.parse::<usize>() {
                        Ok(n) if n > 0 => Some(n),
                        _ => {
                            return Err(Error::illegal_argument(format!(
                                "Invalid value '{v}' for option 'maxFilesPerTrigger', must be a positive integer"
                            )));
                        }
                    },
                };
                let latest_first = match get("latestFirst") {
                    None => false,
                    Some(v) => v.parse::<bool>().map_err(|_| {
                        Error::illegal_argument(format!("Invalid value '{v}' for option 'latestFirst', must be true or false"))
                    })?,
                };
                Ok(SourceSpec::Files(FileOptions {
                    path: PathBuf::from(path),
                    max_files_per_trigger,
                    latest_first,
                    format: file_format,
                }))
            }
            "rate" => {
                let positive = |key: &str, default: u64| -> Result<u64> {
                    match get(key) {
                        None => Ok(default),
                        Some(v) => match v.parse::<u64>() {
                            Ok(n) if n > 0 => Ok(n),
                            _ => Err(Error::illegal_argument(format!(
                                "Invalid value '{v}'. The option '{key}' must be positive"
                            ))),
                        },
                    }
                };
                if let Some(ramp) = get("rampUpTime")
                    && ramp.trim_start_matches('0').trim_end_matches('s').trim() != ""
                {
                    return Err(Error::unsupported(format!(
                        "the rate source's rampUpTime ({ramp}) is not in ember yet: rows come at rowsPerSecond from the start"
                    )));
                }
                Ok(SourceSpec::Rate {
                    rows_per_second: positive("rowsPerSecond", 1)?,
                    // 0: one per worker thread (Spark's default parallelism).
                    num_partitions: match get("numPartitions") {
                        None => 0,
                        Some(_) => positive("numPartitions", 1)? as usize,
                    },
                })
            }
            "kafka" => Ok(SourceSpec::Kafka(KafkaOptions::from_options(options)?)),
            other => Err(Error::unsupported(format!(
                "Data source {other} does not support streamed reading (ember reads socket, text, csv, json, rate and kafka so far)"
            ))),
        }
    }

    /// The rows' schema.
    pub fn schema(&self) -> SchemaRef {
        match self {
            SourceSpec::Rate { .. } => Arc::new(Schema::new(vec![
                Field::new("timestamp", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
                Field::new("value", DataType::Int64, true),
            ])),
            SourceSpec::Files(FileOptions {
                format: FileFormat::Csv { schema, .. } | FileFormat::Json { schema },
                ..
            }) => Arc::clone(schema),
            SourceSpec::Kafka(_) => Arc::new(Schema::new(vec![
                Field::new("key", DataType::Binary, true),
                Field::new("value", DataType::Binary, true),
                Field::new("topic", DataType::Utf8, true),
                Field::new("partition", DataType::Int32, true),
                Field::new("offset", DataType::Int64, true),
                Field::new("timestamp", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
                Field::new("timestampType", DataType::Int32, true),
            ])),
            _ => Arc::new(Schema::new(vec![Field::new("value", DataType::Utf8, true)])),
        }
    }

    /// A micro-batch's rows from what the source's stream carries: lines for the socket source,
    /// whole files' text for the text source ([`read_text`]), `value,timestamp_ms` for the
    /// rate source.
    pub fn batch(&self, schema: &SchemaRef, lines: Vec<String>) -> std::result::Result<RecordBatch, String> {
        match self {
            SourceSpec::Rate { .. } => {
                let mut values = Vec::with_capacity(lines.len());
                let mut stamps = Vec::with_capacity(lines.len());
                for line in &lines {
                    let (value, ms) = line
                        .split_once(',')
                        .and_then(|(v, t)| Some((v.parse::<i64>().ok()?, t.parse::<i64>().ok()?)))
                        .ok_or_else(|| format!("not a rate source row: {line:?}"))?;
                    values.push(value);
                    stamps.push(ms * 1000);
                }
                let stamps = TimestampMicrosecondArray::from(stamps).with_timezone("UTC");
                RecordBatch::try_new(Arc::clone(schema), vec![Arc::new(stamps), Arc::new(Int64Array::from(values))])
                    .map_err(|e| e.to_string())
            }
            SourceSpec::Files(options) => match &options.format {
                FileFormat::Text => text_batch(schema, lines),
                FileFormat::Csv { header, sep, .. } => csv_batch(schema, &lines, *header, *sep),
                FileFormat::Json { .. } => json_batch(schema, &lines),
            },
            SourceSpec::Socket { .. } => Ok(lines_batch(schema, lines)),
            SourceSpec::Kafka(_) => Err("the Kafka source's rows are records, not lines".to_owned()),
        }
    }

    /// A short description, as `explain` and progress name the source.
    pub fn describe(&self) -> String {
        match self {
            SourceSpec::Socket { host, port } => format!("TextSocketV2[host: {host}, port: {port}]"),
            SourceSpec::Files(o) => format!("FileStreamSource[{}]", o.path.display()),
            SourceSpec::Rate {
                rows_per_second,
                num_partitions,
            } => format!("RateStreamV2[rowsPerSecond={rows_per_second}, rampUpTimeSeconds=0, numPartitions={num_partitions}"),
            SourceSpec::Kafka(o) => format!("KafkaV2[Subscribe[{}]]", o.topics.join(",")),
        }
    }
}

/// Kafka records as a record batch of the Kafka source's schema.
pub fn kafka_batch(schema: &SchemaRef, records: Vec<ember_kafka::ConsumerRecord<Vec<u8>, Vec<u8>>>) -> RecordBatch {
    use datafusion::arrow::array::{BinaryArray, Int32Array};
    let keys = BinaryArray::from_iter(records.iter().map(|r| r.key.as_deref()));
    let values = BinaryArray::from_iter_values(records.iter().map(|r| r.value.as_slice()));
    let topics = StringArray::from_iter_values(records.iter().map(|r| r.topic.as_str()));
    let partitions = Int32Array::from_iter_values(records.iter().map(|r| r.partition));
    let offsets = Int64Array::from_iter_values(records.iter().map(|r| r.offset));
    let stamps =
        TimestampMicrosecondArray::from_iter(records.iter().map(|r| r.timestamp.map(|ms| ms.saturating_mul(1000)))).with_timezone("UTC");
    // Kafka's CreateTime (0) for a record with a timestamp, as Spark reports it.
    let types = Int32Array::from_iter(records.iter().map(|r| r.timestamp.map(|_| 0)));
    RecordBatch::try_new(
        Arc::clone(schema),
        vec![
            Arc::new(keys),
            Arc::new(values),
            Arc::new(topics),
            Arc::new(partitions),
            Arc::new(offsets),
            Arc::new(stamps),
            Arc::new(types),
        ],
    )
    .expect("the Kafka columns match the source schema")
}

/// Files' texts of comma-separated values as a record batch of `schema`: every field read as
/// text, then cast to its column's type, null where it does not parse (Spark's `PERMISSIVE`);
/// a short row is padded with nulls, a long one cut; with `header`, each file's first line is
/// its header.
pub fn csv_batch(schema: &SchemaRef, texts: &[String], header: bool, sep: u8) -> std::result::Result<RecordBatch, String> {
    use datafusion::arrow::compute::{CastOptions, cast_with_options};
    // Read as text, as wide as the widest line (a separator inside quotes only widens it), so
    // that a long row is cut rather than refused.
    let widest = texts
        .iter()
        .flat_map(|t| t.lines())
        .map(|l| l.bytes().filter(|&b| b == sep).count() + 1)
        .max()
        .unwrap_or(0)
        .max(schema.fields().len());
    let wide = Arc::new(Schema::new(
        (0..widest)
            .map(|i| Field::new(format!("_c{i}"), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let strings = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let kept: Vec<usize> = (0..schema.fields().len()).collect();
    let mut parts = Vec::new();
    for text in texts {
        let reader = datafusion::arrow::csv::ReaderBuilder::new(Arc::clone(&wide))
            .with_header(header)
            .with_delimiter(sep)
            .with_truncated_rows(true)
            .build(std::io::Cursor::new(text.as_bytes()))
            .map_err(|e| format!("cannot read csv: {e}"))?;
        for batch in reader {
            let batch = batch
                .map_err(|e| format!("cannot read csv: {e}"))?
                .project(&kept)
                .map_err(|e| e.to_string())?;
            parts.push(RecordBatch::try_new(Arc::clone(&strings), batch.columns().to_vec()).map_err(|e| e.to_string())?);
        }
    }
    let strings_batch = datafusion::arrow::compute::concat_batches(&strings, &parts).map_err(|e| e.to_string())?;
    let options = CastOptions {
        safe: true,
        ..Default::default()
    };
    let columns = strings_batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| cast_with_options(c, f.data_type(), &options).map_err(|e| format!("column {}: {e}", f.name())))
        .collect::<std::result::Result<Vec<_>, String>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(|e| e.to_string())
}

/// Files' texts of JSON lines as a record batch of `schema` ([`json_columns`] of each line);
/// blank lines are skipped.
pub fn json_batch(schema: &SchemaRef, texts: &[String]) -> std::result::Result<RecordBatch, String> {
    let lines = texts.iter().flat_map(|t| lines_of(t)).filter(|l| !l.trim().is_empty()).map(Some);
    let arrays = json_columns(lines, schema.fields())?;
    RecordBatch::try_new(Arc::clone(schema), arrays).map_err(|e| e.to_string())
}

/// The JSON object in each text as columns of `fields` (Spark's `PERMISSIVE` reading of JSON,
/// for the json source and `from_json`): each field read as text, then cast to its column's
/// type, null where it does not fit; a text that is not a JSON object, or none, gives nulls.
pub(crate) fn json_columns<'a>(
    texts: impl Iterator<Item = Option<&'a str>>,
    fields: &datafusion::arrow::datatypes::Fields,
) -> std::result::Result<Vec<datafusion::arrow::array::ArrayRef>, String> {
    use datafusion::arrow::array::ArrayRef;
    use datafusion::arrow::compute::{CastOptions, cast_with_options};
    let mut columns: Vec<Vec<Option<String>>> = vec![Vec::new(); fields.len()];
    for text in texts {
        let object = match text.map(serde_json::from_str::<serde_json::Value>) {
            Some(Ok(serde_json::Value::Object(object))) => Some(object),
            _ => None,
        };
        for (field, column) in fields.iter().zip(columns.iter_mut()) {
            column.push(object.as_ref().and_then(|o| o.get(field.name())).and_then(|v| match v {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            }));
        }
    }
    let options = CastOptions {
        safe: true,
        ..Default::default()
    };
    columns
        .into_iter()
        .zip(fields.iter())
        .map(|(values, f)| {
            let strings: ArrayRef = Arc::new(StringArray::from(values));
            cast_with_options(&strings, f.data_type(), &options).map_err(|e| format!("column {}: {e}", f.name()))
        })
        .collect()
}

/// Lines as a record batch of one `value` column.
pub fn lines_batch(schema: &SchemaRef, lines: Vec<String>) -> RecordBatch {
    let values = StringArray::from(lines);
    RecordBatch::try_new(Arc::clone(schema), vec![Arc::new(values)]).expect("one utf8 column matches the source schema")
}

/// The lines of files' texts (as [`read_lines`] cuts them) as a record batch of one `value`
/// column. The texts' bytes become the column's values where they lie, line ends squeezed out:
/// no copy per line (one when a worker reads several files in a micro-batch).
pub fn text_batch(schema: &SchemaRef, texts: Vec<String>) -> std::result::Result<RecordBatch, String> {
    let mut texts = texts.into_iter();
    let mut bytes = texts.next().unwrap_or_default().into_bytes();
    for more in texts {
        if bytes.last().is_some_and(|&b| b != b'\n') {
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(more.as_bytes());
    }
    if bytes.len() > i32::MAX as usize {
        return Err(format!(
            "a worker's text files of one micro-batch hold {} bytes, over the 2 GiB a string column holds (lower maxFilesPerTrigger)",
            bytes.len()
        ));
    }
    // Where each line ends in the text (after a leading 0)...
    let mut offsets: Vec<i32> = Vec::with_capacity(bytes.len() / 32 + 2);
    offsets.push(0);
    offsets.extend(memchr::memchr_iter(b'\n', &bytes).map(|at| at as i32));
    if bytes.last().is_some_and(|&b| b != b'\n') {
        offsets.push(bytes.len() as i32);
    }
    // ... then each line moved down over the line ends before it, and where it ends now.
    let (mut from, mut to) = (0usize, 0usize);
    for offset in offsets.iter_mut().skip(1) {
        let end = *offset as usize;
        let mut line_end = end;
        while line_end > from && bytes[line_end - 1] == b'\r' {
            line_end -= 1;
        }
        bytes.copy_within(from..line_end, to);
        to += line_end - from;
        *offset = to as i32;
        from = end + 1;
    }
    bytes.truncate(to);
    let values = StringArray::try_new(
        datafusion::arrow::buffer::OffsetBuffer::new(offsets.into()),
        datafusion::arrow::buffer::Buffer::from_vec(bytes),
        None,
    )
    .map_err(|e| format!("the text files' lines are not a string column: {e}"))?;
    RecordBatch::try_new(Arc::clone(schema), vec![Arc::new(values)]).map_err(|e| e.to_string())
}

/// Where a worker puts a micro-batch's rows for its copy of the plan to read.
#[derive(Clone, Debug, Default)]
pub struct Slot(Arc<Mutex<VecDeque<RecordBatch>>>);

impl Slot {
    /// Puts `batches` for the next execution of the plan.
    pub fn fill(&self, batches: impl IntoIterator<Item = RecordBatch>) {
        crate::lock(&self.0).extend(batches);
    }
}

/// The generator a [`LazyMemoryExec`] reads a slot through.
struct SlotGenerator {
    slot: Slot,
    projection: Option<Vec<usize>>,
    /// The stream table it scans (`usize::MAX`: a leaf between stages).
    source: usize,
}

impl fmt::Debug for SlotGenerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SlotGenerator")
    }
}

impl fmt::Display for SlotGenerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("micro-batch")
    }
}

impl LazyBatchGenerator for SlotGenerator {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn generate_next_batch(&mut self) -> DfResult<Option<RecordBatch>> {
        let next = crate::lock(&self.slot.0).pop_front();
        match (next, &self.projection) {
            (Some(batch), Some(columns)) => Ok(Some(batch.project(columns)?)),
            (next, _) => Ok(next),
        }
    }

    fn reset_state(&self) -> Arc<RwLock<dyn LazyBatchGenerator>> {
        Arc::new(RwLock::new(SlotGenerator {
            slot: self.slot.clone(),
            projection: self.projection.clone(),
            source: self.source,
        }))
    }
}

/// A plan's leaf over a slot: a [`LazyMemoryExec`] of `schema` reading what the slot gets.
pub fn slot_exec(schema: SchemaRef) -> Result<(Arc<dyn ExecutionPlan>, Slot)> {
    let slot = Slot::default();
    let generator = SlotGenerator {
        slot: slot.clone(),
        projection: None,
        source: usize::MAX,
    };
    let exec = LazyMemoryExec::try_new(schema, vec![Arc::new(RwLock::new(generator))])?;
    Ok((Arc::new(exec), slot))
}

/// The slots of every leaf of `plan` that reads one, with the stream table each scans (a plan
/// over a union of streams, or a stream with itself, has several).
pub fn find_slots(plan: &Arc<dyn ExecutionPlan>) -> Vec<(usize, Slot)> {
    let mut found = Vec::new();
    if let Some(lazy) = plan.downcast_ref::<LazyMemoryExec>() {
        for generator in lazy.generators() {
            if let Some(g) = generator.read().as_any().downcast_ref::<SlotGenerator>() {
                found.push((g.source, g.slot.clone()));
            }
        }
    }
    for child in plan.children() {
        found.extend(find_slots(child));
    }
    found
}

/// The table a streaming DataFrame's plan scans. Its scan is a fresh slot each time it is
/// planned (each worker plans its own copy).
#[derive(Debug)]
pub struct StreamTable {
    pub(crate) id: usize,
    pub(crate) spec: SourceSpec,
    schema: SchemaRef,
}

impl StreamTable {
    pub fn new(id: usize, spec: SourceSpec) -> Self {
        let schema = spec.schema();
        StreamTable { id, spec, schema }
    }
}

#[async_trait]
impl TableProvider for StreamTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        slot_scan(&self.schema, projection, self.id)
    }
}

/// A scan of `schema`'s columns `projection` through a fresh slot (a worker's copy of the plan
/// fills it); `source` is the stream it reads (`usize::MAX`: rows between stages).
pub(crate) fn slot_scan(schema: &SchemaRef, projection: Option<&Vec<usize>>, source: usize) -> DfResult<Arc<dyn ExecutionPlan>> {
    let projected = match projection {
        Some(columns) => Arc::new(schema.project(columns)?),
        None => Arc::clone(schema),
    };
    let generator = SlotGenerator {
        slot: Slot::default(),
        projection: projection.cloned(),
        source,
    };
    Ok(Arc::new(LazyMemoryExec::try_new(
        projected,
        vec![Arc::new(RwLock::new(generator))],
    )?))
}

/// One file a micro-batch of a file source reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSlice {
    pub path: PathBuf,
}

/// Spark's `FileStreamSource` over ember's direct-source protocol: each micro-batch takes the
/// files not seen before (all that are there when the query starts, then new ones), oldest
/// first by modification time (newest first with `latestFirst`), at most
/// `maxFilesPerTrigger` of them. Hidden files (`.` or `_` first) are not read.
pub struct FileSource {
    options: FileOptions,
    seen: BTreeSet<PathBuf>,
    /// With `availableNow`: the files there at start, still to be read; `None` otherwise.
    available_now: Option<VecDeque<PathBuf>>,
    /// Told when every file of an `availableNow` query has been planned.
    pub(crate) exhausted: Arc<std::sync::atomic::AtomicBool>,
}

impl FileSource {
    pub fn new(options: FileOptions, available_now: bool) -> Self {
        let mut source = FileSource {
            options,
            seen: BTreeSet::new(),
            available_now: None,
            exhausted: Arc::default(),
        };
        if available_now {
            source.available_now = Some(source.new_files().into());
        }
        source
    }

    /// The files not seen yet, in the order the source takes them: each by its local path or,
    /// on object storage (`s3://bucket/prefix`), its URL.
    fn new_files(&self) -> Vec<PathBuf> {
        let Ok(dir) = ember::storage::Location::parse(&self.options.path.to_string_lossy()) else {
            return Vec::new();
        };
        let Ok(entries) = dir.list() else {
            return Vec::new();
        };
        let mut files: Vec<(u64, PathBuf)> = entries
            .into_iter()
            .filter(|e| !e.name.starts_with('.') && !e.name.starts_with('_'))
            .map(|e| {
                let path = match dir.as_local() {
                    Some(local) => local.join(&e.name),
                    None => PathBuf::from(dir.show(&e.name)),
                };
                (e.modified_ns, path)
            })
            .filter(|(_, path)| !self.seen.contains(path))
            .collect();
        files.sort();
        if self.options.latest_first {
            files.reverse();
        }
        files.into_iter().map(|(_, p)| p).collect()
    }

    fn take(&mut self) -> Vec<PathBuf> {
        let limit = self.options.max_files_per_trigger.unwrap_or(usize::MAX);
        let taken: Vec<PathBuf> = match &mut self.available_now {
            Some(queue) => {
                let n = limit.min(queue.len());
                queue.drain(..n).collect()
            }
            None => self.new_files().into_iter().take(limit).collect(),
        };
        if self.available_now.as_ref().is_some_and(VecDeque::is_empty) {
            self.exhausted.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        self.seen.extend(taken.iter().cloned());
        taken
    }
}

impl ember::DirectSource for FileSource {
    type Slice = FileSlice;

    fn plan(&mut self, _batch: &ember::DirectBatch<'_>) -> Vec<FileSlice> {
        self.take().into_iter().map(|path| FileSlice { path }).collect()
    }

    fn replay(&mut self, _time: ember::Time, slices: &[FileSlice]) {
        for slice in slices {
            self.seen.insert(slice.path.clone());
            if let Some(queue) = &mut self.available_now {
                queue.retain(|p| p != &slice.path);
            }
        }
    }

    fn snapshot(&self) -> std::result::Result<Vec<u8>, String> {
        serde_json::to_vec(&self.seen).map_err(|e| e.to_string())
    }

    fn restore(&mut self, bytes: &[u8]) -> std::result::Result<(), String> {
        self.seen = serde_json::from_slice(bytes).map_err(|e| format!("not a file source position: {e}"))?;
        if let Some(queue) = &mut self.available_now {
            let seen = &self.seen;
            queue.retain(|p| !seen.contains(p));
        }
        Ok(())
    }
}

/// The lines of one file (a final line without a newline counts; `\r\n` ends a line too).
pub fn read_lines(path: &Path) -> std::result::Result<Vec<String>, String> {
    let text = read_text(path)?;
    Ok(lines_of(&text).map(str::to_owned).collect())
}

/// The text of one file, whole: the file source's stream carries files' texts, cut into lines
/// by [`text_batch`] on the worker that read them (no `String` per line).
pub fn read_text(path: &Path) -> std::result::Result<String, String> {
    let (dir, name) = ember::storage::Location::parse(&path.to_string_lossy())
        .map_err(|e| e.to_string())?
        .parent();
    let text = dir
        .get(&name)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("cannot read {}: it is gone", path.display()))?;
    String::from_utf8(text).map_err(|e| format!("{} is not UTF-8: {e}", path.display()))
}

fn lines_of(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive('\n')
        .map(|line| line.trim_end_matches('\n').trim_end_matches('\r'))
}

/// The stream tables `plan` scans.
pub(crate) fn stream_sources(plan: &LogicalPlan) -> impl Iterator<Item = Arc<StreamTable>> {
    let mut found = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = source_as_provider(&scan.source)
            && let Some(table) = provider.downcast_ref::<StreamTable>()
        {
            found.push(Arc::new(StreamTable::new(table.id, table.spec.clone())));
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    // Views are inlined when the plan is analyzed; look into them too, and into the input of
    // a state function's output.
    let _ = plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = source_as_provider(&scan.source)
        {
            if let Some(view) = provider.downcast_ref::<datafusion::catalog::view::ViewTable>() {
                found.extend(stream_sources(view.logical_plan()));
            }
            if let Some(output) = provider.downcast_ref::<crate::state::GroupsOutputTable>() {
                found.extend(stream_sources(&output.spec.stage));
            }
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    found.into_iter()
}

/// The rows `[from, to)` of a rate source, timed from its start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateSlice {
    pub from: u64,
    pub to: u64,
    pub start_ms: u64,
    pub rows_per_second: u64,
}

impl RateSlice {
    /// `value,timestamp_ms` of each row: row `v` is due `v / rowsPerSecond` seconds after the
    /// start, as in Spark's rate source.
    pub fn rows(&self) -> Vec<String> {
        (self.from..self.to)
            .map(|v| format!("{v},{}", self.start_ms + v * 1000 / self.rows_per_second))
            .collect()
    }
}

/// Spark's rate source over ember's direct-source protocol: each micro-batch takes the rows due
/// by its time, split into `numPartitions` ranges; its position (start and next value) is
/// checkpointed, so a resumed query goes on with the next value.
#[derive(Debug)]
pub struct RateSource {
    rows_per_second: u64,
    num_partitions: usize,
    /// The first micro-batch's time (ms): row 0 is due then.
    start_ms: Option<u64>,
    next: u64,
}

impl RateSource {
    pub fn new(rows_per_second: u64, num_partitions: usize) -> Self {
        RateSource {
            rows_per_second,
            num_partitions: num_partitions.max(1),
            start_ms: None,
            next: 0,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct RatePosition {
    start_ms: Option<u64>,
    next: u64,
}

impl ember::DirectSource for RateSource {
    type Slice = RateSlice;

    fn plan(&mut self, batch: &ember::DirectBatch<'_>) -> Vec<RateSlice> {
        let now = batch.time().milliseconds();
        let start = *self.start_ms.get_or_insert(now);
        let due = now.saturating_sub(start) * self.rows_per_second / 1000 + 1;
        if due <= self.next {
            return Vec::new();
        }
        let (from, count) = (self.next, due - self.next);
        self.next = due;
        let parts = self.num_partitions as u64;
        (0..parts)
            .map(|p| RateSlice {
                from: from + count * p / parts,
                to: from + count * (p + 1) / parts,
                start_ms: start,
                rows_per_second: self.rows_per_second,
            })
            .filter(|s| s.to > s.from)
            .collect()
    }

    fn replay(&mut self, _time: ember::Time, slices: &[RateSlice]) {
        for slice in slices {
            self.start_ms.get_or_insert(slice.start_ms);
            self.next = self.next.max(slice.to);
        }
    }

    fn records(&self, slice: &RateSlice) -> Option<u64> {
        Some(slice.to - slice.from)
    }

    fn snapshot(&self) -> std::result::Result<Vec<u8>, String> {
        serde_json::to_vec(&RatePosition {
            start_ms: self.start_ms,
            next: self.next,
        })
        .map_err(|e| e.to_string())
    }

    fn restore(&mut self, bytes: &[u8]) -> std::result::Result<(), String> {
        let position: RatePosition = serde_json::from_slice(bytes).map_err(|e| format!("not a rate source position: {e}"))?;
        self.start_ms = position.start_ms;
        self.next = position.next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::AsArray;

    use super::*;

    /// The text source's batch has the lines `read_lines` gives, for texts with and without a
    /// final newline, `\r\n`, empty lines and several files.
    #[test]
    fn text_batch_cuts_lines_as_read_lines_does() {
        let schema = SourceSpec::Files(FileOptions {
            path: PathBuf::new(),
            max_files_per_trigger: None,
            latest_first: false,
            format: FileFormat::Text,
        })
        .schema();
        let cases: &[&[&str]] = &[
            &["a b\nc\n"],
            &["a\r\n\nb\r\r\nlast"],
            &[""],
            &["\n"],
            &["one", "two\n", "", "thrée\nfour"],
            &["x\n", "\r\n"],
        ];
        for texts in cases {
            let mut expected = Vec::new();
            for text in *texts {
                expected.extend(lines_of(text).map(str::to_owned));
            }
            let batch = text_batch(&schema, texts.iter().map(|t| t.to_string()).collect()).unwrap();
            let got: Vec<String> = batch.column(0).as_string::<i32>().iter().map(|v| v.unwrap().to_owned()).collect();
            assert_eq!(got, expected, "{texts:?}");
        }
    }
}

#[cfg(test)]
mod parse_tests {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Int64Type, TimestampMicrosecondType};

    use super::*;

    /// Spark's PERMISSIVE csv and json: what does not parse is null, the rest of the row stays.
    #[test]
    fn csv_and_json_rows_fit_the_schema_with_nulls_for_what_does_not_parse() {
        let schema = crate::types::schema_from_ddl("word string, n long, at timestamp").unwrap();
        let csv = csv_batch(
            &schema,
            &[
                "word,n,at\ndog,3,2017-04-23 12:00:00\ncat,x\n".to_owned(),
                "owl,5,not a time,extra\n".to_owned(),
            ],
            true,
            b',',
        );
        // The second file has no header: its first line is a header too (each file's).
        let csv = csv.unwrap();
        assert_eq!(csv.num_rows(), 2);
        let words = csv.column(0).as_string::<i32>();
        let n = csv.column(1).as_primitive::<Int64Type>();
        let at = csv.column(2).as_primitive::<TimestampMicrosecondType>();
        assert_eq!((words.value(0), n.value(0), at.value(0)), ("dog", 3, 1_492_948_800_000_000));
        assert_eq!(words.value(1), "cat");
        assert!(n.is_null(1) && at.is_null(1), "x is no number, a short row is padded");
        let json = json_batch(
            &schema,
            &["{\"word\":\"dog\",\"n\":3,\"at\":\"2017-04-23T12:00:00.000Z\"}\nnot json\n\n{\"n\":\"seven\",\"word\":7}\n".to_owned()],
        )
        .unwrap();
        assert_eq!(json.num_rows(), 3);
        let words = json.column(0).as_string::<i32>();
        let n = json.column(1).as_primitive::<Int64Type>();
        let at = json.column(2).as_primitive::<TimestampMicrosecondType>();
        assert_eq!((words.value(0), n.value(0), at.value(0)), ("dog", 3, 1_492_948_800_000_000));
        assert!(
            words.is_null(1) && n.is_null(1) && at.is_null(1),
            "a line that is not JSON is a row of nulls"
        );
        assert_eq!(words.value(2), "7");
        assert!(n.is_null(2));
    }
}
