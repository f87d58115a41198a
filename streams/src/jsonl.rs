//! Reads JSON-lines input (files or stdin) as raw lines with their positions, without decoding.

use std::io::{BufRead, BufReader, Read};

/// One raw line of input with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    /// 1-based line number in its source.
    pub line: u64,
    /// The bytes, without the line terminator.
    pub bytes: Vec<u8>,
}

/// Iterates over the non-blank lines of a reader; bytes are passed through unchanged so the
/// decoder can report invalid UTF-8 itself.
pub struct JsonLines<R: Read> {
    inner: BufReader<R>,
    line: u64,
}

impl<R: Read> JsonLines<R> {
    /// Wraps a reader.
    pub fn new(r: R) -> Self {
        JsonLines {
            inner: BufReader::with_capacity(1 << 16, r),
            line: 0,
        }
    }
}

impl<R: Read> Iterator for JsonLines<R> {
    type Item = std::io::Result<RawLine>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let mut buf = Vec::new();
            match self.inner.read_until(b'\n', &mut buf) {
                Ok(0) => return None,
                Ok(_) => {
                    self.line += 1;
                    while matches!(buf.last(), Some(b'\n' | b'\r')) {
                        buf.pop();
                    }
                    if buf.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    return Some(Ok(RawLine {
                        line: self.line,
                        bytes: buf,
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
    fn passes_invalid_utf8_through() {
        let input = b"\xff\xfe\n";
        let lines: Vec<RawLine> = JsonLines::new(&input[..]).map(|l| l.unwrap()).collect();
        assert_eq!(lines[0].bytes, b"\xff\xfe");
    }
}
