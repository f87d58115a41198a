//! Lists of small records kept as one exact-size byte buffer: each record is written as
//! variable-length integers (zigzag LEB128), zero fields left out, times as the difference
//! from the record before and in whole seconds or milliseconds when they are. A member's
//! lists (days of activity, points lots, stores, channels) take a tenth of their in-memory
//! size this way. Reading a list decodes it from the start; changing a record rewrites the
//! list, or only its end when the change is at the end (today's activity, a new lot), which is
//! where nearly all changes are. Lists that grow with a member's history switch to a plain
//! vector past [`PACKED_MAX`] records ([`Compact`]), so long histories cost what they did
//! before. Nothing is rounded or dropped: a list reads back exactly as written, and it
//! serializes as the sequence of its records, the same as a `Vec` of them.

use compact_str::CompactString as Str;
use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;

/// Appends `v` as an unsigned LEB128 varint (7 bits a byte, low bits first).
#[inline]
pub fn put_u(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `v` zigzag-encoded, so small negative numbers are short too.
#[inline]
pub fn put_i(out: &mut Vec<u8>, v: i64) {
    put_u(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Reads a varint written by [`put_u`] at `*pos` and moves past it (0 past the end: the
/// buffer is only ever written by this module, so that does not happen).
#[inline]
pub fn get_u(b: &[u8], pos: &mut usize) -> u64 {
    // most values are one byte
    if let Some(&byte) = b.get(*pos) {
        if byte < 0x80 {
            *pos += 1;
            return u64::from(byte);
        }
    }
    let mut v = 0u64;
    let mut shift = 0;
    while let Some(&byte) = b.get(*pos) {
        *pos += 1;
        if shift < 64 {
            v |= u64::from(byte & 0x7f) << shift;
        }
        if byte < 0x80 {
            break;
        }
        shift += 7;
    }
    v
}

/// Moves past a varint written by [`put_u`] without reading it.
#[inline]
pub fn skip_u(b: &[u8], pos: &mut usize) {
    while let Some(&byte) = b.get(*pos) {
        *pos += 1;
        if byte < 0x80 {
            break;
        }
    }
}

/// Reads a value written by [`put_i`].
#[inline]
pub fn get_i(b: &[u8], pos: &mut usize) -> i64 {
    let u = get_u(b, pos);
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Appends the fields of `vals` that are not zero, after a bit mask saying which they are
/// (bit `i` for `vals[i]`, above the `low` bits the caller uses for flags of its own).
#[inline]
pub fn put_fields(out: &mut Vec<u8>, low: u64, flags: u64, vals: &[i64]) {
    let mut mask = flags;
    for (i, v) in vals.iter().enumerate() {
        if *v != 0 {
            mask |= 1 << (low + i as u64);
        }
    }
    put_u(out, mask);
    for v in vals.iter().filter(|v| **v != 0) {
        put_i(out, *v);
    }
}

/// Reads what [`put_fields`] wrote into `vals`; returns the caller's `low` flag bits.
#[inline]
pub fn get_fields(b: &[u8], pos: &mut usize, low: u64, vals: &mut [i64]) -> u64 {
    let mask = get_u(b, pos);
    vals.fill(0);
    // only the fields written, lowest bit first (as `put_fields` wrote them)
    let mut set = mask >> low;
    while set != 0 {
        let i = set.trailing_zeros() as usize;
        if let Some(v) = vals.get_mut(i) {
            *v = get_i(b, pos);
        }
        set &= set - 1;
    }
    mask & ((1 << low) - 1)
}

/// A record that can be kept in a [`Packed`] list. `prev` is the record written just before
/// (None for the first), so times and day numbers can be written as differences.
pub trait Pack: Clone {
    /// Appends this record.
    fn pack(&self, prev: Option<&Self>, out: &mut Vec<u8>);
    /// Reads a record written by `pack` with the same `prev`.
    fn unpack(prev: Option<&Self>, b: &[u8], pos: &mut usize) -> Self;
}

/// A list of records in one byte buffer with no spare capacity.
#[derive(Clone, PartialEq, Eq)]
pub struct Packed<T> {
    bytes: Box<[u8]>,
    of: PhantomData<T>,
}

impl<T> Default for Packed<T> {
    fn default() -> Self {
        Packed {
            bytes: Box::default(),
            of: PhantomData,
        }
    }
}

impl<T: Pack> Packed<T> {
    /// The records, first to last.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            bytes: &self.bytes,
            pos: 0,
            prev: None,
        }
    }

    /// The first record.
    pub fn first(&self) -> Option<T> {
        self.iter().next()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The records as written, for readers that decode only what they need.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Replaces the first `end` bytes with `head` (in place when they are as long): for a
    /// caller that rewrites the front records itself and leaves the list whole.
    pub fn splice_front(&mut self, end: usize, head: &[u8]) {
        match self.bytes.get_mut(..end) {
            Some(old) if old.len() == head.len() => old.copy_from_slice(head),
            _ => {
                let rest = self.bytes.get(end..).unwrap_or_default();
                let mut out = Vec::with_capacity(head.len() + rest.len());
                out.extend_from_slice(head);
                out.extend_from_slice(rest);
                self.bytes = out.into_boxed_slice();
            }
        }
    }

    /// Whether `r` is one of the records.
    pub fn contains(&self, r: &T) -> bool
    where
        T: PartialEq,
    {
        self.iter().any(|x| x == *r)
    }

    /// The records as a vector.
    pub fn to_vec(&self) -> Vec<T> {
        self.iter().collect()
    }

    /// Replaces the records.
    pub fn set(&mut self, records: &[T]) {
        let mut out = Vec::with_capacity(self.bytes.len() + 16);
        let mut prev = None;
        for r in records {
            r.pack(prev, &mut out);
            prev = Some(r);
        }
        self.bytes = out.into_boxed_slice();
    }

    /// Changes the records through a vector of them, and writes them back.
    pub fn edit<R>(&mut self, f: impl FnOnce(&mut Vec<T>) -> R) -> R {
        let mut v = self.to_vec();
        let r = f(&mut v);
        self.set(&v);
        r
    }

    /// The last record, with the one before it and where it starts.
    pub fn last(&self) -> Option<Last<T>> {
        let mut it = self.iter();
        let (mut at, mut prev, mut last, mut n) = (0, None, None, 0);
        loop {
            let pos = it.pos;
            match it.next() {
                Some(r) => {
                    prev = last.replace(r);
                    at = pos;
                    n += 1;
                }
                None => break,
            }
        }
        last.map(|record| Last {
            at,
            index: n - 1,
            prev,
            record,
        })
    }

    /// Replaces the records from byte `at` on (a [`Last::at`], or the end) with `records`,
    /// written after `prev`: changes at the end of the list leave the rest as it is.
    pub fn replace_from(&mut self, at: usize, prev: Option<&T>, records: &[T]) {
        let mut tail = Vec::with_capacity(16 * records.len());
        let mut prev = prev;
        for r in records {
            r.pack(prev, &mut tail);
            prev = Some(r);
        }
        match self.bytes.get_mut(at..) {
            // the same length (a count that still fits its bytes): written in place
            Some(old) if old.len() == tail.len() => old.copy_from_slice(&tail),
            _ => {
                let mut out = Vec::with_capacity(at + tail.len());
                out.extend_from_slice(self.bytes.get(..at).unwrap_or_default());
                out.extend_from_slice(&tail);
                self.bytes = out.into_boxed_slice();
            }
        }
    }

    /// The position past the last record, to append with [`Packed::replace_from`].
    pub fn end(&self) -> usize {
        self.bytes.len()
    }

    /// Replaces the first `n` records with `records`: for a list kept newest first, where
    /// the changes are (today's record, a new day). Only the front is decoded and written: the
    /// record after the replaced ones is written again after the new ones (it may be written
    /// as a difference from them), the rest is left as it is.
    pub fn replace_front(&mut self, n: usize, records: &[T]) {
        let mut it = self.iter();
        for _ in 0..n {
            it.next();
        }
        let next = it.next();
        let end = it.pos;
        let mut head = Vec::with_capacity(16 * (records.len() + 1));
        let mut prev = None;
        for r in records.iter().chain(next.as_ref()) {
            r.pack(prev, &mut head);
            prev = Some(r);
        }
        match self.bytes.get_mut(..end) {
            // the same length (a count that still fits its bytes): written in place
            Some(old) if old.len() == head.len() => old.copy_from_slice(&head),
            _ => {
                let rest = self.bytes.get(end..).unwrap_or_default();
                head.reserve_exact(rest.len());
                head.extend_from_slice(rest);
                self.bytes = head.into_boxed_slice();
            }
        }
    }
}

impl Packed<Str> {
    /// Whether `s` is one of the strings (compared as bytes, nothing decoded).
    pub fn has(&self, s: &str) -> bool {
        let mut pos = 0;
        while pos < self.bytes.len() {
            if get_bytes(&self.bytes, &mut pos) == s.as_bytes() {
                return true;
            }
        }
        false
    }

    /// Whether the strings are `v`, in order (compared as bytes, nothing decoded).
    pub fn is(&self, v: &[Str]) -> bool {
        let mut pos = 0;
        for s in v {
            if pos >= self.bytes.len() || get_bytes(&self.bytes, &mut pos) != s.as_bytes() {
                return false;
            }
        }
        pos == self.bytes.len()
    }
}

/// Records a list keeps packed while it is short.
pub const PACKED_MAX: usize = 32;

/// A list that grows with a member's history (days of activity, points lots): packed while it
/// holds at most [`PACKED_MAX`] records, as most members' lists do, and a plain vector beyond,
/// so a long history is not decoded and rewritten whole on every event. Which form a list is
/// in depends only on its length, so equal lists are equal in form too.
#[derive(Clone, PartialEq, Eq)]
pub enum Compact<T> {
    /// Short: packed.
    Packed(Packed<T>),
    /// Long: plain.
    Plain(Vec<T>),
}

impl<T> Default for Compact<T> {
    fn default() -> Self {
        Compact::Packed(Packed::default())
    }
}

impl<T: Pack> Compact<T> {
    /// The records, first to last.
    pub fn iter(&self) -> CompactIter<'_, T> {
        match self {
            Compact::Packed(p) => CompactIter::Packed(p.iter()),
            Compact::Plain(v) => CompactIter::Plain(v.iter()),
        }
    }

    /// The first record.
    pub fn first(&self) -> Option<T> {
        self.iter().next()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        match self {
            Compact::Packed(p) => p.len(),
            Compact::Plain(v) => v.len(),
        }
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        match self {
            Compact::Packed(p) => p.is_empty(),
            Compact::Plain(v) => v.is_empty(),
        }
    }

    /// The records as a vector.
    pub fn to_vec(&self) -> Vec<T> {
        self.iter().collect()
    }

    /// Calls `f` with the records as a slice (decoded only when packed, onto the stack).
    pub fn with_slice<R>(&self, f: impl FnOnce(&[T]) -> R) -> R
    where
        T: Copy + Default,
    {
        match self {
            Compact::Packed(p) => {
                let mut buf = [T::default(); PACKED_MAX];
                let mut n = 0;
                let mut it = p.iter();
                for (slot, r) in buf.iter_mut().zip(&mut it) {
                    *slot = r;
                    n += 1;
                }
                if it.pos < p.bytes.len() {
                    // more than a packed list holds: not written so, but decoded whole anyway
                    return f(&p.to_vec());
                }
                f(buf.get(..n).unwrap_or_default())
            }
            Compact::Plain(v) => f(v),
        }
    }

    /// Replaces the records.
    pub fn set(&mut self, records: Vec<T>) {
        if records.len() > PACKED_MAX {
            *self = Compact::Plain(records);
        } else {
            let mut p = Packed::default();
            p.set(&records);
            *self = Compact::Packed(p);
        }
    }

    /// Changes the records through a vector of them.
    pub fn edit<R>(&mut self, f: impl FnOnce(&mut Vec<T>) -> R) -> R {
        let mut v = match std::mem::take(self) {
            Compact::Packed(p) => p.to_vec(),
            Compact::Plain(v) => v,
        };
        let r = f(&mut v);
        self.set(v);
        r
    }

    /// The last record, with the one before it and its position.
    pub fn last(&self) -> Option<Last<T>> {
        match self {
            Compact::Packed(p) => p.last(),
            Compact::Plain(v) => {
                let at = v.len().checked_sub(1)?;
                Some(Last {
                    at,
                    index: at,
                    prev: at.checked_sub(1).and_then(|i| v.get(i)).cloned(),
                    record: v.get(at)?.clone(),
                })
            }
        }
    }

    /// The position past the last record.
    pub fn end(&self) -> usize {
        match self {
            Compact::Packed(p) => p.end(),
            Compact::Plain(v) => v.len(),
        }
    }

    /// Replaces the records from position `at` on (a [`Last::at`] or [`Compact::end`]) with
    /// `records`, which follow `prev`; `before` records precede position `at` (a
    /// [`Last::index`], or the length), so the list is not counted again.
    pub fn replace_from(&mut self, at: usize, before: usize, prev: Option<&T>, records: &[T]) {
        match self {
            Compact::Packed(p) => {
                p.replace_from(at, prev, records);
                if before + records.len() > PACKED_MAX {
                    let v = p.to_vec();
                    self.set(v);
                }
            }
            Compact::Plain(v) => {
                v.truncate(at);
                v.extend_from_slice(records);
                if v.len() <= PACKED_MAX {
                    let v = std::mem::take(v);
                    self.set(v);
                }
            }
        }
    }
}

impl<T: Pack> Compact<T> {
    /// Replaces the first `n` records with `records` (see [`Packed::replace_front`]).
    pub fn replace_front(&mut self, n: usize, records: &[T]) {
        match self {
            Compact::Packed(p) => {
                p.replace_front(n, records);
                // only a list that grew can be too long to stay packed
                if records.len() > n && p.len() > PACKED_MAX {
                    let v = p.to_vec();
                    self.set(v);
                }
            }
            Compact::Plain(v) => {
                let n = n.min(v.len());
                v.splice(..n, records.iter().cloned());
                if v.len() <= PACKED_MAX {
                    let v = std::mem::take(v);
                    self.set(v);
                }
            }
        }
    }
}

impl Compact<(i64, i64)> {
    /// [`Compact::last`] for `(time, amount)` pairs, reading only the times before the last
    /// two records (appending a points lot needs the last time, and the amounts are skipped).
    pub fn last_pair(&self) -> Option<Last<(i64, i64)>> {
        let Compact::Packed(p) = self else {
            return self.last();
        };
        let b = &p.bytes;
        let (mut pos, mut t, mut n) = (0, 0i64, 0usize);
        // (start, time, start of the amount) of the last record, then of the one before
        let mut last: Option<(usize, i64, usize)> = None;
        let mut before: Option<(i64, usize)> = None;
        while pos < b.len() {
            let start = pos;
            t = get_time(b, &mut pos).wrapping_add(t);
            let amount_at = pos;
            skip_u(b, &mut pos);
            before = last.map(|(_, t, a)| (t, a)).or(before);
            last = Some((start, t, amount_at));
            n += 1;
        }
        let amount = |mut at: usize| get_i(b, &mut at);
        last.map(|(at, t, a)| Last {
            at,
            index: n - 1,
            prev: before.filter(|_| n > 1).map(|(t, a)| (t, amount(a))),
            record: (t, amount(a)),
        })
    }
}

/// The records of a [`Compact`] list.
pub enum CompactIter<'a, T> {
    /// Decoded one by one.
    Packed(Iter<'a, T>),
    /// Copied one by one.
    Plain(std::slice::Iter<'a, T>),
}

impl<T: Pack> Iterator for CompactIter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        match self {
            CompactIter::Packed(i) => i.next(),
            CompactIter::Plain(i) => i.next().cloned(),
        }
    }
}

impl<T: Pack + fmt::Debug> fmt::Debug for Compact<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: Pack + Serialize> Serialize for Compact<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::cold::seq(s, || self.len(), self.iter())
    }
}

