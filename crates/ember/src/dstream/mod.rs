//! `DStream<T>`: a node of the logical plan. Calling an operator records a node; nothing runs
//! before `StreamingContext::start`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ember_engine::ops::PerPart;
use ember_engine::{Compiler, Data, EStream, PartId};

use crate::context::ContextInner;
use crate::time::Duration;

mod ops;
mod pair;
mod window;

pub use ops::format_batch;
pub(crate) use ops::transform::transform_all;
pub(crate) use ops::union::union_all;
pub use pair::{MapWithStateDStream, State, StateSpec};

/// Builds one plan node's stream on one worker.
pub(crate) type BuildFn<T> = Arc<dyn for<'s> Fn(&mut Compiler<'s>) -> EStream<'s, T> + Send + Sync>;

/// Pins the higher-ranked signature of a build closure.
pub(crate) fn build_fn<T, F>(f: F) -> BuildFn<T>
where
    F: for<'s> Fn(&mut Compiler<'s>) -> EStream<'s, T> + Send + Sync + 'static,
{
    Arc::new(f)
}

/// A discretized stream: a sequence of batches of `T`, one per batch interval (Spark's
/// `DStream`).
///
/// Operations record a node in the plan and return a new stream; they run once the context
/// starts. Every operation is available on every worker count, from one thread to a cluster.
pub struct DStream<T> {
    pub(crate) ctx: Arc<ContextInner>,
    pub(crate) id: u64,
    pub(crate) label: Arc<str>,
    pub(crate) slide: Duration,
    pub(crate) meta: Arc<NodeMeta>,
    pub(crate) build: BuildFn<T>,
}

/// What a plan node knows about itself besides how to build it.
#[derive(Debug, Default)]
pub(crate) struct NodeMeta {
    /// Explicit checkpoint interval (ms); 0 = not set.
    checkpoint_ms: AtomicU64,
    /// The node keeps state across batches (Spark's `mustCheckpoint`).
    stateful: bool,
}

impl NodeMeta {
    /// Metadata of a node that keeps state across batches.
    pub(crate) fn stateful() -> Arc<NodeMeta> {
        Arc::new(NodeMeta {
            checkpoint_ms: AtomicU64::new(0),
            stateful: true,
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
}

/// Spark's default checkpoint interval of a stateful stream: the smallest multiple of its slide
/// that is at least 10 seconds.
pub(crate) fn default_checkpoint_interval(slide: Duration) -> Duration {
    let slide = slide.as_millis().max(1);
    Duration::from_millis(10_000u64.div_ceil(slide) * slide)
}

impl<T> Clone for DStream<T> {
    fn clone(&self) -> Self {
        DStream {
            ctx: Arc::clone(&self.ctx),
            id: self.id,
            label: Arc::clone(&self.label),
            slide: self.slide,
            meta: Arc::clone(&self.meta),
            build: Arc::clone(&self.build),
        }
    }
}

impl<T> std::fmt::Debug for DStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DStream")
            .field("operator", &self.label)
            .field("slide", &self.slide)
            .finish()
    }
}

impl<T: Data> DStream<T> {
    /// A new plan node of context `ctx`.
    pub(crate) fn node(ctx: &Arc<ContextInner>, name: &str, slide: Duration, build: impl FnOnce(Arc<str>) -> BuildFn<T>) -> Self {
        Self::node_with_meta(ctx, name, slide, Arc::default(), build)
    }

    /// A new plan node with the given metadata (which its build function may share).
    pub(crate) fn node_with_meta(
        ctx: &Arc<ContextInner>,
        name: &str,
        slide: Duration,
        meta: Arc<NodeMeta>,
        build: impl FnOnce(Arc<str>) -> BuildFn<T>,
    ) -> Self {
        let id = ctx.next_operator_id();
        let label: Arc<str> = Arc::from(format!("{name}#{id}"));
        DStream {
            ctx: Arc::clone(ctx),
            id,
            label: Arc::clone(&label),
            slide,
            meta,
            build: build(label),
        }
    }

    /// This node's stream on the worker being compiled (built once per worker).
    pub(crate) fn stream<'s>(&self, c: &mut Compiler<'s>) -> EStream<'s, T> {
        let (build, slide) = (Arc::clone(&self.build), self.slide.as_millis());
        c.memo(self.id, move |c| c.with_slide(slide, |c| build(c)))
    }

    /// A node computed from this stream by `f`, which gets the compiler, this stream, and the
    /// new node's label (`name#id`).
    pub(crate) fn derive<U: Data, F>(&self, name: &str, f: F) -> DStream<U>
    where
        F: for<'s> Fn(&mut Compiler<'s>, EStream<'s, T>, &str) -> EStream<'s, U> + Send + Sync + 'static,
    {
        let parent = self.clone();
        DStream::node(&self.ctx, name, self.slide, move |label| {
            build_fn(move |c| {
                let input = parent.stream(c);
                f(c, input, &label)
            })
        })
    }

    /// Records, for `start` to report, that `operation` combines this stream with one of a
    /// different slide (Spark rejects such plans).
    pub(crate) fn require_same_slide<U>(&self, operation: &'static str, other: &DStream<U>) {
        if self.slide != other.slide {
            self.ctx.invalid_plan(
                operation,
                format!(
                    "{} and {} have different slide durations ({} and {}); streams combined by {operation} must have the same slide",
                    self.label, other.label, self.slide, other.slide
                ),
            );
        }
    }

    /// The operator label of this stream (`name#id`), as used in error messages.
    pub fn operator_name(&self) -> &str {
        &self.label
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
        check_checkpoint_interval(interval, self.slide, &self.label)?;
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
            .or_else(|| self.meta.stateful.then(|| default_checkpoint_interval(self.slide)))
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

/// Moves every partition of `stream` to worker 0 (a no-op on one worker).
pub(crate) fn gather<'s, T: Data>(c: &Compiler<'s>, stream: EStream<'s, T>) -> EStream<'s, T> {
    if c.env.peers > 1 { stream.exchange_parts(|_| 0) } else { stream }
}

/// Spreads partitions over the workers by their first id component (a no-op on one worker).
pub(crate) fn spread<'s, T: Data>(c: &Compiler<'s>, stream: EStream<'s, T>) -> EStream<'s, T> {
    if c.env.peers > 1 {
        stream.exchange_parts(|p| u64::from(p.id.head()))
    } else {
        stream
    }
}

/// The partitions owned by this worker among `n` shuffle partitions.
pub(crate) fn owned_partitions(c: &Compiler<'_>, n: usize) -> impl Iterator<Item = u32> + 'static {
    let (index, peers) = (c.env.index, c.env.peers);
    (0..n as u32).filter(move |p| *p as usize % peers == index)
}

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
