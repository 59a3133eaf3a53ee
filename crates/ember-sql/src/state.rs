//! Arbitrary state per group (Spark's `flatMapGroupsWithState`, and PySpark's
//! `applyInPandasWithState`): a user function sees each key's rows of a micro-batch with the
//! key's state, updates or removes the state, sets a timeout, and returns rows.
//!
//! Workers run the plan below the operation with the grouping keys in front of its columns;
//! the rows are gathered, and the operator groups them by key, calls the function for every key
//! with rows (keys in their order), then for every key whose timeout has passed (with no rows),
//! as Spark's `FlatMapGroupsWithStateExec` does. The states live on worker 0 as bytes (the
//! Rust API serializes its typed state as JSON; Python pickles its tuples) and go into the
//! checkpoint with each key's timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::execution::TaskContext;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::eventtime::Watermarks;
use crate::exec::{Instance, Step};

/// When a group's state times out (Spark's `GroupStateTimeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupStateTimeout {
    /// Never.
    NoTimeout,
    /// A duration after the micro-batch that set it ([`GroupState::set_timeout_duration`]),
    /// on the batches' clock.
    ProcessingTimeTimeout,
    /// When the watermark passes a time ([`GroupState::set_timeout_timestamp`]); the query
    /// needs a watermark.
    EventTimeTimeout,
}

impl GroupStateTimeout {
    /// Spark's name of a timeout (`"NoTimeout"`, `"ProcessingTimeTimeout"`, `"EventTimeTimeout"`).
    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "notimeout" => Ok(GroupStateTimeout::NoTimeout),
            "processingtimetimeout" => Ok(GroupStateTimeout::ProcessingTimeTimeout),
            "eventtimetimeout" => Ok(GroupStateTimeout::EventTimeTimeout),
            _ => Err(Error::illegal_argument(format!(
                "Unknown timeout {name}: NoTimeout, ProcessingTimeTimeout or EventTimeTimeout"
            ))),
        }
    }
}

/// What a call of the function knows and did to one key's state, the state as bytes.
#[derive(Clone, Debug, Default)]
pub struct RawGroupState {
    /// The state's bytes, when it exists.
    pub value: Option<Vec<u8>>,
    /// The function updated the state.
    pub updated: bool,
    /// The function removed the state.
    pub removed: bool,
    /// When the state times out (ms; none: never). Reset before every call, as in Spark.
    pub timeout_ms: Option<i64>,
    /// The call is for a timeout (no rows).
    pub has_timed_out: bool,
    timeout: Option<GroupStateTimeout>,
    batch_time_ms: i64,
    watermark_ms: Option<i64>,
    /// The operation's name for messages (`flatMapGroupsWithState`, `applyInPandasWithState`).
    api: &'static str,
}

impl RawGroupState {
    /// The micro-batch's time (ms since the epoch), Spark's `getCurrentProcessingTimeMs`.
    pub fn current_processing_time_ms(&self) -> i64 {
        self.batch_time_ms
    }

    /// The watermark of the micro-batch (ms), Spark's `getCurrentWatermarkMs`.
    ///
    /// # Errors
    ///
    /// Spark's, when the query has no watermark.
    pub fn current_watermark_ms(&self) -> Result<i64> {
        self.watermark_ms.ok_or_else(|| {
            Error::unsupported(format!(
                "Cannot get event time watermark timestamp without setting watermark before {}",
                self.api
            ))
        })
    }

    /// Times the state out `duration_ms` after this micro-batch (Spark's `setTimeoutDuration`).
    ///
    /// # Errors
    ///
    /// Spark's, without [`GroupStateTimeout::ProcessingTimeTimeout`] or with a negative duration.
    pub fn set_timeout_duration_ms(&mut self, duration_ms: i64) -> Result<()> {
        if self.timeout != Some(GroupStateTimeout::ProcessingTimeTimeout) {
            return Err(Error::unsupported(format!(
                "Cannot set timeout duration without enabling processing time timeout in {}",
                self.api
            )));
        }
        if duration_ms <= 0 {
            return Err(Error::illegal_argument("Timeout duration must be positive"));
        }
        self.timeout_ms = Some(self.batch_time_ms.saturating_add(duration_ms));
        Ok(())
    }

