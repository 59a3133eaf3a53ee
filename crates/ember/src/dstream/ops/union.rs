//! `union`: the batches of two streams side by side, this stream's partitions first.

use ember_engine::Data;
use ember_engine::ops::PerPart;

use crate::dstream::{DStream, NodeRef};
use crate::error::{Error, Result};
use crate::plan::{NodeSpec, Partitioning};

/// Spark's message when a union finds no RDD for a batch on one of its inputs.
pub(crate) const NO_RDD_FOR_UNION: &str = "Could not generate RDD from a parent for unifying";

impl<T: Data> DStream<T> {
    /// A stream whose batches hold this stream's partitions followed by `other`'s.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the streams belong to different contexts or have
    /// different slide durations.
    pub fn union(&self, other: &DStream<T>) -> Result<DStream<T>> {
        union_all(&[self.clone(), other.clone()])
    }
}

/// The union of `streams`, in order (also `StreamingContext::union`).
pub(crate) fn union_all<T: Data>(streams: &[DStream<T>]) -> Result<DStream<T>> {
    union_all_with(streams, NO_RDD_FOR_UNION)
}

/// [`union_all`] failing a batch for which a stream has no RDD with `no_rdd_message` (the
/// message of the operation built on the union: Spark's `transform` words it differently).
pub(crate) fn union_all_with<T: Data>(streams: &[DStream<T>], no_rdd_message: &'static str) -> Result<DStream<T>> {
    let first = streams.first().ok_or_else(|| Error::InvalidArgument {
        operation: "union",
        message: "there must be at least one stream".into(),
    })?;
    for s in streams {
        if !std::sync::Arc::ptr_eq(&s.plan, &first.plan) {
            return Err(Error::InvalidArgument {
                operation: "union",
                message: "all streams must belong to the same StreamingContext".into(),
            });
        }
        if s.slide != first.slide {
            return Err(Error::InvalidArgument {
                operation: "union",
                message: format!(
                    "all streams must have the same slide duration, found {} and {}",
                    first.slide, s.slide
                ),
            });
        }
    }
    let inputs: Vec<NodeRef<T>> = streams.iter().map(DStream::node_ref).collect();
    let spec = NodeSpec::new("union", first.slide, inputs.iter().map(NodeRef::index).collect()).partitioning(Partitioning::Union);
    Ok(DStream::node(&first.plan, spec, move |c, label| {
        let tagged: Vec<_> = inputs
            .iter()
            .enumerate()
            .map(|(i, s)| s.stream(c).tag_parts(label, i as u32, no_rdd_message))
            .collect();
        <ember_engine::EStream<'_, T> as PerPart<'_, T>>::concat_all(tagged).unwrap_or_else(|| unreachable_empty())
    }))
}

#[cold]
fn unreachable_empty() -> ! {
    // `union_all` checked above that there is at least one stream.
    panic!("union of no streams; this is a bug in ember")
}
