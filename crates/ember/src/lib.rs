//! ember: Spark Streaming's discretized streams (DStreams) in Rust, on timely dataflow.
//!
//! A Spark Streaming program reads almost the same in ember: create a [`StreamingContext`],
//! build [`DStream`]s from sources, transform them with Spark's operations (in snake_case),
//! register outputs, then `start` and `await_termination`.
//!
//! ```no_run
//! use ember::prelude::*;
//!
//! fn main() -> ember::Result<()> {
//!     let ssc = StreamingContext::new(seconds(1))?;
//!     let lines = ssc.socket_text_stream("localhost", 9999);
//!     let counts = lines
//!         .flat_map(|l: String| l.split(' ').map(str::to_owned).collect::<Vec<_>>())
//!         .map(|w| (w, 1u64))
//!         .reduce_by_key(|a, b| a + b);
//!     counts.print()?;
//!     ssc.start()?;
//!     ssc.await_termination()
//! }
//! ```
//!
//! Where ember differs from Spark on purpose, the item's docs say so (for example, any
//! batch interval down to 1 ms is allowed).
#![deny(missing_docs)]

mod batch;
mod checkpoint;
mod context;
mod display;
mod dstream;
mod error;
mod listener;
mod lock;
mod plan;
mod sources;
mod state_codec;
#[cfg(test)]
mod state_restore_tests;
pub mod storage;
pub mod testing;
mod time;
pub mod ui;

/// mimalloc is the global allocator of every program on ember unless it turns the default
/// `mimalloc` feature off (`default-features = false`, for a program that sets its own): the
/// engine allocates and frees every batch's buffers, and a word count a `String` per word,
/// where glibc's allocator is slower (BENCHMARKS.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use batch::{Batch, Numeric, StatCounter};
pub use context::{DEFAULT_MAX_FAILED_RESTARTS, DEFAULT_MAX_LINE_BYTES, DEFAULT_RECEIVER_BUFFER_BYTES};
pub use context::{StreamingContext, StreamingContextBuilder, StreamingContextState};
pub use display::SparkDisplay;
pub use dstream::{
    DStream, KeyGroupLogic, KeyGroups, MapWithStateDStream, ObjectFormat, Routed, State, StateSpec, batch_file_name, format_batch,
};
pub use ember_engine::{Clock, Data, Key, ManualClock, auth, keys, transport};
pub use error::{Error, Result};
pub use listener::{BatchInfo, ListenerId, OutputOperationInfo, StatsReportListener, StreamingListener, StreamingStarted};
pub use plan::{OperatorId, Partitioning};
/// Text receivers' line framing and decoding, public for the fuzz targets in `fuzz/`.
#[doc(hidden)]
pub use sources::lines;
pub use sources::{
    BadRecordCounts, BatchQueue, DirectBatch, DirectSource, LongLinePolicy, Receiver, ReceiverContext, ReceiverInfo, Utf8Policy,
};
pub use time::{Duration, Time, milliseconds, minutes, seconds};

/// Everything a program needs, in one import.
pub mod prelude {
    pub use crate::{
        Batch, BatchQueue, Clock, DStream, Duration, ManualClockExt, MapWithStateDStream, Receiver, ReceiverContext, SparkDisplay, State,
        StateSpec, StreamingContext, Time, Utf8Policy, milliseconds, minutes, seconds,
    };
    pub use ember_engine::ManualClock;
}

/// Advancing a [`ManualClock`] by an ember [`Duration`].
pub trait ManualClockExt {
    /// Moves the clock forward by `d`.
    fn advance(&self, d: Duration);
}

impl ManualClockExt for ManualClock {
    fn advance(&self, d: Duration) {
        self.advance_ms(d.as_millis());
    }
}
