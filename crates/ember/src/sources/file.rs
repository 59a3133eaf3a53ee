//! `text_file_stream` and `file_stream`: new files of a directory, as lines.
//!
//! The directory is a [`Location`]: a local one, or with the `s3` feature a prefix of a bucket
//! (`s3://bucket/logs`), whose new objects are found by listing it as Spark's file stream lists
//! a directory (an object appears whole when its PUT completes, so no rename is needed there).
//!
//! At every batch, worker 0 lists the directory and chooses the files it has not seen: each
//! becomes one partition of that batch, and the partitions are spread over the workers, which
//! read them. A file is read exactly once, up to the size it had when it was chosen. Files are
//! expected to appear atomically (written elsewhere, then moved in by rename), as Spark
//! requires; a file that changes after it was chosen is reported and the change is not read.
//!
//! With checkpoints on, the stream is recoverable, as Spark's: the tracker of files seen is
//! part of every checkpoint, and the files each batch chose are appended to a log in the
//! checkpoint directory (`sources/file-stream-<id>.log`, one JSON line per batch that chose
//! any, fsynced before the batch is cut). A recovered run cuts the batches after the
//! checkpoint from that log, with exactly the files they had, then lists the directory again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ember_engine::Data;
use serde::{Deserialize, Serialize};

use crate::context::StreamingContext;
use crate::dstream::DStream;
use crate::error::{Error, Result};
use crate::sources::direct::{DirectBatch, DirectSource};
use crate::sources::lines::{BadKind, BadRecords};
use crate::storage::Location;
use crate::time::Time;

/// A file chosen for a batch, with what it looked like then.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChosenFile {
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub(crate) modified_ns: u64,
}

/// Which files of a directory have been taken, and which batch took each one.
///
/// The file stream's position (engine-owned state of a direct source): worker 0 lists the
/// directory, and a checkpoint restores the files seen.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct FileTracker {
    /// Files seen in the directory: read by a batch, or present at start and ignored.
    seen: HashMap<PathBuf, Seen>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Seen {
    size: u64,
    modified_ns: u64,
    /// The batch that read the file; `None` for files present at start and ignored.
    batch: Option<u64>,
}

impl FileTracker {
    /// A tracker that ignores the files of `listing` (`new_files_only`) or takes them in the
    /// first batch.
    pub(crate) fn starting_with(listing: Vec<ChosenFile>, new_files_only: bool) -> Self {
        let mut tracker = FileTracker::default();
        if new_files_only {
            for f in listing {
                tracker.seen.insert(
                    f.path,
                    Seen {
                        size: f.size,
                        modified_ns: f.modified_ns,
                        batch: None,
                    },
                );
            }
        }
        tracker
    }

    /// Chooses the new files of `listing` for batch `time`, oldest modification first, and
    /// returns them with a message for each known file that changed since it was seen.
    pub(crate) fn choose(&mut self, time: u64, listing: Vec<ChosenFile>) -> (Vec<ChosenFile>, Vec<String>) {
        let mut chosen = Vec::new();
        let mut changed = Vec::new();
        let present: std::collections::HashSet<PathBuf> = listing.iter().map(|f| f.path.clone()).collect();
        for file in listing {
            match self.seen.get_mut(&file.path) {
                Some(seen) if seen.size == file.size && seen.modified_ns == file.modified_ns => {}
                Some(seen) => {
                    let when = match seen.batch {
                        Some(t) => format!("after batch {t} ms read it ({} bytes then, {} now)", seen.size, file.size),
                        None => format!(
                            "after the stream started and ignored it as an existing file ({} bytes then, {} now)",
                            seen.size, file.size
                        ),
                    };
                    changed.push(format!(
                        "file {} changed {when}; the change is not read. Files must appear in the directory \
                         atomically: write them elsewhere, then move them in",
                        file.path.display()
                    ));
                    seen.size = file.size;
                    seen.modified_ns = file.modified_ns;
                }
                None => {
                    self.seen.insert(
                        file.path.clone(),
                        Seen {
                            size: file.size,
                            modified_ns: file.modified_ns,
                            batch: Some(time),
                        },
                    );
                    chosen.push(file);
                }
            }
        }
        // A file that left the directory is forgotten: a new file of the same name is new.
        self.seen.retain(|path, _| present.contains(path));
        chosen.sort_by(|a, b| (a.modified_ns, &a.path).cmp(&(b.modified_ns, &b.path)));
        (chosen, changed)
    }

