//! `SparkSession`: the entry point (Spark's), holding a DataFusion session with Spark's
//! functions, the temporary views, and the active streaming queries.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::TreeNode;
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::dataframe::DataFrame;
use crate::error::{Error, Result};
use crate::source::{SourceSpec, StreamTable};

struct Inner {
    app_name: String,
    workers: usize,
    ctx: SessionContext,
    next_source: AtomicUsize,
    pub(crate) queries: Mutex<Vec<crate::query::StreamingQuery>>,
}

/// The entry point to DataFrames and SQL over streams (Spark's `SparkSession`).
#[derive(Clone)]
pub struct SparkSession {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SparkSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SparkSession")
            .field("app_name", &self.inner.app_name)
            .field("workers", &self.inner.workers)
            .finish_non_exhaustive()
    }
}

/// Builds a [`SparkSession`] (Spark's `SparkSession.builder`).
#[derive(Clone, Debug, Default)]
pub struct Builder {
    app_name: Option<String>,
    master: Option<String>,
    config: BTreeMap<String, String>,
}

/// Worker threads of a `local`, `local[N]` or `local[*]` master.
pub(crate) fn workers_of(master: &str) -> Result<usize> {
    let cores = || std::thread::available_parallelism().map_or(1, |n| n.get());
    match master {
        "local" => Ok(1),
        "local[*]" => Ok(cores()),
        m => m
            .strip_prefix("local[")
            .and_then(|rest| rest.strip_suffix(']'))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                Error::illegal_argument(format!(
                    "master must be 'local', 'local[N]' or 'local[*]', got '{m}' (a cluster of processes is set with ember's cluster settings)"
                ))
            }),
    }
}

impl Builder {
    /// The application's name (`appName`).
    pub fn app_name(mut self, name: &str) -> Self {
        self.app_name = Some(name.to_owned());
        self
    }

    /// `local`, `local[N]` or `local[*]`: the worker threads (`master`).
    pub fn master(mut self, master: &str) -> Self {
        self.master = Some(master.to_owned());
        self
    }

    /// A setting (`config`); `spark.sql.shuffle.partitions` and others are kept, not used.
    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.config.insert(key.to_owned(), value.to_owned());
        self
    }

    /// A new session (Spark returns the active one; ember's sessions are cheap).
    pub fn get_or_create(self) -> Result<SparkSession> {
        let master = self
            .master
            .or_else(|| self.config.get("spark.master").cloned())
            .unwrap_or_else(|| "local[*]".to_owned());
        let workers = workers_of(&master)?;
        // One partition per plan copy: ember's workers are the parallelism.
        let config = SessionConfig::new()
            .with_target_partitions(1)
            .with_information_schema(false)
            .with_create_default_catalog_and_schema(true);
        let mut state = SessionStateBuilder::new().with_config(config).with_default_features().build();
        datafusion_spark::register_all(&mut state)?;
        state.add_analyzer_rule(Arc::new(crate::udf::SparkCasts));
        datafusion::execution::FunctionRegistry::register_udf(&mut state, Arc::new(crate::udf::SparkSplit::udf()))?;
        let ctx = SessionContext::new_with_state(state);
        Ok(SparkSession {
            inner: Arc::new(Inner {
                app_name: self.app_name.unwrap_or_else(|| "ember".to_owned()),
                workers,
                ctx,
                next_source: AtomicUsize::new(0),
                queries: Mutex::new(Vec::new()),
            }),
        })
    }
}

impl SparkSession {
    /// A builder (Spark's `SparkSession.builder`).
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The application's name.
    pub fn app_name(&self) -> &str {
        &self.inner.app_name
    }

    /// Worker threads per process, from the master.
    pub fn workers(&self) -> usize {
        self.inner.workers
    }

    pub(crate) fn state(&self) -> SessionState {
        self.inner.ctx.state()
    }

    /// Reads streams (Spark's `readStream`).
    pub fn read_stream(&self) -> DataStreamReader {
        DataStreamReader {
            session: self.clone(),
            format: "text".to_owned(),
            options: BTreeMap::new(),
        }
    }

    /// A DataFrame of SQL over the temporary views (Spark's `sql`); Spark's `explode` reads as
    /// DataFusion's `unnest`.
    pub fn sql(&self, query: &str) -> Result<DataFrame> {
        let state = self.state();
        let dialect = datafusion::sql::sqlparser::dialect::GenericDialect {};
        let mut statements = datafusion::sql::parser::DFParser::parse_sql_with_dialect(query, &dialect)?;
        if statements.len() != 1 {
            return Err(Error::analysis(format!("sql takes one statement, got {}", statements.len())));
        }
        let mut statement = statements.pop_front().expect("one statement");
        rename_generators(&mut statement);
        let plan = futures::executor::block_on(state.statement_to_plan(statement))?;
        Ok(DataFrame::new(self.clone(), datafusion::dataframe::DataFrame::new(state, plan)))
    }

