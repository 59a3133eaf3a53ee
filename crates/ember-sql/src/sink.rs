//! Where a streaming query's output goes: the console (Spark's format), a memory table,
//! `foreachBatch`, and files (`json`, `csv`) written exactly once per batch id.
//!
//! The file sink writes batch k's rows to `part-<k>-0000.<format>` in its directory, then
//! commits the batch with `_spark_metadata/<k>` (Spark's file sink log: `v1`, then one JSON
//! line per file), each written to a temporary name and renamed into place. A batch whose log
//! entry exists is not written again; a batch run again after a crash before its log entry
//! rewrites the same file names. Readers take the files the log lists, as Spark's do.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use ember::storage::Location;

use crate::error::{Error, Result};
use crate::lock;
use crate::show::show_string;

/// How the file sinks write a timestamp: Spark's default `timestampFormat` of json and csv,
/// `yyyy-MM-dd'T'HH:mm:ss.SSSXXX`, in UTC (`2017-04-23T12:00:00.000Z`).
const SPARK_TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

/// What reaches the sink each micro-batch (Spark's `outputMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputMode {
    /// Only new rows (queries without aggregation).
    Append,
    /// The whole result, every micro-batch.
    Complete,
    /// The rows that changed in the micro-batch.
    Update,
}

impl OutputMode {
    pub(crate) fn parse(mode: &str) -> Result<Self> {
        match mode.to_ascii_lowercase().as_str() {
            "append" => Ok(OutputMode::Append),
            "complete" => Ok(OutputMode::Complete),
            "update" => Ok(OutputMode::Update),
            _ => Err(Error::illegal_argument(format!(
                "Unknown output mode {mode}. Accepted output modes are 'append', 'complete', 'update'"
            ))),
        }
    }
}

pub(crate) type ForeachBatch = Arc<dyn Fn(&[RecordBatch], i64) -> std::result::Result<(), String> + Send + Sync>;

/// Where the console sink writes (standard output unless [`crate::DataStreamWriter::console_output`]).
pub(crate) type ConsoleOut = Arc<Mutex<Box<dyn std::io::Write + Send>>>;

/// Where a query's output goes.
enum SinkKind {
    Console {
        num_rows: usize,
        truncate: usize,
        out: Option<ConsoleOut>,
    },
    Memory {
        table: String,
        /// The table's rows (append and update: all so far; complete: the last batch's).
        rows: Mutex<Vec<RecordBatch>>,
    },
    Foreach(ForeachBatch),
    File(FileSink),
    Database(Box<DatabaseOut>),
    /// Spark's `noop`: the query runs in full and its rows are dropped (for benchmarks).
    Noop,
    Kafka(Box<KafkaOut>),
}

/// The Kafka sink: each row a record (`value`, and `key`, `topic`, `partition` when the rows
/// have them), written on worker 0 and acknowledged before the batch commits.
struct KafkaOut {
    sink: ember_kafka::KafkaSink,
    /// The `topic` option, which wins over a `topic` column.
    topic: Option<String>,
    writer: std::sync::OnceLock<std::result::Result<ember_kafka::KafkaWriter, String>>,
}

pub(crate) struct Sink {
    kind: SinkKind,
}

