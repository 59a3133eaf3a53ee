//! What the stages of a streaming query run on: a copy of a physical plan fed from its slots
//! ([`Instance`]), the record batches ember's engine moves between workers ([`ArrowBatch`]),
//! and what a stateful step hands the sink ([`Step`]).

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::eventtime::EventStats;
use crate::source::Slot;

/// A record batch that ember's engine can move between processes (as Arrow IPC).
#[derive(Clone, Debug)]
pub(crate) struct ArrowBatch(pub RecordBatch);

impl Serialize for ArrowBatch {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut bytes = Vec::new();
        let written = (|| -> std::result::Result<(), datafusion::arrow::error::ArrowError> {
            let mut writer = datafusion::arrow::ipc::writer::StreamWriter::try_new(&mut bytes, &self.0.schema())?;
            writer.write(&self.0)?;
            writer.finish()
        })();
        written.map_err(|e| serde::ser::Error::custom(format!("cannot encode a record batch: {e}")))?;
        serializer.serialize_bytes(&bytes)
    }
}

impl<'de> Deserialize<'de> for ArrowBatch {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let bytes: Vec<u8> = serde::Deserialize::deserialize(deserializer)?;
        let mut reader = datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(|e| serde::de::Error::custom(format!("not a record batch: {e}")))?;
        match reader.next() {
            Some(Ok(batch)) => Ok(ArrowBatch(batch)),
            Some(Err(e)) => Err(serde::de::Error::custom(format!("not a record batch: {e}"))),
            None => Err(serde::de::Error::custom("an empty record batch stream")),
        }
    }
}

/// One copy of a physical plan and the slots its leaves read, with the stream each scans.
pub(crate) struct Instance {
    pub(crate) plan: Arc<dyn ExecutionPlan>,
    pub(crate) slots: Vec<(usize, Slot)>,
    /// A join of two streams: the plan of its right side (`plan` is the left's).
    pub(crate) right: Option<Box<Instance>>,
}

impl Instance {
    /// Runs the plan over `input` in every leaf (a stage between others has one).
    pub(crate) fn run(&self, input: Vec<RecordBatch>, task: &Arc<TaskContext>) -> Result<Vec<RecordBatch>> {
        for (_, slot) in &self.slots {
            slot.fill(input.iter().cloned());
        }
        self.execute(task)
    }

    /// Runs the plan with `input` in the leaves that scan stream `source` (the others read
    /// nothing: for a union, the other streams' rows go through on their own).
    pub(crate) fn run_source(&self, source: usize, input: Vec<RecordBatch>, task: &Arc<TaskContext>) -> Result<Vec<RecordBatch>> {
        for (_, slot) in self.slots.iter().filter(|(id, _)| *id == source) {
            slot.fill(input.iter().cloned());
        }
        self.execute(task)
    }

    /// Every output partition (a union has one per input), in order.
    pub(crate) fn execute(&self, task: &Arc<TaskContext>) -> Result<Vec<RecordBatch>> {
        // Operators keep what they built in one execution (a hash join's table of the stream's
        // rows): each micro-batch runs a copy without it. The slots stay the same.
        let plan = datafusion::physical_plan::execution_plan::reset_plan_states(Arc::clone(&self.plan))?;
        let partitions = plan.properties().partitioning.partition_count();
        let mut out = Vec::new();
        for partition in 0..partitions {
            let stream = plan.execute(partition, Arc::clone(task))?;
            out.extend(futures::executor::block_on(datafusion::physical_plan::common::collect(stream))?);
        }
        Ok(out)
    }
}

/// The partial half of a single-stage aggregation: the same groups and aggregates over the
/// same input, giving the accumulators' states.
pub(crate) fn partial_of(agg: &AggregateExec) -> Result<Arc<dyn ExecutionPlan>> {
    Ok(Arc::new(AggregateExec::try_new(
        AggregateMode::Partial,
        agg.group_expr().clone(),
        agg.aggr_expr().to_vec(),
        agg.filter_expr().to_vec(),
        Arc::clone(agg.input()),
        agg.input_schema(),
    )?))
}

/// What a micro-batch did to an aggregation: the rows for the sink and the state's counts.
pub(crate) struct Step {
    pub rows: Vec<RecordBatch>,
    pub updated: u64,
    pub removed: u64,
    pub dropped: u64,
}

/// What the partitions of a micro-batch read, added up: the rows of each of the query's
/// sources (by index) and the event times at each watermark.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct BatchFacts {
    pub source_rows: Vec<u64>,
    pub event_time: Vec<Option<EventStats>>,
}

impl BatchFacts {
    /// Adds one partition of source `source`: `rows` rows with `event_time`'s event times.
    pub(crate) fn add(&mut self, source: usize, rows: u64, event_time: &[Option<EventStats>]) {
        if self.source_rows.len() <= source {
            self.source_rows.resize(source + 1, 0);
        }
        self.source_rows[source] += rows;
        if self.event_time.len() < event_time.len() {
            self.event_time.resize(event_time.len(), None);
        }
        for (mine, more) in self.event_time.iter_mut().zip(event_time) {
            *mine = match (*mine, *more) {
                (Some(a), Some(b)) => Some(a.merge(b)),
                (a, b) => a.or(b),
            };
        }
    }

    /// The micro-batch's input rows over all sources.
    pub(crate) fn input_rows(&self) -> u64 {
        self.source_rows.iter().sum()
    }
}