    /// Takes `files`, chosen for batch `time` before a crash, again (a recovered run).
    fn take_again(&mut self, time: u64, files: &[ChosenFile]) {
        for f in files {
            self.seen.insert(
                f.path.clone(),
                Seen {
                    size: f.size,
                    modified_ns: f.modified_ns,
                    batch: Some(time),
                },
            );
        }
    }
}

/// Spark's default filter (hidden files are skipped), with Hadoop's `_` prefix for files
/// such as `_SUCCESS` and `_temporary`.
fn visible(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| !n.starts_with('.') && !n.starts_with('_'))
}

/// The files of `dir` (objects directly under the prefix) that pass `filter`, each with the
/// path the filter and messages see: the local path, or the object's URL.
fn list(dir: &Location, filter: &dyn Fn(&Path) -> bool) -> std::io::Result<Vec<ChosenFile>> {
    let mut files = Vec::new();
    for entry in dir.list()? {
        let path = match dir.as_local() {
            Some(local) => local.join(&entry.name),
            None => PathBuf::from(dir.show(&entry.name)),
        };
        if !visible(&path) || !filter(&path) {
            continue;
        }
        files.push(ChosenFile {
            path,
            size: entry.size,
            modified_ns: entry.modified_ns,
        });
    }
    Ok(files)
}

/// The directory a file stream's argument names: a local path, a `file:` URL, or `s3://`.
fn watched_directory(operation: &'static str, directory: &str) -> Result<Location> {
    let bad = |message: String| Error::InvalidArgument { operation, message };
    let dir = Location::parse(directory).map_err(|e| bad(e.to_string()))?;
    if let Some(path) = dir.as_local() {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(bad(format!("{} is not a directory", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(bad(format!("directory {} does not exist", path.display())));
            }
            Err(e) => return Err(bad(format!("cannot read directory {}: {e}", path.display()))),
        }
    } else {
        // A bucket that does not answer is named now, not at the first batch.
        dir.prepare().map_err(|e| bad(e.to_string()))?;
    }
    Ok(dir)
}

/// Reads the first `file.size` bytes of a chosen file and cuts them into records of
/// `record_length` bytes.
fn read_records(file: &ChosenFile, bytes: &[u8], record_length: usize) -> std::result::Result<Vec<Vec<u8>>, String> {
    if !bytes.len().is_multiple_of(record_length) {
        return Err(format!(
            "file {} holds {} bytes, not a multiple of the record length {record_length}: its last record has {} bytes",
            file.path.display(),
            bytes.len(),
            bytes.len() % record_length
        ));
    }
    Ok(bytes.chunks_exact(record_length).map(<[u8]>::to_vec).collect())
}

/// The first `file.size` bytes of a chosen file of `dir` (the size it had when chosen).
fn read_chosen(dir: &Location, file: &ChosenFile) -> std::result::Result<Vec<u8>, String> {
    let name = file
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| format!("{} names no file", file.path.display()))?;
    dir.read_prefix(&name, file.size).map_err(|e| e.to_string())
}

/// Turns the lines of a chosen file's `bytes` into records; a line that is not valid UTF-8 is
/// repaired and counted in `bad` (whose warnings are rate-limited).
fn read_lines<T>(file: &ChosenFile, bytes: &[u8], bad: &BadRecords, make: impl Fn(u64, &str) -> T) -> std::result::Result<Vec<T>, String> {
    let mut records = Vec::new();
    let mut start = 0usize;
    let mut line_no = 0u64;
    let mut emit = |line: &[u8], offset: usize, line_no: u64| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match std::str::from_utf8(line) {
            Ok(text) => records.push(make(offset as u64, text)),
            Err(e) => {
                let position = format!("line {line_no} (byte offset {offset}) of file {}", file.path.display());
                let message = format!("not valid UTF-8 ({e}); invalid bytes were replaced with U+FFFD");
                bad.record(BadKind::Repaired, &position, &message);
                records.push(make(offset as u64, &String::from_utf8_lossy(line)));
            }
        }
    };
    for end in memchr::memchr_iter(b'\n', bytes) {
        line_no += 1;
        emit(&bytes[start..end], start, line_no);
        start = end + 1;
    }
    if start < bytes.len() {
        emit(&bytes[start..], start, line_no + 1);
    }
    Ok(records)
}

/// A file stream's planner: lists the directory for each batch on worker 0, chooses the new
/// files, and reports listing problems once each.
struct FileSource {
    dir: Location,
    filter: Arc<dyn Fn(&Path) -> bool + Send + Sync>,
    tracker: FileTracker,
    failing: Option<String>,
}

impl DirectSource for FileSource {
    type Slice = ChosenFile;

