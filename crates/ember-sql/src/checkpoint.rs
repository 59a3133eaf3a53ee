//! A query's checkpoint (`checkpointLocation`), laid out as Spark lays its own out where the
//! parts correspond:
//!
//! - `metadata`: the query's id (`{"id": ...}`), kept across restarts, and ember's batch grid
//!   (`emberBatchIntervalMs` and `emberZeroMs`: every run's batches are at zero + k * interval,
//!   so the commit log's batch times and the engine's log of the files chosen per batch time
//!   still match after a run killed before the engine's first checkpoint);
//! - `engine/`: ember's checkpoint of the micro-batches (the file source's files per batch,
//!   written before the batch runs: Spark's offsets log) through `StreamingContext::get_or_create`;
//! - `state/<batchId>`: with an aggregation, its state after batch `batchId` (the groups' keys
//!   and accumulator states as one Arrow IPC stream), written before the batch's commit (Spark's
//!   state store versions); the two newest are kept;
//! - `commits/<batchId>`: written after the sink committed batch `batchId`, with the batch's
//!   time (Spark's commit log).
//!
//! The directory is an [`ember::storage::Location`]: local, or `s3://bucket/prefix`. Every file
//! is written whole ([`Location::put`]); the commit log's entries are what commit a batch.
//!
//! A restarted query runs again the micro-batches after the engine's last checkpoint with the
//! same input; those the commit log holds are not written again, and the next batch id follows
//! the last committed one, so a replayable source into the file, memory or `foreachBatch` sink
//! (idempotent per batch id) gives every row once.

use ember::storage::Location;

use crate::error::{Error, Result};

/// The checkpoint directory of a query.
pub(crate) struct QueryCheckpoint {
    dir: Location,
}

/// The engine's batch grid of a query's checkpoint: batches at `zero + k * interval`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grid {
    pub interval_ms: u64,
    pub zero_ms: Option<u64>,
}

/// What a checkpoint says about the batches already committed.
#[derive(Clone, Debug, Default)]
pub(crate) struct Committed {
    /// The id the next batch gets.
    pub next_id: i64,
    /// The time of the last committed batch (ms), if any.
    pub last_time_ms: Option<u64>,
    /// The watermarks the next batch runs with (Spark's `nextBatchWatermarkMs`; ember also
    /// keeps the one for late rows and each `withWatermark`'s).
    pub watermarks: crate::eventtime::WatermarkTracker,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::illegal_argument(format!("{what}: {e}"))
}

impl QueryCheckpoint {
    /// Opens (or creates) the checkpoint in `dir`; returns it, the query's id (`new_id()` for a
    /// new checkpoint), what it committed, and the batch grid: its interval (`interval_ms` for a
    /// new checkpoint, else the checkpoint's) and its zero (the interval before the first
    /// batch; `None` in a checkpoint written before ember kept it).
    pub fn open(dir: &Location, new_id: impl FnOnce() -> String, interval_ms: u64) -> Result<(Self, String, Committed, Grid)> {
        dir.prepare().map_err(io("cannot create the checkpoint directory".into()))?;
        let metadata = dir.show("metadata");
        let (id, grid) = match dir.get("metadata").map_err(io("cannot read the checkpoint".into()))? {
            Some(text) => {
                let value: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
                let id = value["id"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| Error::illegal_argument(format!("{metadata} is not a query's metadata")))?;
                let grid = Grid {
                    interval_ms: value["emberBatchIntervalMs"].as_u64().unwrap_or(interval_ms),
                    zero_ms: value["emberZeroMs"].as_u64(),
                };
                (id, grid)
            }
            None => {
                let id = new_id();
                // The engine's batches of every run are on this grid, so that a run killed
                // before the engine's first checkpoint is replayed at the same batch times
                // (which the commit log names) with the same input.
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                let zero_ms = now - now % interval_ms.max(1);
                let text = serde_json::json!({ "id": id, "emberBatchIntervalMs": interval_ms, "emberZeroMs": zero_ms }).to_string();
                dir.put("metadata", text.into_bytes())
                    .map_err(io("cannot start the checkpoint".into()))?;
                let grid = Grid {
                    interval_ms,
                    zero_ms: Some(zero_ms),
                };
                (id, grid)
            }
        };
        let checkpoint = QueryCheckpoint { dir: dir.clone() };
        let committed = checkpoint.committed()?;
        Ok((checkpoint, id, committed, grid))
    }

