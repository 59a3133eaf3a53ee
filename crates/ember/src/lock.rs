//! Poison-tolerant locking: a thread that panicked while holding a lock (a failing user
//! function) must not take the context, the plan or a source down with it.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, going on with the data if a panicking thread poisoned it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
