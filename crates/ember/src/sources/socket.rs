//! `socket_text_stream` and `socket_stream`: a receiver that reads lines from a TCP server.
//!
//! A [`Receiver`] like any user's: it connects, reads newline-terminated lines, and stores
//! them a read's worth at a time. When the receiver's buffer is full, `store` blocks, the
//! receiver stops reading, and TCP slows the sender down instead of memory growing. When the
//! connection is refused or drops, the receiver restarts (reconnects) after the context's
//! restart delay, as Spark's does.

use std::io::{ErrorKind, Read};
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
            Ok(stream) => {
                self.connections += 1;
                tracing::info!(source = %ctx.name(), connection = self.connections, "Receiver connected.");
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
        for end in memchr::memchr_iter(b'\n', data) {
            self.decode_into(ctx, &data[start..end], pos, &mut block);
            pos.offset += (end + 1 - start) as u64;
            start = end + 1;
        }
        ctx.store_many(block);
        start
    }

    /// Stores a final line without a newline (end of stream, failure or stop).
    fn flush_partial(&self, ctx: &ReceiverContext<T>, data: &[u8], pos: &mut Position) {
        if data.is_empty() {
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
        let receiver = SocketReceiver {
            address: format!("{host}:{port}"),
            decoder: Arc::new(decoder),
            connections: 0,
        };
        self.receiver_stream_named(name, "socket_text_stream", Box::new(receiver))
    }
}