    /// Times the state out once the watermark passes `timestamp_ms` (Spark's
    /// `setTimeoutTimestamp`).
    ///
    /// # Errors
    ///
    /// Spark's, without [`GroupStateTimeout::EventTimeTimeout`] or below the watermark.
    pub fn set_timeout_timestamp_ms(&mut self, timestamp_ms: i64) -> Result<()> {
        if self.timeout != Some(GroupStateTimeout::EventTimeTimeout) {
            return Err(Error::unsupported(format!(
                "Cannot set timeout timestamp without enabling event time timeout in {}",
                self.api
            )));
        }
        if let Some(watermark) = self.watermark_ms
            && timestamp_ms < watermark
        {
            return Err(Error::illegal_argument(format!(
                "[INVALID_TIMEOUT_TIMESTAMP] Timeout timestamp ({timestamp_ms}) cannot be earlier than the current watermark ({watermark})."
            )));
        }
        self.timeout_ms = Some(timestamp_ms);
        Ok(())
    }
}

/// A group's state in the function of [`crate::GroupedData::flat_map_groups_with_state`]
/// (Spark's `GroupState[S]`).
#[derive(Debug)]
pub struct GroupState<S> {
    value: Option<S>,
    raw: RawGroupState,
}

impl<S> GroupState<S> {
    /// Whether the state exists (Spark's `exists`).
    pub fn exists(&self) -> bool {
        self.value.is_some()
    }

    /// The state (Spark's `get`).
    ///
    /// # Errors
    ///
    /// Spark's, when there is none.
    pub fn get(&self) -> Result<&S> {
        self.value
            .as_ref()
            .ok_or_else(|| Error::illegal_argument("[STATE_NOT_EXISTS] State is either not defined or has already been removed."))
    }

    /// The state, if there is one (Spark's `getOption`).
    pub fn get_option(&self) -> Option<&S> {
        self.value.as_ref()
    }

    /// Sets the state (Spark's `update`).
    pub fn update(&mut self, value: S) {
        self.value = Some(value);
        self.raw.updated = true;
        self.raw.removed = false;
    }

    /// Removes the state (Spark's `remove`).
    pub fn remove(&mut self) {
        self.value = None;
        self.raw.removed = true;
        self.raw.updated = false;
    }

    /// Whether this call is for a timeout, without rows (Spark's `hasTimedOut`).
    pub fn has_timed_out(&self) -> bool {
        self.raw.has_timed_out
    }

    /// Times the state out `duration` after this micro-batch (Spark's `setTimeoutDuration`:
    /// milliseconds, or Spark's interval text such as `"1 hour"`).
    ///
    /// # Errors
    ///
    /// Spark's, without [`GroupStateTimeout::ProcessingTimeTimeout`], with a duration that is
    /// not positive, or text that is not an interval.
    pub fn set_timeout_duration(&mut self, duration: impl Into<TimeoutDuration>) -> Result<()> {
        let ms = match duration.into() {
            TimeoutDuration::Ms(ms) => ms,
            TimeoutDuration::Text(text) => crate::eventtime::parse_delay_ms(&text).map_err(Error::illegal_argument)?,
        };
        self.raw.set_timeout_duration_ms(ms)
    }

    /// Times the state out once the watermark passes `timestamp_ms` (Spark's
    /// `setTimeoutTimestamp`).
    ///
    /// # Errors
    ///
    /// Spark's, without [`GroupStateTimeout::EventTimeTimeout`] or below the watermark.
    pub fn set_timeout_timestamp(&mut self, timestamp_ms: i64) -> Result<()> {
        self.raw.set_timeout_timestamp_ms(timestamp_ms)
    }

    /// The watermark of this micro-batch (Spark's `getCurrentWatermarkMs`).
    ///
    /// # Errors
    ///
    /// Spark's, when the query has no watermark.
    pub fn get_current_watermark_ms(&self) -> Result<i64> {
        self.raw.current_watermark_ms()
    }

