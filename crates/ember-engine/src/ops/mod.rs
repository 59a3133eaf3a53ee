//! Building blocks that ember's DStream operators are compiled into, as extension traits on
//! engine streams.

mod batch;
mod output;
mod source;
mod stateless;

pub use batch::{BatchInfo, PerBatch};
pub use output::{OutputPlacement, output};
pub use source::{SourceBatch, batch_source, count_input, count_input_by};
pub use stateless::{PerPart, catch_user};

/// The batch time of a received message. ember sends every message at exactly one batch
/// time, so a message's stamp has a single element.
pub(crate) fn stamp_time(cap: &timely::dataflow::operators::InputCapability<u64>) -> u64 {
    cap.least().copied().unwrap_or_default()
}
