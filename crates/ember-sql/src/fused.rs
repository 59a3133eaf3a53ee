//! One fused worker stage for the commonest streaming query: the pieces of
//! `explode(split(text, pattern))` counted per piece (seed 002's word count, in SQL or with
//! DataFrames). DataFusion runs that stage as `split` (every piece copied into a list), the
//! unnest (every piece copied again into a column), then the partial aggregation's group map,
//! which hashes each piece once more. [`SplitCountExec`] reads each string once, splits it where
//! it lies and counts the pieces in one hash table, and gives exactly the partial aggregation's
//! output (its schema, one row per piece with its count), so the rest of the query (the
//! exchange, the merge into state, the output modes) is the same. Any other shape of stage
//! keeps DataFusion's operators; `tests` checks both give the same counts.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{NullHandling, Result, ScalarValue, exec_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::unnest::UnnestExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties};

use crate::udf::{SparkSplit, Splitter};

/// `stage`, with a partial count of split pieces replaced by [`SplitCountExec`].
pub(crate) fn fuse(stage: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
    match SplitCountExec::matching(&stage) {
        Some(fused) => Arc::new(fused),
        None => stage,
    }
}

/// The partial count of the pieces of one string column split by a constant pattern.
#[derive(Clone, Debug)]
pub(crate) struct SplitCountExec {
    /// What the split read from (the plan below DataFusion's projection with `split`).
    input: Arc<dyn ExecutionPlan>,
    /// The string column of `input` that is split.
    text: usize,
    pattern: String,
    limit: i64,
    /// A null string counts as one null piece (DataFusion's `Preserve`); otherwise it gives no
    /// row (Spark's `explode`).
    null_piece: bool,
    /// The partial aggregation's output: the piece, then one count per aggregate.
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

/// Nodes between the unnest and the aggregation, or below the unnest, that only move batches.
fn through_movers(mut node: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
    loop {
        let next = if let Some(repartition) = node.downcast_ref::<RepartitionExec>() {
            Arc::clone(repartition.input())
        } else {
            return node;
        };
        node = next;
    }
}

impl SplitCountExec {
    fn matching(stage: &Arc<dyn ExecutionPlan>) -> Option<SplitCountExec> {
        let agg = stage.downcast_ref::<AggregateExec>()?;
        let group = agg.group_expr();
        if *agg.mode() != AggregateMode::Partial
            || group.expr().len() != 1
            || !group.is_single()
            || agg.limit_options().is_some()
            || agg.filter_expr().iter().any(Option::is_some)
        {
            return None;
        }
        let schema = agg.schema();
        let counts = agg.aggr_expr().len();
        let fields = schema.fields();
        if fields.len() != 1 + counts
            || fields[0].data_type() != &DataType::Utf8
            || fields[1..].iter().any(|f| f.data_type() != &DataType::Int64)
        {
            return None;
        }
        // The piece column, followed down through renames.
        let mut column = group.expr()[0].0.downcast_ref::<Column>()?.index();
        for count in agg.aggr_expr() {
            // count(*), count(1) and count(piece) are the same here: a piece is never null
            // (unless a null string counts as one, checked below).
            let plain = count.fun().name() == "count" && !count.is_distinct();
            let args_ok = count.expressions().iter().all(|arg| {
                arg.downcast_ref::<Literal>().is_some_and(|l| !l.value().is_null())
                    || arg.downcast_ref::<Column>().is_some_and(|c| c.index() == column)
            });
            if !plain || !args_ok {
                return None;
            }
        }
        let counts_piece = agg
            .aggr_expr()
            .iter()
            .any(|c| c.expressions().iter().any(|a| a.downcast_ref::<Column>().is_some()));
        let mut node = through_movers(Arc::clone(agg.input()));
        while let Some(projection) = node.downcast_ref::<ProjectionExec>() {
            column = projection.expr().get(column)?.expr.downcast_ref::<Column>()?.index();
            node = through_movers(Arc::clone(projection.input()));
        }
        let unnest = node.downcast_ref::<UnnestExec>()?;
        let [list] = unnest.list_column_indices() else {
            return None;
        };
        let null_piece = match unnest.options().null_handling {
            NullHandling::Drop => false,
            NullHandling::Preserve => true,
            NullHandling::PreserveAndExpandEmpty => return None,
        };
        if list.depth != 1
            || list.index_in_input_schema != column
            || !unnest.struct_column_indices().is_empty()
            || unnest.input().schema().fields().len() != unnest.schema().fields().len()
            || (null_piece && counts_piece)
        {
            return None;
        }
        let below = through_movers(Arc::clone(unnest.input()));
        let projection = below.downcast_ref::<ProjectionExec>()?;
        let split = projection.expr().get(column)?.expr.downcast_ref::<ScalarFunctionExpr>()?;
        split.fun().inner().downcast_ref::<SparkSplit>()?;
        let (text, pattern, limit) = match split.args() {
            [text, pattern] => (text, pattern, -1),
            [text, pattern, limit] => (text, pattern, constant_limit(limit)?),
            _ => return None,
        };
        let text = text.downcast_ref::<Column>()?.index();
        let ScalarValue::Utf8(Some(pattern)) = pattern.downcast_ref::<Literal>()?.value() else {
            return None;
        };
        Splitter::new(pattern).ok()?;
        let input = Arc::clone(projection.input());
        if input.schema().fields().get(text)?.data_type() != &DataType::Utf8 {
            return None;
        }
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            input.output_partitioning().clone(),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Some(SplitCountExec {
            input,
            text,
            pattern: pattern.clone(),
            limit,
            null_piece,
            schema,
            properties: Arc::new(properties),
        })
    }

