//! The logical plan as data: every DStream operation records a node (kind, parents, slide,
//! partitioning, whether it holds state, and how to compile it) in a graph owned by the plan,
//! not by the running context. `start` freezes the graph; each worker compiles the nodes that
//! some output needs, in creation order (parents always come first), into its dataflow.
//!
//! # Operator ids
//!
//! Checkpoints find an operator's state by its [`OperatorId`], so ids must be the same in every
//! run of the same program. They are derived from the sequence of operations the user called:
//! the `n`-th operation (sources and outputs included) has id `n`. Nodes that ember creates
//! inside an operation (the grouping before `update_state_by_key`, the two halves of
//! `map_with_state`) are internal: they take the id of their operation with a suffix (`7.1`)
//! and never shift the ids of the user's operations. [`DStream::name`](crate::DStream::name)
//! gives an operation an id of the user's choice that stays put when operations are added
//! before it (Flink's `uid`).

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ember_engine::Compiler;
use ember_engine::keys::StableHasher;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::time::Duration;

/// The stable id of an operation of the plan: its position in the user's sequence of
/// operations (`"3"`), a suffix for nodes internal to an operation (`"3.1"`), or the name given
/// with [`DStream::name`](crate::DStream::name).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OperatorId(String);

impl OperatorId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OperatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a node's batches are partitioned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Partitioning {
    /// A source's own partitions.
    Source,
    /// The parent's partitions, element by element (narrow).
    Narrow,
    /// By key into `partitions` partitions over the key groups (`None` = one per worker).
    ByKey(Option<usize>),
    /// Round-robin into exactly this many partitions.
    RoundRobin(usize),
    /// Several parents' partitions side by side (`union`).
    Union,
    /// Gathered to one worker (`transform`, whole-batch outputs).
    Gathered,
    /// The node is an output: nothing downstream.
    Output,
}

impl fmt::Display for Partitioning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Partitioning::Source => f.write_str("source"),
            Partitioning::Narrow => f.write_str("narrow"),
            Partitioning::ByKey(None) => f.write_str("by key, one partition per worker"),
            Partitioning::ByKey(Some(n)) => write!(f, "by key, {n} partitions"),
            Partitioning::RoundRobin(n) => write!(f, "round-robin, {n} partitions"),
            Partitioning::Union => f.write_str("union"),
            Partitioning::Gathered => f.write_str("gathered"),
            Partitioning::Output => f.write_str("output"),
        }
    }
}

/// Spark's default checkpoint interval of a stateful stream: the smallest multiple of its slide
/// that is at least 10 seconds.
pub(crate) fn default_checkpoint_interval(slide: Duration) -> Duration {
    let slide = slide.as_millis().max(1);
    Duration::from_millis(10_000u64.div_ceil(slide) * slide)
}

/// What a plan node knows about itself besides how to build it; shared with the stream
/// handles and with the node's compile function.
#[derive(Debug, Default)]
pub(crate) struct NodeMeta {
    /// Explicit checkpoint interval (ms); 0 = not set.
    checkpoint_ms: AtomicU64,
    /// The node keeps state across batches (Spark's `mustCheckpoint`).
    pub(crate) stateful: bool,
    /// Set when the plan is frozen: some output needs this node.
    consumed: AtomicBool,
    /// Set when the plan is frozen: this node runs inside its only consumer (see
    /// `dstream::fuse`).
    fused: AtomicBool,
    /// Set when the plan is frozen: `kind#id`, for messages.
    label: std::sync::OnceLock<String>,
}

impl NodeMeta {
    /// Metadata of a node that keeps state across batches.
    pub(crate) fn stateful() -> Arc<NodeMeta> {
        Arc::new(NodeMeta {
            stateful: true,
            ..NodeMeta::default()
        })
    }

