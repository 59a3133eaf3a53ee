//! Spark's DDL text of a schema (`"word string, count long"`), as PySpark takes it for
//! `applyInPandasWithState`'s schemas and `readStream.schema(...)`.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::error::{Error, Result};

/// The schema of a DDL text: comma-separated `name type` pairs (names may be in backquotes;
/// types `string`, `long`/`bigint`, `int`/`integer`, `short`/`smallint`, `byte`/`tinyint`,
/// `double`, `float`/`real`, `boolean`, `timestamp`, `date`, `binary`, `array<type>`), every
/// column nullable as in Spark.
///
/// # Errors
///
/// An analysis error naming the part that is not a column or not a type.
pub fn schema_from_ddl(ddl: &str) -> Result<SchemaRef> {
    let mut fields = Vec::new();
    for part in split_top_level(ddl) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (name, type_text) = if let Some(rest) = part.strip_prefix('`') {
            let end = rest.find('`').ok_or_else(|| {
                Error::analysis(format!(
                    "[PARSE_SYNTAX_ERROR] Syntax error in the schema {ddl:?}: an unclosed ` in {part:?}"
                ))
            })?;
            (rest[..end].to_owned(), rest[end + 1..].trim())
        } else {
            let mut pieces = part.splitn(2, char::is_whitespace);
            let name = pieces.next().unwrap_or_default().trim_end_matches(':').to_owned();
            (name, pieces.next().unwrap_or_default().trim())
        };
        let type_text = type_text.trim_start_matches(':').trim();
        if name.is_empty() || type_text.is_empty() {
            return Err(Error::analysis(format!(
                "[PARSE_SYNTAX_ERROR] Syntax error in the schema {ddl:?}: {part:?} is not `name type`"
            )));
        }
        fields.push(Field::new(name, data_type(type_text, ddl)?, true));
    }
    if fields.is_empty() {
        return Err(Error::analysis(format!(
            "[PARSE_SYNTAX_ERROR] Syntax error in the schema {ddl:?}: no column"
        )));
    }
    Ok(Arc::new(Schema::new(fields)))
}

fn data_type(text: &str, ddl: &str) -> Result<DataType> {
    let lower = text.to_ascii_lowercase();
    Ok(match lower.as_str() {
        "string" | "varchar" | "char" => DataType::Utf8,
        "long" | "bigint" => DataType::Int64,
        "int" | "integer" => DataType::Int32,
        "short" | "smallint" => DataType::Int16,
        "byte" | "tinyint" => DataType::Int8,
        "double" => DataType::Float64,
        "float" | "real" => DataType::Float32,
        "boolean" | "bool" => DataType::Boolean,
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "date" => DataType::Date32,
        "binary" => DataType::Binary,
        _ => {
            if let Some(inner) = lower.strip_prefix("array<").and_then(|r| r.strip_suffix('>')) {
                let start = text.len() - inner.len() - 1;
                let element = data_type(&text[start..text.len() - 1], ddl)?;
                DataType::List(Arc::new(Field::new("element", element, true)))
            } else {
                return Err(Error::analysis(format!(
                    "[UNSUPPORTED_DATATYPE] Unsupported data type \"{}\" in the schema {ddl:?}",
                    text.to_ascii_uppercase()
                )));
            }
        }
    })
}

/// The parts of `text` between commas outside `<...>`.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_gives_sparks_types_nullable() {
        let schema = schema_from_ddl("word string, count long, `first seen` timestamp, tags array<string>, n INT").unwrap();
        let got: Vec<(String, DataType)> = schema.fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect();
        assert_eq!(got[0], ("word".into(), DataType::Utf8));
        assert_eq!(got[1], ("count".into(), DataType::Int64));
        assert_eq!(got[2].0, "first seen");
        assert!(matches!(got[3].1, DataType::List(_)));
        assert_eq!(got[4], ("n".into(), DataType::Int32));
        assert!(schema.fields().iter().all(|f| f.is_nullable()));
        assert!(schema_from_ddl("word strin").unwrap_err().to_string().contains("STRIN"));
        assert!(schema_from_ddl("word").is_err());
        assert!(schema_from_ddl("").is_err());
    }
}
