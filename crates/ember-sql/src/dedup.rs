//! Streaming deduplication (Spark's `dropDuplicates` and `dropDuplicatesWithinWatermark` on a
//! stream, its `StreamingDeduplicateExec`): the first row of each key goes through, later rows
//! of a key seen before do not. The DataFrame plans it as an aggregation (the keys, and
//! `first_value` of the other columns); each worker runs the plan below it, and the gathered
//! rows go through [`Dedup`] in their order, which evaluates the aggregation's expressions on the
//! rows it keeps.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::AggregateExec;

use crate::error::{Error, Result};
use crate::eventtime::Watermarks;
use crate::exec::{Instance, Step};

/// Which deduplication a DataFrame asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DedupKind {
    /// `dropDuplicates`: a key is kept until the watermark passes it, when the event-time
    /// column is a key; otherwise for ever.
    Plain,
    /// `dropDuplicatesWithinWatermark`: a key is kept until the watermark passes its first
    /// row's event time plus the delay.
    WithinWatermark,
}

/// The deduplication's state and plans.
pub(crate) struct Dedup {
    kind: DedupKind,
    input_schema: SchemaRef,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    values: Vec<Arc<dyn PhysicalExpr>>,
    out_schema: SchemaRef,
    upper: Instance,
    /// The input's event-time column, with the watermark's delay (µs), when there is one.
    time: Option<(usize, i64)>,
    /// Whether the event-time column is one of the keys.
    time_is_key: bool,
    /// The keys seen (Arrow's row format of the key columns), each with when the watermark
    /// frees it (µs; `i64::MAX`: never).
    seen: HashMap<Vec<u8>, i64>,
}

impl Dedup {
    /// Over the aggregation `agg` the DataFrame planned, `upper` being the plan above it; the
    /// event-time column `time` (by name) and the delay when the query has a watermark.
    pub fn new(kind: DedupKind, agg: &AggregateExec, upper: Instance, time: Option<(&str, i64)>) -> Result<Self> {
        let input_schema = agg.input_schema();
        let keys: Vec<Arc<dyn PhysicalExpr>> = agg.group_expr().expr().iter().map(|(e, _)| Arc::clone(e)).collect();
        let mut values = Vec::new();
        for aggregate in agg.aggr_expr() {
            let [value] = aggregate
                .expressions()
                .try_into()
                .map_err(|_| Error::unsupported("a deduplication over an aggregate of several columns"))?;
            values.push(value);
        }
        let key_names: Vec<String> = agg.group_expr().expr().iter().map(|(_, n)| n.clone()).collect();
        let time = match time {
            Some((column, delay_ms)) => match input_schema.index_of(column) {
                Ok(i) => Some((i, delay_ms.saturating_mul(1000))),
                Err(_) => None,
            },
            None => None,
        };
        if kind == DedupKind::WithinWatermark && time.is_none() {
            return Err(Error::analysis(
                "dropDuplicatesWithinWatermark is not supported on streaming DataFrames/DataSets without watermark;",
            ));
        }
        let time_is_key = time.is_some_and(|(i, _)| key_names.iter().any(|k| k == input_schema.field(i).name()));
        Ok(Dedup {
            kind,
            input_schema,
            keys,
            values,
            out_schema: agg.schema(),
            upper,
            time,
            time_is_key,
            seen: HashMap::new(),
        })
    }

    pub fn state_rows(&self) -> u64 {
        self.seen.len() as u64
    }

    pub fn kind(&self) -> DedupKind {
        self.kind
    }

    /// Whether the watermark frees keys (Spark runs a no-data batch when it moved).
    pub fn evicts(&self) -> bool {
        self.time.is_some() && (self.time_is_key || self.kind == DedupKind::WithinWatermark)
    }