    fn plan(&mut self, batch: &DirectBatch<'_>) -> Vec<ChosenFile> {
        let time = batch.time().milliseconds();
        let listing = match list(&self.dir, &*self.filter) {
            Ok(listing) => {
                if self.failing.take().is_some() {
                    tracing::info!(directory = %self.dir, "The directory can be listed again.");
                }
                listing
            }
            Err(e) => {
                // One report per distinct problem, not one per batch.
                if self.failing.as_deref() != Some(&e.to_string()) {
                    self.failing = Some(e.to_string());
                    batch.report(format!("cannot list directory {} for batch {time} ms: {e}", self.dir));
                }
                return Vec::new();
            }
        };
        let (chosen, changed) = self.tracker.choose(time, listing);
        for message in changed {
            batch.report(message);
        }
        if !chosen.is_empty() {
            tracing::debug!(directory = %self.dir, batch_time_ms = time, files = chosen.len(), "Files chosen for a batch.");
        }
        chosen
    }

    fn replay(&mut self, time: Time, files: &[ChosenFile]) {
        self.tracker.take_again(time.milliseconds(), files);
    }

    fn snapshot(&self) -> std::result::Result<Vec<u8>, String> {
        crate::state_codec::encode(&self.tracker)
    }

    fn restore(&mut self, bytes: &[u8]) -> std::result::Result<(), String> {
        self.tracker = crate::state_codec::decode(bytes)?;
        Ok(())
    }
}

impl StreamingContext {
    /// A stream of the lines of new files in `directory` (Spark's `textFileStream`): a local
    /// path, a `file://` URL, or with the `s3` feature `s3://bucket/prefix` (new objects
    /// directly under the prefix). Each batch holds the lines of the files that appeared since
    /// the previous one, one partition per file, spread over the workers. Files present when
    /// the stream is created are ignored (Spark's rule); hidden files (names starting with `.` or `_`) are skipped, so write
    /// a file under such a name and rename it into place: files must appear atomically. Lines
    /// end at `\n` (a trailing `\r` is removed); invalid UTF-8 is decoded lossily with a
    /// warning naming the file, line and byte offset. Such lines are counted exactly in
    /// [`StreamingContext::bad_records`]; the warnings are rate-limited as the socket streams'
    /// are (the first ten one by one, then a summary at most every 10 s).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the directory does not exist or is not a directory, for
    /// an unsupported URL scheme, or when the bucket does not answer. Later problems (the directory vanishes, a file changes after it was read)
    /// are reported as [`Error::Source`] by `await_termination`; a file that cannot be read
    /// fails its batch with [`Error::JobFailed`] naming the file.
    pub fn text_file_stream(&self, directory: &str) -> Result<DStream<String>> {
        let dir = watched_directory("text_file_stream", directory)?;
        Ok(self.files(
            format!("text_file_stream({dir})"),
            dir,
            Arc::new(|_: &Path| true),
            true,
            |file: &ChosenFile, bytes: &[u8], bad: &BadRecords| read_lines(file, bytes, bad, |_, line| line.to_owned()),
        ))
    }

    /// A stream of `(byte offset, line)` records of new files in `directory` whose path
    /// passes `filter` (Spark's `fileStream` with its text input format). With
    /// `new_files_only` false, files already in the directory are read by the first batch. Otherwise as [`StreamingContext::text_file_stream`].
    ///
    /// # Errors
    ///
    /// As [`StreamingContext::text_file_stream`].
    pub fn file_stream<F>(&self, directory: &str, filter: F, new_files_only: bool) -> Result<DStream<(u64, String)>>
    where
        F: Fn(&Path) -> bool + Send + Sync + 'static,
    {
        let dir = watched_directory("file_stream", directory)?;
        Ok(self.files(
            format!("file_stream({dir})"),
            dir,
            Arc::new(filter),
            new_files_only,
            |file: &ChosenFile, bytes: &[u8], bad: &BadRecords| read_lines(file, bytes, bad, |offset, line| (offset, line.to_owned())),
        ))
    }

    /// A stream of the fixed-length records in new files of `directory` (Spark's
    /// `binaryRecordsStream`): each file is cut into records of `record_length` bytes, in
    /// order. Files are chosen as by [`StreamingContext::text_file_stream`] (new files only, as
    /// Spark). A file whose size is not a multiple of `record_length` fails its batch with an
    /// error naming the file and the sizes (Spark fails the same way, with "Byte array does not
    /// have correct length").
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when `record_length` is 0, or as
    /// [`StreamingContext::text_file_stream`].
    pub fn binary_records_stream(&self, directory: &str, record_length: usize) -> Result<DStream<Vec<u8>>> {
        if record_length == 0 {
            return Err(Error::InvalidArgument {
                operation: "binary_records_stream",
                message: "record_length must be positive, got 0".into(),
            });
        }
        let dir = watched_directory("binary_records_stream", directory)?;
        Ok(self.files(
            format!("binary_records_stream({dir})"),
            dir,
            Arc::new(|_: &Path| true),
            true,
            move |file: &ChosenFile, bytes: &[u8], _: &BadRecords| read_records(file, bytes, record_length),
        ))
    }