    /// The time of this micro-batch (Spark's `getCurrentProcessingTimeMs`).
    pub fn get_current_processing_time_ms(&self) -> i64 {
        self.raw.current_processing_time_ms()
    }
}

/// A timeout duration: milliseconds or Spark's interval text.
#[derive(Clone, Debug)]
pub enum TimeoutDuration {
    Ms(i64),
    Text(String),
}

impl From<i64> for TimeoutDuration {
    fn from(ms: i64) -> Self {
        TimeoutDuration::Ms(ms)
    }
}

impl From<&str> for TimeoutDuration {
    fn from(text: &str) -> Self {
        TimeoutDuration::Text(text.to_owned())
    }
}

/// A function over one key's rows and state, its state as bytes (the Python bridge implements
/// it; the Rust API wraps a typed closure in one).
pub trait GroupFunction: Send {
    /// The rows for `key` (all the input's columns; none for a timeout) with its state;
    /// returns rows of the output schema, by position.
    fn call(&mut self, key: &[ScalarValue], rows: RecordBatch, state: &mut RawGroupState) -> Result<Vec<RecordBatch>>;
}

/// A typed closure as a [`GroupFunction`]: its state as JSON.
pub(crate) struct Typed<S, F> {
    pub func: F,
    pub _state: std::marker::PhantomData<fn() -> S>,
}

impl<S, F> GroupFunction for Typed<S, F>
where
    S: Serialize + DeserializeOwned,
    F: FnMut(&[ScalarValue], RecordBatch, &mut GroupState<S>) -> Result<Vec<RecordBatch>> + Send,
{
    fn call(&mut self, key: &[ScalarValue], rows: RecordBatch, raw: &mut RawGroupState) -> Result<Vec<RecordBatch>> {
        let value = match &raw.value {
            Some(bytes) => Some(serde_json::from_slice::<S>(bytes).map_err(|e| {
                Error::analysis(format!(
                    "the state of a group in the checkpoint is not the function's state type: {e} (the query changed in a way its state cannot follow)"
                ))
            })?),
            None => None,
        };
        let mut state = GroupState {
            value,
            raw: std::mem::take(raw),
        };
        let out = (self.func)(key, rows, &mut state);
        *raw = state.raw;
        raw.value = match state.value {
            Some(v) => Some(serde_json::to_vec(&v).map_err(|e| Error::illegal_argument(format!("cannot serialize a group's state: {e}")))?),
            None => None,
        };
        out
    }
}

/// What `flat_map_groups_with_state` asked for, shared by the DataFrame and its queries.
pub(crate) struct GroupsWithState {
    /// The plan workers run: the grouping keys, then the input's columns.
    pub stage: datafusion::logical_expr::LogicalPlan,
    /// How many of the stage's columns are keys.
    pub keys: usize,
    pub function: Mutex<Box<dyn GroupFunction>>,
    pub output_schema: SchemaRef,
    pub timeout: GroupStateTimeout,
    /// The operation's own output mode (append or update).
    pub mode: crate::sink::OutputMode,
    pub api: &'static str,
}

impl std::fmt::Debug for GroupsWithState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupsWithState")
            .field("keys", &self.keys)
            .field("output_schema", &self.output_schema)
            .field("timeout", &self.timeout)
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

/// One key's state on worker 0.
struct Entry {
    key: Vec<ScalarValue>,
    value: Option<Vec<u8>>,
    timeout_ms: Option<i64>,
}

/// The operator: every key's state, and the plan above it.
pub(crate) struct Arbitrary {
    spec: Arc<GroupsWithState>,
    stage_schema: SchemaRef,
    /// The input's columns without the keys, as the function sees them.
    rows_schema: SchemaRef,
    converter: RowConverter,
    states: HashMap<Vec<u8>, Entry>,
    /// The stage's event-time column (late rows are dropped with an event-time timeout).
    time: Option<usize>,
    upper: Instance,
}

