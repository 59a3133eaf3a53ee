//! Operations on pair streams, `DStream<(K, V)>` (Spark's `PairDStreamFunctions`).

mod by_key;
mod cogroup;
mod map_with_state;
mod partition_by;
mod state;
mod window;

pub use map_with_state::{MapWithStateDStream, State, StateSpec};
