//! A query's progress per micro-batch (Spark's `StreamingQueryProgress`: `lastProgress`,
//! `recentProgress`), with Spark's JSON field names.

use std::collections::VecDeque;

/// How many progress reports a query keeps (Spark's `spark.sql.streaming.numRecentProgresses`).
pub(crate) const KEPT: usize = 100;

/// One micro-batch's progress.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryProgress {
    /// The query's id.
    pub id: String,
    /// This run's id.
    pub run_id: String,
    /// The query's name.
    pub name: Option<String>,
    /// The micro-batch's id.
    pub batch_id: i64,
    /// The micro-batch's time (ms since the epoch): its input arrived up to this time.
    pub timestamp_ms: u64,
    /// Rows the source gave the micro-batch.
    pub num_input_rows: u64,
    /// Rows the input arrived at per second: the input rows over the time since the last
    /// micro-batch with input.
    pub input_rows_per_second: f64,
    /// From the micro-batch's time to the sink's commit (Spark's `durationMs.triggerExecution`).
    pub trigger_execution_ms: u64,
    /// The aggregation's finish and the sink's write (Spark's `durationMs.addBatch`).
    pub add_batch_ms: u64,
    /// Groups in the aggregation's state after the micro-batch (`None`: no aggregation).
    pub state_rows: Option<u64>,
    /// The stateful operator, as Spark 3.5 names it in `stateOperators` (`stateStoreSave`,
    /// `dedupe`, `dedupeWithinWatermark`, `symmetricHashJoin`, `flatMapGroupsWithState`,
    /// `applyInPandasWithState`, and `defaultName` for a session window's).
    pub operator_name: String,
    /// Groups the micro-batch added or changed in the state.
    pub state_rows_updated: u64,
    /// Groups the watermark freed from the state.
    pub state_rows_removed: u64,
    /// Rows the aggregation dropped as older than the watermark (Spark counts the partially
    /// aggregated rows, one per group).
    pub state_rows_dropped_by_watermark: u64,
    /// With a watermark: the micro-batch's event times (none without rows) and its watermark.
    pub event_time: Option<(Option<crate::eventtime::EventStats>, i64)>,
    /// Rows the sink got.
    pub num_output_rows: u64,
    /// Each source of the query (a union or a join reads several), as Spark describes it,
    /// with the rows it gave the micro-batch.
    pub sources: Vec<SourceProgress>,
    /// The sink's format.
    pub sink: String,
}

/// One source's part of a micro-batch (an entry of Spark's `sources`).
#[derive(Clone, Debug, PartialEq)]
pub struct SourceProgress {
    /// The source, as Spark describes it.
    pub description: String,
    /// Rows it gave the micro-batch.
    pub num_input_rows: u64,
}

impl QueryProgress {
    /// Rows processed per second of `trigger_execution_ms`.
    pub fn processed_rows_per_second(&self) -> f64 {
        if self.trigger_execution_ms == 0 {
            return self.num_input_rows as f64 * 1000.0;
        }
        self.num_input_rows as f64 * 1000.0 / self.trigger_execution_ms as f64
    }

