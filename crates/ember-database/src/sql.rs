//! The SQL ember writes: checked identifiers, multi-row inserts and upserts in each database's
//! dialect, and the table that records committed batches.

use crate::value::SqlValue;
use crate::{Error, Result};

/// The table where every sink records the batches it committed, in the same transaction as
/// their rows.
pub const BATCHES_TABLE: &str = "ember_sink_batches";

/// The database behind a URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

impl Backend {
    /// The database a URL names by its scheme.
    pub(crate) fn of(url: &str) -> Result<Backend> {
        let scheme = url.split_once(':').map_or("", |(s, _)| s);
        match scheme {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            "mysql" | "mariadb" => Ok(Backend::MySql),
            _ => Err(Error::Config(format!(
                "unsupported database URL scheme {scheme:?} in {}: use sqlite://, postgres:// or mysql:// (MySQL and MariaDB)",
                crate::redact(url)
            ))),
        }
    }

    /// Placeholder number `n` (from 1).
    fn placeholder(self, n: usize, out: &mut String) {
        match self {
            Backend::Postgres => {
                out.push('$');
                out.push_str(&n.to_string());
            }
            Backend::Sqlite | Backend::MySql => out.push('?'),
        }
    }

    /// Placeholder number `n` (from 1), as text.
    pub(crate) fn placeholder_text(self, n: usize) -> String {
        let mut s = String::new();
        self.placeholder(n, &mut s);
        s
    }

    /// `CREATE TABLE IF NOT EXISTS` for [`BATCHES_TABLE`].
    pub(crate) fn create_batches_table(self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {BATCHES_TABLE} (sink_id VARCHAR(200) NOT NULL, batch_time BIGINT NOT NULL, \
             row_count BIGINT NOT NULL, PRIMARY KEY (sink_id, batch_time))"
        )
    }

    /// Records a batch; fails with a unique violation when it was committed before.
    pub(crate) fn insert_batch_record(self) -> String {
        let mut sql = format!("INSERT INTO {BATCHES_TABLE} (sink_id, batch_time, row_count) VALUES (");
        for n in 1..=3 {
            if n > 1 {
                sql.push_str(", ");
            }
            self.placeholder(n, &mut sql);
        }
        sql.push(')');
        sql
    }

    /// Forgets the records of one sink's batches older than a time.
    pub(crate) fn prune_batch_records(self) -> String {
        let mut sql = format!("DELETE FROM {BATCHES_TABLE} WHERE sink_id = ");
        self.placeholder(1, &mut sql);
        sql.push_str(" AND batch_time < ");
        self.placeholder(2, &mut sql);
        sql
    }
}

/// Checks a table or column name: letters, digits and `_`, not starting with a digit; a table
/// may be qualified by its schema (`schema.table`). Names are written unquoted, so they follow
/// each database's usual case rules.
pub(crate) fn check_identifier(what: &str, name: &str, qualified: bool) -> Result<()> {
    let parts: Vec<&str> = if qualified { name.split('.').collect() } else { vec![name] };
    let valid = parts.len() <= 2
        && parts.iter().all(|p| {
            let mut chars = p.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
    if valid {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "invalid {what} name {name:?}: use letters, digits and _ (not starting with a digit){}",
            if qualified { ", optionally schema.table" } else { "" }
        )))
    }
}

/// How rows go into the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Insert,
    /// Insert, or update the other columns of the row with the same key.
    Upsert(Vec<String>),
}

/// The insert statement for `rows` rows, or `None` if some row has a `NULL` (written as a
/// literal: see [`SqlValue::Null`]), then built by [`insert_with_nulls`].
pub(crate) fn insert(backend: Backend, table: &str, columns: &[String], mode: &Mode, rows: usize) -> String {
    let mut sql = String::with_capacity(64 + rows * columns.len() * 4);
    head(table, columns, &mut sql);
    let mut n = 0;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..columns.len() {
            if c > 0 {
                sql.push_str(", ");
            }
            n += 1;
            backend.placeholder(n, &mut sql);
        }
        sql.push(')');
    }
    tail(backend, columns, mode, &mut sql);
    sql
}

