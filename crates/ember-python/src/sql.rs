//! The bridge to Structured Streaming (`ember-sql`): sessions, columns, DataFrames and streaming
//! queries. `ember.pyspark.sql` gives them PySpark's names, operators and defaults.
//!
//! Errors become the exceptions of `ember.pyspark.errors`, named as PySpark names them
//! (`AnalysisException`, `IllegalArgumentException`, `StreamingQueryException`, ...).

use std::time::{Duration, Instant};

use ember_sql::arrow::array::{Array, AsArray, RecordBatch};
use ember_sql::arrow::datatypes::{self as types, DataType, TimeUnit};
use ember_sql::functions as f;
use ember_sql::{Column, DataFrame, SparkSession, StreamingQuery, Trigger};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{IntoPyDict as _, PyBool, PyBytes, PyFloat, PyInt, PyList, PyString, PyTuple};

/// The Python exception for an error of `ember-sql`: the class of `ember.pyspark.errors` that
/// PySpark raises for it.
fn sql_err(py: Python<'_>, error: ember_sql::Error) -> PyErr {
    let class = match error {
        ember_sql::Error::Ember(inner) => return crate::call::to_py_err(py, inner),
        ember_sql::Error::IllegalArgument(_) => "IllegalArgumentException",
        ember_sql::Error::Unsupported(_) => "UnsupportedOperationException",
        ember_sql::Error::StreamingQuery { .. } => "StreamingQueryException",
        ember_sql::Error::Analysis(_) | ember_sql::Error::DataFusion(_) | ember_sql::Error::Arrow(_) => "AnalysisException",
    };
    let message = error.to_string();
    match py
        .import("ember.pyspark.errors")
        .and_then(|m| m.getattr(class))
        .and_then(|c| c.call1((message.clone(),)))
    {
        Ok(exception) => PyErr::from_value(exception),
        Err(e) => e,
    }
}

/// A Structured Streaming session.
#[pyclass(name = "SqlSession", module = "ember._ember", frozen)]
pub struct PySession {
    spark: SparkSession,
}

#[pymethods]
impl PySession {
    /// `config` holds the builder's settings; `spark.master` among them is the master unless
    /// `master` is given.
    #[new]
    #[pyo3(signature = (app_name, master=None, config=Vec::new()))]
    fn new(py: Python<'_>, app_name: &str, master: Option<&str>, config: Vec<(String, String)>) -> PyResult<Self> {
        let mut builder = SparkSession::builder().app_name(app_name);
        if let Some(master) = master {
            builder = builder.master(master);
        }
        for (key, value) in &config {
            builder = builder.config(key, value);
        }
        let spark = builder.get_or_create().map_err(|e| sql_err(py, e))?;
        Ok(PySession { spark })
    }

    fn app_name(&self) -> &str {
        self.spark.app_name()
    }

    /// `format`'s stream with `options` (and `path`, for the file sources; `schema`, Spark's DDL
    /// text, for csv and json).
    #[pyo3(signature = (format, options, path=None, schema=None))]
    fn read_stream(
        &self,
        py: Python<'_>,
        format: &str,
        options: Vec<(String, String)>,
        path: Option<String>,
        schema: Option<&str>,
    ) -> PyResult<PyDataFrame> {
        let mut reader = self.spark.read_stream().format(format);
        if let Some(ddl) = schema {
            reader = reader.schema(ember_sql::schema_from_ddl(ddl).map_err(|e| sql_err(py, e))?);
        }
        for (key, value) in &options {
            reader = reader.option(key, value);
        }
        let df = match path {
            Some(path) => reader.load_path(path),
            None => reader.load(),
        };
        df.map(PyDataFrame::from).map_err(|e| sql_err(py, e))
    }

    /// Adds a listener of the session's queries: `adapter` has `_started(id, run_id, name,
    /// timestamp_ms)`, `_progress(json)` and `_terminated(id, run_id, exception)` (see
    /// `StreamingQueryManager.addListener`). Returns its id.
    fn add_listener(&self, adapter: Py<PyAny>) -> u64 {
        self.spark.add_listener(PyQueryListener { adapter })
    }

    fn remove_listener(&self, id: u64) -> bool {
        self.spark.remove_listener(id)
    }

    /// The table of `path` in `format` with `options` (`spark.read`).
    fn read(&self, py: Python<'_>, format: &str, options: Vec<(String, String)>, path: &str) -> PyResult<PyDataFrame> {
        let mut reader = self.spark.read().format(format);
        for (key, value) in &options {
            reader = reader.option(key, value);
        }
        reader.load(path).map(PyDataFrame::from).map_err(|e| sql_err(py, e))
    }

