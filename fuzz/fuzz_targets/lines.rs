//! Fuzzes the text receivers' line handling: bytes read in arbitrary pieces are framed into
//! line blocks (with an arbitrary line limit) and decoded, and must give exactly the lines a
//! plain split gives: every line within the limit once, in order, with its number and byte
//! offset; every longer line reported once instead; the buffer never past the limit.
#![no_main]

use ember::lines::{Decoded, LineBlock, LineFramer, decode_block};
use libfuzzer_sys::fuzz_target;

/// A line as the reference sees it.
struct Line<'a> {
    number: u64,
    offset: usize,
    bytes: &'a [u8],
    finished: bool,
}

fn reference(data: &[u8]) -> Vec<Line<'_>> {
    let mut lines = Vec::new();
    let mut start = 0;
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' {
            lines.push(Line {
                number: lines.len() as u64 + 1,
                offset: start,
                bytes: &data[start..i],
                finished: true,
            });
            start = i + 1;
        }
    }
    if start < data.len() {
        lines.push(Line {
            number: lines.len() as u64 + 1,
            offset: start,
            bytes: &data[start..],
            finished: false,
        });
    }
    lines
}

fn text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 3 {
        return;
    }
    let max_line = usize::from(input[0]) % 64 + 1;
    let chunk = usize::from(input[1]) % 32 + 1;
    let capacity = usize::from(input[2]) % 16 + 1;
    let data = &input[3..];

    let mut framer = LineFramer::new(1, max_line, capacity);
    let mut decoded: Vec<(u64, u64, String)> = Vec::new();
    let mut too_long: Vec<u64> = Vec::new();
    let mut consumed = 0u64;
    let decode = |line: &[u8]| match std::str::from_utf8(line) {
        Ok(s) => Decoded::Record(s.to_owned()),
        Err(_) => Decoded::Repaired(String::from_utf8_lossy(line).into_owned(), String::new()),
    };
    let take = |block: &LineBlock, decoded: &mut Vec<(u64, u64, String)>| {
        let mut out = Vec::new();
        let mut positions = Vec::new();
        decode_block(block, &decode, &mut out, |p, _, _| positions.push(p));
        assert_eq!(out.len(), block.lines as usize, "a block decodes to its line count");
        // Line numbers and offsets of the block's lines, recomputed from its bytes.
        let mut offset = block.offset;
        for (i, line) in out.into_iter().enumerate() {
            decoded.push((block.first_line + i as u64, offset, line));
            let len = block.bytes[(offset - block.offset) as usize..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(block.bytes.len() - (offset - block.offset) as usize, |p| p + 1);
            offset += len as u64;
        }
        for p in positions {
            assert!(p.line >= block.first_line && p.line < block.first_line + u64::from(block.lines));
        }
    };
    for piece in data.chunks(chunk) {
        let mut rest = piece;
        while !rest.is_empty() {
            let spare = framer.spare();
            assert!(!spare.is_empty());
            let n = spare.len().min(rest.len());
            spare[..n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            let framed = framer.filled(n);
            assert!(framer.pending() <= max_line, "an unfinished line past the limit is held");
            consumed += framed.lines_consumed;
            too_long.extend(framed.too_long.iter().map(|l| l.line));
            for block in &framed.blocks {
                take(block, &mut decoded);
            }
        }
    }
    if let Some(block) = framer.finish() {
        take(&block, &mut decoded);
    }

    let lines = reference(data);
    let want: Vec<(u64, u64, String)> = lines
        .iter()
        .filter(|l| l.bytes.len() <= max_line)
        .map(|l| (l.number, l.offset as u64, text(l.bytes)))
        .collect();
    assert_eq!(decoded, want);
    let long: Vec<u64> = lines.iter().filter(|l| l.bytes.len() > max_line).map(|l| l.number).collect();
    assert_eq!(too_long, long);
    assert_eq!(consumed, lines.iter().filter(|l| l.finished).count() as u64);
});
