//! The Spark functions that neither DataFusion nor `datafusion-spark` has, as DataFusion UDFs
//! with Spark's semantics.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListBuilder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility};

/// Spark's `split(str, regex[, limit])`: the pieces of `str` around the matches of the Java
/// regular expression `regex` (most patterns read the same in Rust's `regex`), as an
/// `array<string>`. A limit above 0 gives at most that many pieces, the last holding the rest;
/// otherwise (Spark's default, -1) every piece, trailing empty strings included, as Java's
/// `String.split(regex, -1)`. A null string or pattern gives null.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SparkSplit {
    signature: Signature,
}

impl SparkSplit {
    pub fn new() -> Self {
        SparkSplit {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8, DataType::Int32]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8, DataType::Int64]),
                ],
                Volatility::Immutable,
            ),
        }
    }

    /// The UDF, for a session's registry.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(SparkSplit::new())
    }
}

impl Default for SparkSplit {
    fn default() -> Self {
        Self::new()
    }
}

/// A pattern that is plain text (no regex metacharacter) is split on as text.
fn literal(pattern: &str) -> Option<&str> {
    let special = |c: char| "\\^$.|?*+()[]{}".contains(c);
    (!pattern.is_empty() && !pattern.chars().any(special)).then_some(pattern)
}

pub(crate) enum Splitter {
    /// A one-character literal: found with `memchr` (a word count's `" "`).
    Char(char),
    Text(String),
    Regex(regex::Regex),
}

impl Splitter {
    pub(crate) fn new(pattern: &str) -> Result<Self> {
        match literal(pattern) {
            Some(text) => {
                let mut chars = text.chars();
                Ok(match (chars.next(), chars.next()) {
                    (Some(c), None) => Splitter::Char(c),
                    _ => Splitter::Text(text.to_owned()),
                })
            }
            None => match regex::Regex::new(pattern) {
                Ok(re) => Ok(Splitter::Regex(re)),
                Err(e) => exec_err!("split: the pattern {pattern:?} is not a regular expression ember reads: {e}"),
            },
        }
    }

    fn split_into(&self, text: &str, limit: i64, out: &mut StringBuilder) {
        self.for_each_piece(text, limit, |piece| out.append_value(piece));
    }

    /// Calls `f` with each piece of `text`, in order (the limit as in [`SparkSplit`]).
    pub(crate) fn for_each_piece<'t>(&self, text: &'t str, limit: i64, f: impl FnMut(&'t str)) {
        let limit = if limit > 0 { limit as usize } else { usize::MAX };
        match self {
            Splitter::Char(sep) => text.splitn(limit, *sep).for_each(f),
            Splitter::Text(sep) => text.splitn(limit, sep.as_str()).for_each(f),
            Splitter::Regex(re) => re.splitn(text, limit).for_each(f),
        }
    }
}

fn scalar_text(value: &ColumnarValue) -> Option<Option<String>> {
    match value {
        ColumnarValue::Scalar(ScalarValue::Utf8(s)) => Some(s.clone()),
        _ => None,
    }
}

