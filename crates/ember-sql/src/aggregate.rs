//! A streaming aggregation's state: each micro-batch's partial rows merged into the groups
//! kept so far, and what the output mode sends on (Spark's `StateStoreSaveExec`).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::execution::TaskContext;
use ember::{KeyGroupLogic, KeyGroups, Routed};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::eventtime::{EventStats, KeyTime, WatermarkTracker, Watermarks};
use crate::exec::{ArrowBatch, BatchFacts, Instance, Step};
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
    /// The rows of a state written as an Arrow IPC stream; refuses the state of another
    /// query's aggregation, naming the operator.
    pub(crate) fn read_state(&self, bytes: &[u8]) -> Result<Vec<RecordBatch>> {
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
        Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
    }

    /// Spark 3.5's name of the operator in progress reports (checked with PySpark 3.5.9).
    pub(crate) fn operator_name(&self) -> String {
        match self.session {
            Some(_) => "defaultName".to_owned(),
            None => "stateStoreSave".to_owned(),
        }
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

/// What a worker sends the aggregation's owners from one partition of a micro-batch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Piece {
    /// Partial rows whose groups one owner holds.
    Rows(ArrowBatch),
    /// How many rows the partition read, and its event times at each watermark: every owner
    /// gets a copy, so that all of them move the watermark alike.
    Facts {
        /// The query's source (its index) the partition is of.
        source: usize,
        input_rows: u64,
        event_time: Vec<Option<EventStats>>,
    },
}

/// One owner's share of a micro-batch of the aggregation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Stepped {
    /// Whether the micro-batch ran (it had input, or the watermark freed groups).
    pub ran: bool,
    /// What the micro-batch read, over all partitions (every owner has all of it).
    pub facts: BatchFacts,
    /// The rows the output mode sends to the sink from this owner's groups.
    pub rows: Vec<ArrowBatch>,
    pub updated: u64,
    pub removed: u64,
    pub dropped: u64,
    /// Groups held after the micro-batch.
    pub state_rows: u64,
    /// The watermark moved where the state frees groups: a micro-batch runs next, data or not.
    pub pending: bool,
}

/// Which columns of the partial rows decide where a group lives: its keys, but for a session
/// window's (the sessions of one key merge, so they must live together).
pub(crate) fn routing_keys(finisher: &Finisher) -> Vec<usize> {
    (0..finisher.groups).filter(|g| Some(*g) != finisher.session).collect()
}

/// The key group of each row of `batch` (the stable hash of its `keys` columns' row encoding).
fn row_groups(batch: &RecordBatch, keys: &[usize], groups: &KeyGroups) -> Result<Vec<u32>> {
    if keys.is_empty() {
        // A global aggregation: one group, held by one owner.
        return Ok(vec![global_group(groups); batch.num_rows()]);
    }
    let columns: Vec<ArrayRef> = keys.iter().map(|k| Arc::clone(batch.column(*k))).collect();
    let converter = RowConverter::new(columns.iter().map(|c| SortField::new(c.data_type().clone())).collect())?;
    let rows = converter.convert_columns(&columns)?;
    Ok(rows
        .iter()
        .map(|r| groups.group_of_hash(ember::keys::stable_hash(r.data())))
        .collect())
}

/// The key group of the rows of an aggregation routed by no column.
fn global_group(groups: &KeyGroups) -> u32 {
    groups.group_of_hash(ember::keys::stable_hash(&[] as &[u8]))
}

/// The rows of `batch` by the value each row has in `of`, in order of that value.
fn split_rows(batch: &RecordBatch, of: &[u32]) -> Result<BTreeMap<u32, RecordBatch>> {
    let mut indices: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (row, value) in of.iter().enumerate() {
        indices.entry(*value).or_default().push(row as u32);
    }
    if indices.len() == 1 {
        return Ok(indices.into_keys().map(|k| (k, batch.clone())).collect());
    }
    indices
        .into_iter()
        .map(|(k, rows)| Ok((k, datafusion::arrow::compute::take_record_batch(batch, &UInt32Array::from(rows))?)))
        .collect()
}