/// The insert statement for `rows`, with `NULL` literals where a value is null and
/// placeholders elsewhere (bind the non-null values in order).
pub(crate) fn insert_with_nulls(backend: Backend, table: &str, columns: &[String], mode: &Mode, rows: &[Vec<SqlValue>]) -> String {
    let mut sql = String::new();
    head(table, columns, &mut sql);
    let mut n = 0;
    for (r, row) in rows.iter().enumerate() {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for (c, value) in row.iter().enumerate() {
            if c > 0 {
                sql.push_str(", ");
            }
            if *value == SqlValue::Null {
                sql.push_str("NULL");
            } else {
                n += 1;
                backend.placeholder(n, &mut sql);
            }
        }
        sql.push(')');
    }
    tail(backend, columns, mode, &mut sql);
    sql
}

fn head(table: &str, columns: &[String], sql: &mut String) {
    sql.push_str("INSERT INTO ");
    sql.push_str(table);
    sql.push_str(" (");
    sql.push_str(&columns.join(", "));
    sql.push_str(") VALUES ");
}

fn tail(backend: Backend, columns: &[String], mode: &Mode, sql: &mut String) {
    let Mode::Upsert(key) = mode else { return };
    let others: Vec<&String> = columns.iter().filter(|c| !key.contains(c)).collect();
    match backend {
        Backend::Postgres | Backend::Sqlite => {
            sql.push_str(" ON CONFLICT (");
            sql.push_str(&key.join(", "));
            if others.is_empty() {
                sql.push_str(") DO NOTHING");
            } else {
                sql.push_str(") DO UPDATE SET ");
                let sets: Vec<String> = others.iter().map(|c| format!("{c} = excluded.{c}")).collect();
                sql.push_str(&sets.join(", "));
            }
        }
        Backend::MySql => {
            // MariaDB and MySQL: the row's key is whatever unique key it collides with.
            sql.push_str(" ON DUPLICATE KEY UPDATE ");
            let sets: Vec<String> = match others.is_empty() {
                true => key.iter().map(|c| format!("{c} = {c}")).collect(),
                false => others.iter().map(|c| format!("{c} = VALUES({c})")).collect(),
            };
            sql.push_str(&sets.join(", "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<String> {
        vec!["word".into(), "count".into()]
    }

    #[test]
    fn inserts_use_each_dialects_placeholders() {
        assert_eq!(
            insert(Backend::Postgres, "wc", &cols(), &Mode::Insert, 2),
            "INSERT INTO wc (word, count) VALUES ($1, $2), ($3, $4)"
        );
        assert_eq!(
            insert(Backend::MySql, "wc", &cols(), &Mode::Insert, 2),
            "INSERT INTO wc (word, count) VALUES (?, ?), (?, ?)"
        );
    }

    #[test]
    fn upserts_update_the_columns_outside_the_key() {
        let mode = Mode::Upsert(vec!["word".into()]);
        assert_eq!(
            insert(Backend::Sqlite, "wc", &cols(), &mode, 1),
            "INSERT INTO wc (word, count) VALUES (?, ?) ON CONFLICT (word) DO UPDATE SET count = excluded.count"
        );
        assert_eq!(
            insert(Backend::MySql, "wc", &cols(), &mode, 1),
            "INSERT INTO wc (word, count) VALUES (?, ?) ON DUPLICATE KEY UPDATE count = VALUES(count)"
        );
    }

    #[test]
    fn nulls_are_literals_and_placeholders_count_the_rest() {
        let rows = vec![
            vec![SqlValue::Null, SqlValue::Int(1)],
            vec![SqlValue::Text("a".into()), SqlValue::Int(2)],
        ];
        assert_eq!(
            insert_with_nulls(Backend::Postgres, "wc", &cols(), &Mode::Insert, &rows),
            "INSERT INTO wc (word, count) VALUES (NULL, $1), ($2, $3)"
        );
    }

    #[test]
    fn identifiers_are_checked() {
        assert!(check_identifier("table", "public.word_counts", true).is_ok());
        assert!(check_identifier("column", "a.b", false).is_err());
        assert!(check_identifier("table", "x; DROP TABLE y", true).is_err());
        assert!(check_identifier("column", "1st", false).is_err());
        assert!(check_identifier("column", "", false).is_err());
    }
}
