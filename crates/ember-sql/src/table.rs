//! DataFrames without streams: Spark's `spark.read` (`DataFrameReader`) over files, for the
//! static side of a stream-static join and for batch queries.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder};
use datafusion::prelude::{CsvReadOptions, JsonReadOptions, ident};

use crate::dataframe::DataFrame;
use crate::error::{Error, Result};
use crate::session::SparkSession;

impl SparkSession {
    /// Reads files as a DataFrame without streams (Spark's `read`).
    pub fn read(&self) -> DataFrameReader {
        DataFrameReader {
            session: self.clone(),
            format: "parquet".to_owned(),
            options: BTreeMap::new(),
        }
    }
}

/// Reads a table from files (Spark's `DataFrameReader`): `json` (one object a line, the schema
/// inferred with its fields in name order, as Spark infers it), `csv` (`header`, `sep`,
/// `inferSchema`: without it every column is a string, as in Spark; unnamed columns are `_c0`,
/// `_c1`, ...), `text` (a `value` column of lines).
#[derive(Clone, Debug)]
pub struct DataFrameReader {
    session: SparkSession,
    format: String,
    options: BTreeMap<String, String>,
}

impl DataFrameReader {
    /// The file format (Spark's `format`; Spark's default, parquet, is not in ember yet).
    pub fn format(mut self, format: &str) -> Self {
        self.format = format.to_ascii_lowercase();
        self
    }

    /// A reader option (Spark's `option`).
    pub fn option(mut self, key: &str, value: impl ToString) -> Self {
        self.options.insert(key.to_ascii_lowercase(), value.to_string());
        self
    }

    fn flag(&self, key: &str) -> Result<bool> {
        match self.options.get(key).map(|v| v.to_ascii_lowercase()) {
            None => Ok(false),
            Some(v) if v == "true" => Ok(true),
            Some(v) if v == "false" => Ok(false),
            Some(v) => Err(Error::illegal_argument(format!("{key} flag can be true or false, got '{v}'"))),
        }
    }

    /// The table of the file or directory `path` (Spark's `load(path)`).
    pub fn load(self, path: impl AsRef<std::path::Path>) -> Result<DataFrame> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(Error::analysis(format!(
                "[PATH_NOT_FOUND] Path does not exist: file:{}.",
                path.display()
            )));
        }
        let text = path.to_string_lossy().into_owned();
        // A file is read whatever its name; a directory, every file in it.
        let extension = if path.is_file() {
            path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default()
        } else {
            String::new()
        };
        let ctx = self.session.context();
        let df = match self.format.as_str() {
            "json" => {
                let options = JsonReadOptions {
                    file_extension: &extension,
                    ..JsonReadOptions::default()
                };
                let df = futures::executor::block_on(ctx.read_json(text, options))?;
                let mut names: Vec<String> = df.schema().fields().iter().map(|f| f.name().clone()).collect();
                names.sort();
                df.select(names.iter().map(|n| ident(n.as_str())).collect::<Vec<Expr>>())?
            }
            "csv" => {
                let header = self.flag("header")?;
                let infer = self.flag("inferschema")?;
                let sep = self
                    .options
                    .get("sep")
                    .or_else(|| self.options.get("delimiter"))
                    .map_or(",", String::as_str);
                let [delimiter] = sep.as_bytes() else {
                    return Err(Error::illegal_argument(format!(
                        "ember's csv reader takes a one-byte separator, got {sep:?}"
                    )));
                };
                let options = CsvReadOptions::new()
                    .has_header(header)
                    .delimiter(*delimiter)
                    .file_extension(&extension);
                let inferred = futures::executor::block_on(ctx.read_csv(text.clone(), options.clone()))?;
                let names: Vec<String> = inferred
                    .schema()
                    .fields()
                    .iter()
                    .enumerate()
                    .map(|(i, f)| if header { f.name().clone() } else { format!("_c{i}") })
                    .collect();
                let df = if infer {
                    inferred
                } else {
                    // Spark reads every column as a string unless told to infer.
                    let schema = Schema::new(
                        inferred
                            .schema()
                            .fields()
                            .iter()
                            .map(|f| Field::new(f.name(), DataType::Utf8, true))
                            .collect::<Vec<_>>(),
                    );
                    futures::executor::block_on(ctx.read_csv(text, options.schema(&schema)))?
                };
                let columns: Vec<Expr> = df
                    .schema()
                    .fields()
                    .iter()
                    .zip(&names)
                    .map(|(f, name)| ident(f.name()).alias(name))
                    .collect();
                df.select(columns)?
            }
            "text" => {
                let mut files: Vec<std::path::PathBuf> = if path.is_file() {
                    vec![path.to_path_buf()]
                } else {
                    std::fs::read_dir(path)
                        .map_err(|e| Error::illegal_argument(format!("cannot read {}: {e}", path.display())))?
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(['.', '_'])))
                        .collect()
                };
                files.sort();
                let mut lines = Vec::new();
                for file in &files {
                    lines.extend(crate::source::read_lines(file).map_err(Error::illegal_argument)?);
                }
                let schema = Arc::new(Schema::new(vec![Field::new("value", DataType::Utf8, true)]));
                let batch = crate::source::lines_batch(&schema, lines);
                let table = datafusion::datasource::MemTable::try_new(schema, vec![vec![batch]])?;
                let plan = LogicalPlanBuilder::scan("text", provider_as_source(Arc::new(table)), None)?.build()?;
                datafusion::dataframe::DataFrame::new(self.session.state(), plan)
            }
            other => {
                return Err(Error::unsupported(format!(
                    "reading {other} files (ember's spark.read takes json, csv and text)"
                )));
            }
        };
        Ok(DataFrame::new(self.session.clone(), df))
    }

    /// [`DataFrameReader::load`] of JSON lines (Spark's `json(path)`).
    pub fn json(self, path: impl AsRef<std::path::Path>) -> Result<DataFrame> {
        self.format("json").load(path)
    }

    /// [`DataFrameReader::load`] of CSV (Spark's `csv(path)`).
    pub fn csv(self, path: impl AsRef<std::path::Path>) -> Result<DataFrame> {
        self.format("csv").load(path)
    }

    /// [`DataFrameReader::load`] of text lines (Spark's `text(path)`).
    pub fn text(self, path: impl AsRef<std::path::Path>) -> Result<DataFrame> {
        self.format("text").load(path)
    }
}