    fn sql(&self, py: Python<'_>, query: &str) -> PyResult<PyDataFrame> {
        self.spark.sql(query).map(PyDataFrame::from).map_err(|e| sql_err(py, e))
    }

    /// The streaming queries of this session that run.
    fn active(&self) -> Vec<PyQuery> {
        self.spark.active_queries().into_iter().map(|query| PyQuery { query }).collect()
    }

    fn reset_terminated(&self) {
        self.spark.reset_terminated();
    }

    /// `spark.streams.awaitAnyTermination(timeout)`, in steps that let Ctrl-C through.
    fn await_any_termination(&self, py: Python<'_>, timeout_ms: Option<u64>) -> PyResult<bool> {
        let deadline = timeout_ms.map(|ms| Instant::now() + Duration::from_millis(ms));
        loop {
            let step = deadline.map_or(Duration::from_millis(100), |d| {
                d.saturating_duration_since(Instant::now()).min(Duration::from_millis(100))
            });
            match py.detach(|| self.spark.await_any_termination(Some(step))) {
                Ok(true) => return Ok(true),
                Ok(false) if deadline.is_some_and(|d| Instant::now() >= d) => return Ok(false),
                Ok(false) => {}
                Err(e) => return Err(sql_err(py, e)),
            }
            py.check_signals()?;
        }
    }
}

/// A column expression.
#[pyclass(name = "SqlColumn", module = "ember._ember", frozen)]
#[derive(Clone)]
pub struct PyColumn {
    column: Column,
}

impl From<Column> for PyColumn {
    fn from(column: Column) -> Self {
        PyColumn { column }
    }
}

#[pymethods]
impl PyColumn {
    fn __repr__(&self) -> String {
        format!("{:?}", self.column)
    }

    fn alias(&self, name: &str) -> PyColumn {
        self.column.clone().alias(name).into()
    }

    /// `self op other`, `op` being Spark's symbol: `+ - * / % = != < <= > >= AND OR`.
    fn binary(&self, op: &str, other: &PyColumn) -> PyResult<PyColumn> {
        let (a, b) = (self.column.clone(), other.column.clone());
        Ok(match op {
            "+" => a.plus(b),
            "-" => a.minus(b),
            "*" => a.multiply(b),
            "/" => a.divide(b),
            "%" => a.modulo(b),
            "=" => a.eq(b),
            "!=" => a.ne(b),
            "<" => a.lt(b),
            "<=" => a.le(b),
            ">" => a.gt(b),
            ">=" => a.ge(b),
            "AND" => a.and(b),
            "OR" => a.or(b),
            other => return Err(PyValueError::new_err(format!("unknown operator {other:?}"))),
        }
        .into())
    }

    /// `NOT`, `-`, `IS NULL` or `IS NOT NULL` of this column.
    fn unary(&self, op: &str) -> PyResult<PyColumn> {
        let a = self.column.clone();
        Ok(match op {
            "NOT" => !a,
            "-" => -a,
            "IS NULL" => a.is_null(),
            "IS NOT NULL" => a.is_not_null(),
            other => return Err(PyValueError::new_err(format!("unknown operator {other:?}"))),
        }
        .into())
    }

    fn get_field(&self, name: &str) -> PyColumn {
        self.column.clone().get_field(name).into()
    }

    /// Another branch of a `when(...)` column.
    fn when(&self, py: Python<'_>, condition: &PyColumn, value: &PyColumn) -> PyResult<PyColumn> {
        self.column
            .clone()
            .when(condition.column.clone(), value.column.clone())
            .map(PyColumn::from)
            .map_err(|e| sql_err(py, e))
    }

    fn otherwise(&self, py: Python<'_>, value: &PyColumn) -> PyResult<PyColumn> {
        self.column
            .clone()
            .otherwise(value.column.clone())
            .map(PyColumn::from)
            .map_err(|e| sql_err(py, e))
    }

    fn cast(&self, py: Python<'_>, to: &str) -> PyResult<PyColumn> {
        self.column.clone().cast(to).map(PyColumn::from).map_err(|e| sql_err(py, e))
    }

    /// The element at 0-based `index` of an array column (`getItem`, `column[index]`).
    fn get_item(&self, index: i64) -> PyColumn {
        self.column.clone().get_item(index).into()
    }
}

