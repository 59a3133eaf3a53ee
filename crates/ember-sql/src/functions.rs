//! `Column` and the functions of Spark's `pyspark.sql.functions` that build columns (`col`,
//! `lit`, `split`, `explode`, `lower`, `count`, `sum`, `avg`, `min`, `max`, `expr`, ...), with
//! Spark's names, argument orders and default column names.
//!
//! A column is resolved against the DataFrame it is used on, so that `expr("...")` SQL text
//! reads that DataFrame's columns.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::expr::Unnest;
use datafusion::logical_expr::{Expr, Operator, binary_expr};
use datafusion::prelude::{ident, lit as df_lit};
use datafusion::scalar::ScalarValue;

use crate::error::Result;

type Build = Arc<dyn Fn(Vec<Expr>) -> Result<Expr> + Send + Sync>;

#[derive(Clone)]
enum Inner {
    /// A column of the DataFrame, by name.
    Named(String),
    /// A literal, with Spark's name for it.
    Literal(ScalarValue, String),
    /// SQL text (`expr("...")`), parsed against the DataFrame's schema.
    Sql(String),
    /// A function or operator over other columns; `name` makes Spark's column name from
    /// theirs.
    Call {
        build: Build,
        args: Vec<Column>,
        name: Arc<dyn Fn(&[String]) -> String + Send + Sync>,
    },
    /// `explode(child)`: one row per element of an array (a generator: select lists only).
    Explode(Box<Column>),
    /// `child.alias(name)`.
    Alias(Box<Column>, String),
    /// `when(c1, v1).when(c2, v2)...otherwise(e)`: SQL's `CASE WHEN`.
    Case {
        branches: Vec<(Column, Column)>,
        otherwise: Option<Box<Column>>,
    },
}

/// A column expression (Spark's `Column`).
#[derive(Clone)]
pub struct Column(Inner);

impl std::fmt::Debug for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Column<'{}'>", self.spark_name())
    }
}

/// A resolved column: the DataFusion expression, Spark's name for it, and whether it explodes.
pub(crate) struct Resolved {
    pub expr: Expr,
    pub name: String,
    pub explode: bool,
}

impl Column {
    fn call(args: Vec<Column>, build: Build, name: impl Fn(&[String]) -> String + Send + Sync + 'static) -> Column {
        Column(Inner::Call {
            build,
            args,
            name: Arc::new(name),
        })
    }

    /// A function `label(args...)` named as Spark names it.
    fn function(label: &'static str, args: Vec<Column>, build: impl Fn(Vec<Expr>) -> Expr + Send + Sync + 'static) -> Column {
        Column::call(args, Arc::new(move |a| Ok(build(a))), move |names| {
            format!("{label}({})", names.join(", "))
        })
    }

    fn binary(self, other: Column, op: Operator, symbol: &'static str) -> Column {
        Column::call(
            vec![self, other],
            Arc::new(move |mut a| {
                let right = a.pop().expect("two arguments");
                let left = a.pop().expect("two arguments");
                Ok(binary_expr(left, op, right))
            }),
            move |n| format!("({} {symbol} {})", n[0], n[1]),
        )
    }

    /// The column under another name (Spark's `alias`, `name`, `as`).
    pub fn alias(self, name: &str) -> Column {
        Column(Inner::Alias(Box::new(self), name.to_owned()))
    }

    /// `self = other` (Spark's `==`, `eqNullSafe` aside).
    pub fn eq(self, other: impl Into<Column>) -> Column {
        self.binary(other.into(), Operator::Eq, "=")
    }

    /// `self != other`.
    pub fn ne(self, other: impl Into<Column>) -> Column {
        let named = self.binary(other.into(), Operator::NotEq, "=");
        Column::call(vec![named], Arc::new(|mut a| Ok(a.remove(0))), |n| format!("(NOT {})", n[0]))
    }

    /// `self > other`.
    pub fn gt(self, other: impl Into<Column>) -> Column {
        self.binary(other.into(), Operator::Gt, ">")
    }

    /// `self >= other`.
    pub fn ge(self, other: impl Into<Column>) -> Column {
        self.binary(other.into(), Operator::GtEq, ">=")
    }

    /// `self < other`.
    pub fn lt(self, other: impl Into<Column>) -> Column {
        self.binary(other.into(), Operator::Lt, "<")
    }

    /// `self <= other`.
    pub fn le(self, other: impl Into<Column>) -> Column {
        self.binary(other.into(), Operator::LtEq, "<=")
    }

