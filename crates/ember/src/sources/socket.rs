//! `socket_text_stream` and `socket_stream`: a receiver that reads lines from a TCP server.
//!
//! The receiver runs on its own thread (on the process that hosts worker 0). It connects,
//! reads newline-terminated lines, and hands them to the source in blocks through a bounded
//! channel; when the channel is full it stops reading, so TCP slows the sender down instead of
//! memory growing. When the connection is refused or drops, it reconnects after a delay, as
//! Spark's receiver is restarted.

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ember_engine::ops::batch_source;
use ember_engine::{Data, Msg};

use crate::context::{ContextInner, ReceiverHost, StreamingContext};
use crate::dstream::build_fn as source_build_fn;
use crate::dstream::{DStream, spread};
use crate::error::{Error, Result};
use crate::sources::partition_msgs;

/// What `socket_text_stream` does with a line that is not valid UTF-8.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Utf8Policy {
    /// Replace invalid bytes with U+FFFD and keep the line (what Java's readers do, and so
    /// Spark); a warning names the line and byte offset.
    #[default]
    Lossy,
    /// Drop the line and report an [`Error::Source`] naming the line and byte offset, which
    /// `await_termination` returns.
    Fail,
}

type Decoder<T> = Arc<dyn Fn(&[u8]) -> std::result::Result<T, String> + Send + Sync>;

/// Blocks of records waiting for the source; bounded so a slow engine slows the sender.
const CHANNEL_BLOCKS: usize = 64;
/// How long a blocked read or send waits before checking for a stop request.
const POLL: Duration = Duration::from_millis(50);

struct SocketReceiver<T> {
    name: String,
    address: String,
    decoder: Decoder<T>,
    reconnect_delay: Duration,
    slot: Arc<Mutex<Option<Receiver<Vec<T>>>>>,
    stop: Arc<AtomicBool>,
}

impl<T: Data> ReceiverHost for SocketReceiver<T> {
    fn start(&self, ctx: Arc<ContextInner>) -> Result<JoinHandle<()>> {
        let (tx, rx) = sync_channel(CHANNEL_BLOCKS);
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(rx);
        let worker = SocketWorker {
            name: self.name.clone(),
            address: self.address.clone(),
            decoder: Arc::clone(&self.decoder),
            reconnect_delay: self.reconnect_delay,
            stop: Arc::clone(&self.stop),
            tx,
            ctx,
        };
        std::thread::Builder::new()
            .name(format!("ember-receiver-{}", self.address))
            .spawn(move || worker.run())
            .map_err(|e| Error::Io {
                context: format!("cannot start the receiver thread of {}", self.name),
                source: e,
            })
    }

    fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
    }
}

struct SocketWorker<T> {
    name: String,
    address: String,
    decoder: Decoder<T>,
    reconnect_delay: Duration,
    stop: Arc<AtomicBool>,
    tx: SyncSender<Vec<T>>,
    ctx: Arc<ContextInner>,
}

/// Where a line came from, for error messages.
struct Position {
    connection: u64,
    line: u64,
    offset: u64,
}

impl<T: Data> SocketWorker<T> {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn run(self) {
        let mut connection = 0u64;
        while !self.stopping() {
            match TcpStream::connect(&self.address) {
                Ok(stream) => {
                    connection += 1;
                    tracing::info!(source = %self.name, connection, "Receiver connected.");
                    match self.read_connection(stream, connection) {
                        Ok(()) if self.stopping() => break,
                        Ok(()) => tracing::warn!(source = %self.name, "The server closed the connection; reconnecting."),
                        Err(e) => tracing::warn!(source = %self.name, error = %e, "The connection failed; reconnecting."),
                    }
                }
                Err(e) => {
                    tracing::warn!(source = %self.name, error = %e, delay_ms = self.reconnect_delay.as_millis() as u64, "Cannot connect; retrying.")
                }
            }
            let wake = Instant::now() + self.reconnect_delay;
            while !self.stopping() && Instant::now() < wake {
                std::thread::sleep(POLL.min(self.reconnect_delay));
            }
        }
    }

    /// Reads one connection until it ends, fails, or a stop is requested.
    fn read_connection(&self, mut stream: TcpStream, connection: u64) -> std::io::Result<()> {
        stream.set_read_timeout(Some(POLL))?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut filled = 0usize;
        let mut pos = Position {
            connection,
            line: 0,
            offset: 0,
        };
        loop {
            if self.stopping() {
                self.flush_partial(&buf[..filled], &mut pos);
                return Ok(());
            }
            if filled == buf.len() {
                // A line longer than the buffer: grow it rather than split the line.
                buf.resize(buf.len() * 2, 0);
            }
            match stream.read(&mut buf[filled..]) {
                Ok(0) => {
                    self.flush_partial(&buf[..filled], &mut pos);
                    return Ok(());
                }
                Ok(n) => {
                    filled += n;
                    let consumed = self.emit_lines(&buf[..filled], &mut pos);
                    buf.copy_within(consumed..filled, 0);
                    filled -= consumed;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(e) => {
                    self.flush_partial(&buf[..filled], &mut pos);
                    return Err(e);
                }
            }
        }
    }

    /// Decodes and sends every complete line of `data`; returns the bytes consumed.
    fn emit_lines(&self, data: &[u8], pos: &mut Position) -> usize {
        let mut block = Vec::new();
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', data) {
            self.decode_into(&data[start..end], pos, &mut block);
            pos.offset += (end + 1 - start) as u64;
            start = end + 1;
        }
        self.send(block);
        start
    }

