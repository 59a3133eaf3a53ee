//! Values and rows: what a stream element becomes in a table.

use std::fmt;

/// One column value of a row.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    /// SQL `NULL` (written as a literal, so it fits a column of any type).
    Null,
    Bool(bool),
    /// Any integer up to 64 bits; databases convert it to narrower integer columns.
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

impl fmt::Display for SqlValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlValue::Null => f.write_str("NULL"),
            SqlValue::Bool(b) => write!(f, "{b}"),
            SqlValue::Int(i) => write!(f, "{i}"),
            SqlValue::Float(x) => write!(f, "{x}"),
            SqlValue::Text(s) => write!(f, "{s:?}"),
            SqlValue::Bytes(b) => write!(f, "<{} bytes>", b.len()),
        }
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for SqlValue {
            fn from(v: $t) -> Self {
                SqlValue::Int(i64::from(v))
            }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32);

impl From<f32> for SqlValue {
    fn from(v: f32) -> Self {
        SqlValue::Float(f64::from(v))
    }
}

impl From<f64> for SqlValue {
    fn from(v: f64) -> Self {
        SqlValue::Float(v)
    }
}

impl From<bool> for SqlValue {
    fn from(v: bool) -> Self {
        SqlValue::Bool(v)
    }
}

impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        SqlValue::Text(v)
    }
}

impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        SqlValue::Text(v.to_owned())
    }
}

impl From<Vec<u8>> for SqlValue {
    fn from(v: Vec<u8>) -> Self {
        SqlValue::Bytes(v)
    }
}

impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(SqlValue::Null, Into::into)
    }
}

/// A stream element as a table row: its values, in the order of the sink's columns.
///
/// Implemented for tuples of up to eight values that convert into [`SqlValue`] (`(String, i64)`
/// for a word count), and for `Vec<SqlValue>`. Implement it for your own types:
///
/// ```
/// use ember_database::{SqlValue, ToRow};
///
/// struct Sale { product: String, amount: f64 }
///
/// impl ToRow for Sale {
///     fn to_row(&self, row: &mut Vec<SqlValue>) {
///         row.push(self.product.clone().into());
///         row.push(self.amount.into());
///     }
/// }
/// ```
pub trait ToRow {
    /// Appends this element's values to `row`.
    fn to_row(&self, row: &mut Vec<SqlValue>);
}

impl ToRow for Vec<SqlValue> {
    fn to_row(&self, row: &mut Vec<SqlValue>) {
        row.extend(self.iter().cloned());
    }
}

macro_rules! tuple_row {
    ($($name:ident)+) => {
        impl<$($name: Clone + Into<SqlValue>),+> ToRow for ($($name,)+) {
            #[allow(non_snake_case)]
            fn to_row(&self, row: &mut Vec<SqlValue>) {
                let ($($name,)+) = self;
                $(row.push($name.clone().into());)+
            }
        }
    };
}
tuple_row!(A);
tuple_row!(A B);
tuple_row!(A B C);
tuple_row!(A B C D);
tuple_row!(A B C D E);
tuple_row!(A B C D E F);
tuple_row!(A B C D E F G);
tuple_row!(A B C D E F G H);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuples_become_rows_in_order() {
        let mut row = Vec::new();
        ("word".to_owned(), 3i64, Some(1.5f64), None::<i32>).to_row(&mut row);
        assert_eq!(
            row,
            vec![
                SqlValue::Text("word".into()),
                SqlValue::Int(3),
                SqlValue::Float(1.5),
                SqlValue::Null
            ]
        );
    }
}