impl Arbitrary {
    pub fn new(spec: Arc<GroupsWithState>, stage_schema: SchemaRef, time_column: Option<&str>, upper: Instance) -> Result<Self> {
        let key_fields: Vec<SortField> = stage_schema.fields()[..spec.keys]
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        let converter = RowConverter::new(key_fields)?;
        let rows_schema = Arc::new(Schema::new(stage_schema.fields()[spec.keys..].to_vec()));
        let time = time_column.and_then(|name| rows_schema.index_of(name).ok().map(|i| i + spec.keys));
        Ok(Arbitrary {
            spec,
            stage_schema,
            rows_schema,
            converter,
            states: HashMap::new(),
            time,
            upper,
        })
    }

    pub fn state_rows(&self) -> u64 {
        self.states.len() as u64
    }

    /// The operation's name (`flatMapGroupsWithState`, `applyInPandasWithState`).
    pub fn api(&self) -> &'static str {
        self.spec.api
    }

    /// Whether a no-data batch runs when the watermark moved.
    pub fn evicts(&self) -> bool {
        self.spec.timeout == GroupStateTimeout::EventTimeTimeout
    }

    /// Whether a batch without rows must still run (processing-time timeouts pending).
    pub fn due_every_batch(&self) -> bool {
        self.spec.timeout == GroupStateTimeout::ProcessingTimeTimeout && self.states.values().any(|e| e.timeout_ms.is_some())
    }

    /// One micro-batch: the keys with rows, in their order, then the keys timed out.
    pub fn step(
        &mut self,
        input: Vec<RecordBatch>,
        task: &Arc<TaskContext>,
        watermarks: Option<Watermarks>,
        batch_time_ms: i64,
    ) -> Result<Step> {
        let input = concat_batches(&self.stage_schema, &input)?;
        let rows = input.num_rows();
        // Late rows: with an event-time timeout, at or before the previous batch's watermark.
        let mut dropped = 0u64;
        let late_us = match (self.spec.timeout, self.time, watermarks) {
            (GroupStateTimeout::EventTimeTimeout, Some(_), Some(w)) => Some(w.late_ms.saturating_mul(1000)),
            _ => None,
        };
        let times = match (late_us, self.time) {
            (Some(_), Some(i)) => Some(crate::eventtime::key_times(input.column(i), crate::eventtime::KeyTime::Timestamp)?),
            _ => None,
        };
        let keys = self.converter.convert_columns(&input.columns()[..self.spec.keys])?;
        let mut groups: HashMap<Vec<u8>, Vec<u32>> = HashMap::new();
        let mut order: Vec<Vec<u8>> = Vec::new();
        for row in 0..rows {
            if let (Some(times), Some(late)) = (&times, late_us)
                && times.is_valid(row)
                && times.value(row) <= late
            {
                dropped += 1;
                continue;
            }
            let key = keys.row(row).as_ref().to_vec();
            groups
                .entry(key.clone())
                .or_insert_with(|| {
                    order.push(key);
                    Vec::new()
                })
                .push(row as u32);
        }
        order.sort();
        let watermark_ms = watermarks.map(|w| w.eviction_ms);
        let values = input.project(&(self.spec.keys..input.num_columns()).collect::<Vec<_>>())?;
        let mut out: Vec<RecordBatch> = Vec::new();
        let (mut updated, mut removed) = (0u64, 0u64);
        let spec = Arc::clone(&self.spec);
        let mut function = crate::lock(&spec.function);
        for key in &order {
            let indices = UInt32Array::from(groups.remove(key).unwrap_or_default());
            let group_rows = take_record_batch(&values, &indices)?;
            let key_values: Vec<ScalarValue> = (0..self.spec.keys)
                .map(|c| ScalarValue::try_from_array(input.column(c), indices.value(0) as usize))
                .collect::<datafusion::common::Result<_>>()?;
            let counts = self.call(
                function.as_mut(),
                key,
                key_values,
                group_rows,
                false,
                batch_time_ms,
                watermark_ms,
                &mut out,
            )?;
            updated += counts.0;
            removed += counts.1;
        }
        // Timeouts, for the keys without rows this batch.
        let threshold = match self.spec.timeout {
            GroupStateTimeout::ProcessingTimeTimeout => Some(batch_time_ms),
            GroupStateTimeout::EventTimeTimeout => watermark_ms,
            GroupStateTimeout::NoTimeout => None,
        };
        if let Some(threshold) = threshold {
            let mut due: Vec<Vec<u8>> = self
                .states
                .iter()
                .filter(|(_, e)| e.timeout_ms.is_some_and(|t| t < threshold))
                .map(|(k, _)| k.clone())
                .collect();
            due.sort();
            for key in &due {
                let key_values = self.states[key].key.clone();
                let empty = RecordBatch::new_empty(Arc::clone(&self.rows_schema));
                let counts = self.call(
                    function.as_mut(),
                    key,
                    key_values,
                    empty,
                    true,
                    batch_time_ms,
                    watermark_ms,
                    &mut out,
                )?;
                updated += counts.0;
                removed += counts.1;
            }
        }
        drop(function);
        Ok(Step {
            rows: self.upper.run(out, task)?,
            updated,
            removed,
            dropped,
        })
    }

    /// Calls the function for one key, keeps what it did to the state, and adds its rows to
    /// `out`; returns the (updated, removed) counts, as Spark counts them.
    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        function: &mut dyn GroupFunction,
        key: &[u8],
        key_values: Vec<ScalarValue>,
        rows: RecordBatch,
        timed_out: bool,
        batch_time_ms: i64,
        watermark_ms: Option<i64>,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(u64, u64)> {
        let old = self.states.get(key);
        let old_timeout = old.and_then(|e| e.timeout_ms);
        let mut raw = RawGroupState {
            value: old.and_then(|e| e.value.clone()),
            updated: false,
            removed: false,
            timeout_ms: None,
            has_timed_out: timed_out,
            timeout: Some(self.spec.timeout),
            batch_time_ms,
            watermark_ms,
            api: self.spec.api,
        };
        let produced = function.call(&key_values, rows, &mut raw)?;
        for batch in produced {
            out.push(self.conform(batch)?);
        }
        if !(raw.updated || raw.removed || raw.timeout_ms != old_timeout) {
            return Ok((0, 0));
        }
        match raw.value {
            Some(value) => {
                self.states.insert(
                    key.to_vec(),
                    Entry {
                        key: key_values,
                        value: Some(value),
                        timeout_ms: raw.timeout_ms,
                    },
                );
                Ok((1, 0))
            }
            None => {
                self.states.remove(key);
                Ok((0, 1))
            }
        }
    }

    /// A batch the function returned, as the output schema has it (columns by position, cast
    /// to its types).
    fn conform(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let schema = &self.spec.output_schema;
        if batch.num_columns() != schema.fields().len() {
            return Err(Error::illegal_argument(format!(
                "The function of {} returned rows of {} columns, but its output schema has {} ({})",
                self.spec.api,
                batch.num_columns(),
                schema.fields().len(),
                schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        let columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(Arc::clone(c))
                } else {
                    cast(c, f.data_type()).map_err(|e| {
                        Error::illegal_argument(format!(
                            "The function of {} returned column {} as {}, which is not its output schema's {}: {e}",
                            self.spec.api,
                            f.name(),
                            c.data_type(),
                            f.data_type()
                        ))
                    })
                }
            })
            .collect::<Result<_>>()?;
        Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
    }

    fn state_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("groupKey", DataType::Binary, false),
            Field::new("groupState", DataType::Binary, true),
            Field::new("timeoutTimestamp", DataType::Int64, true),
        ]))
    }

    /// Every key's state and timeout, as an Arrow IPC stream.
    pub fn snapshot(&self) -> Result<Vec<u8>> {
        let schema = Self::state_schema();
        let keys = BinaryArray::from_iter_values(self.states.keys());
        let values = BinaryArray::from_iter(self.states.values().map(|e| e.value.as_deref()));
        let timeouts = Int64Array::from_iter(self.states.values().map(|e| e.timeout_ms));
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(keys), Arc::new(values), Arc::new(timeouts)])?;
        crate::ipc_stream(&schema, [&batch])
    }

    /// Takes the states of an [`Arbitrary::snapshot`]; refuses another operator's state.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        let reader = datafusion::arrow::ipc::reader::StreamReader::try_new(bytes, None)?;
        if reader.schema() != Self::state_schema() {
            return Err(Error::analysis(format!(
                "The checkpoint's state is not one of {} (operator flatMapGroupsWithState) but has the columns {:?}: the query changed in a way its state cannot follow (start it with a new checkpointLocation)",
                self.spec.api,
                reader.schema().fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>()
            )));
        }
        self.states.clear();
        let parser = self.converter.parser();
        for batch in reader {
            let batch = batch?;
            let keys = batch.column(0).as_binary::<i32>();
            let values = batch.column(1).as_binary::<i32>();
            let timeouts = batch.column(2).as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            for row in 0..batch.num_rows() {
                let bytes = keys.value(row);
                let columns = self.converter.convert_rows([parser.parse(bytes)])?;
                let key = columns
                    .iter()
                    .map(|c| ScalarValue::try_from_array(c, 0))
                    .collect::<datafusion::common::Result<Vec<_>>>()?;
                self.states.insert(
                    bytes.to_vec(),
                    Entry {
                        key,
                        value: values.is_valid(row).then(|| values.value(row).to_vec()),
                        timeout_ms: timeouts.is_valid(row).then(|| timeouts.value(row)),
                    },
                );
            }
        }
        Ok(())
    }
}