impl Sink {
    /// The sink `format` with its `options`; `name` is the query's (the memory sink's table).
    pub(crate) fn new(
        format: &str,
        options: &std::collections::BTreeMap<String, String>,
        name: Option<&str>,
        foreach_batch: Option<ForeachBatch>,
        console: Option<ConsoleOut>,
        query_id: &str,
        mode: OutputMode,
    ) -> Result<Self> {
        let get = |key: &str| options.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.clone());
        let kind = match format.to_ascii_lowercase().as_str() {
            "console" => {
                let num_rows = match get("numRows") {
                    None => 20,
                    Some(v) => v
                        .parse::<usize>()
                        .map_err(|_| Error::illegal_argument(format!("Invalid value '{v}' for option 'numRows'")))?,
                };
                let truncate = match get("truncate").as_deref() {
                    None | Some("true") => 20,
                    Some("false") => 0,
                    Some(v) => v
                        .parse::<usize>()
                        .map_err(|_| Error::illegal_argument(format!("Invalid value '{v}' for option 'truncate'")))?,
                };
                SinkKind::Console {
                    num_rows,
                    truncate,
                    out: console,
                }
            }
            "memory" => {
                let table = name
                    .map(str::to_owned)
                    .ok_or_else(|| Error::analysis("queryName must be specified for memory sink"))?;
                SinkKind::Memory {
                    table,
                    rows: Mutex::new(Vec::new()),
                }
            }
            "noop" => SinkKind::Noop,
            "foreachbatch" => {
                SinkKind::Foreach(foreach_batch.ok_or_else(|| Error::illegal_argument("foreachBatch function cannot be null"))?)
            }
            format @ ("json" | "csv" | "parquet") => {
                let path = get("path").ok_or_else(|| Error::illegal_argument("'path' is not specified"))?;
                if mode != OutputMode::Append {
                    return Err(Error::analysis(format!(
                        "Data source {format} does not support {} output mode",
                        match mode {
                            OutputMode::Complete => "Complete",
                            _ => "Update",
                        }
                    )));
                }
                SinkKind::File(FileSink::new(&path, FileFormat::parse(format))?)
            }
            "jdbc" => {
                let url = get("url").ok_or_else(|| Error::illegal_argument("Option 'url' is required."))?;
                let table = get("dbtable").ok_or_else(|| Error::illegal_argument("Option 'dbtable' is required."))?;
                if mode != OutputMode::Append {
                    return Err(Error::analysis(format!(
                        "Data source jdbc does not support {} output mode (ember's database sink appends rows; write an aggregation with foreachBatch)",
                        if mode == OutputMode::Complete { "Complete" } else { "Update" }
                    )));
                }
                // Each batch is recorded under this id with its batch time: a query resumed
                // from its checkpoint keeps its id, a new query gets a new one.
                let sink_id = get("sinkId").unwrap_or_else(|| format!("ember-sql-{query_id}"));
                SinkKind::Database(Box::new(DatabaseOut {
                    url,
                    table,
                    sink_id,
                    writer: std::sync::OnceLock::new(),
                }))
            }
            "kafka" => {
                let servers = get("kafka.bootstrap.servers").ok_or_else(|| {
                    Error::illegal_argument("Option 'kafka.bootstrap.servers' must be specified for configuring Kafka producer")
                })?;
                for own in ["kafka.key.serializer", "kafka.value.serializer"] {
                    if get(own).is_some() {
                        return Err(Error::illegal_argument(format!(
                            "Kafka option '{}' is not supported as keys and values are serialized with ByteArraySerializer.",
                            own.trim_start_matches("kafka.")
                        )));
                    }
                }
                let topic = get("topic");
                let mut sink = ember_kafka::KafkaSink::new(servers, topic.clone().unwrap_or_default());
                for (k, v) in options {
                    if let Some(param) = k.strip_prefix("kafka.")
                        && !param.eq_ignore_ascii_case("bootstrap.servers")
                    {
                        sink = sink.param(param, v);
                    }
                }
                SinkKind::Kafka(Box::new(KafkaOut {
                    sink,
                    topic,
                    writer: std::sync::OnceLock::new(),
                }))
            }
            "orc" => {
                return Err(Error::unsupported(
                    "Data source orc does not support streamed writing in ember yet (the file sink writes json, csv and parquet)",
                ));
            }
            other => {
                return Err(Error::unsupported(format!(
                    "Data source {other} does not support streamed writing (ember writes console, memory, noop, foreachBatch, json, csv and parquet files, jdbc into a database and kafka, so far)"
                )));
            }
        };
        Ok(Sink { kind })
    }

    /// The sink as progress reports describe it (Spark's `sink.description`).
    pub(crate) fn describe(&self) -> String {
        match &self.kind {
            SinkKind::Console { .. } => "org.apache.spark.sql.execution.streaming.ConsoleTable$".to_owned(),
            SinkKind::Memory { table, .. } => format!("MemorySink[{table}]"),
            SinkKind::Foreach(_) => "ForeachBatchSink".to_owned(),
            SinkKind::File(sink) => format!("FileSink[{}]", sink.dir),
            SinkKind::Database(sink) => format!("DatabaseSink[{}, {}]", ember_database::redact(&sink.url), sink.table),
            SinkKind::Noop => "org.apache.spark.sql.execution.datasources.noop.NoopTable$".to_owned(),
            SinkKind::Kafka(k) => format!("KafkaTable[{}]", k.topic.as_deref().unwrap_or("topic column")),
        }
    }

    pub(crate) fn write(
        &self,
        session: &crate::session::SparkSession,
        names: &[String],
        batches: &[RecordBatch],
        batch_id: i64,
        time_ms: u64,
        mode: OutputMode,
    ) -> Result<()> {
        match &self.kind {
            SinkKind::Console { num_rows, truncate, out } => {
                let mut text = String::new();
                text.push_str("-------------------------------------------\n");
                text.push_str(&format!("Batch: {batch_id}\n"));
                text.push_str("-------------------------------------------\n");
                text.push_str(&show_string(names, batches, *num_rows, *truncate));
                text.push('\n');
                use std::io::Write;
                let written = match out {
                    Some(out) => {
                        let mut out = lock(out);
                        out.write_all(text.as_bytes()).and_then(|()| out.flush())
                    }
                    None => {
                        let mut stdout = std::io::stdout().lock();
                        stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush())
                    }
                };
                written.map_err(|e| Error::illegal_argument(format!("cannot write the console sink's output: {e}")))?;
            }
            SinkKind::Memory { table, rows } => {
                let mut rows = lock(rows);
                if mode == OutputMode::Complete {
                    rows.clear();
                }
                rows.extend(batches.iter().cloned());
                let Some(schema) = batches
                    .first()
                    .map(RecordBatch::schema)
                    .or_else(|| rows.first().map(RecordBatch::schema))
                else {
                    return Ok(());
                };
                let mem = datafusion::datasource::MemTable::try_new(schema, vec![rows.clone()])?;
                session.register_table(table, Arc::new(mem))?;
            }
            SinkKind::Foreach(f) => f(batches, batch_id).map_err(Error::illegal_argument)?,
            SinkKind::File(sink) => sink.write(batches, batch_id)?,
            SinkKind::Database(sink) => sink.write(names, batches, time_ms)?,
            SinkKind::Noop => {}
            SinkKind::Kafka(k) => k.write(names, batches, batch_id)?,
        }
        Ok(())
    }

    /// Refuses, at `start`, rows this sink cannot write (Spark's checks of the Kafka sink's
    /// columns).
    pub(crate) fn check(&self, schema: &datafusion::arrow::datatypes::Schema) -> Result<()> {
        if let SinkKind::Kafka(k) = &self.kind {
            KafkaOut::columns(schema, k.topic.is_some())?;
        }
        Ok(())
    }
}

