//! Starting and running a streaming query: `writeStream` (output mode, sink, trigger), Spark's
//! checks of what a streaming query may do, the split of the plan into what each worker runs
//! per micro-batch and what is merged after, and the query handle.
//!
//! The plan is planned once per worker into a physical plan whose leaf reads that worker's
//! micro-batch (see `source.rs`). For a query without aggregation that plan is the whole query
//! and its output goes to the sink. With an aggregation, each worker runs the plan up to the
//! aggregation's partial mode (DataFusion's `AggregateExec` in `Partial` mode: group keys and
//! accumulator states); the partial rows go through ember's exchange to the workers that own
//! their key groups, which keep the groups in engine-owned state and finish them (see
//! `aggregate.rs`); their output is gathered for the sink. The other stateful operators
//! (deduplication, joins of two streams, state functions) run after the gather, on worker 0.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::joins::HashJoinExec;
use serde::{Deserialize, Serialize};

use crate::aggregate::{Finisher, KeyedAggregate, Piece, Stepped};
use crate::checkpoint::{Committed, QueryCheckpoint};
use crate::dataframe::DataFrame;
use crate::dedup::{Dedup, DedupKind};
use crate::error::{Error, Result};
use crate::eventtime::{EventStats, KeyTime, Watermarks};
use crate::exec::{ArrowBatch, BatchFacts, Instance, Step, partial_of};
use crate::listener::{QueryStartedEvent, QueryTerminatedEvent};
use crate::lock;
use crate::progress::{QueryProgress, SourceProgress};
use crate::session::SparkSession;
use crate::sink::{ConsoleOut, ForeachBatch, OutputMode, Sink};
use crate::source::{FileSource, RateSource, SourceSpec, find_slots, read_text, slot_exec};
use crate::streamjoin::StreamJoin;

/// When micro-batches run (Spark's `trigger`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// As soon as the last one ended (ember: every 100 ms).
    Default,
    /// Every interval.
    ProcessingTime(Duration),
    /// Everything available at start in one micro-batch, then stop.
    Once,
    /// Everything available at start, in as many micro-batches as the source's limits say,
    /// then stop.
    AvailableNow,
}

/// The default trigger's interval: Spark starts the next micro-batch as soon as the last one
/// ended; ember's engine cuts micro-batches on a clock.
const DEFAULT_TRIGGER_INTERVAL: Duration = Duration::from_millis(100);

/// Starts a streaming query (Spark's `DataStreamWriter`).
#[derive(Clone)]
pub struct DataStreamWriter {
    df: DataFrame,
    mode: String,
    format: String,
    options: BTreeMap<String, String>,
    trigger: Trigger,
    name: Option<String>,
    foreach_batch: Option<ForeachBatch>,
    console: Option<ConsoleOut>,
}

impl std::fmt::Debug for DataStreamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataStreamWriter")
            .field("mode", &self.mode)
            .field("format", &self.format)
            .field("trigger", &self.trigger)
            .finish_non_exhaustive()
    }
}

impl DataStreamWriter {
    pub(crate) fn new(df: DataFrame) -> Self {
        DataStreamWriter {
            df,
            mode: "append".to_owned(),
            format: "console".to_owned(),
            options: BTreeMap::new(),
            trigger: Trigger::Default,
            name: None,
            foreach_batch: None,
            console: None,
        }
    }

    /// The console sink writes to `out` instead of standard output (an ember addition, for
    /// programs that keep the text, and for tests).
    pub fn console_output(mut self, out: impl std::io::Write + Send + 'static) -> Self {
        self.console = Some(Arc::new(Mutex::new(Box::new(out))));
        self
    }

    /// `append` (the default), `complete` or `update` (Spark's `outputMode`).
    pub fn output_mode(mut self, mode: &str) -> Self {
        self.mode = mode.to_owned();
        self
    }

    /// The sink: `console`, `memory`, `json`, `csv` or `jdbc` (Spark's `format`).
    pub fn format(mut self, format: &str) -> Self {
        self.format = format.to_owned();
        self
    }

    /// A sink option: the console's `numRows` and `truncate` (Spark's `option`).
    pub fn option(mut self, key: &str, value: impl ToString) -> Self {
        self.options.insert(key.to_owned(), value.to_string());
        self
    }

    /// When micro-batches run (Spark's `trigger`).
    pub fn trigger(mut self, trigger: Trigger) -> Self {
        self.trigger = trigger;
        self
    }

    /// The query's name; the memory sink's table (Spark's `queryName`).
    pub fn query_name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// Hands every micro-batch's output rows and its batch id to `f` (Spark's
    /// `foreachBatch`); an error fails the query.
    pub fn foreach_batch(mut self, f: impl Fn(&[RecordBatch], i64) -> std::result::Result<(), String> + Send + Sync + 'static) -> Self {
        self.foreach_batch = Some(Arc::new(f));
        self.format = "foreachBatch".to_owned();
        self
    }

    /// Starts the query (Spark's `start`).
    pub fn start(self) -> Result<StreamingQuery> {
        let mode = OutputMode::parse(&self.mode)?;
        let session = self.df.session.clone();
        let logical = session.state().optimize(self.df.logical_plan())?;
        let mut sources: Vec<(usize, SourceSpec)> = Vec::new();
        for table in crate::source::stream_sources(self.df.logical_plan()) {
            if sources.iter().all(|(id, _)| *id != table.id) {
                sources.push((table.id, table.spec.clone()));
            }
        }
        if sources.is_empty() {
            return Err(Error::analysis("'writeStream' can be called only on streaming Dataset/DataFrame"));
        }
        if sources.iter().filter(|(_, s)| matches!(s, SourceSpec::Kafka(_))).count() > 1 {
            // The engine names a Kafka stream's checkpointed offsets by its kind only.
            return Err(Error::unsupported(
                "two Kafka sources in one query (subscribe one source to all the topics: option(\"subscribe\", \"a,b\"))",
            ));
        }
        let stream_join = check_joins(self.df.logical_plan(), mode)?;
        let watermarks = &self.df.watermarks;
        // The aggregation's key holding event time: of the first watermark that is a key.
        let plan = self.df.logical_plan();
        let key = watermarks
            .iter()
            .find_map(|w| crate::eventtime::watermark_key(plan, w).map(|k| (k, w.name_in(plan))));
        let event_time = (!watermarks.is_empty()).then(|| EventTime {
            delays: watermarks.iter().map(|w| w.delay_ms).collect(),
            key: key.as_ref().map(|(k, _)| *k),
        });
        check(
            &logical,
            mode,
            self.df.sql.as_deref().map(String::as_str),
            event_time.as_ref().is_some_and(|e| e.key.is_some()),
            self.df.dedup.is_some(),
        )?;
        if mode == OutputMode::Update && crate::eventtime::session_key(self.df.logical_plan()).is_some() {
            return Err(Error::analysis(
                "Update output mode not supported for session window on streaming DataFrames/DataSets;",
            ));
        }
        // A state function (flatMapGroupsWithState): workers run the plan below it.
        let arbitrary = crate::state::find(self.df.logical_plan());
        if let Some(spec) = &arbitrary {
            crate::state::check(spec, mode, !watermarks.is_empty())?;
            let mut stateful_below = check_joins(&spec.stage, mode)?;
            let _ = spec.stage.apply(|node| {
                stateful_below |= matches!(node, LogicalPlan::Aggregate(_));
                Ok(TreeNodeRecursion::Continue)
            });
            let mut stateful_above = false;
            let _ = self.df.logical_plan().apply(|node| {
                stateful_above |= matches!(node, LogicalPlan::Aggregate(_));
                Ok(TreeNodeRecursion::Continue)
            });
            if stateful_below || stateful_above || stream_join {
                return Err(Error::unsupported(format!(
                    "{} with an aggregation, a deduplication or a join of two streams before or after it (ember runs one stateful operation per query so far)",
                    spec.api
                )));
            }
        }
        let worker_plan = match &arbitrary {
            Some(spec) => spec.stage.clone(),
            None => self.df.logical_plan().clone(),
        };
        let mut planner = Planner::new(session.clone(), worker_plan)?;
        let stateful = match &arbitrary {
            Some(spec) => {
                let physical = futures::executor::block_on(session.state().create_physical_plan(self.df.logical_plan()))?;
                let slots = find_slots(&physical);
                let upper = Instance {
                    plan: physical,
                    slots,
                    right: None,
                };
                let stage_schema = Arc::new(spec.stage.schema().as_arrow().clone());
                let time = watermarks.first().map(|w| w.name_in(&spec.stage));
                Some(Stateful::Arbitrary(Box::new(crate::state::Arbitrary::new(
                    Arc::clone(spec),
                    stage_schema,
                    time.as_deref(),
                    upper,
                )?)))
            }
            None => None,
        };
        if let Some(kind) = self.df.dedup {
            planner.dedup = Some(kind);
            // The pool's copies were split as an aggregation's.
            lock(&planner.pool).clear();
        }
        if stream_join {
            planner.stream_join = true;
            lock(&planner.pool).clear();
        }
        for watermark in watermarks {
            // The rows where the watermark is defined, their event-time column only.
            let probe = datafusion::logical_expr::LogicalPlanBuilder::from(watermark.plan.clone())
                .project(vec![datafusion::prelude::ident(&watermark.column)])?
                .build()?;
            planner.probes.push(Planner::new(session.clone(), probe)?);
        }
        let checkpoint = self
            .options
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("checkpointLocation"))
            .map(|(_, v)| v.as_str());
        let opened = Opened::new(checkpoint, self.trigger)?;
        let sink = Sink::new(
            &self.format,
            &self.options,
            self.name.as_deref(),
            self.foreach_batch.clone(),
            self.console.clone(),
            &opened.id,
            mode,
        )?;
        sink.check(&self.df.arrow_schema())?;
        let names = self.df.columns();
        let explained = self.df.explain_string(false).unwrap_or_else(|e| format!("(no plan: {e})\n"));
        // ember's web UI and `/metrics` for this query's micro-batches (`ember.ui.port`, 0: any
        // free port; `ember.ui.host`, 127.0.0.1 by default).
        let option = |key: &str| {
            self.options
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.clone())
        };
        let ui = match option("ember.ui.port") {
            None => None,
            Some(port) => {
                let port = port.parse::<u16>().map_err(|_| {
                    Error::illegal_argument(format!("Invalid value '{port}' for option 'ember.ui.port', must be a port number"))
                })?;
                Some((option("ember.ui.host").unwrap_or_else(|| "127.0.0.1".to_owned()), port))
            }
        };
        StreamingQuery::start(Start {
            session,
            sources,
            planner,
            stateful,
            explained,
            ui,
            event_time,
            watermark_column: key
                .map(|(_, column)| column)
                .or_else(|| watermarks.first().map(|w| w.name_in(plan))),
            session_key: crate::eventtime::session_key(plan),
            watermark_columns: watermark_names(plan, watermarks),
            mode,
            sink,
            names,
            trigger: self.trigger,
            name: self.name,
            opened,
        })
    }
}

