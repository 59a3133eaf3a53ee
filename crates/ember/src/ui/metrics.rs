//! `/metrics`: the job's numbers in Prometheus' text format (prometheus-client).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::View;
use super::json::statistics_of;
use crate::listener::BatchInfo;
use crate::lock::lock;

type Labels = Vec<(String, String)>;

fn seconds(ms: Option<u64>) -> f64 {
    ms.map_or(0.0, |ms| ms as f64 / 1000.0)
}

/// The metrics as of now, encoded.
pub(crate) fn render(view: &View) -> String {
    let mut registry = Registry::with_prefix("ember");
    let statistics = statistics_of(view);
    let counter = |registry: &mut Registry, name: &str, help: &str, value: u64| {
        let c: Counter = Counter::default();
        c.inc_by(value);
        registry.register(name, help, c);
    };
    let gauge = |registry: &mut Registry, name: &str, help: &str, value: f64| {
        let g: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
        g.set(value);
        registry.register(name, help, g);
    };
    counter(
        &mut registry,
        "batches_completed",
        "Batches completed since the start",
        statistics.num_total_completed_batches,
    );
    counter(
        &mut registry,
        "batches_failed",
        "Completed batches with a failed output operation",
        statistics.num_failed_batches,
    );
    counter(
        &mut registry,
        "input_records",
        "Records brought in by every input stream, over completed batches",
        statistics.num_processed_records,
    );
    gauge(
        &mut registry,
        "batches_active",
        "Batches cut and not yet completed",
        statistics.num_active_batches as f64,
    );
    gauge(
        &mut registry,
        "batch_interval_seconds",
        "The batch interval",
        view.interval_ms as f64 / 1000.0,
    );
    let last: Option<BatchInfo> = lock(&view.stats).batches.back().cloned();
    let last = last.as_ref();
    gauge(
        &mut registry,
        "last_batch_time_seconds",
        "Time of the last completed batch (Unix seconds)",
        last.map_or(0.0, |b| b.batch_time.milliseconds() as f64 / 1000.0),
    );
    gauge(
        &mut registry,
        "last_batch_input_records",
        "Records in the last completed batch",
        last.map_or(0, BatchInfo::num_records) as f64,
    );
    gauge(
        &mut registry,
        "last_batch_scheduling_delay_seconds",
        "Scheduling delay of the last completed batch",
        seconds(last.and_then(BatchInfo::scheduling_delay)),
    );
    gauge(
        &mut registry,
        "last_batch_processing_time_seconds",
        "Processing time of the last completed batch",
        seconds(last.and_then(BatchInfo::processing_delay)),
    );
    gauge(
        &mut registry,
        "last_batch_total_delay_seconds",
        "Total delay of the last completed batch",
        seconds(last.and_then(BatchInfo::total_delay)),
    );
    gauge(
        &mut registry,
        "average_input_rate",
        "Records per second, averaged over the retained batches",
        statistics.avg_input_rate.unwrap_or(0.0),
    );
    counter(
        &mut registry,
        "listener_events_dropped",
        "Listener events dropped because listeners fell behind",
        view.dropped_events(),
    );

    let by_stream = Family::<Labels, Counter>::default();
    for (stream, records) in &lock(&view.stats).records_by_stream {
        by_stream.get_or_create(&vec![("stream".into(), stream.clone())]).inc_by(*records);
    }
    registry.register(
        "stream_input_records",
        "Records each input stream brought in, over completed batches",
        by_stream,
    );

    let keys = Family::<Labels, Gauge>::default();
    for (operator, n) in last.map(|b| b.state_keys.clone()).unwrap_or_default() {
        keys.get_or_create(&vec![("stream".into(), operator)]).set(n as i64);
    }
    registry.register("state_keys", "Keys each stateful stream holds after the last completed batch", keys);

    let stored = Family::<Labels, Counter>::default();
    let restarts = Family::<Labels, Counter>::default();
    let active = Family::<Labels, Gauge>::default();
    let buffered = Family::<Labels, Gauge>::default();
    let rate = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for receiver in view.receivers() {
        let labels = vec![("receiver".into(), receiver.name.clone())];
        stored.get_or_create(&labels).inc_by(receiver.stored);
        restarts.get_or_create(&labels).inc_by(receiver.restarts);
        active.get_or_create(&labels).set(i64::from(receiver.active));
        buffered.get_or_create(&labels).set(receiver.buffered_records as i64);
        if let Some(limit) = receiver.rate_limit {
            rate.get_or_create(&labels).set(limit);
        }
    }
    registry.register("receiver_records_stored", "Records each receiver stored", stored);
    registry.register("receiver_restarts", "Times each receiver was restarted", restarts);
    registry.register("receiver_active", "Whether each receiver is receiving (1) or not (0)", active);
    registry.register(
        "receiver_buffered_records",
        "Records each receiver holds for the next batch",
        buffered,
    );
    registry.register(
        "receiver_rate_limit",
        "Records per second each limited receiver is held to (max rate or backpressure)",
        rate,
    );

    let bad = Family::<Labels, Counter>::default();
    for counts in view.bad_records() {
        for (kind, n) in [
            ("repaired", counts.repaired),
            ("rejected", counts.rejected),
            ("too_long", counts.too_long),
        ] {
            bad.get_or_create(&vec![("source".into(), counts.source.clone()), ("kind".into(), kind.into())])
                .inc_by(n);
        }
    }
    registry.register("bad_records", "Malformed input lines per text source and kind", bad);

    let mut text = String::new();
    if let Err(e) = encode(&mut text, &registry) {
        return format!("# cannot encode the metrics: {e}\n");
    }
    text
}
