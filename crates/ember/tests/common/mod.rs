//! Helpers shared by the crash and recovery tests.

use std::collections::BTreeMap;
use std::path::Path;

/// Reads a `state-<ms>` directory written by `save_as_text_files` of `(word, count)` pairs as
/// word counts.
pub fn read_counts(dir: &Path) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.file_name().unwrap().to_string_lossy().starts_with("part-") {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let (word, n) = line.trim_matches(|c| c == '(' || c == ')').rsplit_once(',').unwrap();
            counts.insert(word.to_owned(), n.parse().unwrap());
        }
    }
    counts
}
