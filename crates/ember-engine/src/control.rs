//! The cluster control plane: a tiny TCP side channel that ember's processes use to agree on
//! what timely cannot tell them (zero time, plan, stop, final batch time, who died).
//!
//! Timely is fail-stop and knows nothing of batches, so before timely connects every process
//! joins this control plane. The topology is a star: process 0 (the coordinator) listens on
//! [`ControlConfig::coordinator`] and every other process (a follower) connects to it. Process 0
//! decides the zero time and checks every process's plan fingerprint; afterwards it forwards stop
//! requests, collects proposals for the final batch time and relays the loss of a follower to the
//! other followers. Followers notice the loss of process 0 by themselves.
//!
//! # Wire format
//!
//! One JSON object per line, tagged by `"type"`:
//!
//! | message                                                        | direction | meaning |
//! |----------------------------------------------------------------|-----------|---------|
//! | `{"type":"hello","process":1,"processes":3,"fingerprint":7,"resume_ms":null}` | F → C | a follower joins (and the checkpoint it resumes from) |
//! | `{"type":"welcome","zero_ms":1700000000000}`                   | C → F     | everyone joined; the zero time |
//! | `{"type":"abort","error":{...}}`                               | C → F     | startup failed everywhere with this [`ControlError`] |
//! | `{"type":"heartbeat"}`                                         | both      | still alive |
//! | `{"type":"stop","graceful":true}`                              | both      | a stop was requested (F → C: asks, C → F: tells) |
//! | `{"type":"propose","time_ms":5000}`                            | F → C     | this process's proposal for the final batch time |
//! | `{"type":"final","time_ms":5000}`                              | C → F     | the agreed final batch time |
//! | `{"type":"lost","process":2,"reason":"..."}`                   | C → F     | the coordinator lost a follower |
//! | `{"type":"checkpoint","time_ms":5000,"report":"..."}`          | F → C     | this process wrote its part of checkpoint 5000 (the report is the caller's) |
//! | `{"type":"goodbye"}`                                           | both      | a clean shutdown: the coming end of the connection is not a loss |
//!
//! # Never a hang
//!
//! Startup has a deadline ([`ControlConfig::start_timeout`]); every socket read and write has a
//! timeout; a peer that is silent for [`ControlConfig::peer_timeout`] is lost. Callers never do
//! I/O: [`ControlPlane::stop_requested`], [`ControlPlane::final_time`] and
//! [`ControlPlane::failure`] read an atomic or a mutex, and requests go to a background thread
//! through a channel.
//!
//! # A failed send
//!
//! A failed send is not yet a loss. A peer that finished says goodbye and closes its end, and
//! this process's heartbeat may hit the closed socket before the reader thread has handed over
//! the goodbye already in the receive buffer. So a send failure only stops sending to that
//! peer; the peer is lost when its reader reports the end of the connection without a goodbye,
//! or one [`ControlConfig::peer_timeout`] after the failure, whichever comes first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::auth::{AuthError, ClusterSecret};
use crate::transport::{self, Link, Tls};

/// How long a follower waits between attempts to reach process 0.
const CONNECT_RETRY: Duration = Duration::from_millis(100);
/// The longest a single connection attempt may take (DNS names may resolve to dead addresses).
const CONNECT_ATTEMPT: Duration = Duration::from_secs(1);
/// How often process 0 polls for new connections during startup.
const ACCEPT_POLL: Duration = Duration::from_millis(20);
/// How long a connection may take to prove the cluster secret.
const AUTH_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a reader thread blocks before checking whether it should exit.
const READ_TICK: Duration = Duration::from_millis(100);
/// The longest line a peer may send; control messages are tiny, so more means a broken peer.
const MAX_LINE: u64 = 64 * 1024;

/// Stop levels kept in one atomic so that a non-graceful stop wins by `fetch_max`.
const STOP_NONE: u8 = 0;
const STOP_GRACEFUL: u8 = 1;
const STOP_NOW: u8 = 2;

/// How this process takes part in the control plane.
#[derive(Clone, Debug)]
pub struct ControlConfig {
    /// This process's index, from 0; process 0 is the coordinator.
    pub process: usize,
    /// How many processes the cluster has.
    pub processes: usize,
    /// `host:port` where process 0 listens and the other processes connect.
    pub coordinator: String,
    /// The fingerprint of the plan this process runs; it must be the same on every process.
    pub fingerprint: u64,
    /// Each process's address (timely's `host:port`), for messages; may be empty.
    pub addresses: Vec<String>,
    /// The checkpoint (batch time, ms) this process resumes from, or `None` for a fresh start;
    /// it must be the same on every process.
    pub resume_ms: Option<u64>,
    /// How long startup may take before [`ControlPlane::join`] gives up (default 60 s).
    pub start_timeout: Duration,
    /// How often each side sends a heartbeat (default 250 ms).
    pub heartbeat: Duration,
    /// How long a peer may stay silent before it is considered lost (default 3 s).
    pub peer_timeout: Duration,
    /// The cluster's secret: every control connection must prove it (see [`crate::auth`]);
    /// `None` admits any connection that speaks the protocol.
    pub secret: Option<ClusterSecret>,
    /// TLS on every control connection (it needs a secret; see [`crate::transport::Tls`]).
    pub tls: Option<Tls>,
}

impl ControlConfig {
    /// A configuration with the default timeouts (start 60 s, heartbeat 250 ms, peer 3 s).
    pub fn new(process: usize, processes: usize, coordinator: impl Into<String>, fingerprint: u64) -> Self {
        ControlConfig {
            process,
            processes,
            coordinator: coordinator.into(),
            fingerprint,
            addresses: Vec::new(),
            resume_ms: None,
            start_timeout: Duration::from_secs(60),
            heartbeat: Duration::from_millis(250),
            peer_timeout: Duration::from_secs(3),
            secret: None,
            tls: None,
        }
    }

    fn validate(&self) -> Result<(), ControlError> {
        if self.processes == 0 {
            return Err(ControlError::Config("a cluster needs at least one process".into()));
        }
        if self.process >= self.processes {
            return Err(ControlError::Config(format!(
                "process index {} is out of range for a cluster of {} processes",
                self.process, self.processes
            )));
        }
        if self.tls.is_some() && self.secret.is_none() {
            return Err(ControlError::Config(
                "TLS needs a cluster secret: the secret proves who is on the other side of each connection".into(),
            ));
        }
        if self.heartbeat.is_zero() {
            return Err(ControlError::Config("the heartbeat interval must be positive".into()));
        }
        // A peer timeout within one heartbeat would declare healthy peers lost.
        if self.peer_timeout <= self.heartbeat {
            return Err(ControlError::Config(format!(
                "the peer timeout ({} ms) must be longer than the heartbeat interval ({} ms)",
                self.peer_timeout.as_millis(),
                self.heartbeat.as_millis()
            )));
        }
        Ok(())
    }

    /// How long reader threads block before checking whether to exit.
    fn read_tick(&self) -> Duration {
        self.heartbeat.clamp(Duration::from_millis(1), READ_TICK)
    }
}

/// Why the control plane failed; every variant says which process is at fault where it knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlError {
    /// Startup did not finish in time. On process 0, `missing` are the processes that never
    /// joined; on a follower, `missing` is `[0]`: process 0 could not be reached or never
    /// finished startup.
    StartTimeout {
        /// The processes that did not join.
        missing: Vec<usize>,
        /// Where they were expected, in the same order (on a follower, process 0's control
        /// address); empty when unknown.
        addresses: Vec<String>,
        /// How long this process waited.
        waited: Duration,
    },
    /// A process runs a different plan than process 0; every process reports this.
    PlanMismatch {
        /// The process whose plan differs.
        process: usize,
        /// Process 0's plan fingerprint.
        expected: u64,
        /// The differing process's plan fingerprint.
        found: u64,
    },
    /// A process resumes from another checkpoint than process 0 (or starts fresh while process 0
    /// resumes, or the reverse); every process reports this.
    ResumeMismatch {
        /// The process that differs.
        process: usize,
        /// The checkpoint process 0 resumes from (batch time, ms), `None` for a fresh start.
        expected: Option<u64>,
        /// The checkpoint the differing process resumes from.
        found: Option<u64>,
    },
    /// A process died or went silent without saying goodbye; every survivor reports this.
    PeerLost {
        /// The lost process.
        process: usize,
        /// What was seen: a closed connection, an I/O error, or how long it was silent.
        reason: String,
    },
    /// A local I/O operation failed (for example, process 0 could not listen).
    Io {
        /// What this process was doing.
        context: String,
        /// The operating system's error.
        message: String,
    },
    /// A peer broke the control protocol (duplicate or out-of-range process index, a different
    /// process count, an unreadable or unexpected message).
    Protocol(String),
    /// The [`ControlConfig`] is unusable; this is the caller's mistake.
    Config(String),
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::StartTimeout {
                missing,
                addresses,
                waited,
            } => write!(
                f,
                "the cluster did not start within {:.1} s: {} did not join",
                waited.as_secs_f64(),
                process_list_at(missing, addresses)
            ),
            ControlError::PlanMismatch { process, expected, found } => write!(
                f,
                "the plans differ: process {process} has plan fingerprint {found:#018x} but process 0 has {expected:#018x}; \
                 every process must run the same program with the same configuration"
            ),
            ControlError::ResumeMismatch { process, expected, found } => {
                let describe = |resume: &Option<u64>| match resume {
                    Some(time) => format!("resumes from the checkpoint of batch {time} ms"),
                    None => "starts fresh".to_owned(),
                };
                write!(
                    f,
                    "the processes disagree on the checkpoint: process {process} {} but process 0 {}; \
                     every process must use the same checkpoint directory (a shared file system)",
                    describe(found),
                    describe(expected)
                )
            }
            ControlError::PeerLost { process, reason } => write!(f, "lost process {process} of the cluster: {reason}"),
            ControlError::Io { context, message } => write!(f, "{context}: {message}"),
            ControlError::Protocol(message) => write!(f, "control protocol error: {message}"),
            ControlError::Config(message) => write!(f, "invalid control plane configuration: {message}"),
        }
    }
}