    /// The active streaming queries (Spark's `spark.streams.active`).
    pub fn active_queries(&self) -> Vec<crate::query::StreamingQuery> {
        let mut queries = crate::lock(&self.inner.queries);
        queries.retain(crate::query::StreamingQuery::is_active);
        queries.clone()
    }

    pub(crate) fn track(&self, query: crate::query::StreamingQuery) {
        crate::lock(&self.inner.queries).push(query);
    }

    pub(crate) fn register_view(&self, name: &str, plan: LogicalPlan) -> Result<()> {
        let view = datafusion::catalog::view::ViewTable::new(plan, None);
        let _ = self.inner.ctx.deregister_table(name)?;
        self.inner.ctx.register_table(name, Arc::new(view))?;
        Ok(())
    }

    pub(crate) fn register_table(&self, name: &str, table: Arc<dyn TableProvider>) -> Result<()> {
        let _ = self.inner.ctx.deregister_table(name)?;
        self.inner.ctx.register_table(name, table)?;
        Ok(())
    }

    fn stream_frame(&self, spec: SourceSpec) -> Result<DataFrame> {
        let id = self.inner.next_source.fetch_add(1, Ordering::Relaxed);
        let table: Arc<dyn TableProvider> = Arc::new(StreamTable::new(id, spec));
        let plan = LogicalPlanBuilder::scan(format!("__stream_{id}"), provider_as_source(table), None)?.build()?;
        Ok(DataFrame::new(
            self.clone(),
            datafusion::dataframe::DataFrame::new(self.state(), plan),
        ))
    }
}

/// Spark's `explode(x)` in SQL is DataFusion's `unnest(x)`.
fn rename_generators(statement: &mut datafusion::sql::parser::Statement) {
    use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, ObjectNamePart, visit_expressions_mut};
    if let datafusion::sql::parser::Statement::Statement(inner) = statement {
        let _ = visit_expressions_mut(inner.as_mut(), |e| {
            if let SqlExpr::Function(f) = e
                && let [ObjectNamePart::Identifier(ident)] = f.name.0.as_mut_slice()
                && ident.value.eq_ignore_ascii_case("explode")
            {
                ident.value = "unnest".to_owned();
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
    }
}

/// The stream tables `plan` scans.
pub(crate) fn stream_sources(plan: &LogicalPlan) -> impl Iterator<Item = Arc<StreamTable>> {
    let mut found = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = source_as_provider(&scan.source)
            && let Some(table) = provider.downcast_ref::<StreamTable>()
        {
            found.push(Arc::new(StreamTable::new(table.id, table.spec.clone())));
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    // Views are inlined when the plan is analyzed; look into them too.
    let _ = plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = source_as_provider(&scan.source)
            && let Some(view) = provider.downcast_ref::<datafusion::catalog::view::ViewTable>()
        {
            found.extend(stream_sources(view.logical_plan()));
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    found.into_iter()
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
        other => other.to_string().to_lowercase(),
    }
}

/// Reads a stream (Spark's `DataStreamReader`).
#[derive(Clone, Debug)]
pub struct DataStreamReader {
    session: SparkSession,
    format: String,
    options: BTreeMap<String, String>,
}

impl DataStreamReader {
    /// The source: `socket` or `text` (Spark's `format`).
    pub fn format(mut self, format: &str) -> Self {
        self.format = format.to_owned();
        self
    }

    /// A source option (Spark's `option`).
    pub fn option(mut self, key: &str, value: impl ToString) -> Self {
        self.options.insert(key.to_owned(), value.to_string());
        self
    }

    /// The streaming DataFrame of the source (Spark's `load`).
    pub fn load(self) -> Result<DataFrame> {
        let spec = SourceSpec::from_options(&self.format, &self.options, None)?;
        self.session.stream_frame(spec)
    }

    /// The stream of the files of directory `path` (Spark's `load(path)`).
    pub fn load_path(self, path: impl AsRef<std::path::Path>) -> Result<DataFrame> {
        let path = path.as_ref().to_string_lossy().into_owned();
        let spec = SourceSpec::from_options(&self.format, &self.options, Some(&path))?;
        self.session.stream_frame(spec)
    }

    /// The lines of the files of directory `path` (Spark's `text(path)`).
    pub fn text(self, path: &str) -> Result<DataFrame> {
        let spec = SourceSpec::from_options("text", &self.options, Some(path))?;
        self.session.stream_frame(spec)
    }
}
