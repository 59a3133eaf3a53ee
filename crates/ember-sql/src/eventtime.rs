//! Event time: Spark's `window(timeColumn, windowDuration, slideDuration, startTime)` (a
//! tumbling window as a function, sliding windows as grouping keys, one row per window), the
//! interval text both take (`"10 minutes"`), and the watermark a query keeps
//! (`withWatermark`), with Spark 3.5's rules for late rows and eviction.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayBuilder, ArrayRef, AsArray, ListArray, RecordBatch, StructArray, TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Fields, TimeUnit, TimestampMicrosecondType};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{NullHandling, Result, ScalarValue, UnnestOptions, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, LogicalPlanBuilder, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

/// Microseconds per unit of Spark's interval text.
const UNITS: &[(&str, i64)] = &[
    ("microsecond", 1),
    ("millisecond", 1_000),
    ("second", 1_000_000),
    ("minute", 60_000_000),
    ("hour", 3_600_000_000),
    ("day", 86_400_000_000),
    ("week", 7 * 86_400_000_000),
];

/// The length of an interval in Spark's text form (`"10 minutes"`, `"1 hour 30 minutes"`,
/// `"interval 2 seconds"`, `"1.5 seconds"`), in microseconds. Months and years have no fixed
/// length and are refused, as Spark refuses them for windows and watermarks.
pub fn parse_interval_us(text: &str) -> std::result::Result<i64, String> {
    parse_interval(text, None)
}

/// A `withWatermark` delay in milliseconds: Spark's interval text, where a month counts as
/// 31 days; anything else is refused with Spark's `CANNOT_PARSE_INTERVAL` message.
pub fn parse_delay_ms(text: &str) -> std::result::Result<i64, String> {
    parse_interval(text, Some(31 * 86_400_000_000)).map(|us| us / 1000).map_err(|_| {
        format!(
            "[CANNOT_PARSE_INTERVAL] Unable to parse '{text}'. Please ensure that the value provided is in a valid format for defining an interval. You can reference the documentation for the correct format. If the issue persists, please double check that the input value is not null or empty and try again."
        )
    })
}

fn parse_interval(text: &str, month_us: Option<i64>) -> std::result::Result<i64, String> {
    let invalid = || format!("The provided interval ({text}) did not correspond to a valid interval string.");
    let lower = text.trim().to_ascii_lowercase();
    let mut words: Vec<&str> = lower.split_whitespace().collect();
    if words.first() == Some(&"interval") {
        words.remove(0);
    }
    if words.is_empty() || !words.len().is_multiple_of(2) {
        return Err(invalid());
    }
    let mut total: i64 = 0;
    for pair in words.chunks(2) {
        let (number, unit) = (pair[0], pair[1]);
        let unit = unit.strip_suffix('s').unwrap_or(unit);
        let per = match (unit, month_us) {
            ("month", Some(month)) => month,
            ("year", Some(month)) => 12 * month,
            ("month" | "year", None) => return Err(format!("Intervals greater than a month is not supported ({text}).")),
            _ => match UNITS.iter().find(|(name, _)| *name == unit) {
                Some(&(_, per)) => per,
                None => return Err(invalid()),
            },
        };
        let amount = if let Ok(n) = number.parse::<i64>() {
            n.checked_mul(per).ok_or_else(invalid)?
        } else {
            // Fractions: Spark takes them for seconds (and smaller units would round).
            let value: f64 = number.parse().map_err(|_| invalid())?;
            if unit != "second" || !value.is_finite() {
                return Err(invalid());
            }
            (value * per as f64).round() as i64
        };
        total = total.checked_add(amount).ok_or_else(invalid)?;
    }
    Ok(total)
}

/// Spark's timestamp type in ember: microseconds, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// `struct<start: timestamp, end: timestamp>`, the type of a window.
pub fn window_type() -> DataType {
    DataType::Struct(window_fields())
}

fn window_fields() -> Fields {
    Fields::from(vec![
        Field::new("start", timestamp_type(), true),
        Field::new("end", timestamp_type(), true),
    ])
}

/// A window specification: its length, slide and offset from the epoch, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowSpec {
    pub duration: i64,
    pub slide: i64,
    pub start: i64,
}