impl std::error::Error for ControlError {}

/// "process 1" or "processes 1, 2".
fn process_list(processes: &[usize]) -> String {
    let list = processes.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    if processes.len() == 1 {
        format!("process {list}")
    } else {
        format!("processes {list}")
    }
}

/// `process 1 (at host:port)` or `processes 1 (at a), 2 (at b)`.
fn process_list_at(processes: &[usize], addresses: &[String]) -> String {
    if addresses.len() != processes.len() {
        return process_list(processes);
    }
    let list = processes
        .iter()
        .zip(addresses)
        .map(|(p, a)| format!("{p} (at {a})"))
        .collect::<Vec<_>>()
        .join(", ");
    if processes.len() == 1 {
        format!("process {list}")
    } else {
        format!("processes {list}")
    }
}

fn io_error(context: impl Into<String>, error: io::Error) -> ControlError {
    ControlError::Io {
        context: context.into(),
        message: error.to_string(),
    }
}

/// One line of the wire protocol (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Message {
    Hello {
        process: usize,
        processes: usize,
        fingerprint: u64,
        #[serde(default)]
        resume_ms: Option<u64>,
    },
    Welcome {
        zero_ms: u64,
    },
    Abort {
        error: ControlError,
    },
    Heartbeat,
    Stop {
        graceful: bool,
    },
    Propose {
        time_ms: u64,
    },
    Final {
        time_ms: u64,
    },
    Lost {
        process: usize,
        reason: String,
    },
    Checkpoint {
        time_ms: u64,
        report: String,
    },
    Goodbye,
}

impl Message {
    fn kind(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::Welcome { .. } => "welcome",
            Message::Abort { .. } => "abort",
            Message::Heartbeat => "heartbeat",
            Message::Stop { .. } => "stop",
            Message::Propose { .. } => "propose",
            Message::Final { .. } => "final",
            Message::Lost { .. } => "lost",
            Message::Checkpoint { .. } => "checkpoint",
            Message::Goodbye => "goodbye",
        }
    }
}

/// Why a reader thread stopped reading a connection.
#[derive(Debug)]
enum Closed {
    /// The peer closed the connection between messages.
    Eof,
    /// An I/O error, or the connection ended in the middle of a message.
    Failed(String),
    /// The peer sent something that is not a control message.
    Garbled(String),
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Closed::Eof => write!(f, "the connection was closed"),
            Closed::Failed(message) => write!(f, "the connection failed: {message}"),
            Closed::Garbled(message) => write!(f, "it sent an unreadable message: {message}"),
        }
    }
}

/// What the background driver thread reacts to: messages and closed connections from the reader
/// threads, and requests from the [`ControlPlane`]'s owner.
#[derive(Debug)]
enum Event {
    Received {
        conn: usize,
        message: Message,
    },
    Closed {
        conn: usize,
        cause: Closed,
    },
    /// The owner requested a stop; the level is already in [`Shared::stop`].
    Stop,
    Propose {
        time_ms: u64,
    },
    Checkpoint {
        time_ms: u64,
        report: String,
    },
    Finish {
        goodbye: bool,
    },
}

/// What the driver thread publishes for the owner to poll.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicU8,
    /// Set with `outcome.failure`, for the workers to poll without a lock.
    failed: AtomicBool,
    outcome: Mutex<Outcome>,
}

#[derive(Debug, Default)]
struct Outcome {
    final_time: Option<u64>,
    failure: Option<ControlError>,
    /// Checkpoint reports received and not yet taken (process 0 only).
    checkpoints: Vec<CheckpointReport>,
    /// The newest checkpoint time each process reported (process 0 only).
    reported: BTreeMap<usize, u64>,
}

impl Outcome {
    fn receive_checkpoint(&mut self, report: CheckpointReport) {
        let newest = self.reported.entry(report.process).or_insert(report.time_ms);
        *newest = (*newest).max(report.time_ms);
        self.checkpoints.push(report);
    }
}

/// One process's report that it wrote its part of a checkpoint (see
/// [`ControlPlane::report_checkpoint`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointReport {
    /// The reporting process.
    pub process: usize,
    /// The checkpoint's batch time (ms).
    pub time_ms: u64,
    /// What the process said about its part; the control plane does not read it.
    pub report: String,
}

impl Shared {
    fn outcome(&self) -> MutexGuard<'_, Outcome> {
        // The outcome stays consistent even if a holder panicked: each write is one assignment.
        crate::msg::lock(&self.outcome)
    }

    /// Raises the stop level; returns whether it changed.
    fn raise_stop(&self, level: u8) -> bool {
        self.stop.fetch_max(level, Ordering::AcqRel) < level
    }

    /// Records a failure unless an earlier one was recorded.
    fn fail(&self, error: ControlError) {
        let mut outcome = self.outcome();
        // The first failure is this process's one error line about the loss; what the loss
        // breaks afterwards (timely's threads, the workers) logs at debug level.
        if outcome.failure.is_none() {
            tracing::error!(error = %error, "The cluster failed.");
            outcome.failure = Some(error);
            self.failed.store(true, Ordering::Release);
        } else {
            tracing::warn!(error = %error, "The cluster, already failed, saw another failure.");
        }
    }

    fn set_final(&self, time_ms: u64) {
        let mut outcome = self.outcome();
        if outcome.final_time.is_none() {
            tracing::info!(final_time_ms = time_ms, "The cluster agreed on the final batch time.");
            outcome.final_time = Some(time_ms);
        }
    }
}

fn stop_level(graceful: bool) -> u8 {
    if graceful { STOP_GRACEFUL } else { STOP_NOW }
}

/// This process's TCP connections and the threads reading them. Dropping it shuts every
/// connection down and joins the readers, so no reader outlives it, even on an error path.
struct Links {
    streams: BTreeMap<usize, Link>,
    readers: Vec<JoinHandle<()>>,
    closing: Arc<AtomicBool>,
    events: Sender<Event>,
    next_conn: usize,
    read_tick: Duration,
    write_timeout: Duration,
}

impl Links {
    fn new(events: Sender<Event>, config: &ControlConfig) -> Self {
        Links {
            streams: BTreeMap::new(),
            readers: Vec::new(),
            closing: Arc::new(AtomicBool::new(false)),
            events,
            next_conn: 0,
            read_tick: config.read_tick(),
            // A peer that does not drain its socket for a whole peer timeout is as good as lost.
            write_timeout: config.peer_timeout,
        }
    }

    /// Adopts a connected stream and starts its reader thread; returns its connection id.
    fn add(&mut self, stream: Link) -> io::Result<usize> {
        let socket = stream.socket();
        socket.set_nonblocking(false)?;
        socket.set_nodelay(true)?;
        socket.set_read_timeout(Some(self.read_tick))?;
        socket.set_write_timeout(Some(self.write_timeout))?;
        let reading = stream.try_clone()?;
        let conn = self.next_conn;
        let events = self.events.clone();
        let closing = self.closing.clone();
        let reader = thread::Builder::new()
            .name(format!("ember-control-read-{conn}"))
            .spawn(move || read_messages(conn, reading, events, closing))?;
        self.next_conn += 1;
        self.streams.insert(conn, stream);
        self.readers.push(reader);
        Ok(conn)
    }

    fn send(&self, conn: usize, message: &Message) -> io::Result<()> {
        let Some(stream) = self.streams.get(&conn) else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "the connection is already closed"));
        };
        let mut line = serde_json::to_vec(message).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut writer = stream;
        writer.write_all(&line)
    }

    /// Closes one connection; its reader sees the end of the stream and exits.
    fn close(&mut self, conn: usize) {
        if let Some(stream) = self.streams.remove(&conn) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Release);
        for stream in self.streams.values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for reader in self.readers.drain(..) {
            if reader.join().is_err() {
                tracing::error!("A control plane reader thread panicked; this is a bug.");
            }
        }
    }
}

/// The body of a reader thread: turns lines into [`Event::Received`] until the connection ends,
/// then sends one [`Event::Closed`]. Exits early once `closing` is set.
fn read_messages(conn: usize, stream: Link, events: Sender<Event>, closing: Arc<AtomicBool>) {
    let mut reader = BufReader::new(stream);
    // Kept across read timeouts: `read_until` keeps what it consumed before a timeout.
    let mut line = Vec::new();
    let cause = loop {
        let room = MAX_LINE.saturating_sub(line.len() as u64);
        if room == 0 {
            break Closed::Garbled(format!("a line longer than {MAX_LINE} bytes"));
        }
        match reader.by_ref().take(room).read_until(b'\n', &mut line) {
            Ok(_) if line.last() == Some(&b'\n') => {
                match serde_json::from_slice::<Message>(&line) {
                    Ok(message) => {
                        if events.send(Event::Received { conn, message }).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let text = String::from_utf8_lossy(&line[..line.len().min(200)]).trim_end().to_string();
                        break Closed::Garbled(format!("{text:?}: {e}"));
                    }
                }
                line.clear();
            }
            Ok(0) if line.is_empty() => break Closed::Eof,
            Ok(0) => break Closed::Failed("the connection ended in the middle of a message".into()),
            // The line limit was reached; the next round reports it.
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) =>
            {
                if closing.load(Ordering::Acquire) {
                    return;
                }
            }
            Err(e) => break Closed::Failed(e.to_string()),
        }
    };
    // The driver may be gone already when this process is shutting down.
    let _ = events.send(Event::Closed { conn, cause });
}

