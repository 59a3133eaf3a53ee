//! `save_as_text_files`: every batch as a directory of text files, in Spark's layout, written
//! atomically so that a batch written again after a recovery replaces the first copy.

use std::fs;
use std::io::Write;
use std::path::Path;

use ember_engine::Data;
use ember_engine::ops::OutputPlacement;

use crate::batch::Batch;
use crate::display::SparkDisplay;
use crate::dstream::DStream;
use crate::error::{Error, Result};
use crate::storage::Location;
use crate::time::Time;

/// The directory name of one batch (Spark's `rddToFileName`): `prefix-<ms>.suffix`, without
/// `prefix-` when the prefix is empty and without `.suffix` when the suffix is empty. A
/// `file://` prefix is a local path.
pub fn batch_file_name(prefix: &str, suffix: &str, time: Time) -> String {
    let prefix = prefix.strip_prefix("file://").unwrap_or(prefix);
    let mut name = if prefix.is_empty() {
        time.milliseconds().to_string()
    } else {
        format!("{prefix}-{}", time.milliseconds())
    };
    if !suffix.is_empty() {
        name.push('.');
        name.push_str(suffix);
    }
    name
}

impl<T: Data + SparkDisplay> DStream<T> {
    /// Writes every batch as text (Spark's `saveAsTextFiles(prefix, suffix)`): a directory
    /// named by [`batch_file_name`] (`prefix-<batch time ms>.suffix`) holding one file per
    /// partition, `part-00000`, `part-00001`, ..., one element per line in Spark's text form
    /// (`(hello,3)`), and an empty `_SUCCESS` file. Batches with no RDD write nothing, as in
    /// Spark; empty batches write empty part files.
    ///
    /// Each directory is committed whole, so a reader never sees half a batch: locally it is
    /// written under a hidden temporary name, fsynced, and renamed into place; on object
    /// storage (`s3://bucket/out/counts`, with the `s3` feature), where there is no rename,
    /// `_SUCCESS` is written last and names the parts it commits (see
    /// [`Location::write_directory`]). A directory already there for the same batch (a batch
    /// run again after a recovery from a checkpoint) is replaced, so the files' content is
    /// exactly once: Spark fails or tolerates "already exists" instead. The batch is gathered
    /// to one worker and written there (Spark writes partitions in parallel).
    ///
    /// An I/O error (a missing parent directory, a full disk) fails the batch's job with an
    /// error naming the path; later batches go on.
    ///
    /// # Errors
    ///
    /// As [`DStream::print`].
    pub fn save_as_text_files(&self, prefix: &str, suffix: &str) -> Result<()> {
        let (prefix, suffix) = (prefix.to_owned(), suffix.to_owned());
        let first = std::sync::Once::new();
        self.register_output_with("save_as_text_files", OutputPlacement::Gathered, None, move |batch: Batch<T>| {
            let target = batch_location(&prefix, &suffix, batch.time())?;
            first.call_once(|| finish_interrupted_replacements(&target));
            write_batch_dir(&target, batch.partitions(), write_text_part).map_err(|e| format!("cannot write {target}: {e}"))
        })
    }
}

impl<T: SparkDisplay> Batch<T> {
    /// Writes this batch as a directory of text files at `path` (Spark's
    /// `RDD.saveAsTextFile(path)`, what the seeds call per batch inside `foreach_rdd`): one file
    /// per partition, `part-00000`, `part-00001`, ..., one element per line in Spark's text form
    /// (`(hello,3)`), and an empty `_SUCCESS` file. An empty batch writes its empty part files.
    ///
    /// The directory is written under a hidden temporary name next to it, fsynced, and renamed
    /// into place, so a reader never sees half of it. Where Spark fails when `path` exists,
    /// ember replaces it: a batch written again after a recovery from a checkpoint leaves
    /// exactly one copy.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) naming `path` when it cannot be written (a missing
    /// parent directory, a full disk, no permission); nothing is left at `path` then.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    ///
    /// # fn main() -> ember::Result<()> {
    /// let dir = ember::testing::TempDir::new("save-as-text-file").unwrap();
    /// let batch = Batch::from_partitions(Time::from_millis(1000), vec![vec![("a", 1)], vec![("b", 2)]]);
    /// batch.save_as_text_file(dir.path().join("counts-1000"))?;
    /// let part = std::fs::read_to_string(dir.path().join("counts-1000/part-00001")).unwrap();
    /// assert_eq!(part, "(b,2)\n");
    /// # Ok(())
    /// # }
    /// ```
    pub fn save_as_text_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let target = location_of(path.as_ref())?;
        write_batch_dir(&target, self.partitions(), write_text_part).map_err(|source| Error::Io {
            context: format!("cannot write the batch of {} as text files to {target}", self.time()),
            source,
        })
    }
}

