//! Checkpoints on disk: what `ssc.checkpoint(dir)` writes and `StreamingContext::get_or_create`
//! reads back.
//!
//! At every checkpoint time `T` (a multiple of every stateful operator's checkpoint interval;
//! every batch for a plan without state), each worker serialises the state of its stateful
//! operators after batch `T` (see `ember_engine::state`). A writer thread collects them and,
//! once every worker has sent its part and every output of the batches up to `T` has run,
//! commits checkpoint `T`:
//!
//! ```text
//! <dir>/checkpoint-<T>/worker-<i>.state   one file per worker: its operators' key groups
//! <dir>/checkpoint-<T>.manifest           written last: commits T (JSON)
//! ```
//!
//! The directory is a [`Location`]: local, or a prefix of an object store (`s3://`). Every file
//! is written whole by [`Location::put`] (locally under a temporary name, fsynced and renamed;
//! on S3 one PUT); the manifest goes last, so a checkpoint without its manifest never counts,
//! and nothing depends on a rename or on a listing showing more than the committed manifests. The last
//! [`KEEP_CHECKPOINTS`] committed checkpoints are kept, older ones deleted. A state file starts
//! with a magic string, a format version, the payload's length and its CRC-32; the payload is
//! postcard. A file that fails any of these checks is refused with an error naming it, and
//! recovery falls back to the checkpoint before.
//!
//! Outputs of batches after `T` run again after a recovery from `T` (at least once, as in Spark);
//! outputs of batches up to `T` had all run before `T` was committed.
//!
//! In a cluster of several processes the directory is shared (as Spark requires a reliable
//! shared file system). Each process writes the state files of its own workers for every
//! checkpoint time in turn, and reports each part (its files, sizes and checksums) to process 0
//! over the control plane once its outputs up to `T` have run. Process 0 writes the manifest of
//! the newest `T` every process reported, so a checkpoint commits only when all of its files
//! are durable, whichever process dies. A process that holds no state (a file stream's
//! position lives on worker 0 only) reports the newest batch it completed instead, which covers
//! every checkpoint time up to it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration as StdDuration;

use ember_engine::control::ControlPlane;
use ember_engine::runtime::RunShared;
use ember_engine::state::{OperatorSnapshot, RestoreImage, RestoredState, SnapshotSink};
use ember_engine::{FailureCause, JobFailure};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::Location;

/// How many committed checkpoints are kept.
pub(crate) const KEEP_CHECKPOINTS: usize = 2;

const STATE_MAGIC: &[u8; 12] = b"EMBER-STATE\0";
const STATE_FORMAT: u16 = 1;
const MANIFEST_FORMAT: u32 = 1;
/// The operator name checkpoint failures are reported under.
const CHECKPOINT_OPERATOR: &str = "checkpoint";

/// The manifest that commits one checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub(crate) format: u32,
    /// The batch time the state is from (ms).
    pub(crate) time_ms: u64,
    /// The zero time of the run (ms): batch times are `zero + k * interval`.
    pub(crate) zero_ms: u64,
    pub(crate) batch_interval_ms: u64,
    pub(crate) key_groups: u32,
    /// The stateful operators, by id, with the kind of their state.
    pub(crate) operators: BTreeMap<String, String>,
    /// The state files, relative to the checkpoint directory.
    pub(crate) files: Vec<ManifestFile>,
}

/// One state file of a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ManifestFile {
    pub(crate) name: String,
    pub(crate) bytes: u64,
    pub(crate) crc32: u32,
}

/// One operator's part of a worker's state file.
#[derive(Debug, Serialize, Deserialize)]
struct FileEntry {
    operator: String,
    kind: String,
    groups: BTreeMap<u32, Vec<u8>>,
}

/// One process's part of a checkpoint in a cluster, as it reports it to process 0.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Part {
    operators: BTreeMap<String, String>,
    files: Vec<ManifestFile>,
    /// The process holds no state: its report covers every checkpoint time up to this one.
    stateless: bool,
}

/// How long process 0 waits at a stop for the other processes' parts of a checkpoint it wrote
/// its own part of.
const CLUSTER_FINISH_WAIT: StdDuration = StdDuration::from_secs(5);

/// A checkpoint read back and checked.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) manifest: Manifest,
    pub(crate) image: RestoreImage,
}