    /// Spark's JSON of a progress report (`StreamingQueryProgress.json`), with the fields ember
    /// measures.
    pub fn json(&self) -> String {
        let state_operators: Vec<serde_json::Value> = self
            .state_rows
            .map(|rows| {
                serde_json::json!({
                    "operatorName": self.operator_name,
                    "numRowsTotal": rows,
                    "numRowsUpdated": self.state_rows_updated,
                    "numRowsRemoved": self.state_rows_removed,
                    "numRowsDroppedByWatermark": self.state_rows_dropped_by_watermark,
                })
            })
            .into_iter()
            .collect();
        let mut json = serde_json::json!({
            "id": self.id,
            "runId": self.run_id,
            "name": self.name,
            "timestamp": iso_timestamp(self.timestamp_ms as i64),
            "batchId": self.batch_id,
            "numInputRows": self.num_input_rows,
            "inputRowsPerSecond": self.input_rows_per_second,
            "processedRowsPerSecond": self.processed_rows_per_second(),
            "durationMs": { "addBatch": self.add_batch_ms, "triggerExecution": self.trigger_execution_ms },
            "stateOperators": state_operators,
            "sources": self.sources.iter().map(|s| {
                // The query's rates, in the share of the rows this source gave.
                let share = match self.num_input_rows {
                    0 => 0.0,
                    all => s.num_input_rows as f64 / all as f64,
                };
                serde_json::json!({
                    "description": s.description,
                    "numInputRows": s.num_input_rows,
                    "inputRowsPerSecond": self.input_rows_per_second * share,
                    "processedRowsPerSecond": self.processed_rows_per_second() * share,
                })
            }).collect::<Vec<_>>(),
            "sink": { "description": self.sink, "numOutputRows": self.num_output_rows },
        });
        if let Some((stats, watermark_ms)) = &self.event_time {
            let mut event_time = serde_json::Map::new();
            if let Some(stats) = stats {
                // Spark formats the average's whole milliseconds.
                event_time.insert("avg".into(), iso_timestamp(stats.avg as i64).into());
                event_time.insert("max".into(), iso_timestamp(stats.max).into());
                event_time.insert("min".into(), iso_timestamp(stats.min).into());
            }
            event_time.insert("watermark".into(), iso_timestamp(*watermark_ms).into());
            json["eventTime"] = event_time.into();
        }
        json.to_string()
    }
}

/// The reports of a query, newest last, at most [`KEPT`].
#[derive(Debug, Default)]
pub(crate) struct Reports(VecDeque<QueryProgress>);

impl Reports {
    pub fn push(&mut self, report: QueryProgress) {
        if self.0.len() == KEPT {
            self.0.pop_front();
        }
        self.0.push_back(report);
    }

    pub fn last(&self) -> Option<QueryProgress> {
        self.0.back().cloned()
    }

    pub fn all(&self) -> Vec<QueryProgress> {
        self.0.iter().cloned().collect()
    }
}

/// `2026-12-07T01:20:36.123Z` of milliseconds since the epoch (UTC, as Spark prints it).
pub(crate) fn iso_timestamp(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rest = ms.rem_euclid(86_400_000);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_iso_8601_with_milliseconds() {
        assert_eq!(iso_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_timestamp(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso_timestamp(1_796_606_436_123), "2026-12-07T01:20:36.123Z");
        assert_eq!(iso_timestamp(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn only_the_last_hundred_reports_are_kept() {
        let mut reports = Reports::default();
        let report = |batch_id| QueryProgress {
            id: "q".into(),
            run_id: "r".into(),
            name: None,
            batch_id,
            timestamp_ms: 0,
            num_input_rows: 10,
            input_rows_per_second: 5.0,
            trigger_execution_ms: 4,
            add_batch_ms: 1,
            state_rows: Some(3),
            operator_name: "stateStoreSave".into(),
            state_rows_updated: 2,
            state_rows_removed: 1,
            state_rows_dropped_by_watermark: 0,
            event_time: None,
            num_output_rows: 3,
            sources: vec![
                SourceProgress {
                    description: "a".into(),
                    num_input_rows: 4,
                },
                SourceProgress {
                    description: "b".into(),
                    num_input_rows: 6,
                },
            ],
            sink: "k".into(),
        };
        for id in 0..150 {
            reports.push(report(id));
        }
        let all = reports.all();
        assert_eq!((all.len(), all[0].batch_id, reports.last().unwrap().batch_id), (100, 50, 149));
        let json: serde_json::Value = serde_json::from_str(&report(7).json()).unwrap();
        assert_eq!(json["batchId"], 7);
        assert_eq!(json["processedRowsPerSecond"], 2500.0);
        assert_eq!(json["stateOperators"][0]["numRowsTotal"], 3);
        assert_eq!(json["durationMs"]["triggerExecution"], 4);
        assert_eq!(
            (
                json["sources"][0]["numInputRows"].as_u64(),
                json["sources"][1]["numInputRows"].as_u64()
            ),
            (Some(4), Some(6))
        );
        assert_eq!(json["sources"][1]["processedRowsPerSecond"], 1500.0);
    }
}
