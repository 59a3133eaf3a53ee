//! `ember._ember.DStream`: a stream of Python objects; `ember.pyspark.streaming.DStream` gives
//! it PySpark's names and defaults.

use std::sync::Arc;

use ember::{DStream, milliseconds};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::call::{call, fail_batch};
use crate::value::{KeyRepr, PyKey, PyObj};

/// A stream of Python objects.
#[pyclass(name = "DStream", module = "ember._ember", frozen)]
pub struct PyDStream {
    pub(crate) stream: DStream<PyObj>,
    /// The stateful node behind this stream, when it is the Python view of one (the state of
    /// `updateStateByKey`, an incremental window): `checkpoint` sets its interval.
    stateful: Option<Arc<dyn Fn(ember::Duration) -> ember::Result<()> + Send + Sync>>,
}

/// Splits a pair element into its key and value; anything but a 2-item sequence, or a key with
/// no stable hash, fails the batch with a `TypeError`.
fn to_pair(py: Python<'_>, x: PyObj) -> (PyKey, PyObj) {
    let (k, v) = key_value(py, &x);
    let repr = KeyRepr::of(&k).unwrap_or_else(|e| fail_batch(py, e));
    (
        PyKey {
            repr,
            obj: PyObj(k.unbind()),
        },
        PyObj(v.unbind()),
    )
}

/// The key and value of a pair element.
fn key_value<'py>(py: Python<'py>, x: &PyObj) -> (Bound<'py, PyAny>, Bound<'py, PyAny>) {
    x.bind(py).extract().unwrap_or_else(|_| {
        fail_batch(
            py,
            PyTypeError::new_err(format!(
                "a key-value operation needs elements that are (key, value) pairs, got {}",
                x.bind(py).repr().map(|r| r.to_string()).unwrap_or_default()
            )),
        )
    })
}

/// Runs `f` on every element of each partition, taking the GIL once per partition (taking it
/// per element costs more than most Python functions do).
/// The node is named `operation` in the plan and in failures.
fn under_gil<T: ember::Data, U: ember::Data>(
    stream: &DStream<T>,
    operation: &'static str,
    f: impl Fn(Python<'_>, T, &mut Vec<U>) + Send + Sync + 'static,
) -> DStream<U> {
    stream.map_partitions_as(operation, move |part: std::vec::IntoIter<T>| {
        crate::gil::attach(|py| {
            let mut out = Vec::with_capacity(part.len());
            for x in part {
                f(py, x, &mut out);
            }
            out
        })
    })
}

/// The tuple `(key, value)`.
fn from_pair(py: Python<'_>, key: &PyKey, value: Bound<'_, PyAny>) -> PyObj {
    let tuple = PyTuple::new(py, [key.obj.bind(py).clone(), value]).unwrap_or_else(|e| fail_batch(py, e));
    PyObj(tuple.into_any().unbind())
}

fn pairs_to_objects(stream: &DStream<(PyKey, PyObj)>) -> DStream<PyObj> {
    under_gil(stream, "to_python", |py, (k, v): (PyKey, PyObj), out| {
        out.push(from_pair(py, &k, v.0.into_bound(py)))
    })
}

fn to_keys(stream: &DStream<PyObj>) -> DStream<PyKey> {
    under_gil(stream, "key", |py, x: PyObj, out| match KeyRepr::of(x.bind(py)) {
        Ok(repr) => out.push(PyKey { repr, obj: x }),
        Err(e) => fail_batch(py, e),
    })
}

/// A count as a Python `int`.
fn int(py: Python<'_>, n: u64) -> Bound<'_, PyAny> {
    n.into_pyobject(py)
        .map(Bound::into_any)
        .unwrap_or_else(|e| fail_batch(py, e.into()))
}

/// The items of the iterable a user function returned; an error fails the batch.
fn elements(py: Python<'_>, iterable: &Bound<'_, PyAny>) -> Vec<PyObj> {
    let items = iterable.try_iter().unwrap_or_else(|e| fail_batch(py, e));
    items
        .map(|item| PyObj(item.unwrap_or_else(|e| fail_batch(py, e)).unbind()))
        .collect()
}

/// A batch's partitions as a Python list of lists.
pub(crate) fn partitions<'py>(py: Python<'py>, parts: Vec<Vec<PyObj>>) -> Bound<'py, PyList> {
    let lists: Vec<Bound<'py, PyList>> = parts
        .into_iter()
        .map(|p| PyList::new(py, p.into_iter().map(|x| x.0)))
        .collect::<PyResult<_>>()
        .unwrap_or_else(|e| fail_batch(py, e));
    PyList::new(py, lists).unwrap_or_else(|e| fail_batch(py, e))
}