/// Where the Kafka sink's columns are in its rows.
struct KafkaColumns {
    value: usize,
    key: Option<usize>,
    topic: Option<usize>,
    partition: Option<usize>,
}

impl KafkaOut {
    fn columns(schema: &datafusion::arrow::datatypes::Schema, topic_option: bool) -> Result<KafkaColumns> {
        use datafusion::arrow::datatypes::DataType;
        let find = |name: &str| schema.fields().iter().position(|f| f.name() == name);
        let bytes = |t: &DataType| {
            matches!(
                t,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Binary | DataType::LargeBinary | DataType::BinaryView
            )
        };
        let value = find("value").ok_or_else(|| Error::analysis("Required attribute 'value' not found"))?;
        if !bytes(schema.field(value).data_type()) {
            return Err(Error::analysis(format!(
                "value attribute type must be a string or binary, got {}",
                crate::dataframe::spark_type(schema.field(value).data_type())
            )));
        }
        let key = find("key");
        if let Some(k) = key
            && !bytes(schema.field(k).data_type())
        {
            return Err(Error::analysis(format!(
                "key attribute type must be a string or binary, got {}",
                crate::dataframe::spark_type(schema.field(k).data_type())
            )));
        }
        let topic = find("topic");
        match topic {
            None if !topic_option => {
                return Err(Error::analysis(
                    "topic option required when no 'topic' attribute is present. Use the topic option for setting a topic.",
                ));
            }
            Some(t)
                if !matches!(
                    schema.field(t).data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ) =>
            {
                return Err(Error::analysis(format!(
                    "topic attribute type must be a string, got {}",
                    crate::dataframe::spark_type(schema.field(t).data_type())
                )));
            }
            _ => {}
        }
        let partition = find("partition");
        if let Some(p) = partition
            && !matches!(schema.field(p).data_type(), DataType::Int32)
        {
            return Err(Error::analysis(format!(
                "partition attribute type must be an int, got {}",
                crate::dataframe::spark_type(schema.field(p).data_type())
            )));
        }
        Ok(KafkaColumns {
            value,
            key,
            topic,
            partition,
        })
    }