/// A worker's side of the exchange: the partial rows of one partition, each to the owner of
/// its group, and the partition's facts to every owner.
pub(crate) fn route(
    source: usize,
    input_rows: u64,
    event_time: Vec<Option<EventStats>>,
    partials: Vec<ArrowBatch>,
    keys: &[usize],
    groups: &KeyGroups,
    out: &mut Vec<Routed<Piece>>,
) -> Result<()> {
    out.push(Routed::Everyone(Piece::Facts {
        source,
        input_rows,
        event_time,
    }));
    for batch in partials {
        let batch = batch.0;
        if batch.num_rows() == 0 {
            continue;
        }
        let partitions: Vec<u32> = row_groups(&batch, keys, groups)?
            .into_iter()
            .map(|g| groups.partition_of_group(g))
            .collect();
        for (partition, rows) in split_rows(&batch, &partitions)? {
            out.push(Routed::To {
                partition,
                value: Piece::Rows(ArrowBatch(rows)),
            });
        }
    }
    Ok(())
}

/// The aggregation's state on one worker: the groups of the key groups it owns, kept by
/// ember's engine (checkpointed per key group, restored on any number of workers).
pub(crate) struct KeyedAggregate {
    /// The worker's copy of the aggregation's final stages (or why it could not be planned).
    finisher: std::result::Result<Finisher, String>,
    keys: Vec<usize>,
    groups: KeyGroups,
    mode: OutputMode,
    task: Arc<TaskContext>,
    /// The watermarks' delays, when the query has event time.
    delays: Option<Vec<i64>>,
    tracker: WatermarkTracker,
    pending: bool,
    /// Restored rows, until every owned group is in.
    restoring: Vec<RecordBatch>,
}

impl KeyedAggregate {
    pub(crate) fn new(
        finisher: std::result::Result<Finisher, String>,
        groups: &KeyGroups,
        mode: OutputMode,
        task: Arc<TaskContext>,
        delays: Option<Vec<i64>>,
    ) -> Self {
        KeyedAggregate {
            keys: finisher.as_ref().map(routing_keys).unwrap_or_default(),
            finisher,
            groups: groups.clone(),
            mode,
            task,
            delays,
            tracker: WatermarkTracker::default(),
            pending: false,
            restoring: Vec::new(),
        }
    }

    fn finisher(&mut self) -> std::result::Result<&mut Finisher, String> {
        self.finisher.as_mut().map_err(|e| e.clone())
    }

    /// The watermarks and the pending flag, as every snapshot group carries them.
    fn clock_bytes(&self) -> Vec<u8> {
        serde_json::json!({
            "evictionMs": self.tracker.current.eviction_ms,
            "lateMs": self.tracker.current.late_ms,
            "nodes": self.tracker.nodes,
            "pending": self.pending,
        })
        .to_string()
        .into_bytes()
    }
}

impl KeyGroupLogic for KeyedAggregate {
    type Input = Piece;
    type Output = Stepped;