/// `session_window(timeColumn, gapDuration)`: the gap a duration text, or a column of them (one
/// gap per row).
#[pyfunction]
pub fn sql_session_window(time_column: &PyColumn, gap_duration: &Bound<'_, PyAny>) -> PyResult<PyColumn> {
    let gap: f::SessionGap = if let Ok(text) = gap_duration.extract::<String>() {
        text.into()
    } else if let Ok(column) = gap_duration.cast::<PyColumn>() {
        column.borrow().column.clone().into()
    } else {
        return Err(PyTypeError::new_err(format!(
            "[NOT_COLUMN_OR_STR] Argument `gapDuration` should be a Column or str, got {}.",
            gap_duration.get_type().name()?
        )));
    };
    Ok(f::session_window(time_column.column.clone(), gap).into())
}

/// `window(timeColumn, windowDuration, slideDuration, startTime)`.
#[pyfunction]
#[pyo3(signature = (time_column, window_duration, slide_duration=None, start_time=None))]
pub fn sql_window(time_column: &PyColumn, window_duration: &str, slide_duration: Option<&str>, start_time: Option<&str>) -> PyColumn {
    f::window(time_column.column.clone(), window_duration, slide_duration, start_time).into()
}

/// `col(name)`.
#[pyfunction]
pub fn sql_col(name: &str) -> PyColumn {
    f::col(name).into()
}

/// `when(condition, value)`.
#[pyfunction]
pub fn sql_when(condition: &PyColumn, value: &PyColumn) -> PyColumn {
    f::when(condition.column.clone(), value.column.clone()).into()
}

/// `expr(text)`.
#[pyfunction]
pub fn sql_expr(text: &str) -> PyColumn {
    f::expr(text).into()
}

/// `lit(value)`: `None`, `bool`, `int` (an int column when it fits 32 bits, as Spark's), `float`
/// or `str`.
#[pyfunction]
pub fn sql_lit(value: &Bound<'_, PyAny>) -> PyResult<PyColumn> {
    let column = if value.is_none() {
        f::lit_null()
    } else if value.is_instance_of::<PyBool>() {
        f::lit(value.extract::<bool>()?)
    } else if value.is_instance_of::<PyInt>() {
        let n: i64 = value
            .extract()
            .map_err(|_| PyValueError::new_err(format!("lit: {value} does not fit a bigint")))?;
        match i32::try_from(n) {
            Ok(small) => f::lit(small),
            Err(_) => f::lit(n),
        }
    } else if value.is_instance_of::<PyFloat>() {
        f::lit(value.extract::<f64>()?)
    } else if value.is_instance_of::<PyString>() {
        f::lit(value.extract::<String>()?)
    } else {
        return Err(PyTypeError::new_err(format!(
            "lit takes None, bool, int, float or str, got {}",
            value.get_type().name()?
        )));
    };
    Ok(column.into())
}

/// The function `name` of `pyspark.sql.functions` over `args`; `split` also takes `pattern`
/// and `limit`.
#[pyfunction]
#[pyo3(signature = (name, args, pattern=None, limit=-1))]
pub fn sql_function(name: &str, args: Vec<PyRef<'_, PyColumn>>, pattern: Option<&str>, limit: i32) -> PyResult<PyColumn> {
    let mut args: Vec<Column> = args.iter().map(|a| a.column.clone()).collect();
    let one = |args: &mut Vec<Column>| -> PyResult<Column> {
        if args.len() != 1 {
            return Err(PyTypeError::new_err(format!("{name}() takes one column, got {}", args.len())));
        }
        Ok(args.remove(0))
    };
    let column = match name {
        "split" => {
            let pattern = pattern.ok_or_else(|| PyTypeError::new_err("split() needs a pattern"))?;
            f::split_limit(one(&mut args)?, pattern, limit)
        }
        "explode" => f::explode(one(&mut args)?),
        "lower" => f::lower(one(&mut args)?),
        "upper" => f::upper(one(&mut args)?),
        "length" => f::length(one(&mut args)?),
        "count" => f::count(one(&mut args)?),
        "sum" => f::sum(one(&mut args)?),
        "avg" | "mean" => f::avg(one(&mut args)?),
        "min" => f::min(one(&mut args)?),
        "max" => f::max(one(&mut args)?),
        "to_timestamp" => f::to_timestamp(one(&mut args)?),
        "from_json" => {
            let schema = pattern.ok_or_else(|| PyTypeError::new_err("from_json() needs a schema (a DDL string)"))?;
            f::from_json(one(&mut args)?, schema)
        }
        other => return Err(PyValueError::new_err(format!("ember has no function {other:?} yet"))),
    };
    Ok(column.into())
}

