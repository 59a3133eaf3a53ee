//! The job's web UI and metrics (Spark's Streaming tab and its REST API), served when
//! [`StreamingContextBuilder::ui_port`](crate::StreamingContextBuilder::ui_port) asks:
//!
//! - `/` — the Streaming page: input rate, scheduling delay, processing time and total delay
//!   as timelines and histograms (SVG drawn by plotters on the server, refreshed every second),
//!   the table of recent batches with each batch's output operations, and the receivers.
//! - `/metrics` — the same numbers in Prometheus' text format.
//! - `/api/v1/streaming/statistics`, `/api/v1/streaming/batches`,
//!   `/api/v1/streaming/batches/{batch time ms}`, `/api/v1/streaming/receivers` — JSON shaped
//!   like Spark's REST API (field names in camelCase as Spark's).
//!
//! The JSON shapes (times in ms since the Unix epoch, delays in ms, rates in records per
//! second; `null` where not known yet):
//!
//! ```text
//! /api/v1/streaming/statistics
//!   { "startTime", "batchDuration", "numReceivers", "numActiveReceivers",
//!     "numInactiveReceivers", "numTotalCompletedBatches", "numRetainedCompletedBatches",
//!     "numActiveBatches", "numProcessedRecords", "numReceivedRecords", "numFailedBatches",
//!     "avgInputRate", "avgSchedulingDelay", "avgProcessingTime", "avgTotalDelay" }
//! /api/v1/streaming/batches            newest first: batches in progress, then completed ones
//!   [ { "batchId", "batchTime", "status" (QUEUED | PROCESSING | COMPLETED), "batchDuration",
//!       "inputSize", "inputRecords" { stream: records }, "schedulingDelay", "processingTime",
//!       "totalDelay", "numActiveOutputOps", "numCompletedOutputOps", "numFailedOutputOps",
//!       "numTotalOutputOps", "firstFailureReason", "stateKeys" { stream: keys } } ]
//! /api/v1/streaming/batches/{time}     one batch as above, plus
//!   "outputOperations": [ { "outputOpId", "name", "startTime", "endTime", "duration",
//!                           "failureReason" } ]                      (404 if not retained)
//! /api/v1/streaming/receivers
//!   [ { "streamName", "isActive", "recordsStored", "restarts", "lastErrorMessage",
//!       "bufferedRecords", "bufferedBytes", "rateLimit" } ]
//! ```
//!
//! `/metrics` has `ember_batches_completed_total`, `ember_batches_failed_total`,
//! `ember_input_records_total`, `ember_stream_input_records_total{stream}`,
//! `ember_batches_active`, `ember_batch_interval_seconds`, `ember_last_batch_*` (time, input
//! records, scheduling delay, processing time, total delay), `ember_average_input_rate`,
//! `ember_receiver_records_stored_total{receiver}`, `ember_receiver_restarts_total{receiver}`,
//! `ember_receiver_active{receiver}`, `ember_receiver_buffered_records{receiver}`,
//! `ember_receiver_rate_limit{receiver}`, `ember_state_keys{stream}`,
//! `ember_bad_records_total{source,kind}` and
//! `ember_listener_events_dropped_total`.
//!
//! The page loads nothing from the network: its script and styles are inline, the charts come
//! from the same server. The server listens on 127.0.0.1 unless
//! [`ui_host`](crate::StreamingContextBuilder::ui_host) says otherwise. It keeps the last
//! [`RETAINED_BATCHES`] completed batches (Spark's `spark.streaming.ui.retainedBatches`).

mod charts;
mod json;
mod metrics;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::listener::{BatchInfo, StreamingListener, StreamingStarted};
use crate::lock::lock;

/// Threads answering the UI's requests.
const HANDLER_THREADS: usize = 4;

/// Completed batches the UI and the REST API keep.
pub const RETAINED_BATCHES: usize = 1000;

/// What the statistics listener has seen.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) started_ms: u64,
    /// Completed batches, oldest first, at most [`RETAINED_BATCHES`].
    pub(crate) batches: VecDeque<BatchInfo>,
    pub(crate) completed_total: u64,
    pub(crate) failed_total: u64,
    pub(crate) records_total: u64,
    /// Records per input stream, over every completed batch.
    pub(crate) records_by_stream: std::collections::BTreeMap<String, u64>,
    /// Batches submitted and not completed yet.
    pub(crate) active: std::collections::BTreeMap<u64, BatchInfo>,
}

/// The listener behind the UI and the metrics.
pub(crate) struct StatsListener(pub(crate) Arc<Mutex<Stats>>);

impl StreamingListener for StatsListener {
    fn on_streaming_started(&mut self, event: &StreamingStarted) {
        lock(&self.0).started_ms = event.time;
    }

    fn on_batch_submitted(&mut self, batch: &BatchInfo) {
        lock(&self.0).active.insert(batch.batch_time.milliseconds(), batch.clone());
    }

    fn on_batch_started(&mut self, batch: &BatchInfo) {
        lock(&self.0).active.insert(batch.batch_time.milliseconds(), batch.clone());
    }

