//! A writer that lets JSON lines through at a steady rate: the load generator's feed for a
//! pipe (`loadtest stream --rate R | omnistream produce -` puts the events on the Fluvio
//! topics at R a second), with the lines flushed as they are due.

use std::io::{self, Write};
use std::time::{Duration, Instant};

/// Passes bytes to `inner` and, with a rate, sleeps whenever the lines written so far are
/// ahead of `rate` lines a second since the first write (an open loop: a slow reader does not
/// lower the schedule, it is caught up with later).
pub struct Paced<W: Write> {
    inner: W,
    rate: Option<f64>,
    started: Option<Instant>,
    lines: u64,
}

impl<W: Write> Paced<W> {
    /// `rate` lines a second, or as fast as `inner` takes them when `None`.
    pub fn new(inner: W, rate: Option<f64>) -> Paced<W> {
        Paced {
            inner,
            rate,
            started: None,
            lines: 0,
        }
    }

    /// The complete lines written so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// The writer, flushed.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Paced<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let started = *self.started.get_or_insert_with(Instant::now);
        let n = self.inner.write(buf)?;
        self.lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
        if let Some(rate) = self.rate {
            let due = Duration::from_secs_f64(self.lines as f64 / rate);
            let now = started.elapsed();
            if due > now + Duration::from_millis(1) {
                // the reader gets what is written before the wait
                self.inner.flush()?;
                std::thread::sleep(due - now);
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_pass_unchanged_and_lines_are_counted() {
        let mut p = Paced::new(Vec::new(), None);
        p.write_all(b"{\"a\":1}\n{\"b\"").unwrap();
        p.write_all(b":2}\n").unwrap();
        assert_eq!(p.lines(), 2);
        assert_eq!(p.into_inner().unwrap(), b"{\"a\":1}\n{\"b\":2}\n");
    }

    #[test]
    fn a_rate_holds_the_lines_back_to_their_schedule() {
        // 60 lines at 400 a second cannot finish before 150 ms (a lower bound: sleeping
        // never ends early, whatever the machine's load)
        let t = Instant::now();
        let mut p = Paced::new(io::sink(), Some(400.0));
        for _ in 0..60 {
            p.write_all(b"{}\n").unwrap();
        }
        assert!(
            t.elapsed() >= Duration::from_millis(149),
            "{:?}",
            t.elapsed()
        );
        // without a rate nothing waits: 60 lines are written long before that
        let t = Instant::now();
        let mut p = Paced::new(io::sink(), None);
        for _ in 0..60 {
            p.write_all(b"{}\n").unwrap();
        }
        assert_eq!(p.lines(), 60);
        assert!(t.elapsed() < Duration::from_millis(149));
    }
}
