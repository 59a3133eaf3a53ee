//! Spark's text rendering of rows: `Dataset.show(numRows, truncate)` (the console sink prints
//! it under each `Batch: N` header), and the strings Spark's `show` makes of each value.
//!
//! Spark's rules (`Dataset.showString`, 3.5): every cell becomes a string (`NULL` for a null);
//! with `truncate > 0` a cell longer than `truncate` keeps its first `truncate - 3` characters
//! and `...` (its first `truncate` when that is under 4), and cells are right-aligned; with
//! `truncate == 0` they are left-aligned; a column is at least 3 characters wide; more rows than
//! `numRows` adds `only showing top N rows`.

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type, TimeUnit};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

/// A value as Spark's `show` prints it.
pub fn cell(array: &dyn Array, row: usize) -> String {
    if array.is_null(row) {
        return "NULL".to_owned();
    }
    match array.data_type() {
        DataType::Float64 => java_double(array.as_primitive::<Float64Type>().value(row)),
        DataType::Float32 => java_float(array.as_primitive::<Float32Type>().value(row)),
        DataType::Boolean => array.as_boolean().value(row).to_string(),
        DataType::Utf8 => array.as_string::<i32>().value(row).to_owned(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).to_owned(),
        DataType::Utf8View => array.as_string_view().value(row).to_owned(),
        DataType::Binary => bytes(array.as_binary::<i32>().value(row)),
        DataType::LargeBinary => bytes(array.as_binary::<i64>().value(row)),
        DataType::List(_) => {
            let list = array.as_list::<i32>().value(row);
            sequence(&list, "[", "]")
        }
        DataType::LargeList(_) => {
            let list = array.as_list::<i64>().value(row);
            sequence(&list, "[", "]")
        }
        DataType::Struct(_) => {
            let fields = array.as_struct();
            let values: Vec<String> = fields.columns().iter().map(|c| nested(c.as_ref(), row)).collect();
            format!("{{{}}}", values.join(", "))
        }
        DataType::Timestamp(unit, _) => timestamp(array, row, unit),
        _ => {
            let options = FormatOptions::default().with_null("NULL");
            ArrayFormatter::try_new(array, &options)
                .map(|f| f.value(row).to_string())
                .unwrap_or_else(|e| format!("<{e}>"))
        }
    }
}

/// A value inside an array or a struct: Spark writes nested nulls as `null`.
fn nested(array: &dyn Array, row: usize) -> String {
    if array.is_null(row) { "null".to_owned() } else { cell(array, row) }
}

fn sequence(values: &dyn Array, open: &str, close: &str) -> String {
    let items: Vec<String> = (0..values.len()).map(|i| nested(values, i)).collect();
    format!("{open}{}{close}", items.join(", "))
}

/// Binary as Spark 3.5's `show` prints it: `[4A 6F]`.
fn bytes(value: &[u8]) -> String {
    let hex: Vec<String> = value.iter().map(|b| format!("{b:02X}")).collect();
    format!("[{}]", hex.join(" "))
}

/// `yyyy-MM-dd HH:mm:ss[.fraction]`, the fraction without trailing zeros, in UTC.
fn timestamp(array: &dyn Array, row: usize, unit: &TimeUnit) -> String {
    use datafusion::arrow::datatypes::{TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType};
    let nanos: i128 = match unit {
        TimeUnit::Second => i128::from(array.as_primitive::<TimestampSecondType>().value(row)) * 1_000_000_000,
        TimeUnit::Millisecond => i128::from(array.as_primitive::<TimestampMillisecondType>().value(row)) * 1_000_000,
        TimeUnit::Microsecond => i128::from(array.as_primitive::<TimestampMicrosecondType>().value(row)) * 1_000,
        TimeUnit::Nanosecond => i128::from(array.as_primitive::<TimestampNanosecondType>().value(row)),
    };
    let seconds = nanos.div_euclid(1_000_000_000) as i64;
    let fraction = nanos.rem_euclid(1_000_000_000) as u32;
    let Some(time) = datafusion::arrow::temporal_conversions::timestamp_s_to_datetime(seconds) else {
        return format!("<timestamp {nanos} ns out of range>");
    };
    let mut text = time.format("%Y-%m-%d %H:%M:%S").to_string();
    if fraction != 0 {
        let digits = format!("{fraction:09}");
        text.push('.');
        text.push_str(digits.trim_end_matches('0'));
    }
    text
}

/// Java's `Double.toString`: the shortest digits that read back as the same double, plain
/// between 10^-3 and 10^7 (`1.0`, `0.25`), in computerized scientific notation outside
/// (`1.0E7`, `1.5E-4`).
pub fn java_double(value: f64) -> String {
    java_floating(value, format!("{value:e}"))
}

/// Java's `Float.toString`, the same rules over the shortest digits of an `f32`.
pub fn java_float(value: f32) -> String {
    java_floating(f64::from(value), format!("{value:e}"))
}