    /// The rows as records, acknowledged by the brokers before it returns. A batch run again
    /// after a crash writes its records again (at least once, as Spark's Kafka sink).
    fn write(&self, names: &[String], batches: &[RecordBatch], batch_id: i64) -> Result<()> {
        use datafusion::arrow::array::{Array, AsArray};
        use datafusion::arrow::datatypes::DataType;
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(());
        }
        let writer = self
            .writer
            .get_or_init(|| self.sink.writer())
            .as_ref()
            .map_err(|e| Error::illegal_argument(e.clone()))?;
        let mut records = Vec::new();
        for batch in batches {
            // The plan's names of the columns may differ from the DataFrame's.
            let named = datafusion::arrow::datatypes::Schema::new(
                batch
                    .schema()
                    .fields()
                    .iter()
                    .zip(names)
                    .map(|(f, name)| f.as_ref().clone().with_name(name))
                    .collect::<Vec<_>>(),
            );
            let at = Self::columns(&named, self.topic.is_some())?;
            let binary = |i: usize| -> Result<datafusion::arrow::array::ArrayRef> {
                Ok(datafusion::arrow::compute::cast(batch.column(i), &DataType::Binary)?)
            };
            let values = binary(at.value)?;
            let keys = at.key.map(binary).transpose()?;
            let topics = match at.topic {
                Some(t) => Some(datafusion::arrow::compute::cast(batch.column(t), &DataType::Utf8)?),
                None => None,
            };
            let values = values.as_binary::<i32>();
            for row in 0..batch.num_rows() {
                let mut record = ember_kafka::ProducerRecord::new(if values.is_null(row) { &[][..] } else { values.value(row) });
                if let Some(keys) = &keys {
                    let keys = keys.as_binary::<i32>();
                    if keys.is_valid(row) {
                        record = record.key(keys.value(row));
                    }
                }
                if self.topic.is_none()
                    && let Some(topics) = &topics
                {
                    let topics = topics.as_string::<i32>();
                    if topics.is_null(row) {
                        return Err(Error::illegal_argument(format!(
                            "null topic present in the data of batch {batch_id}. Use the topic option for setting a default topic."
                        )));
                    }
                    record = record.topic(topics.value(row));
                }
                if let Some(p) = at.partition {
                    let partitions = batch.column(p).as_primitive::<datafusion::arrow::datatypes::Int32Type>();
                    if partitions.is_valid(row) {
                        record = record.partition(partitions.value(row));
                    }
                }
                records.push(record);
            }
        }
        writer
            .write_all(&format!("micro-batch {batch_id}"), records)
            .map_err(Error::illegal_argument)?;
        Ok(())
    }
}

/// A file sink's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileFormat {
    /// One JSON object a line, null fields left out (Spark's `json`).
    Json,
    /// Comma-separated values without a header, nulls empty (Spark's `csv` defaults).
    Csv,
    /// Apache Parquet, uncompressed (Spark writes snappy; any reader reads both).
    Parquet,
}

impl FileFormat {
    fn parse(format: &str) -> Self {
        match format {
            "csv" => FileFormat::Csv,
            "parquet" => FileFormat::Parquet,
            _ => FileFormat::Json,
        }
    }

