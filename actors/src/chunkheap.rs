//! A binary min-heap whose storage grows in fixed chunks, so that no push ever moves the
//! entries already stored.
//!
//! `std::collections::BinaryHeap` keeps its entries in one vector, which doubles when full:
//! the push that crosses 2^18 pending timers copied ~12 MB into freshly faulted pages, one
//! command taking ~6-10 ms (BENCHMARKS.md, issue #5). Here entry `i` lives at
//! `chunks[i / CHUNK][i % CHUNK]`; a full last chunk gets a new one beside it, and chunks
//! emptied by pops are kept for the next pushes (the heap does not shrink, like `BinaryHeap`).
//! The order of pops is the order of `T` alone, so it is as deterministic as the std heap's.

/// Entries a chunk holds (a power of two).
const SHIFT: u32 = 12;
const CHUNK: usize = 1 << SHIFT;

/// A min-heap over chunked storage.
#[derive(Debug)]
pub(crate) struct ChunkHeap<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for ChunkHeap<T> {
    fn default() -> Self {
        ChunkHeap {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

/// A heap of the items, built in linear time.
impl<T: Ord> FromIterator<T> for ChunkHeap<T> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        let mut h = ChunkHeap::default();
        for x in items {
            h.append(x);
        }
        for i in (0..h.len / 2).rev() {
            h.sift_down(i);
        }
        h
    }
}

impl<T: Ord> ChunkHeap<T> {
    /// Entries held (stale ones included: the caller decides what is stale).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn at(&self, i: usize) -> &T {
        &self.chunks[i >> SHIFT][i & (CHUNK - 1)]
    }

    fn swap(&mut self, i: usize, j: usize) {
        let (ci, oi, cj, oj) = (i >> SHIFT, i & (CHUNK - 1), j >> SHIFT, j & (CHUNK - 1));
        if ci == cj {
            self.chunks[ci].swap(oi, oj);
        } else {
            let (lo, hi, olo, ohi) = if ci < cj {
                (ci, cj, oi, oj)
            } else {
                (cj, ci, oj, oi)
            };
            let (a, b) = self.chunks.split_at_mut(hi);
            std::mem::swap(&mut a[lo][olo], &mut b[0][ohi]);
        }
    }

    /// Stores `x` at the end, without ordering it.
    fn append(&mut self, x: T) {
        let c = self.len >> SHIFT;
        if c == self.chunks.len() {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks[c].push(x);
        self.len += 1;
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let p = (i - 1) / 2;
            if self.at(i) >= self.at(p) {
                break;
            }
            self.swap(i, p);
            i = p;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let l = 2 * i + 1;
            if l >= self.len {
                return;
            }
            let r = l + 1;
            let c = if r < self.len && self.at(r) < self.at(l) {
                r
            } else {
                l
            };
            if self.at(c) >= self.at(i) {
                return;
            }
            self.swap(i, c);
            i = c;
        }
    }

    /// Adds `x`.
    pub(crate) fn push(&mut self, x: T) {
        self.append(x);
        self.sift_up(self.len - 1);
    }

    /// The least entry.
    pub(crate) fn peek(&self) -> Option<&T> {
        (self.len > 0).then(|| self.at(0))
    }

    /// Removes and returns the least entry.
    pub(crate) fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        self.swap(0, self.len - 1);
        self.len -= 1;
        let x = self.chunks[self.len >> SHIFT].pop();
        self.sift_down(0);
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    #[test]
    fn pops_in_order_across_chunks() {
        let n = 3 * CHUNK + 17;
        let mut h = ChunkHeap::default();
        for i in 0..n {
            h.push((i * 7919) % n);
        }
        assert_eq!(h.len(), n);
        let out: Vec<_> = std::iter::from_fn(|| h.pop()).collect();
        assert_eq!(out, (0..n).collect::<Vec<_>>());
        assert_eq!(h.len(), 0);
        assert_eq!(h.peek(), None);
        // emptied chunks are kept and refilled
        h.push(5);
        assert_eq!(h.peek(), Some(&5));
    }

    proptest! {
        /// Any mix of pushes, pops and a rebuild gives what the std heap gives.
        #[test]
        fn same_as_the_std_heap(
            ops in prop::collection::vec((0u8..4, 0u16..500), 0..3_000),
            start in prop::collection::vec(0u16..500, 0..6_000),
        ) {
            let mut h: ChunkHeap<u16> = start.iter().copied().collect();
            let mut std: BinaryHeap<Reverse<u16>> = start.into_iter().map(Reverse).collect();
            for (op, v) in ops {
                if op == 0 {
                    prop_assert_eq!(h.pop(), std.pop().map(|r| r.0));
                } else {
                    h.push(v);
                    std.push(Reverse(v));
                }
                prop_assert_eq!(h.peek(), std.peek().map(|r| &r.0));
                prop_assert_eq!(h.len(), std.len());
            }
        }
    }
}
