//! Taking the GIL from ember's threads.
//!
//! A thread that Python did not start has no Python thread state; `PyGILState_Ensure` makes one
//! each time such a thread takes the GIL and deletes it when the thread lets go (an allocation,
//! a fresh frame stack mapped and unmapped). The engine's threads take the GIL for every
//! partition, every merge of two values and every pickled value, so that cost showed as a third
//! of a Python word count's time, in the kernel. [`attach`] keeps one thread state per engine
//! thread for the thread's life instead, and deletes it when the thread ends.

#![allow(unsafe_code)] // CPython's thread-state calls; see the SAFETY notes.

use std::cell::Cell;

use pyo3::ffi;
use pyo3::prelude::*;

/// Whether this thread holds a kept thread state; dropping it (at thread exit) deletes it.
struct Kept(Cell<bool>);

impl Drop for Kept {
    fn drop(&mut self) {
        // SAFETY: this thread made its thread state in `keep` and holds no GIL here; the
        // interpreter is checked to still be there. Ensure takes the GIL with that state
        // (counter 2); the first release drops the count without letting go; the second
        // brings it to 0, which deletes the state and lets go of the GIL.
        unsafe {
            if self.0.get() && ffi::Py_IsInitialized() != 0 {
                let _ = ffi::PyGILState_Ensure();
                ffi::PyGILState_Release(ffi::PyGILState_STATE::PyGILState_LOCKED);
                ffi::PyGILState_Release(ffi::PyGILState_STATE::PyGILState_UNLOCKED);
            }
        }
    }
}

thread_local! {
    static KEPT: Kept = const { Kept(Cell::new(false)) };
}

/// Gives this thread a Python thread state for its life, unless it has one (a Python thread,
/// or one that already kept one).
fn keep() {
    KEPT.with(|kept| {
        if kept.0.get() {
            return;
        }
        // SAFETY: a thread without a thread state does not hold the GIL, so Ensure takes it
        // (making the state, with a count of 1) and SaveThread lets go of it again, keeping
        // the state and its count: later Ensure/Release pairs (pyo3's `attach`) only take and
        // let go of the GIL.
        unsafe {
            if ffi::PyGILState_GetThisThreadState().is_null() && ffi::Py_IsInitialized() != 0 {
                let _ = ffi::PyGILState_Ensure();
                ffi::PyEval_SaveThread();
                kept.0.set(true);
            }
        }
    });
}

/// `f` with the GIL held, as `Python::attach`, without making and deleting a thread state
/// each time on a thread Python did not start.
pub fn attach<F, R>(f: F) -> R
where
    F: for<'py> FnOnce(Python<'py>) -> R,
{
    keep();
    Python::attach(f)
}
