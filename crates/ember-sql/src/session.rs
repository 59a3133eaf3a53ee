//! `SparkSession`: the entry point (Spark's), holding a DataFusion session with Spark's
//! functions and the temporary views. What makes DataFrames of it (`read_stream`, `sql`) is
//! in `reader.rs`; its streaming queries in `query.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::catalog::TableProvider;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::error::{Error, Result};

/// Numbers sessions, for the queries each one started.
static NEXT_SESSION: AtomicUsize = AtomicUsize::new(0);

struct Inner {
    app_name: String,
    workers: usize,
    ctx: SessionContext,
    next_source: AtomicUsize,
    id: usize,
    /// What the temporary views' DataFrames carry beside their plans.
    views: std::sync::Mutex<BTreeMap<String, ViewInfo>>,
    /// The listeners of the session's queries.
    listeners: Arc<crate::listener::Listeners>,
    /// The queries that ended since the session began or `reset_terminated` (each with its
    /// failure, if it failed), for `await_any_termination`.
    terminated: Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>,
}

/// What a temporary view's DataFrame carries beside its plan, for `spark.sql` over it.
#[derive(Clone, Default)]
pub(crate) struct ViewInfo {
    pub watermarks: Vec<Arc<crate::eventtime::Watermark>>,
    pub dedup: Option<crate::dedup::DedupKind>,
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
        // Column names in SQL text keep their case (`clickAdId`): DataFusion would fold them to
        // lower case, and miss mixed-case columns Spark finds.
        let config = SessionConfig::new()
            .with_target_partitions(1)
            .with_information_schema(false)
            .with_create_default_catalog_and_schema(true)
            .set_bool("datafusion.sql_parser.enable_ident_normalization", false);
        let mut state = SessionStateBuilder::new().with_config(config).with_default_features().build();
        datafusion_spark::register_all(&mut state)?;
        state.add_analyzer_rule(Arc::new(crate::udf::SparkCasts));
        state.add_analyzer_rule(Arc::new(crate::eventtime::SlidingWindows));
        datafusion::execution::FunctionRegistry::register_udf(&mut state, Arc::new(crate::udf::SparkSplit::udf()))?;
        datafusion::execution::FunctionRegistry::register_udf(&mut state, Arc::new(crate::udf::SparkFromJson::udf()))?;
        datafusion::execution::FunctionRegistry::register_udf(&mut state, Arc::new(crate::eventtime::SparkWindow::udf()))?;
        datafusion::execution::FunctionRegistry::register_udf(&mut state, Arc::new(crate::eventtime::SessionWindow::udf()))?;
        let ctx = SessionContext::new_with_state(state);
        Ok(SparkSession {
            inner: Arc::new(Inner {
                app_name: self.app_name.unwrap_or_else(|| "ember".to_owned()),
                workers,
                ctx,
                next_source: AtomicUsize::new(0),
                id: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
                views: std::sync::Mutex::default(),
                listeners: Arc::default(),
                terminated: Arc::default(),
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

    /// This session's number among the process's sessions.
    pub(crate) fn id(&self) -> usize {
        self.inner.id
    }

    /// The next stream table's number.
    pub(crate) fn next_source(&self) -> usize {
        self.inner.next_source.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn state(&self) -> SessionState {
        self.inner.ctx.state()
    }

    pub(crate) fn context(&self) -> &SessionContext {
        &self.inner.ctx
    }

    pub(crate) fn listeners(&self) -> &Arc<crate::listener::Listeners> {
        &self.inner.listeners
    }

    pub(crate) fn terminated(&self) -> &Arc<std::sync::Mutex<Vec<(String, Option<String>)>>> {
        &self.inner.terminated
    }

    /// Forgets the queries that ended, for [`SparkSession::await_any_termination`] (Spark's
    /// `spark.streams.resetTerminated`).
    pub fn reset_terminated(&self) {
        crate::lock(&self.inner.terminated).clear();
    }

    pub(crate) fn register_view(&self, name: &str, plan: LogicalPlan, info: ViewInfo) -> Result<()> {
        let view = datafusion::catalog::view::ViewTable::new(plan, None);
        let _ = self.inner.ctx.deregister_table(name)?;
        self.inner.ctx.register_table(name, Arc::new(view))?;
        crate::lock(&self.inner.views).insert(name.to_owned(), info);
        Ok(())
    }

    /// What the temporary view `name`'s DataFrame carries (nothing for a table or no view).
    pub(crate) fn view_info(&self, name: &str) -> ViewInfo {
        crate::lock(&self.inner.views).get(name).cloned().unwrap_or_default()
    }

    pub(crate) fn register_table(&self, name: &str, table: Arc<dyn TableProvider>) -> Result<()> {
        let _ = self.inner.ctx.deregister_table(name)?;
        self.inner.ctx.register_table(name, table)?;
        Ok(())
    }
}