    fn on_batch(&mut self, _time: ember::Time, input: Vec<Piece>) -> std::result::Result<Vec<Stepped>, String> {
        let mut rows = Vec::new();
        let mut facts = BatchFacts::default();
        for piece in input {
            match piece {
                Piece::Rows(batch) => rows.push(batch.0),
                Piece::Facts {
                    source,
                    input_rows,
                    event_time,
                } => facts.add(source, input_rows, &event_time),
            }
        }
        let mut stepped = Stepped {
            ran: facts.input_rows() > 0 || self.pending,
            facts,
            rows: Vec::new(),
            updated: 0,
            removed: 0,
            dropped: 0,
            state_rows: 0,
            pending: false,
        };
        let (mode, task) = (self.mode, Arc::clone(&self.task));
        let watermarks = self.delays.as_ref().map(|_| self.tracker.current);
        let global_elsewhere = self.keys.is_empty() && !self.groups.owns(global_group(&self.groups));
        let finisher = self.finisher()?;
        let evicts = finisher.key_time.is_some() && mode != OutputMode::Complete;
        if stepped.ran {
            // A global aggregation finishes to one row even over nothing: only the owner of its
            // one group runs it.
            if !(finisher.groups == 0 && global_elsewhere) {
                let step = finisher.step(rows, mode, &task, watermarks).map_err(|e| e.to_string())?;
                stepped.rows = step.rows.into_iter().map(ArrowBatch).collect();
                (stepped.updated, stepped.removed, stepped.dropped) = (step.updated, step.removed, step.dropped);
            }
            // Every owner moves the watermark alike, whether it held rows or not: any of them
            // may write the groups a restart reads it from.
            if let Some(delays) = &self.delays {
                let next = self.tracker.after(delays, &stepped.facts.event_time);
                self.pending = evicts && next.current.eviction_ms > self.tracker.current.eviction_ms;
                self.tracker = next;
            }
        }
        stepped.state_rows = self.finisher.as_ref().map_or(0, Finisher::state_rows);
        stepped.pending = self.pending;
        Ok(vec![stepped])
    }

    fn snapshot(&self) -> std::result::Result<BTreeMap<u32, Vec<u8>>, String> {
        let finisher = self.finisher.as_ref().map_err(|e| e.clone())?;
        let clock = self.clock_bytes();
        let mut rows = match &finisher.state {
            Some(state) if state.num_rows() > 0 => {
                let groups = row_groups(state, &self.keys, &self.groups).map_err(|e| e.to_string())?;
                split_rows(state, &groups).map_err(|e| e.to_string())?
            }
            _ => BTreeMap::new(),
        };
        // Every owned group carries the watermarks, so that any worker restoring any of them
        // goes on with the same.
        let mut out = BTreeMap::new();
        for group in self.groups.owned() {
            let mut bytes = Vec::with_capacity(4 + clock.len());
            bytes.extend_from_slice(&(clock.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&clock);
            if let Some(batch) = rows.remove(&group) {
                bytes.extend(crate::ipc_stream(&finisher.partial_schema, Some(&batch)).map_err(|e| e.to_string())?);
            }
            out.insert(group, bytes);
        }
        Ok(out)
    }

    fn restore(&mut self, group: u32, bytes: &[u8]) -> std::result::Result<(), String> {
        let damaged = || format!("the state of key group {group} is damaged");
        let length = bytes.get(..4).ok_or_else(damaged)?;
        let length = u32::from_le_bytes(length.try_into().map_err(|_| damaged())?) as usize;
        let clock = bytes.get(4..4 + length).ok_or_else(damaged)?;
        let clock: serde_json::Value = serde_json::from_slice(clock).map_err(|_| damaged())?;
        self.tracker = WatermarkTracker {
            current: Watermarks {
                eviction_ms: clock["evictionMs"].as_i64().unwrap_or(0),
                late_ms: clock["lateMs"].as_i64().unwrap_or(0),
            },
            nodes: clock["nodes"]
                .as_array()
                .map(|nodes| nodes.iter().map(serde_json::Value::as_i64).collect())
                .unwrap_or_default(),
        };
        self.pending = clock["pending"].as_bool().unwrap_or(false);
        let rows = &bytes[4 + length..];
        if !rows.is_empty() {
            let finisher = self.finisher()?;
            let batches = finisher.read_state(rows).map_err(|e| e.to_string())?;
            self.restoring.extend(batches);
        }
        Ok(())
    }

    fn restored(&mut self) {
        let restoring = std::mem::take(&mut self.restoring);
        if let Ok(finisher) = self.finisher.as_mut()
            && !restoring.is_empty()
        {
            match concat_batches(&finisher.partial_schema, &restoring) {
                Ok(state) => finisher.state = Some(state),
                Err(e) => self.finisher = Err(format!("cannot restore the aggregation's state: {e}")),
            }
        }
    }

    fn keys(&self) -> Option<u64> {
        Some(self.finisher.as_ref().map_or(0, Finisher::state_rows))
    }
}