fn columns(cols: Vec<PyRef<'_, PyColumn>>) -> Vec<Column> {
    cols.iter().map(|c| c.column.clone()).collect()
}

/// A DataFrame: a streaming query's plan, or rows (a `foreachBatch` batch, a memory table).
#[pyclass(name = "SqlDataFrame", module = "ember._ember", frozen)]
pub struct PyDataFrame {
    df: DataFrame,
}

impl From<DataFrame> for PyDataFrame {
    fn from(df: DataFrame) -> Self {
        PyDataFrame { df }
    }
}

#[pymethods]
impl PyDataFrame {
    fn __repr__(&self) -> String {
        format!("{:?}", self.df)
    }

    fn columns(&self) -> Vec<String> {
        self.df.columns()
    }

    fn is_streaming(&self) -> bool {
        self.df.is_streaming()
    }

    /// `(name, Spark's type name)` of each column.
    fn dtypes(&self) -> Vec<(String, String)> {
        self.df.dtypes()
    }

    fn select(&self, py: Python<'_>, cols: Vec<PyRef<'_, PyColumn>>) -> PyResult<PyDataFrame> {
        self.df.select(columns(cols)).map(PyDataFrame::from).map_err(|e| sql_err(py, e))
    }

    fn select_expr(&self, py: Python<'_>, exprs: Vec<String>) -> PyResult<PyDataFrame> {
        let exprs: Vec<&str> = exprs.iter().map(String::as_str).collect();
        self.df.select_expr(&exprs).map(PyDataFrame::from).map_err(|e| sql_err(py, e))
    }

    fn filter(&self, py: Python<'_>, condition: PyRef<'_, PyColumn>) -> PyResult<PyDataFrame> {
        self.df
            .filter(condition.column.clone())
            .map(PyDataFrame::from)
            .map_err(|e| sql_err(py, e))
    }

    fn filter_sql(&self, py: Python<'_>, condition: &str) -> PyResult<PyDataFrame> {
        self.df.filter(condition).map(PyDataFrame::from).map_err(|e| sql_err(py, e))
    }

    fn with_column(&self, py: Python<'_>, name: &str, column: PyRef<'_, PyColumn>) -> PyResult<PyDataFrame> {
        self.df
            .with_column(name, column.column.clone())
            .map(PyDataFrame::from)
            .map_err(|e| sql_err(py, e))
    }

    fn with_column_renamed(&self, py: Python<'_>, existing: &str, new: &str) -> PyResult<PyDataFrame> {
        self.df
            .with_column_renamed(existing, new)
            .map(PyDataFrame::from)
            .map_err(|e| sql_err(py, e))
    }

    fn drop(&self, py: Python<'_>, names: Vec<String>) -> PyResult<PyDataFrame> {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        self.df.drop(&names).map(PyDataFrame::from).map_err(|e| sql_err(py, e))
    }

    fn union(&self, py: Python<'_>, other: PyRef<'_, PyDataFrame>) -> PyResult<PyDataFrame> {
        self.df.union(&other.df).map(PyDataFrame::from).map_err(|e| sql_err(py, e))
    }

    /// `groupBy(keys).agg(aggregates)`; no aggregates: `groupBy(keys).count()`.
    fn group_by(&self, py: Python<'_>, keys: Vec<PyRef<'_, PyColumn>>, aggregates: Vec<PyRef<'_, PyColumn>>) -> PyResult<PyDataFrame> {
        let grouped = self.df.group_by(columns(keys));
        let df = if aggregates.is_empty() {
            grouped.count()
        } else {
            grouped.agg(columns(aggregates))
        };
        df.map(PyDataFrame::from).map_err(|e| sql_err(py, e))
    }