fn io_error(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

fn manifest_name(time: u64) -> String {
    format!("checkpoint-{time}.manifest")
}

fn state_dir_name(time: u64) -> String {
    format!("checkpoint-{time}")
}

/// A state file: magic, format, payload length, CRC-32, payload.
fn encode_state_file(entries: &[FileEntry]) -> Result<Vec<u8>> {
    let payload = postcard::to_stdvec(entries).map_err(|e| Error::Internal(format!("cannot serialise a state file: {e}")))?;
    let mut bytes = Vec::with_capacity(payload.len() + 26);
    bytes.extend_from_slice(STATE_MAGIC);
    bytes.extend_from_slice(&STATE_FORMAT.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    Ok(bytes)
}

fn decode_state_file(bytes: &[u8]) -> std::result::Result<Vec<FileEntry>, String> {
    let header = STATE_MAGIC.len() + 2 + 8 + 4;
    if bytes.len() < header || &bytes[..STATE_MAGIC.len()] != STATE_MAGIC {
        return Err("not an ember state file (bad magic)".into());
    }
    let field = |at: usize, n: usize| &bytes[STATE_MAGIC.len() + at..STATE_MAGIC.len() + at + n];
    let format = u16::from_le_bytes(field(0, 2).try_into().map_err(|_| "bad header")?);
    if format != STATE_FORMAT {
        return Err(format!("state file format {format}, this ember reads format {STATE_FORMAT}"));
    }
    let length = u64::from_le_bytes(field(2, 8).try_into().map_err(|_| "bad header")?);
    let crc = u32::from_le_bytes(field(10, 4).try_into().map_err(|_| "bad header")?);
    let payload = &bytes[header..];
    if payload.len() as u64 != length {
        return Err(format!(
            "truncated: the header says {length} bytes of state, the file has {}",
            payload.len()
        ));
    }
    if crc32fast::hash(payload) != crc {
        return Err("corrupt: the checksum does not match".into());
    }
    postcard::from_bytes(payload).map_err(|e| format!("corrupt: {e}"))
}

/// The oldest of the committed checkpoints kept in `dir` (what a recovery may fall back to).
pub(crate) fn oldest_kept(dir: &Location) -> Option<u64> {
    let times = committed(dir).ok()?;
    times.get(times.len().min(KEEP_CHECKPOINTS).checked_sub(1)?).copied()
}

/// The committed checkpoints in `dir`, newest first.
fn committed(dir: &Location) -> Result<Vec<u64>> {
    let entries = dir.list().map_err(io_error("cannot list the checkpoint directory".into()))?;
    let mut times: Vec<u64> = entries
        .iter()
        .filter_map(|e| e.name.strip_prefix("checkpoint-")?.strip_suffix(".manifest")?.parse().ok())
        .collect();
    times.sort_unstable_by(|a, b| b.cmp(a));
    Ok(times)
}

/// Reads checkpoint `time` from `dir` and checks every file.
fn read_checkpoint(dir: &Location, time: u64) -> std::result::Result<Recovered, String> {
    let name = manifest_name(time);
    let path = dir.show(&name);
    let text = dir
        .get(&name)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{path}: the manifest vanished"))?;
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| format!("{path}: corrupt manifest: {e}"))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(format!(
            "{}: manifest format {}, this ember reads format {MANIFEST_FORMAT}",
            path, manifest.format
        ));
    }
    // A manifest that parses but does not describe a batch of its own grid is corrupt.
    let on_grid = manifest.batch_interval_ms > 0
        && manifest.time_ms == time
        && manifest.time_ms > manifest.zero_ms
        && (manifest.time_ms - manifest.zero_ms).is_multiple_of(manifest.batch_interval_ms);
    if !on_grid {
        return Err(format!(
            "{}: corrupt manifest: batch time {} ms is not a batch of zero {} ms and interval {} ms",
            path, manifest.time_ms, manifest.zero_ms, manifest.batch_interval_ms
        ));
    }
    let inside = |name: &str| Path::new(name).components().all(|c| matches!(c, std::path::Component::Normal(_)));
    if let Some(file) = manifest.files.iter().find(|f| !inside(&f.name)) {
        return Err(format!(
            "{}: corrupt manifest: state file {} is outside the checkpoint directory",
            path, file.name
        ));
    }
    let mut image: BTreeMap<String, RestoredState> = BTreeMap::new();
    for file in &manifest.files {
        let path = dir.show(&file.name);
        let bytes = dir
            .get(&file.name)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{path}: the state file named by the manifest is missing"))?;
        if bytes.len() as u64 != file.bytes || crc32fast::hash(&bytes) != file.crc32 {
            return Err(format!(
                "{}: the file does not match the manifest ({} bytes, {} expected, or a bad checksum)",
                path,
                bytes.len(),
                file.bytes
            ));
        }
        for entry in decode_state_file(&bytes).map_err(|e| format!("{}: {e}", path))? {
            let state = image.entry(entry.operator.clone()).or_insert_with(|| RestoredState {
                kind: entry.kind.clone(),
                groups: BTreeMap::new(),
            });
            for (group, state_bytes) in entry.groups {
                if state.groups.insert(group, state_bytes).is_some() {
                    return Err(format!("{}: key group {group} of {} is written twice", path, entry.operator));
                }
            }
        }
    }
    // Operators whose every key group was empty still belong to the image.
    for (operator, kind) in &manifest.operators {
        image.entry(operator.clone()).or_insert_with(|| RestoredState {
            kind: kind.clone(),
            groups: BTreeMap::new(),
        });
    }
    Ok(Recovered {
        manifest,
        image: Arc::new(image),
    })
}

