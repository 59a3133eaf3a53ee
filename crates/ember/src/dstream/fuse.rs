//! Operator fusion: chains of narrow operations run as one pass over each partition, as Spark
//! pipelines the narrow operations of a stage.
//!
//! `map`, `flat_map`, `filter`, `map_values` and `flat_map_values` record *stages*: besides
//! their plan node, their stream carries a [`Chain`], a push-based description of the work from
//! the nearest stream that is really computed. When the plan is frozen, a stage whose only
//! consumer can take a chain (another stage, or a keyed combine) is marked fused
//! ([`NodeMeta::fused`]): it compiles to nothing, and its consumer runs it inside its own
//! operator. Elements then go from one user function to the next without an intermediate
//! `Vec` per operation; a keyed combine folds them straight into its map.
//!
//! Elements travel down a chain in chunks of up to [`CHUNK`]: each stage runs its function over
//! a chunk in a loop compiled for that function, and fills a reused buffer that it hands on when
//! full. A chain's stages are hidden behind `dyn` (see below), so handing on each element by
//! itself costs an indirect call per element and stage, with the element passed through memory
//! each time; on the socket word count, chunks take about 10% less CPU (BENCHMARKS.md). The
//! computed stream's partition is the first chunk, whole.
//!
//! A chain's head type is hidden behind each `DStream<T>`, so a chain is built from the end: the
//! consumer hands its *tail* (what to do with each partition's elements) to the chain, each
//! stage wraps it into a tail for its own input, and the stream at the head runs the outermost
//! tail on every partition in one timely operator. That operator's output is type-erased
//! ([`Fused`]), and one more operator unpacks it; both work per partition, never per element.
//!
//! A panic in a fused user function still names its operation (`map#3`): every stage records
//! itself as the current one before calling its function.

use std::any::Any;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;

use ember_engine::ops::PerPart;
use ember_engine::{Compiler, Data, EStream, FailureCause, JobFailure, Part};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::dstream::NodeRef;
use crate::plan::NodeMeta;

/// Elements handed from one stage to the next at a time, at most (a `flat_map` of one element
/// may give more).
const CHUNK: usize = 256;

/// Where a stage puts its output: a chunk of elements, which the sink takes (it leaves the
/// `Vec` empty, its room kept).
pub(crate) type Sink<'a, T> = dyn FnMut(&mut Vec<T>) + 'a;

/// Pushes every element of one partition, after the chain's operations, into the sink it gets,
/// chunk by chunk.
pub(crate) type Feed<'a, T> = dyn FnMut(&mut Sink<'_, T>) + 'a;

/// Runs `f` on every element `feed` gives, in order (for a consumer at the end of a chain).
pub(crate) fn for_each<T>(feed: &mut Feed<'_, T>, mut f: impl FnMut(T)) {
    feed(&mut |chunk: &mut Vec<T>| chunk.drain(..).for_each(&mut f));
}

/// What the end of a chain does with one partition: it gets the partition's feed and returns
/// the partition's result, type-erased.
pub(crate) type Tail<T> = Box<dyn FnMut(&mut Feed<'_, T>) -> Fused>;

/// One partition's result of a fused chain, type-erased: only the operator right after the
/// chain reads it, on the same worker, so it is never serialised (it refuses to be).
#[derive(Clone)]
pub(crate) struct Fused(Arc<dyn Any + Send + Sync>);

impl Fused {
    fn new<R: Send + Sync + 'static>(data: Vec<R>) -> Self {
        Fused(Arc::new(data))
    }

    /// The partition's elements, if they are `R`s.
    fn take<R: Clone + Send + Sync + 'static>(self) -> Option<Vec<R>> {
        let data = self.0.downcast::<Vec<R>>().ok()?;
        Some(Arc::try_unwrap(data).unwrap_or_else(|shared| (*shared).clone()))
    }
}

impl Serialize for Fused {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "a fused partition never leaves its worker; this is a bug in ember",
        ))
    }
}

impl<'de> Deserialize<'de> for Fused {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "a fused partition never leaves its worker; this is a bug in ember",
        ))
    }
}

/// What a chain being built collects: the labels of its operations (the consumer's first), and
/// which of them is running, for naming a panic.
pub(crate) struct Fusion {
    names: Vec<String>,
    current: Rc<Cell<usize>>,
}