impl ScalarUDFImpl for SparkSplit {
    fn name(&self) -> &str {
        "split"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if arg_types.first() != Some(&DataType::Utf8) {
            return plan_err!("split takes a string, got {:?}", arg_types.first());
        }
        Ok(DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let limit = match args.args.get(2) {
            None => -1,
            Some(ColumnarValue::Scalar(v)) => match v {
                ScalarValue::Int32(Some(n)) => i64::from(*n),
                ScalarValue::Int64(Some(n)) => *n,
                _ => -1,
            },
            Some(ColumnarValue::Array(_)) => return exec_err!("split: the limit must be a constant"),
        };
        let strings = args.args[0].clone().into_array(rows)?;
        let strings = strings.as_string::<i32>();
        let mut out = ListBuilder::new(StringBuilder::new());
        match scalar_text(&args.args[1]) {
            Some(None) => {
                for _ in 0..rows {
                    out.append_null();
                }
            }
            Some(Some(pattern)) => {
                let splitter = Splitter::new(&pattern)?;
                for row in 0..rows {
                    if strings.is_null(row) {
                        out.append_null();
                    } else {
                        splitter.split_into(strings.value(row), limit, out.values());
                        out.append(true);
                    }
                }
            }
            None => {
                let patterns = args.args[1].clone().into_array(rows)?;
                let patterns = patterns.as_string::<i32>();
                for row in 0..rows {
                    if strings.is_null(row) || patterns.is_null(row) {
                        out.append_null();
                    } else {
                        Splitter::new(patterns.value(row))?.split_into(strings.value(row), limit, out.values());
                        out.append(true);
                    }
                }
            }
        }
        let array: ArrayRef = Arc::new(out.finish());
        Ok(ColumnarValue::Array(array))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &str, pattern: &str, limit: i64) -> Vec<String> {
        let mut out = StringBuilder::new();
        Splitter::new(pattern).unwrap().split_into(text, limit, &mut out);
        let array = out.finish();
        (0..array.len()).map(|i| array.value(i).to_owned()).collect()
    }

    #[test]
    fn split_keeps_javas_empty_pieces_and_limit() {
        assert_eq!(pieces("a b", " ", -1), ["a", "b"]);
        assert_eq!(pieces(" a  b ", " ", -1), ["", "a", "", "b", ""]);
        assert_eq!(pieces("", " ", -1), [""]);
        assert_eq!(pieces("a1b22c", "[0-9]+", -1), ["a", "b", "c"]);
        assert_eq!(pieces("a,b,c", ",", 2), ["a", "b,c"]);
        assert_eq!(pieces("a.b", ".", -1), ["", "", "", ""]);
        assert_eq!(pieces("a.b", "\\.", -1), ["a", "b"]);
    }
}

/// Spark's casts outside ANSI mode (its default): a value that does not convert gives null
/// (`CAST('x' AS BIGINT)` is null), where DataFusion's `CAST` fails the query. Every cast of a
/// plan becomes DataFusion's `TRY_CAST`.
#[derive(Debug, Default)]
pub struct SparkCasts;

impl datafusion::optimizer::AnalyzerRule for SparkCasts {
    fn analyze(
        &self,
        plan: datafusion::logical_expr::LogicalPlan,
        _config: &datafusion::common::config::ConfigOptions,
    ) -> Result<datafusion::logical_expr::LogicalPlan> {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        use datafusion::logical_expr::{Cast, Expr, TryCast};
        plan.transform_up_with_subqueries(|node| {
            node.map_expressions(|e| {
                e.transform_up(|e| match e {
                    Expr::Cast(Cast { expr, field }) => Ok(Transformed::yes(Expr::TryCast(TryCast { expr, field }))),
                    other => Ok(Transformed::no(other)),
                })
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "spark_casts"
    }
}

/// Spark's `from_json(jsonStr, schema)`: the JSON object in each string as a struct of the
/// schema (Spark's DDL text, a literal), its fields cast from their JSON text and null where
/// they do not fit; a string that is not a JSON object gives a struct of nulls (Spark's
/// `PERMISSIVE`); a null string gives null.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SparkFromJson {
    signature: Signature,
}

impl SparkFromJson {
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(SparkFromJson {
            signature: Signature::exact(vec![DataType::Utf8, DataType::Utf8], Volatility::Immutable),
        })
    }

    fn fields(schema: Option<&ScalarValue>) -> Result<datafusion::arrow::datatypes::Fields> {
        match schema {
            Some(ScalarValue::Utf8(Some(ddl))) => match crate::types::schema_from_ddl(ddl) {
                Ok(schema) => Ok(schema.fields().clone()),
                Err(e) => plan_err!("from_json: {e}"),
            },
            _ => plan_err!("from_json takes its schema as a literal DDL string (\"a INT, b STRING\")"),
        }
    }
}

impl ScalarUDFImpl for SparkFromJson {
    fn name(&self) -> &str {
        "from_json"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        plan_err!("from_json's type comes from its schema argument")
    }

    fn return_field_from_args(&self, args: datafusion::logical_expr::ReturnFieldArgs) -> Result<datafusion::arrow::datatypes::FieldRef> {
        let fields = Self::fields(args.scalar_arguments.get(1).copied().flatten())?;
        Ok(Arc::new(Field::new(self.name(), DataType::Struct(fields), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::StructArray;
        use datafusion::arrow::buffer::NullBuffer;
        let DataType::Struct(fields) = args.return_field.data_type().clone() else {
            return exec_err!("from_json returns a struct");
        };
        let texts = args.args[0].to_array(args.number_rows)?;
        let texts = texts.as_string::<i32>();
        let valid: Vec<bool> = (0..texts.len()).map(|row| texts.is_valid(row)).collect();
        let arrays = match crate::source::json_columns(texts.iter(), &fields) {
            Ok(arrays) => arrays,
            Err(e) => return exec_err!("from_json: {e}"),
        };
        let nulls = NullBuffer::from(valid);
        Ok(ColumnarValue::Array(Arc::new(StructArray::try_new(fields, arrays, Some(nulls))?)))
    }
}
