//! `save_as_object_files`: every batch as a directory of serde-encoded files (JSON lines or a
//! compact binary form), written atomically like `save_as_text_files`, and
//! `Batch::read_object_files`, which reads such a directory back.

use std::io::Write;
use std::path::Path;

use ember_engine::Data;
use ember_engine::ops::OutputPlacement;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::text_files::{batch_location, finish_interrupted_replacements, location_of, write_batch_dir};
use crate::batch::Batch;
use crate::dstream::DStream;
use crate::error::{Error, Result};
use crate::storage::Location;
use crate::time::Time;

/// How [`DStream::save_as_object_files_with`] and [`Batch::save_as_object_file_with`] encode
/// elements with serde. [`Batch::read_object_files`] reads both, telling them apart by each
/// file's first bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ObjectFormat {
    /// One JSON value per line (`serde_json`), readable by other tools. Map keys must be
    /// strings or numbers; a NaN or infinite float is written as `null` and does not read back.
    #[default]
    JsonLines,
    /// Compact: the header `EMBOBJ1\n`, then per element its `postcard` encoding's length
    /// (`u32`, little endian) and the encoding. The type must not need a self-describing format
    /// (no `#[serde(flatten)]`, untagged enums or `serde_json::Value`), and must be read back as
    /// the same type.
    Binary,
}

/// The first bytes of every part file in [`ObjectFormat::Binary`]; a JSON-lines file cannot
/// start with them, so the reader tells the formats apart file by file.
const BINARY_MAGIC: &[u8; 8] = b"EMBOBJ1\n";

impl<T: Data> DStream<T> {
    /// Writes every batch as serialized objects (Spark's `saveAsObjectFiles(prefix, suffix)`),
    /// one JSON value per line: [`DStream::save_as_object_files_with`] with
    /// [`ObjectFormat::JsonLines`].
    ///
    /// # Errors
    ///
    /// As [`DStream::print`].
    pub fn save_as_object_files(&self, prefix: &str, suffix: &str) -> Result<()> {
        self.save_as_object_files_with(prefix, suffix, ObjectFormat::JsonLines)
    }

    /// Writes every batch as serialized objects in `format` (Spark's
    /// `saveAsObjectFiles(prefix, suffix)`): a directory named by [`batch_file_name`](super::batch_file_name)
    /// (`prefix-<batch time ms>.suffix`) holding one file per partition, `part-00000`,
    /// `part-00001`, ..., and an empty `_SUCCESS` file. Batches with no RDD write nothing, as in
    /// Spark; empty batches write empty part files. [`Batch::read_object_files`] reads a
    /// directory back. Spark writes Java-serialized Hadoop SequenceFiles instead: the layout is
    /// Spark's, the bytes are not.
    ///
    /// Each directory is written under a hidden temporary name, fsynced, and renamed into
    /// place, so a reader never sees half a batch. A directory already there for the same
    /// batch (a batch run again after a recovery from a checkpoint) is replaced, so the files'
    /// content is exactly once. The batch is gathered to one worker and written there (Spark
    /// writes partitions in parallel). This is the same writer as
    /// [`DStream::save_as_text_files`].
    ///
    /// An element that cannot be serialized (with [`ObjectFormat::JsonLines`], a map whose keys
    /// are not strings or numbers) or an I/O error (a missing parent directory, a full disk)
    /// fails the batch's job with an error naming the path and the element; nothing is left
    /// under the batch's name, and later batches go on.
    ///
    /// # Errors
    ///
    /// As [`DStream::print`].
    pub fn save_as_object_files_with(&self, prefix: &str, suffix: &str, format: ObjectFormat) -> Result<()> {
        let (prefix, suffix) = (prefix.to_owned(), suffix.to_owned());
        let first = std::sync::Once::new();
        self.register_output_with("save_as_object_files", OutputPlacement::Gathered, None, move |batch: Batch<T>| {
            let target = batch_location(&prefix, &suffix, batch.time())?;
            first.call_once(|| finish_interrupted_replacements(&target));
            write_object_dir(&target, batch.partitions(), format).map_err(|e| format!("cannot write {target}: {e}"))
        })
    }
}

