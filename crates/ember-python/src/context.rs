//! `ember._ember.StreamingContext`; `ember.pyspark.streaming.StreamingContext` gives it
//! PySpark's names and defaults.

use ember::{BatchQueue, ManualClock, StreamingContext, StreamingContextState, Time, milliseconds};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::call::to_py_err;
use crate::dstream::PyDStream;
use crate::native::PyNative;
use crate::value::PyObj;

/// A streaming context of Python streams.
#[pyclass(name = "StreamingContext", module = "ember._ember", frozen)]
pub struct PyContext {
    ssc: StreamingContext,
    /// The manual clock the batches are cut on, for tests (`clock="manual"`).
    clock: Option<ManualClock>,
}

#[pymethods]
impl PyContext {
    /// `clock` is `"system"` (batches on the wall clock), `"manual"` (tests move it with
    /// `set_clock`) or `"no_wait"` (batches back to back, for replayable inputs).
    ///
    /// `cluster` is `(process, addresses, control)`: this process's index, every process's
    /// `host:port`, and where process 0's control plane listens (`None`: its port + 1000), to
    /// run one process of a cluster (`python -m ember.launch` sets it).
    #[new]
    #[pyo3(signature = (batch_ms, workers=1, clock="system", cluster=None))]
    fn new(
        py: Python<'_>,
        batch_ms: u64,
        workers: usize,
        clock: &str,
        cluster: Option<(usize, Vec<String>, Option<String>)>,
    ) -> PyResult<Self> {
        if batch_ms == 0 {
            return Err(PyValueError::new_err("batchDuration must be at least 1 ms"));
        }
        let mut builder = StreamingContext::builder(milliseconds(batch_ms)).workers(workers.max(1));
        if let Some((process, addresses, control)) = cluster {
            if process >= addresses.len() {
                return Err(PyValueError::new_err(format!(
                    "cluster process {process} is not one of the {} addresses",
                    addresses.len()
                )));
            }
            builder = builder.cluster(process, addresses);
            if let Some(control) = control {
                builder = builder.cluster_control_address(control);
            }
        }
        let manual = match clock {
            "system" => None,
            "manual" => Some(ManualClock::new()),
            "no_wait" => {
                builder = builder.no_wait();
                None
            }
            other => {
                return Err(PyValueError::new_err(format!(
                    "clock must be 'system', 'manual' or 'no_wait', got {other:?}"
                )));
            }
        };
        if let Some(manual) = &manual {
            builder = builder.manual_clock(manual);
        }
        let ssc = builder.build().map_err(|e| to_py_err(py, e))?;
        Ok(PyContext { ssc, clock: manual })
    }

    /// Sets the manual clock to `ms` (a context made with `clock="manual"` only).
    fn set_clock(&self, ms: u64) -> PyResult<()> {
        let clock = self
            .clock
            .as_ref()
            .ok_or_else(|| PyRuntimeError::new_err("this context does not run on a manual clock"))?;
        clock.set_ms(ms);
        Ok(())
    }

    /// Waits until every output has run for batch `time_ms` (at most `timeout_ms`); returns
    /// whether it has. The GIL is released while waiting.
    fn await_batch(&self, py: Python<'_>, time_ms: u64, timeout_ms: u64) -> PyResult<bool> {
        py.detach(|| self.ssc.await_batch(Time::from_millis(time_ms), milliseconds(timeout_ms)))
            .map_err(|e| to_py_err(py, e))
    }

    /// Batch `i` of the list at the `i+1`-th batch time (`None`: no RDD then), in
    /// `num_partitions` partitions; a recoverable source (tests and backfills).
    fn replay_stream(&self, batches: Vec<Option<Vec<Py<PyAny>>>>, num_partitions: usize) -> PyDStream {
        let batches = batches
            .into_iter()
            .map(|batch| batch.map(|items| items.into_iter().map(PyObj).collect()))
            .collect();
        PyDStream::new(self.ssc.replay_stream(batches, num_partitions.max(1)))
    }

