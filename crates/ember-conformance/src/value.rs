//! `V`: the dynamic values of the vectors (JSON numbers, strings, null, arrays).

use serde::{Deserialize, Serialize};

/// A vector value. Pairs are two-element lists; they become Rust tuples at pair operations.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum V {
    /// JSON `null` (Spark's `None`).
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer (Spark Int or Long).
    Int(i64),
    /// A string.
    Str(String),
    /// A list, tuple or pair.
    List(Vec<V>),
}

impl V {
    /// Converts JSON into a value.
    ///
    /// # Errors
    ///
    /// Floats and objects, which no vector uses.
    pub fn from_json(j: &serde_json::Value) -> Result<V, String> {
        Ok(match j {
            serde_json::Value::Null => V::Null,
            serde_json::Value::Bool(b) => V::Bool(*b),
            serde_json::Value::Number(n) => V::Int(n.as_i64().ok_or_else(|| format!("unsupported number {n}"))?),
            serde_json::Value::String(s) => V::Str(s.clone()),
            serde_json::Value::Array(a) => V::List(a.iter().map(V::from_json).collect::<Result<_, _>>()?),
            serde_json::Value::Object(_) => return Err("objects are not values".into()),
        })
    }

    /// A two-element list.
    pub fn pair(a: V, b: V) -> V {
        V::List(vec![a, b])
    }

    /// Splits a `[k, v]` pair; panics (failing the batch's job, as a Spark task would) for
    /// anything else.
    pub fn into_pair(self) -> (V, V) {
        match self {
            V::List(mut l) if l.len() == 2 => {
                let b = l.pop().unwrap_or(V::Null);
                let a = l.pop().unwrap_or(V::Null);
                (a, b)
            }
            other => panic!("expected a [key, value] pair, got {other}"),
        }
    }

    /// The integer, or a panic naming the value.
    pub fn int(&self) -> i64 {
        match self {
            V::Int(i) => *i,
            other => panic!("expected an integer, got {other}"),
        }
    }

    /// The string, or a panic naming the value.
    pub fn str(&self) -> &str {
        match self {
            V::Str(s) => s,
            other => panic!("expected a string, got {other}"),
        }
    }
}

impl std::fmt::Display for V {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            V::Null => write!(f, "null"),
            V::Bool(b) => write!(f, "{b}"),
            V::Int(i) => write!(f, "{i}"),
            V::Str(s) => write!(f, "{s:?}"),
            V::List(l) => {
                write!(f, "[")?;
                for (i, x) in l.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{x}")?;
                }
                write!(f, "]")
            }
        }
    }
}