impl<T: Serialize> Batch<T> {
    /// Writes this batch as serialized objects at `path`, one JSON value per line (Spark's
    /// `RDD.saveAsObjectFile(path)`): [`Batch::save_as_object_file_with`] with
    /// [`ObjectFormat::JsonLines`].
    ///
    /// # Errors
    ///
    /// As [`Batch::save_as_object_file_with`].
    pub fn save_as_object_file(&self, path: impl AsRef<Path>) -> Result<()> {
        self.save_as_object_file_with(path, ObjectFormat::JsonLines)
    }

    /// Writes this batch as serialized objects in `format` at `path` (Spark's
    /// `RDD.saveAsObjectFile(path)`, for use inside `foreach_rdd`): one file per partition,
    /// `part-00000`, `part-00001`, ..., and an empty `_SUCCESS` file. An empty batch writes
    /// its empty part files. [`Batch::read_object_files`] reads it back.
    ///
    /// The directory is written under a hidden temporary name next to it, fsynced, and renamed
    /// into place, so a reader never sees half of it. Where Spark fails when `path` exists,
    /// ember replaces it: a batch written again after a recovery from a checkpoint leaves
    /// exactly one copy.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming `path` when it cannot be written (a missing parent directory, a
    /// full disk, no permission) or an element cannot be serialized (with
    /// [`ObjectFormat::JsonLines`], a map whose keys are not strings or numbers); nothing is
    /// left at `path` then.
    pub fn save_as_object_file_with(&self, path: impl AsRef<Path>, format: ObjectFormat) -> Result<()> {
        let target = location_of(path.as_ref())?;
        write_object_dir(&target, self.partitions(), format).map_err(|source| Error::Io {
            context: format!("cannot write the batch of {} as object files to {target}", self.time()),
            source,
        })
    }
}

impl<T: DeserializeOwned> Batch<T> {
    /// Reads a directory written by [`DStream::save_as_object_files`] or
    /// [`Batch::save_as_object_file`] (Spark's `SparkContext.objectFile(path)`), in either
    /// [`ObjectFormat`]: each file is read in the format its first bytes show. Each
    /// `part-NNNNN` file is one partition, in partition-number order; other files (`_SUCCESS`,
    /// hidden files) are not read.
    ///
    /// The batch's time is read from the directory's name when it has the form
    /// [`batch_file_name`](super::batch_file_name) gives (`prefix-<ms>`, `prefix-<ms>.suffix`, `<ms>.suffix`; the last
    /// `-<digits>` followed by `.` or the end of the name), else it is `Time::from_millis(0)`.
    /// A leading `file://` is a local path.
    ///
    /// A directory always appears whole, but one replaced while it is read (its batch written
    /// again after a recovery) can give a not-found error or partitions of both copies: read
    /// it again.
    ///
    /// To feed the elements to a stream again, push the partitions to a queue stream,
    /// `queue.push_partitions(batch.into_partitions())` with
    /// [`StreamingContext::queue_stream`](crate::StreamingContext::queue_stream), or replay
    /// them, `ssc.replay_stream(vec![Some(batch.into_vec())], num_partitions)` with
    /// [`StreamingContext::replay_stream`](crate::StreamingContext::replay_stream) (which
    /// can also be recovered from a checkpoint).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming the path when the directory cannot be read, when it has no
    /// `_SUCCESS` file (it is not completely written, or not such a directory), or when a part
    /// file holds a record that does not decode as `T`: the error gives the file and the line
    /// and column (JSON lines) or the record number and byte offset (binary). Bad input never
    /// panics.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    /// use ember::ObjectFormat;
    ///
    /// # fn main() -> ember::Result<()> {
    /// let dir = ember::testing::TempDir::new("object-file").unwrap();
    /// let batch = Batch::from_partitions(Time::from_millis(1000), vec![vec![("a".to_string(), 1)], vec![]]);
    /// batch.save_as_object_file_with(dir.path().join("counts-1000"), ObjectFormat::Binary)?;
    /// let back: Batch<(String, u64)> = Batch::read_object_files(dir.path().join("counts-1000"))?;
    /// assert_eq!((back.time(), back.partitions()), (Time::from_millis(1000), batch.partitions()));
    /// # Ok(())
    /// # }
    /// ```
    pub fn read_object_files(dir: impl AsRef<Path>) -> Result<Batch<T>> {
        let dir = Location::parse(&dir.as_ref().to_string_lossy()).map_err(|source| Error::Io {
            context: "cannot read object files".into(),
            source,
        })?;
        let parts = dir.read_directory().map_err(|source| Error::Io {
            context: format!("cannot read object files from {dir}"),
            source,
        })?;
        let partitions = parts
            .iter()
            .map(|(name, bytes)| decode_part(&dir.show(name), bytes))
            .collect::<Result<_>>()?;
        let time = dir
            .file_name()
            .as_deref()
            .and_then(batch_time_in_name)
            .unwrap_or(Time::from_millis(0));
        Ok(Batch::from_partitions(time, partitions))
    }
}

