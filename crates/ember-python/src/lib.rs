//! ember's Python extension module, `ember._ember`: a thin binding over the Rust API. Elements
//! are Python objects, user functions Python callables; the GIL is held only while Python code
//! runs. The pure-Python package beside it (`python/ember/pyspark`) gives it PySpark's names,
//! argument defaults and printing.

mod call;
mod context;
mod dstream;
mod listener;
mod value;

use pyo3::prelude::*;

/// The extension module.
#[pymodule]
fn _ember(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<context::PyContext>()?;
    m.add_class::<dstream::PyDStream>()?;
    Ok(())
}
