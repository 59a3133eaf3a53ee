//! Text receivers' line handling, split across threads: the receiver thread only frames what it
//! reads into line-aligned byte blocks ([`LineFramer`]); the workers split and decode those
//! blocks in parallel ([`decode_block`]). Bad lines are counted and reported through
//! [`BadRecords`], whose warnings are rate-limited.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Whole lines of one connection, as read: each ends in `\n`, except a final line that the
/// connection ended without one. The unit a text receiver stores and a worker decodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineBlock {
    /// The lines' bytes, newlines included.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
    /// How many lines `bytes` holds.
    pub lines: u32,
    /// Which connection of the receiver the lines came from (1 = the first).
    pub connection: u64,
    /// The number of the first line in its connection (1 = the first line).
    pub first_line: u64,
    /// The byte offset of the first line in its connection.
    pub offset: u64,
}

impl LineBlock {
    /// Cuts the block into blocks of at most `n` lines (at least one), each holding only its
    /// own bytes.
    pub fn split_lines(self, n: u32) -> Vec<LineBlock> {
        let n = n.max(1);
        if self.lines <= n {
            return vec![self];
        }
        let mut pieces = Vec::with_capacity((self.lines / n + 1) as usize);
        let (mut start, mut lines, mut first_line) = (0usize, 0u32, self.first_line);
        let mut cut = |end: usize, lines: u32, first_line: u64, pieces: &mut Vec<LineBlock>| {
            pieces.push(LineBlock {
                bytes: self.bytes[start..end].to_vec(),
                lines,
                connection: self.connection,
                first_line,
                offset: self.offset + start as u64,
            });
            start = end;
        };
        for newline in memchr::memchr_iter(b'\n', &self.bytes) {
            lines += 1;
            if lines == n {
                cut(newline + 1, lines, first_line, &mut pieces);
                first_line += u64::from(lines);
                lines = 0;
            }
        }
        let rest = self.lines - (first_line - self.first_line) as u32;
        if rest > 0 {
            cut(self.bytes.len(), rest, first_line, &mut pieces);
        }
        pieces
    }
}

/// What a text source does with a line longer than its limit
/// ([`StreamingContextBuilder::max_line_bytes`](crate::StreamingContextBuilder::max_line_bytes)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LongLinePolicy {
    /// Skip the line (its bytes are read and dropped as they arrive, never held), count it and
    /// warn; the stream goes on.
    #[default]
    Skip,
    /// Skip the line and stop the source with an [`Error::Source`](crate::Error::Source)
    /// naming it, which `await_termination` returns.
    Fail,
}

/// A line over the limit, found while framing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LongLine {
    /// Its number in the connection (1 = the first line).
    pub line: u64,
    /// The byte offset where it starts.
    pub offset: u64,
    /// Its length so far: all of it when its newline was seen, else the bytes held when it
    /// crossed the limit.
    pub length: u64,
}

/// What one call of [`LineFramer::filled`] produced.
#[derive(Debug, Default)]
pub struct Framed {
    /// Blocks of complete lines within the limit, in order.
    pub blocks: Vec<LineBlock>,
    /// Lines finished by this read: those in `blocks` and skipped over-long ones.
    pub lines_consumed: u64,
    /// Over-long lines found by this read.
    pub too_long: Vec<LongLine>,
}

/// Frames a byte stream into [`LineBlock`]s, reading into one reused buffer. Bytes of a line not
/// finished yet stay in the buffer; a line that grows past `max_line` bytes is dropped as it
/// arrives, so memory stays under about `max_line` plus one read.
#[derive(Debug)]
pub struct LineFramer {
    buf: Vec<u8>,
    /// `buf[..filled]` holds an unfinished line (no newline) between reads.
    filled: usize,
    max_line: usize,
    /// Dropping the rest of an over-long line until its newline.
    skipping: bool,
    connection: u64,
    /// The number of the line `buf[0]` belongs to.
    next_line: u64,
    /// The connection's byte offset of `buf[0]`.
    offset: u64,
}

impl LineFramer {
    /// A framer for connection number `connection`, with lines of at most `max_line` bytes
    /// (newline not counted) and a first buffer of `capacity` bytes.
    pub fn new(connection: u64, max_line: usize, capacity: usize) -> Self {
        LineFramer {
            buf: vec![0; capacity.max(1)],
            filled: 0,
            max_line,
            skipping: false,
            connection,
            next_line: 1,
            offset: 0,
        }
    }

