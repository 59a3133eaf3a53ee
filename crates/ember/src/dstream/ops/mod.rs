//! Operations on every DStream.

pub(crate) mod aggregate;
mod elementwise;
mod output;
pub(crate) mod partitions;
pub(crate) mod transform;
pub(crate) mod union;

pub use output::format_batch;