    /// The partial counts of `batches`' pieces: one row per distinct piece.
    fn count(&self, batches: &[RecordBatch]) -> Result<Option<RecordBatch>> {
        let splitter = Splitter::new(&self.pattern)?;
        // A one-byte separator (a word count's " ") is found across a batch's whole text at once.
        let byte = match &splitter {
            Splitter::Char(c) if c.is_ascii() && self.limit <= 0 => Some(*c as u8),
            _ => None,
        };
        let mut counts = PieceCounts::new();
        let mut nulls = 0i64;
        for batch in batches {
            let Some(texts) = batch.column(self.text).as_string_opt::<i32>() else {
                return exec_err!("split: expected a string column, got {}", batch.column(self.text).data_type());
            };
            match byte {
                Some(sep) => nulls += count_split_by_byte(texts, sep, &mut counts),
                None => {
                    for row in 0..texts.len() {
                        if texts.is_null(row) {
                            nulls += 1;
                            continue;
                        }
                        splitter.for_each_piece(texts.value(row), self.limit, |piece| counts.add(piece.as_bytes()));
                    }
                }
            }
        }
        let nulls = if self.null_piece { nulls } else { 0 };
        if counts.len() == 0 && nulls == 0 {
            return Ok(None);
        }
        let rows = counts.len() + usize::from(nulls > 0);
        let mut pieces = StringBuilder::with_capacity(rows, counts.bytes.len());
        let mut totals = Vec::with_capacity(rows);
        for (piece, n) in counts.iter() {
            // Pieces of UTF-8 text cut at an ASCII byte or at a match are UTF-8.
            match std::str::from_utf8(piece) {
                Ok(piece) => pieces.append_value(piece),
                Err(e) => return exec_err!("split: a piece is not UTF-8: {e}"),
            }
            totals.push(n);
        }
        if nulls > 0 {
            pieces.append_null();
            totals.push(nulls);
        }
        let totals: ArrayRef = Arc::new(Int64Array::from(totals));
        let mut columns: Vec<ArrayRef> = vec![Arc::new(pieces.finish())];
        columns.extend(std::iter::repeat_n(totals, self.schema.fields().len() - 1));
        Ok(Some(RecordBatch::try_new(Arc::clone(&self.schema), columns)?))
    }
}

/// Counts the pieces of every string of `texts` around the byte `sep` (Java's split without a
/// limit: empty pieces included), scanning the column's bytes once; returns the null rows.
/// Pieces are found a few hundred at a time and then counted, so that the table's loads of
/// one group overlap instead of waiting on the search between them.
fn count_split_by_byte(texts: &StringArray, sep: u8, counts: &mut PieceCounts) -> i64 {
    const GROUP: usize = 256;
    let offsets = texts.value_offsets();
    let bytes = texts.value_data();
    let (first, last) = (offsets[0] as usize, offsets[texts.len()] as usize);
    let mut seps = memchr::memchr_iter(sep, &bytes[first..last]).map(|at| at + first);
    let mut next = seps.next();
    let mut nulls = 0;
    let mut pieces: Vec<(usize, usize)> = Vec::with_capacity(GROUP + 64);
    for row in 0..texts.len() {
        let (mut start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
        let null = texts.is_null(row);
        while let Some(at) = next.filter(|&at| at < end) {
            if !null {
                pieces.push((start, at));
            }
            start = at + 1;
            next = seps.next();
        }
        if null {
            nulls += 1;
        } else {
            pieces.push((start, end));
        }
        if pieces.len() >= GROUP {
            counts.add_all(bytes, &pieces);
            pieces.clear();
        }
    }
    counts.add_all(bytes, &pieces);
    nulls
}

/// Counts per piece of bytes, in an open-addressing table made for short keys: a key of up to
/// 16 bytes is held as two words (its first and last 8 bytes, overlapping), hashed and compared
/// as those words with no call to `memcmp`; longer keys are compared in `bytes`.
struct PieceCounts {
    slots: Vec<PieceSlot>,
    /// The keys' bytes, one after another.
    bytes: Vec<u8>,
    used: usize,
    seed: u64,
}

#[derive(Clone, Copy)]
struct PieceSlot {
    hash: u64,
    words: (u64, u64),
    /// `usize::MAX`: empty.
    len: usize,
    start: usize,
    count: i64,
}

const EMPTY: PieceSlot = PieceSlot {
    hash: 0,
    words: (0, 0),
    len: usize::MAX,
    start: 0,
    count: 0,
};

/// The first and last bytes of `key` as two words: for a key of up to 16 bytes these and its
/// length are the key.
#[inline]
fn words(key: &[u8]) -> (u64, u64) {
    let n = key.len();
    let word = |b: &[u8]| u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
    let half = |b: &[u8]| u64::from(u32::from_le_bytes(b[..4].try_into().expect("4 bytes")));
    match n {
        8.. => (word(key), word(&key[n - 8..])),
        4..=7 => (half(key), half(&key[n - 4..])),
        1..=3 => (u64::from(key[0]) | u64::from(key[n / 2]) << 8 | u64::from(key[n - 1]) << 16, 0),
        0 => (0, 0),
    }
}

#[inline]
fn mix(a: u64, b: u64) -> u64 {
    let product = u128::from(a).wrapping_mul(u128::from(b));
    (product as u64) ^ ((product >> 64) as u64)
}

impl PieceCounts {
    fn new() -> Self {
        PieceCounts {
            slots: vec![EMPTY; 1024],
            bytes: Vec::new(),
            used: 0,
            // One seed per table: a table's layout says nothing about another's.
            seed: std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0u8) | 1,
        }
    }

    fn len(&self) -> usize {
        self.used
    }

    #[inline]
    fn hash(&self, key: &[u8], words: (u64, u64)) -> u64 {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut h = mix(words.0 ^ self.seed, words.1 ^ K ^ key.len() as u64);
        if key.len() > 16 {
            for chunk in key[8..key.len() - 8].chunks(16) {
                let (a, b) = words_of_chunk(chunk);
                h = mix(a ^ h, b ^ K);
            }
        }
        h
    }

    #[inline]
    fn add(&mut self, key: &[u8]) {
        let words = words(key);
        let hash = self.hash(key, words);
        self.add_hashed(key, words, hash);
    }

    /// Adds the pieces `bytes[start..end]`: first every hash of a group, then every probe.
    fn add_all(&mut self, bytes: &[u8], pieces: &[(usize, usize)]) {
        const GROUP: usize = 32;
        for group in pieces.chunks(GROUP) {
            let mut hashed = [(0u64, (0u64, 0u64)); GROUP];
            for (h, &(start, end)) in hashed.iter_mut().zip(group) {
                let key = &bytes[start..end];
                let words = words(key);
                *h = (self.hash(key, words), words);
            }
            for (&(hash, words), &(start, end)) in hashed.iter().zip(group) {
                self.add_hashed(&bytes[start..end], words, hash);
            }
        }
    }

    #[inline]
    fn add_hashed(&mut self, key: &[u8], words: (u64, u64), hash: u64) {
        let mask = self.slots.len() - 1;
        let mut i = (hash as usize) & mask;
        loop {
            let slot = &mut self.slots[i];
            if slot.len == usize::MAX {
                break;
            }
            if slot.hash == hash
                && slot.len == key.len()
                && slot.words == words
                && (key.len() <= 16 || &self.bytes[slot.start..slot.start + slot.len] == key)
            {
                slot.count += 1;
                return;
            }
            i = (i + 1) & mask;
        }
        self.slots[i] = PieceSlot {
            hash,
            words,
            len: key.len(),
            start: self.bytes.len(),
            count: 1,
        };
        self.bytes.extend_from_slice(key);
        self.used += 1;
        if self.used * 2 > self.slots.len() {
            self.grow();
        }
    }

    fn grow(&mut self) {
        let bigger = vec![EMPTY; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, bigger);
        let mask = self.slots.len() - 1;
        for slot in old.into_iter().filter(|s| s.len != usize::MAX) {
            let mut i = (slot.hash as usize) & mask;
            while self.slots[i].len != usize::MAX {
                i = (i + 1) & mask;
            }
            self.slots[i] = slot;
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], i64)> {
        self.slots
            .iter()
            .filter(|s| s.len != usize::MAX)
            .map(|s| (&self.bytes[s.start..s.start + s.len], s.count))
    }
}

/// Two words of a chunk of up to 16 bytes (padded with zeros).
#[inline]
fn words_of_chunk(chunk: &[u8]) -> (u64, u64) {
    let mut padded = [0u8; 16];
    padded[..chunk.len()].copy_from_slice(chunk);
    let (a, b) = padded.split_at(8);
    (
        u64::from_le_bytes(a.try_into().expect("8 bytes")),
        u64::from_le_bytes(b.try_into().expect("8 bytes")),
    )
}

fn constant_limit(limit: &Arc<dyn PhysicalExpr>) -> Option<i64> {
    match limit.downcast_ref::<Literal>()?.value() {
        ScalarValue::Int32(Some(n)) => Some(i64::from(*n)),
        ScalarValue::Int64(Some(n)) => Some(*n),
        _ => None,
    }
}

impl DisplayAs for SplitCountExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SplitCountExec: count of split(#{}, {:?}) pieces", self.text, self.pattern)
    }
}