/// The running control plane of one process; see the module docs.
///
/// Dropping it (or [`ControlPlane::finish`]) says goodbye to the peers and joins every
/// background thread.
pub struct ControlPlane {
    process: usize,
    processes: usize,
    zero_ms: u64,
    shared: Arc<Shared>,
    /// The background thread and its request channel; `None` for a single process or once
    /// shut down.
    driver: Option<(Sender<Event>, JoinHandle<()>)>,
}

impl fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlPlane")
            .field("process", &self.process)
            .field("processes", &self.processes)
            .field("zero_ms", &self.zero_ms)
            .field("stop_requested", &self.stop_requested())
            .field("final_time", &self.final_time())
            .field("failure", &self.failure())
            .finish()
    }
}

impl ControlPlane {
    /// Joins the cluster: blocks until every process joined, every plan fingerprint matched and
    /// the zero time is agreed.
    ///
    /// `zero_ms` is called on process 0 only, after every process joined; the followers receive
    /// its value. With a single process no socket is opened and `zero_ms` is called at once.
    ///
    /// # Errors
    ///
    /// - [`ControlError::StartTimeout`] when the deadline passes: on process 0 naming the
    ///   processes that never joined, on a follower naming process 0. A follower waits one extra
    ///   [`ControlConfig::peer_timeout`] for process 0's answer, so that it usually learns
    ///   process 0's more precise error instead.
    /// - [`ControlError::PlanMismatch`] on every process when one process's fingerprint differs
    ///   from process 0's. Process 0 keeps listening until every process has been told or the
    ///   deadline passes, so that late processes fail with this error too.
    /// - [`ControlError::Protocol`] when a hello names a duplicate or out-of-range process, a
    ///   different process count, or is unreadable (reported on every joined process).
    /// - [`ControlError::PeerLost`] when a joined process goes away during startup.
    /// - [`ControlError::Io`] when process 0 cannot listen; [`ControlError::Config`] for a
    ///   nonsensical configuration.
    pub fn join(config: ControlConfig, zero_ms: impl FnOnce() -> u64) -> Result<ControlPlane, ControlError> {
        config.validate()?;
        let shared = Arc::new(Shared::default());
        let (zero, driver) = if config.processes == 1 {
            (zero_ms(), None)
        } else if config.process == 0 {
            let (zero, driver) = join_as_coordinator(&config, zero_ms, shared.clone())?;
            (zero, Some(driver))
        } else {
            let (zero, driver) = join_as_follower(&config, shared.clone())?;
            (zero, Some(driver))
        };
        tracing::info!(
            process = config.process,
            processes = config.processes,
            zero_ms = zero,
            "Joined the cluster's control plane."
        );
        Ok(ControlPlane {
            process: config.process,
            processes: config.processes,
            zero_ms: zero,
            shared,
            driver,
        })
    }

    /// The zero time (ms) decided by process 0.
    pub fn zero_ms(&self) -> u64 {
        self.zero_ms
    }

    /// Asks every process to stop. May be called on any process, any number of times; a
    /// non-graceful request wins over a graceful one. Never blocks on the network.
    pub fn request_stop(&self, graceful: bool) {
        if self.shared.raise_stop(stop_level(graceful)) {
            tracing::info!(process = self.process, graceful, "This process requested the cluster to stop.");
            self.command(Event::Stop);
        }
    }

    /// Whether a stop was requested on any process: `None`, or `Some(graceful)`.
    pub fn stop_requested(&self) -> Option<bool> {
        match self.shared.stop.load(Ordering::Acquire) {
            STOP_NONE => None,
            STOP_GRACEFUL => Some(true),
            _ => Some(false),
        }
    }

    /// Proposes this process's final batch time; call it once this process's sources stopped
    /// cutting batches. Process 0 waits for every process's proposal and tells everyone the
    /// largest ([`ControlPlane::final_time`]). A repeated call raises the proposal until the
    /// final time is known. Never blocks on the network.
    pub fn propose_final_time(&self, time_ms: u64) {
        if self.driver.is_none() {
            self.shared.set_final(time_ms);
        } else {
            self.command(Event::Propose { time_ms });
        }
    }

    /// The agreed final batch time, once every process proposed one.
    pub fn final_time(&self) -> Option<u64> {
        self.shared.outcome().final_time
    }

    /// This process's index (0 is the coordinator).
    pub fn process(&self) -> usize {
        self.process
    }

    /// How many processes the cluster has.
    pub fn processes(&self) -> usize {
        self.processes
    }

    /// Tells process 0 that this process wrote its part of checkpoint `time_ms`; `report`
    /// describes the part (its files) for the process that commits the checkpoint. On process 0
    /// the report is kept for [`ControlPlane::take_checkpoint_reports`] directly. Never blocks
    /// on the network.
    pub fn report_checkpoint(&self, time_ms: u64, report: String) {
        if self.process == 0 {
            self.shared.outcome().receive_checkpoint(CheckpointReport {
                process: 0,
                time_ms,
                report,
            });
        } else {
            self.command(Event::Checkpoint { time_ms, report });
        }
    }

    /// The checkpoint reports of every process (this one's too) received since the last call,
    /// in the order they arrived from each process. Only process 0 receives any.
    pub fn take_checkpoint_reports(&self) -> Vec<CheckpointReport> {
        std::mem::take(&mut self.shared.outcome().checkpoints)
    }

    /// The newest checkpoint time `process` reported (on process 0; `None` elsewhere, or before
    /// its first report).
    pub fn reported_through(&self, process: usize) -> Option<u64> {
        self.shared.outcome().reported.get(&process).copied()
    }

    /// The first failure seen in the cluster after startup (a lost process), if any.
    pub fn failure(&self) -> Option<ControlError> {
        self.shared.outcome().failure.clone()
    }

    /// Whether [`ControlPlane::failure`] has something to say (no lock: workers poll it every
    /// step).
    pub fn has_failed(&self) -> bool {
        self.shared.failed.load(Ordering::Acquire)
    }

    /// Says goodbye and closes the connections without waiting for the background threads,
    /// which end soon after (dropping joins them). For a holder that shares the control plane.
    pub fn close(&self) {
        self.command(Event::Finish { goodbye: true });
    }

    /// Shuts down cleanly: says goodbye so that no peer reports this process as lost, closes
    /// the connections and joins the background threads. Dropping does the same.
    pub fn finish(mut self) {
        self.shut_down(true);
    }

    fn command(&self, event: Event) {
        if let Some((commands, _)) = &self.driver {
            // Fails only if the driver thread panicked, which it logs itself.
            let _ = commands.send(event);
        }
    }

    fn shut_down(&mut self, goodbye: bool) {
        if let Some((commands, driver)) = self.driver.take() {
            let _ = commands.send(Event::Finish { goodbye });
            if driver.join().is_err() {
                tracing::error!(process = self.process, "The control plane's driver thread panicked; this is a bug.");
            }
        }
    }

    /// Simulates a crash: closes the connections without a goodbye and stops the threads.
    #[cfg(test)]
    fn kill(mut self) {
        self.shut_down(false);
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.shut_down(true);
    }
}

