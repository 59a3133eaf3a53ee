//! The receivers' write-ahead log (Spark's `spark.streaming.receiver.writeAheadLog.enable`).
//!
//! One log per receiver, `<checkpoint dir>/receivers/<operator id>.wal`: a sequence of frames
//! (length, CRC-32, postcard payload), each a block of stored records or the cut of a batch.
//! The blocks before `Cut(t)` (and after the previous cut) are batch `t`'s. A block is appended
//! when it is stored, and made durable before `store_many` returns (single `store` calls are
//! synced with the next block or cut); a cut is appended and made durable before the batch is
//! cut. The log is a [`storage::AppendLog`](crate::storage::AppendLog): a local file fsynced,
//! or on object storage one object per synced group of frames (a `store_many` block, or the
//! `store` calls before a cut), which costs one PUT each.
//!
//! A run recovered from checkpoint `T` opens the log with `after = T`: the batches after `T`
//! that were cut before the crash get exactly their blocks again, and blocks stored but never
//! cut go to the first batch cut afresh. The log is rewritten on open with only those, and
//! compacted while running once it grows past [`COMPACT_BYTES`], keeping the batches after the
//! oldest checkpoint kept. A fresh start (no checkpoint) starts an empty log.
//!
//! A receiver that tracks its position in its source (the acknowledged socket stream: lines
//! consumed) logs it with each block, in the same frame, so that the position of the last
//! durable block is known after a crash; a rewritten log starts with that position.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::storage::{AppendLog, Location};

/// A log is compacted at a cut once it is larger than this.
const COMPACT_BYTES: u64 = 64 << 20;

#[derive(Serialize)]
enum FrameRef<'a, T> {
    Block(&'a [T]),
    Cut(u64),
    /// A block and the source position after it.
    Marked(&'a [T], u64),
    /// The source position at the start of a rewritten log.
    Position(u64),
}

/// The same encoding as [`FrameRef`], read back.
#[derive(Deserialize)]
enum Frame<T> {
    Block(Vec<T>),
    Cut(u64),
    Marked(Vec<T>, u64),
    Position(u64),
}

fn frame_bytes<T: Serialize>(frame: &FrameRef<'_, T>) -> std::io::Result<Vec<u8>> {
    let payload = postcard::to_stdvec(frame).map_err(std::io::Error::other)?;
    let mut bytes = Vec::with_capacity(payload.len() + 8);
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    Ok(bytes)
}

/// The frames of a log, up to the first torn or corrupt one (a crash mid-append: that frame
/// was never synced, so nothing was acknowledged or cut with it).
fn read_frames<T: DeserializeOwned>(bytes: &[u8]) -> Vec<Frame<T>> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        let crc = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        let Some(payload) = bytes.get(at + 8..at + 8 + len) else { break };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Ok(frame) = postcard::from_bytes(payload) else { break };
        frames.push(frame);
        at += 8 + len;
    }
    frames
}

/// A log's content: the cut batches in order, the blocks stored after the last cut, and the
/// source position of the last block that had one.
struct Content<T> {
    batches: BTreeMap<u64, Vec<Vec<T>>>,
    uncut: Vec<Vec<T>>,
    position: Option<u64>,
}

fn content<T: DeserializeOwned>(bytes: &[u8]) -> Content<T> {
    let mut batches = BTreeMap::new();
    let mut blocks = Vec::new();
    let mut position = None;
    for frame in read_frames(bytes) {
        match frame {
            Frame::Block(block) => blocks.push(block),
            Frame::Marked(block, at) => {
                // A block of only skipped lines moves the position alone.
                if !block.is_empty() {
                    blocks.push(block);
                }
                position = Some(at);
            }
            Frame::Position(at) => position = Some(at),
            Frame::Cut(time) => {
                batches.insert(time, std::mem::take(&mut blocks));
            }
        }
    }
    Content {
        batches,
        uncut: blocks,
        position,
    }
}