/// The newest intact checkpoint in `dir`, falling back past damaged ones (each named in a
/// warning). `None` when `dir` has no committed checkpoint.
///
/// # Errors
///
/// [`Error::Checkpoint`] when checkpoints exist but none is intact; [`Error::Io`] when the
/// directory cannot be listed.
pub(crate) fn recover(dir: &Location) -> Result<Option<Recovered>> {
    let times = committed(dir)?;
    let mut problems = Vec::new();
    for time in times {
        match read_checkpoint(dir, time) {
            Ok(recovered) => {
                if !problems.is_empty() {
                    tracing::warn!(
                        checkpoint_ms = time,
                        "Recovering from an older checkpoint, because newer ones are damaged: {}",
                        problems.join("; ")
                    );
                }
                return Ok(Some(recovered));
            }
            Err(problem) => {
                tracing::warn!(checkpoint_ms = time, "Checkpoint {time} is refused: {problem}");
                problems.push(problem);
            }
        }
    }
    if problems.is_empty() {
        Ok(None)
    } else {
        Err(Error::Checkpoint(format!(
            "no intact checkpoint in {}: {}",
            dir,
            problems.join("; ")
        )))
    }
}

/// What the writer needs to know about the run.
#[derive(Clone, Debug)]
pub(crate) struct RunFacts {
    pub(crate) zero_ms: u64,
    pub(crate) batch_interval_ms: u64,
    pub(crate) key_groups: u32,
}

enum WriterMsg {
    Snapshot(OperatorSnapshot),
    /// The run has started: its shared state and facts.
    Started(Arc<RunShared>, RunFacts),
    /// The workers have exited: commit what can be committed and end.
    Finish,
}

/// Writes checkpoints on a thread of its own.
pub(crate) struct CheckpointWriter {
    sender: Sender<WriterMsg>,
    thread: JoinHandle<()>,
}

impl std::fmt::Debug for CheckpointWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CheckpointWriter")
    }
}

impl CheckpointWriter {
    /// Starts a writer for `dir` (created if missing); `last_committed` is the checkpoint a
    /// recovered run started from.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the directory cannot be created or the thread cannot start.
    pub(crate) fn start(dir: &Location, last_committed: Option<u64>) -> Result<CheckpointWriter> {
        dir.prepare().map_err(io_error("cannot prepare the checkpoint directory".into()))?;
        let (sender, receiver) = channel();
        let mut state = WriterState {
            dir: dir.to_owned(),
            pending: BTreeMap::new(),
            last_committed,
            last_written: None,
            parts: BTreeMap::new(),
            stateless_through: BTreeMap::new(),
            run: None,
            failed: false,
        };
        let thread = std::thread::Builder::new()
            .name("ember-checkpoint".into())
            .spawn(move || state.run(&receiver))
            .map_err(io_error("cannot start the checkpoint writer thread".into()))?;
        Ok(CheckpointWriter { sender, thread })
    }