    /// `groupBy(keys).applyInPandasWithState(...)`: `invoke(key, rows_ipc, state, timed_out,
    /// watermark_ms, batch_time_ms)` runs the user's function (see `ember.pyspark.sql.dataframe`)
    /// and returns `(outputs_ipc, state, updated, removed, timeout_ms)`, states pickled.
    fn apply_in_pandas_with_state(
        &self,
        py: Python<'_>,
        keys: Vec<PyRef<'_, PyColumn>>,
        invoke: Py<PyAny>,
        output_ddl: &str,
        mode: &str,
        timeout: &str,
    ) -> PyResult<PyDataFrame> {
        let schema = ember_sql::schema_from_ddl(output_ddl).map_err(|e| sql_err(py, e))?;
        let timeout = ember_sql::GroupStateTimeout::parse(timeout).map_err(|e| sql_err(py, e))?;
        self.df
            .group_by(columns(keys))
            .with_state_function(
                "applyInPandasWithState",
                mode,
                timeout,
                schema,
                Box::new(PandasGroupFunction { invoke }),
            )
            .map(PyDataFrame::from)
            .map_err(|e| sql_err(py, e))
    }

    fn with_watermark(&self, py: Python<'_>, event_time: &str, delay_threshold: &str) -> PyResult<PyDataFrame> {
        self.df
            .with_watermark(event_time, delay_threshold)
            .map(PyDataFrame::from)
            .map_err(|e| sql_err(py, e))
    }

    fn join(&self, py: Python<'_>, other: PyRef<'_, PyDataFrame>, on: Vec<String>, how: &str) -> PyResult<PyDataFrame> {
        let on: Vec<&str> = on.iter().map(String::as_str).collect();
        self.df.join(&other.df, &on, how).map(PyDataFrame::from).map_err(|e| sql_err(py, e))
    }

    fn join_on(&self, py: Python<'_>, other: PyRef<'_, PyDataFrame>, condition: PyRef<'_, PyColumn>, how: &str) -> PyResult<PyDataFrame> {
        self.df
            .join_on(&other.df, condition.column.clone(), how)
            .map(PyDataFrame::from)
            .map_err(|e| sql_err(py, e))
    }

    /// `dropDuplicates(subset)`, or `dropDuplicatesWithinWatermark(subset)` with `within`.
    #[pyo3(signature = (subset, within=false))]
    fn drop_duplicates(&self, py: Python<'_>, subset: Option<Vec<String>>, within: bool) -> PyResult<PyDataFrame> {
        let names: Option<Vec<&str>> = subset.as_ref().map(|s| s.iter().map(String::as_str).collect());
        let df = if within {
            self.df.drop_duplicates_within_watermark(names.as_deref())
        } else {
            self.df.drop_duplicates(names.as_deref())
        };
        df.map(PyDataFrame::from).map_err(|e| sql_err(py, e))
    }

    fn create_or_replace_temp_view(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        self.df.create_or_replace_temp_view(name).map_err(|e| sql_err(py, e))
    }

    fn explain_string(&self, py: Python<'_>, extended: bool) -> PyResult<String> {
        self.df.explain_string(extended).map_err(|e| sql_err(py, e))
    }

    /// The rows, as tuples of Python values (Spark's `collect`, before `Row`s are made of them).
    fn collect_tuples<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let batches = py.detach(|| self.df.collect()).map_err(|e| sql_err(py, e))?;
        let mut rows = Vec::new();
        for batch in &batches {
            for row in 0..batch.num_rows() {
                let values = batch
                    .columns()
                    .iter()
                    .map(|array| value(py, array.as_ref(), row))
                    .collect::<PyResult<Vec<_>>>()?;
                rows.push(PyTuple::new(py, values)?);
            }
        }
        Ok(rows)
    }

    fn count(&self, py: Python<'_>) -> PyResult<usize> {
        py.detach(|| self.df.count()).map_err(|e| sql_err(py, e))
    }

    fn show_string(&self, py: Python<'_>, num_rows: usize, truncate: usize) -> PyResult<String> {
        py.detach(|| self.df.show_string(num_rows, truncate)).map_err(|e| sql_err(py, e))
    }

    /// The rows as an Arrow IPC stream (for `pyarrow.ipc.open_stream`: `toPandas`, `toArrow`).
    fn arrow_ipc<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let batches = py.detach(|| self.df.collect()).map_err(|e| sql_err(py, e))?;
        let bytes = ember_sql::ipc_stream(&self.df.arrow_schema(), &batches).map_err(|e| sql_err(py, e))?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Starts a streaming query. `trigger` is `default`, `processingTime` (every `interval_ms`),
    /// `once` or `availableNow`; `foreach(df, batch_id)` is `foreachBatch`'s function.
    #[pyo3(signature = (mode, format, options, trigger, interval_ms=0, name=None, foreach=None))]
    #[allow(clippy::too_many_arguments)]
    fn start(
        &self,
        py: Python<'_>,
        mode: &str,
        format: &str,
        options: Vec<(String, String)>,
        trigger: &str,
        interval_ms: u64,
        name: Option<String>,
        foreach: Option<Py<PyAny>>,
    ) -> PyResult<PyQuery> {
        let trigger = match trigger {
            "default" => Trigger::Default,
            "processingTime" => Trigger::ProcessingTime(Duration::from_millis(interval_ms)),
            "once" => Trigger::Once,
            "availableNow" => Trigger::AvailableNow,
            other => return Err(PyValueError::new_err(format!("unknown trigger {other:?}"))),
        };
        let mut writer = self.df.write_stream().output_mode(mode).format(format).trigger(trigger);
        for (key, value) in &options {
            writer = writer.option(key, value);
        }
        if let Some(name) = &name {
            writer = writer.query_name(name);
        }
        if let Some(function) = foreach {
            let session = self.df.spark_session().clone();
            let schema = self.df.arrow_schema();
            writer = writer.foreach_batch(move |batches: &[RecordBatch], batch_id: i64| {
                let df = session
                    .create_data_frame(schema.clone(), batches.to_vec())
                    .map_err(|e| e.to_string())?;
                crate::gil::attach(|py| {
                    let frame = Py::new(py, PyDataFrame { df }).map_err(|e| e.to_string())?;
                    function
                        .bind(py)
                        .call1((frame, batch_id))
                        .map(|_| ())
                        .map_err(|e| crate::call::traceback_text(py, &e))
                })
            });
        }
        let query = py.detach(|| writer.start()).map_err(|e| sql_err(py, e))?;
        Ok(PyQuery { query })
    }
}