impl WindowSpec {
    /// From Spark's arguments; `slide` and `start` default to the duration and 0.
    pub fn parse(duration: &str, slide: Option<&str>, start: Option<&str>) -> std::result::Result<Self, String> {
        let duration_us = parse_interval_us(duration)?;
        if duration_us <= 0 {
            return Err(format!("The window duration ({duration}) must be greater than 0."));
        }
        let slide_us = match slide {
            Some(s) => parse_interval_us(s)?,
            None => duration_us,
        };
        if slide_us <= 0 {
            return Err(format!(
                "The slide duration ({}) must be greater than 0.",
                slide.unwrap_or(duration)
            ));
        }
        if slide_us > duration_us {
            return Err(format!(
                "The slide duration ({}) must be less than or equal to the windowDuration ({duration}).",
                slide.unwrap_or(duration)
            ));
        }
        let start_us = match start {
            Some(s) => parse_interval_us(s)?,
            None => 0,
        };
        if start_us.abs() >= slide_us {
            return Err(format!(
                "The absolute value of start time ({}) must be less than the slideDuration ({}).",
                start.unwrap_or("0 seconds"),
                slide.unwrap_or(duration)
            ));
        }
        Ok(WindowSpec {
            duration: duration_us,
            slide: slide_us,
            start: start_us,
        })
    }

    pub fn tumbling(&self) -> bool {
        self.duration == self.slide
    }

    /// The windows `[start, end)` holding `ts`, the latest first (Spark's `TimeWindowing`:
    /// windows start at the epoch plus `start` plus whole slides).
    pub fn windows(&self, ts: i64) -> impl Iterator<Item = (i64, i64)> + '_ {
        let last_start = ts - (ts - self.start).rem_euclid(self.slide);
        let overlapping = (self.duration + self.slide - 1) / self.slide;
        (0..overlapping)
            .map(move |i| {
                let start = last_start - i * self.slide;
                (start, start + self.duration)
            })
            .filter(move |(start, end)| *start <= ts && ts < *end)
    }
}

/// The window arguments of a `window(...)` call: the interval texts after the time column,
/// which must be constants.
fn spec_of_scalars(args: &[Option<&ScalarValue>]) -> std::result::Result<WindowSpec, String> {
    let text = |i: usize| -> std::result::Result<Option<String>, String> {
        match args.get(i) {
            None => Ok(None),
            Some(Some(ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)))) => {
                Ok(Some(s.clone()))
            }
            Some(_) => Err("window()'s durations must be constant strings such as '10 minutes'".to_owned()),
        }
    };
    let duration = text(1)?.ok_or("window() needs a time column and a window duration")?;
    WindowSpec::parse(&duration, text(2)?.as_deref(), text(3)?.as_deref())
}

fn spec_of_exprs(args: &[Expr]) -> std::result::Result<WindowSpec, String> {
    let scalars: Vec<Option<&ScalarValue>> = args
        .iter()
        .map(|e| match e {
            Expr::Literal(value, _) => Some(value),
            _ => None,
        })
        .collect();
    spec_of_scalars(&scalars)
}

/// The time column as microseconds (any timestamp unit).
fn micros(array: &ArrayRef) -> Result<TimestampMicrosecondArray> {
    let cast = datafusion::arrow::compute::cast(array, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    Ok(cast.as_primitive::<TimestampMicrosecondType>().clone())
}

/// Spark's `window()` (`list: false`): the tumbling window of each row's time, null for a null
/// time. A sliding window is a grouping key only: [`SlidingWindows`] gives each row one per
/// window. `ember_windows` (`list: true`) gives every window of a row as a list, for that rule.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SparkWindow {
    signature: Signature,
    list: bool,
}

impl SparkWindow {
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(SparkWindow::new(false))
    }

    fn windows_udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(SparkWindow::new(true))
    }

    fn new(list: bool) -> Self {
        SparkWindow {
            signature: Signature::one_of(
                vec![TypeSignature::Any(2), TypeSignature::Any(3), TypeSignature::Any(4)],
                Volatility::Immutable,
            ),
            list,
        }
    }
}