    fn committed(&self) -> Result<Committed> {
        let commits = self.dir.join("commits");
        let last = commits
            .list()
            .map_err(io("cannot read the commit log".into()))?
            .iter()
            .filter_map(|e| e.name.parse::<i64>().ok())
            .max();
        let Some(last) = last else {
            return Ok(Committed::default());
        };
        let name = last.to_string();
        let path = commits.show(&name);
        let text = commits
            .get(&name)
            .map_err(io("cannot read the commit log".into()))?
            .ok_or_else(|| Error::illegal_argument(format!("{path} vanished while the commit log was read")))?;
        let value = serde_json::from_slice::<serde_json::Value>(&text).unwrap_or_default();
        let time = value["batchTime"]
            .as_u64()
            .ok_or_else(|| Error::illegal_argument(format!("{path} is not a commit of the commit log")))?;
        let eviction_ms = value["nextBatchWatermarkMs"].as_i64().unwrap_or(0);
        Ok(Committed {
            next_id: last + 1,
            last_time_ms: Some(time),
            watermarks: crate::eventtime::WatermarkTracker {
                current: crate::eventtime::Watermarks {
                    eviction_ms,
                    late_ms: value["emberLateRowsWatermarkMs"].as_i64().unwrap_or(eviction_ms),
                },
                nodes: value["emberWatermarksMs"]
                    .as_array()
                    .map(|nodes| nodes.iter().map(serde_json::Value::as_i64).collect())
                    .unwrap_or_default(),
            },
        })
    }

    /// Where ember's engine keeps its checkpoint of the micro-batches.
    pub fn engine_dir(&self) -> String {
        self.dir.join("engine").to_string()
    }

    /// Keeps the aggregation's state after batch `batch_id`, and forgets versions before the one
    /// that batch started from.
    pub fn write_state(&self, batch_id: i64, bytes: &[u8]) -> Result<()> {
        let dir = self.dir.join("state");
        dir.put(&batch_id.to_string(), bytes.to_vec())
            .map_err(io(format!("cannot write the state of batch {batch_id}")))?;
        if let Ok(entries) = dir.list() {
            for old in entries
                .iter()
                .filter_map(|e| e.name.parse::<i64>().ok())
                .filter(|v| *v < batch_id - 1)
            {
                let _ = dir.delete(&old.to_string());
            }
        }
        Ok(())
    }

    /// The schema of the aggregation's state (an Arrow IPC stream without batches) that the
    /// checkpoint was started with; `schema` when it is new.
    pub fn state_schema(&self, schema: &[u8]) -> Result<Vec<u8>> {
        match self.dir.get("state/schema").map_err(io("cannot read the state's schema".into()))? {
            Some(bytes) => Ok(bytes),
            None => {
                self.dir
                    .put("state/schema", schema.to_vec())
                    .map_err(io("cannot write the state's schema".into()))?;
                Ok(schema.to_vec())
            }
        }
    }

    /// The aggregation's state after batch `batch_id`.
    pub fn read_state(&self, batch_id: i64) -> Result<Vec<u8>> {
        let name = format!("state/{batch_id}");
        self.dir
            .get(&name)
            .map_err(io(format!("cannot read the state of batch {batch_id}")))?
            .ok_or_else(|| {
                Error::illegal_argument(format!(
                    "the checkpoint commits batch {batch_id} but has no state for it at {}",
                    self.dir.show(&name)
                ))
            })
    }

    /// Records that the sink committed batch `batch_id`, the micro-batch of `time_ms`, and the
    /// watermarks the next batch runs with.
    pub fn commit(&self, batch_id: i64, time_ms: u64, next: &crate::eventtime::WatermarkTracker) -> Result<()> {
        let commit = serde_json::json!({
            "nextBatchWatermarkMs": next.current.eviction_ms,
            "emberLateRowsWatermarkMs": next.current.late_ms,
            "emberWatermarksMs": next.nodes,
            "batchTime": time_ms,
        });
        self.dir
            .put(&format!("commits/{batch_id}"), commit.to_string().into_bytes())
            .map_err(io(format!("cannot commit batch {batch_id}")))
    }
}