    /// Where the next read goes: the buffer after what it holds, grown (up to what the line
    /// limit needs) when full.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.filled == self.buf.len() {
            // Only an unfinished line within the limit is held, so the limit bounds the growth.
            let cap = self.max_line.saturating_add(1).max(self.buf.len() + 1);
            let grown = self.buf.len().saturating_mul(2).min(cap);
            self.buf.resize(grown, 0);
        }
        &mut self.buf[self.filled..]
    }

    /// The bytes held: an unfinished line.
    pub fn pending(&self) -> usize {
        self.filled
    }

    /// Takes `n` more bytes, just read into [`LineFramer::spare`].
    pub fn filled(&mut self, n: usize) -> Framed {
        let scan_from = self.filled;
        let end = self.filled + n.min(self.buf.len() - self.filled);
        self.filled = end;
        let mut framed = Framed::default();
        let mut line_start = 0;
        if self.skipping {
            match memchr::memchr(b'\n', &self.buf[..end]) {
                Some(i) => {
                    self.skipping = false;
                    self.next_line += 1;
                    framed.lines_consumed += 1;
                    line_start = i + 1;
                }
                None => {
                    self.offset += end as u64;
                    self.filled = 0;
                    return framed;
                }
            }
        }
        let mut block_start = line_start;
        let mut block_lines = 0u32;
        // `buf[..scan_from]` is an unfinished line: it has no newline.
        let scan_start = scan_from.max(line_start);
        for i in memchr::memchr_iter(b'\n', &self.buf[scan_start..end]) {
            let newline = scan_start + i;
            let length = newline - line_start;
            if length > self.max_line {
                self.push_block(&mut framed, block_start, line_start, block_lines);
                framed.too_long.push(LongLine {
                    line: self.next_line + u64::from(block_lines),
                    offset: self.offset + line_start as u64,
                    length: length as u64,
                });
                self.next_line += u64::from(block_lines) + 1;
                block_lines = 0;
                block_start = newline + 1;
            } else {
                block_lines += 1;
                if block_lines == u32::MAX {
                    self.push_block(&mut framed, block_start, newline + 1, block_lines);
                    self.next_line += u64::from(block_lines);
                    block_lines = 0;
                    block_start = newline + 1;
                }
            }
            framed.lines_consumed += 1;
            line_start = newline + 1;
        }
        self.push_block(&mut framed, block_start, line_start, block_lines);
        self.next_line += u64::from(block_lines);
        let unfinished = end - line_start;
        if unfinished > self.max_line {
            framed.too_long.push(LongLine {
                line: self.next_line,
                offset: self.offset + line_start as u64,
                length: unfinished as u64,
            });
            self.skipping = true;
            self.offset += end as u64;
            self.filled = 0;
        } else {
            self.buf.copy_within(line_start..end, 0);
            self.offset += line_start as u64;
            self.filled = unfinished;
        }
        framed
    }

    fn push_block(&self, framed: &mut Framed, start: usize, end: usize, lines: u32) {
        if lines > 0 {
            framed.blocks.push(LineBlock {
                bytes: self.buf[start..end].to_vec(),
                lines,
                connection: self.connection,
                first_line: self.next_line,
                offset: self.offset + start as u64,
            });
        }
    }

    /// The connection ended: its last line, when it had no newline (and is within the limit).
    pub fn finish(&mut self) -> Option<LineBlock> {
        let block = (self.filled > 0 && !self.skipping).then(|| LineBlock {
            bytes: self.buf[..self.filled].to_vec(),
            lines: 1,
            connection: self.connection,
            first_line: self.next_line,
            offset: self.offset,
        });
        self.offset += self.filled as u64;
        self.filled = 0;
        self.skipping = false;
        block
    }
}

/// Where a line came from, for messages: `line 7 (byte offset 120) of connection 2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinePosition {
    /// The connection (1 = the first).
    pub connection: u64,
    /// The line's number in its connection (1 = the first).
    pub line: u64,
    /// The line's byte offset in its connection.
    pub offset: u64,
}

impl fmt::Display for LinePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {} (byte offset {}) of connection {}",
            self.line, self.offset, self.connection
        )
    }
}

/// A line decoded, possibly with a warning, or rejected.
pub enum Decoded<T> {
    /// The record.
    Record(T),
    /// The record, and a warning (for example invalid UTF-8 replaced).
    Repaired(T, String),
    /// No record: why the line was rejected.
    Rejected(String),
}