    /// Resumes from the checkpoint in `directory`, or calls `setup()` (which returns a
    /// context) for a fresh start; `setup` runs in both cases, as the plan is rebuilt from it.
    #[staticmethod]
    fn get_or_create(py: Python<'_>, directory: &str, setup: Py<PyAny>) -> PyResult<Self> {
        let mut failure: Option<PyErr> = None;
        let ssc = StreamingContext::get_or_create(directory, || {
            let built = setup
                .bind(py)
                .call0()
                .and_then(|ctx| Ok(ctx.extract::<PyRef<'_, PyContext>>()?.ssc.clone()));
            built.map_err(|e| {
                let message = e.to_string();
                failure = Some(e);
                ember::Error::IllegalState(format!("setupFunc failed: {message}"))
            })
        });
        match (ssc, failure) {
            (Ok(ssc), _) => Ok(PyContext { ssc, clock: None }),
            (Err(_), Some(e)) => Err(e),
            (Err(e), None) => Err(to_py_err(py, e)),
        }
    }

    /// One batch per entry (or all of them in the first batch), then `default` (or nothing);
    /// each entry is the batch's partitions, a list of lists.
    #[pyo3(signature = (batches, one_at_a_time=true, default=None))]
    fn queue_stream(&self, batches: Vec<Vec<Vec<Py<PyAny>>>>, one_at_a_time: bool, default: Option<Vec<Py<PyAny>>>) -> PyDStream {
        let queue = BatchQueue::new();
        for batch in batches {
            queue.push_partitions(batch.into_iter().map(|part| part.into_iter().map(PyObj).collect()).collect());
        }
        let default = default.map(|items| items.into_iter().map(PyObj).collect());
        PyDStream::new(self.ssc.queue_stream(&queue, one_at_a_time, default))
    }

    /// The lines of a socket, as a native stream (`to_python()` makes Python `str`s of them).
    fn socket_text_stream(&self, host: &str, port: u16) -> PyNative {
        PyNative::text(self.ssc.socket_text_stream(host, port))
    }

    /// The lines of the new files of a directory, as a native stream.
    fn text_file_stream(&self, py: Python<'_>, directory: &str) -> PyResult<PyNative> {
        self.ssc
            .text_file_stream(directory)
            .map(PyNative::text)
            .map_err(|e| to_py_err(py, e))
    }

    fn binary_records_stream(&self, py: Python<'_>, directory: &str, record_length: usize) -> PyResult<PyDStream> {
        let records = self
            .ssc
            .binary_records_stream(directory, record_length)
            .map_err(|e| to_py_err(py, e))?;
        Ok(PyDStream::new(records.map_partitions_as(
            "to_python",
            |records: std::vec::IntoIter<Vec<u8>>| {
                crate::gil::attach(|py| {
                    records
                        .map(|record| PyObj(pyo3::types::PyBytes::new(py, &record).into_any().unbind()))
                        .collect::<Vec<_>>()
                })
            },
        )))
    }

    fn checkpoint(&self, py: Python<'_>, directory: &str) -> PyResult<()> {
        self.ssc.checkpoint(directory).map_err(|e| to_py_err(py, e))
    }

    fn remember(&self, py: Python<'_>, duration_ms: u64) -> PyResult<()> {
        self.ssc.remember(milliseconds(duration_ms)).map_err(|e| to_py_err(py, e))
    }

    fn start(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.ssc.start()).map_err(|e| to_py_err(py, e))
    }

    #[pyo3(signature = (graceful=false))]
    fn stop(&self, py: Python<'_>, graceful: bool) -> PyResult<()> {
        py.detach(|| self.ssc.stop(graceful)).map_err(|e| to_py_err(py, e))
    }

    /// Waits for the context to stop (at most `timeout_ms`); returns whether it stopped. The
    /// GIL is released while waiting, and signals are checked every 100 ms: Ctrl-C stops the
    /// context and raises `KeyboardInterrupt`.
    #[pyo3(signature = (timeout_ms=None))]
    fn await_termination(&self, py: Python<'_>, timeout_ms: Option<u64>) -> PyResult<bool> {
        let deadline = timeout_ms.map(|ms| std::time::Instant::now() + std::time::Duration::from_millis(ms));
        loop {
            let step = deadline.map_or(100, |d| {
                d.saturating_duration_since(std::time::Instant::now()).as_millis().min(100) as u64
            });
            match py.detach(|| self.ssc.await_termination_or_timeout(milliseconds(step))) {
                Ok(true) => return Ok(true),
                Ok(false) if deadline.is_some_and(|d| std::time::Instant::now() >= d) => return Ok(false),
                Ok(false) => {}
                Err(e) => return Err(to_py_err(py, e)),
            }
            if let Err(interrupted) = py.check_signals() {
                let _ = py.detach(|| self.ssc.stop(false));
                return Err(interrupted);
            }
        }
    }

    /// `"INITIALIZED"`, `"ACTIVE"` or `"STOPPED"`.
    fn get_state(&self) -> &'static str {
        match self.ssc.get_state() {
            StreamingContextState::Initialized => "INITIALIZED",
            StreamingContextState::Active => "ACTIVE",
            StreamingContextState::Stopped => "STOPPED",
        }
    }

    /// `deliver(kind, json)` gets every listener event of this context (see `listener.rs`).
    fn add_streaming_listener(&self, deliver: Py<PyAny>) {
        self.ssc.add_streaming_listener(crate::listener::PyListener::new(deliver));
    }

    /// `f(time_ms, [partitions of each stream])` returns the batch's new partitions (Spark's
    /// `StreamingContext.transform` over any number of streams).
    fn transform(&self, py: Python<'_>, streams: Vec<PyRef<'_, PyDStream>>, f: Py<PyAny>) -> PyResult<PyDStream> {
        let streams: Vec<_> = streams.iter().map(|s| s.stream.clone()).collect();
        self.ssc
            .transform(&streams, move |batches: Vec<ember::Batch<PyObj>>| {
                let time = batches.first().map_or(Time::from_millis(0), ember::Batch::time);
                crate::gil::attach(|py| {
                    let lists = batches
                        .into_iter()
                        .map(|b| crate::dstream::partitions(py, b.into_partitions()))
                        .collect::<Vec<_>>();
                    let lists = pyo3::types::PyList::new(py, lists).unwrap_or_else(|e| crate::call::fail_batch(py, e));
                    let result = crate::call::call(py, &f, (time.milliseconds(), lists));
                    ember::Batch::from_partitions(time, crate::dstream::partitions_of(py, &result))
                })
            })
            .map(PyDStream::new)
            .map_err(|e| to_py_err(py, e))
    }

    fn union(&self, py: Python<'_>, streams: Vec<PyRef<'_, PyDStream>>) -> PyResult<PyDStream> {
        let mut iter = streams.iter();
        let first = iter
            .next()
            .ok_or_else(|| PyValueError::new_err("union needs at least one stream"))?
            .stream
            .clone();
        iter.try_fold(first, |acc, s| acc.union(&s.stream))
            .map(PyDStream::new)
            .map_err(|e| to_py_err(py, e))
    }
}