    /// The sink the workers hand their snapshots to.
    pub(crate) fn sink(&self) -> SnapshotSink {
        let sender = self.sender.clone();
        SnapshotSink(Arc::new(move |snapshot| {
            // Fails only once the writer is gone (the run is over).
            let _ = sender.send(WriterMsg::Snapshot(snapshot));
        }))
    }

    /// Tells the writer the run has started.
    pub(crate) fn started(&self, shared: Arc<RunShared>, facts: RunFacts) {
        let _ = self.sender.send(WriterMsg::Started(shared, facts));
    }

    /// Commits what the stopped run completed and waits for the writer to end.
    pub(crate) fn finish(self) {
        let _ = self.sender.send(WriterMsg::Finish);
        if self.thread.join().is_err() {
            tracing::error!("The checkpoint writer thread panicked; this is a bug in ember.");
        }
    }
}

struct WriterState {
    dir: Location,
    /// Snapshots received, by batch time.
    pending: BTreeMap<u64, Vec<OperatorSnapshot>>,
    last_committed: Option<u64>,
    /// In a cluster: the newest checkpoint time this process wrote its part of.
    last_written: Option<u64>,
    /// On process 0 of a cluster: the parts reported, by checkpoint time and process.
    parts: BTreeMap<u64, BTreeMap<usize, Part>>,
    /// On process 0 of a cluster: for each process without state, the newest time it reported.
    stateless_through: BTreeMap<usize, u64>,
    run: Option<(Arc<RunShared>, RunFacts)>,
    /// A write failed: the run is being stopped and nothing more is written.
    failed: bool,
}