/// The partitions a `transform` function returned: an iterable of iterables.
pub(crate) fn partitions_of(py: Python<'_>, result: &Bound<'_, PyAny>) -> Vec<Vec<PyObj>> {
    let parts = result.try_iter().unwrap_or_else(|e| fail_batch(py, e));
    parts
        .map(|part| elements(py, &part.unwrap_or_else(|e| fail_batch(py, e))))
        .collect()
}

fn invalid(e: ember::Error) -> PyErr {
    PyValueError::new_err(e.to_string())
}

impl PyDStream {
    pub(crate) fn new(stream: DStream<PyObj>) -> Self {
        PyDStream { stream, stateful: None }
    }

    /// The Python view of the stateful pair stream `state`.
    fn of_state(state: DStream<(PyKey, PyObj)>) -> Self {
        let stream = pairs_to_objects(&state);
        let stateful = Arc::new(move |interval| state.checkpoint(interval).map(|_| ()));
        PyDStream {
            stream,
            stateful: Some(stateful),
        }
    }

    /// The pairs of each partition with the values of each key reduced with `f` in a Python
    /// dict under one hold of the GIL (Spark's map-side combine, as PySpark's workers do it):
    /// the engine's reduce then merges one value per key and partition.
    fn combined(&self, f: &Py<PyAny>) -> DStream<(PyKey, PyObj)> {
        let f = crate::gil::attach(|py| f.clone_ref(py));
        self.stream
            .map_partitions_as("reduce_by_key", move |part: std::vec::IntoIter<PyObj>| {
                crate::gil::attach(|py| {
                    let combined = PyDict::new(py);
                    for x in part {
                        let (k, v) = key_value(py, &x);
                        let merged = match combined.get_item(&k) {
                            Ok(Some(acc)) => call(py, &f, (acc, v)),
                            Ok(None) => v,
                            // An unhashable key: say which type, as the engine's keys do.
                            Err(e) => fail_batch(py, KeyRepr::of(&k).err().unwrap_or(e)),
                        };
                        combined.set_item(&k, merged).unwrap_or_else(|e| fail_batch(py, e));
                    }
                    combined
                        .iter()
                        .map(|(k, v)| {
                            let repr = KeyRepr::of(&k).unwrap_or_else(|e| fail_batch(py, e));
                            (
                                PyKey {
                                    repr,
                                    obj: PyObj(k.unbind()),
                                },
                                PyObj(v.unbind()),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
    }

    fn pairs(&self) -> DStream<(PyKey, PyObj)> {
        under_gil(&self.stream, "key_value", |py, x, out| out.push(to_pair(py, x)))
    }
}

#[pymethods]
impl PyDStream {
    fn map(&self, f: Py<PyAny>) -> Self {
        Self::new(under_gil(&self.stream, "map", move |py, x: PyObj, out| {
            out.push(PyObj(call(py, &f, (x.0,)).unbind()))
        }))
    }

    fn flat_map(&self, f: Py<PyAny>) -> Self {
        Self::new(under_gil(&self.stream, "flat_map", move |py, x: PyObj, out| {
            out.extend(elements(py, &call(py, &f, (x.0,))))
        }))
    }

    fn filter(&self, f: Py<PyAny>) -> Self {
        Self::new(under_gil(&self.stream, "filter", move |py, x: PyObj, out| {
            let kept = call(py, &f, (x.bind(py),));
            if kept.is_truthy().unwrap_or_else(|e| fail_batch(py, e)) {
                out.push(x);
            }
        }))
    }

    /// `f` maps each partition's list to an iterable.
    fn map_partitions(&self, f: Py<PyAny>) -> Self {
        Self::new(self.stream.map_partitions(move |part: std::vec::IntoIter<PyObj>| {
            crate::gil::attach(|py| {
                let list = PyList::new(py, part.into_iter().map(|x| x.0)).unwrap_or_else(|e| fail_batch(py, e));
                let result = call(py, &f, (list,));
                elements(py, &result)
            })
        }))
    }

    fn map_values(&self, f: Py<PyAny>) -> Self {
        Self::new(under_gil(&self.stream, "map_values", move |py, x: PyObj, out| {
            let (k, v) = key_value(py, &x);
            let tuple = PyTuple::new(py, [k, call(py, &f, (v,))]).unwrap_or_else(|e| fail_batch(py, e));
            out.push(PyObj(tuple.into_any().unbind()));
        }))
    }

    fn flat_map_values(&self, f: Py<PyAny>) -> Self {
        Self::new(under_gil(&self.stream, "flat_map_values", move |py, x: PyObj, out| {
            let (k, v) = key_value(py, &x);
            for item in elements(py, &call(py, &f, (v,))) {
                let tuple = PyTuple::new(py, [k.clone(), item.0.into_bound(py)]).unwrap_or_else(|e| fail_batch(py, e));
                out.push(PyObj(tuple.into_any().unbind()));
            }
        }))
    }

    #[pyo3(signature = (f, num_partitions=None))]
    fn reduce_by_key(&self, f: Py<PyAny>, num_partitions: Option<usize>) -> Self {
        let pairs = self.combined(&f);
        let reduce = move |a: PyObj, b: PyObj| crate::gil::attach(|py| PyObj(call(py, &f, (a.0, b.0)).unbind()));
        let reduced = match num_partitions {
            Some(n) => pairs.reduce_by_key_with_partitions(reduce, n),
            None => pairs.reduce_by_key(reduce),
        };
        Self::new(pairs_to_objects(&reduced))
    }

    fn group_by_key(&self) -> Self {
        let grouped = self.pairs().group_by_key();
        Self::new(grouped.map(|(k, vs): (PyKey, Vec<PyObj>)| {
            crate::gil::attach(|py| {
                let list = PyList::new(py, vs.into_iter().map(|v| v.0)).unwrap_or_else(|e| fail_batch(py, e));
                from_pair(py, &k, list.into_any())
            })
        }))
    }

    fn count_by_value(&self) -> Self {
        let counted = to_keys(&self.stream).count_by_value();
        Self::new(under_gil(&counted, "to_python", |py, (k, n): (PyKey, u64), out| {
            out.push(from_pair(py, &k, int(py, n)))
        }))
    }

    /// `f(new_values: list, last_state) -> state or None` (PySpark's `updateFunc`); `initial`
    /// holds `(key, state)` pairs the state starts with.
    #[pyo3(signature = (f, initial=None))]
    fn update_state_by_key(&self, py: Python<'_>, f: Py<PyAny>, initial: Option<Vec<Py<PyAny>>>) -> PyResult<Self> {
        let initial = initial
            .map(|pairs| {
                pairs
                    .into_iter()
                    .map(|pair| {
                        let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair
                            .bind(py)
                            .extract()
                            .map_err(|_| PyTypeError::new_err("initialRDD must hold (key, state) pairs"))?;
                        Ok((
                            PyKey {
                                repr: KeyRepr::of(&k)?,
                                obj: PyObj(k.unbind()),
                            },
                            PyObj(v.unbind()),
                        ))
                    })
                    .collect::<PyResult<Vec<_>>>()
            })
            .transpose()?;
        let update = move |values: Vec<PyObj>, state: Option<PyObj>| {
            crate::gil::attach(|py| {
                let list = PyList::new(py, values.into_iter().map(|v| v.0)).unwrap_or_else(|e| fail_batch(py, e));
                let state = state.map_or_else(|| py.None(), |s| s.0);
                let next = call(py, &f, (list, state));
                (!next.is_none()).then(|| PyObj(next.unbind()))
            })
        };
        let updated = match initial {
            Some(initial) => self.pairs().update_state_by_key_with_initial(update, initial),
            None => self.pairs().update_state_by_key(update),
        };
        Ok(Self::of_state(updated))
    }

    #[pyo3(signature = (f, inv_f, window_ms, slide_ms, filter=None))]
    fn reduce_by_key_and_window(
        &self,
        f: Py<PyAny>,
        inv_f: Option<Py<PyAny>>,
        window_ms: u64,
        slide_ms: u64,
        filter: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let reduce = move |a: PyObj, b: PyObj| crate::gil::attach(|py| PyObj(call(py, &f, (a.0, b.0)).unbind()));
        let (window, slide) = (milliseconds(window_ms), milliseconds(slide_ms));
        let pairs = self.pairs();
        let windowed = match (inv_f, filter) {
            (None, _) => pairs.reduce_by_key_and_window(reduce, window, slide),
            (Some(inv), None) => {
                let inverse = move |a: PyObj, b: PyObj| crate::gil::attach(|py| PyObj(call(py, &inv, (a.0, b.0)).unbind()));
                pairs.reduce_by_key_and_window_inv(reduce, inverse, window, slide)
            }
            (Some(inv), Some(keep)) => {
                let inverse = move |a: PyObj, b: PyObj| crate::gil::attach(|py| PyObj(call(py, &inv, (a.0, b.0)).unbind()));
                let keep = move |k: &PyKey, v: &PyObj| {
                    crate::gil::attach(|py| {
                        let pair = from_pair(py, k, v.bind(py).clone());
                        let kept = call(py, &keep, (pair.0,));
                        kept.is_truthy().unwrap_or_else(|e| fail_batch(py, e))
                    })
                };
                pairs.reduce_by_key_and_window_inv_filtered(reduce, inverse, window, slide, None, keep)
            }
        }
        .map_err(invalid)?;
        Ok(Self::of_state(windowed))
    }

    fn count_by_value_and_window(&self, window_ms: u64, slide_ms: u64) -> PyResult<Self> {
        let counted = to_keys(&self.stream)
            .count_by_value_and_window(milliseconds(window_ms), milliseconds(slide_ms))
            .map_err(invalid)?;
        Ok(Self::new(under_gil(&counted, "to_python", |py, (k, n): (PyKey, u64), out| {
            out.push(from_pair(py, &k, int(py, n)))
        })))
    }

    fn window(&self, window_ms: u64, slide_ms: u64) -> PyResult<Self> {
        self.stream
            .window(milliseconds(window_ms), milliseconds(slide_ms))
            .map(Self::new)
            .map_err(invalid)
    }

    fn count(&self) -> Self {
        Self::new(self.stream.count().map(|n| crate::gil::attach(|py| PyObj(int(py, n).unbind()))))
    }

    fn union(&self, other: &PyDStream) -> PyResult<Self> {
        self.stream.union(&other.stream).map(Self::new).map_err(invalid)
    }

    fn repartition(&self, num_partitions: usize) -> PyResult<Self> {
        self.stream.repartition(num_partitions).map(Self::new).map_err(invalid)
    }

    /// Sets the checkpoint interval of the stateful node behind this stream (or of this one).
    fn checkpoint(&self, interval_ms: u64) -> PyResult<Self> {
        let interval = milliseconds(interval_ms);
        match &self.stateful {
            Some(stateful) => stateful(interval).map_err(invalid)?,
            None => {
                self.stream.checkpoint(interval).map_err(invalid)?;
            }
        }
        Ok(PyDStream {
            stream: self.stream.clone(),
            stateful: self.stateful.clone(),
        })
    }

    /// The stream's slide (ms): its batch interval, or its window's slide.
    fn slide_ms(&self) -> u64 {
        self.stream.slide_duration().as_millis()
    }

    /// Runs `f(time_ms, partitions)` for every batch, gathered on one worker, where
    /// `partitions` is a list of lists; an exception fails the batch.
    fn foreach_rdd(&self, f: Py<PyAny>) -> PyResult<()> {
        self.stream
            .foreach_rdd(move |batch, time| {
                crate::gil::attach(|py| {
                    let parts = partitions(py, batch.into_partitions());
                    call(py, &f, (time.milliseconds(), parts));
                })
            })
            .map_err(invalid)
    }

    /// `prefix-<ms>.suffix/part-NNNNN` with `str()` of each element, as PySpark writes them.
    fn save_as_text_files(&self, prefix: &str, suffix: &str) -> PyResult<()> {
        self.stream.save_as_text_files(prefix, suffix).map_err(invalid)
    }

    /// `f(time_ms, partitions)` returns the batch's new partitions (a list of lists).
    fn transform(&self, f: Py<PyAny>) -> Self {
        Self::new(self.stream.transform(move |batch| {
            let time = batch.time();
            crate::gil::attach(|py| {
                let parts = partitions(py, batch.into_partitions());
                let result = call(py, &f, (time.milliseconds(), parts));
                ember::Batch::from_partitions(time, partitions_of(py, &result))
            })
        }))
    }

    /// `f(time_ms, partitions, other_partitions)` returns the new partitions.
    fn transform_with(&self, other: &PyDStream, f: Py<PyAny>) -> Self {
        Self::new(self.stream.transform_with(&other.stream, move |left, right| {
            let time = left.time();
            crate::gil::attach(|py| {
                let (l, r) = (partitions(py, left.into_partitions()), partitions(py, right.into_partitions()));
                let result = call(py, &f, (time.milliseconds(), l, r));
                ember::Batch::from_partitions(time, partitions_of(py, &result))
            })
        }))
    }

    /// `(key, (values, other_values))` for every key of either stream, the values as lists.
    #[pyo3(signature = (other, num_partitions=None))]
    fn cogroup(&self, other: &PyDStream, num_partitions: Option<usize>) -> Self {
        let (left, right) = (self.pairs(), other.pairs());
        let grouped = match num_partitions {
            Some(n) => left.cogroup_with_partitions(&right, n),
            None => left.cogroup(&right),
        };
        Self::new(grouped.map(|(k, (vs, ws)): (PyKey, (Vec<PyObj>, Vec<PyObj>))| {
            crate::gil::attach(|py| {
                let list = |items: Vec<PyObj>| PyList::new(py, items.into_iter().map(|x| x.0)).unwrap_or_else(|e| fail_batch(py, e));
                let both = PyTuple::new(py, [list(vs).into_any(), list(ws).into_any()]).unwrap_or_else(|e| fail_batch(py, e));
                from_pair(py, &k, both.into_any())
            })
        }))
    }

    /// The batches from `from_ms` to `to_ms` (both included) this stream kept for `remember`,
    /// each as its partitions. The GIL is released while the kept batches are looked up.
    fn slice<'py>(&self, py: Python<'py>, from_ms: u64, to_ms: u64) -> PyResult<Vec<Bound<'py, PyList>>> {
        let batches = py
            .detach(|| {
                self.stream
                    .slice(ember::Time::from_millis(from_ms), ember::Time::from_millis(to_ms))
            })
            .map_err(|e| crate::call::to_py_err(py, e))?;
        Ok(batches.into_iter().map(|b| partitions(py, b.into_partitions())).collect())
    }

    /// Every batch's pairs in `num_partitions` partitions by key: ember's stable hash, or
    /// `func(key) % num_partitions` (PySpark's `partitionBy`).
    #[pyo3(signature = (num_partitions, func=None))]
    fn partition_by(&self, py: Python<'_>, num_partitions: usize, func: Option<Py<PyAny>>) -> PyResult<Self> {
        let pairs = self.pairs();
        let moved = match func {
            None => pairs.partition_by(num_partitions),
            Some(func) => pairs.partition_by_with(num_partitions, move |key: &PyKey| {
                crate::gil::attach(|py| {
                    let placed = call(py, &func, (key.obj.bind(py),));
                    placed
                        .rem(num_partitions)
                        .and_then(|r| r.extract::<usize>())
                        .unwrap_or_else(|e| fail_batch(py, e))
                })
            }),
        };
        Ok(Self::new(pairs_to_objects(&moved.map_err(|e| crate::call::to_py_err(py, e))?)))
    }

    /// The plan node's name (`map#3`), as errors name it.
    fn operator_name(&self) -> String {
        self.stream.operator_name()
    }
}
