//! `socket_text_stream` and `socket_stream`: a receiver that reads lines from a TCP server.
//!
//! A [`Receiver`] like any user's: it connects, reads newline-terminated lines, and stores
//! them a read's worth at a time, as blocks of raw bytes cut at line ends; the workers split
//! and decode the blocks in parallel (see [`crate::lines`]). When the receiver's buffer is full, `store` blocks, the
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
use std::sync::{Arc, Weak};
use std::time::Duration;

use ember_engine::Data;

use crate::context::{ContextInner, StreamingContext};
use crate::dstream::DStream;
use crate::error::Error;
use crate::sources::lines::{
    BadKind, BadRecords, Decoded, LineBlock, LineFramer, LinePosition, LongLinePolicy, decode_block_each, decode_text,
};
use crate::sources::receiver::Weight;
use crate::sources::{Receiver, ReceiverContext};

/// What `socket_text_stream` does with a line that is not valid UTF-8.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Utf8Policy {
    /// Replace invalid bytes with U+FFFD and keep the line (what Java's readers do, and so
    /// Spark); a rate-limited warning names the line and byte offset, and
    /// [`StreamingContext::bad_records`] counts it.
    #[default]
    Lossy,
    /// Drop the line and report an [`Error::Source`] naming the line and byte offset, which
    /// `await_termination` returns (the first ten lines of a source are reported so; later
    /// ones are counted in [`StreamingContext::bad_records`] and summarized in the log).
    Fail,
}

type Decoder<T> = Arc<dyn Fn(&[u8]) -> Decoded<T> + Send + Sync>;

/// How long a blocked read waits before checking for a stop request.
const POLL: Duration = Duration::from_millis(50);
/// The receive buffer a connection starts with; it grows only for a line longer than it.
const READ_BUFFER: usize = 256 << 10;

/// Spark's socket receiver: connects, reads newline-terminated lines until the connection
/// ends, then asks to be restarted (reconnecting after the restart delay). It only frames what
/// it reads into blocks of whole lines; the workers split and decode them.
struct SocketReceiver {
    address: String,
    connections: u64,
    /// Speaks the acknowledgement protocol (see the module docs).
    acknowledged: bool,
    max_line: usize,
    long_lines: LongLinePolicy,
    bad: Arc<BadRecords>,
}

/// A text receiver's blocks count their lines as records and their bytes.
fn weigh_lines(blocks: &[LineBlock]) -> Weight {
    blocks.iter().fold(Weight::default(), |w, b| Weight {
        records: w.records + b.lines as usize,
        bytes: w.bytes + b.bytes.len(),
    })
}

