//! Poison-tolerant locking, as the engine does it.

pub(crate) use ember_engine::msg::lock;
