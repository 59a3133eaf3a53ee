//! What several of ember-sql's integration tests share (each uses some of it).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// `ember-sql-<name>-<pid>` in the temporary directory.
pub fn temp_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ember-sql-{name}-{}", std::process::id()))
}

/// Makes `dir` afresh holding one file per batch (`part-000.txt`, ...), each line ended by a
/// newline, their modification times a second apart in batch order, so that a file source with
/// `maxFilesPerTrigger` 1 reads batch k as micro-batch k.
pub fn batch_files<L: AsRef<str>>(dir: &Path, batches: &[Vec<L>]) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let start = SystemTime::now() - Duration::from_secs(1000);
    for (k, lines) in batches.iter().enumerate() {
        let path = dir.join(format!("part-{k:03}.txt"));
        let text: String = lines.iter().map(|l| format!("{}\n", l.as_ref())).collect();
        write_dated(&path, &text, start + Duration::from_secs(k as u64));
    }
}

fn write_dated(path: &Path, text: &str, modified: SystemTime) {
    std::fs::write(path, text).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(modified)
        .unwrap();
}
