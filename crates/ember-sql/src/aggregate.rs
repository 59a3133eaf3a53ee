//! A streaming aggregation's state: each micro-batch's partial rows merged into the groups
//! kept so far, and what the output mode sends on (Spark's `StateStoreSaveExec`).

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::execution::TaskContext;

use crate::error::{Error, Result};
use crate::eventtime::{KeyTime, Watermarks};
use crate::exec::{Instance, Step};
use crate::sink::OutputMode;

/// The stages after the gather, for an aggregation.
pub(crate) struct Finisher {
    pub(crate) merge: Instance,
    pub(crate) finish: Instance,
    pub(crate) upper: Instance,
    pub(crate) groups: usize,
    pub(crate) state: Option<RecordBatch>,
    pub(crate) partial_schema: SchemaRef,
    /// The key that holds event time, when the query has a watermark on it.
    pub(crate) key_time: Option<(usize, KeyTime)>,
    /// The key that is a session window, whose sessions merge.
    pub(crate) session: Option<usize>,
}

/// Which rows of `batch` have their key's event time at or before `watermark_ms`.
pub(crate) fn at_or_before(batch: &RecordBatch, (key, kind): (usize, KeyTime), watermark_ms: i64) -> Result<BooleanArray> {
    let times = crate::eventtime::key_times(batch.column(key), kind)?;
    let limit = watermark_ms.saturating_mul(1000);
    Ok(times.iter().map(|t| Some(t.is_some_and(|t| t <= limit))).collect())
}

impl Finisher {
    /// The state as an Arrow IPC stream (none or one batch of the partial schema).
    pub(crate) fn snapshot(&self) -> Result<Vec<u8>> {
        crate::ipc_stream(&self.partial_schema, self.state.as_ref())
    }