impl ScalarUDFImpl for SparkWindow {
    fn name(&self) -> &str {
        if self.list { "ember_windows" } else { "window" }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first() {
            Some(DataType::Timestamp(..)) => {}
            Some(other) => {
                return plan_err!(
                    "[DATATYPE_MISMATCH.UNEXPECTED_INPUT_TYPE] Cannot resolve \"window\" due to data type mismatch: the time column must be a timestamp, not {}.",
                    crate::dataframe::spark_type(other)
                );
            }
            None => return plan_err!("window() needs a time column"),
        }
        if arg_types[1..]
            .iter()
            .any(|t| !matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View))
        {
            return plan_err!("window()'s durations must be strings such as '10 minutes'");
        }
        Ok(if self.list {
            DataType::List(Arc::new(Field::new_list_field(window_type(), true)))
        } else {
            window_type()
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalars: Vec<Option<&ScalarValue>> = args
            .args
            .iter()
            .map(|a| match a {
                ColumnarValue::Scalar(s) => Some(s),
                ColumnarValue::Array(_) => None,
            })
            .collect();
        let spec = match spec_of_scalars(&scalars) {
            Ok(spec) => spec,
            Err(e) => return exec_err!("{e}"),
        };
        if !self.list && !spec.tumbling() {
            return exec_err!(
                "a sliding window() (slide shorter than the window) gives each row several windows: ember takes it as a grouping key (groupBy(window(...)) or GROUP BY window(...)) only"
            );
        }
        let times = micros(&args.args[0].clone().into_array(args.number_rows)?)?;
        let mut starts = TimestampMicrosecondBuilder::with_capacity(times.len());
        let mut ends = TimestampMicrosecondBuilder::with_capacity(times.len());
        let mut valid = Vec::with_capacity(times.len());
        let mut offsets = Vec::with_capacity(times.len() + 1);
        offsets.push(0usize);
        for row in 0..times.len() {
            if times.is_null(row) {
                valid.push(false);
                if !self.list {
                    starts.append_null();
                    ends.append_null();
                }
            } else {
                valid.push(true);
                for (start, end) in spec.windows(times.value(row)) {
                    starts.append_value(start);
                    ends.append_value(end);
                    if !self.list {
                        break;
                    }
                }
            }
            offsets.push(starts.len());
        }
        let tz: Arc<str> = "UTC".into();
        let starts: ArrayRef = Arc::new(starts.finish().with_timezone(Arc::clone(&tz)));
        let ends: ArrayRef = Arc::new(ends.finish().with_timezone(tz));
        if !self.list {
            let nulls = NullBuffer::from(valid);
            let array = StructArray::try_new(window_fields(), vec![starts, ends], Some(nulls))?;
            return Ok(ColumnarValue::Array(Arc::new(array)));
        }
        let structs = StructArray::try_new(window_fields(), vec![starts, ends], None)?;
        let field = Arc::new(Field::new_list_field(window_type(), true));
        let offsets = datafusion::arrow::buffer::OffsetBuffer::new(offsets.iter().map(|o| *o as i32).collect::<Vec<i32>>().into());
        let array = ListArray::try_new(field, offsets, Arc::new(structs), Some(NullBuffer::from(valid)))?;
        Ok(ColumnarValue::Array(Arc::new(array)))
    }
}

/// Spark's `session_window(timeColumn, gapDuration)`: each row's session starts as
/// `[time, time + gap)`; an aggregation grouped by it merges the sessions of a key that
/// overlap ([`merge_sessions`]). A null time gives a null session, which the aggregation drops,
/// as Spark filters it out.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SessionWindow {
    signature: Signature,
}

