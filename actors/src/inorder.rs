//! Rendering a sorted listing on several threads, handed on in its order: how the final
//! states are written (each entity serialised to JSON, which is most of the work, is
//! independent of the others; the file must still come out in key order).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;

/// How a listing is spread over threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spread {
    /// Threads rendering (1: the calling thread renders, no thread is started).
    pub threads: usize,
    /// Items a thread renders at a time.
    pub chunk: usize,
}

impl Default for Spread {
    fn default() -> Self {
        Spread {
            threads: 1,
            chunk: 512,
        }
    }
}

impl Spread {
    /// As many threads as the machine has cores.
    pub fn cores() -> Self {
        Spread {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ..Spread::default()
        }
    }
}

/// What a chunk rendered into: two byte buffers (the caller's main output and a side one).
pub type Rendered = (Vec<u8>, Vec<u8>);

/// Renders a chunk of items into a [`Rendered`].
pub type Render<'r, T> = dyn Fn(&[T], &mut Rendered) -> Result<(), String> + Sync + 'r;

/// Renders `items` a chunk at a time with `render` on `spread.threads` threads and hands
/// each chunk's bytes to `sink` in the items' order. Finished chunks wait for the ones
/// before them, at most a few per thread: a thread that gets that far ahead of `sink` waits.
/// Stops at the first error of `render` or `sink` in the items' order (and returns it).
pub fn render_in_order<T: Sync>(
    items: &[T],
    spread: Spread,
    render: &Render<'_, T>,
    sink: &mut dyn FnMut(&Rendered) -> Result<(), String>,
) -> Result<(), String> {
    let chunk = spread.chunk.max(1);
    let n = items.len().div_ceil(chunk);
    let part = |i: usize| &items[i * chunk..((i + 1) * chunk).min(items.len())];
    if spread.threads <= 1 || n < 2 {
        let mut out = Rendered::default();
        for i in 0..n {
            render(part(i), &mut out)?;
            sink(&out)?;
            out.0.clear();
            out.1.clear();
        }
        return Ok(());
    }
    let window = 2 * spread.threads;
    let next = AtomicUsize::new(0);
    let sunk = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let (tx, rx) = sync_channel::<(usize, Result<Rendered, String>)>(window);
        for _ in 0..spread.threads {
            let tx = tx.clone();
            let (next, sunk, stop) = (&next, &sunk, &stop);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                while i >= sunk.load(Ordering::Acquire) + window {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    std::thread::yield_now();
                }
                if stop.load(Ordering::Acquire) {
                    return;
                }
                let mut out = Rendered::default();
                let r = render(part(i), &mut out).map(|()| out);
                if tx.send((i, r)).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        let mut waiting = BTreeMap::new();
        let mut want = 0;
        let mut sink_all = || {
            for (i, r) in rx.iter() {
                // an error too waits for the chunks before it, so what was sunk is the same
                // as on one thread
                waiting.insert(i, r);
                while let Some(out) = waiting.remove(&want) {
                    sink(&out?)?;
                    want += 1;
                    sunk.store(want, Ordering::Release);
                }
            }
            Ok(())
        };
        let r = sink_all();
        // on an error the threads stop at their next chunk (or their next send fails)
        stop.store(true, Ordering::Release);
        drop(rx);
        r
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digits(items: &[u32], out: &mut Rendered) -> Result<(), String> {
        for i in items {
            out.0.extend_from_slice(format!("{i},").as_bytes());
            if i % 7 == 0 {
                out.1.push(b'x');
            }
        }
        Ok(())
    }

    #[test]
    fn every_spread_gives_the_items_in_order() {
        let items: Vec<u32> = (0..1000).collect();
        let mut want = None;
        for threads in [1, 2, 3, 8] {
            for chunk in [1, 7, 512, 5000] {
                let mut got = Rendered::default();
                render_in_order(&items, Spread { threads, chunk }, &digits, &mut |out| {
                    got.0.extend_from_slice(&out.0);
                    got.1.extend_from_slice(&out.1);
                    Ok(())
                })
                .unwrap();
                match &want {
                    None => want = Some(got),
                    Some(w) => assert_eq!(w, &got, "{threads} threads, chunks of {chunk}"),
                }
            }
        }
        let (json, side) = want.unwrap();
        assert!(String::from_utf8(json).unwrap().starts_with("0,1,2,"));
        assert_eq!(side.len(), 143);
    }

    #[test]
    fn the_first_error_stops_it_and_is_returned() {
        let items: Vec<u32> = (0..10_000).collect();
        let failing = |items: &[u32], out: &mut Rendered| {
            if items.contains(&5_000) {
                return Err("bad item".to_string());
            }
            digits(items, out)
        };
        for threads in [1, 2, 4] {
            let mut sunk = 0;
            let spread = Spread { threads, chunk: 10 };
            let r = render_in_order(&items, spread, &failing, &mut |_| {
                sunk += 1;
                Ok(())
            });
            assert_eq!(r, Err("bad item".to_string()));
            assert_eq!(
                sunk, 500,
                "{threads} threads: the chunks before the bad one"
            );
            let mut calls = 0;
            let r = render_in_order(&items, spread, &digits, &mut |_| {
                calls += 1;
                if calls == 3 {
                    Err("disk full".to_string())
                } else {
                    Ok(())
                }
            });
            assert_eq!(r, Err("disk full".to_string()));
            assert_eq!(calls, 3);
        }
    }
}