fn java_floating(value: f64, shortest: String) -> String {
    if value.is_nan() {
        return "NaN".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    // `shortest` is Rust's `{:e}`: `-1.2345e-7`, digits shortest-round-trip.
    let (mantissa, exponent) = shortest.split_once('e').unwrap_or((&shortest, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if negative { "-" } else { "" };
    let magnitude = value.abs();
    if (1e-3..1e7).contains(&magnitude) {
        // Plain: the point sits `exponent + 1` digits in.
        let point = exponent + 1;
        let (whole, fraction) = if point <= 0 {
            ("0".to_owned(), format!("{}{}", "0".repeat((-point) as usize), digits))
        } else if point as usize >= digits.len() {
            (format!("{}{}", digits, "0".repeat(point as usize - digits.len())), String::new())
        } else {
            (digits[..point as usize].to_owned(), digits[point as usize..].to_owned())
        };
        let fraction = if fraction.is_empty() { "0".to_owned() } else { fraction };
        format!("{sign}{whole}.{fraction}")
    } else {
        let (first, rest) = digits.split_at(1);
        let rest = if rest.is_empty() { "0" } else { rest };
        format!("{sign}{first}.{rest}E{exponent}")
    }
}

/// How many columns a string takes on a terminal, as Spark's `Utils.stringHalfWidth` counts:
/// full-width (East Asian) characters take two.
fn width(text: &str) -> usize {
    text.chars().map(|c| if is_full_width(c) { 2 } else { 1 }).sum()
}

fn is_full_width(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x115F | 0x2E80..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6 | 0x20000..=0x2FFFD | 0x30000..=0x3FFFD)
}

fn truncated(text: String, truncate: usize) -> String {
    let length = text.chars().count();
    if truncate == 0 || length <= truncate {
        return text;
    }
    if truncate < 4 {
        text.chars().take(truncate).collect()
    } else {
        let mut kept: String = text.chars().take(truncate - 3).collect();
        kept.push_str("...");
        kept
    }
}

/// `show(num_rows, truncate)` of `batches` (which hold the rows in order), as Spark prints it:
/// the table, and `only showing top N rows` when there were more; each line ends with `\n`.
pub fn show_string(column_names: &[String], batches: &[RecordBatch], num_rows: usize, truncate: usize) -> String {
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut rows: Vec<Vec<String>> = Vec::with_capacity(num_rows.min(total) + 1);
    rows.push(column_names.iter().map(|n| truncated(n.clone(), truncate)).collect());
    'batches: for batch in batches {
        for row in 0..batch.num_rows() {
            if rows.len() > num_rows {
                break 'batches;
            }
            rows.push(
                batch
                    .columns()
                    .iter()
                    .map(|column| truncated(cell(column.as_ref(), row), truncate))
                    .collect(),
            );
        }
    }
    let columns = column_names.len();
    let mut widths = vec![3usize; columns];
    for row in &rows {
        for (i, text) in row.iter().enumerate() {
            widths[i] = widths[i].max(width(text));
        }
    }
    let separator: String = widths.iter().fold(String::from("+"), |mut line, w| {
        line.push_str(&"-".repeat(*w));
        line.push('+');
        line
    });
    let mut out = String::new();
    let line = |out: &mut String, row: &[String]| {
        out.push('|');
        for (i, text) in row.iter().enumerate() {
            let pad = " ".repeat(widths[i] - width(text));
            if truncate > 0 {
                out.push_str(&pad);
                out.push_str(text);
            } else {
                out.push_str(text);
                out.push_str(&pad);
            }
            out.push('|');
        }
        out.push('\n');
    };
    out.push_str(&separator);
    out.push('\n');
    line(&mut out, &rows[0]);
    out.push_str(&separator);
    out.push('\n');
    for row in rows.iter().skip(1) {
        line(&mut out, row);
    }
    out.push_str(&separator);
    out.push('\n');
    if total > num_rows {
        let noun = if num_rows == 1 { "row" } else { "rows" };
        out.push_str(&format!("only showing top {num_rows} {noun}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn doubles_read_as_java_prints_them() {
        let cases = [
            (1.0, "1.0"),
            (0.25, "0.25"),
            (2.5, "2.5"),
            (100.0, "100.0"),
            (1234567.0, "1234567.0"),
            (1e7, "1.0E7"),
            (12345678.9, "1.23456789E7"),
            (0.001, "0.001"),
            (0.0001, "1.0E-4"),
            (-0.5, "-0.5"),
            (1.0 / 3.0, "0.3333333333333333"),
            (0.0, "0.0"),
        ];
        for (value, java) in cases {
            assert_eq!(java_double(value), java, "{value}");
        }
        assert_eq!(java_double(f64::NAN), "NaN");
    }

    #[test]
    fn a_table_is_right_aligned_truncated_and_cut_at_num_rows() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("word", DataType::Utf8, true),
            Field::new("count", DataType::Int64, false),
            Field::new("avg", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("cat"), None, Some("a very long word of thirty chars")])),
                Arc::new(Int64Array::from(vec![1, 22, 3])),
                Arc::new(Float64Array::from(vec![Some(1.5), Some(2.0), None])),
            ],
        )
        .unwrap();
        let names = vec!["word".to_owned(), "count".to_owned(), "avg".to_owned()];
        assert_eq!(
            show_string(&names, std::slice::from_ref(&batch), 20, 20),
            "+--------------------+-----+----+\n\
             |                word|count| avg|\n\
             +--------------------+-----+----+\n\
             |                 cat|    1| 1.5|\n\
             |                NULL|   22| 2.0|\n\
             |a very long word ...|    3|NULL|\n\
             +--------------------+-----+----+\n"
        );
        assert_eq!(
            show_string(&names, std::slice::from_ref(&batch), 1, 0),
            "+----+-----+---+\n\
             |word|count|avg|\n\
             +----+-----+---+\n\
             |cat |1    |1.5|\n\
             +----+-----+---+\n\
             only showing top 1 row\n"
        );
    }
}