    fn extension(self) -> &'static str {
        match self {
            FileFormat::Json => "json",
            FileFormat::Csv => "csv",
            FileFormat::Parquet => "parquet",
        }
    }
}

/// Files in a directory (local, or `s3://bucket/prefix`), committed per batch id in
/// `_spark_metadata`: a batch's file is written whole first, then its log entry, which is what
/// readers ([`committed_files`]) go by.
pub(crate) struct FileSink {
    dir: Location,
    format: FileFormat,
}

impl FileSink {
    fn new(path: &str, format: FileFormat) -> Result<Self> {
        let bad = |e: std::io::Error| Error::illegal_argument(format!("cannot create the file sink's directory: {e}"));
        let dir = Location::parse(path).map_err(bad)?;
        dir.join("_spark_metadata").prepare().map_err(bad)?;
        Ok(FileSink { dir, format })
    }

    fn log_entry(batch_id: i64) -> String {
        format!("_spark_metadata/{batch_id}")
    }

    fn write(&self, batches: &[RecordBatch], batch_id: i64) -> Result<()> {
        let io = |what: &str, e: std::io::Error| Error::illegal_argument(format!("file sink {}: {what}: {e}", self.dir));
        if self
            .dir
            .get(&Self::log_entry(batch_id))
            .map_err(|e| io("cannot read _spark_metadata", e))?
            .is_some()
        {
            return Ok(());
        }
        let mut bytes = Vec::new();
        match self.format {
            FileFormat::Json => {
                let mut writer = datafusion::arrow::json::WriterBuilder::new()
                    .with_timestamp_tz_format(SPARK_TIMESTAMP_FORMAT.to_owned())
                    .build::<_, datafusion::arrow::json::writer::LineDelimited>(&mut bytes);
                for batch in batches {
                    writer.write(batch)?;
                }
                writer.finish()?;
            }
            FileFormat::Csv => {
                let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                    .with_header(false)
                    .with_timestamp_tz_format(SPARK_TIMESTAMP_FORMAT.to_owned())
                    .build(&mut bytes);
                for batch in batches {
                    writer.write(batch)?;
                }
            }
            FileFormat::Parquet => {
                // No file for a batch without rows, as for json and csv.
                if let Some(first) = batches.iter().find(|b| b.num_rows() > 0) {
                    let parquet = |e: parquet::errors::ParquetError| {
                        Error::illegal_argument(format!("file sink {}: cannot write parquet: {e}", self.dir))
                    };
                    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, first.schema(), None).map_err(parquet)?;
                    for batch in batches.iter().filter(|b| b.num_rows() > 0) {
                        writer.write(batch).map_err(parquet)?;
                    }
                    writer.close().map_err(parquet)?;
                }
            }
        }
        let mut entries = String::from("v1\n");
        if !bytes.is_empty() {
            let name = format!("part-{batch_id:05}-0000.{}", self.format.extension());
            let size = bytes.len();
            self.dir.put(&name, bytes).map_err(|e| io(&format!("cannot write {name}"), e))?;
            // Spark's entries name files by URL: `file:///abs/path`, or the object's `s3://` URL.
            let (path, modified) = match self.dir.as_local() {
                Some(dir) => {
                    let path = dir.join(&name);
                    let absolute = std::fs::canonicalize(&path).unwrap_or(path);
                    let modified = std::fs::metadata(&absolute)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_millis() as u64);
                    (format!("file://{}", absolute.display()), modified)
                }
                None => {
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
                    (self.dir.show(&name), now.map_or(0, |d| d.as_millis() as u64))
                }
            };
            let entry = serde_json::json!({
                "path": path,
                "size": size,
                "isDir": false,
                "modificationTime": modified,
                "blockReplication": 1,
                "blockSize": 33554432,
                "action": "add",
            });
            entries.push_str(&entry.to_string());
            entries.push('\n');
        }
        self.dir
            .put(&Self::log_entry(batch_id), entries.into_bytes())
            .map_err(|e| io(&format!("cannot commit batch {batch_id} in _spark_metadata"), e))
    }
}

