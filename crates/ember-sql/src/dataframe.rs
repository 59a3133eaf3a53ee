//! `DataFrame`: a query over streams (or tables), with Spark's operations. Each operation
//! extends a DataFusion logical plan; nothing runs until a query starts.

use std::collections::HashSet;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{NullHandling, UnnestOptions};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::prelude::ident;

use crate::error::{Error, Result};
use crate::eventtime::Watermark;
use crate::functions::{Column, Resolved};
use crate::session::SparkSession;

/// A distributed collection of rows under a schema (Spark's `DataFrame`); a streaming one is
/// an unbounded table fed by its sources.
#[derive(Clone)]
pub struct DataFrame {
    pub(crate) session: SparkSession,
    pub(crate) df: datafusion::dataframe::DataFrame,
    /// The SQL text this DataFrame came from (`spark.sql`), for the origins Spark's messages name.
    pub(crate) sql: Option<std::sync::Arc<String>>,
    /// The watermarks of this DataFrame's streams (`withWatermark`).
    pub(crate) watermarks: Vec<std::sync::Arc<Watermark>>,
    /// Its top aggregation is a deduplication (`dropDuplicates`).
    pub(crate) dedup: Option<crate::dedup::DedupKind>,
}

impl std::fmt::Debug for DataFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let columns: Vec<String> = self
            .columns()
            .into_iter()
            .zip(self.df.schema().fields().iter())
            .map(|(name, field)| format!("{name}: {}", spark_type(field.data_type())))
            .collect();
        write!(f, "DataFrame[{}]", columns.join(", "))
    }
}

/// A predicate for [`DataFrame::filter`]: a column, or SQL text.
pub enum Predicate {
    Column(Column),
    Sql(String),
}

impl From<Column> for Predicate {
    fn from(column: Column) -> Self {
        Predicate::Column(column)
    }
}

impl From<&str> for Predicate {
    fn from(sql: &str) -> Self {
        Predicate::Sql(sql.to_owned())
    }
}

/// The name a generator's input column gets while the select is planned.
const EXPLODED: &str = "__ember_explode";

impl DataFrame {
    pub(crate) fn new(session: SparkSession, df: datafusion::dataframe::DataFrame) -> Self {
        DataFrame {
            session,
            df,
            sql: None,
            watermarks: Vec::new(),
            dedup: None,
        }
    }

    fn with(&self, df: datafusion::dataframe::DataFrame) -> DataFrame {
        DataFrame {
            sql: self.sql.clone(),
            watermarks: self.watermarks.clone(),
            dedup: self.dedup,
            ..DataFrame::new(self.session.clone(), df)
        }
    }

    /// Defines the watermark of this stream (Spark's `withWatermark`): `event_time` is a
    /// timestamp column, and the watermark of a micro-batch is the greatest event time seen
    /// before it minus `delay_threshold` (`"10 minutes"`). Stateful operations keyed by that
    /// time (a `window` of it, or the column itself) drop rows older than the watermark and
    /// free the state it has passed.
    pub fn with_watermark(&self, event_time: &str, delay_threshold: &str) -> Result<DataFrame> {
        let Some(field) = self.df.schema().fields().iter().find(|f| f.name() == event_time) else {
            let mut names: Vec<String> = self.columns().iter().map(|c| format!("`{c}`")).collect();
            names.sort();
            return Err(Error::analysis(format!(
                "[UNRESOLVED_COLUMN.WITH_SUGGESTION] A column or function parameter with name `{event_time}` cannot be resolved. Did you mean one of the following? [{}].",
                names.join(", ")
            )));
        };
        if !matches!(field.data_type(), DataType::Timestamp(..)) {
            return Err(Error::analysis(format!(
                "[EVENT_TIME_IS_NOT_ON_TIMESTAMP_TYPE] The event time `{event_time}` has the invalid type \"{}\", but expected \"TIMESTAMP\".;",
                spark_type(field.data_type()).to_ascii_uppercase()
            )));
        }
        let delay_ms = crate::eventtime::parse_delay_ms(delay_threshold).map_err(Error::analysis)?;
        if delay_ms < 0 {
            return Err(Error::illegal_argument(format!(
                "requirement failed: delay threshold ({delay_threshold}) should not be negative."
            )));
        }
        let mut df = self.clone();
        df.watermarks.push(std::sync::Arc::new(Watermark {
            column: event_time.to_owned(),
            delay_ms,
            plan: self.df.logical_plan().clone(),
        }));
        Ok(df)
    }

