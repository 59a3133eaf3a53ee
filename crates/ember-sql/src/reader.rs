//! Making DataFrames from a session: streams (`read_stream`, Spark's `DataStreamReader`) and
//! SQL (`sql`).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::TreeNode;
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};

use crate::dataframe::DataFrame;
use crate::error::{Error, Result};
use crate::session::SparkSession;
use crate::source::{SourceSpec, StreamTable};

impl SparkSession {
    /// Reads streams (Spark's `readStream`).
    pub fn read_stream(&self) -> DataStreamReader {
        DataStreamReader {
            session: self.clone(),
            format: "text".to_owned(),
            options: BTreeMap::new(),
            schema: None,
        }
    }

    /// A DataFrame of the given rows (Spark's `createDataFrame`, from Arrow record batches of
    /// one schema); `foreachBatch` programs get each micro-batch's output this way.
    pub fn create_data_frame(
        &self,
        schema: datafusion::arrow::datatypes::SchemaRef,
        batches: Vec<datafusion::arrow::array::RecordBatch>,
    ) -> Result<DataFrame> {
        let table = datafusion::datasource::MemTable::try_new(schema, vec![batches])?;
        let plan = LogicalPlanBuilder::scan("batch", provider_as_source(Arc::new(table)), None)?.build()?;
        Ok(DataFrame::new(
            self.clone(),
            datafusion::dataframe::DataFrame::new(self.state(), plan),
        ))
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
        // A view whose DataFrame had a watermark or a deduplication brings it along.
        let mut watermarks = Vec::new();
        let mut dedup = None;
        let _ = plan.apply(|node| {
            // DataFusion inlines a view as its plan under the view's name.
            let name = match node {
                LogicalPlan::TableScan(scan) => Some(scan.table_name.table()),
                LogicalPlan::SubqueryAlias(alias) => Some(alias.alias.table()),
                _ => None,
            };
            if let Some(n) = name {
                let info = self.view_info(n);
                watermarks.extend(info.watermarks);
                dedup = dedup.or(info.dedup);
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        });
        let mut df = DataFrame::new(self.clone(), datafusion::dataframe::DataFrame::new(state, plan));
        df.sql = Some(Arc::new(query.to_owned()));
        // A view read twice brings its watermarks once.
        let mut unique: Vec<Arc<crate::eventtime::Watermark>> = Vec::new();
        for w in watermarks {
            if !unique.iter().any(|u| Arc::ptr_eq(u, &w)) {
                unique.push(w);
            }
        }
        df.watermarks = unique;
        df.dedup = dedup;
        Ok(df)
    }

    fn stream_frame(&self, spec: SourceSpec) -> Result<DataFrame> {
        let id = self.next_source();
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
        zero_based_subscripts(inner.as_mut());
    }
}

/// Spark's `array[i]` counts from 0 and is null below 0; DataFusion's counts from 1, and from
/// the end below 0. A subscript by a number literal is moved to DataFusion's count (one by
/// another expression is left as it is: it may be a map's key).
pub(crate) fn zero_based_subscripts<V: datafusion::sql::sqlparser::ast::VisitMut>(node: &mut V) {
    use datafusion::sql::sqlparser::ast::{AccessExpr, Expr as SqlExpr, Subscript, UnaryOperator, Value, visit_expressions_mut};
    let literal = |e: &SqlExpr| -> Option<i64> {
        match e {
            SqlExpr::Value(v) => match &v.value {
                Value::Number(n, _) => n.parse::<i64>().ok(),
                _ => None,
            },
            SqlExpr::UnaryOp {
                op: UnaryOperator::Minus,
                expr,
            } => match expr.as_ref() {
                SqlExpr::Value(v) => match &v.value {
                    Value::Number(n, _) => n.parse::<i64>().ok().map(|n| -n),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        }
    };
    let _ = visit_expressions_mut(node, |e| {
        if let SqlExpr::CompoundFieldAccess { access_chain, .. } = e {
            for access in access_chain.iter_mut() {
                if let AccessExpr::Subscript(Subscript::Index { index }) = access
                    && let Some(i) = literal(index)
                {
                    // No element: beyond any array's end.
                    let position = if i < 0 { i64::from(i32::MAX) } else { i + 1 };
                    *index = SqlExpr::value(Value::Number(position.to_string(), false));
                }
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// Reads a stream (Spark's `DataStreamReader`).
#[derive(Clone, Debug)]
pub struct DataStreamReader {
    session: SparkSession,
    format: String,
    options: BTreeMap<String, String>,
    schema: Option<datafusion::arrow::datatypes::SchemaRef>,
}

impl DataStreamReader {
    /// The source: `socket`, `text`, `rate` or `kafka` (Spark's `format`).
    pub fn format(mut self, format: &str) -> Self {
        self.format = format.to_owned();
        self
    }

    /// A source option (Spark's `option`).
    pub fn option(mut self, key: &str, value: impl ToString) -> Self {
        self.options.insert(key.to_owned(), value.to_string());
        self
    }

    /// The rows' schema, for the csv and json file sources (Spark's `schema`); see
    /// [`crate::schema_from_ddl`] for a schema from Spark's DDL text.
    pub fn schema(mut self, schema: datafusion::arrow::datatypes::SchemaRef) -> Self {
        self.schema = Some(schema);
        self
    }

    /// The streaming DataFrame of the source (Spark's `load`).
    pub fn load(self) -> Result<DataFrame> {
        let spec = SourceSpec::from_options(&self.format, &self.options, None, self.schema)?;
        self.session.stream_frame(spec)
    }

    /// The stream of the files of directory `path` (Spark's `load(path)`).
    pub fn load_path(self, path: impl AsRef<std::path::Path>) -> Result<DataFrame> {
        let path = path.as_ref().to_string_lossy().into_owned();
        let spec = SourceSpec::from_options(&self.format, &self.options, Some(&path), self.schema)?;
        self.session.stream_frame(spec)
    }

    /// The lines of the files of directory `path` (Spark's `text(path)`).
    pub fn text(self, path: &str) -> Result<DataFrame> {
        let spec = SourceSpec::from_options("text", &self.options, Some(path), None)?;
        self.session.stream_frame(spec)
    }
}
