//! `DStream<T>`: a node of the logical plan. Calling an operator records a node; nothing runs
//! before `StreamingContext::start`.

use std::sync::Arc;

use ember_engine::ops::PerPart;
use ember_engine::{Compiler, Data, EStream, PartId};

use crate::context::ContextInner;
use crate::time::Duration;

mod ops;
mod pair;

pub use ops::format_batch;
pub(crate) use ops::transform::transform_all;
pub(crate) use ops::union::union_all;

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
    pub(crate) build: BuildFn<T>,
}

impl<T> Clone for DStream<T> {
    fn clone(&self) -> Self {
        DStream {
            ctx: Arc::clone(&self.ctx),
            id: self.id,
            label: Arc::clone(&self.label),
            slide: self.slide,
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
        let id = ctx.next_operator_id();
        let label: Arc<str> = Arc::from(format!("{name}#{id}"));
        DStream {
            ctx: Arc::clone(ctx),
            id,
            label: Arc::clone(&label),
            slide,
            build: build(label),
        }
    }

    /// This node's stream on the worker being compiled (built once per worker).
    pub(crate) fn stream<'s>(&self, c: &mut Compiler<'s>) -> EStream<'s, T> {
        let build = Arc::clone(&self.build);
        c.memo(self.id, move |c| build(c))
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

    /// The operator label of this stream (`name#id`), as used in error messages.
    pub fn operator_name(&self) -> &str {
        &self.label
    }

    /// The interval at which this stream produces batches.
    pub fn slide_duration(&self) -> Duration {
        self.slide
    }
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