    /// The explicitly set checkpoint interval.
    pub(crate) fn explicit_checkpoint(&self) -> Option<Duration> {
        match self.checkpoint_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    pub(crate) fn set_checkpoint(&self, interval: Duration) {
        self.checkpoint_ms.store(interval.as_millis(), Ordering::Release);
    }

    /// The interval at which the node's state is checkpointed: the explicit one, or Spark's
    /// default for a stream of `slide` (see [`default_checkpoint_interval`]).
    pub(crate) fn checkpoint_every(&self, slide: Duration) -> Duration {
        self.explicit_checkpoint().unwrap_or_else(|| default_checkpoint_interval(slide))
    }

    /// Whether some output needs this node (known once the plan is frozen at start).
    pub(crate) fn consumed(&self) -> bool {
        self.consumed.load(Ordering::Acquire)
    }

    /// Whether this node runs inside its only consumer (known once the plan is frozen).
    pub(crate) fn fused(&self) -> bool {
        self.fused.load(Ordering::Acquire)
    }

    /// The node's label, `kind#id` (known once the plan is frozen).
    pub(crate) fn label(&self) -> String {
        self.label.get().cloned().unwrap_or_default()
    }
}

/// Compiles one node on one worker: builds its stream from its parents' (already compiled)
/// streams and records it under the node's index. Gets the node's index and label.
pub(crate) type CompileFn = Arc<dyn for<'s> Fn(&mut Compiler<'s>, u64, &str) + Send + Sync>;

/// What an operation says about the node it records.
pub(crate) struct NodeSpec {
    pub(crate) kind: Arc<str>,
    pub(crate) parents: Vec<usize>,
    pub(crate) slide: Duration,
    pub(crate) partitioning: Partitioning,
    pub(crate) meta: Arc<NodeMeta>,
    /// Compiled right after its (single) parent rather than in creation order, so that an
    /// output added at start runs before the user's outputs of the same batch.
    pub(crate) follows_parent: bool,
    /// A narrow stage that can run inside its consumer (see `dstream::fuse`).
    pub(crate) stage: bool,
    /// Can run its (single) parent's stages inside itself.
    pub(crate) fuses_parent: bool,
}

impl NodeSpec {
    /// A node of `kind` at `slide` computed from `parents`, narrow and stateless.
    pub(crate) fn new(kind: &str, slide: Duration, parents: Vec<usize>) -> Self {
        NodeSpec {
            kind: Arc::from(kind),
            parents,
            slide,
            partitioning: Partitioning::Narrow,
            meta: Arc::default(),
            follows_parent: false,
            stage: false,
            fuses_parent: false,
        }
    }

    /// Marks a narrow stage that runs inside its only consumer when that consumer can take it.
    pub(crate) fn stage(mut self) -> Self {
        self.stage = true;
        self
    }

    /// Marks a node that can run its parent's stages inside itself.
    pub(crate) fn fuses_parent(mut self) -> Self {
        self.fuses_parent = true;
        self
    }

    pub(crate) fn partitioning(mut self, partitioning: Partitioning) -> Self {
        self.partitioning = partitioning;
        self
    }

    pub(crate) fn meta(mut self, meta: Arc<NodeMeta>) -> Self {
        self.meta = meta;
        self
    }

    pub(crate) fn follows_parent(mut self) -> Self {
        self.follows_parent = true;
        self
    }
}

/// What a stream handle shares with the plan: set at start, when `remember` is, to the batches
/// kept for [`DStream::slice`](crate::DStream::slice) (`None` when no output needs the stream,
/// so it is not computed). Unset when `remember` was not.
#[derive(Debug, Default)]
pub(crate) struct Handle {
    pub(crate) retained: std::sync::OnceLock<Option<Arc<dyn std::any::Any + Send + Sync>>>,
}

/// Registers, at start, the output that keeps a stream's batches for `slice`: gets the plan,
/// the stream's handle, how long to keep batches, and whether they are gathered in this process.
pub(crate) type RetainFn =
    Box<dyn Fn(&Arc<Plan>, Arc<Handle>, Duration, bool) -> Result<Arc<dyn std::any::Any + Send + Sync>> + Send + Sync>;

/// A stream `slice` may read, if the program still holds a handle to it at start.
struct Retainer {
    index: usize,
    handle: std::sync::Weak<Handle>,
    install: RetainFn,
}

struct Node {
    spec: NodeSpec,
    /// Created inside an operation of the user's (see [`OpScope`]).
    internal: bool,
    /// For internal nodes, the node of the operation they belong to.
    owner: Option<usize>,
    name: Option<String>,
    compile: CompileFn,
}

const OPEN: u8 = 0;
const STARTED: u8 = 1;
const STOPPED: u8 = 2;