    /// `self AND other`.
    pub fn and(self, other: Column) -> Column {
        self.binary(other, Operator::And, "AND")
    }

    /// `self OR other`.
    pub fn or(self, other: Column) -> Column {
        self.binary(other, Operator::Or, "OR")
    }

    /// `self + other`.
    pub fn plus(self, other: impl Into<Column>) -> Column {
        self.binary(other.into(), Operator::Plus, "+")
    }

    /// `self - other`.
    pub fn minus(self, other: impl Into<Column>) -> Column {
        self.binary(other.into(), Operator::Minus, "-")
    }

    /// `self * other`.
    pub fn multiply(self, other: impl Into<Column>) -> Column {
        self.binary(other.into(), Operator::Multiply, "*")
    }

    /// `self / other`: a double, as Spark's `/` gives for any numbers.
    pub fn divide(self, other: impl Into<Column>) -> Column {
        Column::call(
            vec![self, other.into()],
            Arc::new(|mut a| {
                let right = a.pop().expect("two arguments");
                let left = a.pop().expect("two arguments");
                Ok(binary_expr(to_double(left), Operator::Divide, to_double(right)))
            }),
            |n| format!("({} / {})", n[0], n[1]),
        )
    }

    /// `self % other`.
    pub fn modulo(self, other: impl Into<Column>) -> Column {
        self.binary(other.into(), Operator::Modulo, "%")
    }

    /// The column as another type (Spark's `cast`, without ANSI mode: a value that does not
    /// convert becomes null). `to` is Spark's name of a type: `string`, `int`, `bigint`,
    /// `double`, `float`, `boolean`, `smallint`, `tinyint`, `date`, `timestamp`.
    pub fn cast(self, to: &str) -> Result<Column> {
        let data_type = spark_data_type(to)?;
        let upper = to.trim().to_ascii_uppercase();
        let upper = match upper.as_str() {
            "INTEGER" => "INT".to_owned(),
            "LONG" => "BIGINT".to_owned(),
            "SHORT" => "SMALLINT".to_owned(),
            "BYTE" => "TINYINT".to_owned(),
            _ => upper,
        };
        Ok(Column::call(
            vec![self],
            Arc::new(move |mut a| {
                Ok(Expr::TryCast(datafusion::logical_expr::TryCast::new(
                    Box::new(a.remove(0)),
                    data_type.clone(),
                )))
            }),
            move |n| format!("CAST({} AS {upper})", n[0]),
        ))
    }

    /// The element at 0-based position `index` of an array column, null when there is none
    /// (Spark's `getItem`, and `column[index]` in Python).
    pub fn get_item(self, index: i64) -> Column {
        Column::call(
            vec![self],
            Arc::new(move |mut a| {
                // DataFusion counts from 1, and from the end below 0; Spark has no negative index.
                let position = if index < 0 { i64::MAX } else { index + 1 };
                Ok(datafusion::functions_nested::expr_fn::array_element(a.remove(0), df_lit(position)))
            }),
            move |n| format!("{}[{index}]", n[0]),
        )
    }

    /// The field `name` of a struct column (Spark's `getField`, `column["name"]` in Python, and
    /// `s.name` in SQL); named as Spark names it, `s.name`.
    pub fn get_field(self, name: &str) -> Column {
        let field = name.to_owned();
        let shown = name.to_owned();
        Column::call(
            vec![self],
            Arc::new(move |mut a| Ok(datafusion::functions::core::expr_fn::get_field(a.remove(0), field.clone()))),
            move |n| format!("{}.{shown}", n[0]),
        )
    }

    /// `self IS NULL`.
    pub fn is_null(self) -> Column {
        Column::call(vec![self], Arc::new(|mut a| Ok(a.remove(0).is_null())), |n| {
            format!("({} IS NULL)", n[0])
        })
    }

    /// `self IS NOT NULL`.
    pub fn is_not_null(self) -> Column {
        Column::call(vec![self], Arc::new(|mut a| Ok(a.remove(0).is_not_null())), |n| {
            format!("({} IS NOT NULL)", n[0])
        })
    }

