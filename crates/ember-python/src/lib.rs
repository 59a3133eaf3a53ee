//! ember's Python extension module, `ember._ember`: a thin binding over the Rust API. Elements
//! are Python objects, user functions Python callables; the GIL is held only while Python code
//! runs. The pure-Python package beside it (`python/ember/pyspark`) gives it PySpark's names,
//! argument defaults and printing.

mod call;
mod context;
mod dstream;
mod gil;
mod listener;
mod native;
mod sql;
mod value;

use pyo3::prelude::*;

/// The extension module.
#[pymodule]
fn _ember(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<context::PyContext>()?;
    m.add_class::<dstream::PyDStream>()?;
    m.add_class::<native::PyNative>()?;
    m.add_class::<sql::PySession>()?;
    m.add_class::<sql::PyColumn>()?;
    m.add_class::<sql::PyDataFrame>()?;
    m.add_class::<sql::PyQuery>()?;
    m.add_function(wrap_pyfunction!(sql::sql_col, m)?)?;
    m.add_function(wrap_pyfunction!(sql::sql_expr, m)?)?;
    m.add_function(wrap_pyfunction!(sql::sql_when, m)?)?;
    m.add_function(wrap_pyfunction!(sql::sql_window, m)?)?;
    m.add_function(wrap_pyfunction!(sql::sql_session_window, m)?)?;
    m.add_function(wrap_pyfunction!(sql::sql_lit, m)?)?;
    m.add_function(wrap_pyfunction!(sql::sql_function, m)?)?;
    Ok(())
}