/// The plan of one context: its graph, and problems found while building it.
pub(crate) struct Plan {
    nodes: Mutex<Vec<Node>>,
    phase: AtomicU8,
    /// Problems found while building the plan by operations that cannot return an error;
    /// `start` reports the first (Spark validates these at start too).
    invalid: Mutex<Vec<(&'static str, String)>>,
    /// Streams created after `start`: they would never run (Spark throws at the call; ember's
    /// operations return streams, so `await_termination` reports the first).
    late: Mutex<Option<String>>,
    /// Every stream made, for [`Plan::retain`].
    retainers: Mutex<Vec<Retainer>>,
}

impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plan").field("nodes", &self.lock().len()).finish_non_exhaustive()
    }
}

thread_local! {
    /// How many operations built of other operations ([`OpScope`]) are being built on this thread.
    static COMPOSITE_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// An operation being built out of other operations: every node made between
/// [`Plan::begin_op`] and [`OpScope::end`] except the one `end` names is internal to it, so the
/// operation takes one id in the user's sequence however ember implements it. Dropped without
/// `end` (building failed), it leaves its nodes internal and unowned.
pub(crate) struct OpScope<'p> {
    plan: &'p Plan,
    start: usize,
    open: bool,
}

impl OpScope<'_> {
    fn close(&mut self) {
        if std::mem::replace(&mut self.open, false) {
            COMPOSITE_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        }
    }

    /// Ends the operation: node `returned` is its node (shown as `kind` if given), every other
    /// node made since [`Plan::begin_op`] is internal to it.
    pub(crate) fn end(mut self, returned: usize, kind: Option<&str>) {
        self.close();
        let nested = COMPOSITE_DEPTH.with(Cell::get) > 0;
        let mut nodes = self.plan.lock();
        let end = nodes.len();
        for (i, node) in nodes.iter_mut().enumerate().take(end).skip(self.start) {
            if i != returned && node.owner.is_none() {
                node.internal = true;
                node.owner = Some(returned);
            }
        }
        if let Some(node) = nodes.get_mut(returned) {
            node.internal = nested;
            if let Some(kind) = kind {
                node.spec.kind = Arc::from(kind);
            }
        }
    }
}

impl Drop for OpScope<'_> {
    fn drop(&mut self) {
        self.close();
    }
}

/// One node to compile.
struct Step {
    index: usize,
    id: OperatorId,
    /// `kind#id`, for messages.
    label: String,
    kind: Arc<str>,
    /// The node keeps state across batches (Spark's `mustCheckpoint`).
    stateful: bool,
    slide_ms: u64,
    compile: CompileFn,
}

/// The frozen plan that every worker compiles.
pub(crate) struct CompiledPlan {
    /// The nodes some output needs, in creation order.
    steps: Vec<Step>,
}

impl CompiledPlan {
    /// Whether the plan has nothing to run (no output).
    pub(crate) fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The id of node `index`, if the plan runs it.
    pub(crate) fn id_of(&self, index: usize) -> Option<&str> {
        self.steps.iter().find(|s| s.index == index).map(|s| s.id.as_str())
    }

    /// The label (`kind#id`) of the first node of `kind`, if the plan runs one.
    pub(crate) fn find_kind(&self, kind: &str) -> Option<&str> {
        self.steps.iter().find(|s| &*s.kind == kind).map(|s| s.label.as_str())
    }

    /// The labels of the nodes that keep state across batches.
    pub(crate) fn stateful_labels(&self) -> Vec<&str> {
        self.steps.iter().filter(|s| s.stateful).map(|s| s.label.as_str()).collect()
    }

    /// Compiles every needed node on the worker of `c`.
    pub(crate) fn compile(&self, c: &mut Compiler<'_>) {
        for step in &self.steps {
            c.with_operator(step.id.as_str(), |c| {
                c.with_slide(step.slide_ms, |c| (step.compile)(c, step.index as u64, &step.label))
            });
        }
    }
}

