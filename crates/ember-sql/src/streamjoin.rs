//! Joins of two streams (Spark's `StreamingSymmetricHashJoinExec`): each side keeps its rows in
//! state; a micro-batch's new rows of one side join the other side's state, then its new rows
//! of the other side join the first side's state (this batch's rows included), so every pair
//! is produced once. The watermark frees the rows of a side that no future row of the other
//! side can match, as the join's time-range condition says (`clickTime >= impressionTime AND
//! clickTime <= impressionTime + interval 15 minutes`); an outer side's freed rows that never
//! matched are emitted then, with nulls for the other side.
//!
//! DataFusion plans the join (a `HashJoinExec`: its equi-keys and the rest of the condition as a
//! filter); this operator evaluates those expressions on worker 0 over the gathered rows.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array, new_null_array};
use datafusion::arrow::compute::{concat_batches, filter_record_batch, take};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::{HashMap, JoinSide, JoinType, ScalarValue};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::joins::utils::JoinFilter;

use crate::error::{Error, Result};
use crate::eventtime::Watermarks;
use crate::exec::{Instance, Step};

/// One side's rows in state, with whether each has matched a row of the other side.
struct Side {
    schema: SchemaRef,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    rows: RecordBatch,
    matched: Vec<bool>,
    /// Its event-time column and the offset (µs) its rows are freed below: a row whose time is
    /// under the watermark plus the offset can match no future row of the other side.
    freed_below: Option<(usize, i64)>,
    /// Its event-time column (one with a watermark), if it has one: its rows at or below the
    /// watermark for late rows are dropped on arrival, as Spark drops them.
    event_time: Option<usize>,
    /// Whether its unmatched rows are emitted with nulls when freed (the outer side).
    outer: bool,
    /// Whether each of the micro-batch's new rows matched, while they probe the other side.
    pending: Vec<bool>,
}

impl Side {
    fn key_rows(&self, batch: &RecordBatch) -> Result<datafusion::arrow::row::Rows> {
        let columns: Vec<ArrayRef> = self
            .keys
            .iter()
            .map(|k| Ok(k.evaluate(batch)?.into_array(batch.num_rows())?))
            .collect::<Result<_>>()?;
        let converter = RowConverter::new(columns.iter().map(|c| SortField::new(c.data_type().clone())).collect())?;
        Ok(converter.convert_columns(&columns)?)
    }
}

/// The stream-stream join's state and plans.
pub(crate) struct StreamJoin {
    sides: [Side; 2],
    filter: Option<JoinFilter>,
    join_schema: SchemaRef,
    projection: Option<Vec<usize>>,
    upper: Instance,
}

/// A term of a time condition: a side's event-time column plus a constant (µs).
fn time_term(expr: &Arc<dyn PhysicalExpr>, filter: &JoinFilter) -> Option<(JoinSide, usize, i64)> {
    if let Some(column) = expr.downcast_ref::<Column>() {
        let index = filter.column_indices().get(column.index())?;
        return Some((index.side, index.index, 0));
    }
    let binary = expr.downcast_ref::<BinaryExpr>()?;
    let sign = match binary.op() {
        Operator::Plus => 1,
        Operator::Minus => -1,
        _ => return None,
    };
    let (side, index, offset) = time_term(binary.left(), filter)?;
    let constant = interval_us(binary.right().downcast_ref::<Literal>()?.value())?;
    Some((side, index, offset + sign * constant))
}

/// The length of an interval literal in microseconds (months have none).
fn interval_us(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => Some(i64::from(v.days) * 86_400_000_000 + v.nanoseconds / 1000),
        ScalarValue::IntervalDayTime(Some(v)) => Some(i64::from(v.days) * 86_400_000_000 + i64::from(v.milliseconds) * 1000),
        ScalarValue::DurationMicrosecond(Some(v)) => Some(*v),
        ScalarValue::DurationMillisecond(Some(v)) => Some(v * 1000),
        ScalarValue::DurationSecond(Some(v)) => Some(v * 1_000_000),
        _ => None,
    }
}

