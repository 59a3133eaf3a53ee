//! `DStream<T>`: a node of the logical plan. Calling an operator records a node; nothing runs
//! before `StreamingContext::start`.

use std::marker::PhantomData;
use std::sync::Arc;

use ember_engine::{Compiler, Data, EStream, PartId};

use crate::plan::{Handle, NodeSpec, OperatorId, Partitioning, Plan};
use crate::time::Duration;
use fuse::{Chain, Computed, Stage, Upstream};

pub(crate) mod combine;
pub(crate) mod fuse;
mod key_groups;
mod ops;
mod pair;
pub(crate) mod shuffle;
mod window;

pub(crate) use crate::plan::NodeMeta;
pub use key_groups::{KeyGroupLogic, KeyGroups, Routed};
pub(crate) use ops::transform::transform_all;
pub(crate) use ops::union::union_all;
pub use ops::{ObjectFormat, batch_file_name, format_batch};
pub use pair::{MapWithStateDStream, State, StateSpec};

/// A discretized stream: a sequence of batches of `T`, one per batch interval (Spark's
/// `DStream`).
///
/// Operations record a node in the plan and return a new stream; they run once the context
/// starts. Every operation is available on every worker count, from one thread to a cluster.
pub struct DStream<T> {
    pub(crate) plan: Arc<Plan>,
    /// The node's index in the plan.
    pub(crate) index: usize,
    pub(crate) slide: Duration,
    pub(crate) meta: Arc<NodeMeta>,
    /// Shared by the clones of this handle; the plan keeps the batches of the streams whose
    /// handles are alive at start for [`DStream::slice`].
    pub(crate) handle: Arc<Handle>,
    /// For a narrow stage, the operations from the nearest computed stream (see [`fuse`]).
    chain: Option<Arc<dyn Chain<T>>>,
    _elements: PhantomData<fn() -> T>,
}

/// A reference to a plan node that compile functions hold (a stream handle would keep the
/// plan alive from inside itself).
pub(crate) struct NodeRef<T> {
    index: usize,
    _elements: PhantomData<fn() -> T>,
}

impl<T> Clone for NodeRef<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for NodeRef<T> {}

impl<T> NodeRef<T> {
    /// The node's index in the plan.
    pub(crate) fn index(&self) -> usize {
        self.index
    }
}

impl<T: Data> NodeRef<T> {
    /// The node's stream on the worker being compiled; parents are compiled before their
    /// children, so it is always there.
    pub(crate) fn stream<'s>(&self, c: &mut Compiler<'s>) -> EStream<'s, T> {
        match c.memo_get(self.index as u64) {
            Some(stream) => stream,
            None => panic!("plan node {} compiled before its parent; this is a bug in ember", self.index),
        }
    }
}

