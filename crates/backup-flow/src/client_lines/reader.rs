//! The reader thread: one line at a time into a fixed, zeroized buffer.

use std::io::BufRead;

use tokio::sync::mpsc;
use zeroize::Zeroizing;

use super::{MAX_LINE_BYTES, NumberedLine, Shard, parse_line};

/// What the reader hands over.
pub(super) enum FromReader {
    Line(NumberedLine),
    End { lines: u64, skipped: u64 },
    Failed(std::io::Error),
}

/// Reads `input` to its end, sending this shard's lines over `tx`. Blocks while the channel is
/// full, so it never runs more than the channel's capacity ahead of the workers.
pub(super) fn read_input<R: BufRead>(
    mut input: R,
    shard: Option<Shard>,
    tx: &mpsc::Sender<FromReader>,
) {
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_LINE_BYTES));
    let mut index: u64 = 0;
    let mut lines: u64 = 0;
    let mut skipped: u64 = 0;
    loop {
        buf.clear();
        let read = match read_line_capped(&mut input, &mut buf) {
            Ok(read) => read,
            Err(e) => {
                // The receiver may be gone already; nothing more to do then.
                let _ = tx.blocking_send(FromReader::Failed(e));
                return;
            }
        };
        let this = index;
        index = index.saturating_add(1);
        let too_long = match read {
            LineRead::Eof => break,
            LineRead::Line if buf.trim_ascii().is_empty() => continue,
            LineRead::Line => false,
            LineRead::TooLong => true,
        };
        lines = lines.saturating_add(1);
        if !shard.is_none_or(|s| s.selects(this)) {
            skipped = skipped.saturating_add(1);
            continue;
        }
        let parsed = if too_long {
            Err(format!("the line is longer than {MAX_LINE_BYTES} bytes"))
        } else {
            parse_line(&buf)
        };
        let line = NumberedLine {
            line: this.saturating_add(1),
            parsed,
        };
        if tx.blocking_send(FromReader::Line(line)).is_err() {
            return;
        }
    }
    let _ = tx.blocking_send(FromReader::End { lines, skipped });
}

enum LineRead {
    Eof,
    Line,
    TooLong,
}

/// Reads up to the next `\n` (not included) into `buf`, keeping at most [`MAX_LINE_BYTES`];
/// the rest of a longer line is skipped. `buf` never grows past its capacity, so no
/// unzeroized copy of a line is left behind by a reallocation.
fn read_line_capped<R: BufRead>(input: &mut R, buf: &mut Vec<u8>) -> std::io::Result<LineRead> {
    let mut any = false;
    let mut too_long = false;
    loop {
        let available = match input.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(match (any, too_long) {
                (false, _) => LineRead::Eof,
                (true, false) => LineRead::Line,
                (true, true) => LineRead::TooLong,
            });
        }
        any = true;
        let (chunk, end) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (available.split_at(at).0, true),
            None => (available, false),
        };
        let len = chunk.len();
        if !too_long {
            if buf.len().saturating_add(len) > MAX_LINE_BYTES {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        input.consume(if end { len.saturating_add(1) } else { len });
        if end {
            return Ok(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Lines = Vec<(u64, Result<(), String>)>;

    fn read(input: &[u8], shard: Option<Shard>) -> (Lines, Option<(u64, u64)>) {
        let (tx, mut rx) = mpsc::channel(1024);
        read_input(input, shard, &tx);
        drop(tx);
        let (mut out, mut end) = (Vec::new(), None);
        while let Ok(message) = rx.try_recv() {
            match message {
                FromReader::Line(l) => out.push((l.line, l.parsed.map(drop))),
                FromReader::End { lines, skipped } => end = Some((lines, skipped)),
                FromReader::Failed(e) => panic!("{e}"),
            }
        }
        (out, end)
    }

    #[test]
    fn blank_lines_keep_their_numbers() {
        let input = concat!(
            r#"{"clientApiKey":"k1"}"#,
            "\n\n  \r\n",
            r#"{"clientSessionToken":"t"}"#,
            "\r\n",
            r#"{"clientApiKey":"k","clientSessionToken":"t"}"#,
        );
        let (got, end) = read(input.as_bytes(), None);
        let numbers: Vec<u64> = got.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [1, 4, 5]);
        assert!(got[0].1.is_ok() && got[1].1.is_ok());
        assert!(got[2].1.as_ref().unwrap_err().contains("both"));
        assert_eq!(end, Some((3, 0)));
    }

    #[test]
    fn too_long_lines_fail_alone() {
        let mut input = vec![b'x'; MAX_LINE_BYTES.saturating_add(10)];
        input.extend_from_slice(b"\n{}\n");
        let (got, _) = read(&input, None);
        assert_eq!(got.len(), 2);
        assert!(got[0].1.as_ref().unwrap_err().contains("longer than"));
        assert_eq!(got[1].0, 2);
    }

    #[test]
    fn the_reader_counts_the_lines_left_to_other_shards() {
        // Indexes 0 a, 1 b, 2 blank, 3 c, 4 d, 5 e: shard 1/2 takes b, c and e.
        let (got, end) = read(&b"a\nb\n\nc\nd\ne"[..], Some(Shard::new(1, 2).unwrap()));
        let taken: Vec<u64> = got.iter().map(|(n, _)| *n).collect();
        assert_eq!(taken, [2, 4, 6]);
        assert_eq!(end, Some((5, 2)));
    }
}
