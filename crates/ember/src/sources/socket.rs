//! `socket_text_stream` and `socket_stream`: a receiver that reads lines from a TCP server.
//!
//! A [`Receiver`] like any user's: it connects, reads newline-terminated lines, and stores
//! them a read's worth at a time. When the receiver's buffer is full, `store` blocks, the
//! receiver stops reading, and TCP slows the sender down instead of memory growing. When the
//! connection is refused or drops, the receiver restarts (reconnects) after the context's
//! restart delay, as Spark's does.
//!
//! Spark's socket source is unreliable: lines in flight on the connection, or read but not yet
//! stored, are lost in a crash. ember's acknowledged socket stream
//! ([`StreamingContext::socket_text_stream_acknowledged`]) is not. It speaks a small protocol
//! on the same connection, for senders that keep what they sent until it is acknowledged:
//!
//! ```text
//! receiver -> sender, once connected:    EMBER-RESUME <n>\n   send from line n (0-based)
//! sender -> receiver:                    lines, each ending in \n
//! receiver -> sender, after each store:  EMBER-ACK <n>\n      lines 0..n are stored
//! ```
//!
//! `n` counts lines consumed (skipped ones too), over every connection and, with the
//! write-ahead log, across crashes: each stored block is logged with the count after it, in one
//! durable frame, so a recovered receiver asks for exactly the lines that did not survive. A
//! line without its newline when the connection ends is not stored; the sender sends it again.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use ember_engine::Data;

use crate::context::StreamingContext;
use crate::dstream::DStream;
use crate::sources::{Receiver, ReceiverContext};

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

/// How long a blocked read waits before checking for a stop request.
const POLL: Duration = Duration::from_millis(50);

/// Spark's socket receiver: connects, reads newline-terminated lines until the connection
/// ends, then asks to be restarted (reconnecting after the restart delay).
struct SocketReceiver<T> {
    address: String,
    decoder: Decoder<T>,
    connections: u64,
    /// Speaks the acknowledgement protocol (see the module docs).
    acknowledged: bool,
}

/// Where a line came from, for error messages.
struct Position {
    connection: u64,
    line: u64,
    offset: u64,
}

impl<T: Data> Receiver<T> for SocketReceiver<T> {
    fn on_start(&mut self, ctx: &ReceiverContext<T>) {
        match TcpStream::connect(&self.address) {
            Ok(mut stream) => {
                self.connections += 1;
                tracing::info!(source = %ctx.name(), connection = self.connections, "Receiver connected.");
                if self.acknowledged {
                    if !ctx.position_is_durable() {
                        ctx.report_error(
                            "an acknowledged socket stream in a job with a checkpoint directory needs the write-ahead log \
                             (StreamingContextBuilder::write_ahead_log(true)): without it, lines acknowledged to the sender \
                             would be lost in a crash; the receiver stopped",
                        );
                        ctx.stop("the write-ahead log is off");
                        return;
                    }
                    if let Err(e) = writeln!(stream, "EMBER-RESUME {}", ctx.position()) {
                        ctx.restart(format!("cannot write to {}: {e}", self.address));
                        return;
                    }
                }
                match self.read_connection(ctx, stream) {
                    Ok(()) if ctx.is_stopped() => {}
                    Ok(()) => ctx.restart(format!("{} closed the connection", self.address)),
                    Err(e) => ctx.restart(format!("the connection to {} failed: {e}", self.address)),
                }
            }
            Err(e) => ctx.restart(format!("cannot connect to {}: {e}", self.address)),
        }
    }
}