impl<T> Clone for DStream<T> {
    fn clone(&self) -> Self {
        DStream {
            plan: Arc::clone(&self.plan),
            index: self.index,
            slide: self.slide,
            meta: Arc::clone(&self.meta),
            handle: Arc::clone(&self.handle),
            chain: self.chain.clone(),
            _elements: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for DStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DStream")
            .field("operator", &self.plan.label(self.index))
            .field("slide", &self.slide)
            .finish()
    }
}

impl<T: Data> DStream<T> {
    /// Records a node in `plan`; `build` makes its stream on each worker from the label
    /// (`kind#id`), reading its parents' streams through [`NodeRef`]s.
    pub(crate) fn node<B>(plan: &Arc<Plan>, spec: NodeSpec, build: B) -> Self
    where
        B: for<'s> Fn(&mut Compiler<'s>, &str) -> EStream<'s, T> + Send + Sync + 'static,
    {
        Self::node_with_chain(
            plan,
            spec,
            Arc::new(move |c: &mut Compiler<'_>, index: u64, label: &str| {
                let stream = build(c, label);
                c.memo_insert(index, stream);
            }),
            None,
        )
    }

    /// A narrow stage computed from this stream: `step` pushes the outputs of one element. It
    /// runs inside its consumer when the plan allows (see [`fuse`]), as its own operator
    /// otherwise.
    pub(crate) fn stage<U: Data, S>(&self, kind: &str, step: S) -> DStream<U>
    where
        S: Fn(T, &mut dyn FnMut(U)) + Send + Sync + 'static,
    {
        let spec = NodeSpec::new(kind, self.slide, vec![self.index]).stage().fuses_parent();
        let meta = Arc::clone(&spec.meta);
        let chain: Arc<dyn Chain<U>> = Arc::new(Stage::new(Arc::new(self.upstream()), Arc::clone(&meta), step));
        DStream::stage_node(&self.plan, spec, chain)
    }

    /// A source whose node is also a stage: `items` builds the stream of what is stored (with
    /// no plan node of its own) and `step` pushes the records of one stored item. When the
    /// source's only consumer takes chains, the items are decoded inside that consumer, a chunk
    /// of records at a time, so a batch's records are never all held at once (a text receiver's
    /// lines: each chunk is split and counted, and freed, before the next is decoded; the peak
    /// memory this saves is BENCHMARKS.md's row 36).
    pub(crate) fn decoded_source<S: Data, St>(
        plan: &Arc<Plan>,
        spec: NodeSpec,
        items: impl for<'s> Fn(&mut Compiler<'s>, &str) -> EStream<'s, S> + Send + Sync + 'static,
        step: St,
    ) -> DStream<T>
    where
        St: Fn(S, &mut dyn FnMut(T)) + Send + Sync + 'static,
    {
        let spec = spec.stage();
        let meta = Arc::clone(&spec.meta);
        let label_of = Arc::clone(&meta);
        let items: Arc<dyn Chain<S>> = Arc::new(Computed::new(move |c: &mut Compiler<'_>| items(c, &label_of.label())));
        let chain: Arc<dyn Chain<T>> = Arc::new(Stage::new(items, meta, step));
        DStream::stage_node(plan, spec, chain)
    }

    /// The node of a stage whose work is `chain`.
    fn stage_node(plan: &Arc<Plan>, spec: NodeSpec, chain: Arc<dyn Chain<T>>) -> DStream<T> {
        let meta = Arc::clone(&spec.meta);
        let own = Arc::clone(&chain);
        DStream::node_with_chain(
            plan,
            spec,
            Arc::new(move |c: &mut Compiler<'_>, index: u64, label: &str| {
                // A fused stage is built by its consumer.
                if !meta.fused() {
                    let stream = fuse::materialize(own.as_ref(), c, label);
                    c.memo_insert(index, stream);
                }
            }),
            Some(chain),
        )
    }

    /// What a consumer of this stream reads (see [`fuse::Upstream`]).
    pub(crate) fn upstream(&self) -> Upstream<T> {
        Upstream::new(self.node_ref(), Arc::clone(&self.meta), self.chain.clone())
    }

    fn node_with_chain(plan: &Arc<Plan>, spec: NodeSpec, compile: crate::plan::CompileFn, chain: Option<Arc<dyn Chain<T>>>) -> Self {
        let (slide, meta) = (spec.slide, Arc::clone(&spec.meta));
        let index = plan.add(spec, compile);
        let handle = Arc::new(Handle::default());
        let retained_meta = Arc::clone(&meta);
        plan.add_retainer(
            index,
            &handle,
            Box::new(move |plan, handle, keep, here| {
                let stream = DStream::<T> {
                    plan: Arc::clone(plan),
                    index,
                    slide,
                    meta: Arc::clone(&retained_meta),
                    handle,
                    chain: None,
                    _elements: PhantomData,
                };
                stream.retain(keep, here)
            }),
        );
        DStream {
            plan: Arc::clone(plan),
            index,
            slide,
            meta,
            handle,
            chain,
            _elements: PhantomData,
        }
    }

    /// Builds operation `kind` out of other operations (see [`crate::plan::OpScope`]): the
    /// stream `build` returns is the operation's node, shown as `kind`, and every other node
    /// it made is internal to it.
    pub(crate) fn one_op<U: Data>(&self, kind: &str, build: impl FnOnce() -> DStream<U>) -> DStream<U> {
        let op = self.plan.begin_op();
        let stream = build();
        op.end(stream.index, Some(kind));
        stream
    }

    /// [`DStream::one_op`] for an operation that can fail to build.
    pub(crate) fn try_one_op<U: Data>(&self, kind: &str, build: impl FnOnce() -> crate::Result<DStream<U>>) -> crate::Result<DStream<U>> {
        let op = self.plan.begin_op();
        let stream = build()?;
        op.end(stream.index, Some(kind));
        Ok(stream)
    }

    /// A reference to this node for compile functions.
    pub(crate) fn node_ref(&self) -> NodeRef<T> {
        NodeRef {
            index: self.index,
            _elements: PhantomData,
        }
    }

    /// A node computed from this stream by `f`, which gets the compiler, this stream, and the
    /// new node's label (`name#id`).
    pub(crate) fn derive<U: Data, F>(&self, name: &str, f: F) -> DStream<U>
    where
        F: for<'s> Fn(&mut Compiler<'s>, EStream<'s, T>, &str) -> EStream<'s, U> + Send + Sync + 'static,
    {
        self.derive_as(name, Partitioning::Narrow, f)
    }

    /// [`DStream::derive`] for a node that partitions its batches as `partitioning` says.
    pub(crate) fn derive_as<U: Data, F>(&self, name: &str, partitioning: Partitioning, f: F) -> DStream<U>
    where
        F: for<'s> Fn(&mut Compiler<'s>, EStream<'s, T>, &str) -> EStream<'s, U> + Send + Sync + 'static,
    {
        self.derive_node(NodeSpec::new(name, self.slide, vec![self.index]).partitioning(partitioning), f)
    }

    /// [`DStream::derive`] for a node described by `spec`, whose first parent is this stream.
    pub(crate) fn derive_node<U: Data, F>(&self, spec: NodeSpec, f: F) -> DStream<U>
    where
        F: for<'s> Fn(&mut Compiler<'s>, EStream<'s, T>, &str) -> EStream<'s, U> + Send + Sync + 'static,
    {
        let parent = self.node_ref();
        DStream::node(&self.plan, spec, move |c, label| {
            let input = parent.stream(c);
            f(c, input, label)
        })
    }

    /// [`DStream::derive_node`] for a node that reads this stream through an [`Upstream`], so
    /// that this stream's stages can run inside it.
    pub(crate) fn derive_fusing<U: Data, F>(&self, spec: NodeSpec, f: F) -> DStream<U>
    where
        F: for<'s> Fn(&mut Compiler<'s>, &Upstream<T>, &str) -> EStream<'s, U> + Send + Sync + 'static,
    {
        let upstream = self.upstream();
        DStream::node(&self.plan, spec.fuses_parent(), move |c, label| f(c, &upstream, label))
    }

    /// Records, for `start` to report, that `operation` combines this stream with one of a
    /// different slide (Spark rejects such plans).
    pub(crate) fn require_same_slide<U>(&self, operation: &'static str, other: &DStream<U>) {
        if self.slide != other.slide {
            self.plan.invalid(
                operation,
                format!(
                    "{} and {} have different slide durations ({} and {}); streams combined by {operation} must have the same slide",
                    self.operator_name(),
                    other.plan.label(other.index),
                    self.slide,
                    other.slide
                ),
            );
        }
    }

    /// The operator label of this stream (`kind#id`, for example `map#3`), as used in error
    /// messages.
    pub fn operator_name(&self) -> String {
        self.plan.label(self.index)
    }

    /// The stable id of the operation that made this stream (see [`OperatorId`]): its position
    /// in the program's sequence of operations, or the name given with [`DStream::name`].
    /// Checkpoints match state to operators by this id.
    pub fn operator_id(&self) -> OperatorId {
        self.plan.id(self.index)
    }

    /// Gives the operation that made this stream a stable id of your choice (as Flink's `uid`):
    /// it keeps that id when operations are added before it, so a checkpoint still finds its
    /// state. Returns the same stream.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) when the name is empty, has
    /// spaces or `#`, starts with a digit, or names another operation;
    /// [`Error::IllegalState`](crate::Error::IllegalState) after start.
    pub fn name(&self, name: &str) -> crate::Result<DStream<T>> {
        self.plan.set_name(self.index, name)?;
        Ok(self.clone())
    }

    /// The interval at which this stream produces batches.
    pub fn slide_duration(&self) -> Duration {
        self.slide
    }

    /// Sets the interval at which this stream's state is checkpointed (Spark's
    /// `checkpoint(interval)`); returns the same stream.
    ///
    /// The interval decides when stateful streams persist their state and, for
    /// [`map_with_state`](DStream::map_with_state), how often idle keys are checked for timeouts.
    /// On streams without state it is recorded and has no effect on the data.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) when `interval` is not a
    /// positive multiple of the stream's slide (Spark checks this at start).
    pub fn checkpoint(&self, interval: Duration) -> crate::Result<DStream<T>> {
        check_checkpoint_interval(interval, self.slide, &self.operator_name())?;
        self.meta.set_checkpoint(interval);
        Ok(self.clone())
    }

    /// The interval at which this stream is checkpointed: the one set with
    /// [`checkpoint`](DStream::checkpoint), or for streams that keep state (windowed reduces with
    /// an inverse function, `update_state_by_key`) Spark's default, the smallest multiple of the
    /// slide that is at least 10 seconds. `None` for streams without state and no interval set.
    pub fn checkpoint_interval(&self) -> Option<Duration> {
        self.meta
            .explicit_checkpoint()
            .or_else(|| self.meta.stateful.then(|| crate::plan::default_checkpoint_interval(self.slide)))
    }
}

