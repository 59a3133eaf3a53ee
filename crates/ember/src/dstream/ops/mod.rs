//! Operations on every DStream.

pub(crate) mod aggregate;
mod elementwise;
mod object_files;
mod output;
pub(crate) mod partitions;
mod slice;
mod text_files;
pub(crate) mod transform;
pub(crate) mod union;

pub use object_files::ObjectFormat;
pub use output::format_batch;
pub use text_files::batch_file_name;