    /// The rows of a micro-batch, in order: late rows (event time at or before the late-rows
    /// watermark) dropped and counted, the first row of each unseen key kept; then the keys the
    /// eviction watermark has passed are forgotten.
    pub fn step(&mut self, input: Vec<RecordBatch>, task: &Arc<TaskContext>, watermarks: Option<Watermarks>) -> Result<Step> {
        let input = concat_batches(&self.input_schema, &input)?;
        let rows = input.num_rows();
        let evaluate = |exprs: &[Arc<dyn PhysicalExpr>]| -> Result<Vec<ArrayRef>> {
            exprs.iter().map(|e| Ok(e.evaluate(&input)?.into_array(rows)?)).collect()
        };
        let key_columns = evaluate(&self.keys)?;
        let converter = RowConverter::new(key_columns.iter().map(|c| SortField::new(c.data_type().clone())).collect())?;
        let keys = converter.convert_columns(&key_columns)?;
        let times = match self.time {
            Some((i, _)) => Some(crate::eventtime::key_times(input.column(i), crate::eventtime::KeyTime::Timestamp)?),
            None => None,
        };
        let late_us = watermarks.map(|w| w.late_ms.saturating_mul(1000));
        let mut kept: Vec<u32> = Vec::new();
        let mut dropped = 0u64;
        for row in 0..rows {
            let time = times.as_ref().and_then(|t| t.is_valid(row).then(|| t.value(row)));
            if let (Some(t), Some(late)) = (time, late_us)
                && t <= late
            {
                dropped += 1;
                continue;
            }
            let key = keys.row(row).as_ref().to_vec();
            if self.seen.contains_key(&key) {
                continue;
            }
            let expires = match (self.kind, time, self.time) {
                (DedupKind::WithinWatermark, Some(t), Some((_, delay))) => t.saturating_add(delay),
                (DedupKind::Plain, Some(t), _) if self.time_is_key => t,
                _ => i64::MAX,
            };
            self.seen.insert(key, expires);
            kept.push(row as u32);
        }
        let indices = UInt32Array::from(kept);
        let mut columns = key_columns;
        columns.extend(evaluate(&self.values)?);
        let out = take_record_batch(&RecordBatch::try_new(Arc::clone(&self.out_schema), columns)?, &indices)?;
        let updated = out.num_rows() as u64;
        let mut removed = 0u64;
        if let Some(w) = watermarks.filter(|_| self.evicts()) {
            let limit = w.eviction_ms.saturating_mul(1000);
            let before = self.seen.len();
            self.seen.retain(|_, expires| *expires > limit);
            removed = (before - self.seen.len()) as u64;
        }
        Ok(Step {
            rows: self.upper.run(vec![out], task)?,
            updated,
            removed,
            dropped,
        })
    }

    fn state_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("key", DataType::Binary, false),
            Field::new("expires", DataType::Int64, false),
        ]))
    }

    /// The keys seen, as an Arrow IPC stream of (key, expires).
    pub fn snapshot(&self) -> Result<Vec<u8>> {
        let schema = Self::state_schema();
        let keys = BinaryArray::from_iter_values(self.seen.keys());
        let expires = Int64Array::from_iter_values(self.seen.values().copied());
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(keys), Arc::new(expires)])?;
        crate::ipc_stream(&schema, [&batch])
    }

    /// Takes the keys of a [`Dedup::snapshot`]; refuses another operator's state.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        let reader = datafusion::arrow::ipc::reader::StreamReader::try_new(bytes, None)?;
        if reader.schema() != Self::state_schema() {
            return Err(Error::analysis(format!(
                "The checkpoint's state is not a deduplication's (operator dedupe) but has the columns {:?}: the query changed in a way its state cannot follow (start it with a new checkpointLocation)",
                reader.schema().fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>()
            )));
        }
        self.seen.clear();
        for batch in reader {
            let batch = batch?;
            let keys = batch.column(0).as_binary::<i32>();
            let expires = batch.column(1).as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            for row in 0..batch.num_rows() {
                self.seen.insert(keys.value(row).to_vec(), expires.value(row));
            }
        }
        Ok(())
    }
}