/// Checks Spark's rule for checkpoint intervals: at least the slide, and a multiple of it.
pub(crate) fn check_checkpoint_interval(interval: Duration, slide: Duration, stream: &str) -> crate::Result<()> {
    if interval.as_millis() == 0 || !interval.is_multiple_of(slide) {
        return Err(crate::Error::InvalidArgument {
            operation: "checkpoint",
            message: format!(
                "the checkpoint interval ({interval}) of {stream} must be a positive multiple of its slide duration ({slide})"
            ),
        });
    }
    Ok(())
}

pub(crate) use shuffle::{gather, owned_partitions, spread};

/// Sorted partitions of one gathered batch.
pub(crate) fn sorted_partitions<T>(mut parts: Vec<ember_engine::Part<T>>) -> Vec<Vec<T>> {
    parts.sort_by(|a, b| a.id.cmp(&b.id));
    parts.into_iter().map(|p| p.data).collect()
}

/// Turns a user batch back into engine partitions.
pub(crate) fn batch_parts<T>(partitions: Vec<Vec<T>>) -> impl Iterator<Item = ember_engine::Msg<T>> {
    partitions.into_iter().enumerate().map(|(i, data)| {
        ember_engine::Msg::Part(ember_engine::Part {
            id: PartId::new(i as u32),
            data,
        })
    })
}