/// Decodes every line of `block` (a trailing `\r` removed) with `decode`, appending records to
/// `out`; calls `bad` for each line repaired or rejected, with its position.
pub fn decode_block<T>(
    block: &LineBlock,
    decode: &dyn Fn(&[u8]) -> Decoded<T>,
    out: &mut Vec<T>,
    bad: impl FnMut(LinePosition, BadKind, String),
) {
    out.reserve(block.lines as usize);
    decode_block_each(block, decode, &mut |record| out.push(record), bad);
}

/// [`decode_block`] handing each record to `out` as it is decoded.
pub fn decode_block_each<T>(
    block: &LineBlock,
    decode: &dyn Fn(&[u8]) -> Decoded<T>,
    out: &mut dyn FnMut(T),
    mut bad: impl FnMut(LinePosition, BadKind, String),
) {
    let bytes = &block.bytes[..];
    let mut start = 0;
    let mut line = block.first_line;
    let mut emit = |text: &[u8], start: usize, line: u64| {
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let position = || LinePosition {
            connection: block.connection,
            line,
            offset: block.offset + start as u64,
        };
        match decode(text) {
            Decoded::Record(record) => out(record),
            Decoded::Repaired(record, warning) => {
                out(record);
                bad(position(), BadKind::Repaired, warning);
            }
            Decoded::Rejected(message) => bad(position(), BadKind::Rejected, message),
        }
    };
    for end in memchr::memchr_iter(b'\n', bytes) {
        emit(&bytes[start..end], start, line);
        start = end + 1;
        line += 1;
    }
    if start < bytes.len() {
        emit(&bytes[start..], start, line);
    }
}

/// Decodes a line as UTF-8 text; invalid bytes are replaced with U+FFFD (with a warning) or
/// reject the line.
pub(crate) fn decode_text(line: &[u8], strict: bool) -> Decoded<String> {
    match std::str::from_utf8(line) {
        Ok(text) => Decoded::Record(text.to_owned()),
        Err(e) if strict => Decoded::Rejected(format!("not valid UTF-8: {e}")),
        Err(e) => Decoded::Repaired(
            String::from_utf8_lossy(line).into_owned(),
            format!("not valid UTF-8 ({e}); invalid bytes were replaced with U+FFFD"),
        ),
    }
}

/// What was wrong with a bad line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadKind {
    /// Kept, repaired (invalid UTF-8 replaced).
    Repaired,
    /// Skipped: the decoder rejected it.
    Rejected,
    /// Skipped: longer than the line limit.
    TooLong,
}

/// Counts of one source's bad lines since the context started
/// ([`StreamingContext::bad_records`](crate::StreamingContext::bad_records)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BadRecordCounts {
    /// The source, as in messages (for example `socket_text_stream(localhost:9999)`).
    pub source: String,
    /// Lines kept after repair: invalid UTF-8 replaced with U+FFFD.
    pub repaired: u64,
    /// Lines skipped because the decoder rejected them (invalid UTF-8 under
    /// [`Utf8Policy::Fail`](crate::Utf8Policy::Fail), or a `socket_stream` decoder's error).
    pub rejected: u64,
    /// Lines skipped for being longer than the limit.
    pub too_long: u64,
}

/// How many bad lines of a source are warned about one by one before warnings turn into
/// summaries.
pub(crate) const WARN_FIRST: u64 = 10;
/// How often, at most, a summary of further bad lines is logged.
pub(crate) const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// One source's bad-line counts and its rate-limited warnings: the first ten bad lines are
/// logged one by one; after that, one summary line at most every 10 s, and a last one when the
/// context stops.
#[derive(Debug)]
pub struct BadRecords {
    source: String,
    repaired: AtomicU64,
    rejected: AtomicU64,
    too_long: AtomicU64,
    warned: AtomicU64,
    summary: Mutex<Summary>,
}

/// Bad lines not warned about one by one since the last summary.
#[derive(Debug)]
struct Summary {
    since: Instant,
    repaired: u64,
    rejected: u64,
    too_long: u64,
    /// The latest bad line: where it is, and what was wrong.
    last: Option<(String, String)>,
}

impl BadRecords {
    /// Counts for the source named `source`.
    pub fn new(source: impl Into<String>) -> Self {
        BadRecords {
            source: source.into(),
            repaired: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            too_long: AtomicU64::new(0),
            warned: AtomicU64::new(0),
            summary: Mutex::new(Summary {
                since: Instant::now(),
                repaired: 0,
                rejected: 0,
                too_long: 0,
                last: None,
            }),
        }
    }