impl ExecutionPlan for SplitCountExec {
    fn name(&self) -> &str {
        "SplitCountExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(&self, _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children)
            .map_err(|c| datafusion::common::DataFusionError::Internal(format!("SplitCountExec takes one input, got {}", c.len())))?;
        Ok(Arc::new(SplitCountExec { input, ..(*self).clone() }))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let this = self.clone();
        let counted = futures::stream::once(async move {
            let batches = datafusion::physical_plan::common::collect(input).await?;
            this.count(&batches)
        });
        let batches = futures::StreamExt::filter_map(counted, |r| async move { r.transpose() });
        Ok(Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&self.schema), batches)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;
    use crate::functions::{col, count, explode, lit, split};
    use crate::session::SparkSession;

    /// The partial aggregation of `plan`, as a worker's stage is.
    fn partial(plan: &Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
        if let Some(agg) = plan.downcast_ref::<AggregateExec>() {
            return match agg.mode() {
                AggregateMode::Partial => Arc::clone(plan),
                AggregateMode::Single | AggregateMode::SinglePartitioned => crate::exec::partial_of(agg).unwrap(),
                _ => partial(agg.input()),
            };
        }
        partial(plan.children()[0])
    }

    /// (piece, counts) of a partial stage's output, summed over its rows.
    fn run(plan: &Arc<dyn ExecutionPlan>, spark: &SparkSession) -> BTreeMap<Option<String>, Vec<i64>> {
        let task = spark.state().task_ctx();
        let mut out: BTreeMap<Option<String>, Vec<i64>> = BTreeMap::new();
        for partition in 0..plan.output_partitioning().partition_count() {
            let stream = plan.execute(partition, Arc::clone(&task)).unwrap();
            for batch in futures::executor::block_on(datafusion::physical_plan::common::collect(stream)).unwrap() {
                let pieces = batch.column(0).as_string::<i32>();
                for row in 0..batch.num_rows() {
                    let key = pieces.is_valid(row).then(|| pieces.value(row).to_owned());
                    let sums = out.entry(key).or_insert_with(|| vec![0; batch.num_columns() - 1]);
                    for (c, sum) in sums.iter_mut().enumerate() {
                        *sum += batch
                            .column(c + 1)
                            .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                            .value(row);
                    }
                }
            }
        }
        out
    }

