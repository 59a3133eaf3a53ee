//! Operations on pair streams, `DStream<(K, V)>` (Spark's `PairDStreamFunctions`).

mod by_key;
mod cogroup;
