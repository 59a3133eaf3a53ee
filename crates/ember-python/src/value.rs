//! Python objects as the elements, keys and state of ember's streams.
//!
//! Elements are Python objects ([`PyObj`]); the engine clones, serialises (with `pickle`, for
//! checkpoints and between processes) and drops them, taking the GIL for each. Keys need a hash
//! that is the same in every process and run, which Python's own `hash` of `str` is not (it is
//! salted per interpreter), so a key is read into [`KeyRepr`], a Rust value with ember's stable
//! hash and Python's equality for the types keys are made of: `str`, `bytes`, `int`, `float`,
//! `bool`, `None` and tuples of them. `1`, `1.0` and `True` are one key, as in a Python `dict`.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyString, PyTuple};
use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A Python object held by the engine.
pub struct PyObj(pub Py<PyAny>);

impl PyObj {
    /// The object, bound to the GIL held by `py`.
    pub fn bind<'py>(&self, py: Python<'py>) -> &Bound<'py, PyAny> {
        self.0.bind(py)
    }
}

impl Clone for PyObj {
    fn clone(&self) -> Self {
        crate::gil::attach(|py| PyObj(self.0.clone_ref(py)))
    }
}

impl std::fmt::Debug for PyObj {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::gil::attach(|py| match self.bind(py).repr() {
            Ok(repr) => f.write_str(&repr.to_string_lossy()),
            Err(_) => f.write_str("<object without repr>"),
        })
    }
}

impl Serialize for PyObj {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes = crate::gil::attach(|py| -> PyResult<Vec<u8>> {
            let pickled = py.import("pickle")?.call_method1("dumps", (self.bind(py),))?;
            Ok(pickled.cast::<PyBytes>()?.as_bytes().to_vec())
        })
        .map_err(|e| S::Error::custom(format!("cannot pickle a Python value: {e}")))?;
        serializer.serialize_bytes(&bytes)
    }
}

impl<'de> Deserialize<'de> for PyObj {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(deserializer)?;
        crate::gil::attach(|py| -> PyResult<PyObj> {
            let value = py.import("pickle")?.call_method1("loads", (PyBytes::new(py, &bytes),))?;
            Ok(PyObj(value.unbind()))
        })
        .map_err(|e| D::Error::custom(format!("cannot unpickle a Python value: {e}")))
    }
}

impl ember::SparkDisplay for PyObj {
    /// `str()` of the object, as PySpark's `saveAsTextFiles` writes it (`bytes` as they are).
    fn fmt_spark(&self, out: &mut String) {
        crate::gil::attach(|py| {
            if let Ok(bytes) = self.bind(py).cast::<PyBytes>() {
                out.push_str(&String::from_utf8_lossy(bytes.as_bytes()));
                return;
            }
            match self.bind(py).str() {
                Ok(s) => out.push_str(&s.to_string_lossy()),
                Err(e) => out.push_str(&format!("<str() failed: {e}>")),
            }
        });
    }
}

/// A key as ember hashes and compares it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyRepr {
    None,
    /// `int`, `bool`, and `float`s with an integral value that fit.
    Int(i64),
    /// An `int` beyond 64 bits, in decimal.
    BigInt(String),
    /// Any other `float`, by its bits (`-0.0` is `Int(0)`).
    Float(u64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<KeyRepr>),
}

impl KeyRepr {
    /// Reads `key`; a `TypeError` names a type that has no stable hash.
    pub fn of(key: &Bound<'_, PyAny>) -> PyResult<KeyRepr> {
        if key.is_none() {
            Ok(KeyRepr::None)
        } else if let Ok(b) = key.cast::<PyBool>() {
            Ok(KeyRepr::Int(i64::from(b.is_true())))
        } else if key.is_instance_of::<PyInt>() {
            match key.extract::<i64>() {
                Ok(i) => Ok(KeyRepr::Int(i)),
                Err(_) => Ok(KeyRepr::BigInt(key.str()?.to_string_lossy().into_owned())),
            }
        } else if let Ok(f) = key.cast::<PyFloat>() {
            let v = f.value();
            if v.fract() == 0.0 && v.abs() < 9.0e18 {
                Ok(KeyRepr::Int(v as i64))
            } else {
                Ok(KeyRepr::Float(v.to_bits()))
            }
        } else if let Ok(s) = key.cast::<PyString>() {
            Ok(KeyRepr::Str(s.to_string_lossy().into_owned()))
        } else if let Ok(b) = key.cast::<PyBytes>() {
            Ok(KeyRepr::Bytes(b.as_bytes().to_vec()))
        } else if let Ok(t) = key.cast::<PyTuple>() {
            t.iter().map(|item| KeyRepr::of(&item)).collect::<PyResult<_>>().map(KeyRepr::Tuple)
        } else {
            let name = key.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
            Err(PyTypeError::new_err(format!(
                "a key of type '{name}' has no stable hash: keys must be str, bytes, int, float, bool, None or tuples of them"
            )))
        }
    }
}

/// A key of a pair stream: hashed and compared by its [`KeyRepr`], handed back to Python as the
/// object it came from.
#[derive(Clone, Serialize, Deserialize)]
pub struct PyKey {
    pub repr: KeyRepr,
    pub obj: PyObj,
}

impl PartialEq for PyKey {
    fn eq(&self, other: &Self) -> bool {
        self.repr == other.repr
    }
}

impl Eq for PyKey {}

impl std::hash::Hash for PyKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.repr.hash(state);
    }
}

impl std::fmt::Debug for PyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.obj.fmt(f)
    }
}