/// Writes `partitions` in `format` as the directory `target`, atomically.
fn write_object_dir<T: Serialize>(target: &Location, partitions: &[Vec<T>], format: ObjectFormat) -> std::io::Result<()> {
    let mut partition_index = 0;
    let mut buf = Vec::new();
    write_batch_dir(target, partitions, |out, partition| {
        let written = match format {
            ObjectFormat::JsonLines => write_json_lines(out, partition),
            ObjectFormat::Binary => write_binary(out, partition, &mut buf),
        };
        let part = partition_index;
        partition_index += 1;
        written.map_err(|(element, e)| match element {
            Some(element) => std::io::Error::new(e.kind(), format!("element {element} of partition {part}: {e}")),
            None => e,
        })
    })
}

/// One JSON value per line; a failure comes with the index of the element that caused it
/// (`None` for an error of the file itself).
fn write_json_lines<T: Serialize>(out: &mut dyn Write, partition: &[T]) -> Result<(), (Option<usize>, std::io::Error)> {
    for (i, x) in partition.iter().enumerate() {
        // serde_json escapes control characters in strings, so a value never spans lines.
        serde_json::to_writer(&mut *out, x).map_err(|e| {
            if e.is_io() {
                (None, e.into())
            } else {
                (Some(i), std::io::Error::new(std::io::ErrorKind::InvalidData, e))
            }
        })?;
        out.write_all(b"\n").map_err(|e| (None, e))?;
    }
    Ok(())
}