    fn on_batch_completed(&mut self, batch: &BatchInfo) {
        let mut stats = lock(&self.0);
        stats.active.remove(&batch.batch_time.milliseconds());
        stats.completed_total += 1;
        stats.failed_total += u64::from(batch.failed());
        stats.records_total += batch.num_records();
        for (stream, records) in &batch.input_records {
            *stats.records_by_stream.entry(stream.clone()).or_default() += records;
        }
        if stats.batches.len() == RETAINED_BATCHES {
            stats.batches.pop_front();
        }
        stats.batches.push_back(batch.clone());
    }
}

/// The running UI server.
pub(crate) struct UiServer {
    server: Arc<tiny_http::Server>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    address: SocketAddr,
}

impl UiServer {
    /// Serves the UI of `job` on `host:port` (port 0: any free port).
    pub(crate) fn start(host: &str, port: u16, job: Arc<dyn Job>, stats: Arc<Mutex<Stats>>, interval_ms: u64) -> std::io::Result<UiServer> {
        let server = tiny_http::Server::http((host, port))
            .map_err(|e| std::io::Error::other(format!("cannot serve the UI on {host}:{port}: {e}")))?;
        let address = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| std::io::Error::other("the UI server has no IP address"))?;
        let server = Arc::new(server);
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // A few threads, so that a page's eight charts are drawn side by side.
        let mut threads = Vec::new();
        for i in 0..HANDLER_THREADS {
            let (serving, stop, job, stats) = (Arc::clone(&server), Arc::clone(&stopping), Arc::clone(&job), Arc::clone(&stats));
            let spawned = std::thread::Builder::new().name(format!("ember-ui-{i}")).spawn(move || {
                let view = View { job, stats, interval_ms };
                loop {
                    match serving.recv_timeout(Duration::from_millis(200)) {
                        Ok(Some(request)) => respond(request, &view),
                        Ok(None) => {}
                        Err(_) => break,
                    }
                    if !view.job.alive() || stop.load(std::sync::atomic::Ordering::Acquire) {
                        break;
                    }
                }
            });
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    stopping.store(true, std::sync::atomic::Ordering::Release);
                    return Err(e);
                }
            }
        }
        tracing::info!(%address, "Streaming UI at http://{address}/");
        Ok(UiServer {
            server,
            stopping,
            threads,
            address,
        })
    }

    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }

    pub(crate) fn stop(mut self) {
        self.stopping.store(true, std::sync::atomic::Ordering::Release);
        self.server.unblock();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// What the UI reads of the running context besides the listener's statistics.
pub(crate) trait Job: Send + Sync {
    /// Each receiver's state.
    fn receivers(&self) -> Vec<crate::sources::ReceiverInfo>;
    /// Each text source's bad-line counts.
    fn bad_records(&self) -> Vec<crate::sources::BadRecordCounts>;
    /// Events dropped because listeners fell behind.
    fn dropped_events(&self) -> u64;
    /// Whether the context is still there.
    fn alive(&self) -> bool;
}

/// What a request can look at.
pub(crate) struct View {
    job: Arc<dyn Job>,
    pub(crate) stats: Arc<Mutex<Stats>>,
    pub(crate) interval_ms: u64,
}

impl View {
    pub(crate) fn receivers(&self) -> Vec<crate::sources::ReceiverInfo> {
        self.job.receivers()
    }

    pub(crate) fn dropped_events(&self) -> u64 {
        self.job.dropped_events()
    }

    pub(crate) fn bad_records(&self) -> Vec<crate::sources::BadRecordCounts> {
        self.job.bad_records()
    }
}

const PAGE: &str = include_str!("page.html");

fn respond(request: tiny_http::Request, view: &View) {
    let url = request.url().to_owned();
    let path = url.split('?').next().unwrap_or("/");
    let (status, content_type, body) = match path {
        "/" | "/index.html" => (200, "text/html; charset=utf-8", PAGE.to_owned()),
        "/metrics" => (200, "text/plain; version=0.0.4; charset=utf-8", metrics::render(view)),
        "/api/v1/streaming/statistics" => (200, "application/json", json::statistics(view)),
        "/api/v1/streaming/batches" => (200, "application/json", json::batches(view)),
        "/api/v1/streaming/receivers" => (200, "application/json", json::receivers(view)),
        _ => match (path.strip_prefix("/api/v1/streaming/batches/"), path.strip_prefix("/charts/")) {
            (Some(time), _) => match time.parse::<u64>().ok().and_then(|t| json::batch(view, t)) {
                Some(body) => (200, "application/json", body),
                None => (
                    404,
                    "application/json",
                    format!("{{\"error\":\"no batch {time} among the retained batches\"}}"),
                ),
            },
            (_, Some(chart)) => match charts::render(view, chart.trim_end_matches(".svg")) {
                Some(svg) => (200, "image/svg+xml", svg),
                None => (404, "text/plain", format!("no chart {chart}")),
            },
            _ => (404, "text/plain", format!("not found: {path}")),
        },
    };
    let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes());
    let mut response = tiny_http::Response::from_string(body).with_status_code(status);
    if let Ok(header) = header {
        response = response.with_header(header);
    }
    // One request per connection: tiny_http can leave a browser's queued keep-alive requests
    // unanswered while the page refreshes.
    if let Ok(header) = tiny_http::Header::from_bytes(&b"Connection"[..], &b"close"[..]) {
        response = response.with_header(header);
    }
    if let Err(e) = request.respond(response) {
        tracing::debug!(error = %e, "The UI could not answer a request.");
    }
}