    /// Another branch of a [`when`] column (Spark's `Column.when`).
    ///
    /// # Errors
    ///
    /// [`crate::Error::IllegalArgument`] when this column is not a `when(...)` column, or has
    /// its `otherwise` already.
    pub fn when(self, condition: Column, value: impl Into<Column>) -> Result<Column> {
        match self.0 {
            Inner::Case {
                mut branches,
                otherwise: None,
            } => {
                branches.push((condition, value.into()));
                Ok(Column(Inner::Case { branches, otherwise: None }))
            }
            _ => Err(crate::Error::illegal_argument(
                "when() can only be applied on a Column previously generated by when() function, and cannot be applied once otherwise() is applied",
            )),
        }
    }

    /// The value where no branch of a [`when`] column holds (Spark's `otherwise`; without it,
    /// null).
    ///
    /// # Errors
    ///
    /// As [`Column::when`].
    pub fn otherwise(self, value: impl Into<Column>) -> Result<Column> {
        match self.0 {
            Inner::Case { branches, otherwise: None } => Ok(Column(Inner::Case {
                branches,
                otherwise: Some(Box::new(value.into())),
            })),
            _ => Err(crate::Error::illegal_argument(
                "otherwise() can only be applied on a Column previously generated by when() function, and cannot be applied once otherwise() is applied",
            )),
        }
    }

    /// Spark's name for the column when it is not aliased.
    pub(crate) fn spark_name(&self) -> String {
        match &self.0 {
            Inner::Named(name) => name.clone(),
            Inner::Literal(_, name) => name.clone(),
            Inner::Sql(text) => text.clone(),
            Inner::Call { args, name, .. } => {
                let names: Vec<String> = args.iter().map(Column::spark_name).collect();
                name(&names)
            }
            Inner::Explode(_) => "col".to_owned(),
            Inner::Alias(_, name) => name.clone(),
            Inner::Case { branches, otherwise } => {
                let mut name = "CASE".to_owned();
                for (condition, value) in branches {
                    name.push_str(&format!(" WHEN {} THEN {}", condition.spark_name(), value.spark_name()));
                }
                if let Some(otherwise) = otherwise {
                    name.push_str(&format!(" ELSE {}", otherwise.spark_name()));
                }
                name + " END"
            }
        }
    }

    /// The DataFusion expression of this column over `df`'s columns.
    pub(crate) fn resolve(&self, df: &datafusion::dataframe::DataFrame) -> Result<Resolved> {
        Ok(match &self.0 {
            Inner::Named(name) => Resolved {
                expr: ident(name),
                name: name.clone(),
                explode: false,
            },
            Inner::Literal(value, name) => Resolved {
                expr: df_lit(value.clone()),
                name: name.clone(),
                explode: false,
            },
            Inner::Sql(text) => {
                let (state, _) = df.clone().into_parts();
                let dialect = state.config().options().sql_parser.dialect;
                let mut parsed = state.sql_to_expr_with_alias(text, &dialect)?;
                crate::reader::zero_based_subscripts(&mut parsed.expr);
                let expr = state.create_logical_expr_from_sql_expr(parsed, df.schema())?;
                let name = match &expr {
                    Expr::Alias(a) => a.name.clone(),
                    _ => text.clone(),
                };
                Resolved {
                    expr,
                    name,
                    explode: false,
                }
            }
            Inner::Call { build, args, .. } => {
                let resolved = args.iter().map(|a| a.resolve(df)).collect::<Result<Vec<_>>>()?;
                if resolved.iter().any(|r| r.explode) {
                    return Err(crate::Error::analysis(
                        "Generators are not supported when it's nested in expressions, but got: explode",
                    ));
                }
                Resolved {
                    expr: build(resolved.into_iter().map(|r| r.expr).collect())?,
                    name: self.spark_name(),
                    explode: false,
                }
            }
            Inner::Explode(child) => {
                let inner = child.resolve(df)?;
                Resolved {
                    expr: Expr::Unnest(Unnest::new(inner.expr)),
                    name: "col".to_owned(),
                    explode: true,
                }
            }
            Inner::Alias(child, name) => {
                let inner = child.resolve(df)?;
                Resolved {
                    expr: inner.expr,
                    name: name.clone(),
                    explode: inner.explode,
                }
            }
            Inner::Case { branches, otherwise } => {
                let plain = |c: &Column| -> Result<Box<Expr>> {
                    let r = c.resolve(df)?;
                    if r.explode {
                        return Err(crate::Error::analysis(
                            "Generators are not supported when it's nested in expressions, but got: explode",
                        ));
                    }
                    Ok(Box::new(r.expr))
                };
                let when_then = branches
                    .iter()
                    .map(|(c, v)| Ok((plain(c)?, plain(v)?)))
                    .collect::<Result<Vec<_>>>()?;
                let otherwise = otherwise.as_deref().map(plain).transpose()?;
                Resolved {
                    expr: Expr::Case(datafusion::logical_expr::expr::Case::new(None, when_then, otherwise)),
                    name: self.spark_name(),
                    explode: false,
                }
            }
        })
    }
}