/// A query's id and where it starts: a new query, or one resumed from its checkpoint.
struct Opened {
    checkpoint: Option<Arc<QueryCheckpoint>>,
    id: String,
    committed: Committed,
    /// The batch grid's interval.
    interval: Duration,
    /// The batch grid's zero, from the checkpoint (see `QueryCheckpoint::open`).
    zero_ms: Option<u64>,
}

impl Opened {
    fn new(checkpoint: Option<&str>, trigger: Trigger) -> Result<Self> {
        let interval = match trigger {
            Trigger::ProcessingTime(d) if !d.is_zero() => d,
            _ => DEFAULT_TRIGGER_INTERVAL,
        };
        let Some(dir) = checkpoint else {
            return Ok(Opened {
                checkpoint: None,
                id: new_id(),
                committed: Committed::default(),
                interval,
                zero_ms: None,
            });
        };
        let asked = interval.as_millis().max(1) as u64;
        let dir = &ember::storage::Location::parse(dir).map_err(|e| Error::illegal_argument(format!("checkpointLocation {e}")))?;
        let (
            checkpoint,
            id,
            committed,
            crate::checkpoint::Grid {
                interval_ms: grid,
                zero_ms,
            },
        ) = QueryCheckpoint::open(dir, new_id, asked)?;
        // The engine's checkpoint holds batch times on its grid: a finite trigger runs back to
        // back on it; another processing time cannot follow it.
        if grid != asked && matches!(trigger, Trigger::ProcessingTime(_)) {
            return Err(Error::illegal_argument(format!(
                "the checkpoint in {dir} was written with a trigger interval of {grid} ms; ember restarts a query on the same interval (processingTime '{grid} milliseconds')"
            )));
        }
        Ok(Opened {
            checkpoint: Some(Arc::new(checkpoint)),
            id,
            committed,
            interval: Duration::from_millis(grid),
            zero_ms,
        })
    }
}

/// Spark's "line L pos P" of the first `GROUP BY` of SQL text (0-based position in its line), as
/// Spark's messages name the origin of an aggregation that came from `spark.sql`.
fn group_by_origin(sql: &str) -> Option<String> {
    let at = regex::RegexBuilder::new(r"\bgroup\s+by\b")
        .case_insensitive(true)
        .build()
        .ok()?
        .find(sql)?
        .start();
    let before = &sql[..at];
    let line = before.matches('\n').count() + 1;
    let pos = before.rfind('\n').map_or(at, |n| at - n - 1);
    Some(format!(" line {line} pos {pos};"))
}