/// The conjuncts of `expr`.
fn conjuncts(expr: &Arc<dyn PhysicalExpr>, out: &mut Vec<Arc<dyn PhysicalExpr>>) {
    match expr.downcast_ref::<BinaryExpr>() {
        Some(binary) if *binary.op() == Operator::And => {
            conjuncts(binary.left(), out);
            conjuncts(binary.right(), out);
        }
        _ => out.push(Arc::clone(expr)),
    }
}

/// For each side, from the condition's bounds between the two event-time columns: the offset
/// below the watermark under which its rows can match nothing more. From `r + a <= l + b`
/// (`r - l <= b - a`), a left row is freed once `l + (b - a)` is under the watermark, since
/// future right rows come after it; from `r - l >= d`, a right row once `r - d` is.
fn time_bounds(filter: &JoinFilter, times: [Option<usize>; 2]) -> [Option<i64>; 2] {
    let mut parts = Vec::new();
    conjuncts(filter.expression(), &mut parts);
    let mut bounds: [Option<i64>; 2] = [None, None];
    let mut tighten = |side: usize, offset: i64| {
        // The largest offset frees soonest and is still safe: every bound must hold.
        bounds[side] = Some(bounds[side].map_or(offset, |b: i64| b.max(offset)));
    };
    for part in parts {
        let Some(binary) = part.downcast_ref::<BinaryExpr>() else {
            continue;
        };
        let (Some(a), Some(b)) = (time_term(binary.left(), filter), time_term(binary.right(), filter)) else {
            continue;
        };
        let is_time = |(side, index, _): (JoinSide, usize, i64)| match side {
            JoinSide::Left => times[0] == Some(index),
            JoinSide::Right => times[1] == Some(index),
            JoinSide::None => false,
        };
        if !is_time(a) || !is_time(b) || a.0 == b.0 {
            continue;
        }
        // As `right + x OP left + y`.
        let (op, right, left) = match (a.0, *binary.op()) {
            (JoinSide::Right, op) => (op, a, b),
            (_, Operator::Lt) => (Operator::Gt, b, a),
            (_, Operator::LtEq) => (Operator::GtEq, b, a),
            (_, Operator::Gt) => (Operator::Lt, b, a),
            (_, Operator::GtEq) => (Operator::LtEq, b, a),
            (_, op) => (op, b, a),
        };
        // right - left OP d
        let d = left.2 - right.2;
        match op {
            Operator::Lt | Operator::LtEq => tighten(0, -d),
            Operator::Gt | Operator::GtEq => tighten(1, d),
            _ => {}
        }
    }
    bounds
}

impl StreamJoin {
    /// Over the join `join` DataFusion planned, `upper` being the plan above it; `watermarked`:
    /// the event-time columns of the query's watermarks (a side's is the first it has).
    pub fn new(join: &HashJoinExec, upper: Instance, watermarked: &[String]) -> Result<Self> {
        let join_type = *join.join_type();
        if !matches!(join_type, JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full) {
            return Err(Error::unsupported(format!(
                "a {join_type} join of two streams (ember joins streams inner, left, right and full outer)"
            )));
        }
        let schemas = [join.left().schema(), join.right().schema()];
        let time_columns = [0, 1].map(|i| watermarked.iter().find_map(|name| schemas[i].index_of(name).ok()));
        let bounds = match join.filter() {
            Some(filter) => time_bounds(filter, time_columns),
            None => [None, None],
        };
        let side = |i: usize| -> Side {
            let keys = join.on().iter().map(|(l, r)| Arc::clone(if i == 0 { l } else { r })).collect();
            Side {
                schema: Arc::clone(&schemas[i]),
                keys,
                rows: RecordBatch::new_empty(Arc::clone(&schemas[i])),
                matched: Vec::new(),
                freed_below: time_columns[i].zip(bounds[i]),
                event_time: time_columns[i],
                outer: match join_type {
                    JoinType::Left => i == 0,
                    JoinType::Right => i == 1,
                    JoinType::Full => true,
                    _ => false,
                },
                pending: Vec::new(),
            }
        };
        let sides = [side(0), side(1)];
        for s in &sides {
            if s.outer && s.freed_below.is_none() {
                return Err(Error::analysis(format!(
                    "Stream-stream {} join between two streaming DataFrame/Datasets is not supported without a watermark in the join keys, or a watermark on the nullable side and an appropriate range condition;",
                    match join_type {
                        JoinType::Left => "LeftOuter",
                        JoinType::Right => "RightOuter",
                        _ => "FullOuter",
                    }
                )));
            }
        }
        Ok(StreamJoin {
            sides,
            filter: join.filter().cloned(),
            join_schema: Arc::clone(join.join_schema()),
            projection: join.projection.as_ref().map(|p| p.to_vec()),
            upper,
        })
    }

