//! Calling Python functions from the engine's threads, and turning their exceptions into the
//! failure of a batch.
//!
//! ember's operations take infallible closures and report a panic in one as the failure of
//! that operation's batch, naming the operation and the batch time. A Python exception in a
//! user function ends the closure that way (without the panic hook's message: it is not a bug),
//! its text being Python's traceback. The exception object is kept, so that `awaitTermination`
//! raises the very exception the user's function raised.

use std::sync::Mutex;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

/// Exceptions of failed batches not raised yet, with their traceback text (bounded).
static FAILED: Mutex<Vec<(String, Py<PyAny>)>> = Mutex::new(Vec::new());
const FAILED_KEPT: usize = 64;

/// The traceback text of `err`, as Python prints it.
pub fn traceback_text(py: Python<'_>, err: &PyErr) -> String {
    py.import("traceback")
        .and_then(|tb| tb.call_method1("format_exception", (err.value(py),)))
        .and_then(|lines| lines.extract::<Vec<String>>())
        .map(|lines| lines.concat())
        .unwrap_or_else(|_| err.to_string())
        .trim_end()
        .to_owned()
}

/// Fails the batch being computed with the Python exception `err`.
pub fn fail_batch(py: Python<'_>, err: PyErr) -> ! {
    let text = traceback_text(py, &err);
    {
        let mut failed = FAILED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if failed.len() == FAILED_KEPT {
            failed.remove(0);
        }
        // The exception raised again by `awaitTermination` keeps the user function's frames.
        let value = err.value(py);
        if let Some(traceback) = err.traceback(py) {
            let _ = value.setattr("__traceback__", traceback);
        }
        failed.push((text.clone(), value.clone().into_any().unbind()));
    }
    std::panic::resume_unwind(Box::new(text))
}

/// The exception whose traceback `message` (a batch failure's message) carries, if it was a
/// Python exception of this process.
pub fn take_exception(message: &str) -> Option<Py<PyAny>> {
    let mut failed = FAILED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let at = failed.iter().position(|(text, _)| message.contains(text.as_str()))?;
    Some(failed.remove(at).1)
}

/// `f(args...)` under the GIL; an exception fails the batch.
pub fn call<'py, A>(py: Python<'py>, f: &Py<PyAny>, args: A) -> Bound<'py, PyAny>
where
    A: pyo3::call::PyCallArgs<'py>,
{
    f.bind(py).call1(args).unwrap_or_else(|e| fail_batch(py, e))
}

/// The Python exception for an ember error: the user's own exception for a batch that failed
/// in a Python function (with a note naming the operation and the batch), `ValueError` for a
/// bad argument, `OSError` for I/O, `RuntimeError` otherwise.
pub fn to_py_err(py: Python<'_>, error: ember::Error) -> PyErr {
    match &error {
        ember::Error::JobFailed { message, .. } => match take_exception(message) {
            Some(exception) => {
                let err = PyErr::from_value(exception.into_bound(py));
                let _ = err.add_note(py, format!("ember: {error}"));
                err
            }
            None => PyRuntimeError::new_err(error.to_string()),
        },
        ember::Error::InvalidArgument { .. } => PyValueError::new_err(error.to_string()),
        ember::Error::Io { .. } => PyOSError::new_err(error.to_string()),
        _ => PyRuntimeError::new_err(error.to_string()),
    }
}