/// The table a state function's output DataFrame scans: the operator's rows, between the
/// workers' stage and the plan above it.
#[derive(Debug)]
pub(crate) struct GroupsOutputTable {
    pub spec: Arc<GroupsWithState>,
}

#[async_trait::async_trait]
impl datafusion::catalog::TableProvider for GroupsOutputTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.spec.output_schema)
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        _filters: &[datafusion::logical_expr::Expr],
        _limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        crate::source::slot_scan(&self.spec.output_schema, projection, usize::MAX)
    }
}

/// The state function a plan's rows come from, if any (through views too).
pub(crate) fn find(plan: &datafusion::logical_expr::LogicalPlan) -> Option<Arc<GroupsWithState>> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::LogicalPlan;
    let mut found = None;
    let _ = plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = datafusion::datasource::source_as_provider(&scan.source)
        {
            if let Some(output) = provider.downcast_ref::<GroupsOutputTable>() {
                found = Some(Arc::clone(&output.spec));
                return Ok(TreeNodeRecursion::Stop);
            }
            if let Some(view) = provider.downcast_ref::<datafusion::catalog::view::ViewTable>()
                && let Some(spec) = find(view.logical_plan())
            {
                found = Some(spec);
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// Spark's rules for a query over a state function (`UnsupportedOperationChecker`), with the
/// first line of its messages.
pub(crate) fn check(spec: &GroupsWithState, mode: crate::sink::OutputMode, watermarked: bool) -> Result<()> {
    use crate::sink::OutputMode;
    let name = |m: OutputMode| match m {
        OutputMode::Append => "Append",
        OutputMode::Update => "Update",
        OutputMode::Complete => "Complete",
    };
    if mode != OutputMode::Complete && mode != spec.mode {
        return Err(Error::analysis(format!(
            "{} in {} mode is not supported with {} output mode on a streaming DataFrame/Dataset;",
            spec.api,
            name(spec.mode).to_ascii_lowercase(),
            name(mode)
        )));
    }
    if spec.timeout == GroupStateTimeout::EventTimeTimeout && !watermarked {
        return Err(Error::analysis(format!(
            "Watermark must be specified in the query using '[Dataset/DataFrame].withWatermark()' for using event-time timeout in a {}. Event-time timeout not supported without watermark.;",
            spec.api
        )));
    }
    Ok(())
}
