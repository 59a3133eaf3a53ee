//! Clocks that decide when a batch is due.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// How batch boundaries are decided.
#[derive(Clone, Debug)]
pub enum Clock {
    /// Wall-clock time: batch `t` is cut when the system time reaches `t` (as Spark does).
    System,
    /// A clock moved by hand ([`ManualClock::advance_ms`]); results are deterministic.
    Manual(ManualClock),
    /// No waiting: batch times are virtual and the next batch is cut as soon as the engine has
    /// room for it (bounded by the number of batches allowed in flight). For replayable input.
    NoWait,
}

impl Clock {
    /// The current time in milliseconds, or `None` for the no-wait clock (always due).
    pub fn now_ms(&self) -> Option<u64> {
        match self {
            Clock::System => Some(system_now_ms()),
            Clock::Manual(m) => Some(m.now_ms()),
            Clock::NoWait => None,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn system_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A clock that tests advance explicitly. Clones share the same time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A manual clock at time 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The clock's time in milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.now.load(Ordering::Acquire)
    }

    /// Moves the clock forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: u64) {
        self.now.fetch_add(ms, Ordering::AcqRel);
    }

    /// Sets the clock to `ms` (never moves it backwards).
    pub fn set_ms(&self, ms: u64) {
        self.now.fetch_max(ms, Ordering::AcqRel);
    }
}