    pub fn state_rows(&self) -> u64 {
        self.sides.iter().map(|s| s.rows.num_rows() as u64).sum()
    }

    /// Whether the watermark frees rows of a side.
    pub fn evicts(&self) -> bool {
        self.sides.iter().any(|s| s.freed_below.is_some())
    }

    /// The join's output rows of the pairs `(left row, right row)` of `left` and `right`.
    fn pairs(&self, left: &RecordBatch, right: &RecordBatch, l: &[u32], r: &[u32]) -> Result<RecordBatch> {
        let (l, r) = (UInt32Array::from(l.to_vec()), UInt32Array::from(r.to_vec()));
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.join_schema.fields().len());
        for c in left.columns() {
            columns.push(take(c, &l, None)?);
        }
        for c in right.columns() {
            columns.push(take(c, &r, None)?);
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.join_schema), columns)?)
    }

    /// The pairs of `probe` rows (side `p`) with the other side's state rows whose keys are
    /// equal and for which the filter holds; marks both rows of each pair matched.
    fn probe(&mut self, p: usize, probe: &RecordBatch) -> Result<Option<RecordBatch>> {
        let o = 1 - p;
        if probe.num_rows() == 0 || self.sides[o].rows.num_rows() == 0 {
            return Ok(None);
        }
        // The probing rows (a micro-batch's) are indexed, and the state's keys scanned once
        // against that small index: no index of the whole state is built each micro-batch.
        let probe_keys = self.sides[p].key_rows(probe)?;
        let mut first: HashMap<&[u8], u32> = HashMap::with_capacity(probe.num_rows());
        let mut next = vec![u32::MAX; probe.num_rows()];
        for (i, key) in probe_keys.iter().enumerate().rev() {
            if let Some(head) = first.insert(key.data(), i as u32) {
                next[i] = head;
            }
        }
        let state_keys = self.sides[o].key_rows(&self.sides[o].rows)?;
        let mut matched: Vec<(u32, u32)> = Vec::new();
        for (m, key) in state_keys.iter().enumerate() {
            let mut i = first.get(key.data()).copied().unwrap_or(u32::MAX);
            while i != u32::MAX {
                matched.push((i, m as u32));
                i = next[i as usize];
            }
        }
        drop(first);
        // In the order of the probing rows, then of the state's.
        matched.sort_unstable();
        let (probe_rows, state_rows): (Vec<u32>, Vec<u32>) = matched.into_iter().unzip();
        let (l, r, left, right) = if p == 0 {
            (&probe_rows, &state_rows, probe, &self.sides[o].rows)
        } else {
            (&state_rows, &probe_rows, &self.sides[o].rows, probe)
        };
        let mut out = self.pairs(left, right, l, r)?;
        if let Some(filter) = &self.filter {
            let (li, ri) = (UInt32Array::from(l.clone()), UInt32Array::from(r.clone()));
            let columns = filter
                .column_indices()
                .iter()
                .map(|c| match c.side {
                    JoinSide::Left => Ok(take(left.column(c.index), &li, None)?),
                    _ => Ok(take(right.column(c.index), &ri, None)?),
                })
                .collect::<Result<Vec<ArrayRef>>>()?;
            let intermediate = RecordBatch::try_new(Arc::clone(filter.schema()), columns)?;
            let holds = filter.expression().evaluate(&intermediate)?.into_array(intermediate.num_rows())?;
            let holds: BooleanArray = holds.as_boolean().iter().map(|h| Some(h == Some(true))).collect();
            for (k, h) in holds.iter().enumerate() {
                if h == Some(true) {
                    self.sides[0].matched_mark(l[k] as usize, p == 0);
                    self.sides[1].matched_mark(r[k] as usize, p == 1);
                }
            }
            out = filter_record_batch(&out, &holds)?;
        } else {
            for k in 0..l.len() {
                self.sides[0].matched_mark(l[k] as usize, p == 0);
                self.sides[1].matched_mark(r[k] as usize, p == 1);
            }
        }
        Ok(Some(out))
    }

    /// A micro-batch: the new left rows against the right state, then the new right rows
    /// against the left state (with the new left rows); then each side's rows the eviction
    /// watermark has passed are freed, an outer side's unmatched ones emitted with nulls.
    pub fn step(
        &mut self,
        left: Vec<RecordBatch>,
        right: Vec<RecordBatch>,
        task: &Arc<TaskContext>,
        watermarks: Option<Watermarks>,
    ) -> Result<Step> {
        let mut new = [
            concat_batches(&self.sides[0].schema, &left)?,
            concat_batches(&self.sides[1].schema, &right)?,
        ];
        // Late rows (event time at or below the watermark) join nothing and are not kept.
        let mut dropped = 0;
        if let Some(w) = watermarks {
            let limit = w.late_ms.saturating_mul(1000);
            for (side, rows) in self.sides.iter().zip(new.iter_mut()) {
                let Some(time) = side.event_time else { continue };
                let times = crate::eventtime::key_times(rows.column(time), crate::eventtime::KeyTime::Timestamp)?;
                let late: BooleanArray = times.iter().map(|t| Some(t.is_some_and(|t| t <= limit))).collect();
                let count = late.true_count();
                if count > 0 {
                    dropped += count as u64;
                    *rows = filter_record_batch(rows, &datafusion::arrow::compute::not(&late)?)?;
                }
            }
        }
        let mut updated = (new[0].num_rows() + new[1].num_rows()) as u64;
        // Where each side's rows of this micro-batch start in its state.
        let arrived = [self.sides[0].rows.num_rows(), self.sides[1].rows.num_rows()];
        let mut out = Vec::new();
        // New left rows: the pending marks are the probing rows', kept until they join state.
        self.sides[0].pending = vec![false; new[0].num_rows()];
        out.extend(self.probe(0, &new[0])?);
        let pending = std::mem::take(&mut self.sides[0].pending);
        self.sides[0].append(&new[0], pending)?;
        self.sides[1].pending = vec![false; new[1].num_rows()];
        out.extend(self.probe(1, &new[1])?);
        let pending = std::mem::take(&mut self.sides[1].pending);
        self.sides[1].append(&new[1], pending)?;
        let mut removed = 0;
        if let Some(w) = watermarks {
            for (i, &arrived) in arrived.iter().enumerate() {
                let Some((time, offset)) = self.sides[i].freed_below else {
                    continue;
                };
                let limit = w.eviction_ms.saturating_mul(1000).saturating_add(offset);
                let times = crate::eventtime::key_times(self.sides[i].rows.column(time), crate::eventtime::KeyTime::Timestamp)?;
                let freed: BooleanArray = times.iter().map(|t| Some(t.is_some_and(|t| t < limit))).collect();
                let count = freed.true_count();
                if count == 0 {
                    continue;
                }
                // A row freed in the micro-batch it arrived in was never stored, to Spark (it
                // stores only rows that can still match): neither updated nor removed.
                let fresh = (arrived..freed.len()).filter(|&r| freed.value(r)).count();
                updated -= fresh as u64;
                let count = count - fresh;
                let side = &mut self.sides[i];
                if side.outer {
                    // Spark counts an outer side's freed rows as emitted, not removed.
                    let unmatched: BooleanArray = (0..side.rows.num_rows())
                        .map(|r| Some(freed.value(r) && !side.matched[r]))
                        .collect();
                    let lonely = filter_record_batch(&side.rows, &unmatched)?;
                    if lonely.num_rows() > 0 {
                        out.push(self.with_nulls(i, &lonely)?);
                    }
                } else {
                    removed += count as u64;
                }
                let side = &mut self.sides[i];
                let kept = datafusion::arrow::compute::not(&freed)?;
                side.rows = filter_record_batch(&side.rows, &kept)?;
                side.matched = side
                    .matched
                    .iter()
                    .zip(kept.iter())
                    .filter(|(_, k)| *k == Some(true))
                    .map(|(m, _)| *m)
                    .collect();
            }
        }
        let joined = concat_batches(&self.join_schema, &out)?;
        let joined = match &self.projection {
            Some(columns) => joined.project(columns)?,
            None => joined,
        };
        Ok(Step {
            rows: self.upper.run(vec![joined], task)?,
            updated,
            removed,
            dropped,
        })
    }

    /// Rows of side `i` with nulls for the other side's columns.
    fn with_nulls(&self, i: usize, rows: &RecordBatch) -> Result<RecordBatch> {
        let n = rows.num_rows();
        let nulls = |schema: &SchemaRef| -> Vec<ArrayRef> { schema.fields().iter().map(|f| new_null_array(f.data_type(), n)).collect() };
        let mut columns = Vec::new();
        if i == 0 {
            columns.extend(rows.columns().iter().cloned());
            columns.extend(nulls(&self.sides[1].schema));
        } else {
            columns.extend(nulls(&self.sides[0].schema));
            columns.extend(rows.columns().iter().cloned());
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.join_schema), columns)?)
    }

    /// Both sides' rows and marks, as one Arrow IPC stream per side after a length.
    pub fn snapshot(&self) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        for side in &self.sides {
            let mut schema: Vec<datafusion::arrow::datatypes::Field> = side.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
            schema.push(datafusion::arrow::datatypes::Field::new(
                "__ember_matched",
                datafusion::arrow::datatypes::DataType::Boolean,
                false,
            ));
            let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(schema));
            let mut columns = side.rows.columns().to_vec();
            columns.push(Arc::new(BooleanArray::from(side.matched.clone())));
            let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
            let one = crate::ipc_stream(&schema, [&batch])?;
            bytes.extend((one.len() as u64).to_le_bytes());
            bytes.extend(one);
        }
        Ok(bytes)
    }

    /// Takes the state of a [`StreamJoin::snapshot`].
    pub fn restore(&mut self, mut bytes: &[u8]) -> Result<()> {
        let bad = || {
            Error::analysis(
                "The checkpoint's state is not this stream-stream join's (operator symmetricHashJoin): the query changed in a way its state cannot follow (start it with a new checkpointLocation)",
            )
        };
        for side in &mut self.sides {
            let (len, rest) = bytes.split_first_chunk::<8>().ok_or_else(bad)?;
            let len = u64::from_le_bytes(*len) as usize;
            let (one, rest) = rest.split_at_checked(len).ok_or_else(bad)?;
            bytes = rest;
            let reader = datafusion::arrow::ipc::reader::StreamReader::try_new(one, None).map_err(|_| bad())?;
            let schema = reader.schema();
            let fields = schema.fields().len();
            if fields != side.schema.fields().len() + 1 {
                return Err(bad());
            }
            let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
            let batch = concat_batches(&schema, &batches)?;
            side.matched = batch.column(fields - 1).as_boolean().iter().map(|m| m == Some(true)).collect();
            side.rows = RecordBatch::try_new(Arc::clone(&side.schema), batch.columns()[..fields - 1].to_vec()).map_err(|_| bad())?;
        }
        Ok(())
    }
}

impl Side {
    /// Marks row `row` matched: of the pending new rows when `pending`, else of the state.
    fn matched_mark(&mut self, row: usize, pending: bool) {
        if pending {
            self.pending[row] = true;
        } else {
            self.matched[row] = true;
        }
    }

    fn append(&mut self, rows: &RecordBatch, matched: Vec<bool>) -> Result<()> {
        if rows.num_rows() == 0 {
            return Ok(());
        }
        self.rows = concat_batches(&self.schema, [&self.rows, rows])?;
        self.matched.extend(matched);
        Ok(())
    }
}
