//! ember's execution engine: compiles DStream plans onto timely dataflow.
//!
//! This is the only crate that imports timely. The timely timestamp of every stream is the
//! batch time in milliseconds; each message is one partition of a batch or an in-band marker
//! ([`Msg`]). Operators that need whole batches ([`ops::PerBatch`]) enumerate every batch time
//! their input frontier passes, so empty batches are seen too.

pub mod auth;
pub mod clock;
pub mod control;
pub mod events;
mod fault;
pub mod keys;
mod mesh;
pub mod msg;
pub mod ops;
pub mod runtime;
pub mod scheduler;
pub mod snapshot;
pub mod state;
#[cfg(feature = "tls")]
pub mod tls;
pub mod transport;

pub use clock::{Clock, ManualClock};
pub use msg::{Data, FailureCause, JobFailure, Key, Msg, Part, PartId};
pub use runtime::{BuildPlan, ClusterConfig, Compiler, EStream, Grid, JoinError, LaunchError, RunConfig, RunShared, Runtime, WorkerEnv};