impl Receiver<LineBlock> for SocketReceiver {
    fn on_start(&mut self, ctx: &ReceiverContext<LineBlock>) {
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

impl SocketReceiver {
    /// Reads one connection until it ends, fails, or the receiver is stopped.
    fn read_connection(&self, ctx: &ReceiverContext<LineBlock>, mut stream: TcpStream) -> std::io::Result<()> {
        stream.set_read_timeout(Some(POLL))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        let mut framer = LineFramer::new(self.connections, self.max_line, READ_BUFFER);
        // Lines consumed before this connection (the acknowledged stream's position).
        let base = ctx.position();
        let mut consumed = 0u64;
        loop {
            if ctx.is_stopped() {
                self.finish(ctx, &mut framer);
                return Ok(());
            }
            match stream.read(framer.spare()) {
                Ok(0) => {
                    self.finish(ctx, &mut framer);
                    return Ok(());
                }
                Ok(n) => {
                    let mut framed = framer.filled(n);
                    let failure = self.report_long_lines(&framed.too_long);
                    if let Some((line, _)) = &failure {
                        // The stream ends before the line: what follows it is not taken.
                        framed.blocks.retain(|b| b.first_line < *line);
                        framed.lines_consumed = (line - 1).saturating_sub(consumed);
                    }
                    consumed += framed.lines_consumed;
                    self.store(ctx, framed.blocks, base, consumed, framed.lines_consumed);
                    if self.acknowledged && framed.lines_consumed > 0 {
                        writeln!(stream, "EMBER-ACK {}", ctx.position())?;
                    }
                    if let Some((_, reason)) = failure {
                        ctx.report_error(reason.clone());
                        ctx.stop(reason);
                        return Ok(());
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(e) => {
                    self.finish(ctx, &mut framer);
                    return Err(e);
                }
            }
        }
    }

    /// Stores the blocks of one read. Under a rate limit they go in slices of about a tenth
    /// of a second of lines, so that pacing stays smooth. The acknowledged stream stores each
    /// slice with its position (`base` plus the connection's lines through the slice's last)
    /// and, when a read only skipped lines, the position alone.
    fn store(&self, ctx: &ReceiverContext<LineBlock>, blocks: Vec<LineBlock>, base: u64, consumed: u64, read_lines: u64) {
        let at = |position: u64| self.acknowledged.then_some(position);
        let Some(rate) = ctx.rate() else {
            if !blocks.is_empty() || (self.acknowledged && read_lines > 0) {
                ctx.store_weighed(blocks, at(base + consumed));
            }
            return;
        };
        let slice = ((rate / 10.0) as u32).max(1);
        for piece in blocks.into_iter().flat_map(|b| b.split_lines(slice)) {
            let last_line = piece.first_line + u64::from(piece.lines) - 1;
            ctx.store_weighed(vec![piece], at(base + last_line));
        }
        if self.acknowledged && ctx.position() < base + consumed {
            ctx.store_weighed(Vec::new(), at(base + consumed));
        }
    }

    /// Counts and warns about over-long lines; under [`LongLinePolicy::Fail`], returns the
    /// first one's number and the error that stops the receiver.
    fn report_long_lines(&self, lines: &[crate::sources::lines::LongLine]) -> Option<(u64, String)> {
        for line in lines {
            let position = LinePosition {
                connection: self.connections,
                line: line.line,
                offset: line.offset,
            };
            let message = format!(
                "a line longer than the limit of {} bytes (at least {} bytes)",
                self.max_line, line.length
            );
            self.bad.record(BadKind::TooLong, &position, &message);
            if self.long_lines == LongLinePolicy::Fail {
                return Some((
                    line.line,
                    format!("{position}: {message}; the receiver stopped (long_line_policy is Fail)"),
                ));
            }
        }
        None
    }

    /// Stores a final line without a newline (end of stream, failure or stop); an acknowledged
    /// stream leaves it to the sender to send again.
    fn finish(&self, ctx: &ReceiverContext<LineBlock>, framer: &mut LineFramer) {
        let last = framer.finish();
        if let Some(block) = last
            && !self.acknowledged
        {
            ctx.store_weighed(vec![block], None);
        }
    }
}

/// Splits and decodes the line blocks each worker is given, in parallel: the second half of
/// a text receiver, run inside the stream's consumer when it takes chains. Bad lines are
/// counted and warned about through `bad`; a rejected line is also reported to
/// `await_termination` (the first ten of a source).
fn decode_lines<T: Data>(
    source: &str,
    decoder: &Decoder<T>,
    bad: &Arc<BadRecords>,
    ctx: &Weak<ContextInner>,
) -> impl Fn(LineBlock, &mut dyn FnMut(T)) + Send + Sync + 'static {
    let (decoder, bad, ctx) = (Arc::clone(decoder), Arc::clone(bad), ctx.clone());
    let source = source.to_owned();
    move |block: LineBlock, out: &mut dyn FnMut(T)| {
        decode_block_each(&block, &*decoder, out, |position, kind, message| {
            let one_by_one = bad.record(kind, &position, &message);
            if kind == BadKind::Rejected
                && one_by_one
                && let Some(ctx) = ctx.upgrade()
            {
                ctx.report_source_error(Error::Source {
                    source_name: source.clone(),
                    message: format!("{position}: {message}; the line was skipped"),
                });
            }
        });
    }
}

impl StreamingContext {
    /// A stream of the text lines a TCP server at `host:port` sends (Spark's
    /// `socketTextStream`). Invalid UTF-8 is decoded lossily, with a warning; see
    /// [`StreamingContext::socket_text_stream_with`] for the strict policy.
    ///
    /// The receiver thread only frames what it reads into blocks of whole lines; the workers
    /// split and decode the blocks in parallel. A line longer than
    /// [`StreamingContextBuilder::max_line_bytes`](crate::StreamingContextBuilder::max_line_bytes)
    /// is skipped (or stops the stream, by
    /// [`StreamingContextBuilder::long_line_policy`](crate::StreamingContextBuilder::long_line_policy)).
    pub fn socket_text_stream(&self, host: &str, port: u16) -> DStream<String> {
        self.socket_text_stream_with(host, port, Utf8Policy::Lossy)
    }

    /// [`StreamingContext::socket_text_stream`] with an explicit policy for invalid UTF-8.
    pub fn socket_text_stream_with(&self, host: &str, port: u16, policy: Utf8Policy) -> DStream<String> {
        let strict = policy == Utf8Policy::Fail;
        let decoder: Decoder<String> = Arc::new(move |line: &[u8]| decode_text(line, strict));
        self.socket_lines(format!("socket_text_stream({host}:{port})"), host, port, false, decoder)
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
        let decoder: Decoder<String> = Arc::new(move |line: &[u8]| decode_text(line, false));
        self.socket_lines(format!("socket_text_stream_acknowledged({host}:{port})"), host, port, true, decoder)
    }

    /// A stream of records decoded with `decoder` from the lines (newline-terminated, a
    /// trailing `\r` removed) a TCP server sends (Spark's `socketStream` with a converter).
    /// The decoder runs on the workers, in parallel. A line the decoder rejects is skipped,
    /// counted in [`StreamingContext::bad_records`], and reported as an [`Error::Source`]
    /// naming its position (the first ten of the stream; later ones are summarized in the log).
    pub fn socket_stream<T: Data, F>(&self, host: &str, port: u16, decoder: F) -> DStream<T>
    where
        F: Fn(&[u8]) -> std::result::Result<T, String> + Send + Sync + 'static,
    {
        let decoder: Decoder<T> = Arc::new(move |line: &[u8]| match decoder(line) {
            Ok(record) => Decoded::Record(record),
            Err(message) => Decoded::Rejected(message),
        });
        self.socket_lines(format!("socket_stream({host}:{port})"), host, port, false, decoder)
    }

    fn socket_lines<T: Data>(&self, name: String, host: &str, port: u16, acknowledged: bool, decoder: Decoder<T>) -> DStream<T> {
        let inner = self.inner();
        let settings = inner.receiver_settings();
        let bad = inner.add_bad_records(&name);
        let receiver = SocketReceiver {
            address: format!("{host}:{port}"),
            connections: 0,
            acknowledged,
            max_line: settings.max_line_bytes,
            long_lines: settings.long_lines,
            bad: Arc::clone(&bad),
        };
        let ctx = Arc::downgrade(inner);
        let label = "socket_text_stream";
        // Errors name the stream (`socket_stream(host:port)`), as the receiver's own do.
        let source = name.clone();
        let step = decode_lines(&source, &decoder, &bad, &ctx);
        self.receiver_stream_decoded(name, label, Box::new(receiver), weigh_lines, step)
    }
}

/// Spark's `socketStream` with a converter: a receiver that hands the whole connection to a
/// user function turning bytes into records.
struct ConverterReceiver<T, F> {
    address: String,
    converter: Arc<F>,
    _records: std::marker::PhantomData<fn() -> T>,
}

impl<T, I, F> Receiver<T> for ConverterReceiver<T, F>
where
    T: Data,
    I: IntoIterator<Item = T>,
    F: Fn(Box<dyn Read + Send>) -> I + Send + Sync + 'static,
{
    fn on_start(&mut self, ctx: &ReceiverContext<T>) {
        let stream = match TcpStream::connect(&self.address) {
            Ok(stream) => stream,
            Err(e) => return ctx.restart(format!("cannot connect to {}: {e}", self.address)),
        };
        // The converter blocks in reads it does not know how to interrupt: a watcher shuts the
        // connection down once the receiver is stopped, which ends those reads.
        let watched = match stream.try_clone() {
            Ok(watched) => watched,
            Err(e) => return ctx.restart(format!("cannot watch the connection to {}: {e}", self.address)),
        };
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let (ctx, done) = (ctx.clone(), Arc::clone(&done));
            std::thread::Builder::new().name("ember-socket-watch".into()).spawn(move || {
                while !ctx.is_stopped() && !done.load(std::sync::atomic::Ordering::Acquire) {
                    std::thread::sleep(POLL);
                }
                let _ = watched.shutdown(std::net::Shutdown::Both);
            })
        };
        for record in (self.converter)(Box::new(std::io::BufReader::new(stream))) {
            if ctx.is_stopped() {
                break;
            }
            ctx.store(record);
        }
        done.store(true, std::sync::atomic::Ordering::Release);
        if let Ok(watcher) = watcher {
            let _ = watcher.join();
        }
        if !ctx.is_stopped() {
            // As Spark: the end of the converter's records is the end of the connection.
            ctx.restart(format!("{} closed the connection or the converter ended", self.address));
        }
    }
}

impl StreamingContext {
    /// A stream of the records `converter` makes from the bytes a TCP server at `host:port`
    /// sends (Spark's `socketStream(hostname, port, converter, storageLevel)`): the converter
    /// gets the connection (buffered) as a [`Read`] it owns and returns the records, lazily, as
    /// it reads (an iterator that owns the reader); each is
    /// stored as it comes. When its records end (usually at the end of the connection), the
    /// receiver reconnects after the restart delay, as Spark's does. A panic in the converter
    /// restarts the receiver too, and counts as a failure
    /// ([`StreamingContextBuilder::receiver_max_failed_restarts`](crate::StreamingContextBuilder::receiver_max_failed_restarts)).
    ///
    /// The converter runs on the receiver's thread, so it decodes on one core; for text lines,
    /// [`StreamingContext::socket_text_stream`] and [`StreamingContext::socket_stream`] decode
    /// on the workers in parallel.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::io::Read;
    /// use ember::prelude::*;
    ///
    /// # fn main() -> ember::Result<()> {
    /// let ssc = StreamingContext::new(seconds(1))?;
    /// // Big-endian u32s, four bytes each.
    /// let numbers = ssc.socket_stream_converted("localhost", 9999, |mut input: Box<dyn Read + Send>| {
    ///     std::iter::from_fn(move || {
    ///         let mut bytes = [0u8; 4];
    ///         input.read_exact(&mut bytes).ok().map(|()| u32::from_be_bytes(bytes))
    ///     })
    /// });
    /// numbers.count().print()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn socket_stream_converted<T, I, F>(&self, host: &str, port: u16, converter: F) -> DStream<T>
    where
        T: Data,
        I: IntoIterator<Item = T>,
        F: Fn(Box<dyn Read + Send>) -> I + Send + Sync + 'static,
    {
        let receiver = ConverterReceiver {
            address: format!("{host}:{port}"),
            converter: Arc::new(converter),
            _records: std::marker::PhantomData,
        };
        self.receiver_stream_named(format!("socket_stream({host}:{port})"), "socket_stream", Box::new(receiver))
    }
}