impl SessionWindow {
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(SessionWindow {
            signature: Signature::any(2, Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for SessionWindow {
    fn name(&self) -> &str {
        "session_window"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [DataType::Timestamp(..), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View] => Ok(window_type()),
            [other, _] if !matches!(other, DataType::Timestamp(..)) => plan_err!(
                "[DATATYPE_MISMATCH.UNEXPECTED_INPUT_TYPE] Cannot resolve \"session_window\" due to data type mismatch: the time column must be a timestamp, not {}.",
                crate::dataframe::spark_type(other)
            ),
            _ => plan_err!("session_window takes a time column and a gap duration such as '5 minutes'"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let gap = match &args.args[1] {
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(g)) | ScalarValue::LargeUtf8(Some(g)) | ScalarValue::Utf8View(Some(g))) => {
                match parse_interval_us(g) {
                    Ok(gap) if gap > 0 => gap,
                    Ok(_) => return exec_err!("The session window's gap duration ({g}) must be greater than 0."),
                    Err(e) => return exec_err!("{e}"),
                }
            }
            ColumnarValue::Scalar(
                ScalarValue::Utf8(None) | ScalarValue::LargeUtf8(None) | ScalarValue::Utf8View(None) | ScalarValue::Null,
            ) => {
                return exec_err!("The session window's gap duration must not be null.");
            }
            ColumnarValue::Scalar(other) => {
                return exec_err!("session_window's gap must be a string such as '5 minutes', not {other}");
            }
            ColumnarValue::Array(gaps) => return session_per_row(&args.args[0].clone().into_array(args.number_rows)?, gaps),
        };
        let times = micros(&args.args[0].clone().into_array(args.number_rows)?)?;
        let ends: TimestampMicrosecondArray = times.iter().map(|t| t.map(|t| t.saturating_add(gap))).collect();
        let tz: Arc<str> = "UTC".into();
        let nulls = times.nulls().cloned();
        let starts: ArrayRef = Arc::new(times.with_timezone(Arc::clone(&tz)));
        let ends: ArrayRef = Arc::new(ends.with_timezone(tz));
        Ok(ColumnarValue::Array(Arc::new(StructArray::try_new(
            window_fields(),
            vec![starts, ends],
            nulls,
        )?)))
    }
}

/// Sessions with a gap per row (Spark's dynamic gap, a string column such as
/// `when(...).otherwise("5 seconds")`): a row whose gap is null, not an interval, or not
/// positive has a null session, which the aggregation drops, as Spark filters such rows out.
fn session_per_row(times: &ArrayRef, gaps: &ArrayRef) -> Result<ColumnarValue> {
    let gaps = match gaps.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => datafusion::arrow::compute::cast(gaps, &DataType::Utf8)?,
        other => {
            return exec_err!(
                "session_window's gap must be a string such as '5 minutes', not a {} column",
                crate::dataframe::spark_type(other)
            );
        }
    };
    let gaps = gaps.as_string::<i32>();
    let times = micros(times)?;
    let mut starts = TimestampMicrosecondBuilder::with_capacity(times.len());
    let mut ends = TimestampMicrosecondBuilder::with_capacity(times.len());
    let mut valid = Vec::with_capacity(times.len());
    for (time, gap) in times.iter().zip(gaps.iter()) {
        let gap = gap.and_then(|g| parse_interval_us(g).ok()).filter(|g| *g > 0);
        match (time, gap) {
            (Some(time), Some(gap)) => {
                starts.append_value(time);
                ends.append_value(time.saturating_add(gap));
                valid.push(true);
            }
            _ => {
                starts.append_null();
                ends.append_null();
                valid.push(false);
            }
        }
    }
    let tz: Arc<str> = "UTC".into();
    let starts: ArrayRef = Arc::new(starts.finish().with_timezone(Arc::clone(&tz)));
    let ends: ArrayRef = Arc::new(ends.finish().with_timezone(tz));
    Ok(ColumnarValue::Array(Arc::new(StructArray::try_new(
        window_fields(),
        vec![starts, ends],
        Some(NullBuffer::from(valid)),
    )?)))
}

/// Whether `expr` (under aliases) is a `session_window(...)` call.
pub fn is_session_window(expr: &Expr) -> bool {
    match expr {
        Expr::Alias(alias) => is_session_window(&alias.expr),
        Expr::ScalarFunction(f) => f.func.name() == "session_window",
        _ => false,
    }
}

/// The position among the top aggregation's keys of a `session_window(...)`, if any.
pub fn session_key(plan: &LogicalPlan) -> Option<usize> {
    let mut found = None;
    let _ = plan.apply(|node| {
        if let LogicalPlan::Aggregate(aggregate) = node {
            found = aggregate.group_expr.iter().position(is_session_window);
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// Merges the sessions of `batch`'s rows (the key at `key` a session window, the other keys
/// of the first `groups` columns grouping): within each group, sessions sorted by start that
/// overlap or touch (the next starts at or before the current one's end) become one, from the
/// first start to the greatest end. Rows with a null session are dropped. Returns the rows,
/// each with its merged session, and the position in `batch` each came from.
pub fn merge_sessions(batch: &RecordBatch, key: usize, groups: usize) -> Result<(RecordBatch, Vec<usize>)> {
    use datafusion::arrow::row::{RowConverter, SortField};
    let sessions = batch.column(key).as_struct();
    let starts = micros(sessions.column(0))?;
    let ends = micros(sessions.column(1))?;
    let others: Vec<ArrayRef> = (0..groups).filter(|g| *g != key).map(|g| Arc::clone(batch.column(g))).collect();
    let converter = RowConverter::new(others.iter().map(|c| SortField::new(c.data_type().clone())).collect())?;
    let rows = converter.convert_columns(&others)?;
    let mut order: Vec<usize> = (0..batch.num_rows())
        .filter(|&r| sessions.is_valid(r) && starts.is_valid(r))
        .collect();
    order.sort_by(|&a, &b| rows.row(a).cmp(&rows.row(b)).then(starts.value(a).cmp(&starts.value(b))));
    let mut merged: Vec<(i64, i64)> = Vec::with_capacity(order.len());
    let mut run_begin = 0;
    while run_begin < order.len() {
        // One session: rows of one group whose intervals chain.
        let first = order[run_begin];
        let (start, mut end) = (starts.value(first), ends.value(first));
        let mut run_end = run_begin + 1;
        while run_end < order.len() {
            let next = order[run_end];
            if rows.row(next) != rows.row(first) || starts.value(next) > end {
                break;
            }
            end = end.max(ends.value(next));
            run_end += 1;
        }
        merged.extend(std::iter::repeat_n((start, end), run_end - run_begin));
        run_begin = run_end;
    }
    let tz: Arc<str> = "UTC".into();
    let column = |values: Vec<i64>| -> ArrayRef { Arc::new(TimestampMicrosecondArray::from(values).with_timezone(Arc::clone(&tz))) };
    let session: ArrayRef = Arc::new(StructArray::try_new(
        window_fields(),
        vec![
            column(merged.iter().map(|m| m.0).collect()),
            column(merged.iter().map(|m| m.1).collect()),
        ],
        None,
    )?);
    let indices = datafusion::arrow::array::UInt32Array::from(order.iter().map(|&r| r as u32).collect::<Vec<_>>());
    let kept = datafusion::arrow::compute::take_record_batch(batch, &indices)?;
    let mut columns = kept.columns().to_vec();
    columns[key] = session;
    Ok((RecordBatch::try_new(batch.schema(), columns)?, order))
}

/// The name the rows' windows get between the unnest and the aggregation.
const WINDOW_COLUMN: &str = "__ember_window";

/// Whether `expr` (under aliases) is a `window(...)` call, and its arguments.
pub fn window_call(expr: &Expr) -> Option<&[Expr]> {
    match expr {
        Expr::Alias(alias) => window_call(&alias.expr),
        Expr::ScalarFunction(f) if f.func.name() == "window" => Some(&f.args),
        _ => None,
    }
}

/// Spark's expansion of a window key (`TimeWindowing`): an aggregation grouped by
/// `window(t, d, s)` groups each row once per window that holds it (one when tumbling, up to
/// `d / s` when sliding), and a row with a null time in none. The aggregation's input gets the
/// list of its windows (`ember_windows`), unnested, and the key reads the unnested column under
/// the key's name.
#[derive(Debug, Default)]
pub struct SlidingWindows;

impl datafusion::optimizer::AnalyzerRule for SlidingWindows {
    fn analyze(&self, plan: LogicalPlan, _config: &datafusion::common::config::ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let LogicalPlan::Aggregate(aggregate) = &node else {
                return Ok(Transformed::no(node));
            };
            let sliding: Vec<usize> = aggregate
                .group_expr
                .iter()
                .enumerate()
                .filter(|(_, e)| window_call(e).is_some_and(|args| spec_of_exprs(args).is_ok()))
                .map(|(i, _)| i)
                .collect();
            let [key] = sliding.as_slice() else {
                if sliding.len() > 1 {
                    return plan_err!(
                        "Multiple time/session window expressions would result in a cartesian product of rows, therefore they are currently not supported."
                    );
                }
                return Ok(Transformed::no(node));
            };
            let key_expr = &aggregate.group_expr[*key];
            let args = window_call(key_expr).expect("a window call").to_vec();
            let name = match key_expr {
                Expr::Alias(alias) => alias.name.clone(),
                other => other.schema_name().to_string(),
            };
            let input = Arc::clone(&aggregate.input);
            let mut columns: Vec<Expr> = input.schema().columns().into_iter().map(Expr::Column).collect();
            columns.push(Arc::new(SparkWindow::windows_udf()).call(args).alias(WINDOW_COLUMN));
            let options = UnnestOptions::new().with_null_handling(NullHandling::Drop);
            let expanded = LogicalPlanBuilder::from(input)
                .project(columns)?
                .unnest_column_with_options(WINDOW_COLUMN, options)?
                .build()?;
            let mut group_expr = aggregate.group_expr.clone();
            group_expr[*key] = datafusion::prelude::ident(WINDOW_COLUMN).alias(name);
            let rewritten = datafusion::logical_expr::Aggregate::try_new(Arc::new(expanded), group_expr, aggregate.aggr_expr.clone())?;
            Ok(Transformed::new(LogicalPlan::Aggregate(rewritten), true, TreeNodeRecursion::Continue))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "spark_sliding_windows"
    }
}

/// A DataFrame's `withWatermark(eventTime, delayThreshold)`.
#[derive(Clone, Debug)]
pub struct Watermark {
    /// The event-time column.
    pub column: String,
    /// The delay threshold, in milliseconds (Spark keeps the watermark in milliseconds).
    pub delay_ms: i64,
    /// The DataFrame's plan where `withWatermark` was called: its rows' event times move the
    /// watermark.
    pub plan: LogicalPlan,
}

impl Watermark {
    /// The event-time column's name in the output of `plan`, which is built over the plan
    /// `withWatermark` was called on: a projection that renames the column (`col("t").alias(
    /// "time")`, SQL `t AS time`) carries the watermark to the new name, as Spark's watermark
    /// follows the attribute. Where the plan is not found (a view read through SQL), or the
    /// column was dropped, the name `withWatermark` was given.
    pub fn name_in(&self, plan: &LogicalPlan) -> String {
        self.traced(plan).unwrap_or_else(|| self.column.clone())
    }

    fn traced(&self, plan: &LogicalPlan) -> Option<String> {
        if *plan == self.plan {
            return Some(self.column.clone());
        }
        let below = plan.inputs().into_iter().find_map(|input| self.traced(input))?;
        match plan {
            LogicalPlan::Projection(projection) => projection.expr.iter().find_map(|e| {
                let mut bare = e;
                while let Expr::Alias(alias) = bare {
                    bare = &alias.expr;
                }
                matches!(bare, Expr::Column(c) if c.name == below).then(|| e.schema_name().to_string())
            }),
            _ => Some(below),
        }
    }
}

/// How the aggregation's key holds event time: a window (its `end` counts) or a timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyTime {
    Window,
    Timestamp,
}

/// The group key of the query's top aggregation that carries the watermark's column (by
/// position among the keys), if any: `window(column, ...)` or the column itself.
pub fn watermark_key(plan: &LogicalPlan, watermark: &Watermark) -> Option<(usize, KeyTime)> {
    let mut found = None;
    let _ = plan.apply(|node| {
        let LogicalPlan::Aggregate(aggregate) = node else {
            return Ok(TreeNodeRecursion::Continue);
        };
        let column = watermark.name_in(&aggregate.input);
        let column = column.as_str();
        found = aggregate.group_expr.iter().enumerate().find_map(|(i, e)| {
            let is_column = |e: &Expr| matches!(e, Expr::Column(c) if c.name == column);
            let mut bare = e;
            while let Expr::Alias(alias) = bare {
                bare = &alias.expr;
            }
            if is_column(bare) {
                Some((i, KeyTime::Timestamp))
            } else if let Expr::ScalarFunction(f) = bare
                && f.func.name() == "session_window"
            {
                f.args.first().filter(|a| is_column(a)).map(|_| (i, KeyTime::Window))
            } else {
                window_call(bare)
                    .filter(|args| args.first().is_some_and(is_column))
                    .map(|_| (i, KeyTime::Window))
            }
        });
        Ok(TreeNodeRecursion::Stop)
    });
    found
}

/// The event times (ms) of a key column: a window's end, or the timestamp; null stays null.
pub fn key_times(column: &ArrayRef, kind: KeyTime) -> Result<TimestampMicrosecondArray> {
    match kind {
        KeyTime::Timestamp => micros(column),
        KeyTime::Window => {
            let Some(windows) = column.as_struct_opt() else {
                return exec_err!("the window key is not a struct but {}", column.data_type());
            };
            let ends = micros(windows.column(1))?;
            // A null window has a null end.
            Ok(match windows.nulls() {
                Some(nulls) => {
                    let merged = NullBuffer::union(Some(nulls), ends.nulls());
                    TimestampMicrosecondArray::new(ends.values().clone(), merged)
                }
                None => ends,
            })
        }
    }
}

/// Event-time statistics of a micro-batch's rows where the watermark is defined (Spark's
/// `EventTimeStats`, in milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EventStats {
    pub max: i64,
    pub min: i64,
    pub avg: f64,
    pub count: u64,
}

impl EventStats {
    /// The statistics of a column of timestamps. A null time counts as the epoch, as in Spark
    /// (its projection reads a null as 0).
    pub fn of(column: &ArrayRef) -> Result<Option<EventStats>> {
        let times = micros(column)?;
        let mut stats: Option<EventStats> = None;
        // Java's long division: toward zero.
        for ms in times.iter().map(|us| us.unwrap_or(0) / 1000) {
            let one = EventStats {
                max: ms,
                min: ms,
                avg: ms as f64,
                count: 1,
            };
            stats = Some(match stats {
                Some(s) => s.merge(one),
                None => one,
            });
        }
        Ok(stats)
    }

    /// Both sets' statistics (Spark's running average).
    pub fn merge(self, other: EventStats) -> EventStats {
        let count = self.count + other.count;
        EventStats {
            max: self.max.max(other.max),
            min: self.min.min(other.min),
            avg: self.avg + (other.avg - self.avg) * other.count as f64 / count as f64,
            count,
        }
    }
}

/// The watermarks of a query with `withWatermark` (Spark 3.5, one watermark): a micro-batch
/// evicts state with the watermark computed before it (the greatest event time seen minus
/// the delay, never going back) and drops rows as late with the one the batch before it
/// evicted with (`eventTimeWatermarkForLateEvents`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watermarks {
    /// The next batch's eviction watermark (ms; Spark's `batchWatermarkMs`).
    pub eviction_ms: i64,
    /// The next batch's watermark for late rows (ms).
    pub late_ms: i64,
}

/// The watermarks of a query with one or more `withWatermark`s: each one's greatest event
/// time seen minus its delay (none before its first row), and the query's [`Watermarks`] from
/// them: the least of them (Spark's default `min` policy, where one that saw no row yet counts
/// as the epoch), never going back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatermarkTracker {
    pub current: Watermarks,
    pub nodes: Vec<Option<i64>>,
}

impl WatermarkTracker {
    /// After a batch that ran with `self.current`, whose rows at each watermark had `stats`
    /// (watermark `i` has delay `delays[i]`).
    pub fn after(&self, delays: &[i64], stats: &[Option<EventStats>]) -> WatermarkTracker {
        let mut nodes = self.nodes.clone();
        nodes.resize(delays.len(), None);
        for (i, delay) in delays.iter().enumerate() {
            if let Some(Some(s)) = stats.get(i).filter(|s| s.is_some_and(|s| s.count > 0)) {
                let moved = s.max - delay;
                nodes[i] = Some(nodes[i].map_or(moved, |n| n.max(moved)));
            }
        }
        let least = nodes.iter().map(|n| n.unwrap_or(0)).min();
        WatermarkTracker {
            current: Watermarks {
                eviction_ms: least.map_or(self.current.eviction_ms, |l| self.current.eviction_ms.max(l)),
                late_ms: self.current.eviction_ms,
            },
            nodes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_read_as_spark_reads_them() {
        assert_eq!(parse_interval_us("10 minutes"), Ok(600_000_000));
        assert_eq!(parse_interval_us("1 hour 30 minutes"), Ok(5_400_000_000));
        assert_eq!(parse_interval_us("interval 2 seconds"), Ok(2_000_000));
        assert_eq!(parse_interval_us("1.5 seconds"), Ok(1_500_000));
        assert_eq!(parse_interval_us("1 Day"), Ok(86_400_000_000));
        assert!(
            parse_interval_us("ten minutes")
                .unwrap_err()
                .contains("did not correspond to a valid interval string")
        );
        assert!(parse_interval_us("1 month").unwrap_err().contains("greater than a month"));
        assert!(parse_interval_us("").is_err());
        assert_eq!(parse_delay_ms("1 month"), Ok(2_678_400_000));
        assert_eq!(parse_delay_ms("100 milliseconds"), Ok(100));
        for bad in ["10s", "10 mins", "5 ms", "10", "10 minutes ago"] {
            assert!(parse_delay_ms(bad).unwrap_err().starts_with("[CANNOT_PARSE_INTERVAL]"), "{bad}");
        }
    }

    #[test]
    fn a_gap_per_row_leaves_out_rows_without_a_positive_interval() {
        use datafusion::arrow::array::StringArray;
        let minute = 60_000_000i64;
        let times: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![
            Some(0),
            Some(minute),
            Some(2 * minute),
            Some(3 * minute),
            None,
            Some(5 * minute),
        ]));
        let gaps: ArrayRef = Arc::new(StringArray::from(vec![
            Some("2 minutes"),
            None,
            Some("0 seconds"),
            Some("soon"),
            Some("1 minute"),
            Some("-1 minute"),
        ]));
        let ColumnarValue::Array(sessions) = session_per_row(&times, &gaps).unwrap() else {
            panic!("sessions per row are an array")
        };
        let sessions = sessions.as_struct();
        let valid: Vec<bool> = (0..sessions.len()).map(|r| sessions.is_valid(r)).collect();
        assert_eq!(valid, [true, false, false, false, false, false]);
        assert_eq!(micros(sessions.column(1)).unwrap().value(0), 2 * minute);
        let numbers: ArrayRef = Arc::new(datafusion::arrow::array::Int64Array::from(vec![1i64; 6]));
        let refused = session_per_row(&times, &numbers).unwrap_err().to_string();
        assert!(refused.contains("gap must be a string"), "{refused}");
    }

    #[test]
    fn windows_hold_the_time_latest_first() {
        let minute = 60_000_000;
        let spec = WindowSpec::parse("10 minutes", Some("5 minutes"), None).unwrap();
        let at = 12 * 60 * minute + 7 * minute;
        let windows: Vec<_> = spec.windows(at).collect();
        assert_eq!(windows, [(at - 2 * minute, at + 8 * minute), (at - 7 * minute, at + 3 * minute)]);
        let tumbling = WindowSpec::parse("10 minutes", None, Some("2 minutes")).unwrap();
        assert_eq!(tumbling.windows(at).collect::<Vec<_>>(), [(at - 5 * minute, at + 5 * minute)]);
        // Before the epoch, windows still align to it.
        assert_eq!(tumbling.windows(-minute).collect::<Vec<_>>(), [(-8 * minute, 2 * minute)]);
        assert!(WindowSpec::parse("5 minutes", Some("10 minutes"), None).is_err());
    }

    #[test]
    fn the_watermark_moves_forward_only_and_late_rows_use_the_last_batchs() {
        let w = WatermarkTracker::default();
        let stats = |max| {
            Some(EventStats {
                max,
                min: 0,
                avg: 0.0,
                count: 1,
            })
        };
        let w = w.after(&[10], &[stats(100)]);
        assert_eq!(
            w.current,
            Watermarks {
                eviction_ms: 90,
                late_ms: 0
            }
        );
        let w = w.after(&[10], &[stats(50)]);
        assert_eq!(
            w.current,
            Watermarks {
                eviction_ms: 90,
                late_ms: 90
            }
        );
        let w = w.after(&[10], &[None]);
        assert_eq!(
            w.current,
            Watermarks {
                eviction_ms: 90,
                late_ms: 90
            }
        );
    }

    #[test]
    fn several_watermarks_take_the_least_and_one_without_rows_holds_it_at_the_epoch() {
        let stats = |max| {
            Some(EventStats {
                max,
                min: 0,
                avg: 0.0,
                count: 1,
            })
        };
        let w = WatermarkTracker::default().after(&[10, 5], &[stats(100), None]);
        assert_eq!(w.current.eviction_ms, 0);
        let w = w.after(&[10, 5], &[None, stats(60)]);
        assert_eq!(w.current.eviction_ms, 55);
        let w = w.after(&[10, 5], &[stats(200), stats(70)]);
        assert_eq!((w.current.eviction_ms, w.current.late_ms), (65, 55));
    }
}
