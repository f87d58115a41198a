//! Lists of small records kept as one exact-size byte buffer: each record is written as
//! variable-length integers (zigzag LEB128), zero fields left out, times as the difference
//! from the record before. A member's longer histories (days of activity, points lots, orders'
//! points) take a tenth of their in-memory size this way; they are short, so reading one means
//! decoding the list from the start, and changing one means decoding, editing and writing the
//! whole list again. Nothing is rounded or dropped: a list reads back exactly as written, and
//! it serializes as the sequence of its records, the same as a `Vec` of them.

use compact_str::CompactString as Str;
use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, SerializeSeq, Serializer};
use std::fmt;
use std::marker::PhantomData;

/// Appends `v` as an unsigned LEB128 varint (7 bits a byte, low bits first).
pub fn put_u(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `v` zigzag-encoded, so small negative numbers are short too.
pub fn put_i(out: &mut Vec<u8>, v: i64) {
    put_u(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Reads a varint written by [`put_u`] at `*pos` and moves past it (0 past the end: the
/// buffer is only ever written by this module, so that does not happen).
pub fn get_u(b: &[u8], pos: &mut usize) -> u64 {
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

/// Reads a value written by [`put_i`].
pub fn get_i(b: &[u8], pos: &mut usize) -> i64 {
    let u = get_u(b, pos);
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Appends the fields of `vals` that are not zero, after a bit mask saying which they are
/// (bit `i` for `vals[i]`, above the `low` bits the caller uses for flags of its own).
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
pub fn get_fields(b: &[u8], pos: &mut usize, low: u64, vals: &mut [i64]) -> u64 {
    let mask = get_u(b, pos);
    for (i, v) in vals.iter_mut().enumerate() {
        *v = if mask & (1 << (low + i as u64)) != 0 {
            get_i(b, pos)
        } else {
            0
        };
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
        let mut out = Vec::new();
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

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes.len()
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
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for r in self.iter() {
            seq.serialize_element(&r)?;
        }
        seq.end()
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

/// Appends a string as its length and bytes.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Reads a string written by [`put_str`] (empty if the buffer were damaged).
pub fn get_str<'a>(b: &'a [u8], pos: &mut usize) -> &'a str {
    let len = usize::try_from(get_u(b, pos)).unwrap_or(usize::MAX);
    let end = pos.saturating_add(len).min(b.len());
    let s = std::str::from_utf8(b.get(*pos..end).unwrap_or_default()).unwrap_or_default();
    *pos = end;
    s
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
        put_i(out, self.1.wrapping_sub(prev.map_or(0, |p| p.1)));
    }
    fn unpack(prev: Option<&Self>, b: &[u8], pos: &mut usize) -> Self {
        let name = Str::from(get_str(b, pos));
        (name, get_i(b, pos).wrapping_add(prev.map_or(0, |p| p.1)))
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
        put_i(out, self.0.wrapping_sub(prev.map_or(0, |p| p.0)));
        put_i(out, self.1);
    }
    fn unpack(prev: Option<&Self>, b: &[u8], pos: &mut usize) -> Self {
        let at = get_i(b, pos).wrapping_add(prev.map_or(0, |p| p.0));
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