/// Where a batch directory named by a user goes: a path, a `file://` URL or `s3://`.
pub(super) fn location_of(path: &Path) -> Result<Location> {
    Location::parse(&path.to_string_lossy()).map_err(|source| Error::Io {
        context: "cannot write a batch there".into(),
        source,
    })
}

/// The directory of batch `time` of an output with `prefix` and `suffix`.
pub(super) fn batch_location(prefix: &str, suffix: &str, time: Time) -> std::result::Result<Location, String> {
    let name = batch_file_name(prefix, suffix, time);
    Location::parse(&name).map_err(|e| format!("cannot write batch {time}: {e}"))
}

/// Before an output's first batch: finishes the replacements of batch directories that a crash
/// interrupted next to `target` (a batch written again after a recovery, then killed). A
/// `.<name>.old` whose `<name>` is there is the replaced copy, and goes; one whose `<name>` is
/// missing is the only complete copy (the crash came between the two renames), and is put
/// back. A batch that runs again cleans up after itself; this covers the batches that do not.
pub(super) fn finish_interrupted_replacements(target: &Location) {
    // Object storage has no rename to interrupt.
    let Some(target) = target.as_local() else { return };
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(entries) = fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(name) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix('.'))
            .and_then(|n| n.strip_suffix(".old"))
        else {
            continue;
        };
        let (old, kept) = (entry.path(), parent.join(name));
        let done = match kept.exists() {
            true => fs::remove_dir_all(&old),
            false => fs::rename(&old, &kept),
        };
        match done {
            Ok(()) => tracing::info!(directory = %kept.display(), "Finished replacing a batch directory that a crash interrupted."),
            Err(e) => {
                tracing::warn!(directory = %old.display(), error = %e, "Cannot clean up after an interrupted batch directory replacement.")
            }
        }
    }
}

/// Writes one partition as lines of Spark's text form.
fn write_text_part<T: SparkDisplay>(out: &mut dyn Write, partition: &[T]) -> std::io::Result<()> {
    let mut line = String::new();
    for x in partition {
        line.clear();
        x.fmt_spark(&mut line);
        line.push('\n');
        out.write_all(line.as_bytes())?;
    }
    Ok(())
}

/// Writes `partitions` as `target/part-0000N`, each by `write_part`, and `target/_SUCCESS`,
/// atomically replacing `target` ([`Location::write_directory`]). Shared by the text and object
/// file sinks; an error of `write_part` commits nothing.
pub(super) fn write_batch_dir<T>(
    target: &Location,
    partitions: &[Vec<T>],
    mut write_part: impl FnMut(&mut dyn Write, &[T]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    target.write_directory(partitions.len(), |i, out| write_part(out, &partitions[i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_sparks_rdd_to_file_name() {
        let t = Time::from_millis(12_345_678_910);
        assert_eq!(batch_file_name("spark", "", t), "spark-12345678910");
        assert_eq!(batch_file_name("spark", "tmp", t), "spark-12345678910.tmp");
        assert_eq!(batch_file_name("", "txt", t), "12345678910.txt");
        assert_eq!(batch_file_name("file:///out/counts", "", t), "/out/counts-12345678910");
    }
}