impl<'de, T: Pack + Deserialize<'de>> Deserialize<'de> for Compact<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut c = Compact::default();
        c.set(Vec::deserialize(d)?);
        Ok(c)
    }
}

impl<T: Pack> FromIterator<T> for Packed<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let v: Vec<T> = iter.into_iter().collect();
        let mut p = Packed::default();
        p.set(&v);
        p
    }
}

/// The last record of a [`Packed`] list.
pub struct Last<T> {
    /// Where it starts.
    pub at: usize,
    /// How many records are before it.
    pub index: usize,
    /// The record before it.
    pub prev: Option<T>,
    /// The record.
    pub record: T,
}

/// The records of a [`Packed`] list, decoded one by one.
pub struct Iter<'a, T> {
    bytes: &'a [u8],
    pos: usize,
    prev: Option<T>,
}

impl<T: Pack> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        if self.pos >= self.bytes.len() {
            return None;
        }
        let r = T::unpack(self.prev.as_ref(), self.bytes, &mut self.pos);
        self.prev = Some(r.clone());
        Some(r)
    }
}

impl<T: Pack + fmt::Debug> fmt::Debug for Packed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: Pack + Serialize> Serialize for Packed<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::cold::seq(s, || self.len(), self.iter())
    }
}

impl<'de, T: Pack + Deserialize<'de>> Deserialize<'de> for Packed<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v: Vec<T> = Vec::deserialize(d)?;
        let mut p = Packed::default();
        p.set(&v);
        Ok(p)
    }
}