    fn lines(spark: &SparkSession) -> crate::dataframe::DataFrame {
        let schema = Arc::new(Schema::new(vec![Field::new("value", DataType::Utf8, true)]));
        let text = [
            Some("the cat sat on the mat"),
            None,
            Some(""),
            Some(" two  spaces "),
            Some("ünïcödé wörds, ünïcödé"),
            Some("the end "),
        ];
        // Two batches, so the counts run across batches.
        let batch = |rows: &[Option<&str>]| {
            RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(StringArray::from(rows.to_vec())) as ArrayRef]).unwrap()
        };
        // And many lines, for the groups of pieces and the table's growth.
        let many: Vec<String> = (0..1500u64)
            .map(|i| {
                (0..(i % 13))
                    .map(|j| format!("w{}", (i * 31 + j * 17) % 700))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let many: Vec<Option<&str>> = many.iter().enumerate().map(|(i, l)| (i % 100 != 7).then_some(l.as_str())).collect();
        spark
            .create_data_frame(Arc::clone(&schema), vec![batch(&text[..3]), batch(&text[3..]), batch(&many)])
            .unwrap()
    }

    /// The fused stage gives the partial aggregation's counts, for the DataFrame and the SQL
    /// forms of the word count, with count(*), count(1) and count(word).
    #[test]
    fn fused_counts_match_datafusions_partial_aggregation() {
        let spark = SparkSession::builder().master("local[1]").get_or_create().unwrap();
        let words = lines(&spark).select([explode(split(col("value"), " ")).alias("word")]).unwrap();
        words.create_or_replace_temp_view("words").unwrap();
        lines(&spark).create_or_replace_temp_view("lines").unwrap();
        let queries = [
            words.group_by([col("word")]).count().unwrap(),
            words.group_by([col("word")]).agg([count(lit(1)), count(col("word"))]).unwrap(),
            spark
                .sql("SELECT word, count(*) AS n FROM (SELECT explode(split(value, ' ')) AS word FROM lines) GROUP BY word")
                .unwrap(),
            spark
                .sql("SELECT word, count(word) FROM (SELECT explode(split(value, ',', 2)) AS word FROM lines) GROUP BY word")
                .unwrap(),
        ];
        for (i, query) in queries.iter().enumerate() {
            let stage = partial(&query.physical_plan().unwrap());
            let fused = fuse(Arc::clone(&stage));
            assert!(
                fused.downcast_ref::<SplitCountExec>().is_some(),
                "query {i} is not fused:\n{}",
                datafusion::physical_plan::displayable(stage.as_ref()).indent(true)
            );
            let expected = run(&stage, &spark);
            assert_eq!(run(&fused, &spark), expected, "query {i}");
            assert!(
                expected.contains_key(&Some("ünïcödé".to_owned())) || i == 3,
                "query {i}: {expected:?}"
            );
            // Spark's explode gives no row for a null string.
            assert!(!expected.contains_key(&None), "query {i}: {expected:?}");
        }
    }

    /// The table counts keys of every length as a map does, through its growth.
    #[test]
    fn piece_counts_match_a_map() {
        let mut table = PieceCounts::new();
        let mut expected: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        let mut state = 7u64;
        for _ in 0..60_000 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let len = (state >> 59) as usize + (state >> 62) as usize * 8; // 0..=55
            let id = (state >> 20) % 3000;
            // Keys that share first and last bytes and differ in the middle, or only in length.
            let key: Vec<u8> = (0..len)
                .map(|i| {
                    if i == len / 2 {
                        (id % 251) as u8
                    } else {
                        b'a' + (id / 251 % 26) as u8
                    }
                })
                .collect();
            table.add(&key);
            *expected.entry(key).or_insert(0) += 1;
        }
        let got: BTreeMap<Vec<u8>, i64> = table.iter().map(|(k, n)| (k.to_vec(), n)).collect();
        assert_eq!(table.len(), expected.len());
        assert_eq!(got, expected);
    }

    /// Stages that only look like a word count keep DataFusion's operators.
    #[test]
    fn other_shapes_are_not_fused() {
        let spark = SparkSession::builder().master("local[1]").get_or_create().unwrap();
        lines(&spark).create_or_replace_temp_view("lines").unwrap();
        for sql in [
            "SELECT lower(word), count(*) FROM (SELECT explode(split(value, ' ')) AS word FROM lines) GROUP BY lower(word)",
            "SELECT word, sum(length(word)) FROM (SELECT explode(split(value, ' ')) AS word FROM lines) GROUP BY word",
            "SELECT word, count(DISTINCT word) FROM (SELECT explode(split(value, ' ')) AS word FROM lines) GROUP BY word",
            "SELECT value, count(*) FROM lines GROUP BY value",
        ] {
            let stage = partial(&spark.sql(sql).unwrap().physical_plan().unwrap());
            assert!(fuse(stage).downcast_ref::<SplitCountExec>().is_none(), "{sql} was fused");
        }
    }
}