impl std::ops::Not for Column {
    type Output = Column;

    /// `NOT self` (Spark's `!` in Scala, `~` in Python).
    fn not(self) -> Column {
        Column::call(vec![self], Arc::new(|mut a| Ok(!a.remove(0))), |n| format!("(NOT {})", n[0]))
    }
}

impl std::ops::Neg for Column {
    type Output = Column;

    /// `-self`.
    fn neg(self) -> Column {
        Column::call(vec![self], Arc::new(|mut a| Ok(-a.remove(0))), |n| format!("(- {})", n[0]))
    }
}

impl From<&str> for Column {
    /// A column by name, as PySpark reads a string where it takes a column.
    fn from(name: &str) -> Self {
        col(name)
    }
}

impl From<i64> for Column {
    fn from(value: i64) -> Self {
        lit(value)
    }
}

impl From<i32> for Column {
    fn from(value: i32) -> Self {
        lit(i64::from(value))
    }
}

impl From<f64> for Column {
    fn from(value: f64) -> Self {
        lit(value)
    }
}

/// A literal value for [`lit`].
pub trait Literal {
    /// The value, and Spark's name for its column.
    fn literal(self) -> (ScalarValue, String);
}

impl Literal for i64 {
    fn literal(self) -> (ScalarValue, String) {
        (ScalarValue::Int64(Some(self)), self.to_string())
    }
}

impl Literal for i32 {
    fn literal(self) -> (ScalarValue, String) {
        (ScalarValue::Int32(Some(self)), self.to_string())
    }
}

impl Literal for f64 {
    fn literal(self) -> (ScalarValue, String) {
        (ScalarValue::Float64(Some(self)), crate::show::java_double(self))
    }
}

impl Literal for bool {
    fn literal(self) -> (ScalarValue, String) {
        (ScalarValue::Boolean(Some(self)), self.to_string())
    }
}

impl Literal for &str {
    fn literal(self) -> (ScalarValue, String) {
        (ScalarValue::Utf8(Some(self.to_owned())), self.to_owned())
    }
}

impl Literal for String {
    fn literal(self) -> (ScalarValue, String) {
        (ScalarValue::Utf8(Some(self.clone())), self)
    }
}

fn to_double(expr: Expr) -> Expr {
    Expr::TryCast(datafusion::logical_expr::TryCast::new(Box::new(expr), DataType::Float64))
}

/// The Arrow type of Spark's type name (as `cast` takes it).
fn spark_data_type(name: &str) -> Result<DataType> {
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "string" => DataType::Utf8,
        "int" | "integer" => DataType::Int32,
        "bigint" | "long" => DataType::Int64,
        "smallint" | "short" => DataType::Int16,
        "tinyint" | "byte" => DataType::Int8,
        "double" => DataType::Float64,
        "float" => DataType::Float32,
        "boolean" => DataType::Boolean,
        "date" => DataType::Date32,
        "timestamp" => DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())),
        other => {
            return Err(crate::Error::illegal_argument(format!(
                "[UNSUPPORTED_DATATYPE] Unsupported data type \"{}\" (ember's cast takes string, int, bigint, smallint, tinyint, double, float, boolean, date, timestamp)",
                other.to_ascii_uppercase()
            )));
        }
    })
}

/// The column named `name` (Spark's `col`).
pub fn col(name: &str) -> Column {
    Column(Inner::Named(name.to_owned()))
}

/// A literal (Spark's `lit`).
pub fn lit(value: impl Literal) -> Column {
    let (value, name) = value.literal();
    Column(Inner::Literal(value, name))
}

/// `value` where `condition` holds, null elsewhere (Spark's `when`); chain more branches with
/// [`Column::when`] and the default with [`Column::otherwise`].
pub fn when(condition: Column, value: impl Into<Column>) -> Column {
    Column(Inner::Case {
        branches: vec![(condition, value.into())],
        otherwise: None,
    })
}

/// A null literal (Spark's `lit(None)`), named `NULL`.
pub fn lit_null() -> Column {
    Column(Inner::Literal(ScalarValue::Null, "NULL".to_owned()))
}