/// Appends a time or a difference of times (µs), shorter when it is whole milliseconds or
/// whole seconds, as event times usually are: the two low bits say which.
pub fn put_time(out: &mut Vec<u8>, us: i64) {
    let zz = |v: i64| ((v << 1) ^ (v >> 63)) as u64;
    let v = if us % 1_000_000 == 0 {
        zz(us / 1_000_000) << 2 | 2
    } else if us % 1_000 == 0 {
        zz(us / 1_000) << 2 | 1
    } else {
        // a µs time needs 61 bits at most (64 - the sign after zigzag - the 2 tag bits would
        // not hold i64::MAX), so the widest values go whole, tagged 3
        let z = zz(us);
        if z >> 62 == 0 {
            z << 2
        } else {
            put_u(out, 3);
            put_u(out, z);
            return;
        }
    };
    put_u(out, v);
}

/// Reads a value written by [`put_time`].
pub fn get_time(b: &[u8], pos: &mut usize) -> i64 {
    let unzz = |u: u64| ((u >> 1) as i64) ^ -((u & 1) as i64);
    let v = get_u(b, pos);
    match v & 3 {
        2 => unzz(v >> 2).wrapping_mul(1_000_000),
        1 => unzz(v >> 2).wrapping_mul(1_000),
        0 => unzz(v >> 2),
        _ => unzz(get_u(b, pos)),
    }
}