impl Fusion {
    /// A chain ending in the operation `label`.
    fn new(label: &str) -> Self {
        Fusion {
            names: vec![label.to_owned()],
            current: Rc::new(Cell::new(0)),
        }
    }
}

/// A chain of fused operations ending in elements of `T` (see the module docs).
pub(crate) trait Chain<T>: Send + Sync {
    /// Builds the chain's operator on the worker of `c`, running `tail` on every partition of
    /// the chain's output.
    fn build<'s>(&self, c: &mut Compiler<'s>, fusion: &mut Fusion, tail: Tail<T>) -> EStream<'s, Fused>;
}

/// The stream a consumer reads: the parent's computed stream, or, when the parent was fused
/// into the consumer, the parent's chain.
pub(crate) struct Upstream<T> {
    node: NodeRef<T>,
    meta: Arc<NodeMeta>,
    chain: Option<Arc<dyn Chain<T>>>,
}

impl<T: Data> Upstream<T> {
    pub(crate) fn new(node: NodeRef<T>, meta: Arc<NodeMeta>, chain: Option<Arc<dyn Chain<T>>>) -> Self {
        Upstream { node, meta, chain }
    }

    /// The parent's chain, if it runs inside this consumer.
    fn fused_chain(&self) -> Option<&Arc<dyn Chain<T>>> {
        self.chain.as_ref().filter(|_| self.meta.fused())
    }

    /// The parent's stream; when the parent was fused into this consumer, its chain run to the
    /// end and collected into partitions.
    pub(crate) fn stream<'s>(&self, c: &mut Compiler<'s>, label: &str) -> EStream<'s, T> {
        match self.fused_chain() {
            Some(chain) => materialize(chain.as_ref(), c, label),
            None => self.node.stream(c),
        }
    }

    /// When the parent was fused into this consumer: runs the parent's operations and then
    /// `tail` on every partition in one pass, in the operator `label`, and gives `tail`'s
    /// results as the partitions of the returned stream (ids kept); a panic in `tail`'s own
    /// sink is reported under `label`. `None` when the parent is computed on its own.
    pub(crate) fn run<'s, R: Data>(
        &self,
        c: &mut Compiler<'s>,
        label: &str,
        mut tail: impl FnMut(&mut Feed<'_, T>) -> Vec<R> + 'static,
    ) -> Option<EStream<'s, R>> {
        let chain = self.fused_chain()?;
        let mut fusion = Fusion::new(label);
        let current = Rc::clone(&fusion.current);
        let tail: Tail<T> = Box::new(move |feed: &mut Feed<'_, T>| {
            Fused::new(tail(&mut |sink: &mut Sink<'_, T>| {
                feed(&mut |chunk: &mut Vec<T>| {
                    current.set(0);
                    sink(chunk);
                    chunk.clear();
                })
            }))
        });
        Some(unpack(chain.build(c, &mut fusion, tail), label))
    }
}

impl<T: Data> Chain<T> for Upstream<T> {
    fn build<'s>(&self, c: &mut Compiler<'s>, fusion: &mut Fusion, tail: Tail<T>) -> EStream<'s, Fused> {
        if let Some(chain) = self.fused_chain() {
            return chain.build(c, fusion, tail);
        }
        head(self.node.stream(c), fusion, tail)
    }
}

/// The head of a chain that is a computed stream built by the chain itself rather than read
/// from a plan node: a source whose node is also a stage (see [`crate::DStream::decoded_source`]),
/// whose stored items are decoded inside the chain.
pub(crate) struct Computed<T> {
    build: Arc<dyn for<'s> Fn(&mut Compiler<'s>) -> EStream<'s, T> + Send + Sync>,
}

impl<T> Computed<T> {
    pub(crate) fn new(build: impl for<'s> Fn(&mut Compiler<'s>) -> EStream<'s, T> + Send + Sync + 'static) -> Self {
        Computed { build: Arc::new(build) }
    }
}

impl<T: Data> Chain<T> for Computed<T> {
    fn build<'s>(&self, c: &mut Compiler<'s>, fusion: &mut Fusion, tail: Tail<T>) -> EStream<'s, Fused> {
        head((self.build)(c), fusion, tail)
    }
}