/// A column from SQL text (Spark's `expr`), parsed against the DataFrame it is used on.
pub fn expr(sql: &str) -> Column {
    Column(Inner::Sql(sql.to_owned()))
}

/// The pieces of `str` around the matches of the regular expression `pattern` (Spark's
/// `split(str, pattern, limit=-1)`).
pub fn split(str: impl Into<Column>, pattern: &str) -> Column {
    split_limit(str, pattern, -1)
}

/// [`split`] into at most `limit` pieces (`limit <= 0`: all).
pub fn split_limit(str: impl Into<Column>, pattern: &str, limit: i32) -> Column {
    let pattern_text = pattern.to_owned();
    let pattern = pattern.to_owned();
    Column::call(
        vec![str.into()],
        Arc::new(move |mut a| {
            let udf = Arc::new(crate::udf::SparkSplit::udf());
            Ok(udf.call(vec![a.remove(0), df_lit(pattern.clone()), df_lit(limit)]))
        }),
        move |n| format!("split({}, {pattern_text}, {limit})", n[0]),
    )
}

/// The JSON object in each string of `column` as a struct of `schema`, Spark's DDL text
/// (Spark's `from_json`): fields that do not fit are null, a string that is not an object
/// gives a struct of nulls. Its fields are read with `get_field` / `.` in SQL.
pub fn from_json(column: impl Into<Column>, schema: &str) -> Column {
    let ddl = schema.to_owned();
    Column::call(
        vec![column.into()],
        Arc::new(move |mut a| {
            let udf = Arc::new(crate::udf::SparkFromJson::udf());
            Ok(udf.call(vec![a.remove(0), df_lit(ddl.clone())]))
        }),
        |n| format!("from_json({})", n[0]),
    )
}

/// One row per element of an array column (Spark's `explode`); its column is named `col`
/// unless aliased. Elements of a null or empty array give no row.
pub fn explode(column: impl Into<Column>) -> Column {
    Column(Inner::Explode(Box::new(column.into())))
}

/// Lower case (Spark's `lower`).
pub fn lower(column: impl Into<Column>) -> Column {
    Column::function("lower", vec![column.into()], |mut a| {
        datafusion::functions::expr_fn::lower(a.remove(0))
    })
}

/// Upper case (Spark's `upper`).
pub fn upper(column: impl Into<Column>) -> Column {
    Column::function("upper", vec![column.into()], |mut a| {
        datafusion::functions::expr_fn::upper(a.remove(0))
    })
}

/// The number of characters (Spark's `length`).
pub fn length(column: impl Into<Column>) -> Column {
    Column::function("length", vec![column.into()], |mut a| {
        datafusion::functions::expr_fn::character_length(a.remove(0))
    })
}

/// The number of non-null values (Spark's `count`); `count("*")` counts rows, named `count(1)`.
pub fn count(column: impl Into<Column>) -> Column {
    let column = column.into();
    if matches!(&column.0, Inner::Named(n) if n == "*") {
        return Column::call(
            vec![],
            Arc::new(|_| Ok(datafusion::functions_aggregate::expr_fn::count(df_lit(1i64)))),
            |_| "count(1)".to_owned(),
        );
    }
    Column::function("count", vec![column], |mut a| {
        datafusion::functions_aggregate::expr_fn::count(a.remove(0))
    })
}

/// The sum (Spark's `sum`).
pub fn sum(column: impl Into<Column>) -> Column {
    Column::function("sum", vec![column.into()], |mut a| {
        datafusion::functions_aggregate::expr_fn::sum(a.remove(0))
    })
}

/// The mean, a double (Spark's `avg`).
pub fn avg(column: impl Into<Column>) -> Column {
    Column::function("avg", vec![column.into()], |mut a| {
        datafusion::functions_aggregate::expr_fn::avg(a.remove(0))
    })
}

/// The least value (Spark's `min`).
pub fn min(column: impl Into<Column>) -> Column {
    Column::function("min", vec![column.into()], |mut a| {
        datafusion::functions_aggregate::expr_fn::min(a.remove(0))
    })
}

/// The greatest value (Spark's `max`).
pub fn max(column: impl Into<Column>) -> Column {
    Column::function("max", vec![column.into()], |mut a| {
        datafusion::functions_aggregate::expr_fn::max(a.remove(0))
    })
}