    fn files<T: Data>(
        &self,
        name: String,
        dir: Location,
        filter: Arc<dyn Fn(&Path) -> bool + Send + Sync>,
        new_files_only: bool,
        read: impl Fn(&ChosenFile, &[u8], &BadRecords) -> std::result::Result<Vec<T>, String> + Copy + Send + Sync + 'static,
    ) -> DStream<T> {
        let bad = self.inner().add_bad_records(&name);
        // As Spark, the files present when the stream is created are the existing ones.
        let existing = list(&dir, &*filter).unwrap_or_default();
        let source = FileSource {
            tracker: FileTracker::starting_with(existing, new_files_only),
            dir: dir.clone(),
            filter,
            failing: None,
        };
        self.direct_stream("file_stream", name, source, move |file: &ChosenFile| {
            read(file, &read_chosen(&dir, file)?, &bad)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, size: u64, modified_ns: u64) -> ChosenFile {
        ChosenFile {
            path: PathBuf::from(name),
            size,
            modified_ns,
        }
    }

    #[test]
    fn chooses_each_new_file_once_oldest_first_and_records_the_choice() {
        let mut tracker = FileTracker::starting_with(vec![file("old", 5, 1)], true);
        let (chosen, changed) = tracker.choose(1000, vec![file("old", 5, 1), file("b", 3, 20), file("a", 4, 10)]);
        assert_eq!(chosen, vec![file("a", 4, 10), file("b", 3, 20)]);
        assert!(changed.is_empty());
        let (chosen, _) = tracker.choose(2000, vec![file("old", 5, 1), file("b", 3, 20), file("a", 4, 10), file("c", 1, 30)]);
        assert_eq!(chosen, vec![file("c", 1, 30)]);
    }

    #[test]
    fn existing_files_are_read_first_unless_new_files_only() {
        let mut tracker = FileTracker::starting_with(vec![file("old", 5, 1)], false);
        let (chosen, _) = tracker.choose(1000, vec![file("old", 5, 1)]);
        assert_eq!(chosen, vec![file("old", 5, 1)]);
    }

    #[test]
    fn a_file_that_changes_after_it_was_read_is_reported_once_and_not_read_again() {
        let mut tracker = FileTracker::starting_with(Vec::new(), true);
        tracker.choose(1000, vec![file("grow", 3, 1)]);
        let (chosen, changed) = tracker.choose(2000, vec![file("grow", 9, 2)]);
        assert!(chosen.is_empty());
        assert_eq!(changed.len(), 1);
        assert!(
            changed[0].contains("grow changed after batch 1000 ms read it (3 bytes then, 9 now)"),
            "{}",
            changed[0]
        );
        let (chosen, changed) = tracker.choose(3000, vec![file("grow", 9, 2)]);
        assert!(chosen.is_empty() && changed.is_empty());
    }

    #[test]
    fn a_removed_file_is_forgotten_so_a_new_one_of_that_name_is_read() {
        let mut tracker = FileTracker::starting_with(Vec::new(), true);
        tracker.choose(1000, vec![file("x", 3, 1)]);
        tracker.choose(2000, Vec::new());
        let (chosen, _) = tracker.choose(3000, vec![file("x", 4, 5)]);
        assert_eq!(chosen, vec![file("x", 4, 5)]);
    }

    #[test]
    fn hidden_and_underscore_files_are_skipped() {
        assert!(visible(Path::new("/d/log.txt")));
        assert!(!visible(Path::new("/d/.log.txt.tmp")));
        assert!(!visible(Path::new("/d/_SUCCESS")));
    }

    #[test]
    fn directories_are_local_paths_file_urls_or_object_urls() {
        let dir = std::env::temp_dir();
        let url = format!("file://{}", dir.display());
        assert_eq!(watched_directory("t", &url).unwrap().as_local(), Some(dir.as_path()));
        let err = watched_directory("t", "hdfs://nn/logs").unwrap_err().to_string();
        assert!(err.contains("hdfs:// is not supported yet"), "{err}");
        let err = watched_directory("t", "/no/such/ember/dir").unwrap_err().to_string();
        assert!(err.contains("directory /no/such/ember/dir does not exist"), "{err}");
    }
}