/// The Python value of row `row` of `array`: `None`, `bool`, `int`, `float`, `str`, `bytes`,
/// `list`, `tuple` (a struct), `datetime.date` or `datetime.datetime` (UTC, naive, as PySpark
/// gives them with `spark.sql.session.timeZone` UTC); other types as Spark's `show` text.
fn value<'py>(py: Python<'py>, array: &dyn Array, row: usize) -> PyResult<Bound<'py, PyAny>> {
    if array.is_null(row) {
        return Ok(py.None().into_bound(py));
    }
    macro_rules! primitive {
        ($t:ty) => {
            array.as_primitive::<$t>().value(row).into_pyobject(py)?.into_any()
        };
    }
    Ok(match array.data_type() {
        DataType::Boolean => PyBool::new(py, array.as_boolean().value(row)).to_owned().into_any(),
        DataType::Int8 => primitive!(types::Int8Type),
        DataType::Int16 => primitive!(types::Int16Type),
        DataType::Int32 => primitive!(types::Int32Type),
        DataType::Int64 => primitive!(types::Int64Type),
        DataType::UInt8 => primitive!(types::UInt8Type),
        DataType::UInt16 => primitive!(types::UInt16Type),
        DataType::UInt32 => primitive!(types::UInt32Type),
        DataType::UInt64 => primitive!(types::UInt64Type),
        DataType::Float32 => primitive!(types::Float32Type),
        DataType::Float64 => primitive!(types::Float64Type),
        DataType::Utf8 => PyString::new(py, array.as_string::<i32>().value(row)).into_any(),
        DataType::LargeUtf8 => PyString::new(py, array.as_string::<i64>().value(row)).into_any(),
        DataType::Utf8View => PyString::new(py, array.as_string_view().value(row)).into_any(),
        DataType::Binary => PyBytes::new(py, array.as_binary::<i32>().value(row)).into_any(),
        DataType::LargeBinary => PyBytes::new(py, array.as_binary::<i64>().value(row)).into_any(),
        DataType::List(_) => list(py, array.as_list::<i32>().value(row).as_ref())?,
        DataType::LargeList(_) => list(py, array.as_list::<i64>().value(row).as_ref())?,
        DataType::Struct(_) => {
            let fields = array.as_struct();
            let values = fields
                .columns()
                .iter()
                .map(|c| value(py, c.as_ref(), row))
                .collect::<PyResult<Vec<_>>>()?;
            PyTuple::new(py, values)?.into_any()
        }
        DataType::Date32 => {
            let days = array.as_primitive::<types::Date32Type>().value(row);
            let epoch = py.import("datetime")?.getattr("date")?.call1((1970, 1, 1))?;
            let delta = py.import("datetime")?.getattr("timedelta")?.call1((days,))?;
            epoch.call_method1("__add__", (delta,))?
        }
        DataType::Timestamp(unit, _) => {
            let raw = match unit {
                TimeUnit::Second => array.as_primitive::<types::TimestampSecondType>().value(row) * 1_000_000,
                TimeUnit::Millisecond => array.as_primitive::<types::TimestampMillisecondType>().value(row) * 1_000,
                TimeUnit::Microsecond => array.as_primitive::<types::TimestampMicrosecondType>().value(row),
                TimeUnit::Nanosecond => array.as_primitive::<types::TimestampNanosecondType>().value(row) / 1_000,
            };
            let datetime = py.import("datetime")?;
            let epoch = datetime.getattr("datetime")?.call1((1970, 1, 1))?;
            let delta = datetime
                .getattr("timedelta")?
                .call((), Some(&[("microseconds", raw)].into_py_dict(py)?))?;
            epoch.call_method1("__add__", (delta,))?
        }
        _ => PyString::new(py, &ember_sql::show::cell(array, row)).into_any(),
    })
}

