//! Streams whose elements are still Rust values: the lines of a text source, the words a
//! recognised `split` made of them, the `(word, n)` pairs a recognised `map` made of those,
//! and their sums per key.
//!
//! `ember.pyspark` recognises a few functions by their bytecode (`lambda line:
//! line.split(" ")`, `lambda w: (w, 1)`, `lambda a, b: a + b`, in any names, and
//! `operator.add`; see `python/ember/pyspark/streaming/native.py`) and, on a stream whose
//! elements are known to be `str`, runs them here in Rust with the same results: Python's
//! `str.split(sep)` and Rust's `str::split(sep)` cut at the same places and keep the same empty
//! pieces; the sum of `int`s that start below 2^31 cannot leave 64 bits in a batch. Any other
//! operation turns the stream into Python objects first ([`PyNative::to_python`]).

use ember::DStream;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};

use crate::call::fail_batch;
use crate::dstream::PyDStream;
use crate::value::PyObj;

#[derive(Clone)]
enum Native {
    /// `str` elements (lines, words).
    Text(DStream<String>),
    /// `(str, int)` elements.
    Pairs(DStream<(String, i64)>),
}

/// A stream of `str` or `(str, int)` elements kept as Rust values.
#[pyclass(name = "NativeStream", module = "ember._ember", frozen)]
pub struct PyNative {
    stream: Native,
}

impl PyNative {
    pub(crate) fn text(stream: DStream<String>) -> Self {
        PyNative {
            stream: Native::Text(stream),
        }
    }

    fn wrong(&self, operation: &str) -> PyErr {
        PyValueError::new_err(format!("{operation} does not apply to a native stream of {}", self.kind()))
    }
}

/// Lines as Python `str`s, a partition under one hold of the GIL.
pub(crate) fn strings(stream: &DStream<String>) -> PyDStream {
    PyDStream::new(stream.map_partitions_as("to_python", |lines: std::vec::IntoIter<String>| {
        crate::gil::attach(|py| {
            lines
                .map(|line| PyObj(PyString::new(py, &line).into_any().unbind()))
                .collect::<Vec<_>>()
        })
    }))
}

#[pymethods]
impl PyNative {
    /// `"text"` or `"pairs"`.
    fn kind(&self) -> &'static str {
        match self.stream {
            Native::Text(_) => "text",
            Native::Pairs(_) => "pairs",
        }
    }

    /// Each `str` cut at every `sep` (Python's `s.split(sep)`), the pieces as elements.
    fn split(&self, sep: String) -> PyResult<Self> {
        let Native::Text(text) = &self.stream else {
            return Err(self.wrong("split"));
        };
        if sep.is_empty() {
            return Err(PyValueError::new_err("empty separator"));
        }
        Ok(PyNative {
            stream: Native::Text(text.flat_map(move |line: String| line.split(sep.as_str()).map(str::to_owned).collect::<Vec<_>>())),
        })
    }

    /// `(s, value)` for every `str` `s`.
    fn pair(&self, value: i64) -> PyResult<Self> {
        let Native::Text(text) = &self.stream else {
            return Err(self.wrong("pair"));
        };
        Ok(PyNative {
            stream: Native::Pairs(text.map(move |word: String| (word, value))),
        })
    }

    /// The sum of each key's values in a batch (`reduceByKey(add)`).
    #[pyo3(signature = (num_partitions=None))]
    fn reduce_add(&self, num_partitions: Option<usize>) -> PyResult<Self> {
        let Native::Pairs(pairs) = &self.stream else {
            return Err(self.wrong("reduce_add"));
        };
        let add = |a: i64, b: i64| {
            a.checked_add(b)
                .unwrap_or_else(|| panic!("the sum of a key's values left 64 bits ({a} + {b})"))
        };
        let summed = match num_partitions {
            Some(n) => pairs.reduce_by_key_with_partitions(add, n),
            None => pairs.reduce_by_key(add),
        };
        Ok(PyNative {
            stream: Native::Pairs(summed),
        })
    }

    /// The same stream of Python objects.
    fn to_python(&self) -> PyDStream {
        match &self.stream {
            Native::Text(text) => strings(text),
            Native::Pairs(pairs) => PyDStream::new(pairs.map_partitions_as("to_python", |part: std::vec::IntoIter<(String, i64)>| {
                crate::gil::attach(|py| {
                    part.map(|(word, n)| {
                        let items = [
                            PyString::new(py, &word).into_any(),
                            n.into_pyobject(py)
                                .map(Bound::into_any)
                                .unwrap_or_else(|e| fail_batch(py, e.into())),
                        ];
                        let tuple = PyTuple::new(py, items).unwrap_or_else(|e| fail_batch(py, e));
                        PyObj(tuple.into_any().unbind())
                    })
                    .collect::<Vec<_>>()
                })
            })),
        }
    }

    /// The plan node's name.
    fn operator_name(&self) -> String {
        match &self.stream {
            Native::Text(s) => s.operator_name(),
            Native::Pairs(s) => s.operator_name(),
        }
    }
}