/// Spark's `UnsupportedOperationChecker`, for what ember runs: the message of each refusal is
/// Spark's first line (Spark adds the plan after it), with its origin in `sql` when the query
/// came from `spark.sql`.
fn check(plan: &LogicalPlan, mode: OutputMode, sql: Option<&str>, watermarked_aggregation: bool, dedup: bool) -> Result<()> {
    let mut aggregates = 0;
    let mut sort_above_aggregate = false;
    let mut sort_without_aggregate = false;
    let mut limit = false;
    let _ = plan.apply(|node| {
        match node {
            LogicalPlan::Aggregate(_) => aggregates += 1,
            LogicalPlan::Sort(_) if aggregates == 0 => {
                let mut below = false;
                let _ = node.apply(|n| {
                    if matches!(n, LogicalPlan::Aggregate(_)) {
                        below = true;
                    }
                    Ok(TreeNodeRecursion::Continue)
                });
                if below {
                    sort_above_aggregate = true;
                } else {
                    sort_without_aggregate = true;
                }
            }
            LogicalPlan::Sort(_) => sort_without_aggregate = true,
            LogicalPlan::Limit(_) => limit = true,
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    });
    // A deduplication is planned as an aggregation; Spark's checker does not count it as one.
    if dedup {
        aggregates -= 1;
        if aggregates > 0 {
            // Spark runs both; ember's query has one stateful operator so far.
            return Err(Error::unsupported(
                "an aggregation over the rows of dropDuplicates (ember runs one stateful operation per query so far)",
            ));
        }
    }
    if aggregates > 1 {
        // Spark 3.5 refuses a stateful operator after another one, without a watermark, so.
        return Err(Error::analysis(
            "Detected pattern of possible 'correctness' issue due to global watermark. The query contains stateful operation which can emit rows older than the current watermark plus allowed late record delay, which are \"late rows\" in downstream stateful operations and these rows can be discarded. Please refer the programming guide doc for more details. If you understand the possible risk of correctness issue and still need to run the query, you can disable this check by setting the config `spark.sql.streaming.statefulOperator.checkCorrectness.enabled` to false.;",
        ));
    }
    match mode {
        OutputMode::Complete if aggregates == 0 => {
            return Err(Error::analysis(
                "Complete output mode not supported when there are no streaming aggregations on streaming DataFrames/Datasets;",
            ));
        }
        OutputMode::Append if aggregates > 0 && !watermarked_aggregation => {
            let origin = sql.and_then(group_by_origin).unwrap_or_default();
            return Err(Error::analysis(format!(
                "Append output mode not supported when there are streaming aggregations on streaming DataFrames/DataSets without watermark;{origin}"
            )));
        }
        _ => {}
    }
    if sort_without_aggregate || (sort_above_aggregate && mode != OutputMode::Complete) {
        return Err(Error::analysis(
            "Sorting is not supported on streaming DataFrames/Datasets, unless it is on aggregated DataFrame/Dataset in Complete output mode;",
        ));
    }
    if limit && mode == OutputMode::Update {
        return Err(Error::analysis(
            "Limits are not supported on streaming DataFrames/Datasets in Update output mode;",
        ));
    }
    Ok(())
}

/// Spark's checks of a join with a stream (`UnsupportedOperationChecker`): a stream joins a
/// table where the stream's rows alone decide the output (the outer side of an outer join must
/// be the stream); two streams join in append mode, as the only stateful operation in ember.
/// Whether the plan joins two streams.
/// The names of the watermarks' columns where stateful operators look for them: at a
/// stream-stream join's two inputs, and at the top of the plan.
fn watermark_names(plan: &LogicalPlan, watermarks: &[Arc<crate::eventtime::Watermark>]) -> Vec<String> {
    let mut names: Vec<String> = watermarks.iter().map(|w| w.name_in(plan)).collect();
    let _ = plan.apply(|node| {
        if let LogicalPlan::Join(join) = node {
            for side in [&join.left, &join.right] {
                names.extend(watermarks.iter().map(|w| w.name_in(side)));
            }
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    names.dedup();
    names
}

fn check_joins(plan: &LogicalPlan, mode: OutputMode) -> Result<bool> {
    use datafusion::common::JoinType;
    let streaming = |p: &LogicalPlan| crate::source::stream_sources(p).next().is_some();
    let mut refused = None;
    let mut stream_join = false;
    let _ = plan.apply(|node| {
        let LogicalPlan::Join(join) = node else {
            return Ok(TreeNodeRecursion::Continue);
        };
        let (left, right) = (streaming(&join.left), streaming(&join.right));
        refused = match (join.join_type, left, right) {
            (_, true, true) if mode != OutputMode::Append => Some(Error::analysis(format!(
                "Join between two streaming DataFrames/Datasets is not supported in {} output mode, only in Append output mode;",
                if mode == OutputMode::Update { "Update" } else { "Complete" }
            ))),
            (_, true, true) => {
                stream_join = true;
                None
            }
            (JoinType::Left, false, true) => Some(Error::analysis(
                "LeftOuter join with a streaming DataFrame/Dataset on the right and a static DataFrame/Dataset on the left is not supported;",
            )),
            (JoinType::Right, true, false) => Some(Error::analysis(
                "RightOuter join with a streaming DataFrame/Dataset on the left and a static DataFrame/DataSet on the right not supported;",
            )),
            (JoinType::Full, true, false) => Some(Error::analysis(
                "FullOuter joins with streaming DataFrames/Datasets on the left and a static DataFrame/Dataset on the right is not supported;",
            )),
            (JoinType::Full, false, true) => Some(Error::analysis(
                "FullOuter joins with streaming DataFrames/Datasets on the right and a static DataFrame/Dataset on the left is not supported;",
            )),
            (JoinType::LeftSemi, false, true) => Some(Error::analysis(
                "LeftSemi join with a streaming DataFrame/Dataset on the right and a static DataFrame/Dataset on the left is not supported;",
            )),
            (JoinType::LeftAnti, false, true) => Some(Error::analysis(
                "LeftAnti joins with a streaming DataFrame/Dataset on the right are not supported;",
            )),
            _ => None,
        };
        Ok(if refused.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    if stream_join {
        let mut stateful_above = false;
        let _ = plan.apply(|node| {
            match node {
                LogicalPlan::Join(_) => return Ok(TreeNodeRecursion::Stop),
                LogicalPlan::Aggregate(_) | LogicalPlan::Distinct(_) => stateful_above = true,
                _ => {}
            }
            Ok(TreeNodeRecursion::Continue)
        });
        if stateful_above && refused.is_none() {
            refused = Some(Error::unsupported(
                "an aggregation or deduplication after a join of two streams (ember runs one stateful operation per query so far)",
            ));
        }
    }
    refused.map_or(Ok(stream_join), Err)
}

/// What reaches the sink's side of a micro-batch: each partition's rows through the stage, or
/// each aggregation owner's share.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Outcome {
    Staged(StageOut),
    Stepped(Stepped),
}

/// What a worker's copy of the plan made of one partition of a micro-batch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StageOut {
    /// The query's source (its index) the partition is of.
    source: usize,
    input_rows: u64,
    batches: Vec<ArrowBatch>,
    /// The event times of the partition's rows at each watermark (none: no rows there).
    event_time: Vec<Option<EventStats>>,
    /// A join of two streams: the rows of its right side (`batches` are the left's).
    right: Vec<ArrowBatch>,
}

fn same_node(a: &Arc<dyn ExecutionPlan>, b: &Arc<dyn ExecutionPlan>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

/// The topmost aggregation of a physical plan.
fn top_aggregate(plan: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
    if plan.downcast_ref::<AggregateExec>().is_some() {
        return Some(Arc::clone(plan));
    }
    plan.children().into_iter().find_map(top_aggregate)
}

/// The topmost hash join of a physical plan whose two sides both read streams.
fn top_stream_join(plan: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
    if let Some(join) = plan.downcast_ref::<HashJoinExec>()
        && !find_slots(join.left()).is_empty()
        && !find_slots(join.right()).is_empty()
    {
        return Some(Arc::clone(plan));
    }
    plan.children().into_iter().find_map(top_stream_join)
}

/// The partial aggregation under a final one (through nodes that only move batches).
fn partial_below(plan: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
    let mut node = Arc::clone(plan);
    loop {
        if let Some(agg) = node.downcast_ref::<AggregateExec>()
            && *agg.mode() == AggregateMode::Partial
        {
            return Some(node);
        }
        let children = node.children();
        let [only] = children.as_slice() else {
            return None;
        };
        node = Arc::clone(only);
    }
}

/// The plans of a query: what every worker runs per micro-batch (the whole query, or up to
/// the partial aggregation) and, with an aggregation, what finishes it.
struct Planner {
    session: crate::session::SparkSession,
    logical: LogicalPlan,
    /// With an aggregation: how many of the partial rows' columns are group keys.
    aggregate: Option<usize>,
    pool: Mutex<Vec<Instance>>,
    task: Arc<TaskContext>,
    /// For each watermark: the plan of its event-time column, run over the same input.
    probes: Vec<Planner>,
    /// The top aggregation is a deduplication: workers run the plan below it.
    dedup: Option<DedupKind>,
    /// The query joins two streams: workers run the plans of its two sides.
    stream_join: bool,
}

/// How a query's stateful operator is planned: an aggregation, whose state lives on the owners
/// of its key groups (see `aggregate::KeyedAggregate`), or an operator kept on worker 0.
enum Planned {
    Aggregate(Finisher),
    OnWorker0(Stateful),
}

/// A stateful operator kept on worker 0: a deduplication, a join of two streams or a state
/// function.
enum Stateful {
    Dedup(Dedup),
    Join(Box<StreamJoin>),
    Arbitrary(Box<crate::state::Arbitrary>),
}

impl Stateful {
    fn step(&mut self, input: Vec<RecordBatch>, task: &Arc<TaskContext>, watermarks: Option<Watermarks>) -> Result<Step> {
        match self {
            Stateful::Dedup(d) => d.step(input, task, watermarks),
            Stateful::Join(_) => Err(Error::unsupported("a join's micro-batch without its two sides")),
            Stateful::Arbitrary(_) => Err(Error::unsupported("a state function's micro-batch without its time")),
        }
    }

    /// Spark 3.5's name of the operator in progress reports (checked with PySpark 3.5.9).
    fn operator_name(&self) -> String {
        match self {
            Stateful::Dedup(d) if d.kind() == DedupKind::WithinWatermark => "dedupeWithinWatermark".to_owned(),
            Stateful::Dedup(_) => "dedupe".to_owned(),
            Stateful::Join(_) => "symmetricHashJoin".to_owned(),
            Stateful::Arbitrary(a) => a.api().to_owned(),
        }
    }

    fn state_rows(&self) -> u64 {
        match self {
            Stateful::Dedup(d) => d.state_rows(),
            Stateful::Join(j) => j.state_rows(),
            Stateful::Arbitrary(a) => a.state_rows(),
        }
    }

    fn snapshot(&self) -> Result<Vec<u8>> {
        match self {
            Stateful::Dedup(d) => d.snapshot(),
            Stateful::Join(j) => j.snapshot(),
            Stateful::Arbitrary(a) => a.snapshot(),
        }
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        match self {
            Stateful::Dedup(d) => d.restore(bytes),
            Stateful::Join(j) => j.restore(bytes),
            Stateful::Arbitrary(a) => a.restore(bytes),
        }
    }

    /// Whether the watermark frees state in `mode` (then a no-data batch runs when it moved).
    fn evicts(&self) -> bool {
        match self {
            Stateful::Dedup(d) => d.evicts(),
            Stateful::Join(j) => j.evicts(),
            Stateful::Arbitrary(a) => a.evicts(),
        }
    }
}

impl Planner {
    fn new(session: crate::session::SparkSession, logical: LogicalPlan) -> Result<Self> {
        let task = session.state().task_ctx();
        let mut planner = Planner {
            session,
            logical,
            aggregate: None,
            pool: Mutex::new(Vec::new()),
            task,
            probes: Vec::new(),
            dedup: None,
            stream_join: false,
        };
        // Plan one copy now: errors surface at `start`, and it says whether there is an
        // aggregation.
        let first = planner.instance()?;
        lock(&planner.pool).push(first);
        let physical = planner.physical()?;
        planner.aggregate = match top_aggregate(&physical) {
            Some(agg) => {
                let agg = agg.downcast_ref::<AggregateExec>().expect("an aggregate");
                Some(agg.group_expr().expr().len())
            }
            None => None,
        };
        Ok(planner)
    }

    fn physical(&self) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(futures::executor::block_on(
            self.session.state().create_physical_plan(&self.logical),
        )?)
    }

    /// Splits a fresh physical plan into (partial stage, aggregate node, its input schema).
    fn split(&self) -> Result<(Arc<dyn ExecutionPlan>, Option<(Arc<dyn ExecutionPlan>, Arc<dyn ExecutionPlan>)>)> {
        let physical = self.physical()?;
        if self.stream_join {
            let top = top_stream_join(&physical).ok_or_else(|| Error::unsupported("a join of two streams that DataFusion planned without a hash join (ember needs an equality of the two sides' columns in the condition)"))?;
            let join = top.downcast_ref::<HashJoinExec>().expect("a hash join");
            return Ok((Arc::clone(join.left()), Some((top, physical))));
        }
        let Some(top) = top_aggregate(&physical) else {
            return Ok((physical, None));
        };
        let agg = top.downcast_ref::<AggregateExec>().expect("an aggregate");
        if self.dedup.is_some() {
            // A deduplication sees every row: the workers run the plan below it.
            let input = match agg.mode() {
                AggregateMode::Final | AggregateMode::FinalPartitioned => partial_below(agg.input())
                    .and_then(|p| p.children().first().map(|c| Arc::clone(c)))
                    .ok_or_else(|| Error::unsupported("a deduplication whose input ember cannot find"))?,
                _ => Arc::clone(agg.input()),
            };
            return Ok((input, Some((top, physical))));
        }
        let partial: Arc<dyn ExecutionPlan> = match agg.mode() {
            AggregateMode::Final | AggregateMode::FinalPartitioned => {
                partial_below(agg.input()).ok_or_else(|| Error::unsupported("an aggregation whose partial stage ember cannot find"))?
            }
            AggregateMode::Single | AggregateMode::SinglePartitioned => partial_of(agg)?,
            other => return Err(Error::unsupported(format!("an aggregation planned in mode {other:?}"))),
        };
        Ok((Arc::clone(&partial), Some((top, physical))))
    }

    /// A worker's copy of its stage.
    fn instance(&self) -> Result<Instance> {
        let (stage, top) = self.split()?;
        let slots = find_slots(&stage);
        if slots.is_empty() {
            return Err(Error::unsupported("a plan without its stream's scan"));
        }
        let right = match (self.stream_join, top) {
            (true, Some((join, _))) => {
                let join = join.downcast_ref::<HashJoinExec>().expect("a hash join");
                let plan = Arc::clone(join.right());
                let slots = find_slots(&plan);
                Some(Box::new(Instance { plan, slots, right: None }))
            }
            _ => None,
        };
        // The seed's word count gets one fused operator for its partial stage (see `fused`).
        let plan = if self.stream_join || self.dedup.is_some() {
            stage
        } else {
            crate::fused::fuse(stage)
        };
        Ok(Instance { plan, slots, right })
    }

    /// Runs the worker's stage over one partition's rows of stream `source`.
    fn run_stage(&self, source: usize, input: RecordBatch) -> Result<Vec<RecordBatch>> {
        Ok(self.run_stages(source, input)?.0)
    }

    /// [`Planner::run_stage`], with the right side's rows too for a join of two streams.
    fn run_stages(&self, source: usize, input: RecordBatch) -> Result<(Vec<RecordBatch>, Vec<RecordBatch>)> {
        let instance = match lock(&self.pool).pop() {
            Some(instance) => instance,
            None => self.instance()?,
        };
        let out = instance.run_source(source, vec![input.clone()], &self.task).and_then(|left| {
            let right = match &instance.right {
                Some(right) => right.run_source(source, vec![input], &self.task)?,
                None => Vec::new(),
            };
            Ok((left, right))
        });
        lock(&self.pool).push(instance);
        out
    }

    /// The stateful operator after the gather; `watermark`: the event-time column and the delay.
    /// A join of two streams reads `watermarked`: the event-time columns of the watermarks.
    fn stateful(&self, watermark: Option<(&str, i64)>, watermarked: &[String]) -> Result<Option<Planned>> {
        let (partial, Some((top, physical))) = self.split()? else {
            return Ok(None);
        };
        let upper = |schema: SchemaRef| -> Result<Instance> {
            let (upper_leaf, upper_slot) = slot_exec(schema)?;
            let upper = Arc::clone(&physical)
                .transform_down(|node| {
                    Ok(if same_node(&node, &top) {
                        Transformed::new(Arc::clone(&upper_leaf), true, TreeNodeRecursion::Jump)
                    } else {
                        Transformed::no(node)
                    })
                })?
                .data;
            Ok(Instance {
                plan: upper,
                slots: vec![(usize::MAX, upper_slot)],
                right: None,
            })
        };
        if let Some(join) = top.downcast_ref::<HashJoinExec>() {
            return Ok(Some(Planned::OnWorker0(Stateful::Join(Box::new(StreamJoin::new(
                join,
                upper(join.schema())?,
                watermarked,
            )?)))));
        }
        let agg = top.downcast_ref::<AggregateExec>().expect("an aggregate");
        if let Some(kind) = self.dedup {
            return Ok(Some(Planned::OnWorker0(Stateful::Dedup(Dedup::new(
                kind,
                agg,
                upper(agg.schema())?,
                watermark,
            )?))));
        }
        let partial_agg = partial.downcast_ref::<AggregateExec>().expect("a partial aggregate");
        let partial_schema = partial.schema();
        let final_groups = partial_agg.group_expr().as_final();
        let no_filters = vec![None; partial_agg.aggr_expr().len()];
        let (merge_leaf, merge_slot) = slot_exec(Arc::clone(&partial_schema))?;
        let merge = AggregateExec::try_new(
            AggregateMode::PartialReduce,
            final_groups.clone(),
            partial_agg.aggr_expr().to_vec(),
            no_filters.clone(),
            merge_leaf,
            partial_agg.input_schema(),
        )?;
        let (finish_leaf, finish_slot) = slot_exec(Arc::clone(&partial_schema))?;
        let finish = AggregateExec::try_new(
            AggregateMode::Final,
            final_groups,
            partial_agg.aggr_expr().to_vec(),
            no_filters,
            finish_leaf,
            partial_agg.input_schema(),
        )?;
        Ok(Some(Planned::Aggregate(Finisher {
            merge: Instance {
                plan: Arc::new(merge),
                slots: vec![(usize::MAX, merge_slot)],
                right: None,
            },
            finish: Instance {
                plan: Arc::new(finish),
                slots: vec![(usize::MAX, finish_slot)],
                right: None,
            },
            upper: upper(agg.schema())?,
            groups: partial_agg.group_expr().expr().len(),
            state: None,
            partial_schema,
            key_time: None,
            session: None,
        })))
    }
}

struct QueryState {
    id: String,
    run_id: String,
    name: Option<String>,
    /// Set once the query's context is built (before it starts).
    ssc: std::sync::OnceLock<ember::StreamingContext>,
    stopped: AtomicBool,
    failure: Mutex<Option<String>>,
    batches: AtomicU64,
    /// `availableNow`/`once`: each source planned its last data at this batch time (ms + 1).
    exhausted_at: Vec<Arc<AtomicU64>>,
    /// The latest batch time the sink has handled (ms + 1).
    handled: AtomicU64,
    /// The time of the last micro-batch with input (ms; 0: none yet).
    last_input_ms: AtomicU64,
    /// The time of the last micro-batch without input (ms; 0: none yet).
    drained_at: AtomicU64,
    /// Once, availableNow: the query ends by itself.
    finite: bool,
    /// The watermarks the next micro-batch runs with.
    watermarks: Mutex<crate::eventtime::WatermarkTracker>,
    /// The watermark moved past what the last micro-batch evicted with: the next runs even
    /// without input (Spark's no-data batch), and a finite trigger waits for it.
    no_data_pending: AtomicBool,
    progress: Mutex<crate::progress::Reports>,
    /// The session's listeners.
    listeners: Arc<crate::listener::Listeners>,
    /// The listeners heard that the query ended.
    terminated_told: AtomicBool,
    /// The session's ended queries.
    terminated: Arc<Mutex<Vec<(String, Option<String>)>>>,
    /// A micro-batch is in the sink's hands now.
    in_batch: AtomicBool,
    /// The last micro-batch had input.
    last_had_input: AtomicBool,
    /// The query's plan as `explain` prints it.
    explained: String,
}

/// What a query is doing (Spark's `StreamingQueryStatus`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryStatus {
    /// Spark's message: `Waiting for data to arrive`, `Processing new data`, `Waiting for next
    /// trigger`, `Stopped`.
    pub message: String,
    /// The last micro-batch found new input.
    pub is_data_available: bool,
    /// A micro-batch is running.
    pub is_trigger_active: bool,
}

/// The queries started, with their session's number (Spark's `StreamingQueryManager`).
static ACTIVE: Mutex<Vec<(usize, StreamingQuery)>> = Mutex::new(Vec::new());

impl QueryState {
    fn ssc(&self) -> &ember::StreamingContext {
        self.ssc.get().expect("a query's context is set before the query is handed out")
    }
}

impl SparkSession {
    /// The active streaming queries (Spark's `spark.streams.active`).
    pub fn active_queries(&self) -> Vec<StreamingQuery> {
        let mut queries = lock(&ACTIVE);
        queries.retain(|(_, q)| q.is_active());
        queries.iter().filter(|(s, _)| *s == self.id()).map(|(_, q)| q.clone()).collect()
    }
}

impl SparkSession {
    /// The active query with id `id` (Spark's `spark.streams.get`).
    pub fn get_query(&self, id: &str) -> Option<StreamingQuery> {
        self.active_queries().into_iter().find(|q| q.id() == id)
    }

    /// Waits until a query of this session ends, or returns at once when one has ended since the
    /// session began or [`SparkSession::reset_terminated`] (Spark's
    /// `spark.streams.awaitAnyTermination`); `timeout` bounds the wait. Returns whether one
    /// ended.
    ///
    /// # Errors
    ///
    /// [`Error::StreamingQuery`] when the query that ended had failed.
    pub fn await_any_termination(&self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            if let Some((name, failure)) = lock(self.terminated()).first().cloned() {
                return match failure {
                    Some(message) => Err(Error::StreamingQuery { name, message }),
                    None => Ok(true),
                };
            }
            // A query that ended by itself (availableNow) says so once stopped.
            for query in self.active_queries() {
                let _ = query.await_termination_timeout(Duration::ZERO);
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl DataFrame {
    /// The interface to start a streaming query (Spark's `writeStream`).
    pub fn write_stream(&self) -> DataStreamWriter {
        DataStreamWriter::new(self.clone())
    }
}

/// A running query (Spark's `StreamingQuery`).
#[derive(Clone)]
pub struct StreamingQuery {
    state: Arc<QueryState>,
}

impl std::fmt::Debug for StreamingQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingQuery")
            .field("id", &self.state.id)
            .field("name", &self.state.name)
            .finish_non_exhaustive()
    }
}

fn new_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut words = [0u64; 2];
    for w in &mut words {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        *w = h.finish();
    }
    let hex = format!("{:016x}{:016x}", words[0], words[1]);
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// A query with watermarks: their delays, and the aggregation's key that holds event time.
#[derive(Clone, Debug)]
struct EventTime {
    delays: Vec<i64>,
    key: Option<(usize, KeyTime)>,
}

/// What [`StreamingQuery::start`] runs.
struct Start {
    session: crate::session::SparkSession,
    /// The query's streams, with their tables' ids.
    sources: Vec<(usize, SourceSpec)>,
    planner: Planner,
    /// The stateful operator, when the planner does not make it (a state function).
    stateful: Option<Stateful>,
    /// The plan as `explain` prints it.
    explained: String,
    /// Where ember's web UI serves the query's micro-batches, if anywhere.
    ui: Option<(String, u16)>,
    event_time: Option<EventTime>,
    /// The watermark's event-time column.
    watermark_column: Option<String>,
    /// Every watermark's event-time column.
    watermark_columns: Vec<String>,
    /// The aggregation's key that is a session window.
    session_key: Option<usize>,
    mode: OutputMode,
    sink: Sink,
    names: Vec<String>,
    trigger: Trigger,
    name: Option<String>,
    opened: Opened,
}

impl StreamingQuery {
    fn start(start: Start) -> Result<StreamingQuery> {
        let Start {
            session,
            sources,
            planner,
            stateful,
            explained,
            ui,
            event_time,
            watermark_column,
            watermark_columns,
            session_key,
            mode,
            sink,
            names,
            trigger,
            name,
            opened,
        } = start;
        let Opened {
            checkpoint,
            id,
            committed,
            interval,
            zero_ms,
        } = opened;
        let finite = matches!(trigger, Trigger::Once | Trigger::AvailableNow);
        if finite
            && sources
                .iter()
                .any(|(_, s)| matches!(s, SourceSpec::Socket { .. } | SourceSpec::Rate { .. }))
        {
            return Err(Error::unsupported(
                "the socket and rate sources cannot run with Trigger.Once or Trigger.AvailableNow in ember (they have no end)",
            ));
        }
        let state = Arc::new(QueryState {
            id,
            run_id: new_id(),
            name,
            ssc: std::sync::OnceLock::new(),
            stopped: AtomicBool::new(false),
            failure: Mutex::new(None),
            batches: AtomicU64::new(committed.next_id as u64),
            exhausted_at: sources.iter().map(|_| Arc::new(AtomicU64::new(0))).collect(),
            handled: AtomicU64::new(0),
            last_input_ms: AtomicU64::new(0),
            drained_at: AtomicU64::new(0),
            finite,
            watermarks: Mutex::new(committed.watermarks.clone()),
            no_data_pending: AtomicBool::new(false),
            progress: Mutex::new(crate::progress::Reports::default()),
            listeners: Arc::clone(session.listeners()),
            terminated_told: AtomicBool::new(false),
            terminated: Arc::clone(session.terminated()),
            in_batch: AtomicBool::new(false),
            last_had_input: AtomicBool::new(false),
            explained,
        });
        // The delay of the watermark whose column a stateful operator reads.
        let delay = event_time.as_ref().and_then(|e| e.delays.first().copied());
        let planned = match stateful {
            Some(stateful) => Some(Planned::OnWorker0(stateful)),
            None => planner.stateful(watermark_column.as_deref().zip(delay), &watermark_columns)?,
        };
        // An aggregation's state lives on the workers, in the key groups they own, kept by the
        // engine (see `aggregate::KeyedAggregate`); the other stateful operators' on worker 0.
        let (mut finisher, keyed) = match planned {
            Some(Planned::Aggregate(mut f)) => {
                f.key_time = event_time.as_ref().and_then(|e| e.key);
                f.session = session_key;
                if let Some(checkpoint) = &checkpoint {
                    // A changed aggregation is refused at start, naming its operator.
                    let schema = checkpoint.state_schema(&crate::ipc_stream(&f.partial_schema, None)?)?;
                    f.read_state(&schema)?;
                }
                (None, Some((f.operator_name(), crate::aggregate::routing_keys(&f))))
            }
            Some(Planned::OnWorker0(stateful)) => (Some(stateful), None),
            None => (None, None),
        };
        let keyed_plan = (
            watermark_column.clone(),
            delay,
            watermark_columns.clone(),
            event_time.as_ref().and_then(|e| e.key),
            session_key,
            event_time.as_ref().map(|e| e.delays.clone()),
        );
        // A resumed stateful operator starts from the state of the last committed batch.
        if let (Some(checkpoint), Some(finisher)) = (&checkpoint, finisher.as_mut())
            && committed.next_id > 0
        {
            finisher.restore(&checkpoint.read_state(committed.next_id - 1)?)?;
        }
        let finisher = Mutex::new(finisher);
        let session_id = session.id();
        let build_state = Arc::clone(&state);
        let build_checkpoint = checkpoint.clone();
        let build = move || -> ember::Result<ember::StreamingContext> {
            let state = build_state;
            let mut builder =
                ember::StreamingContext::builder(ember::milliseconds(interval.as_millis().max(1) as u64)).workers(session.workers());
            if finite {
                builder = builder.no_wait();
            }
            if let Some((host, port)) = &ui {
                builder = builder.ui_port(*port).ui_host(host);
            }
            // Built only when the engine has no checkpoint to resume: on the checkpoint's grid.
            if let Some(zero_ms) = zero_ms {
                builder = builder.zero_time(ember::Time::from_millis(zero_ms));
            }
            let ssc = builder.build()?;
            let mut streams = Vec::with_capacity(sources.len());
            for (k, (_, spec)) in sources.iter().enumerate() {
                streams.push(source_batches(&ssc, spec, k, trigger, session.workers(), &state.exhausted_at[k])?);
            }
            let planner = Arc::new(planner);
            let stage = Arc::clone(&planner);
            // Each partition of each stream (a union has several) through the worker's copy
            // of the plan, in the scans of its stream (the others read nothing for it).
            let ids: Vec<usize> = sources.iter().map(|(id, _)| *id).collect();
            let batches = if streams.len() == 1 {
                streams.pop().expect("one stream")
            } else {
                ssc.union(&streams)?
            };
            let staged = batches.map(move |(k, batch): (usize, ArrowBatch)| stage_batch(&stage, k, ids[k], batch.0));
            let outcomes = match &keyed {
                None => staged.map(Outcome::Staged),
                Some((_, keys)) => {
                    let keys = keys.clone();
                    let planner = Arc::clone(&planner);
                    let (column, delay, columns, key_time, session, delays) = keyed_plan.clone();
                    let route = move |out: StageOut, groups: &ember::KeyGroups, pieces: &mut Vec<ember::Routed<Piece>>| {
                        if let Err(e) =
                            crate::aggregate::route(out.source, out.input_rows, out.event_time, out.batches, &keys, groups, pieces)
                        {
                            panic!("the query's aggregation cannot route its rows: {e}");
                        }
                    };
                    let make = move |groups: &ember::KeyGroups| {
                        let finisher = match planner.stateful(column.as_deref().zip(delay), &columns) {
                            Ok(Some(Planned::Aggregate(mut f))) => {
                                f.key_time = key_time;
                                f.session = session;
                                Ok(f)
                            }
                            Ok(_) => Err("the query's plan has no aggregation".to_owned()),
                            Err(e) => Err(e.to_string()),
                        };
                        KeyedAggregate::new(finisher, groups, mode, Arc::clone(&planner.task), delays.clone())
                    };
                    // The state is versioned per micro-batch, as Spark's state store.
                    staged
                        .stateful_by_key_group("stateStoreSave", route, make)
                        .checkpoint(ember::milliseconds(interval.as_millis().max(1) as u64))?
                        .map(Outcome::Stepped)
                }
            };
            let output_state = Arc::clone(&state);
            let output_session = session.clone();
            let checkpoint = build_checkpoint;
            let descriptions: Vec<String> = sources.iter().map(|(_, s)| s.describe()).collect();
            let keyed_name = keyed.as_ref().map(|(name, _)| name.clone());
            outcomes.try_foreach_rdd(move |batch: ember::Batch<Outcome>, time: ember::Time| -> Result<()> {
                let mut outs: Vec<StageOut> = Vec::new();
                let mut stepped: Vec<Stepped> = Vec::new();
                for outcome in batch.into_vec() {
                    match outcome {
                        Outcome::Staged(out) => outs.push(out),
                        Outcome::Stepped(part) => stepped.push(part),
                    }
                }
                // The aggregation's owners each saw every partition's facts.
                let facts = match stepped.first() {
                    Some(part) => part.facts.clone(),
                    None => {
                        let mut facts = BatchFacts::default();
                        for out in &outs {
                            facts.add(out.source, out.input_rows, &out.event_time);
                        }
                        facts
                    }
                };
                let input_rows = facts.input_rows();
                output_state.in_batch.store(true, Ordering::SeqCst);
                output_state.last_had_input.store(input_rows > 0, Ordering::SeqCst);
                // Each watermark's event times over the partitions.
                let stats = &facts.event_time;
                // A batch the commit log holds ran again after a restart: its output is there.
                let committed = committed.last_time_ms.is_some_and(|t| time.milliseconds() <= t);
                // Processing-time timeouts are due on the batches' clock, input or not.
                let timeouts_due = !finite && matches!(lock(&finisher).as_ref(), Some(Stateful::Arbitrary(a)) if a.due_every_batch());
                let no_data = match &keyed_name {
                    Some(_) => input_rows == 0 && stepped.iter().any(|p| p.ran),
                    None => input_rows == 0 && (output_state.no_data_pending.load(Ordering::SeqCst) || timeouts_due),
                };
                let keyed_pending = stepped.iter().any(|p| p.pending);
                let result = if (input_rows == 0 && !no_data) || committed {
                    Ok(())
                } else {
                    let tracker = lock(&output_state.watermarks).clone();
                    let watermarks = tracker.current;
                    let started = std::time::Instant::now();
                    let right: Vec<RecordBatch> = outs.iter().flat_map(|o| o.right.iter().map(|b| b.0.clone())).collect();
                    let batches: Vec<RecordBatch> = outs.into_iter().flat_map(|o| o.batches).map(|b| b.0).collect();
                    let mut finishing = lock(&finisher);
                    let step = match finishing.as_mut() {
                        None if keyed_name.is_some() => Ok(Step {
                            updated: stepped.iter().map(|p| p.updated).sum(),
                            removed: stepped.iter().map(|p| p.removed).sum(),
                            dropped: stepped.iter().map(|p| p.dropped).sum(),
                            rows: stepped.iter().flat_map(|p| p.rows.iter().map(|b| b.0.clone())).collect(),
                        }),
                        None => Ok(Step {
                            rows: batches,
                            updated: 0,
                            removed: 0,
                            dropped: 0,
                        }),
                        Some(Stateful::Join(j)) => j.step(batches, right, &planner.task, event_time.as_ref().map(|_| watermarks)),
                        Some(Stateful::Arbitrary(a)) => a.step(
                            batches,
                            &planner.task,
                            event_time.as_ref().map(|_| watermarks),
                            time.milliseconds() as i64,
                        ),
                        Some(f) => f.step(batches, &planner.task, event_time.as_ref().map(|_| watermarks)),
                    };
                    let state_rows = match &keyed_name {
                        Some(_) => Some(stepped.iter().map(|p| p.state_rows).sum()),
                        None => finishing.as_ref().map(Stateful::state_rows),
                    };
                    let operator_name = match &keyed_name {
                        Some(name) => name.clone(),
                        None => finishing.as_ref().map(Stateful::operator_name).unwrap_or_default(),
                    };
                    step.and_then(|step| {
                        let rows = step.rows;
                        let next = match &event_time {
                            Some(e) => tracker.after(&e.delays, stats),
                            None => tracker.clone(),
                        };
                        let id = output_state.batches.load(Ordering::SeqCst) as i64;
                        sink.write(&output_session, &names, &rows, id, time.milliseconds(), mode)?;
                        if let Some(checkpoint) = &checkpoint {
                            if let Some(finisher) = finishing.as_ref() {
                                checkpoint.write_state(id, &finisher.snapshot()?)?;
                            }
                            checkpoint.commit(id, time.milliseconds(), &next)?;
                        }
                        let next_eviction_ms = next.current.eviction_ms;
                        *lock(&output_state.watermarks) = next;
                        let evicts = event_time.is_some() && finishing.as_ref().is_some_and(Stateful::evicts);
                        output_state
                            .no_data_pending
                            .store(evicts && next_eviction_ms > watermarks.eviction_ms, Ordering::SeqCst);
                        drop(finishing);
                        output_state.batches.store(id as u64 + 1, Ordering::SeqCst);
                        let add_batch_ms = started.elapsed().as_millis() as u64;
                        let now_ms = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as u64);
                        let previous = output_state.last_input_ms.swap(time.milliseconds(), Ordering::SeqCst);
                        let since = if previous == 0 {
                            interval.as_millis() as u64
                        } else {
                            time.milliseconds().saturating_sub(previous)
                        };
                        let report = QueryProgress {
                            id: output_state.id.clone(),
                            run_id: output_state.run_id.clone(),
                            name: output_state.name.clone(),
                            batch_id: id,
                            timestamp_ms: time.milliseconds(),
                            num_input_rows: input_rows,
                            input_rows_per_second: input_rows as f64 * 1000.0 / since.max(1) as f64,
                            // The batch's input ends at its time; without a clock (once,
                            // availableNow) batches run back to back and only the work counts.
                            trigger_execution_ms: if finite {
                                add_batch_ms
                            } else {
                                now_ms.saturating_sub(time.milliseconds()).max(add_batch_ms)
                            },
                            add_batch_ms,
                            state_rows,
                            operator_name: operator_name.clone(),
                            state_rows_updated: step.updated,
                            state_rows_removed: step.removed,
                            state_rows_dropped_by_watermark: step.dropped,
                            // Spark reports the first watermark's statistics that had rows.
                            event_time: event_time
                                .as_ref()
                                .map(|_| (stats.iter().flatten().next().copied(), watermarks.eviction_ms)),
                            num_output_rows: rows.iter().map(|b| b.num_rows() as u64).sum(),
                            sources: descriptions
                                .iter()
                                .enumerate()
                                .map(|(k, description)| SourceProgress {
                                    description: description.clone(),
                                    num_input_rows: facts.source_rows.get(k).copied().unwrap_or(0),
                                })
                                .collect(),
                            sink: sink.describe(),
                        };
                        output_state.listeners.tell("onQueryProgress", |l| l.on_query_progress(&report));
                        lock(&output_state.progress).push(report);
                        Ok(())
                    })
                };
                if keyed_name.is_some() {
                    // The owners' word on whether the watermark left groups to free.
                    output_state.no_data_pending.store(keyed_pending, Ordering::SeqCst);
                }
                if input_rows == 0 {
                    output_state.drained_at.store(time.milliseconds(), Ordering::SeqCst);
                }
                output_state.handled.store(time.milliseconds() + 1, Ordering::SeqCst);
                output_state.in_batch.store(false, Ordering::SeqCst);
                if let Err(e) = &result {
                    *lock(&output_state.failure) = Some(e.to_string());
                }
                result
            })?;
            Ok(ssc)
        };
        let ssc = match &checkpoint {
            Some(checkpoint) => ember::StreamingContext::get_or_create(checkpoint.engine_dir(), build)?,
            None => build()?,
        };
        let _ = state.ssc.set(ssc.clone());
        ssc.start()?;
        let started = QueryStartedEvent {
            id: state.id.clone(),
            run_id: state.run_id.clone(),
            name: state.name.clone(),
            timestamp_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        state.listeners.tell("onQueryStarted", |l| l.on_query_started(&started));
        let query = StreamingQuery { state };
        if finite {
            let driver = query.clone();
            std::thread::Builder::new()
                .name("ember-sql-trigger".to_owned())
                .spawn(move || driver.stop_when_exhausted())
                .map_err(|e| Error::illegal_argument(format!("cannot start the trigger's thread: {e}")))?;
        }
        let mut active = lock(&ACTIVE);
        // Stopped queries leave the list as new ones join, so it does not grow with every start.
        active.retain(|(_, q)| q.is_active());
        active.push((session_id, query.clone()));
        drop(active);
        Ok(query)
    }

    /// For `availableNow` and `once`: stops the query once the micro-batch that read the last
    /// file has been handled.
    fn stop_when_exhausted(&self) {
        loop {
            if self.state.stopped.load(Ordering::SeqCst) {
                return;
            }
            // Every source planned its last data, and the sink has handled the batch of the last.
            let ats: Vec<u64> = self.state.exhausted_at.iter().map(|a| a.load(Ordering::SeqCst)).collect();
            let at = ats.iter().copied().max().unwrap_or(0);
            if ats.iter().all(|a| *a > 0)
                && self.state.handled.load(Ordering::SeqCst) >= at
                && !self.state.no_data_pending.load(Ordering::SeqCst)
            {
                let _ = self.stop();
                return;
            }
            match self.state.ssc().await_termination_or_timeout(ember::milliseconds(5)) {
                Ok(false) => {}
                Ok(true) => return,
                // A failed batch: this wait took the engine's report of it, so the query keeps
                // it for its own `await_termination`, and stops (the engine would go on cutting
                // batches).
                Err(e) => {
                    lock(&self.state.failure).get_or_insert_with(|| e.to_string());
                    let _ = self.stop();
                    return;
                }
            }
        }
    }

    /// The query's id (Spark's `id`), kept across restarts from a checkpoint in Spark.
    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// This run's id (Spark's `runId`).
    pub fn run_id(&self) -> &str {
        &self.state.run_id
    }

    /// The name given with `query_name` (Spark's `name`).
    pub fn name(&self) -> Option<&str> {
        self.state.name.as_deref()
    }

    /// Whether the query runs (Spark's `isActive`).
    pub fn is_active(&self) -> bool {
        !self.state.stopped.load(Ordering::SeqCst) && matches!(self.state.ssc().get_state(), ember::StreamingContextState::Active)
    }

    /// Micro-batches that reached the sink.
    pub fn batches(&self) -> u64 {
        self.state.batches.load(Ordering::SeqCst)
    }

    /// Waits until the sources' data available now has been processed and committed (Spark's
    /// `processAllAvailable`, for tests): until a micro-batch after this call finds no new
    /// input. With data that keeps arriving that may take for ever, as in Spark; a query on
    /// `once` or `availableNow` is waited for to the end.
    ///
    /// # Errors
    ///
    /// [`Error::StreamingQuery`] when a micro-batch fails meanwhile.
    pub fn process_all_available(&self) -> Result<()> {
        if self.state.finite {
            return self.await_termination();
        }
        let called = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        while self.state.drained_at.load(Ordering::SeqCst) <= called {
            if self.await_termination_timeout(Duration::from_millis(10))? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The progress of the last micro-batch with input (Spark's `lastProgress`).
    pub fn last_progress(&self) -> Option<QueryProgress> {
        lock(&self.state.progress).last()
    }

    /// The progress of the last micro-batches with input, oldest first, at most 100 (Spark's
    /// `recentProgress`).
    pub fn recent_progress(&self) -> Vec<QueryProgress> {
        lock(&self.state.progress).all()
    }

    /// What the query is doing (Spark's `status`).
    pub fn status(&self) -> QueryStatus {
        let active = self.is_active();
        let in_batch = active && self.state.in_batch.load(Ordering::SeqCst);
        let data = self.state.last_had_input.load(Ordering::SeqCst);
        let message = match (active, in_batch, data) {
            (false, ..) => "Stopped",
            (true, true, _) => "Processing new data",
            (true, false, true) => "Waiting for next trigger",
            (true, false, false) => "Waiting for data to arrive",
        };
        QueryStatus {
            message: message.to_owned(),
            is_data_available: active && data,
            is_trigger_active: in_batch,
        }
    }

    /// The query's physical plan, as its DataFrame's `explain` printed it at start (Spark's
    /// `StreamingQuery.explain`).
    pub fn explain_string(&self) -> &str {
        &self.state.explained
    }

    /// Where ember's web UI and `/metrics` serve this query's micro-batches (the writer's
    /// `ember.ui.port` option), while it runs.
    pub fn ui_address(&self) -> Option<std::net::SocketAddr> {
        self.state.ssc().ui_address()
    }

    /// Prints [`StreamingQuery::explain_string`].
    pub fn explain(&self) {
        print!("{}", self.state.explained);
    }

    /// Why the query failed, if it did (Spark's `exception`).
    pub fn exception(&self) -> Option<String> {
        lock(&self.state.failure).clone()
    }

    /// Stops the query (Spark's `stop`).
    pub fn stop(&self) -> Result<()> {
        self.state.stopped.store(true, Ordering::SeqCst);
        let stopped = self.state.ssc().stop(false);
        if !self.state.terminated_told.swap(true, Ordering::SeqCst) {
            let ended = QueryTerminatedEvent {
                id: self.state.id.clone(),
                run_id: self.state.run_id.clone(),
                exception: self.exception(),
            };
            lock(&self.state.terminated).push((self.describe(), ended.exception.clone()));
            self.state.listeners.tell("onQueryTerminated", |l| l.on_query_terminated(&ended));
        }
        stopped?;
        Ok(())
    }

    fn failed(&self, error: ember::Error) -> Error {
        let _ = self.stop();
        let message = self.exception().unwrap_or_else(|| error.to_string());
        Error::StreamingQuery {
            name: self.describe(),
            message,
        }
    }

    fn describe(&self) -> String {
        match &self.state.name {
            Some(name) => format!("{name} [id = {}, runId = {}]", self.state.id, self.state.run_id),
            None => format!("[id = {}, runId = {}]", self.state.id, self.state.run_id),
        }
    }

    /// Waits until the query stops; a failed micro-batch ends it with
    /// [`Error::StreamingQuery`] (Spark's `awaitTermination`).
    pub fn await_termination(&self) -> Result<()> {
        while !self.await_termination_timeout(Duration::from_millis(100))? {}
        Ok(())
    }

    /// [`StreamingQuery::await_termination`] for at most `timeout`; returns whether it stopped.
    pub fn await_termination_timeout(&self, timeout: Duration) -> Result<bool> {
        match self
            .state
            .ssc()
            .await_termination_or_timeout(ember::milliseconds(timeout.as_millis() as u64))
        {
            // A query that failed says so however it stopped (the trigger's thread may have
            // taken the engine's report and stopped it).
            Ok(true) if let Some(message) = self.exception() => Err(Error::StreamingQuery {
                name: self.describe(),
                message,
            }),
            Ok(stopped) => Ok(stopped),
            Err(e) => Err(self.failed(e)),
        }
    }
}

/// The rows of stream `k` of a query, a record batch per partition tagged with `k` (`k` names
/// its engine source after the first, so that a checkpoint finds each again).
fn source_batches(
    ssc: &ember::StreamingContext,
    spec: &SourceSpec,
    k: usize,
    trigger: Trigger,
    workers: usize,
    exhausted_at: &Arc<AtomicU64>,
) -> ember::Result<ember::DStream<(usize, ArrowBatch)>> {
    let finite = matches!(trigger, Trigger::Once | Trigger::AvailableNow);
    // The engine names operators with static strings; a union's later streams (rare, a few
    // bytes each) get theirs leaked.
    let name = |base: &'static str| -> &'static str {
        if k == 0 {
            base
        } else {
            Box::leak(format!("{base}_{k}").into_boxed_str())
        }
    };
    let lines = match spec {
        SourceSpec::Kafka(options) => {
            let mut reader = ember_kafka::KafkaDirectStream::new(options.bootstrap_servers.clone())
                .topics(options.topics.clone())
                .starting_offsets(options.starting.clone())
                .on_offset_out_of_range(if options.fail_on_data_loss {
                    ember_kafka::OffsetReset::Fail
                } else {
                    ember_kafka::OffsetReset::Earliest
                });
            for (key, value) in &options.params {
                reader = reader.param(key.clone(), value.clone());
            }
            // Once: everything there is in one micro-batch (Spark ignores the limit then).
            if let Some(n) = options.max_offsets_per_trigger.filter(|_| trigger != Trigger::Once) {
                reader = reader.max_records_per_batch(n);
            }
            // Once and availableNow: what the partitions hold at the start, then stop.
            if finite {
                reader = reader.until_end_at_start(Arc::clone(exhausted_at));
            }
            let schema = spec.schema();
            let records = reader.create(ssc, ember_kafka::Bytes, ember_kafka::Bytes)?;
            return Ok(
                records.map_partitions(move |part: std::vec::IntoIter<ember_kafka::ConsumerRecord<Vec<u8>, Vec<u8>>>| {
                    vec![(k, ArrowBatch(crate::source::kafka_batch(&schema, part.collect())))]
                }),
            );
        }
        SourceSpec::Socket { host, port } => ssc.socket_text_stream(host, *port),
        SourceSpec::Rate {
            rows_per_second,
            num_partitions,
        } => ssc.direct_stream(
            name("rate_source"),
            spec.describe(),
            RateSource::new(*rows_per_second, if *num_partitions == 0 { workers } else { *num_partitions }),
            |slice: &crate::source::RateSlice| Ok::<_, String>(slice.rows()),
        ),
        SourceSpec::Files(options) => {
            let options = match trigger {
                // Once: everything there is in one micro-batch.
                Trigger::Once => crate::source::FileOptions {
                    max_files_per_trigger: None,
                    ..options.clone()
                },
                _ => options.clone(),
            };
            let files = FileSource::new(options, finite);
            let exhausted = Arc::clone(&files.exhausted);
            let at = Arc::clone(exhausted_at);
            let marked = MarkExhausted { files, exhausted, at };
            ssc.direct_stream(name("file_stream_source"), spec.describe(), marked, |slice| {
                Ok(vec![read_text(&slice.path)?])
            })
        }
    };
    let spec = spec.clone();
    let schema = spec.schema();
    Ok(lines.map_partitions(move |part: std::vec::IntoIter<String>| {
        let batch = match spec.batch(&schema, part.collect()) {
            Ok(batch) => batch,
            Err(e) => panic!("the source's rows do not fit its schema: {e}"),
        };
        vec![(k, ArrowBatch(batch))]
    }))
}

/// One partition of stream `id`'s rows, through the worker's copy of the query's stage.
fn stage_batch(stage: &Planner, source: usize, id: usize, batch: RecordBatch) -> StageOut {
    let input_rows = batch.num_rows() as u64;
    if input_rows == 0 {
        return StageOut {
            source,
            input_rows: 0,
            batches: Vec::new(),
            event_time: Vec::new(),
            right: Vec::new(),
        };
    }
    let event_time = stage
        .probes
        .iter()
        .map(|probe| -> Result<Option<EventStats>> {
            let mut stats: Option<EventStats> = None;
            for times in probe.run_stage(id, batch.clone())? {
                if let Some(more) = EventStats::of(times.column(0))? {
                    stats = Some(stats.map_or(more, |s| s.merge(more)));
                }
            }
            Ok(stats)
        })
        .collect::<Result<Vec<_>>>();
    let event_time = match event_time {
        Ok(stats) => stats,
        Err(e) => panic!("the query's watermark failed on a micro-batch: {e}"),
    };
    match stage.run_stages(id, batch) {
        Ok((out, right)) => StageOut {
            source,
            input_rows,
            batches: out.into_iter().map(ArrowBatch).collect(),
            event_time,
            right: right.into_iter().map(ArrowBatch).collect(),
        },
        Err(e) => panic!("the query's plan failed on a micro-batch: {e}"),
    }
}

/// The file source, telling the query when an `availableNow` run has planned its last file.
struct MarkExhausted {
    files: FileSource,
    exhausted: Arc<AtomicBool>,
    at: Arc<AtomicU64>,
}

impl ember::DirectSource for MarkExhausted {
    type Slice = crate::source::FileSlice;

    fn plan(&mut self, batch: &ember::DirectBatch<'_>) -> Vec<Self::Slice> {
        let slices = self.files.plan(batch);
        if self.exhausted.load(Ordering::SeqCst) && self.at.load(Ordering::SeqCst) == 0 {
            self.at.store(batch.time().milliseconds() + 1, Ordering::SeqCst);
        }
        slices
    }

    fn replay(&mut self, time: ember::Time, slices: &[Self::Slice]) {
        self.files.replay(time, slices);
    }

    fn snapshot(&self) -> std::result::Result<Vec<u8>, String> {
        self.files.snapshot()
    }

    fn restore(&mut self, bytes: &[u8]) -> std::result::Result<(), String> {
        self.files.restore(bytes)
    }
}