fn list<'py>(py: Python<'py>, values: &dyn Array) -> PyResult<Bound<'py, PyAny>> {
    let items = (0..values.len()).map(|i| value(py, values, i)).collect::<PyResult<Vec<_>>>()?;
    Ok(PyList::new(py, items)?.into_any())
}

/// A running streaming query.
#[pyclass(name = "SqlQuery", module = "ember._ember", frozen)]
pub struct PyQuery {
    query: StreamingQuery,
}

#[pymethods]
impl PyQuery {
    fn id(&self) -> &str {
        self.query.id()
    }

    fn run_id(&self) -> &str {
        self.query.run_id()
    }

    fn name(&self) -> Option<&str> {
        self.query.name()
    }

    fn is_active(&self) -> bool {
        self.query.is_active()
    }

    fn batches(&self) -> u64 {
        self.query.batches()
    }

    fn exception(&self) -> Option<String> {
        self.query.exception()
    }

    /// (message, isDataAvailable, isTriggerActive): `StreamingQuery.status`.
    fn status(&self) -> (String, bool, bool) {
        let status = self.query.status();
        (status.message, status.is_data_available, status.is_trigger_active)
    }

    fn explain_string(&self) -> String {
        self.query.explain_string().to_owned()
    }

    /// The last micro-batch's progress, as Spark's JSON.
    fn last_progress(&self) -> Option<String> {
        self.query.last_progress().map(|p| p.json())
    }

    /// The recent micro-batches' progress, as Spark's JSON, oldest first.
    fn recent_progress(&self) -> Vec<String> {
        self.query.recent_progress().iter().map(ember_sql::QueryProgress::json).collect()
    }

    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.query.stop()).map_err(|e| sql_err(py, e))
    }

    /// Waits until the data available now has been processed (`processAllAvailable`); the GIL
    /// is released, and Ctrl-C stops the query and raises `KeyboardInterrupt`.
    fn process_all_available(&self, py: Python<'_>) -> PyResult<()> {
        let query = self.query.clone();
        let (done, result) = (
            std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
            std::sync::Arc::new(std::sync::Mutex::new(None)),
        );
        let (thread_done, thread_result) = (std::sync::Arc::clone(&done), std::sync::Arc::clone(&result));
        std::thread::spawn(move || {
            let outcome = query.process_all_available();
            *thread_result.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(outcome);
            thread_done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            py.detach(|| std::thread::sleep(Duration::from_millis(10)));
            if let Err(interrupted) = py.check_signals() {
                let _ = py.detach(|| self.query.stop());
                return Err(interrupted);
            }
        }
        let outcome = result.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        match outcome {
            Some(Err(e)) => Err(sql_err(py, e)),
            _ => Ok(()),
        }
    }

    /// Waits for the query to stop (at most `timeout_ms`); returns whether it stopped. A failed
    /// micro-batch raises `StreamingQueryException`. The GIL is released while waiting, and
    /// signals are checked every 100 ms: Ctrl-C stops the query and raises `KeyboardInterrupt`.
    #[pyo3(signature = (timeout_ms=None))]
    fn await_termination(&self, py: Python<'_>, timeout_ms: Option<u64>) -> PyResult<bool> {
        let deadline = timeout_ms.map(|ms| Instant::now() + Duration::from_millis(ms));
        loop {
            let step = deadline.map_or(Duration::from_millis(100), |d| {
                d.saturating_duration_since(Instant::now()).min(Duration::from_millis(100))
            });
            match py.detach(|| self.query.await_termination_timeout(step)) {
                Ok(true) => return Ok(true),
                Ok(false) if deadline.is_some_and(|d| Instant::now() >= d) => return Ok(false),
                Ok(false) => {}
                Err(e) => return Err(sql_err(py, e)),
            }
            if let Err(interrupted) = py.check_signals() {
                let _ = py.detach(|| self.query.stop());
                return Err(interrupted);
            }
        }
    }
}