/// One receiver's write-ahead log.
pub(crate) struct Wal<T> {
    log: AppendLog,
    /// Batches after the restored checkpoint that were cut before the crash, to cut again.
    replay: BTreeMap<u64, Vec<Vec<T>>>,
    /// Blocks stored before the crash and never cut: the first batch cut afresh takes them.
    carried: Vec<Vec<T>>,
    /// The source position of the last block logged with one.
    position: Option<u64>,
}

impl<T> std::fmt::Debug for Wal<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("log", &self.log).finish_non_exhaustive()
    }
}

impl<T: Serialize + DeserializeOwned + Clone> Wal<T> {
    /// Opens the log of receiver `id` under `checkpoint_dir`: for a run recovered from
    /// checkpoint `after`, with what it must replay; for a fresh run, empty.
    pub(crate) fn open(checkpoint_dir: &Location, id: &str, after: Option<u64>) -> std::io::Result<Wal<T>> {
        let name = format!("receivers/{}.wal", super::file_name_of(id));
        let (mut log, bytes) = AppendLog::open(checkpoint_dir, &name)?;
        let (replay, carried, position) = match after {
            Some(after) => {
                let content: Content<T> = content(&bytes);
                let replay = content.batches.into_iter().filter(|(t, _)| *t > after).collect();
                (replay, content.uncut, content.position)
            }
            None => (BTreeMap::new(), Vec::new(), None),
        };
        log.rewrite(log_bytes(&replay, &carried, position)?)?;
        Ok(Wal {
            log,
            replay,
            carried,
            position,
        })
    }

    /// The source position of the last durable block that had one (what the source resumes
    /// from after a recovery), `None` if none had.
    pub(crate) fn position(&self) -> Option<u64> {
        self.position
    }

    /// The log's path or URL, for messages.
    pub(crate) fn shown(&self) -> &str {
        self.log.shown()
    }

    /// Appends a block of stored records, with the source position after it if the receiver
    /// tracks one; `sync` makes it durable before returning.
    pub(crate) fn append_block(&mut self, records: &[T], position: Option<u64>, sync: bool) -> std::io::Result<()> {
        let frame = match position {
            None => FrameRef::Block(records),
            Some(at) => FrameRef::Marked(records, at),
        };
        self.log.append(&frame_bytes(&frame)?)?;
        if position.is_some() {
            self.position = position;
        }
        if sync { self.log.sync() } else { Ok(()) }
    }

    /// What batch `time` takes: the blocks it had before the crash (`Some`, and the buffer
    /// keeps what was stored since), or `None` when it is cut afresh.
    pub(crate) fn replayed(&mut self, time: u64) -> Option<Vec<Vec<T>>> {
        self.replay.remove(&time)
    }

    /// Cuts batch `time` afresh: appends the cut durably and returns the blocks carried over
    /// from before a crash, which come first in the batch. Compacts the log when it is large,
    /// keeping the batches after `keep_after` (the oldest checkpoint kept).
    pub(crate) fn cut(&mut self, time: u64, keep_after: impl FnOnce() -> Option<u64>) -> std::io::Result<Vec<Vec<T>>> {
        self.log.append(&frame_bytes(&FrameRef::<T>::Cut(time))?)?;
        self.log.sync()?;
        if self.log.len() > COMPACT_BYTES
            && let Some(keep_after) = keep_after()
        {
            let content: Content<T> = content(&self.log.read()?);
            let kept: BTreeMap<u64, Vec<Vec<T>>> = content.batches.into_iter().filter(|(t, _)| *t > keep_after).collect();
            self.log.rewrite(log_bytes(&kept, &content.uncut, content.position)?)?;
        }
        Ok(std::mem::take(&mut self.carried))
    }
}

