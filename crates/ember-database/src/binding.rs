//! Values bound into statements and read back from rows, through sqlx's `Any` driver.

use sqlx::Row as _;

use crate::value::SqlValue;

/// One row's columns as values.
pub(crate) fn row_values(row: &sqlx::any::AnyRow) -> Vec<SqlValue> {
    (0..row.len())
        .map(|i| {
            if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                return v.map_or(SqlValue::Null, SqlValue::Int);
            }
            if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
                return v.map_or(SqlValue::Null, SqlValue::Float);
            }
            if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                return v.map_or(SqlValue::Null, SqlValue::Text);
            }
            if let Ok(v) = row.try_get::<Option<bool>, _>(i) {
                return v.map_or(SqlValue::Null, SqlValue::Bool);
            }
            row.try_get::<Option<Vec<u8>>, _>(i)
                .ok()
                .flatten()
                .map_or(SqlValue::Null, SqlValue::Bytes)
        })
        .collect()
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds a non-null value (ember's own statements write nulls as literals).
pub(crate) fn bind<'q>(query: AnyQuery<'q>, value: &'q SqlValue) -> AnyQuery<'q> {
    match value {
        SqlValue::Null => query,
        other => bind_param(query, other),
    }
}

/// Binds `params` in order (nulls as text `NULL`s).
pub(crate) fn bind_all<'q>(mut query: AnyQuery<'q>, params: &'q [SqlValue]) -> AnyQuery<'q> {
    for value in params {
        query = bind_param(query, value);
    }
    query
}

/// Binds a value; a null as a text `NULL`.
pub(crate) fn bind_param<'q>(query: AnyQuery<'q>, value: &'q SqlValue) -> AnyQuery<'q> {
    match value {
        SqlValue::Null => query.bind(None::<String>),
        SqlValue::Bool(b) => query.bind(*b),
        SqlValue::Int(i) => query.bind(*i),
        SqlValue::Float(x) => query.bind(*x),
        SqlValue::Text(s) => query.bind(s.as_str()),
        SqlValue::Bytes(b) => query.bind(b.as_slice()),
    }
}