    /// Counts one bad line and warns about it (or about it in a later summary). Returns
    /// whether it was warned about one by one.
    pub fn record(&self, kind: BadKind, position: &dyn fmt::Display, message: &str) -> bool {
        let counter = match kind {
            BadKind::Repaired => &self.repaired,
            BadKind::Rejected => &self.rejected,
            BadKind::TooLong => &self.too_long,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if self.warned.fetch_add(1, Ordering::Relaxed) < WARN_FIRST {
            tracing::warn!(source = %self.source, "{position}: {message}{}", consequence(kind));
            return true;
        }
        let mut summary = crate::context::lock(&self.summary);
        match kind {
            BadKind::Repaired => summary.repaired += 1,
            BadKind::Rejected => summary.rejected += 1,
            BadKind::TooLong => summary.too_long += 1,
        }
        summary.last = Some((position.to_string(), message.to_owned()));
        if summary.since.elapsed() >= SUMMARY_EVERY {
            self.log_summary(&mut summary);
        }
        false
    }

    /// Logs the summary of what was not warned about yet, if anything.
    pub fn flush(&self) {
        self.log_summary(&mut crate::context::lock(&self.summary));
    }

    fn log_summary(&self, summary: &mut Summary) {
        if let Some((position, message)) = summary.last.take() {
            tracing::warn!(
                source = %self.source,
                repaired = summary.repaired,
                rejected = summary.rejected,
                too_long = summary.too_long,
                seconds = summary.since.elapsed().as_secs(),
                "{} more bad lines since the last warning (repaired {}, rejected {}, too long {}); the latest: {position}: {message}",
                summary.repaired + summary.rejected + summary.too_long,
                summary.repaired,
                summary.rejected,
                summary.too_long,
            );
        }
        summary.repaired = 0;
        summary.rejected = 0;
        summary.too_long = 0;
        summary.since = Instant::now();
    }

    /// The counts so far.
    pub fn counts(&self) -> BadRecordCounts {
        BadRecordCounts {
            source: self.source.clone(),
            repaired: self.repaired.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            too_long: self.too_long.load(Ordering::Relaxed),
        }
    }
}

fn consequence(kind: BadKind) -> &'static str {
    match kind {
        BadKind::Repaired => "; the line was kept",
        BadKind::Rejected | BadKind::TooLong => "; the line was skipped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames `input` read in chunks of `chunk` bytes; returns every line decoded (with its
    /// number), the over-long lines, and the lines consumed.
    fn frame(input: &[u8], chunk: usize, max_line: usize) -> (Vec<(u64, String)>, Vec<LongLine>, u64) {
        let mut framer = LineFramer::new(1, max_line, 8);
        let mut lines = Vec::new();
        let mut long = Vec::new();
        let mut consumed = 0;
        let take = |block: &LineBlock, lines: &mut Vec<(u64, String)>| {
            let mut out = Vec::new();
            decode_block(block, &|l| decode_text(l, false), &mut out, |_, _, _| {});
            assert_eq!(out.len(), block.lines as usize);
            lines.extend((block.first_line..).zip(out));
        };
        for piece in input.chunks(chunk.max(1)) {
            let mut rest = piece;
            while !rest.is_empty() {
                let spare = framer.spare();
                let n = spare.len().min(rest.len());
                spare[..n].copy_from_slice(&rest[..n]);
                rest = &rest[n..];
                let framed = framer.filled(n);
                consumed += framed.lines_consumed;
                long.extend(framed.too_long);
                for block in &framed.blocks {
                    take(block, &mut lines);
                }
            }
        }
        if let Some(block) = framer.finish() {
            take(&block, &mut lines);
        }
        (lines, long, consumed)
    }

    #[test]
    fn frames_lines_across_reads_of_any_size_with_their_numbers() {
        let input = b"alpha\nbeta\r\n\ngamma delta\nlast";
        for chunk in 1..input.len() + 2 {
            let (lines, long, consumed) = frame(input, chunk, 100);
            let want: Vec<(u64, String)> = ["alpha", "beta", "", "gamma delta", "last"]
                .iter()
                .enumerate()
                .map(|(i, s)| (i as u64 + 1, s.to_string()))
                .collect();
            assert_eq!(lines, want, "chunk {chunk}");
            assert!(long.is_empty());
            assert_eq!(consumed, 4, "the unfinished last line is not consumed");
        }
    }

    #[test]
    fn an_over_long_line_is_skipped_and_named_and_the_rest_kept() {
        let input = b"ok\n0123456789abcdef\nfine\n0123456789abcdefXYZ";
        for chunk in 1..input.len() + 2 {
            let (lines, long, consumed) = frame(input, chunk, 8);
            assert_eq!(lines, vec![(1, "ok".to_string()), (3, "fine".to_string())], "chunk {chunk}");
            assert_eq!(long.len(), 2, "chunk {chunk}: {long:?}");
            assert_eq!((long[0].line, long[0].offset), (2, 3));
            assert_eq!((long[1].line, long[1].offset), (4, 25));
            assert!(long[1].length > 8);
            assert_eq!(consumed, 3, "chunk {chunk}");
        }
    }

    #[test]
    fn a_line_longer_than_the_limit_never_grows_the_buffer_past_it() {
        let mut framer = LineFramer::new(1, 1000, 64);
        let mut found = Vec::new();
        for _ in 0..10_000 {
            let spare = framer.spare();
            spare.fill(b'x');
            let n = spare.len();
            found.extend(framer.filled(n).too_long);
            assert!(framer.buf.len() <= 1001);
        }
        assert_eq!(found.len(), 1, "one line, reported once");
        let spare = framer.spare();
        spare[..3].copy_from_slice(b"\nok");
        let framed = framer.filled(3);
        assert_eq!(framed.lines_consumed, 1);
        assert_eq!(framer.finish().map(|b| b.bytes), Some(b"ok".to_vec()));
    }

    #[test]
    fn positions_name_the_line_and_byte_offset_of_each_bad_line() {
        let block = LineBlock {
            bytes: b"good\nb\xffd\nfine\n".to_vec(),
            lines: 3,
            connection: 4,
            first_line: 10,
            offset: 500,
        };
        let mut out = Vec::new();
        let mut bad = Vec::new();
        decode_block(&block, &|l| decode_text(l, false), &mut out, |p, k, _| bad.push((p, k)));
        assert_eq!(out, ["good", "b\u{fffd}d", "fine"]);
        let position = LinePosition {
            connection: 4,
            line: 11,
            offset: 505,
        };
        assert_eq!(bad, vec![(position, BadKind::Repaired)]);
        assert_eq!(position.to_string(), "line 11 (byte offset 505) of connection 4");
        let mut strict = Vec::new();
        decode_block(&block, &|l| decode_text(l, true), &mut strict, |_, k, _| {
            assert_eq!(k, BadKind::Rejected)
        });
        assert_eq!(strict, ["good", "fine"]);
    }

    #[test]
    fn a_block_splits_at_line_ends_keeping_numbers_and_offsets() {
        let block = LineBlock {
            bytes: b"a\nbb\nccc\n".to_vec(),
            lines: 3,
            connection: 2,
            first_line: 5,
            offset: 100,
        };
        let pieces = block.clone().split_lines(2);
        let seen: Vec<_> = pieces
            .iter()
            .map(|b| (b.bytes.as_slice(), b.lines, b.first_line, b.offset))
            .collect();
        assert_eq!(seen, vec![(&b"a\nbb\n"[..], 2, 5, 100), (&b"ccc\n"[..], 1, 7, 105)]);
        assert_eq!(block.clone().split_lines(3), vec![block.clone()]);
        // A last line without its newline stays in the last piece.
        let unfinished = LineBlock {
            bytes: b"a\nb".to_vec(),
            lines: 2,
            ..block
        };
        assert_eq!(
            unfinished.split_lines(1).iter().map(|b| b.bytes.clone()).collect::<Vec<_>>(),
            vec![b"a\n".to_vec(), b"b".to_vec()]
        );
    }

    /// Counts the events logged on this thread.
    struct CountEvents(std::sync::Arc<AtomicU64>);

    impl tracing::Subscriber for CountEvents {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, _: &tracing::Event<'_>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[test]
    fn a_hundred_thousand_bad_lines_log_a_few_warnings_and_count_exactly() {
        let events = std::sync::Arc::new(AtomicU64::new(0));
        let bad = BadRecords::new("socket_text_stream(test)");
        tracing::subscriber::with_default(CountEvents(events.clone()), || {
            for i in 0..100_000u64 {
                let position = LinePosition {
                    connection: 1,
                    line: i + 1,
                    offset: i * 10,
                };
                let kind = if i % 2 == 0 { BadKind::Repaired } else { BadKind::TooLong };
                bad.record(kind, &position, "bad");
            }
            bad.flush();
        });
        let counts = bad.counts();
        assert_eq!((counts.repaired, counts.too_long, counts.rejected), (50_000, 50_000, 0));
        let logged = events.load(Ordering::Relaxed);
        // The first ten one by one, then a summary at most every 10 s (this loop takes well
        // under that) and the last one at the flush.
        assert!((WARN_FIRST + 1..=WARN_FIRST + 3).contains(&logged), "{logged} warnings");
    }
}