/// [`BINARY_MAGIC`], then per element its postcard encoding's length (`u32`, little endian)
/// and the encoding.
fn write_binary<T: Serialize>(out: &mut dyn Write, partition: &[T], buf: &mut Vec<u8>) -> Result<(), (Option<usize>, std::io::Error)> {
    out.write_all(BINARY_MAGIC).map_err(|e| (None, e))?;
    for (i, x) in partition.iter().enumerate() {
        buf.clear();
        let encoded = postcard::to_extend(x, std::mem::take(buf));
        *buf = encoded.map_err(|e| (Some(i), std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        let len = u32::try_from(buf.len()).map_err(|_| {
            let message = format!("its encoding is {} bytes, more than the 4 GiB a record can hold", buf.len());
            (Some(i), std::io::Error::new(std::io::ErrorKind::InvalidData, message))
        })?;
        out.write_all(&len.to_le_bytes()).map_err(|e| (None, e))?;
        out.write_all(buf).map_err(|e| (None, e))?;
    }
    Ok(())
}

/// Decodes one part file (`shown` names it) in the format its first bytes show.
fn decode_part<T: DeserializeOwned>(shown: &str, bytes: &[u8]) -> Result<Vec<T>> {
    let decoded = match bytes.strip_prefix(BINARY_MAGIC.as_slice()) {
        Some(records) => decode_binary(records),
        None => decode_json_lines(bytes),
    };
    decoded.map_err(|message| Error::Io {
        context: format!("cannot read object file {shown}"),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, message),
    })
}

/// The values of a JSON-lines file; an error says where the bad record is (serde_json counts
/// lines and columns from the start of the file).
fn decode_json_lines<T: DeserializeOwned>(bytes: &[u8]) -> Result<Vec<T>, String> {
    serde_json::Deserializer::from_slice(bytes)
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(|e| format!("malformed JSON-lines record: {e}"))
}

/// The records after [`BINARY_MAGIC`]; an error gives the record's number (from 0) and its
/// byte offset in the file.
fn decode_binary<T: DeserializeOwned>(mut records: &[u8]) -> Result<Vec<T>, String> {
    let mut values = Vec::new();
    let mut offset = BINARY_MAGIC.len();
    while !records.is_empty() {
        let at = || format!("binary record {} at byte offset {offset}", values.len());
        let Some((len, rest)) = records.split_first_chunk::<4>() else {
            return Err(format!("truncated {}: {} bytes where a 4-byte length belongs", at(), records.len()));
        };
        let len = u32::from_le_bytes(*len) as usize;
        let Some((record, rest)) = rest.split_at_checked(len) else {
            return Err(format!("truncated {}: its length says {len} bytes, {} are left", at(), rest.len()));
        };
        let (value, left_over) = postcard::take_from_bytes(record).map_err(|e| format!("malformed {}: {e}", at()))?;
        if !left_over.is_empty() {
            return Err(format!("malformed {}: {} bytes left over after the value", at(), left_over.len()));
        }
        values.push(value);
        offset += 4 + len;
        records = rest;
    }
    Ok(values)
}

/// The batch time in a directory name [`batch_file_name`](super::batch_file_name) made: the last run of digits that
/// starts the name or follows a `-`, and ends the name or precedes a `.`.
fn batch_time_in_name(name: &str) -> Option<Time> {
    let starts = std::iter::once(0).chain(name.match_indices('-').map(|(i, _)| i + 1));
    let ms = starts.rev().find_map(|start| {
        let digits = &name[start..];
        let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
        if end > 0 && (end == digits.len() || digits[end..].starts_with('.')) {
            digits[..end].parse().ok()
        } else {
            None
        }
    })?;
    Some(Time::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_times_are_read_back_from_the_names_batch_file_name_gives() {
        let t = Time::from_millis(12_345);
        for (prefix, suffix) in [
            ("counts", ""),
            ("counts", "json"),
            ("", "json"),
            ("", ""),
            ("my-2024.data", ""),
            ("a-1", "tar.gz"),
        ] {
            let name = super::super::batch_file_name(prefix, suffix, t);
            assert_eq!(batch_time_in_name(&name), Some(t), "{name}");
        }
        for name in ["counts", "counts-", "counts-12a", "-.json", "counts-99999999999999999999999"] {
            assert_eq!(batch_time_in_name(name), None, "{name}");
        }
    }

    #[test]
    fn bad_binary_records_are_errors_with_their_offset() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.push(7);
        bytes.extend_from_slice(&9u32.to_le_bytes());
        bytes.push(1);
        let err = decode_binary::<u8>(&bytes).unwrap_err();
        assert!(err.contains("truncated binary record 1 at byte offset 13"), "{err}");
        let err = decode_binary::<u8>(&[0, 0]).unwrap_err();
        assert!(err.contains("truncated binary record 0 at byte offset 8"), "{err}");
        let err = decode_binary::<u8>(&[2, 0, 0, 0, 1, 2]).unwrap_err();
        assert!(
            err.contains("malformed binary record 0 at byte offset 8: 1 bytes left over"),
            "{err}"
        );
        let err = decode_binary::<String>(&[2, 0, 0, 0, 9, b'a']).unwrap_err();
        assert!(err.contains("malformed binary record 0 at byte offset 8"), "{err}");
        assert_eq!(decode_binary::<u8>(&[1, 0, 0, 0, 7]), Ok(vec![7]));
    }
}