/// Strings as timestamps, as Spark's `to_timestamp(col)` without a format reads them
/// (`2017-04-23 12:07:00`, ISO 8601 with `T`, fractions and offsets; a time without an offset is
/// UTC, ember's session time zone); text that is no timestamp gives null.
pub fn to_timestamp(column: impl Into<Column>) -> Column {
    Column::function("to_timestamp", vec![column.into()], |mut a| {
        Expr::TryCast(datafusion::logical_expr::TryCast::new(
            Box::new(a.remove(0)),
            crate::eventtime::timestamp_type(),
        ))
    })
}

/// The event-time window of each row's `time_column` (Spark's `window(timeColumn,
/// windowDuration, slideDuration=None, startTime=None)`): a `struct<start, end>` column named
/// `window`, `[start, end)` aligned to the epoch plus `start_time`. With a slide shorter than the
/// window, each row falls into several windows: such a window is a grouping key
/// (`group_by([window(...), ...])`), which gives the row once per window.
pub fn window(time_column: impl Into<Column>, window_duration: &str, slide_duration: Option<&str>, start_time: Option<&str>) -> Column {
    // The SQL function's arguments: the slide (the window's length when not given) comes before
    // a start time.
    let mut texts = vec![window_duration.to_owned()];
    if slide_duration.is_some() || start_time.is_some() {
        texts.push(slide_duration.unwrap_or(window_duration).to_owned());
    }
    texts.extend(start_time.map(str::to_owned));
    Column::call(
        vec![time_column.into()],
        Arc::new(move |mut a| {
            let spec = crate::eventtime::WindowSpec::parse(&texts[0], texts.get(1).map(String::as_str), texts.get(2).map(String::as_str));
            if let Err(e) = spec {
                return Err(crate::Error::illegal_argument(e));
            }
            let mut args = vec![a.remove(0)];
            args.extend(texts.iter().map(|t| df_lit(t.clone())));
            Ok(Arc::new(crate::eventtime::SparkWindow::udf()).call(args))
        }),
        |_| "window".to_owned(),
    )
}

/// A session window's gap (Spark's `gapDuration`): a duration text such as `"5 minutes"`, the
/// same for every row, or a string column giving each row its own (Spark's dynamic gap).
pub enum SessionGap {
    /// One gap for every row, checked when the query is built.
    Fixed(String),
    /// A gap per row; a row whose gap is null, not an interval or not positive is left out of
    /// the aggregation, as Spark filters it out.
    PerRow(Column),
}

impl From<&str> for SessionGap {
    fn from(text: &str) -> Self {
        SessionGap::Fixed(text.to_owned())
    }
}

impl From<String> for SessionGap {
    fn from(text: String) -> Self {
        SessionGap::Fixed(text)
    }
}

impl From<Column> for SessionGap {
    fn from(column: Column) -> Self {
        SessionGap::PerRow(column)
    }
}

/// The session window of each row (Spark's `session_window(timeColumn, gapDuration)`): a
/// `struct<start, end>` column named `session_window`, `[time, time + gap)` for the row; grouped
/// by it, the sessions of a key that overlap merge into one (a row within `gap` of a session
/// extends it). The gap is a duration text (`"5 minutes"`) or a string column, one gap per row
/// (`when(col("user").eq(lit("a")), lit("1 minute")).otherwise(lit("5 minutes"))`).
pub fn session_window(time_column: impl Into<Column>, gap_duration: impl Into<SessionGap>) -> Column {
    let gap = match gap_duration.into() {
        SessionGap::PerRow(gaps) => {
            return Column::call(
                vec![time_column.into(), gaps],
                Arc::new(|a| Ok(Arc::new(crate::eventtime::SessionWindow::udf()).call(a))),
                |_| "session_window".to_owned(),
            );
        }
        SessionGap::Fixed(gap) => gap,
    };
    Column::call(
        vec![time_column.into()],
        Arc::new(move |mut a| {
            match crate::eventtime::parse_interval_us(&gap) {
                Ok(us) if us > 0 => {}
                Ok(_) => {
                    return Err(crate::Error::illegal_argument(format!(
                        "The session window's gap duration ({gap}) must be greater than 0."
                    )));
                }
                Err(e) => return Err(crate::Error::illegal_argument(e)),
            }
            Ok(Arc::new(crate::eventtime::SessionWindow::udf()).call(vec![a.remove(0), df_lit(gap.clone())]))
        }),
        |_| "session_window".to_owned(),
    )
}