impl<T: Data> SocketReceiver<T> {
    /// Reads one connection until it ends, fails, or the receiver is stopped.
    fn read_connection(&self, ctx: &ReceiverContext<T>, mut stream: TcpStream) -> std::io::Result<()> {
        stream.set_read_timeout(Some(POLL))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut filled = 0usize;
        let mut pos = Position {
            connection: self.connections,
            line: 0,
            offset: 0,
        };
        loop {
            if ctx.is_stopped() {
                self.flush_partial(ctx, &buf[..filled], &mut pos);
                return Ok(());
            }
            if filled == buf.len() {
                // A line longer than the buffer: grow it rather than split the line.
                buf.resize(buf.len() * 2, 0);
            }
            match stream.read(&mut buf[filled..]) {
                Ok(0) => {
                    self.flush_partial(ctx, &buf[..filled], &mut pos);
                    return Ok(());
                }
                Ok(n) => {
                    filled += n;
                    let consumed = self.emit_lines(ctx, &buf[..filled], &mut pos);
                    buf.copy_within(consumed..filled, 0);
                    filled -= consumed;
                    if self.acknowledged && consumed > 0 {
                        writeln!(stream, "EMBER-ACK {}", ctx.position())?;
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(e) => {
                    self.flush_partial(ctx, &buf[..filled], &mut pos);
                    return Err(e);
                }
            }
        }
    }

    /// Decodes and stores every complete line of `data`; returns the bytes consumed.
    fn emit_lines(&self, ctx: &ReceiverContext<T>, data: &[u8], pos: &mut Position) -> usize {
        let mut block = Vec::new();
        let mut start = 0;
        let mut lines = 0;
        for end in memchr::memchr_iter(b'\n', data) {
            self.decode_into(ctx, &data[start..end], pos, &mut block);
            pos.offset += (end + 1 - start) as u64;
            start = end + 1;
            lines += 1;
        }
        if self.acknowledged {
            if lines > 0 {
                ctx.store_many_at(block, ctx.position() + lines);
            }
        } else {
            ctx.store_many(block);
        }
        start
    }

    /// Stores a final line without a newline (end of stream, failure or stop); an acknowledged
    /// stream leaves it to the sender to send again.
    fn flush_partial(&self, ctx: &ReceiverContext<T>, data: &[u8], pos: &mut Position) {
        if data.is_empty() || self.acknowledged {
            return;
        }
        let mut block = Vec::new();
        self.decode_into(ctx, data, pos, &mut block);
        ctx.store_many(block);
    }

    fn decode_into(&self, ctx: &ReceiverContext<T>, line: &[u8], pos: &mut Position, block: &mut Vec<T>) {
        pos.line += 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match (self.decoder)(line) {
            Ok(record) => block.push(record),
            Err(message) => ctx.report_error(format!(
                "line {} (byte offset {}) of connection {}: {message}; the line was skipped",
                pos.line, pos.offset, pos.connection
            )),
        }
    }
}

/// A line decoded as UTF-8, invalid bytes replaced with U+FFFD (with a warning).
fn lossy_utf8(source: &str, line: &[u8]) -> String {
    match std::str::from_utf8(line) {
        Ok(s) => s.to_owned(),
        Err(e) => {
            tracing::warn!(source = %source, error = %e, "A line is not valid UTF-8; invalid bytes were replaced with U+FFFD.");
            String::from_utf8_lossy(line).into_owned()
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
        self.socket_stream_named(name, host, port, move |line: &[u8]| match (std::str::from_utf8(line), policy) {
            (Ok(s), _) => Ok(s.to_owned()),
            (Err(_), Utf8Policy::Lossy) => Ok(lossy_utf8(&warn_name, line)),
            (Err(e), Utf8Policy::Fail) => Err(format!("not valid UTF-8: {e}")),
        })
    }

    /// [`StreamingContext::socket_text_stream`] over ember's acknowledgement protocol: the
    /// receiver tells the sender where to resume and acknowledges every stored block, so that
    /// with the write-ahead log on
    /// ([`StreamingContextBuilder::write_ahead_log`](crate::StreamingContextBuilder::write_ahead_log))
    /// no line is lost or counted twice across a dropped connection or a crash and
    /// `get_or_create`. An ember extension: Spark's socket source cannot acknowledge. In a job
    /// with a checkpoint directory the write-ahead log is required; without it the receiver
    /// stops with an error.
    ///
    /// The sender keeps what it sent until it is acknowledged, and speaks this on the
    /// connection:
    ///
    /// ```text
    /// receiver -> sender, once connected:    EMBER-RESUME <n>\n   send from line n (0-based)
    /// sender -> receiver:                    lines, each ending in \n
    /// receiver -> sender, after each store:  EMBER-ACK <n>\n      lines 0..n are stored
    /// ```
    ///
    /// `n` counts lines consumed (lines the receiver skipped too), over every connection and,
    /// with the write-ahead log, across crashes. A line without its newline when the connection
    /// ends is not stored: the sender sends it again.
    pub fn socket_text_stream_acknowledged(&self, host: &str, port: u16) -> DStream<String> {
        let name = format!("socket_text_stream_acknowledged({host}:{port})");
        let warn_name = name.clone();
        let receiver = SocketReceiver {
            address: format!("{host}:{port}"),
            decoder: Arc::new(move |line: &[u8]| Ok(lossy_utf8(&warn_name, line))),
            connections: 0,
            acknowledged: true,
        };
        self.receiver_stream_named(name, "socket_text_stream", Box::new(receiver))
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
        let receiver = SocketReceiver {
            address: format!("{host}:{port}"),
            decoder: Arc::new(decoder),
            connections: 0,
            acknowledged: false,
        };
        self.receiver_stream_named(name, "socket_text_stream", Box::new(receiver))
    }
}