/// A whole log: `position`, `batches` (each block, then its cut) and then `uncut`.
fn log_bytes<T: Serialize>(batches: &BTreeMap<u64, Vec<Vec<T>>>, uncut: &[Vec<T>], position: Option<u64>) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if let Some(at) = position {
        bytes.extend(frame_bytes(&FrameRef::<T>::Position(at))?);
    }
    for (time, blocks) in batches {
        for block in blocks {
            bytes.extend(frame_bytes(&FrameRef::Block(block))?);
        }
        bytes.extend(frame_bytes(&FrameRef::<T>::Cut(*time))?);
    }
    for block in uncut {
        bytes.extend(frame_bytes(&FrameRef::Block(block))?);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn a_recovered_log_replays_the_batches_after_the_checkpoint_and_carries_the_uncut_blocks() {
        let dir = std::env::temp_dir().join(format!("ember-wal-unit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        {
            let mut wal: Wal<u32> = Wal::open(&Location::local(&dir), "3", None).unwrap();
            for (time, blocks) in [(1000, vec![vec![1, 2], vec![3]]), (2000, vec![vec![4]]), (3000, vec![vec![5, 6]])] {
                for b in &blocks {
                    wal.append_block(b, None, true).unwrap();
                }
                assert!(wal.cut(time, || None).unwrap().is_empty());
            }
            wal.append_block(&[7], None, false).unwrap();
            wal.append_block(&[8, 9], None, true).unwrap();
        }
        // A torn frame at the end (a crash mid-append) is ignored.
        let path = dir.join("receivers/3.wal");
        let mut bytes = fs::read(&path).unwrap();
        bytes.extend_from_slice(&[9, 0, 0, 0, 1, 2]);
        fs::write(&path, bytes).unwrap();
        let mut wal: Wal<u32> = Wal::open(&Location::local(&dir), "3", Some(1000)).unwrap();
        assert_eq!(wal.replayed(1000), None);
        assert_eq!(wal.replayed(2000), Some(vec![vec![4]]));
        assert_eq!(wal.replayed(3000), Some(vec![vec![5, 6]]));
        assert_eq!(wal.cut(4000, || None).unwrap(), vec![vec![7], vec![8, 9]]);
        drop(wal);
        // Recovered again from 3000: batch 4000 has the carried blocks, as cut.
        let mut wal: Wal<u32> = Wal::open(&Location::local(&dir), "3", Some(3000)).unwrap();
        assert_eq!(wal.replayed(4000), Some(vec![vec![7], vec![8, 9]]));
        drop(wal);
        // A fresh start begins an empty log.
        let mut wal: Wal<u32> = Wal::open(&Location::local(&dir), "3", None).unwrap();
        assert_eq!(wal.replayed(4000), None);
        assert!(wal.cut(1000, || None).unwrap().is_empty());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_source_position_of_the_last_durable_block_survives_recovery_and_compaction() {
        let dir = std::env::temp_dir().join(format!("ember-wal-position-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        {
            let mut wal: Wal<u32> = Wal::open(&Location::local(&dir), "s", None).unwrap();
            assert_eq!(wal.position(), None);
            wal.append_block(&[1, 2], Some(2), true).unwrap();
            assert!(wal.cut(1000, || None).unwrap().is_empty());
            // Lines that were all skipped move the position without a block.
            wal.append_block(&[], Some(5), true).unwrap();
            wal.append_block(&[6], Some(6), true).unwrap();
            assert_eq!(wal.position(), Some(6));
        }
        // Recovered from 1000: the batch before is dropped from the log, not the position.
        let mut wal: Wal<u32> = Wal::open(&Location::local(&dir), "s", Some(1000)).unwrap();
        assert_eq!(wal.position(), Some(6));
        assert_eq!(wal.cut(2000, || None).unwrap(), vec![vec![6]]);
        drop(wal);
        let wal: Wal<u32> = Wal::open(&Location::local(&dir), "s", Some(2000)).unwrap();
        assert_eq!(wal.position(), Some(6), "the position survives a rewrite without blocks");
        drop(wal);
        // A fresh start forgets it.
        let wal: Wal<u32> = Wal::open(&Location::local(&dir), "s", None).unwrap();
        assert_eq!(wal.position(), None);
        let _ = fs::remove_dir_all(&dir);
    }
}