/// The head of a chain: `stream`, with the whole chain (`tail`) in one operator.
fn head<'s, T: Data>(stream: EStream<'s, T>, fusion: &mut Fusion, mut tail: Tail<T>) -> EStream<'s, Fused> {
    let names: Rc<[String]> = fusion.names.iter().cloned().collect();
    let current = Rc::clone(&fusion.current);
    let operator = names.iter().rev().cloned().collect::<Vec<_>>().join(" > ");
    stream.per_part_or_fail(&operator, move |time, p: Part<T>| {
        let mut data = p.data;
        let result = catch_unwind(AssertUnwindSafe(|| tail(&mut |sink: &mut Sink<'_, T>| sink(&mut data))));
        match result {
            Ok(fused) => Ok(Part {
                id: p.id,
                data: vec![fused],
            }),
            Err(payload) => Err(JobFailure::new(
                // Every index is a name's; the consumer's (0) is the fallback.
                names.get(current.get()).or(names.first()).cloned().unwrap_or_default(),
                time,
                FailureCause::Panic(ember_engine::msg::panic_message(payload.as_ref())),
            )),
        }
    })
}

/// A narrow operation as a stage of a chain: `step` pushes the outputs of one input element.
pub(crate) struct Stage<T, U, S> {
    upstream: Arc<dyn Chain<T>>,
    meta: Arc<NodeMeta>,
    step: Arc<S>,
    _elements: std::marker::PhantomData<fn(T) -> U>,
}

impl<T, U, S> Stage<T, U, S> {
    pub(crate) fn new(upstream: Arc<dyn Chain<T>>, meta: Arc<NodeMeta>, step: S) -> Self {
        Stage {
            upstream,
            meta,
            step: Arc::new(step),
            _elements: std::marker::PhantomData,
        }
    }
}

impl<T, U, S> Chain<U> for Stage<T, U, S>
where
    T: Data,
    U: Data,
    S: Fn(T, &mut dyn FnMut(U)) + Send + Sync + 'static,
{
    fn build<'s>(&self, c: &mut Compiler<'s>, fusion: &mut Fusion, mut tail: Tail<U>) -> EStream<'s, Fused> {
        let index = fusion.names.len();
        fusion.names.push(self.meta.label());
        let (step, current) = (Arc::clone(&self.step), Rc::clone(&fusion.current));
        // The stage's output buffer, kept from partition to partition.
        let mut out: Vec<U> = Vec::new();
        let tail: Tail<T> = Box::new(move |feed: &mut Feed<'_, T>| {
            out.clear();
            tail(&mut |sink: &mut Sink<'_, U>| {
                feed(&mut |chunk: &mut Vec<T>| {
                    // Only this stage's function runs in this loop, but for the sink, which
                    // names its own stage: this one's index is set again after it.
                    current.set(index);
                    // A full chunk goes on as soon as it is full, even in the middle of one
                    // element's results: a `flat_map` giving a million elements for one input
                    // then never holds more than a chunk of them here.
                    let mut emit = |u| {
                        out.push(u);
                        if out.len() >= CHUNK {
                            sink(&mut out);
                            out.clear();
                            current.set(index);
                        }
                    };
                    for t in chunk.drain(..) {
                        step(t, &mut emit);
                    }
                });
                if !out.is_empty() {
                    sink(&mut out);
                    out.clear();
                }
            })
        });
        self.upstream.build(c, fusion, tail)
    }
}

/// Runs `chain` to its end in the operator `label` and collects each partition.
pub(crate) fn materialize<'s, T: Data>(chain: &dyn Chain<T>, c: &mut Compiler<'s>, label: &str) -> EStream<'s, T> {
    let mut fusion = Fusion::new(label);
    // Each partition grows from empty: starting at the last partition's size would keep a
    // large first batch's room (the initial load of a state) in every batch after it.
    let tail: Tail<T> = Box::new(move |feed: &mut Feed<'_, T>| {
        let mut data = Vec::new();
        feed(&mut |chunk: &mut Vec<T>| data.append(chunk));
        Fused::new(data)
    });
    unpack(chain.build(c, &mut fusion, tail), label)
}

/// The operator after a chain: turns each erased partition back into elements.
fn unpack<'s, R: Data>(erased: EStream<'s, Fused>, label: &str) -> EStream<'s, R> {
    erased.try_per_part(label, |p: Part<Fused>| {
        let data = p.data.into_iter().next().and_then(Fused::take::<R>);
        match data {
            Some(data) => Ok(Part { id: p.id, data }),
            None => Err("a fused partition had an unexpected type; this is a bug in ember".to_owned()),
        }
    })
}