impl WriterState {
    fn run(&mut self, receiver: &Receiver<WriterMsg>) {
        loop {
            match receiver.recv_timeout(StdDuration::from_millis(20)) {
                Ok(WriterMsg::Snapshot(snapshot)) => self.pending.entry(snapshot.time).or_default().push(snapshot),
                Ok(WriterMsg::Started(shared, facts)) => self.run = Some((shared, facts)),
                Ok(WriterMsg::Finish) | Err(RecvTimeoutError::Disconnected) => {
                    while let Ok(WriterMsg::Snapshot(snapshot)) = receiver.try_recv() {
                        self.pending.entry(snapshot.time).or_default().push(snapshot);
                    }
                    self.commit_ready();
                    self.await_cluster_parts();
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.commit_ready();
        }
    }

    /// Commits the newest checkpoint time that has every snapshot and whose outputs have run.
    fn commit_ready(&mut self) {
        if self.failed {
            return;
        }
        let Some((shared, facts)) = self.run.clone() else { return };
        let Some((expected, every)) = shared.checkpoint_layout() else {
            return;
        };
        let Some(done) = shared.processed_through() else { return };
        // Once the workers have finished, their progress reads "everything": the last batch
        // is the agreed final one.
        let done = match shared.final_time() {
            Some(last) => done.min(last),
            None if done >= u64::MAX / 2 => return,
            None => done,
        };
        if let Some(control) = shared.control() {
            self.write_cluster_parts(&shared, control, &facts, expected, every, done);
            return;
        }
        let ready = if expected == 0 {
            // No state: any completed batch on the checkpoint grid commits.
            grid_floor(done, facts.zero_ms, every).filter(|time| *time > facts.zero_ms)
        } else {
            self.pending
                .iter()
                .rev()
                .find(|(time, snapshots)| **time <= done && snapshots.len() >= expected)
                .map(|(time, _)| *time)
        };
        let Some(time) = ready.filter(|t| self.last_committed.is_none_or(|last| *t > last)) else {
            return;
        };
        let snapshots = self.pending.remove(&time).unwrap_or_default();
        self.pending = self.pending.split_off(&(time + 1));
        let committed = self
            .write_part(time, snapshots)
            .and_then(|part| self.write_manifest(time, part.operators, part.files, &facts));
        self.after_commit(&shared, time, committed);
    }

    /// Records a commit, or fails the run when it could not be written.
    fn after_commit(&mut self, shared: &RunShared, time: u64, committed: Result<()>) {
        match committed {
            Ok(()) => {
                tracing::debug!(checkpoint_ms = time, "Checkpoint committed.");
                self.last_committed = Some(time);
                self.delete_old();
            }
            Err(error) => self.fail(shared, time, &error),
        }
    }

    fn fail(&mut self, shared: &RunShared, time: u64, error: &Error) {
        self.failed = true;
        shared.report(JobFailure::new(
            CHECKPOINT_OPERATOR,
            time,
            FailureCause::Error(format!("{error}; the context stops rather than run on without durable checkpoints")),
        ));
        shared.request_stop(true);
    }

    /// In a cluster: writes this process's part of every checkpoint time ready here, oldest
    /// first, and reports each to process 0; on process 0, commits the newest time every
    /// process has reported.
    fn write_cluster_parts(
        &mut self,
        shared: &RunShared,
        control: &ControlPlane,
        facts: &RunFacts,
        expected: usize,
        every: u64,
        done: u64,
    ) {
        let after = self.last_written.or(self.last_committed).unwrap_or(facts.zero_ms);
        let times: Vec<u64> = if expected == 0 {
            grid_floor(done, facts.zero_ms, every)
                .filter(|time| *time > after)
                .into_iter()
                .collect()
        } else {
            self.pending
                .iter()
                .filter(|(time, snapshots)| **time > after && **time <= done && snapshots.len() >= expected)
                .map(|(time, _)| *time)
                .collect()
        };
        for time in times {
            let snapshots = self.pending.remove(&time).unwrap_or_default();
            let part = match self.write_part(time, snapshots) {
                Ok(part) => Part {
                    stateless: expected == 0,
                    ..part
                },
                Err(error) => return self.fail(shared, time, &error),
            };
            match serde_json::to_string(&part) {
                Ok(report) => control.report_checkpoint(time, report),
                Err(e) => return self.fail(shared, time, &Error::Internal(format!("cannot serialise a checkpoint report: {e}"))),
            }
            self.last_written = Some(time);
            self.pending = self.pending.split_off(&(time + 1));
        }
        if control.process() == 0 {
            self.commit_reported(shared, control, facts);
        }
    }

    /// Process 0: takes the parts reported and commits the newest checkpoint time that every
    /// process's parts cover.
    fn commit_reported(&mut self, shared: &RunShared, control: &ControlPlane, facts: &RunFacts) {
        for report in control.take_checkpoint_reports() {
            match serde_json::from_str::<Part>(&report.report) {
                Ok(part) => {
                    if part.stateless {
                        let through = self.stateless_through.entry(report.process).or_insert(0);
                        *through = (*through).max(report.time_ms);
                    }
                    self.parts.entry(report.time_ms).or_default().insert(report.process, part);
                }
                Err(e) => tracing::error!(
                    process = report.process,
                    checkpoint_ms = report.time_ms,
                    error = %e,
                    "Ignored an unreadable checkpoint report."
                ),
            }
        }
        let processes = control.processes();
        let covered = |time: u64, parts: &BTreeMap<usize, Part>| {
            (0..processes).all(|p| parts.contains_key(&p) || self.stateless_through.get(&p).is_some_and(|t| *t >= time))
        };
        let Some(time) = self
            .parts
            .iter()
            .rev()
            .take_while(|(time, _)| self.last_committed.is_none_or(|last| **time > last))
            .find(|(time, parts)| covered(**time, parts))
            .map(|(time, _)| *time)
        else {
            return;
        };
        let parts = self.parts.remove(&time).unwrap_or_default();
        self.parts = self.parts.split_off(&(time + 1));
        let (mut operators, mut files) = (BTreeMap::new(), Vec::new());
        for part in parts.into_values() {
            operators.extend(part.operators);
            files.extend(part.files);
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let committed = self.write_manifest(time, operators, files, facts);
        self.after_commit(shared, time, committed);
    }

    /// At a stop, process 0 of a cluster waits a while for the other processes' parts of the
    /// checkpoints it wrote its own part of (they finish their last batches at about the same
    /// time), unless the cluster failed.
    fn await_cluster_parts(&mut self) {
        let Some((shared, _)) = self.run.clone() else { return };
        let Some(control) = shared.control() else { return };
        if control.process() != 0 {
            return;
        }
        let deadline = std::time::Instant::now() + CLUSTER_FINISH_WAIT;
        while !self.failed
            && !control.has_failed()
            && self
                .last_written
                .is_some_and(|written| self.last_committed.is_none_or(|c| c < written))
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(StdDuration::from_millis(5));
            self.commit_ready();
        }
    }

    /// Writes the state files of `snapshots` (this process's workers) for checkpoint `time`.
    fn write_part(&self, time: u64, snapshots: Vec<OperatorSnapshot>) -> Result<Part> {
        let mut operators = BTreeMap::new();
        let mut by_worker: BTreeMap<usize, Vec<FileEntry>> = BTreeMap::new();
        for snapshot in snapshots {
            operators.insert(snapshot.operator.clone(), snapshot.kind.clone());
            by_worker.entry(snapshot.worker).or_default().push(FileEntry {
                operator: snapshot.operator,
                kind: snapshot.kind,
                groups: snapshot.groups,
            });
        }
        let mut files = Vec::new();
        // A plan without state has a manifest only.
        for (worker, entries) in by_worker {
            let name = format!("{}/worker-{worker}.state", state_dir_name(time));
            let bytes = encode_state_file(&entries)?;
            let (length, crc32) = (bytes.len() as u64, crc32fast::hash(&bytes));
            self.dir
                .put(&name, bytes)
                .map_err(io_error(format!("cannot write checkpoint {time}")))?;
            files.push(ManifestFile {
                name,
                bytes: length,
                crc32,
            });
        }
        Ok(Part {
            operators,
            files,
            stateless: false,
        })
    }

    /// Commits checkpoint `time`: writes its manifest (after every file it names is durable).
    fn write_manifest(&self, time: u64, operators: BTreeMap<String, String>, files: Vec<ManifestFile>, facts: &RunFacts) -> Result<()> {
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            time_ms: time,
            zero_ms: facts.zero_ms,
            batch_interval_ms: facts.batch_interval_ms,
            key_groups: facts.key_groups,
            operators,
            files,
        };
        let text = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Internal(format!("cannot serialise a manifest: {e}")))?;
        self.dir
            .put(&manifest_name(time), text)
            .map_err(io_error(format!("cannot commit checkpoint {time}")))
    }