/// Appends a string as its length and bytes.
#[inline]
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Reads the bytes of a string written by [`put_str`], unchecked.
#[inline]
pub fn get_bytes<'a>(b: &'a [u8], pos: &mut usize) -> &'a [u8] {
    let len = usize::try_from(get_u(b, pos)).unwrap_or(usize::MAX);
    let end = pos.saturating_add(len).min(b.len());
    let s = b.get(*pos..end).unwrap_or_default();
    *pos = end;
    s
}

/// Reads a string written by [`put_str`] (empty if the buffer were damaged).
#[inline]
pub fn get_str<'a>(b: &'a [u8], pos: &mut usize) -> &'a str {
    std::str::from_utf8(get_bytes(b, pos)).unwrap_or_default()
}

/// Changes a boxed slice through a vector and boxes the result again, without spare room.
pub fn edit_boxed<T, R>(b: &mut Box<[T]>, f: impl FnOnce(&mut Vec<T>) -> R) -> R {
    let mut v = std::mem::take(b).into_vec();
    let r = f(&mut v);
    *b = v.into_boxed_slice();
    r
}

impl Pack for Str {
    fn pack(&self, _: Option<&Self>, out: &mut Vec<u8>) {
        put_str(out, self);
    }
    fn unpack(_: Option<&Self>, b: &[u8], pos: &mut usize) -> Self {
        Str::from(get_str(b, pos))
    }
}