/// `applyInPandasWithState`'s function: rows go to Python as Arrow IPC, its frames come back so.
struct PandasGroupFunction {
    invoke: Py<PyAny>,
}

impl ember_sql::state::GroupFunction for PandasGroupFunction {
    fn call(
        &mut self,
        key: &[ember_sql::ScalarValue],
        rows: RecordBatch,
        state: &mut ember_sql::state::RawGroupState,
    ) -> ember_sql::Result<Vec<RecordBatch>> {
        let input = ember_sql::ipc_stream(&rows.schema(), [&rows])?;
        let watermark = state.current_watermark_ms().ok();
        let batch_ms = state.current_processing_time_ms();
        let failed = |e: String| ember_sql::Error::IllegalArgument(format!("applyInPandasWithState's function failed: {e}"));
        let (outputs, value, updated, removed, timeout) = crate::gil::attach(|py| -> Result<_, String> {
            let mut parts = Vec::with_capacity(key.len());
            for k in key {
                let array = k.to_array().map_err(|e| e.to_string())?;
                parts.push(value(py, array.as_ref(), 0).map_err(|e| e.to_string())?);
            }
            let key_tuple = PyTuple::new(py, parts).map_err(|e| e.to_string())?;
            let state_bytes = state.value.as_deref().map(|b| PyBytes::new(py, b));
            let result = self
                .invoke
                .bind(py)
                .call1((
                    key_tuple,
                    PyBytes::new(py, &input),
                    state_bytes,
                    state.has_timed_out,
                    watermark,
                    batch_ms,
                ))
                .map_err(|e| crate::call::traceback_text(py, &e))?;
            result
                .extract::<(Vec<Vec<u8>>, Option<Vec<u8>>, bool, bool, Option<i64>)>()
                .map_err(|e| format!("the function's wrapper returned {result}: {e}"))
        })
        .map_err(failed)?;
        state.value = value;
        state.updated = updated;
        state.removed = removed;
        state.timeout_ms = timeout;
        let mut batches = Vec::new();
        for bytes in outputs {
            let reader = ember_sql::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
            for batch in reader {
                batches.push(batch?);
            }
        }
        Ok(batches)
    }
}

/// A Python `StreamingQueryListener`, through its adapter in `ember.pyspark.sql.streaming`.
struct PyQueryListener {
    adapter: Py<PyAny>,
}

impl PyQueryListener {
    fn call(&self, method: &str, args: impl for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, PyTuple>>) {
        crate::gil::attach(|py| {
            let called = args(py).and_then(|args| self.adapter.bind(py).call_method1(method, args));
            if let Err(e) = called {
                // As PySpark: the listener's error is reported, the query goes on.
                eprintln!(
                    "A StreamingQueryListener failed in {method}:\n{}",
                    crate::call::traceback_text(py, &e)
                );
            }
        });
    }
}

impl ember_sql::StreamingQueryListener for PyQueryListener {
    fn on_query_started(&self, event: &ember_sql::QueryStartedEvent) {
        self.call("_started", |py| {
            PyTuple::new(
                py,
                [
                    event.id.clone().into_pyobject(py)?.into_any(),
                    event.run_id.clone().into_pyobject(py)?.into_any(),
                    event.name.clone().into_pyobject(py)?.into_any(),
                    event.timestamp_ms.into_pyobject(py)?.into_any(),
                ],
            )
        });
    }

    fn on_query_progress(&self, progress: &ember_sql::QueryProgress) {
        let json = progress.json();
        self.call("_progress", |py| PyTuple::new(py, [json.into_pyobject(py)?.into_any()]));
    }

    fn on_query_terminated(&self, event: &ember_sql::QueryTerminatedEvent) {
        self.call("_terminated", |py| {
            PyTuple::new(
                py,
                [
                    event.id.clone().into_pyobject(py)?.into_any(),
                    event.run_id.clone().into_pyobject(py)?.into_any(),
                    event.exception.clone().into_pyobject(py)?.into_any(),
                ],
            )
        });
    }
}