    /// Deletes committed checkpoints beyond the newest [`KEEP_CHECKPOINTS`], manifest first,
    /// and state directories no manifest commits (left by a crash mid-write).
    fn delete_old(&self) {
        let Ok(times) = committed(&self.dir) else { return };
        for time in times.iter().skip(KEEP_CHECKPOINTS) {
            let _ = self.dir.delete(&manifest_name(*time));
            let _ = self.dir.delete_all(&state_dir_name(*time));
        }
        let kept: Vec<u64> = times.into_iter().take(KEEP_CHECKPOINTS).collect();
        let oldest = kept.last().copied().unwrap_or(0);
        // A state directory or temporary manifest older than every kept checkpoint is garbage
        // (left by a crash mid-write).
        let files = self.dir.list().unwrap_or_default().into_iter().map(|e| e.name);
        for name in files.chain(self.dir.list_dirs().unwrap_or_default()) {
            let Some(time) = name
                .strip_prefix("checkpoint-")
                .map(|t| t.strip_suffix(".manifest.tmp").or_else(|| t.strip_suffix(".tmp")).unwrap_or(t))
                .and_then(|t| t.parse::<u64>().ok())
            else {
                continue;
            };
            if time < oldest {
                let _ = self.dir.delete_all(&name);
            }
        }
    }
}

/// The newest checkpoint time at or before `time` on the grid of `every` ms from `zero`.
fn grid_floor(time: u64, zero: u64, every: u64) -> Option<u64> {
    let since_zero = time.checked_sub(zero)?;
    Some(zero + since_zero - since_zero % every.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_file_round_trips_and_damage_is_named() {
        let entries = vec![FileEntry {
            operator: "3".into(),
            kind: "k".into(),
            groups: BTreeMap::from([(7, vec![1, 2, 3])]),
        }];
        let bytes = encode_state_file(&entries).unwrap();
        let back = decode_state_file(&bytes).unwrap();
        assert_eq!(back[0].groups, entries[0].groups);
        let truncated = decode_state_file(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(truncated.contains("truncated"), "{truncated}");
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(decode_state_file(&flipped).unwrap_err().contains("checksum"));
        assert!(decode_state_file(b"hello").unwrap_err().contains("magic"));
    }
}