/// The files a file sink committed, in batch order, as its `_spark_metadata` log lists them.
pub fn committed_files(dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let cannot = |e: std::io::Error| Error::illegal_argument(format!("cannot read a file sink's log: {e}"));
    let log = Location::parse(&dir.as_ref().to_string_lossy())
        .map_err(cannot)?
        .join("_spark_metadata");
    let mut ids: Vec<i64> = log.list().map_err(cannot)?.iter().filter_map(|e| e.name.parse().ok()).collect();
    ids.sort_unstable();
    let mut files = Vec::new();
    for id in ids {
        let name = id.to_string();
        let bytes = log
            .get(&name)
            .map_err(cannot)?
            .ok_or_else(|| Error::illegal_argument(format!("{} vanished while it was read", log.show(&name))))?;
        let text = String::from_utf8_lossy(&bytes);
        for line in text.lines().skip(1) {
            let entry: serde_json::Value =
                serde_json::from_str(line).map_err(|e| Error::illegal_argument(format!("{}: not a file entry: {e}", log.show(&name))))?;
            if let Some(path) = entry["path"].as_str() {
                files.push(PathBuf::from(path.strip_prefix("file://").unwrap_or(path)));
            }
        }
    }
    Ok(files)
}

/// The database sink (`format("jdbc")` with `url` and `dbtable`): each batch's rows and a record
/// of the batch go into the table in one transaction (ember-database's exactly-once writer),
/// the table's columns named as the query's.
pub(crate) struct DatabaseOut {
    url: String,
    table: String,
    sink_id: String,
    /// Opened at the first batch (with the query's column names).
    writer: std::sync::OnceLock<ember_database::BatchWriter>,
}

impl DatabaseOut {
    fn write(&self, names: &[String], batches: &[RecordBatch], time_ms: u64) -> Result<()> {
        let writer = match self.writer.get() {
            Some(writer) => writer,
            None => {
                let opened = ember_database::DatabaseSink::new(&self.url, &self.table)
                    .columns(names.iter().cloned())
                    .sink_id(&self.sink_id)
                    .open_batch_writer()
                    .map_err(|e| Error::illegal_argument(e.to_string()))?;
                self.writer.get_or_init(|| opened)
            }
        };
        let mut values = Vec::new();
        for batch in batches {
            for row in 0..batch.num_rows() {
                for column in batch.columns() {
                    values.push(sql_value(column.as_ref(), row));
                }
            }
        }
        writer.write_batch(time_ms, &values).map_err(Error::illegal_argument)
    }
}

/// A cell as the database sink binds it.
fn sql_value(array: &dyn datafusion::arrow::array::Array, row: usize) -> ember_database::SqlValue {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{self as types, DataType};
    use ember_database::SqlValue;
    if array.is_null(row) {
        return SqlValue::Null;
    }
    match array.data_type() {
        DataType::Boolean => SqlValue::Bool(array.as_boolean().value(row)),
        DataType::Int8 => SqlValue::Int(array.as_primitive::<types::Int8Type>().value(row).into()),
        DataType::Int16 => SqlValue::Int(array.as_primitive::<types::Int16Type>().value(row).into()),
        DataType::Int32 => SqlValue::Int(array.as_primitive::<types::Int32Type>().value(row).into()),
        DataType::Int64 => SqlValue::Int(array.as_primitive::<types::Int64Type>().value(row)),
        DataType::UInt8 => SqlValue::Int(array.as_primitive::<types::UInt8Type>().value(row).into()),
        DataType::UInt16 => SqlValue::Int(array.as_primitive::<types::UInt16Type>().value(row).into()),
        DataType::UInt32 => SqlValue::Int(array.as_primitive::<types::UInt32Type>().value(row).into()),
        DataType::Float32 => SqlValue::Float(array.as_primitive::<types::Float32Type>().value(row).into()),
        DataType::Float64 => SqlValue::Float(array.as_primitive::<types::Float64Type>().value(row)),
        DataType::Binary => SqlValue::Bytes(array.as_binary::<i32>().value(row).to_vec()),
        DataType::LargeBinary => SqlValue::Bytes(array.as_binary::<i64>().value(row).to_vec()),
        _ => SqlValue::Text(crate::show::cell(array, row)),
    }
}