impl Pack for (Str, i64) {
    /// `(name, time)`: the time as the difference from the record before.
    fn pack(&self, prev: Option<&Self>, out: &mut Vec<u8>) {
        put_str(out, &self.0);
        put_time(out, self.1.wrapping_sub(prev.map_or(0, |p| p.1)));
    }
    fn unpack(prev: Option<&Self>, b: &[u8], pos: &mut usize) -> Self {
        let name = Str::from(get_str(b, pos));
        (name, get_time(b, pos).wrapping_add(prev.map_or(0, |p| p.1)))
    }
}

impl Pack for (Str, i64, u32) {
    /// `(name, day, count)`.
    fn pack(&self, _: Option<&Self>, out: &mut Vec<u8>) {
        put_str(out, &self.0);
        put_i(out, self.1);
        put_u(out, u64::from(self.2));
    }
    fn unpack(_: Option<&Self>, b: &[u8], pos: &mut usize) -> Self {
        let name = Str::from(get_str(b, pos));
        let day = get_i(b, pos);
        // written from a u32
        (name, day, get_u(b, pos) as u32)
    }
}

impl Pack for (i64, i64) {
    /// `(time, amount)`: the time as the difference from the record before.
    fn pack(&self, prev: Option<&Self>, out: &mut Vec<u8>) {
        put_time(out, self.0.wrapping_sub(prev.map_or(0, |p| p.0)));
        put_i(out, self.1);
    }
    fn unpack(prev: Option<&Self>, b: &[u8], pos: &mut usize) -> Self {
        let at = get_time(b, pos).wrapping_add(prev.map_or(0, |p| p.0));
        (at, get_i(b, pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any list of pairs, extreme values included, reads back exactly and serializes as
        /// the same list in a vector does.
        #[test]
        fn pairs_read_back_exactly(v in proptest::collection::vec((any::<i64>(), any::<i64>()), 0..40)) {
            let p: Packed<(i64, i64)> = v.iter().copied().collect();
            prop_assert_eq!(p.to_vec(), v.clone());
            prop_assert_eq!(p.len(), v.len());
            let json = serde_json::to_string(&p).unwrap();
            prop_assert_eq!(&json, &serde_json::to_string(&v).unwrap());
            let back: Packed<(i64, i64)> = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, p);
        }

        /// Named records (stores, caps) read back exactly and serialize as a vector does.
        #[test]
        fn named_records_read_back_exactly(v in proptest::collection::vec(("\\PC{0,30}", any::<i64>(), any::<u32>()), 0..20)) {
            let v: Vec<(Str, i64, u32)> = v.into_iter().map(|(s, t, n)| (Str::from(s), t, n)).collect();
            let p: Packed<(Str, i64, u32)> = v.iter().cloned().collect();
            prop_assert_eq!(p.to_vec(), v.clone());
            prop_assert_eq!(serde_json::to_string(&p).unwrap(), serde_json::to_string(&v).unwrap());
            let pairs: Vec<(Str, i64)> = v.iter().map(|(s, t, _)| (s.clone(), *t)).collect();
            let q: Packed<(Str, i64)> = pairs.iter().cloned().collect();
            prop_assert_eq!(q.to_vec(), pairs);
            let names: Vec<Str> = v.iter().map(|r| r.0.clone()).collect();
            let r: Packed<Str> = names.iter().cloned().collect();
            prop_assert_eq!(r.to_vec(), names);
        }

        /// Replacing the front of a list (kept newest first) gives what replacing it in a
        /// vector gives, packed or plain, across the packed limit.
        #[test]
        fn front_replaced_exactly(
            v in proptest::collection::vec((any::<i64>(), any::<i64>()), 0..40),
            new in proptest::collection::vec((any::<i64>(), any::<i64>()), 0..3),
            n in 0usize..2,
        ) {
            let mut c = Compact::default();
            c.set(v.clone());
            c.replace_front(n, &new);
            let mut want = v.clone();
            let n = n.min(want.len());
            want.splice(..n, new.iter().copied());
            prop_assert_eq!(c.to_vec(), want.clone());
            let mut same = Compact::default();
            same.set(want);
            prop_assert_eq!(c, same);
        }

        /// The last pair read by skipping the amounts is the last pair decoded, with the one
        /// before it and where it is, packed or plain.
        #[test]
        fn last_pair_is_the_last(v in proptest::collection::vec((any::<i64>(), any::<i64>()), 0..40)) {
            let mut c = Compact::default();
            c.set(v);
            let got = c.last_pair().map(|l| (l.at, l.index, l.prev, l.record));
            let want = c.last().map(|l| (l.at, l.index, l.prev, l.record));
            prop_assert_eq!(got, want);
        }

        /// Times read back exactly, whatever their precision.
        #[test]
        fn times_read_back_exactly(t in prop_oneof![any::<i64>(), any::<i32>().prop_map(|s| i64::from(s) * 1_000_000), any::<i32>().prop_map(|s| i64::from(s) * 1_000), Just(i64::MIN), Just(i64::MAX)]) {
            let mut out = Vec::new();
            put_time(&mut out, t);
            let mut pos = 0;
            prop_assert_eq!(get_time(&out, &mut pos), t);
            prop_assert_eq!(pos, out.len());
        }

        /// Masked fields read back exactly, flags included.
        #[test]
        fn fields_read_back_exactly(vals in proptest::collection::vec(any::<i64>(), 0..12), flags in 0u64..4) {
            let mut out = Vec::new();
            put_fields(&mut out, 2, flags, &vals);
            let mut got = vec![7; vals.len()];
            let mut pos = 0;
            prop_assert_eq!(get_fields(&out, &mut pos, 2, &mut got), flags);
            prop_assert_eq!(got, vals);
            prop_assert_eq!(pos, out.len());
        }
    }
}
