//! The conformance runner: maps FORMAT.md's stage descriptors and function vocabulary onto
//! real ember operators, runs each vector on a manual clock, and compares the outputs.

pub mod runner;
pub mod value;
pub mod vocabulary;

use serde_json::Value as Json;

pub use runner::{Outcome, run_vector};

/// Totals of a run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Vectors whose checks held.
    pub passed: usize,
    /// Vectors with a failed check.
    pub failed: usize,
    /// Vectors not run, with a reason printed.
    pub skipped: usize,
}

/// Runs every vector of a JSON array, calling `report` with each id and outcome.
///
/// # Errors
///
/// When the text is not a JSON array.
pub fn run_all(text: &str, workers: usize, mut report: impl FnMut(&str, &Outcome)) -> Result<Summary, String> {
    let vectors: Json = serde_json::from_str(text).map_err(|e| format!("the vectors are not valid JSON: {e}"))?;
    let list = vectors.as_array().ok_or("the vectors file must hold a JSON array")?;
    let mut summary = Summary::default();
    for v in list {
        let id = v.get("id").and_then(Json::as_str).unwrap_or("<no id>");
        let outcome = run_vector(v, workers);
        match outcome {
            Outcome::Pass => summary.passed += 1,
            Outcome::Fail(_) => summary.failed += 1,
            Outcome::Skip(_) => summary.skipped += 1,
        }
        report(id, &outcome);
    }
    Ok(summary)
}