impl Plan {
    pub(crate) fn new() -> Arc<Plan> {
        Arc::new(Plan {
            nodes: Mutex::new(Vec::new()),
            phase: AtomicU8::new(OPEN),
            invalid: Mutex::new(Vec::new()),
            late: Mutex::new(None),
            retainers: Mutex::new(Vec::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Node>> {
        crate::lock::lock(&self.nodes)
    }

    /// Records a node; returns its index.
    pub(crate) fn add(&self, spec: NodeSpec, compile: CompileFn) -> usize {
        if self.phase.load(Ordering::Acquire) != OPEN
            && let Err(e) = self.check_open(&format!("create a stream ({})", spec.kind))
        {
            // Spark's words: adding inputs, transformations and outputs after start is not
            // supported. The stream is recorded but never runs.
            tracing::error!(error = %e, "A stream was created after the StreamingContext started; it will never run.");
            crate::lock::lock(&self.late).get_or_insert_with(|| format!("{e}: it would never run"));
        }
        let internal = COMPOSITE_DEPTH.with(Cell::get) > 0;
        let mut nodes = self.lock();
        nodes.push(Node {
            spec,
            internal,
            owner: None,
            name: None,
            compile,
        });
        nodes.len() - 1
    }

    /// Fails unless the plan can still change.
    pub(crate) fn check_open(&self, what: &str) -> Result<()> {
        match self.phase.load(Ordering::Acquire) {
            OPEN => Ok(()),
            STARTED => Err(Error::IllegalState(format!(
                "cannot {what} after the StreamingContext has been started"
            ))),
            _ => Err(Error::IllegalState(format!(
                "cannot {what} after the StreamingContext has been stopped"
            ))),
        }
    }

    pub(crate) fn mark_started(&self) {
        self.phase.store(STARTED, Ordering::Release);
    }

    pub(crate) fn mark_stopped(&self) {
        self.phase.store(STOPPED, Ordering::Release);
    }

    /// Records a problem of the plan that `start` will report.
    pub(crate) fn invalid(&self, operation: &'static str, message: String) {
        crate::lock::lock(&self.invalid).push((operation, message));
    }

    /// The first stream created after `start`, described, once.
    pub(crate) fn take_late(&self) -> Option<String> {
        crate::lock::lock(&self.late).take()
    }

    /// The first problem recorded while building the plan.
    pub(crate) fn first_problem(&self) -> Option<(&'static str, String)> {
        crate::lock::lock(&self.invalid).first().cloned()
    }

    /// Starts building an operation out of other operations (see [`OpScope`]).
    pub(crate) fn begin_op(&self) -> OpScope<'_> {
        let start = self.lock().len();
        COMPOSITE_DEPTH.with(|d| d.set(d.get() + 1));
        OpScope {
            plan: self,
            start,
            open: true,
        }
    }

    /// Gives node `index` the id `name`.
    pub(crate) fn set_name(&self, index: usize, name: &str) -> Result<()> {
        self.check_open("name an operation")?;
        let bad = |message: String| Error::InvalidArgument {
            operation: "name",
            message,
        };
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '#') {
            return Err(bad(format!("{name:?} is not a valid operation name (no spaces or '#', not empty)")));
        }
        if name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(bad(format!("{name:?} cannot start with a digit (those are ember's own ids)")));
        }
        let mut nodes = self.lock();
        if let Some(i) = nodes.iter().position(|n| n.name.as_deref() == Some(name))
            && i != index
        {
            return Err(bad(format!("the name {name:?} is already used by another operation")));
        }
        if let Some(node) = nodes.get_mut(index) {
            node.name = Some(name.to_owned());
        }
        Ok(())
    }

    /// Every node's id, by index.
    fn ids(nodes: &[Node]) -> Vec<OperatorId> {
        let mut ids: Vec<Option<String>> = vec![None; nodes.len()];
        let mut seq = 0u64;
        for (i, node) in nodes.iter().enumerate() {
            if !node.internal {
                seq += 1;
                ids[i] = Some(node.name.clone().unwrap_or_else(|| seq.to_string()));
            }
        }
        // Internal nodes: their owner's id and their position among its internal nodes. An
        // owner is always created after its internal nodes, so resolve in reverse order.
        let mut ordinal = vec![0u32; nodes.len()];
        let mut suffix: Vec<Option<(usize, u32)>> = vec![None; nodes.len()];
        for (i, node) in nodes.iter().enumerate() {
            if node.internal
                && let Some(owner) = node.owner
            {
                ordinal[owner] += 1;
                suffix[i] = Some((owner, ordinal[owner]));
            }
        }
        for i in (0..nodes.len()).rev() {
            if ids[i].is_some() {
                continue;
            }
            ids[i] = Some(match suffix[i] {
                Some((owner, k)) => match &ids[owner] {
                    Some(owner_id) => format!("{owner_id}.{k}"),
                    None => format!("_{i}.{k}"),
                },
                None => format!("_{i}"),
            });
        }
        ids.into_iter().map(|id| OperatorId(id.unwrap_or_default())).collect()
    }

    /// The id of node `index`.
    pub(crate) fn id(&self, index: usize) -> OperatorId {
        let nodes = self.lock();
        Self::ids(&nodes).swap_remove(index)
    }

    /// The label of node `index` in messages: `kind#id` (for example `map#3`).
    pub(crate) fn label(&self, index: usize) -> String {
        let nodes = self.lock();
        let kind = nodes.get(index).map(|n| Arc::clone(&n.spec.kind)).unwrap_or_else(|| Arc::from("?"));
        format!("{kind}#{}", Self::ids(&nodes)[index])
    }

    /// The nodes some output needs.
    fn needed(nodes: &[Node]) -> Vec<bool> {
        let mut needed = vec![false; nodes.len()];
        for i in (0..nodes.len()).rev() {
            if nodes[i].spec.partitioning == Partitioning::Output {
                needed[i] = true;
            }
            if needed[i] {
                for &p in &nodes[i].spec.parents {
                    needed[p] = true;
                }
            }
        }
        needed
    }

    /// Registers a stream `slice` may read (see [`Handle`]).
    pub(crate) fn add_retainer(&self, index: usize, handle: &Arc<Handle>, install: RetainFn) {
        crate::lock::lock(&self.retainers).push(Retainer {
            index,
            handle: Arc::downgrade(handle),
            install,
        });
    }

    /// At start, with `remember` set: every stream the program still holds a handle to and some
    /// output needs keeps its batches of the last `keep` for `slice` (`here`: they are gathered
    /// in this process). Streams no output needs are not computed, and keep nothing.
    pub(crate) fn retain(self: &Arc<Self>, keep: Duration, here: bool) -> Result<()> {
        let retainers = std::mem::take(&mut *crate::lock::lock(&self.retainers));
        let needed = Self::needed(&self.lock());
        for retainer in retainers {
            let Some(handle) = retainer.handle.upgrade() else { continue };
            let store = match needed[retainer.index] {
                true => Some((retainer.install)(self, Arc::clone(&handle), keep, here)?),
                false => None,
            };
            let _ = handle.retained.set(store);
        }
        Ok(())
    }

    /// Whether the plan has started (or stopped).
    pub(crate) fn started(&self) -> bool {
        self.phase.load(Ordering::Acquire) != OPEN
    }

    /// The needed stages that run inside their consumer: a stage whose only needed consumer
    /// takes its parent's stages and has no other parent.
    fn fused(nodes: &[Node], needed: &[bool]) -> Vec<bool> {
        let mut consumers = vec![0usize; nodes.len()];
        for (i, node) in nodes.iter().enumerate() {
            if needed[i] {
                for &p in &node.spec.parents {
                    consumers[p] += 1;
                }
            }
        }
        let mut fused = vec![false; nodes.len()];
        for (i, node) in nodes.iter().enumerate() {
            if needed[i]
                && node.spec.fuses_parent
                && let [p] = node.spec.parents[..]
                && nodes[p].spec.stage
                && consumers[p] == 1
            {
                fused[p] = true;
            }
        }
        fused
    }

    /// Freezes the plan for start: marks the nodes some output needs and returns what every
    /// worker compiles, with the plan's fingerprint.
    pub(crate) fn freeze(&self) -> (Arc<CompiledPlan>, u64) {
        let nodes = self.lock();
        let ids = Self::ids(&nodes);
        let needed = Self::needed(&nodes);
        let mut steps = Vec::new();
        let mut fingerprint = StableHasher::default();
        // Creation order, except that a node that follows its parent comes right after it.
        let mut order = Vec::with_capacity(nodes.len());
        for (i, node) in nodes.iter().enumerate() {
            if !node.spec.follows_parent {
                order.push(i);
                order.extend((0..nodes.len()).filter(|&f| nodes[f].spec.follows_parent && nodes[f].spec.parents == [i]));
            }
        }
        let fused = Self::fused(&nodes, &needed);
        for i in order {
            let node = &nodes[i];
            node.spec.meta.consumed.store(needed[i], Ordering::Release);
            node.spec.meta.fused.store(fused[i], Ordering::Release);
            if !needed[i] {
                continue;
            }
            let label = format!("{}#{}", node.spec.kind, ids[i]);
            let _ = node.spec.meta.label.set(label.clone());
            label.hash(&mut fingerprint);
            node.spec.slide.as_millis().hash(&mut fingerprint);
            for &p in &node.spec.parents {
                ids[p].hash(&mut fingerprint);
            }
            node.spec.partitioning.hash(&mut fingerprint);
            node.spec.meta.stateful.hash(&mut fingerprint);
            steps.push(Step {
                index: i,
                id: ids[i].clone(),
                label,
                kind: Arc::clone(&node.spec.kind),
                stateful: node.spec.meta.stateful,
                slide_ms: node.spec.slide.as_millis(),
                compile: Arc::clone(&node.compile),
            });
        }
        (Arc::new(CompiledPlan { steps }), fingerprint.finish())
    }

    /// The plan as text (Spark's `toDebugString` of a DStream graph): one line per node,
    /// outputs first, each followed by its parents, indented.
    pub(crate) fn explain(&self) -> String {
        let nodes = self.lock();
        let ids = Self::ids(&nodes);
        let mut out = String::new();
        let mut shown = HashSet::new();
        fn line(nodes: &[Node], ids: &[OperatorId], i: usize, depth: usize, out: &mut String, shown: &mut HashSet<usize>) {
            let node = &nodes[i];
            let spec = &node.spec;
            let _ = write!(
                out,
                "{:indent$}{}#{} [{}, slide {}",
                "",
                spec.kind,
                ids[i],
                spec.partitioning,
                spec.slide,
                indent = depth * 2
            );
            if spec.meta.stateful {
                out.push_str(", stateful");
            }
            if node.internal {
                out.push_str(", internal");
            }
            let consumers = nodes.iter().filter(|n| n.spec.parents.contains(&i)).count();
            if consumers > 1 {
                let _ = write!(out, ", {consumers} consumers");
            }
            // Known from start on: the stage runs inside its consumer's operator.
            if spec.meta.fused() {
                out.push_str(", fused into its consumer");
            }
            if !shown.insert(i) && !spec.parents.is_empty() {
                out.push_str("] (see above)\n");
                return;
            }
            out.push_str("]\n");
            for &p in &spec.parents {
                line(nodes, ids, p, depth + 1, out, shown);
            }
        }
        for (i, node) in nodes.iter().enumerate() {
            if node.spec.partitioning == Partitioning::Output {
                line(&nodes, &ids, i, 0, &mut out, &mut shown);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::prelude::*;

    /// The seeds' word count; with `internal_step`, `map` is built with an extra internal node
    /// (as when ember's implementation of an operation changes).
    fn word_count(ssc: &StreamingContext, internal_step: bool) -> String {
        let queue = BatchQueue::<String>::new();
        let lines = ssc.queue_stream(&queue, true, None);
        let words = lines.flat_map(|l: String| l.split(' ').map(str::to_owned).collect::<Vec<_>>());
        let pairs = if internal_step {
            let plan = std::sync::Arc::clone(&words.plan);
            let op = plan.begin_op();
            let pairs = words.filter(|_| true).map(|w| (w, 1u64));
            op.end(pairs.index, None);
            pairs
        } else {
            words.map(|w| (w, 1u64))
        };
        let counts = pairs.reduce_by_key(|a, b| a + b);
        counts.print().unwrap();
        ssc.explain()
    }

    #[test]
    fn ids_follow_the_users_operations_and_skip_internal_nodes() {
        let a = word_count(&StreamingContext::new(seconds(1)).unwrap(), false);
        let b = word_count(&StreamingContext::new(seconds(1)).unwrap(), false);
        assert_eq!(a, b);
        assert_eq!(
            a,
            "print#5 [output, slide 1000 ms]\n  reduce_by_key#4 [by key, one partition per worker, slide 1000 ms]\n    map#3 [narrow, slide 1000 ms]\n      flat_map#2 [narrow, slide 1000 ms]\n        queue_stream#1 [source, slide 1000 ms]\n"
        );
        // An internal node inserted into `map` changes no id of the user's operations.
        let c = word_count(&StreamingContext::new(seconds(1)).unwrap(), true);
        assert_eq!(
            c,
            "print#5 [output, slide 1000 ms]\n  reduce_by_key#4 [by key, one partition per worker, slide 1000 ms]\n    map#3 [narrow, slide 1000 ms]\n      filter#3.1 [narrow, slide 1000 ms, internal]\n        flat_map#2 [narrow, slide 1000 ms]\n          queue_stream#1 [source, slide 1000 ms]\n"
        );
    }

    #[test]
    fn a_named_operation_keeps_its_id_when_operations_are_added_before_it() {
        let build = |extra: bool| {
            let ssc = StreamingContext::new(seconds(1)).unwrap();
            let queue = BatchQueue::<String>::new();
            let mut lines = ssc.queue_stream(&queue, true, None);
            if extra {
                lines = lines.filter(|l| !l.is_empty()).map(|l| l.to_lowercase());
            }
            let counts = lines
                .map(|w| (w, 1u64))
                .update_state_by_key(|vs: Vec<u64>, s: Option<u64>| Some(vs.iter().sum::<u64>() + s.unwrap_or(0)))
                .name("word-counts")
                .unwrap();
            counts.print().unwrap();
            (counts.operator_id(), counts.operator_name(), ssc.explain())
        };
        let (id, name, plan) = build(false);
        let (id2, name2, plan2) = build(true);
        assert_eq!(id.as_str(), "word-counts");
        assert_eq!((id, name.clone()), (id2, name2));
        assert_eq!(name, "update_state_by_key#word-counts");
        // The state's internal grouping is numbered under the name, and so stays put too.
        assert!(
            plan.contains("group_by_key#word-counts.1 [by key, one partition per worker, slide 1000 ms, internal]"),
            "{plan}"
        );
        assert!(plan2.contains("group_by_key#word-counts.1 ["), "{plan2}");
        // Unnamed operations after the inserted ones move.
        assert!(plan.contains("print#4 ["), "{plan}");
        assert!(plan2.contains("print#6 ["), "{plan2}");
    }

    #[test]
    fn names_are_checked() {
        let ssc = StreamingContext::new(seconds(1)).unwrap();
        let queue = BatchQueue::<u32>::new();
        let a = ssc.queue_stream(&queue, true, None);
        let b = a.map(|x| x + 1);
        a.name("input").unwrap();
        for bad in ["", "two words", "a#b", "7up"] {
            assert!(b.name(bad).is_err(), "{bad:?} was accepted");
        }
        let taken = b.name("input").unwrap_err().to_string();
        assert!(taken.contains("already used"), "{taken}");
        b.print().unwrap();
        ssc.start().unwrap();
        assert!(b.name("late").is_err());
        ssc.stop(false).unwrap();
    }

    #[test]
    fn a_join_of_windows_is_one_operation_per_call() {
        let ssc = StreamingContext::new(seconds(1)).unwrap();
        let queue = BatchQueue::<(String, u64)>::new();
        let pairs = ssc.queue_stream(&queue, true, None);
        let windowed = pairs.reduce_by_key_and_window(|a, b| a + b, seconds(3), seconds(1)).unwrap();
        let joined = windowed.join(&pairs.map_values(|v| v * 2));
        joined.count().print().unwrap();
        let plan = ssc.explain();
        assert_eq!(
            plan,
            "print#6 [output, slide 1000 ms]\n\
             \x20 count#5 [narrow, slide 1000 ms]\n\
             \x20   join#4 [narrow, slide 1000 ms]\n\
             \x20     join#4.1 [by key, one partition per worker, slide 1000 ms, internal]\n\
             \x20       group_by_key#4.1.1 [by key, one partition per worker, slide 1000 ms, internal]\n\
             \x20         reduce_by_key_and_window#2 [by key, one partition per worker, slide 1000 ms]\n\
             \x20           reduce_by_key_and_window#2.1 [by key, one partition per worker, slide 1000 ms, internal]\n\
             \x20             queue_stream#1 [source, slide 1000 ms, 2 consumers]\n\
             \x20       group_by_key#4.1.2 [by key, one partition per worker, slide 1000 ms, internal]\n\
             \x20         map_values#3 [narrow, slide 1000 ms]\n\
             \x20           queue_stream#1 [source, slide 1000 ms, 2 consumers]\n"
        );
    }
}