    /// The session this DataFrame belongs to (Spark's `sparkSession`).
    pub fn spark_session(&self) -> &SparkSession {
        &self.session
    }

    /// The column names, in order.
    pub fn columns(&self) -> Vec<String> {
        self.df.schema().fields().iter().map(|f| f.name().clone()).collect()
    }

    /// Each column's name and Spark's name of its type (Spark's `dtypes`).
    pub fn dtypes(&self) -> Vec<(String, String)> {
        self.df
            .schema()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), spark_type(f.data_type())))
            .collect()
    }

    /// The DataFusion logical plan (unoptimized).
    pub fn logical_plan(&self) -> &LogicalPlan {
        self.df.logical_plan()
    }

    /// Whether some source of this DataFrame is a stream (Spark's `isStreaming`).
    pub fn is_streaming(&self) -> bool {
        crate::source::stream_sources(self.df.logical_plan()).next().is_some()
    }

    fn check_columns(&self, resolved: &[Resolved]) -> Result<()> {
        let schema = self.df.schema();
        for r in resolved {
            for column in r.expr.column_refs() {
                if schema.has_column(column) {
                    continue;
                }
                let name = &column.name;
                let mut names: Vec<String> = self.columns().iter().map(|c| format!("`{c}`")).collect();
                names.sort();
                return Err(Error::analysis(format!(
                    "[UNRESOLVED_COLUMN.WITH_SUGGESTION] A column or function parameter with name `{name}` cannot be resolved. Did you mean one of the following? [{}].",
                    names.join(", ")
                )));
            }
        }
        Ok(())
    }

    fn resolve_all(&self, columns: Vec<Column>) -> Result<Vec<Resolved>> {
        let resolved = columns.iter().map(|c| c.resolve(&self.df)).collect::<Result<Vec<_>>>()?;
        self.check_columns(&resolved)?;
        Ok(resolved)
    }

    /// The given columns, computed per row (Spark's `select`). One of them may be a generator
    /// (`explode`), which gives a row per element.
    pub fn select<C: Into<Column>>(&self, columns: impl IntoIterator<Item = C>) -> Result<DataFrame> {
        let resolved = self.resolve_all(columns.into_iter().map(Into::into).collect())?;
        self.project(resolved)
    }

    fn project(&self, resolved: Vec<Resolved>) -> Result<DataFrame> {
        let generators = resolved.iter().filter(|r| r.explode).count();
        if generators > 1 {
            return Err(Error::analysis(format!(
                "[UNSUPPORTED_GENERATOR.MULTI_GENERATOR] The generator is not supported: only one generator allowed per select clause but found {generators}: explode."
            )));
        }
        let named = |r: &Resolved| -> Expr {
            match &r.expr {
                Expr::Column(c) if c.name == r.name => r.expr.clone(),
                e => e.clone().alias(&r.name),
            }
        };
        if generators == 0 {
            let exprs: Vec<Expr> = resolved.iter().map(named).collect();
            return Ok(self.with(self.df.clone().select(exprs)?));
        }
        // A generator: the other columns and the generator's input first, then unnest, then
        // the final names (Spark drops the rows of null or empty arrays).
        let mut first = Vec::with_capacity(resolved.len());
        let mut last = Vec::with_capacity(resolved.len());
        for (i, r) in resolved.iter().enumerate() {
            if r.explode {
                let Expr::Unnest(unnest) = &r.expr else {
                    return Err(Error::analysis("explode must be the outermost function of its column"));
                };
                first.push((*unnest.expr).clone().alias(EXPLODED));
                last.push(ident(EXPLODED).alias(&r.name));
            } else {
                let hidden = format!("__ember_select_{i}");
                first.push(r.expr.clone().alias(&hidden));
                last.push(ident(hidden).alias(&r.name));
            }
        }
        let options = UnnestOptions::new().with_null_handling(NullHandling::Drop);
        let df = self
            .df
            .clone()
            .select(first)?
            .unnest_columns_with_options(&[EXPLODED], options)?
            .select(last)?;
        Ok(self.with(df))
    }

    /// Columns from SQL expressions (Spark's `selectExpr`).
    pub fn select_expr(&self, exprs: &[&str]) -> Result<DataFrame> {
        self.select(exprs.iter().map(|e| crate::functions::expr(e)))
    }

    /// The rows for which `condition` is true (Spark's `filter`): a column, or SQL text.
    pub fn filter(&self, condition: impl Into<Predicate>) -> Result<DataFrame> {
        let column = match condition.into() {
            Predicate::Column(c) => c,
            Predicate::Sql(text) => crate::functions::expr(&text),
        };
        let resolved = self.resolve_all(vec![column])?;
        let predicate = resolved.into_iter().next().map(|r| r.expr).expect("one condition");
        Ok(self.with(self.df.clone().filter(predicate)?))
    }

    /// The same as [`DataFrame::filter`] (Spark's `where`).
    pub fn where_(&self, condition: impl Into<Predicate>) -> Result<DataFrame> {
        self.filter(condition)
    }

    /// Every column, and `column` as `name` (replacing a column of that name; Spark's
    /// `withColumn`).
    pub fn with_column(&self, name: &str, column: Column) -> Result<DataFrame> {
        let resolved = self.resolve_all(vec![column])?;
        let expr = resolved.into_iter().next().map(|r| r.expr).expect("one column");
        Ok(self.with(self.df.clone().with_column(name, expr)?))
    }

    /// Column `existing` named `new` (no-op when there is no such column; Spark's
    /// `withColumnRenamed`).
    pub fn with_column_renamed(&self, existing: &str, new: &str) -> Result<DataFrame> {
        Ok(self.with(self.df.clone().with_column_renamed(existing, new)?))
    }

    /// Every column but `names` (names that are not columns are ignored; Spark's `drop`).
    pub fn drop(&self, names: &[&str]) -> Result<DataFrame> {
        let gone: HashSet<&str> = names.iter().copied().collect();
        let kept: Vec<Expr> = self
            .columns()
            .iter()
            .filter(|c| !gone.contains(c.as_str()))
            .map(|c| ident(c.as_str()))
            .collect();
        Ok(self.with(self.df.clone().select(kept)?))
    }

    /// The rows of this DataFrame and then `other`'s, by column position (Spark's `union`).
    pub fn union(&self, other: &DataFrame) -> Result<DataFrame> {
        let mut union = self.with(self.df.clone().union(other.df.clone())?);
        union.watermarks.extend(other.watermarks.iter().cloned());
        Ok(union)
    }

    /// The rows of this DataFrame joined with `other`'s on the columns `on` of both (Spark's
    /// `join(other, on, how)`): the `on` columns once (for a full outer join, the one that is not
    /// null), then this DataFrame's other columns, then `other`'s. `how` is Spark's join type
    /// (`inner`, `left`/`left_outer`, `right`, `full`/`outer`, `left_semi`, `left_anti`, `cross`,
    /// ...). A stream joins a table (a DataFrame without streams) in the combinations Spark
    /// takes, checked at `start`; two streams join through [`DataFrame::join_on`].
    pub fn join(&self, other: &DataFrame, on: &[&str], how: &str) -> Result<DataFrame> {
        use datafusion::common::JoinType;
        let join_type = join_type(how)?;
        for (side, df) in [("left", self), ("right", other)] {
            if let Some(missing) = on.iter().find(|k| !df.columns().iter().any(|c| c == *k)) {
                return Err(Error::analysis(format!(
                    "[UNRESOLVED_USING_COLUMN_FOR_JOIN] USING column `{missing}` cannot be resolved on the {side} side of the join. The {side}-side columns: [{}].",
                    df.columns().iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        const LEFT: &str = "__ember_left";
        const RIGHT: &str = "__ember_right";
        let side = |q: &str, name: &str| Expr::Column(datafusion::common::Column::new(Some(q), name));
        let left = self.df.clone().alias(LEFT)?;
        let right = other.df.clone().alias(RIGHT)?;
        let joined = if on.is_empty() {
            left.join(right, join_type, &[], &[], None)?
        } else {
            left.join(right, join_type, on, on, None)?
        };
        let mut columns: Vec<Expr> = on
            .iter()
            .map(|k| {
                match join_type {
                    JoinType::Right => side(RIGHT, k),
                    JoinType::Full => datafusion::functions::expr_fn::coalesce(vec![side(LEFT, k), side(RIGHT, k)]),
                    _ => side(LEFT, k),
                }
                .alias(*k)
            })
            .collect();
        let kept = |df: &DataFrame, q: &'static str| -> Vec<Expr> {
            df.columns()
                .into_iter()
                .filter(|c| !on.contains(&c.as_str()))
                .map(|c| side(q, &c).alias(c))
                .collect()
        };
        columns.extend(kept(self, LEFT));
        if !matches!(join_type, JoinType::LeftSemi | JoinType::LeftAnti) {
            columns.extend(kept(other, RIGHT));
        }
        let mut df = self.with(joined.select(columns)?);
        df.watermarks.extend(other.watermarks.iter().cloned());
        Ok(df)
    }

    /// The rows without repeats of the columns `subset` (all columns when `None`; Spark's
    /// `dropDuplicates`). On a stream the first row of each key goes through and later ones do
    /// not; the keys are kept until the watermark passes them when the event-time column is one
    /// of them, otherwise for ever.
    pub fn drop_duplicates(&self, subset: Option<&[&str]>) -> Result<DataFrame> {
        self.deduplicated(subset, crate::dedup::DedupKind::Plain)
    }

    /// The rows without repeats of `subset` within the watermark's delay (Spark's
    /// `dropDuplicatesWithinWatermark`): a key is kept until the watermark passes its first
    /// row's event time plus the delay. The stream needs a watermark.
    pub fn drop_duplicates_within_watermark(&self, subset: Option<&[&str]>) -> Result<DataFrame> {
        self.deduplicated(subset, crate::dedup::DedupKind::WithinWatermark)
    }

    fn deduplicated(&self, subset: Option<&[&str]>, kind: crate::dedup::DedupKind) -> Result<DataFrame> {
        let columns = self.columns();
        let keys: Vec<String> = match subset {
            Some(names) => names.iter().map(|n| (*n).to_owned()).collect(),
            None => columns.clone(),
        };
        if let Some(missing) = keys.iter().find(|k| !columns.contains(k)) {
            return Err(Error::analysis(format!(
                "[UNRESOLVED_COLUMN_AMONG_FIELD_NAMES] Cannot resolve column name \"{missing}\" among ({}).",
                columns.join(", ")
            )));
        }
        if self.dedup.is_some() {
            return Err(Error::unsupported("a deduplication of a deduplication"));
        }
        let others: Vec<Expr> = columns
            .iter()
            .filter(|c| !keys.contains(c))
            .map(|c| datafusion::functions_aggregate::expr_fn::first_value(ident(c.as_str()), vec![]).alias(c.as_str()))
            .collect();
        let df = self
            .df
            .clone()
            .aggregate(keys.iter().map(|k| ident(k.as_str())).collect(), others)?
            .select(columns.iter().map(|c| ident(c.as_str())).collect::<Vec<Expr>>())?;
        let mut deduplicated = self.with(df);
        deduplicated.dedup = Some(kind);
        Ok(deduplicated)
    }

    /// The rows of this DataFrame joined with `other`'s where `condition` holds (Spark's
    /// `join(other, on=Column, how)`, such as
    /// `expr("clickAdId = impressionAdId AND clickTime >= impressionTime")`): this DataFrame's columns, then `other`'s (for `left_semi` and
    /// `left_anti`, this DataFrame's only). Column names in the condition must be unambiguous.
    /// Two streams join this way (inner, left, right and full outer, in append mode), their
    /// state freed by the watermarks of both and the condition's time range.
    pub fn join_on(&self, other: &DataFrame, condition: Column, how: &str) -> Result<DataFrame> {
        let join_type = join_type(how)?;
        const LEFT: &str = "__ember_left";
        const RIGHT: &str = "__ember_right";
        let left = self.df.clone().alias(LEFT)?;
        let right = other.df.clone().alias(RIGHT)?;
        // The condition reads both sides' columns: it is resolved against their cross product.
        let both = left
            .clone()
            .join_on(right.clone(), datafusion::common::JoinType::Inner, [datafusion::prelude::lit(true)])?;
        let resolved = condition.resolve(&both)?;
        let joined = left.join_on(right, join_type, [resolved.expr])?;
        let side = |q: &str, name: &str| Expr::Column(datafusion::common::Column::new(Some(q), name)).alias(name);
        let mut columns: Vec<Expr> = self.columns().iter().map(|c| side(LEFT, c)).collect();
        if !matches!(
            join_type,
            datafusion::common::JoinType::LeftSemi | datafusion::common::JoinType::LeftAnti
        ) {
            columns.extend(other.columns().iter().map(|c| side(RIGHT, c)));
        }
        let mut df = self.with(joined.select(columns)?);
        df.watermarks.extend(other.watermarks.iter().cloned());
        Ok(df)
    }

    /// Groups the rows by `columns` for an aggregation (Spark's `groupBy`).
    pub fn group_by<C: Into<Column>>(&self, columns: impl IntoIterator<Item = C>) -> GroupedData {
        GroupedData {
            df: self.clone(),
            keys: columns.into_iter().map(Into::into).collect(),
        }
    }

    /// Aggregates over all rows (Spark's `agg` on a DataFrame: a global aggregation).
    pub fn agg(&self, columns: impl IntoIterator<Item = Column>) -> Result<DataFrame> {
        self.group_by(Vec::<Column>::new()).agg(columns)
    }

    /// Names this DataFrame for `spark.sql` (Spark's `createOrReplaceTempView`).
    pub fn create_or_replace_temp_view(&self, name: &str) -> Result<()> {
        self.session.register_view(
            name,
            self.df.logical_plan().clone(),
            crate::session::ViewInfo {
                watermarks: self.watermarks.clone(),
                dedup: self.dedup,
            },
        )
    }

    /// The plans, as text (Spark's `explain`): the logical plan, and with `extended` the
    /// optimized logical and the physical plans too.
    pub fn explain_string(&self, extended: bool) -> Result<String> {
        let logical = self.df.logical_plan().display_indent().to_string();
        if !extended {
            return Ok(format!("== Physical Plan ==\n{}\n", self.physical_text()?));
        }
        let optimized = self.session.state().optimize(self.df.logical_plan())?;
        Ok(format!(
            "== Parsed Logical Plan ==\n{logical}\n\n== Optimized Logical Plan ==\n{}\n\n== Physical Plan ==\n{}\n",
            optimized.display_indent(),
            self.physical_text()?
        ))
    }

    fn physical_text(&self) -> Result<String> {
        let plan = self.physical_plan()?;
        Ok(datafusion::physical_plan::displayable(plan.as_ref()).indent(true).to_string())
    }

    /// DataFusion's physical plan of this DataFrame.
    pub(crate) fn physical_plan(&self) -> Result<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        Ok(futures::executor::block_on(
            self.session.state().create_physical_plan(self.df.logical_plan()),
        )?)
    }

    /// Prints [`DataFrame::explain_string`] (Spark's `explain`).
    pub fn explain(&self, extended: bool) -> Result<()> {
        print!("{}", self.explain_string(extended)?);
        Ok(())
    }

    /// The rows of a DataFrame without streams, such as a memory sink's table (Spark's
    /// `collect`); a streaming DataFrame is refused as Spark refuses it.
    pub fn collect(&self) -> Result<Vec<datafusion::arrow::array::RecordBatch>> {
        if self.is_streaming() {
            return Err(Error::analysis(
                "Queries with streaming sources must be executed with writeStream.start();",
            ));
        }
        Ok(futures::executor::block_on(self.df.clone().collect())?)
    }

    /// The schema of the rows, as Arrow gives it.
    pub fn arrow_schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        std::sync::Arc::new(self.df.schema().as_arrow().clone())
    }

    /// The number of rows of a DataFrame without streams (Spark's `count`).
    pub fn count(&self) -> Result<usize> {
        Ok(self.collect()?.iter().map(|b| b.num_rows()).sum())
    }

    /// The first `num_rows` rows as Spark's `show` prints them, cells cut to `truncate`
    /// characters (0: not cut).
    pub fn show_string(&self, num_rows: usize, truncate: usize) -> Result<String> {
        Ok(crate::show::show_string(&self.columns(), &self.collect()?, num_rows, truncate))
    }
}

/// A DataFrame grouped by keys, for an aggregation (Spark's `GroupedData`).
#[derive(Clone, Debug)]
pub struct GroupedData {
    df: DataFrame,
    keys: Vec<Column>,
}

impl GroupedData {
    /// The rows of each group, in a column named `count` (Spark's `count`).
    pub fn count(&self) -> Result<DataFrame> {
        self.agg([crate::functions::count("*").alias("count")])
    }

    /// The aggregates `columns` of each group, after the keys (Spark's `agg`).
    pub fn agg(&self, columns: impl IntoIterator<Item = Column>) -> Result<DataFrame> {
        let keys = self.df.resolve_all(self.keys.clone())?;
        let aggregates = self.df.resolve_all(columns.into_iter().collect())?;
        let key_exprs: Vec<Expr> = keys
            .iter()
            .map(|r| match &r.expr {
                Expr::Column(c) if c.name == r.name => r.expr.clone(),
                e => e.clone().alias(&r.name),
            })
            .collect();
        let aggregate_exprs: Vec<Expr> = aggregates.iter().map(|r| r.expr.clone().alias(&r.name)).collect();
        let df = self.df.df.clone().aggregate(key_exprs, aggregate_exprs)?;
        Ok(self.df.with(df))
    }
}

impl GroupedData {
    /// Calls `func` for every group with rows in a micro-batch, and for every group whose
    /// state timed out, with the group's key, its rows (all this DataFrame's columns; none on
    /// a timeout) and its state; the rows it returns, of `output_schema` (by position), make
    /// the new DataFrame (Spark's `flatMapGroupsWithState`). `output_mode` is the function's
    /// (`append` or `update`), and must be the query's; `timeout` says when states time out.
    /// The state `S` is kept on worker 0 and in the checkpoint, as JSON.
    ///
    /// ```no_run
    /// # use ember_sql::{DataFrame, GroupState, GroupStateTimeout, ScalarValue, arrow};
    /// # use ember_sql::functions::col;
    /// # fn f(events: DataFrame) -> ember_sql::Result<DataFrame> {
    /// use arrow::array::{Int64Array, RecordBatch, StringArray};
    /// let schema = ember_sql::schema_from_ddl("word string, count long")?;
    /// let out = std::sync::Arc::clone(&schema);
    /// events.group_by([col("word")]).flat_map_groups_with_state(
    ///     "update",
    ///     GroupStateTimeout::NoTimeout,
    ///     schema,
    ///     move |key: &[ScalarValue], rows: RecordBatch, state: &mut GroupState<i64>| {
    ///         let total = state.get_option().copied().unwrap_or(0) + rows.num_rows() as i64;
    ///         state.update(total);
    ///         let word = StringArray::from(vec![key[0].to_string()]);
    ///         Ok(vec![RecordBatch::try_new(out.clone(), vec![std::sync::Arc::new(word), std::sync::Arc::new(Int64Array::from(vec![total]))])?])
    ///     },
    /// )
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// Spark's, for an output mode other than append or update; a key that cannot be
    /// resolved; a DataFrame with a deduplication.
    pub fn flat_map_groups_with_state<S, F>(
        &self,
        output_mode: &str,
        timeout: crate::state::GroupStateTimeout,
        output_schema: datafusion::arrow::datatypes::SchemaRef,
        func: F,
    ) -> Result<DataFrame>
    where
        S: serde::Serialize + serde::de::DeserializeOwned + 'static,
        F: FnMut(
                &[datafusion::common::ScalarValue],
                datafusion::arrow::array::RecordBatch,
                &mut crate::state::GroupState<S>,
            ) -> Result<Vec<datafusion::arrow::array::RecordBatch>>
            + Send
            + 'static,
    {
        let function = crate::state::Typed {
            func,
            _state: std::marker::PhantomData,
        };
        self.with_state_function("flatMapGroupsWithState", output_mode, timeout, output_schema, Box::new(function))
    }

    /// [`GroupedData::flat_map_groups_with_state`] over a function of states as bytes, named
    /// `api` in messages (the Python bridge's `applyInPandasWithState`).
    #[doc(hidden)]
    pub fn with_state_function(
        &self,
        api: &'static str,
        output_mode: &str,
        timeout: crate::state::GroupStateTimeout,
        output_schema: datafusion::arrow::datatypes::SchemaRef,
        function: Box<dyn crate::state::GroupFunction>,
    ) -> Result<DataFrame> {
        let mode = crate::sink::OutputMode::parse(output_mode)?;
        if mode == crate::sink::OutputMode::Complete {
            return Err(Error::illegal_argument("The output mode of function should be append or update"));
        }
        if self.df.dedup.is_some() {
            return Err(Error::unsupported(format!("{api} over the rows of dropDuplicates")));
        }
        let keys = self.df.resolve_all(self.keys.clone())?;
        let mut columns: Vec<Expr> = keys
            .iter()
            .enumerate()
            .map(|(i, r)| r.expr.clone().alias(format!("__ember_key_{i}")))
            .collect();
        columns.extend(self.df.columns().iter().map(|c| ident(c.as_str())));
        let stage = self.df.df.clone().select(columns)?.logical_plan().clone();
        let spec = std::sync::Arc::new(crate::state::GroupsWithState {
            stage,
            keys: keys.len(),
            function: std::sync::Mutex::new(function),
            output_schema,
            timeout,
            mode,
            api,
        });
        let table = std::sync::Arc::new(crate::state::GroupsOutputTable { spec });
        let plan = datafusion::logical_expr::LogicalPlanBuilder::scan(
            "__ember_groups_with_state",
            datafusion::datasource::provider_as_source(table),
            None,
        )?
        .build()?;
        let session = self.df.session.clone();
        Ok(self.df.with(datafusion::dataframe::DataFrame::new(session.state(), plan)))
    }
}

/// DataFusion's join type of Spark's name of one (`how`).
fn join_type(how: &str) -> Result<datafusion::common::JoinType> {
    use datafusion::common::JoinType;
    Ok(match how.to_ascii_lowercase().replace('_', "").as_str() {
        "inner" => JoinType::Inner,
        "cross" => JoinType::Inner,
        "outer" | "full" | "fullouter" => JoinType::Full,
        "left" | "leftouter" => JoinType::Left,
        "right" | "rightouter" => JoinType::Right,
        "semi" | "leftsemi" => JoinType::LeftSemi,
        "anti" | "leftanti" => JoinType::LeftAnti,
        _ => {
            return Err(Error::illegal_argument(format!(
                "Unsupported join type '{how}'. Supported join types include: 'inner', 'outer', 'full', 'fullouter', 'full_outer', 'leftouter', 'left', 'left_outer', 'rightouter', 'right', 'right_outer', 'leftsemi', 'left_semi', 'semi', 'leftanti', 'left_anti', 'anti', 'cross'."
            )));
        }
    })
}

/// Spark's name of a type, as `printSchema` and `DataFrame`'s text show it.
pub(crate) fn spark_type(data_type: &DataType) -> String {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".to_owned(),
        DataType::Int64 => "bigint".to_owned(),
        DataType::Int32 => "int".to_owned(),
        DataType::Int16 => "smallint".to_owned(),
        DataType::Int8 => "tinyint".to_owned(),
        DataType::Float64 => "double".to_owned(),
        DataType::Float32 => "float".to_owned(),
        DataType::Boolean => "boolean".to_owned(),
        DataType::Timestamp(..) => "timestamp".to_owned(),
        DataType::Date32 => "date".to_owned(),
        DataType::Binary | DataType::LargeBinary => "binary".to_owned(),
        DataType::List(f) | DataType::LargeList(f) => format!("array<{}>", spark_type(f.data_type())),
        DataType::Struct(fields) => format!(
            "struct<{}>",
            fields
                .iter()
                .map(|f| format!("{}:{}", f.name(), spark_type(f.data_type())))
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => other.to_string().to_lowercase(),
    }
}