    /// Takes the state of a [`Finisher::snapshot`]; refuses one of another query's aggregation.
    pub(crate) fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        let reader = datafusion::arrow::ipc::reader::StreamReader::try_new(bytes, None)?;
        let schema = reader.schema();
        let fields =
            |s: &SchemaRef| -> Vec<(String, String)> { s.fields().iter().map(|f| (f.name().clone(), f.data_type().to_string())).collect() };
        if fields(&schema) != fields(&self.partial_schema) {
            return Err(Error::analysis(format!(
                "The checkpoint's state of the aggregation (operator stateStoreSave) has the columns {:?}; the query's aggregation now keeps {:?}: the query changed in a way its state cannot follow (start it with a new checkpointLocation)",
                fields(&schema),
                fields(&self.partial_schema)
            )));
        }
        let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
        self.state = match batches.len() {
            0 => None,
            _ => Some(concat_batches(&self.partial_schema, &batches)?),
        };
        Ok(())
    }

    /// Groups in the state.
    pub(crate) fn state_rows(&self) -> u64 {
        self.state.as_ref().map_or(0, |s| s.num_rows() as u64)
    }

    /// Merges a micro-batch's partial rows into the state and returns the rows the output
    /// mode sends to the sink. With event time (`watermarks`): groups at or before the late-rows
    /// watermark are dropped; update mode then frees the groups at or before the eviction
    /// watermark, append mode emits and frees them (Spark 3.5's `StateStoreSaveExec`).
    pub(crate) fn step(
        &mut self,
        partials: Vec<RecordBatch>,
        mode: OutputMode,
        task: &Arc<TaskContext>,
        watermarks: Option<Watermarks>,
    ) -> Result<Step> {
        let new = concat_batches(&self.partial_schema, &partials)?;
        // One row per group, as Spark's stateful operator sees them after its shuffle.
        let mut new = concat_batches(&self.partial_schema, &self.merge.run(vec![new], task)?)?;
        // Complete mode keeps every group: no late rows, no eviction (Spark's).
        let event = self.key_time.zip(watermarks).filter(|_| mode != OutputMode::Complete);
        let mut dropped = 0;
        if let Some((key, w)) = event {
            let late = at_or_before(&new, key, w.late_ms)?;
            dropped = late.true_count() as u64;
            if dropped > 0 {
                new = filter_record_batch(&new, &datafusion::arrow::compute::not(&late)?)?;
            }
        }
        let state_len = self.state.as_ref().map_or(0, RecordBatch::num_rows);
        let mut input = Vec::with_capacity(2);
        if let Some(state) = self.state.take() {
            input.push(state);
        }
        input.push(new.clone());
        let old_state = (state_len > 0).then(|| input[0].clone());
        // Session windows: the sessions of a key that now overlap become one, in the state and
        // the micro-batch alike; `new` then holds the micro-batch's rows under their sessions.
        if let Some(session) = self.session {
            let combined = concat_batches(&self.partial_schema, &input)?;
            let (rekeyed, origin) = crate::eventtime::merge_sessions(&combined, session, self.groups)?;
            let from_batch: BooleanArray = origin.iter().map(|&o| Some(o >= state_len)).collect();
            new = filter_record_batch(&rekeyed, &from_batch)?;
            input = vec![rekeyed];
        }
        let merged = self.merge.run(input, task)?;
        let merged = concat_batches(&self.partial_schema, &merged)?;
        let keys = |batch: &RecordBatch| -> Result<datafusion::arrow::row::Rows> {
            let fields = batch.columns()[..self.groups]
                .iter()
                .map(|c| SortField::new(c.data_type().clone()))
                .collect();
            let converter = RowConverter::new(fields)?;
            Ok(converter.convert_columns(&batch.columns()[..self.groups])?)
        };
        let touched: HashSet<Vec<u8>> = keys(&new)?.iter().map(|r| r.as_ref().to_vec()).collect();
        // Spark rewrites every session of a key with input, changed or not.
        let updated = match self.session {
            Some(session) => {
                let others = |batch: &RecordBatch| -> Result<datafusion::arrow::row::Rows> {
                    let columns: Vec<_> = (0..self.groups)
                        .filter(|g| *g != session)
                        .map(|g| Arc::clone(batch.column(g)))
                        .collect();
                    let converter = RowConverter::new(columns.iter().map(|c| SortField::new(c.data_type().clone())).collect())?;
                    Ok(converter.convert_columns(&columns)?)
                };
                let with_input: HashSet<Vec<u8>> = others(&new)?.iter().map(|r| r.as_ref().to_vec()).collect();
                others(&merged)?.iter().filter(|r| with_input.contains(r.as_ref())).count() as u64
            }
            None => touched.len() as u64,
        };
        let evicted = match event {
            Some((key, w)) => Some(at_or_before(&merged, key, w.eviction_ms)?),
            None => None,
        };
        // Spark keys a session's state by its start: a saved session that a merge gave another
        // start is removed from the store, and counted so.
        let replaced = match (self.session, &old_state) {
            (Some(session), Some(old)) => replaced_sessions(old, &merged, session, self.groups)?,
            _ => 0,
        };
        let removed = evicted.as_ref().map_or(0, |e| e.true_count() as u64) + replaced;
        let kept = match &evicted {
            Some(mask) if removed > 0 => filter_record_batch(&merged, &datafusion::arrow::compute::not(mask)?)?,
            _ => merged.clone(),
        };
        let finishing = match mode {
            OutputMode::Complete => merged,
            OutputMode::Update if self.groups > 0 => {
                let mask: BooleanArray = keys(&merged)?.iter().map(|r| Some(touched.contains(r.as_ref()))).collect();
                filter_record_batch(&merged, &mask)?
            }
            OutputMode::Update => merged,
            OutputMode::Append => match &evicted {
                Some(mask) => filter_record_batch(&merged, mask)?,
                None => return Err(Error::unsupported("append mode for an aggregation without a watermark on its key")),
            },
        };
        self.state = Some(kept);
        let finished = self.finish.run(vec![finishing], task)?;
        Ok(Step {
            rows: self.upper.run(finished, task)?,
            updated,
            removed,
            dropped,
        })
    }
}

/// How many of the saved sessions `old` are in `merged` under no session of the same key and
/// start (a merge moved their start).
fn replaced_sessions(old: &RecordBatch, merged: &RecordBatch, session: usize, groups: usize) -> Result<u64> {
    let key_columns = |batch: &RecordBatch| -> Vec<ArrayRef> {
        (0..groups)
            .map(|g| match g == session {
                true => Arc::clone(batch.column(g).as_struct().column(0)),
                false => Arc::clone(batch.column(g)),
            })
            .collect()
    };
    let (old, merged) = (key_columns(old), key_columns(merged));
    let converter = RowConverter::new(merged.iter().map(|c| SortField::new(c.data_type().clone())).collect())?;
    let now = converter.convert_columns(&merged)?;
    let now: HashSet<&[u8]> = now.iter().map(|r| r.data()).collect();
    let before = converter.convert_columns(&old)?;
    Ok(before.iter().filter(|r| !now.contains(r.data())).count() as u64)
}