    /// Hands over a final line without a newline (end of stream, failure or stop).
    fn flush_partial(&self, data: &[u8], pos: &mut Position) {
        if data.is_empty() {
            return;
        }
        let mut block = Vec::new();
        self.decode_into(data, pos, &mut block);
        self.send(block);
    }

    fn decode_into(&self, line: &[u8], pos: &mut Position, block: &mut Vec<T>) {
        pos.line += 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match (self.decoder)(line) {
            Ok(record) => block.push(record),
            Err(message) => self.ctx.report_source_error(Error::Source {
                source_name: self.name.clone(),
                message: format!(
                    "line {} (byte offset {}) of connection {}: {message}; the line was skipped",
                    pos.line, pos.offset, pos.connection
                ),
            }),
        }
    }

    /// Sends a block, waiting while the channel is full (backpressure); gives up only when
    /// the source is gone.
    fn send(&self, block: Vec<T>) {
        if block.is_empty() {
            return;
        }
        let mut block = block;
        loop {
            match self.tx.try_send(block) {
                Ok(()) => return,
                Err(TrySendError::Full(b)) => {
                    block = b;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(TrySendError::Disconnected(b)) => {
                    tracing::error!(source = %self.name, records = b.len(), "The source is gone; received records cannot be delivered.");
                    return;
                }
            }
        }
    }
}

impl StreamingContext {
    /// A stream of the text lines a TCP server at `host:port` sends (Spark's
    /// `socketTextStream`). Invalid UTF-8 is decoded lossily, with a warning; see
    /// [`StreamingContext::socket_text_stream_with`] for the strict policy.
    pub fn socket_text_stream(&self, host: &str, port: u16) -> DStream<String> {
        self.socket_text_stream_with(host, port, Utf8Policy::Lossy)
    }

    /// [`StreamingContext::socket_text_stream`] with an explicit policy for invalid UTF-8.
    pub fn socket_text_stream_with(&self, host: &str, port: u16, policy: Utf8Policy) -> DStream<String> {
        let name = format!("socket_text_stream({host}:{port})");
        let warn_name = name.clone();
        self.socket_stream_named(name, host, port, move |line: &[u8]| match std::str::from_utf8(line) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => match policy {
                Utf8Policy::Lossy => {
                    tracing::warn!(source = %warn_name, error = %e, "A line is not valid UTF-8; invalid bytes were replaced with U+FFFD.");
                    Ok(String::from_utf8_lossy(line).into_owned())
                }
                Utf8Policy::Fail => Err(format!("not valid UTF-8: {e}")),
            },
        })
    }

    /// A stream of records decoded with `decoder` from the lines (newline-terminated, a
    /// trailing `\r` removed) a TCP server sends (Spark's `socketStream` with a converter).
    /// A line the decoder rejects is skipped and reported as an [`Error::Source`] naming its
    /// position.
    pub fn socket_stream<T: Data, F>(&self, host: &str, port: u16, decoder: F) -> DStream<T>
    where
        F: Fn(&[u8]) -> std::result::Result<T, String> + Send + Sync + 'static,
    {
        self.socket_stream_named(format!("socket_stream({host}:{port})"), host, port, decoder)
    }

    fn socket_stream_named<T: Data, F>(&self, name: String, host: &str, port: u16, decoder: F) -> DStream<T>
    where
        F: Fn(&[u8]) -> std::result::Result<T, String> + Send + Sync + 'static,
    {
        let slot: Arc<Mutex<Option<Receiver<Vec<T>>>>> = Arc::new(Mutex::new(None));
        self.inner().add_receiver(Arc::new(SocketReceiver {
            name,
            address: format!("{host}:{port}"),
            decoder: Arc::new(decoder),
            reconnect_delay: Duration::from_millis(200),
            slot: Arc::clone(&slot),
            stop: Arc::new(AtomicBool::new(false)),
        }));
        self.source("socket_text_stream", move |label| {
            source_build_fn(move |c| {
                // Only worker 0 reads the receiver's channel; the others produce nothing.
                let rx = if c.env.index == 0 {
                    slot.lock().unwrap_or_else(|e| e.into_inner()).take()
                } else {
                    None
                };
                let stream = batch_source(c, &label, true, move |_batch| -> Vec<Msg<T>> {
                    let Some(rx) = rx.as_ref() else { return Vec::new() };
                    partition_msgs(rx.try_iter().collect())
                });
                spread(c, stream)
            })
        })
    }
}
