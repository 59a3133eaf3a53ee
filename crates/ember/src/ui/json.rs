//! The REST API's JSON, shaped like Spark's `/api/v1/applications/{app}/streaming/...`.

use serde::Serialize;

use super::View;
use crate::listener::BatchInfo;
use crate::lock::lock;

/// Spark's `StreamingStatistics`. Averages are over the retained batches; rates in records
/// per second, delays in ms.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Statistics {
    pub(crate) start_time: u64,
    pub(crate) batch_duration: u64,
    pub(crate) num_receivers: usize,
    pub(crate) num_active_receivers: usize,
    pub(crate) num_inactive_receivers: usize,
    pub(crate) num_total_completed_batches: u64,
    pub(crate) num_retained_completed_batches: usize,
    pub(crate) num_active_batches: usize,
    pub(crate) num_processed_records: u64,
    pub(crate) num_received_records: u64,
    pub(crate) num_failed_batches: u64,
    pub(crate) avg_input_rate: Option<f64>,
    pub(crate) avg_scheduling_delay: Option<f64>,
    pub(crate) avg_processing_time: Option<f64>,
    pub(crate) avg_total_delay: Option<f64>,
}

/// Spark's `BatchInfo` of the REST API.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BatchJson {
    pub(crate) batch_id: u64,
    pub(crate) batch_time: u64,
    pub(crate) status: &'static str,
    pub(crate) batch_duration: u64,
    pub(crate) input_size: u64,
    pub(crate) input_records: std::collections::BTreeMap<String, u64>,
    pub(crate) scheduling_delay: Option<u64>,
    pub(crate) processing_time: Option<u64>,
    pub(crate) total_delay: Option<u64>,
    pub(crate) num_active_output_ops: usize,
    pub(crate) num_completed_output_ops: usize,
    pub(crate) num_failed_output_ops: usize,
    pub(crate) num_total_output_ops: usize,
    pub(crate) first_failure_reason: Option<String>,
    pub(crate) state_keys: std::collections::BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) output_operations: Option<Vec<OutputJson>>,
}

/// Spark's `OutputOperationInfo` of the REST API.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OutputJson {
    pub(crate) output_op_id: usize,
    pub(crate) name: String,
    pub(crate) start_time: Option<u64>,
    pub(crate) end_time: Option<u64>,
    pub(crate) duration: Option<u64>,
    pub(crate) failure_reason: Option<String>,
}

/// Spark's `ReceiverInfo` of the REST API (what ember knows of it).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReceiverJson {
    pub(crate) stream_name: String,
    pub(crate) is_active: bool,
    pub(crate) records_stored: u64,
    pub(crate) restarts: u64,
    pub(crate) last_error_message: Option<String>,
    pub(crate) buffered_records: u64,
    pub(crate) buffered_bytes: u64,
    pub(crate) rate_limit: Option<f64>,
}

fn mean(values: impl Iterator<Item = u64>) -> Option<f64> {
    let (sum, n) = values.fold((0u64, 0u64), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum as f64 / n as f64)
}

pub(crate) fn statistics_of(view: &View) -> Statistics {
    let receivers = view.receivers();
    let stats = lock(&view.stats);
    let active = receivers.iter().filter(|r| r.active).count();
    let retained = &stats.batches;
    let input_rate = mean(retained.iter().map(BatchInfo::num_records)).map(|r| r * 1000.0 / view.interval_ms.max(1) as f64);
    Statistics {
        start_time: stats.started_ms,
        batch_duration: view.interval_ms,
        num_receivers: receivers.len(),
        num_active_receivers: active,
        num_inactive_receivers: receivers.len() - active,
        num_total_completed_batches: stats.completed_total,
        num_retained_completed_batches: retained.len(),
        num_active_batches: stats.active.len(),
        num_processed_records: stats.records_total,
        num_received_records: stats.records_total + stats.active.values().map(BatchInfo::num_records).sum::<u64>(),
        num_failed_batches: stats.failed_total,
        avg_input_rate: input_rate,
        avg_scheduling_delay: mean(retained.iter().filter_map(BatchInfo::scheduling_delay)),
        avg_processing_time: mean(retained.iter().filter_map(BatchInfo::processing_delay)),
        avg_total_delay: mean(retained.iter().filter_map(BatchInfo::total_delay)),
    }
}

pub(crate) fn statistics(view: &View) -> String {
    to_json(&statistics_of(view))
}

pub(crate) fn batch_json(batch: &BatchInfo, interval_ms: u64, status: &'static str, with_outputs: bool) -> BatchJson {
    let ops = &batch.output_operations;
    let failed = ops.values().filter(|o| o.failure_reason.is_some()).count();
    let completed = ops.values().filter(|o| o.end_time.is_some()).count();
    BatchJson {
        batch_id: batch.batch_time.milliseconds(),
        batch_time: batch.batch_time.milliseconds(),
        status,
        batch_duration: interval_ms,
        input_size: batch.num_records(),
        input_records: batch.input_records.clone(),
        scheduling_delay: batch.scheduling_delay(),
        processing_time: batch.processing_delay(),
        total_delay: batch.total_delay(),
        num_active_output_ops: ops.len() - completed,
        num_completed_output_ops: completed - failed,
        num_failed_output_ops: failed,
        num_total_output_ops: ops.len(),
        first_failure_reason: ops.values().find_map(|o| o.failure_reason.clone()),
        state_keys: batch.state_keys.clone(),
        output_operations: with_outputs.then(|| {
            ops.values()
                .map(|o| OutputJson {
                    output_op_id: o.id,
                    name: o.name.clone(),
                    start_time: o.start_time,
                    end_time: o.end_time,
                    duration: o.duration(),
                    failure_reason: o.failure_reason.clone(),
                })
                .collect()
        }),
    }
}

/// The retained batches, newest first (completed ones and those in progress), as Spark lists
/// them.
pub(crate) fn batches(view: &View) -> String {
    let stats = lock(&view.stats);
    let mut list: Vec<BatchJson> = stats
        .active
        .values()
        .rev()
        .map(|b| {
            batch_json(
                b,
                view.interval_ms,
                if b.processing_start_time.is_some() {
                    "PROCESSING"
                } else {
                    "QUEUED"
                },
                false,
            )
        })
        .collect();
    list.extend(
        stats
            .batches
            .iter()
            .rev()
            .map(|b| batch_json(b, view.interval_ms, "COMPLETED", false)),
    );
    to_json(&list)
}

/// One retained batch with its output operations.
pub(crate) fn batch(view: &View, time: u64) -> Option<String> {
    let stats = lock(&view.stats);
    let (batch, status) = match stats.batches.iter().find(|b| b.batch_time.milliseconds() == time) {
        Some(b) => (b, "COMPLETED"),
        None => (stats.active.get(&time)?, "PROCESSING"),
    };
    Some(to_json(&batch_json(batch, view.interval_ms, status, true)))
}

pub(crate) fn receivers(view: &View) -> String {
    let list: Vec<ReceiverJson> = view
        .receivers()
        .into_iter()
        .map(|r| ReceiverJson {
            stream_name: r.name,
            is_active: r.active,
            records_stored: r.stored,
            restarts: r.restarts,
            last_error_message: r.last_error,
            buffered_records: r.buffered_records,
            buffered_bytes: r.buffered_bytes,
            rate_limit: r.rate_limit,
        })
        .collect();
    to_json(&list)
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