/// Process 0's startup: accepts followers, checks their hellos, decides the zero time and starts
/// the coordinator's driver thread.
fn join_as_coordinator(
    config: &ControlConfig,
    zero_ms: impl FnOnce() -> u64,
    shared: Arc<Shared>,
) -> Result<(u64, (Sender<Event>, JoinHandle<()>)), ControlError> {
    let started = Instant::now();
    let deadline = started + config.start_timeout;
    let listener =
        TcpListener::bind(&config.coordinator).map_err(|e| io_error(format!("process 0 could not listen on {}", config.coordinator), e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| io_error("process 0 could not poll its listener", e))?;
    tracing::info!(address = %config.coordinator, processes = config.processes, "Process 0 waits for the other processes to join.");

    let (events_tx, events) = mpsc::channel();
    let mut links = Links::new(events_tx.clone(), config);
    let mut addresses: HashMap<usize, SocketAddr> = HashMap::new();
    // With a secret: connections that proved it (checked on threads of their own, so that a
    // silent stranger does not hold up the others), and the process each proved it as.
    let (proven_tx, proven) = mpsc::channel::<(Link, SocketAddr, u64)>();
    let mut claims: HashMap<usize, u64> = HashMap::new();
    // conn → the process it said it is, for every conn that said hello.
    let mut hellos: HashMap<usize, usize> = HashMap::new();
    // process → conn, for accepted followers.
    let mut joined: BTreeMap<usize, usize> = BTreeMap::new();
    // Valid process indices that said hello, accepted or not.
    let mut seen: BTreeSet<usize> = BTreeSet::new();
    let mut failure: Option<ControlError> = None;
    let followers = config.processes - 1;

    // Records the first startup failure and tells every accepted follower.
    let fail = |failure: &mut Option<ControlError>, error: ControlError, links: &Links, joined: &BTreeMap<usize, usize>| {
        if failure.is_some() {
            return;
        }
        tracing::error!(error = %error, "Cluster startup failed; telling the processes that joined.");
        let abort = Message::Abort { error: error.clone() };
        for &conn in joined.values() {
            let _ = links.send(conn, &abort);
        }
        *failure = Some(error);
    };

    loop {
        loop {
            match listener.accept() {
                Ok((stream, address)) => match &config.secret {
                    None => {
                        if let Some(conn) = adopt(&mut links, Link::Plain(stream), address) {
                            addresses.insert(conn, address);
                        }
                    }
                    Some(secret) => {
                        let (secret, tls, proven_tx) = (secret.clone(), config.tls.clone(), proven_tx.clone());
                        let checking = thread::Builder::new().name("ember-control-auth".into()).spawn(move || {
                            match transport::accept(stream, &secret, tls.as_ref(), "control", AUTH_TIMEOUT) {
                                Ok((link, process)) => {
                                    let _ = proven_tx.send((link, address, process));
                                }
                                // Dropping the connection closed it.
                                Err(e) => {
                                    tracing::warn!(remote = %address, problem = %e, "Refused a control connection that did not prove the cluster secret.");
                                }
                            }
                        });
                        if let Err(e) = checking {
                            tracing::warn!(remote = %address, error = %e, "Could not check a control connection; dropped it.");
                        }
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!(error = %e, "Accepting a control connection failed; will retry.");
                    break;
                }
            }
        }
        while let Ok((stream, address, process)) = proven.try_recv() {
            if let Some(conn) = adopt(&mut links, stream, address) {
                addresses.insert(conn, address);
                claims.insert(conn, process);
            }
        }
        // After a failure, keep going until every process has been told (or the deadline).
        if (failure.is_none() && joined.len() == followers) || (failure.is_some() && seen.len() == followers) {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            if failure.is_none() {
                let missing: Vec<usize> = (1..config.processes).filter(|p| !joined.contains_key(p)).collect();
                let addresses = missing.iter().filter_map(|p| config.addresses.get(*p).cloned()).collect();
                let error = ControlError::StartTimeout {
                    missing,
                    addresses,
                    waited: started.elapsed(),
                };
                fail(&mut failure, error, &links, &joined);
            }
            break;
        }
        let event = match events.recv_timeout(ACCEPT_POLL.min(deadline - now)) {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => continue,
        };
        match event {
            Event::Received {
                conn,
                message:
                    Message::Hello {
                        process,
                        processes,
                        fingerprint,
                        resume_ms,
                    },
            } => {
                let address = addresses.get(&conn).map_or_else(|| "?".to_string(), ToString::to_string);
                let verdict = if let Some(earlier) = hellos.get(&conn) {
                    Err(ControlError::Protocol(format!("process {earlier} (at {address}) said hello twice")))
                } else if let Some(&proven) = claims.get(&conn).filter(|&&p| p != process as u64) {
                    Err(ControlError::Protocol(format!(
                        "a process at {address} proved the cluster secret as process {proven} but said hello as process {process}"
                    )))
                } else if process == 0 || process >= config.processes {
                    Err(ControlError::Protocol(format!(
                        "a process at {address} says it is process {process}, but a cluster of {} processes has followers 1 to {}",
                        config.processes, followers
                    )))
                } else if let Some(&other) = joined.get(&process) {
                    let other = addresses.get(&other).map_or_else(|| "?".to_string(), ToString::to_string);
                    Err(ControlError::Protocol(format!(
                        "process {process} joined twice (from {other} and {address})"
                    )))
                } else if processes != config.processes {
                    Err(ControlError::Protocol(format!(
                        "process {process} was started for {processes} processes but process 0 for {}",
                        config.processes
                    )))
                } else if fingerprint != config.fingerprint {
                    Err(ControlError::PlanMismatch {
                        process,
                        expected: config.fingerprint,
                        found: fingerprint,
                    })
                } else if resume_ms != config.resume_ms {
                    Err(ControlError::ResumeMismatch {
                        process,
                        expected: config.resume_ms,
                        found: resume_ms,
                    })
                } else {
                    Ok(())
                };
                hellos.insert(conn, process);
                if (1..config.processes).contains(&process) {
                    seen.insert(process);
                }
                match (verdict, &failure) {
                    (Ok(()), None) => {
                        tracing::info!(process, address = %address, "A process joined the cluster.");
                        joined.insert(process, conn);
                    }
                    // A late process learns why startup failed.
                    (Ok(()), Some(error)) => {
                        let _ = links.send(conn, &Message::Abort { error: error.clone() });
                    }
                    (Err(error), _) => {
                        let _ = links.send(conn, &Message::Abort { error: error.clone() });
                        fail(&mut failure, error, &links, &joined);
                    }
                }
            }
            Event::Received { conn, message } => {
                let address = addresses.get(&conn).map_or_else(|| "?".to_string(), ToString::to_string);
                let error = ControlError::Protocol(format!(
                    "a process at {address} sent a {} message before startup finished",
                    message.kind()
                ));
                fail(&mut failure, error, &links, &joined);
            }
            Event::Closed { conn, cause } => {
                links.close(conn);
                let joined_as = joined.iter().find(|&(_, &c)| c == conn).map(|(&p, _)| p);
                if let Some(process) = joined_as {
                    joined.remove(&process);
                    let error = ControlError::PeerLost {
                        process,
                        reason: format!("during startup, {cause}"),
                    };
                    fail(&mut failure, error, &links, &joined);
                } else if let Closed::Garbled(what) = cause {
                    let address = addresses.get(&conn).map_or_else(|| "?".to_string(), ToString::to_string);
                    let error = ControlError::Protocol(format!("a process at {address} sent an unreadable message: {what}"));
                    fail(&mut failure, error, &links, &joined);
                }
                // Otherwise a connection that never said hello (a probe) or was already turned away.
            }
            Event::Stop | Event::Propose { .. } | Event::Checkpoint { .. } | Event::Finish { .. } => {}
        }
    }
    drop(listener);
    if let Some(error) = failure {
        return Err(error);
    }

    let zero = zero_ms();
    let welcome = Message::Welcome { zero_ms: zero };
    let now = Instant::now();
    let mut peers = BTreeMap::new();
    for (&process, &conn) in &joined {
        // A follower that cannot be welcomed is reported lost by the driver once its reader
        // sees the broken connection.
        if let Err(e) = links.send(conn, &welcome) {
            tracing::debug!(process, error = %e, "Could not send the welcome.");
        }
        peers.insert(
            conn,
            Follower {
                process,
                last_heard: now,
                said_goodbye: false,
                open: true,
                send_failed: None,
                proposal: None,
            },
        );
    }
    let strays: Vec<usize> = links.streams.keys().copied().filter(|conn| !peers.contains_key(conn)).collect();
    for conn in strays {
        links.close(conn);
    }
    let coordinator = Coordinator {
        links,
        events,
        shared,
        peers,
        own_proposal: None,
        stop_sent: STOP_NONE,
        final_sent: false,
        heartbeat: config.heartbeat,
        peer_timeout: config.peer_timeout,
        pending_losses: Vec::new(),
    };
    let driver = thread::Builder::new()
        .name("ember-control-coordinator".into())
        .spawn(move || coordinator.run())
        .map_err(|e| io_error("process 0 could not start its control thread", e))?;
    Ok((zero, (events_tx, driver)))
}

/// Adopts an accepted control connection; `None` (logged) when it cannot be set up.
fn adopt(links: &mut Links, stream: Link, address: SocketAddr) -> Option<usize> {
    match links.add(stream) {
        Ok(conn) => {
            tracing::debug!(address = %address, "A process connected to the control plane.");
            Some(conn)
        }
        Err(e) => {
            tracing::warn!(address = %address, error = %e, "Could not set up a control connection; dropped it.");
            None
        }
    }
}

/// A follower's startup: connects to process 0, says hello and waits for the welcome.
fn join_as_follower(config: &ControlConfig, shared: Arc<Shared>) -> Result<(u64, (Sender<Event>, JoinHandle<()>)), ControlError> {
    let started = Instant::now();
    let deadline = started + config.start_timeout;
    let stream = connect(config, started, deadline)?;
    let stream = match &config.secret {
        Some(secret) => transport::connect(stream, secret, config.tls.as_ref(), "control", config.process as u64, AUTH_TIMEOUT).map_err(
            |e| match e {
                // Process 0 speaks first; silence or a close before it did is what a process 0
                // waiting for a TLS handshake does (it gives up after the same timeout).
                AuthError::Io(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    io_error(
                        format!(
                            "process 0 did not start the authentication handshake within {} s (is {} set on it and not on this process?)",
                            AUTH_TIMEOUT.as_secs(),
                            transport::TLS_ENV
                        ),
                        e,
                    )
                }
                AuthError::Io(e) => io_error("could not prove the cluster secret to process 0", e),
                refused => ControlError::Protocol(format!(
                    "process {} cannot join the cluster: process 0 at {}: {}",
                    config.process,
                    config.coordinator,
                    transport::explain(&refused)
                )),
            },
        )?,
        None => Link::Plain(stream),
    };
    let (events_tx, events) = mpsc::channel();
    let mut links = Links::new(events_tx.clone(), config);
    let conn = links
        .add(stream)
        .map_err(|e| io_error("could not set up the connection to process 0", e))?;
    let hello = Message::Hello {
        process: config.process,
        processes: config.processes,
        fingerprint: config.fingerprint,
        resume_ms: config.resume_ms,
    };
    links
        .send(conn, &hello)
        .map_err(|e| io_error("could not say hello to process 0", e))?;
    tracing::info!(process = config.process, coordinator = %config.coordinator, "Connected to process 0; waiting for the other processes.");

    // Process 0 may have started later and so have a later deadline; its answer (for example
    // which process is missing) is more useful than our own timeout.
    let answer_deadline = deadline + config.peer_timeout;
    let zero = loop {
        let now = Instant::now();
        if now >= answer_deadline {
            return Err(ControlError::StartTimeout {
                missing: vec![0],
                addresses: vec![config.coordinator.clone()],
                waited: started.elapsed(),
            });
        }
        match events.recv_timeout(answer_deadline - now) {
            Ok(Event::Received {
                message: Message::Welcome { zero_ms },
                ..
            }) => break zero_ms,
            Ok(Event::Received {
                message: Message::Abort { error },
                ..
            }) => return Err(error),
            Ok(Event::Received {
                message: Message::Heartbeat,
                ..
            }) => {}
            Ok(Event::Received { message, .. }) => {
                return Err(ControlError::Protocol(format!(
                    "process 0 sent a {} message before the welcome",
                    message.kind()
                )));
            }
            Ok(Event::Closed {
                cause: Closed::Garbled(what),
                ..
            }) => {
                return Err(ControlError::Protocol(format!("process 0 sent an unreadable message: {what}")));
            }
            Ok(Event::Closed { cause, .. }) => {
                return Err(ControlError::PeerLost {
                    process: 0,
                    reason: format!("during startup, {cause}"),
                });
            }
            Ok(Event::Stop | Event::Propose { .. } | Event::Checkpoint { .. } | Event::Finish { .. }) => {}
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
        }
    };

    let follower = FollowerDriver {
        links,
        conn,
        events,
        shared,
        process: config.process,
        heartbeat: config.heartbeat,
        peer_timeout: config.peer_timeout,
        last_heard: Instant::now(),
        open: true,
        coordinator_said_goodbye: false,
        send_failed: None,
    };
    let driver = thread::Builder::new()
        .name(format!("ember-control-follower-{}", config.process))
        .spawn(move || follower.run())
        .map_err(|e| io_error("could not start the control thread", e))?;
    Ok((zero, (events_tx, driver)))
}

/// Connects to process 0, retrying until the deadline because followers may start first.
fn connect(config: &ControlConfig, started: Instant, deadline: Instant) -> Result<TcpStream, ControlError> {
    let mut last_error = String::from("no attempt was made");
    loop {
        match config.coordinator.to_socket_addrs() {
            Ok(addresses) => {
                for address in addresses {
                    let timeout = deadline
                        .saturating_duration_since(Instant::now())
                        .clamp(Duration::from_millis(1), CONNECT_ATTEMPT);
                    match TcpStream::connect_timeout(&address, timeout) {
                        Ok(stream) => return Ok(stream),
                        Err(e) => last_error = format!("{address}: {e}"),
                    }
                }
            }
            // DNS may not know the coordinator's name yet when a cluster is starting.
            Err(e) => last_error = e.to_string(),
        }
        let now = Instant::now();
        if now >= deadline {
            tracing::warn!(coordinator = %config.coordinator, error = %last_error, "Could not reach process 0 before the deadline.");
            return Err(ControlError::StartTimeout {
                missing: vec![0],
                addresses: vec![config.coordinator.clone()],
                waited: started.elapsed(),
            });
        }
        tracing::debug!(coordinator = %config.coordinator, error = %last_error, "Process 0 is not reachable yet; retrying.");
        thread::sleep(CONNECT_RETRY.min(deadline - now));
    }
}

/// Why a peer that has not said goodbye is lost at `now`, if it is: a send to it failed a
/// peer timeout ago, or it has been silent for longer than that (see "A failed send").
fn overdue(send_failed: &Option<(String, Instant)>, last_heard: Instant, now: Instant, timeout: Duration) -> Option<String> {
    let silent = now.saturating_duration_since(last_heard);
    match send_failed {
        Some((reason, at)) if now.saturating_duration_since(*at) > timeout => Some(reason.clone()),
        _ if silent > timeout => Some(format!("no heartbeat for {} ms", silent.as_millis())),
        _ => None,
    }
}

/// Why a peer whose connection ended without a goodbye is lost: the failed send that came
/// first, if any, else how the connection ended.
fn closed_reason(send_failed: &mut Option<(String, Instant)>, cause: &Closed) -> String {
    send_failed.take().map_or_else(|| cause.to_string(), |(reason, _)| reason)
}

/// What process 0 knows about one follower after startup.
#[derive(Debug)]
struct Follower {
    process: usize,
    last_heard: Instant,
    said_goodbye: bool,
    open: bool,
    /// Why and when a send to it failed (see "A failed send" in the module docs).
    send_failed: Option<(String, Instant)>,
    proposal: Option<u64>,
}

/// Process 0's driver thread: heartbeats, stop forwarding, final-time agreement, loss relaying.
struct Coordinator {
    links: Links,
    events: Receiver<Event>,
    shared: Arc<Shared>,
    /// Keyed by connection id.
    peers: BTreeMap<usize, Follower>,
    own_proposal: Option<u64>,
    /// The highest stop level already told to the followers.
    stop_sent: u8,
    final_sent: bool,
    heartbeat: Duration,
    peer_timeout: Duration,
    /// Followers found lost while sending, reported once the current event is handled (so that
    /// relaying a loss does not recurse into another broadcast).
    pending_losses: Vec<(usize, String)>,
}

impl Coordinator {
    fn run(mut self) {
        let mut next_beat = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_beat {
                self.broadcast(&Message::Heartbeat);
                self.check_silence(now);
                next_beat = now + self.heartbeat;
            }
            match self.events.recv_timeout(next_beat.saturating_duration_since(Instant::now())) {
                Ok(Event::Finish { goodbye }) => {
                    if goodbye {
                        self.broadcast(&Message::Goodbye);
                    }
                    // Dropping `links` closes every connection and joins the readers.
                    return;
                }
                Ok(event) => self.handle(event),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.report_losses();
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Received { conn, message } => {
                let Some(peer) = self.peers.get_mut(&conn) else { return };
                peer.last_heard = Instant::now();
                let process = peer.process;
                match message {
                    Message::Heartbeat => {}
                    Message::Stop { graceful } => {
                        if self.shared.raise_stop(stop_level(graceful)) {
                            tracing::info!(process, graceful, "A process requested the cluster to stop.");
                        }
                        self.spread_stop();
                    }
                    Message::Propose { time_ms } => {
                        peer.proposal = Some(peer.proposal.map_or(time_ms, |p| p.max(time_ms)));
                        self.try_final();
                    }
                    Message::Checkpoint { time_ms, report } => {
                        self.shared
                            .outcome()
                            .receive_checkpoint(CheckpointReport { process, time_ms, report });
                    }
                    Message::Goodbye => {
                        tracing::debug!(process, "A process said goodbye.");
                        peer.said_goodbye = true;
                    }
                    other => {
                        tracing::warn!(
                            process,
                            kind = other.kind(),
                            "Ignored a control message a follower should not send."
                        );
                    }
                }
            }
            Event::Closed { conn, cause } => {
                let Some(peer) = self.peers.get_mut(&conn) else { return };
                if peer.open {
                    peer.open = false;
                    self.links.close(conn);
                    if !peer.said_goodbye {
                        self.pending_losses
                            .push((peer.process, closed_reason(&mut peer.send_failed, &cause)));
                    }
                }
            }
            Event::Stop => self.spread_stop(),
            Event::Propose { time_ms } => {
                self.own_proposal = Some(self.own_proposal.map_or(time_ms, |p| p.max(time_ms)));
                self.try_final();
            }
            // Process 0 keeps its own reports without the driver.
            Event::Checkpoint { .. } | Event::Finish { .. } => {}
        }
    }

    fn spread_stop(&mut self) {
        let level = self.shared.stop.load(Ordering::Acquire);
        if level > self.stop_sent {
            self.stop_sent = level;
            self.broadcast(&Message::Stop {
                graceful: level == STOP_GRACEFUL,
            });
        }
    }

    fn try_final(&mut self) {
        if self.final_sent {
            return;
        }
        let Some(own) = self.own_proposal else { return };
        let mut final_time = own;
        for peer in self.peers.values() {
            match peer.proposal {
                Some(p) => final_time = final_time.max(p),
                None => return,
            }
        }
        self.final_sent = true;
        self.shared.set_final(final_time);
        self.broadcast(&Message::Final { time_ms: final_time });
    }

    fn check_silence(&mut self, now: Instant) {
        for (&conn, peer) in &mut self.peers {
            if !peer.open || peer.said_goodbye {
                continue;
            }
            let Some(reason) = overdue(&peer.send_failed, peer.last_heard, now, self.peer_timeout) else {
                continue;
            };
            peer.open = false;
            self.links.close(conn);
            self.pending_losses.push((peer.process, reason));
        }
    }

    /// Sends to every open follower that has not said goodbye and whose connection has not
    /// failed; a failed send is remembered (see "A failed send" in the module docs).
    fn broadcast(&mut self, message: &Message) {
        for (&conn, peer) in &mut self.peers {
            if !peer.open || peer.said_goodbye || peer.send_failed.is_some() {
                continue;
            }
            if let Err(e) = self.links.send(conn, message) {
                tracing::debug!(process = peer.process, error = %e, "Sending to a follower failed; waiting for its connection's end.");
                peer.send_failed = Some((format!("sending to it failed: {e}"), Instant::now()));
            }
        }
    }

    /// Records queued losses and relays each to the surviving followers.
    fn report_losses(&mut self) {
        while let Some((process, reason)) = self.pending_losses.pop() {
            tracing::debug!(process, reason = %reason, "Process 0 lost a process of the cluster.");
            self.shared.fail(ControlError::PeerLost {
                process,
                reason: reason.clone(),
            });
            self.broadcast(&Message::Lost { process, reason });
        }
    }
}

/// A follower's driver thread: heartbeats to process 0, forwards requests, records what process 0
/// tells it, and notices when process 0 is gone.
struct FollowerDriver {
    links: Links,
    conn: usize,
    events: Receiver<Event>,
    shared: Arc<Shared>,
    process: usize,
    heartbeat: Duration,
    peer_timeout: Duration,
    last_heard: Instant,
    open: bool,
    coordinator_said_goodbye: bool,
    /// Why and when a send to process 0 failed (see "A failed send" in the module docs).
    send_failed: Option<(String, Instant)>,
}

impl FollowerDriver {
    fn run(mut self) {
        // Tell process 0 at once that we are alive, then on every tick.
        let mut next_beat = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_beat {
                self.send(&Message::Heartbeat);
                if self.open
                    && !self.coordinator_said_goodbye
                    && let Some(reason) = overdue(&self.send_failed, self.last_heard, now, self.peer_timeout)
                {
                    self.lose(reason);
                }
                next_beat = now + self.heartbeat;
            }
            match self.events.recv_timeout(next_beat.saturating_duration_since(Instant::now())) {
                Ok(Event::Finish { goodbye }) => {
                    if goodbye {
                        self.send(&Message::Goodbye);
                    }
                    return;
                }
                Ok(event) => self.handle(event),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Received { message, .. } => {
                self.last_heard = Instant::now();
                match message {
                    Message::Heartbeat => {}
                    Message::Stop { graceful } => {
                        if self.shared.raise_stop(stop_level(graceful)) {
                            tracing::info!(process = self.process, graceful, "The cluster was asked to stop.");
                        }
                    }
                    Message::Final { time_ms } => self.shared.set_final(time_ms),
                    Message::Lost { process, reason } => self.shared.fail(ControlError::PeerLost { process, reason }),
                    Message::Goodbye => {
                        tracing::debug!(process = self.process, "Process 0 said goodbye.");
                        self.coordinator_said_goodbye = true;
                    }
                    other => {
                        tracing::warn!(
                            process = self.process,
                            kind = other.kind(),
                            "Ignored a control message process 0 should not send."
                        );
                    }
                }
            }
            Event::Closed { cause, .. } => {
                if self.open && !self.coordinator_said_goodbye {
                    let reason = closed_reason(&mut self.send_failed, &cause);
                    self.lose(reason);
                }
                self.open = false;
                self.links.close(self.conn);
            }
            Event::Stop => {
                let graceful = self.shared.stop.load(Ordering::Acquire) == STOP_GRACEFUL;
                self.send(&Message::Stop { graceful });
            }
            Event::Propose { time_ms } => self.send(&Message::Propose { time_ms }),
            Event::Checkpoint { time_ms, report } => self.send(&Message::Checkpoint { time_ms, report }),
            Event::Finish { .. } => {}
        }
    }

    fn send(&mut self, message: &Message) {
        if !self.open || self.coordinator_said_goodbye || self.send_failed.is_some() {
            return;
        }
        if let Err(e) = self.links.send(self.conn, message) {
            tracing::debug!(process = self.process, error = %e, "Sending to process 0 failed; waiting for its connection's end.");
            self.send_failed = Some((format!("sending to it failed: {e}"), Instant::now()));
        }
    }

    fn lose(&mut self, reason: String) {
        self.open = false;
        self.links.close(self.conn);
        self.shared.fail(ControlError::PeerLost { process: 0, reason });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{RwLock, RwLockReadGuard};

    use super::*;

    /// Tests share the process; the thread-counting test needs it alone.
    static EXCLUSIVE: RwLock<()> = RwLock::new(());

    fn shared_test() -> RwLockReadGuard<'static, ()> {
        EXCLUSIVE.read().unwrap_or_else(|e| e.into_inner())
    }

    const PEER_TIMEOUT: Duration = Duration::from_millis(500);
    const ZERO: u64 = 1_700_000_000_000;
    const PLAN: u64 = 0xfeed_beef;

    fn free_address() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        listener.local_addr().expect("local address").to_string()
    }

    fn config(process: usize, processes: usize, address: &str) -> ControlConfig {
        ControlConfig {
            start_timeout: Duration::from_secs(10),
            heartbeat: Duration::from_millis(50),
            peer_timeout: PEER_TIMEOUT,
            ..ControlConfig::new(process, processes, address, PLAN)
        }
    }

    /// Joins `configs` concurrently, one thread per process; results in process order.
    fn join_all(configs: Vec<ControlConfig>) -> Vec<Result<ControlPlane, ControlError>> {
        let threads: Vec<_> = configs
            .into_iter()
            .map(|c| thread::spawn(move || ControlPlane::join(c, || ZERO)))
            .collect();
        threads.into_iter().map(|t| t.join().expect("join thread")).collect()
    }

    fn cluster(processes: usize) -> Vec<ControlPlane> {
        let address = free_address();
        let configs = (0..processes).map(|p| config(p, processes, &address)).collect();
        join_all(configs).into_iter().map(|r| r.expect("cluster starts")).collect()
    }

    fn wait_for(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if condition() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn control_threads() -> usize {
        let tasks = std::fs::read_dir("/proc/self/task").expect("list threads");
        tasks
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("ember-control"))
            .count()
    }

    /// A hand-written follower speaking the wire format directly.
    fn raw_follower(address: &str, hello: &str) -> BufReader<TcpStream> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let stream = loop {
            match TcpStream::connect(address) {
                Ok(stream) => break stream,
                Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("process 0 never listened: {e}"),
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(5))).expect("read timeout");
        writeln!(&stream, "{hello}").expect("send hello");
        BufReader::new(stream)
    }

    fn read_message(reader: &mut BufReader<TcpStream>) -> Message {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read a line");
        serde_json::from_str(&line).expect("a control message")
    }

    fn secret(text: &str) -> ClusterSecret {
        ClusterSecret::new(text.as_bytes().to_vec()).expect("a secret")
    }

    /// With a secret, strangers that speak the protocol (a well-formed hello as process 1, a
    /// stop) or garbage are turned away before a message is read; the real processes start,
    /// and nothing was stopped.
    #[test]
    fn with_a_secret_strangers_are_refused_and_the_cluster_starts() {
        let _guard = shared_test();
        let address = free_address();
        let mut configs: Vec<_> = (0..2).map(|p| config(p, 2, &address)).collect();
        for c in &mut configs {
            c.secret = Some(secret("the cluster's own secret"));
        }
        let zero = configs.remove(0);
        let coordinator = thread::spawn(move || ControlPlane::join(zero, || ZERO));
        let hello = format!(r#"{{"type":"hello","process":1,"processes":2,"fingerprint":{PLAN}}}"#);
        let mut strangers = vec![
            raw_follower(&address, &hello),
            raw_follower(&address, r#"{"type":"stop","graceful":false}"#),
            raw_follower(&address, "garbage"),
        ];
        // Each stranger gets the challenge, then the connection closes: no welcome, no abort.
        for stranger in &mut strangers {
            let mut rest = Vec::new();
            let _ = stranger.read_to_end(&mut rest);
            assert!(rest.len() <= 42, "a stranger was told more than the challenge: {rest:?}");
        }
        let follower = ControlPlane::join(configs.remove(0), || ZERO).expect("the real process 1 joins");
        let coordinator = coordinator.join().expect("join thread").expect("process 0 starts");
        for plane in [&coordinator, &follower] {
            assert_eq!(plane.zero_ms(), ZERO);
            assert_eq!(plane.stop_requested(), None);
            assert!(plane.failure().is_none());
        }
    }

    #[test]
    fn a_process_with_another_secret_cannot_join_and_says_why() {
        let _guard = shared_test();
        let address = free_address();
        let mut configs: Vec<_> = (0..2).map(|p| config(p, 2, &address)).collect();
        configs[0].secret = Some(secret("the cluster's own secret"));
        configs[0].start_timeout = Duration::from_secs(2);
        configs[1].secret = Some(secret("a secret of its own!!"));
        let results = join_all(configs);
        match &results[1] {
            Err(ControlError::Protocol(message)) => {
                assert!(
                    message.contains("process 1 cannot join") && message.contains("refused"),
                    "{message}"
                )
            }
            other => panic!("process 1 joined or failed otherwise: {:?}", other.as_ref().map(|_| ())),
        }
        assert!(matches!(&results[0], Err(ControlError::StartTimeout { missing, .. }) if missing == &[1]));
    }

    #[cfg(feature = "tls")]
    fn tls() -> Tls {
        Tls::generate().expect("TLS settings")
    }

    /// With TLS, strangers speaking the plain protocol are turned away, the real processes
    /// join, and messages (a stop from process 2) reach every process.
    #[cfg(feature = "tls")]
    #[test]
    fn with_tls_strangers_are_refused_and_messages_flow() {
        let _guard = shared_test();
        let address = free_address();
        let mut configs: Vec<_> = (0..3).map(|p| config(p, 3, &address)).collect();
        for c in &mut configs {
            c.secret = Some(secret("the cluster's own secret"));
            c.tls = Some(tls());
        }
        let zero = configs.remove(0);
        let coordinator = thread::spawn(move || ControlPlane::join(zero, || ZERO));
        let hello = format!(r#"{{"type":"hello","process":1,"processes":3,"fingerprint":{PLAN}}}"#);
        for line in [hello.as_str(), r#"{"type":"stop","graceful":false}"#, "garbage"] {
            let mut stranger = raw_follower(&address, line);
            let mut rest = Vec::new();
            let _ = stranger.read_to_end(&mut rest);
            // At most a TLS alert: never a message.
            assert!(rest.len() <= 42 && !rest.contains(&b'{'), "a stranger was told {rest:?}");
        }
        let mut planes = vec![coordinator];
        planes.extend(configs.into_iter().map(|c| thread::spawn(move || ControlPlane::join(c, || ZERO))));
        let planes: Vec<ControlPlane> = planes
            .into_iter()
            .map(|t| t.join().expect("join thread").expect("a real process joins"))
            .collect();
        assert!(planes.iter().all(|p| p.zero_ms() == ZERO && p.stop_requested().is_none()));
        planes[2].request_stop(true);
        assert!(wait_for(Duration::from_secs(5), || planes
            .iter()
            .all(|p| p.stop_requested() == Some(true))));
        assert!(planes.iter().all(|p| p.failure().is_none()));
    }

    /// Processes that disagree on TLS fail to start, each saying so.
    #[cfg(feature = "tls")]
    #[test]
    fn processes_that_disagree_on_tls_fail_saying_so() {
        let _guard = shared_test();
        for tls_on_coordinator in [true, false] {
            let address = free_address();
            let mut configs: Vec<_> = (0..2).map(|p| config(p, 2, &address)).collect();
            for c in &mut configs {
                c.secret = Some(secret("the cluster's own secret"));
                c.start_timeout = Duration::from_secs(7);
            }
            configs[if tls_on_coordinator { 0 } else { 1 }].tls = Some(tls());
            let results = join_all(configs);
            let error = match &results[1] {
                Err(e) => e.to_string(),
                Ok(_) => panic!("process 1 joined a cluster that disagrees on TLS"),
            };
            assert!(
                error.contains(transport::TLS_ENV),
                "TLS on process 0: {tls_on_coordinator}: {error}"
            );
            assert!(results[0].is_err());
        }
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn without_the_tls_feature_asking_for_tls_says_so() {
        let error = Tls::generate().unwrap_err();
        assert!(error.contains("built without it") && error.contains("tls"), "{error}");
    }

    #[test]
    fn tls_without_a_secret_is_refused() {
        let mut config = config(0, 2, "127.0.0.1:1");
        let Ok(tls) = Tls::generate() else { return };
        config.tls = Some(tls);
        match ControlPlane::join(config, || ZERO) {
            Err(ControlError::Config(message)) => assert!(message.contains("secret"), "{message}"),
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn a_plane_can_be_polled_from_any_thread() {
        fn shareable<T: Send + Sync>() {}
        shareable::<ControlPlane>();
    }

    #[test]
    fn a_single_process_works_locally() {
        let _guard = shared_test();
        let plane = ControlPlane::join(config(0, 1, "unused:1"), || 42).expect("join");
        assert_eq!(plane.zero_ms(), 42);
        assert_eq!(plane.stop_requested(), None);
        plane.request_stop(true);
        assert_eq!(plane.stop_requested(), Some(true));
        plane.request_stop(false);
        plane.request_stop(true);
        assert_eq!(plane.stop_requested(), Some(false));
        assert_eq!(plane.final_time(), None);
        plane.propose_final_time(7_000);
        assert_eq!(plane.final_time(), Some(7_000));
        assert_eq!(plane.failure(), None);
        plane.finish();
    }

    #[test]
    fn followers_get_process_0s_zero_time_even_when_they_start_late() {
        let _guard = shared_test();
        let address = free_address();
        let started = Instant::now();
        let coordinator = {
            let config = config(0, 3, &address);
            thread::spawn(move || ControlPlane::join(config, move || ZERO + started.elapsed().as_millis() as u64))
        };
        let early = {
            let config = config(1, 3, &address);
            thread::spawn(move || ControlPlane::join(config, || panic!("only process 0 decides the zero time")))
        };
        thread::sleep(Duration::from_secs(1));
        let late = ControlPlane::join(config(2, 3, &address), || panic!("only process 0 decides the zero time")).expect("late join");
        let coordinator = coordinator.join().expect("thread").expect("coordinator join");
        let early = early.join().expect("thread").expect("early join");
        // Decided after everyone joined, so after the late process started.
        assert!(
            coordinator.zero_ms() >= ZERO + 1_000,
            "zero decided too early: {}",
            coordinator.zero_ms()
        );
        assert_eq!(early.zero_ms(), coordinator.zero_ms());
        assert_eq!(late.zero_ms(), coordinator.zero_ms());
    }

    #[test]
    fn a_different_plan_fails_startup_on_every_process() {
        let _guard = shared_test();
        let address = free_address();
        let mut configs: Vec<_> = (0..3).map(|p| config(p, 3, &address)).collect();
        configs[2].fingerprint = 0xdead;
        let expected = ControlError::PlanMismatch {
            process: 2,
            expected: PLAN,
            found: 0xdead,
        };
        for (process, result) in join_all(configs).into_iter().enumerate() {
            assert_eq!(result.as_ref().err(), Some(&expected), "process {process}");
        }
        let message = expected.to_string();
        assert!(message.contains("plans differ") && message.contains("process 2"), "{message}");
        assert!(
            message.contains("0x00000000feedbeef") && message.contains("0x000000000000dead"),
            "{message}"
        );
    }

    #[test]
    fn a_follower_that_never_starts_times_out_process_0() {
        let _guard = shared_test();
        let config = ControlConfig {
            start_timeout: Duration::from_secs(1),
            addresses: vec!["127.0.0.1:2101".into(), "10.1.2.3:2102".into()],
            ..config(0, 2, &free_address())
        };
        let started = Instant::now();
        let error = ControlPlane::join(config, || ZERO).expect_err("process 1 never joins");
        assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
        assert!(
            matches!(&error, ControlError::StartTimeout { missing, .. } if *missing == [1]),
            "{error:?}"
        );
        assert!(error.to_string().contains("process 1 (at 10.1.2.3:2102) did not join"), "{error}");
    }

    #[test]
    fn process_0_that_never_starts_times_out_a_follower() {
        let _guard = shared_test();
        let config = ControlConfig {
            start_timeout: Duration::from_secs(1),
            ..config(1, 2, &free_address())
        };
        let started = Instant::now();
        let coordinator = config.coordinator.clone();
        let error = ControlPlane::join(config, || ZERO).expect_err("process 0 never listens");
        assert!(
            error.to_string().contains(&format!("process 0 (at {coordinator}) did not join")),
            "{error}"
        );
        assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
        assert!(
            matches!(&error, ControlError::StartTimeout { missing, .. } if *missing == [0]),
            "{error:?}"
        );
    }

    #[test]
    fn a_stop_requested_anywhere_reaches_every_process_and_non_graceful_wins() {
        let _guard = shared_test();
        let planes = cluster(3);
        assert!(planes.iter().all(|p| p.stop_requested().is_none()));
        planes[2].request_stop(true);
        assert!(wait_for(Duration::from_secs(5), || planes
            .iter()
            .all(|p| p.stop_requested() == Some(true))));
        planes[1].request_stop(false);
        assert!(wait_for(Duration::from_secs(5), || planes
            .iter()
            .all(|p| p.stop_requested() == Some(false))));
        planes[0].request_stop(true);
        thread::sleep(Duration::from_millis(100));
        assert!(planes.iter().all(|p| p.stop_requested() == Some(false)));
        assert!(planes.iter().all(|p| p.failure().is_none()));
    }

    #[test]
    fn a_process_resuming_from_another_checkpoint_fails_startup_on_every_process() {
        let _guard = shared_test();
        let address = free_address();
        let mut configs: Vec<_> = (0..3).map(|p| config(p, 3, &address)).collect();
        for c in &mut configs {
            c.resume_ms = Some(5_000);
        }
        configs[1].resume_ms = None;
        let expected = ControlError::ResumeMismatch {
            process: 1,
            expected: Some(5_000),
            found: None,
        };
        for (process, result) in join_all(configs).into_iter().enumerate() {
            assert_eq!(result.as_ref().err(), Some(&expected), "process {process}");
        }
        let message = expected.to_string();
        assert!(
            message.contains("process 1 starts fresh") && message.contains("process 0 resumes from the checkpoint of batch 5000 ms"),
            "{message}"
        );
    }

    #[test]
    fn checkpoint_reports_reach_process_0_from_every_process() {
        let _guard = shared_test();
        let planes = cluster(3);
        planes[2].report_checkpoint(2_000, "two".into());
        planes[0].report_checkpoint(2_000, "zero".into());
        planes[1].report_checkpoint(2_000, "one".into());
        let mut reports = Vec::new();
        assert!(wait_for(Duration::from_secs(5), || {
            reports.extend(planes[0].take_checkpoint_reports());
            reports.len() == 3
        }));
        reports.sort_by_key(|r| r.process);
        let said: Vec<(usize, u64, &str)> = reports.iter().map(|r| (r.process, r.time_ms, r.report.as_str())).collect();
        assert_eq!(said, [(0, 2_000, "zero"), (1, 2_000, "one"), (2, 2_000, "two")]);
        assert!(planes[1].take_checkpoint_reports().is_empty(), "a follower keeps no reports");
        assert!(planes[0].take_checkpoint_reports().is_empty(), "taken reports are gone");
    }

    #[test]
    fn the_final_time_is_the_largest_proposal() {
        let _guard = shared_test();
        let planes = cluster(3);
        planes[0].propose_final_time(3_000);
        planes[2].propose_final_time(4_000);
        thread::sleep(Duration::from_millis(100));
        assert!(planes.iter().all(|p| p.final_time().is_none()), "known before process 1 proposed");
        planes[1].propose_final_time(5_000);
        assert!(wait_for(Duration::from_secs(5), || planes
            .iter()
            .all(|p| p.final_time() == Some(5_000))));
    }

    #[test]
    fn a_crashed_follower_is_reported_by_every_survivor() {
        let _guard = shared_test();
        let mut planes = cluster(3);
        planes.pop().expect("process 2").kill();
        let lost_2 = |p: &ControlPlane| matches!(p.failure(), Some(ControlError::PeerLost { process: 2, .. }));
        assert!(
            wait_for(PEER_TIMEOUT + Duration::from_secs(1), || planes.iter().all(lost_2)),
            "{:?}",
            planes
        );
    }

    #[test]
    fn a_crashed_process_0_is_reported_by_every_follower() {
        let _guard = shared_test();
        let mut planes = cluster(3);
        planes.remove(0).kill();
        let lost_0 = |p: &ControlPlane| matches!(p.failure(), Some(ControlError::PeerLost { process: 0, .. }));
        assert!(
            wait_for(PEER_TIMEOUT + Duration::from_secs(1), || planes.iter().all(lost_0)),
            "{:?}",
            planes
        );
    }

    #[test]
    fn a_silent_follower_is_lost_after_the_peer_timeout() {
        let _guard = shared_test();
        let address = free_address();
        let coordinator = {
            let config = config(0, 2, &address);
            thread::spawn(move || ControlPlane::join(config, || ZERO))
        };
        let mut follower = raw_follower(
            &address,
            &format!(r#"{{"type":"hello","process":1,"processes":2,"fingerprint":{PLAN}}}"#),
        );
        assert_eq!(read_message(&mut follower), Message::Welcome { zero_ms: ZERO });
        let plane = coordinator.join().expect("thread").expect("join");
        // The raw follower keeps its socket open but never sends a heartbeat.
        assert!(wait_for(PEER_TIMEOUT + Duration::from_secs(1), || plane.failure().is_some()));
        match plane.failure() {
            Some(ControlError::PeerLost { process: 1, reason }) => assert!(reason.contains("no heartbeat"), "{reason}"),
            other => panic!("unexpected failure {other:?}"),
        }
    }

    #[test]
    fn a_duplicate_process_index_is_a_protocol_error() {
        let _guard = shared_test();
        let address = free_address();
        let coordinator = {
            let config = ControlConfig {
                start_timeout: Duration::from_secs(1),
                ..config(0, 3, &address)
            };
            thread::spawn(move || ControlPlane::join(config, || ZERO))
        };
        let hello = format!(r#"{{"type":"hello","process":1,"processes":3,"fingerprint":{PLAN}}}"#);
        let mut first = raw_follower(&address, &hello);
        thread::sleep(Duration::from_millis(100));
        let mut second = raw_follower(&address, &hello);
        let error = coordinator.join().expect("thread").expect_err("duplicate");
        assert!(
            matches!(&error, ControlError::Protocol(m) if m.contains("process 1 joined twice")),
            "{error:?}"
        );
        assert_eq!(read_message(&mut first), Message::Abort { error: error.clone() });
        assert_eq!(read_message(&mut second), Message::Abort { error });
    }

    #[test]
    fn an_out_of_range_process_index_is_a_protocol_error() {
        let _guard = shared_test();
        let address = free_address();
        let coordinator = {
            let config = ControlConfig {
                start_timeout: Duration::from_secs(1),
                ..config(0, 2, &address)
            };
            thread::spawn(move || ControlPlane::join(config, || ZERO))
        };
        let mut stranger = raw_follower(
            &address,
            &format!(r#"{{"type":"hello","process":7,"processes":2,"fingerprint":{PLAN}}}"#),
        );
        let error = coordinator.join().expect("thread").expect_err("out of range");
        assert!(matches!(&error, ControlError::Protocol(m) if m.contains("process 7")), "{error:?}");
        assert!(matches!(read_message(&mut stranger), Message::Abort { .. }));
    }

    #[test]
    fn a_clean_finish_is_not_a_failure() {
        let _guard = shared_test();
        let mut planes = cluster(3);
        let settle = PEER_TIMEOUT + Duration::from_millis(300);
        planes.pop().expect("process 2").finish();
        thread::sleep(settle);
        assert!(planes.iter().all(|p| p.failure().is_none()), "{planes:?}");
        planes.remove(0).finish();
        thread::sleep(settle);
        assert_eq!(planes[0].failure(), None);
        planes.pop().expect("process 1").finish();
    }

    /// A connected pair: this side's stream adopted by fresh [`Links`] (whose reader feeds the
    /// returned receiver) and the raw peer end.
    fn linked_pair() -> (Links, usize, Receiver<Event>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let ours = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
        let (peer, _) = listener.accept().expect("accept");
        let (events_tx, events) = mpsc::channel();
        let mut links = Links::new(events_tx, &config(0, 2, "127.0.0.1:0"));
        let conn = links.add(Link::Plain(ours)).expect("adopt");
        (links, conn, events, peer)
    }

    /// Process 1's driver over `links`, not running: the test calls its methods.
    fn follower_driver(links: Links, conn: usize, events: Receiver<Event>) -> FollowerDriver {
        FollowerDriver {
            links,
            conn,
            events,
            shared: Arc::new(Shared::default()),
            process: 1,
            heartbeat: Duration::from_millis(50),
            peer_timeout: PEER_TIMEOUT,
            last_heard: Instant::now(),
            open: true,
            coordinator_said_goodbye: false,
            send_failed: None,
        }
    }

    /// The peer says goodbye and closes; returns once a write to it fails.
    fn goodbye_then_failing_send(peer: TcpStream, mut send: impl FnMut()) {
        let mut peer = peer;
        peer.write_all(b"{\"type\":\"goodbye\"}\n").expect("goodbye");
        drop(peer);
        // The first write after the close draws a reset, the next ones fail.
        for _ in 0..5 {
            send();
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// A peer that finishes says goodbye and closes its end; this side's heartbeat may fail
    /// before the reader hands over that goodbye, which must not count as a loss. Both drivers
    /// are driven by hand so that the send fails first every time.
    #[test]
    fn a_send_failing_before_the_peers_goodbye_is_handled_is_not_a_loss() {
        let _guard = shared_test();
        let (links, conn, events, peer) = linked_pair();
        let mut follower = follower_driver(links, conn, events);
        goodbye_then_failing_send(peer, || follower.send(&Message::Heartbeat));
        assert!(follower.send_failed.is_some(), "no send failed; the test did not exercise the race");
        assert_eq!(follower.shared.outcome().failure, None, "a failed send was taken for a loss");
        while let Ok(event) = follower.events.recv_timeout(Duration::from_millis(500)) {
            follower.handle(event);
        }
        assert!(follower.coordinator_said_goodbye);
        assert_eq!(follower.shared.outcome().failure, None);

        let (links, conn, events, peer) = linked_pair();
        let mut coordinator = Coordinator {
            links,
            events,
            shared: Arc::new(Shared::default()),
            peers: BTreeMap::from([(
                conn,
                Follower {
                    process: 1,
                    last_heard: Instant::now(),
                    said_goodbye: false,
                    open: true,
                    send_failed: None,
                    proposal: None,
                },
            )]),
            own_proposal: None,
            stop_sent: STOP_NONE,
            final_sent: false,
            heartbeat: Duration::from_millis(50),
            peer_timeout: PEER_TIMEOUT,
            pending_losses: Vec::new(),
        };
        goodbye_then_failing_send(peer, || {
            coordinator.broadcast(&Message::Heartbeat);
            coordinator.report_losses();
        });
        assert!(
            coordinator.peers[&conn].send_failed.is_some(),
            "no send failed; the test did not exercise the race"
        );
        assert_eq!(coordinator.shared.outcome().failure, None, "a failed send was taken for a loss");
        while let Ok(event) = coordinator.events.recv_timeout(Duration::from_millis(500)) {
            coordinator.handle(event);
            coordinator.report_losses();
        }
        assert!(coordinator.peers[&conn].said_goodbye);
        assert_eq!(coordinator.shared.outcome().failure, None);
    }

    /// Without a goodbye, a failed send is a loss once the reader reports the end, and the
    /// failure is the reason given.
    #[test]
    fn a_failed_send_without_a_goodbye_is_a_loss() {
        let _guard = shared_test();
        let (links, conn, events, peer) = linked_pair();
        let mut follower = follower_driver(links, conn, events);
        drop(peer);
        for _ in 0..5 {
            follower.send(&Message::Heartbeat);
            thread::sleep(Duration::from_millis(20));
        }
        while let Ok(event) = follower.events.recv_timeout(Duration::from_millis(500)) {
            follower.handle(event);
        }
        match follower.shared.outcome().failure.clone() {
            Some(ControlError::PeerLost { process: 0, reason }) => assert!(reason.contains("sending to it failed"), "{reason}"),
            other => panic!("expected the loss of process 0, got {other:?}"),
        }
    }

    #[test]
    fn no_control_thread_outlives_its_plane() {
        let _alone = EXCLUSIVE.write().unwrap_or_else(|e| e.into_inner());
        let gone = || wait_for(Duration::from_secs(2), || control_threads() == 0);
        assert!(gone(), "threads left over by another test");

        let planes = cluster(3);
        assert!(control_threads() >= 3);
        drop(planes);
        assert!(gone(), "{} control threads after drop", control_threads());

        let mut planes = cluster(2);
        planes.pop().expect("process 1").kill();
        drop(planes);
        assert!(gone(), "{} control threads after a crash", control_threads());

        let config = ControlConfig {
            start_timeout: Duration::from_millis(300),
            ..config(0, 2, &free_address())
        };
        let raw = {
            let address = config.coordinator.clone();
            thread::spawn(move || {
                // A different plan: process 0's startup fails while this connection's reader runs.
                let mut follower = raw_follower(&address, r#"{"type":"hello","process":1,"processes":2,"fingerprint":1}"#);
                read_message(&mut follower)
            })
        };
        assert!(ControlPlane::join(config, || ZERO).is_err());
        assert!(matches!(raw.join().expect("raw follower"), Message::Abort { .. }));
        assert!(gone(), "{} control threads after a failed join", control_threads());
    }
}
