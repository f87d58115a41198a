//! Reads JSON-lines input (files or stdin) as raw lines with their positions, without decoding.

use std::io::{BufRead, BufReader, Read};

/// One raw line of input with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    /// 1-based line number in its source.
    pub line: u64,
    /// The bytes, without the line terminator; cut at the reader's limit.
    pub bytes: Vec<u8>,
    /// The full length of the line in bytes, which exceeds `bytes.len()` when it was cut.
    pub len: usize,
}

/// Bytes kept of one line by default: one more than the largest event, so an oversized line
/// is still seen as too large, while a line of gigabytes never sits in memory.
pub const DEFAULT_LINE_LIMIT: usize = omnistream_schemas::MAX_EVENT_BYTES + 1;

/// Iterates over the non-blank lines of a reader; bytes are passed through unchanged so the
/// decoder can report invalid UTF-8 itself.
pub struct JsonLines<R: Read> {
    inner: BufReader<R>,
    line: u64,
    limit: usize,
}

impl<R: Read> JsonLines<R> {
    /// Wraps a reader, keeping at most [`DEFAULT_LINE_LIMIT`] bytes of each line.
    pub fn new(r: R) -> Self {
        Self::with_limit(r, DEFAULT_LINE_LIMIT)
    }

    /// Wraps a reader, keeping at most `limit` bytes of each line.
    pub fn with_limit(r: R, limit: usize) -> Self {
        JsonLines {
            inner: BufReader::with_capacity(1 << 16, r),
            line: 0,
            limit,
        }
    }

    /// Reads one line into `buf` (up to the limit, without its `\n`); returns its full length,
    /// or `None` at the end.
    fn read_line(&mut self, buf: &mut Vec<u8>) -> std::io::Result<Option<usize>> {
        let (len, ended) = read_line_part(&mut self.inner, buf, self.limit)?;
        Ok((len > 0 || ended).then_some(len))
    }
}

/// Reads the rest of `r`'s current line into `buf`, keeping `buf` within `limit` bytes, and
/// consumes it with its `\n` (neither kept nor counted): returns the bytes of the line read,
/// cut ones included, and whether its `\n` was reached; without it, `r` is at the end of what
/// it holds (a file still being written may hold more later: a next call reads on).
pub fn read_line_part<R: BufRead + ?Sized>(
    r: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<(usize, bool)> {
    let mut total = 0usize;
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok((total, false));
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        let room = limit.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..take.min(room)]);
        total += take;
        r.consume(take + usize::from(done));
        if done {
            return Ok((total, true));
        }
    }
}

impl<R: Read> Iterator for JsonLines<R> {
    type Item = std::io::Result<RawLine>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let mut buf = Vec::new();
            match self.read_line(&mut buf) {
                Ok(None) => return None,
                Ok(Some(mut len)) => {
                    self.line += 1;
                    while len == buf.len() && buf.last() == Some(&b'\r') {
                        buf.pop();
                        len -= 1;
                    }
                    if buf.iter().all(u8::is_ascii_whitespace) && len == buf.len() {
                        continue;
                    }
                    return Some(Ok(RawLine {
                        line: self.line,
                        bytes: buf,
                        len,
                    }));
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_blank_lines_and_keeps_numbers() {
        let input = b"{\"a\":1}\r\n\n  \n{\"b\":2}";
        let lines: Vec<RawLine> = JsonLines::new(&input[..]).map(|l| l.unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].line, 1);
        assert_eq!(lines[0].bytes, b"{\"a\":1}");
        assert_eq!(lines[1].line, 4);
    }

    #[test]
    fn long_lines_are_cut_but_counted() {
        let mut input = vec![b'x'; 1000];
        input.extend_from_slice(b"\n{}\n");
        let lines: Vec<RawLine> = JsonLines::with_limit(&input[..], 10)
            .map(|l| l.unwrap())
            .collect();
        assert_eq!(lines[0].bytes.len(), 10);
        assert_eq!(lines[0].len, 1000);
        assert_eq!(lines[1].bytes, b"{}");
        assert_eq!(lines[1].line, 2);
    }

    #[test]
    fn passes_invalid_utf8_through() {
        let input = b"\xff\xfe\n";
        let lines: Vec<RawLine> = JsonLines::new(&input[..]).map(|l| l.unwrap()).collect();
        assert_eq!(lines[0].bytes, b"\xff\xfe");
    }
}
