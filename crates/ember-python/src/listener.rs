//! `addStreamingListener`: ember's listener events handed to Python.
//!
//! The events are delivered on ember's listener thread, which takes the GIL for each. Each goes
//! to the Python callable `deliver(kind, payload)` as its kind (`"batch_completed"`, ...) and
//! a JSON text of its fields; `ember.pyspark.streaming.listener` turns them into PySpark's
//! event objects and calls the user's `StreamingListener`.

use ember::{BatchInfo, OutputOperationInfo, ReceiverInfo, StreamingListener, StreamingStarted};
use pyo3::prelude::*;
use serde_json::json;

/// Forwards every event to a Python callable.
pub struct PyListener {
    deliver: Py<PyAny>,
}

impl PyListener {
    pub fn new(deliver: Py<PyAny>) -> Self {
        PyListener { deliver }
    }

    fn send(&self, kind: &str, payload: serde_json::Value) {
        crate::gil::attach(|py| {
            // The Python side catches the user's exceptions and prints them, as Spark's
            // listener bus logs them; anything left is printed here, and the job goes on.
            if let Err(e) = self.deliver.bind(py).call1((kind, payload.to_string())) {
                e.print(py);
            }
        });
    }
}

fn receiver(info: &ReceiverInfo) -> serde_json::Value {
    json!({
        "name": info.name,
        "active": info.active,
        "last_error": info.last_error,
    })
}

fn to_value<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

impl StreamingListener for PyListener {
    fn on_streaming_started(&mut self, event: &StreamingStarted) {
        self.send("streaming_started", to_value(event));
    }
    fn on_receiver_started(&mut self, info: &ReceiverInfo) {
        self.send("receiver_started", receiver(info));
    }
    fn on_receiver_error(&mut self, info: &ReceiverInfo) {
        self.send("receiver_error", receiver(info));
    }
    fn on_receiver_stopped(&mut self, info: &ReceiverInfo) {
        self.send("receiver_stopped", receiver(info));
    }
    fn on_batch_submitted(&mut self, batch: &BatchInfo) {
        self.send("batch_submitted", to_value(batch));
    }
    fn on_batch_started(&mut self, batch: &BatchInfo) {
        self.send("batch_started", to_value(batch));
    }
    fn on_batch_completed(&mut self, batch: &BatchInfo) {
        self.send("batch_completed", to_value(batch));
    }
    fn on_output_operation_started(&mut self, output: &OutputOperationInfo) {
        self.send("output_operation_started", to_value(output));
    }
    fn on_output_operation_completed(&mut self, output: &OutputOperationInfo) {
        self.send("output_operation_completed", to_value(output));
    }
}
