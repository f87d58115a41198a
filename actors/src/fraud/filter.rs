//! A compact in-memory filter of every code ever scanned, for the runtime to put in front of
//! the disk-backed code registry: "never seen" (most scans) is answered without a disk read;
//! "maybe seen" reads the registry entry.
//!
//! It is a split-block Bloom filter (the layout of Parquet's and Impala's filters): 256-bit
//! blocks of eight 32-bit words; a key picks one block with the high half of its hash and sets
//! one bit in each word with the low half, so a lookup touches one cache line and needs no
//! second hash. No false negatives; false positives at a rate set by the bits per key.
//!
//! Memory per billion codes (measured by the tests' sizing formula, confirmed empirically):
//! about 1.36 GB at a 1% false-positive rate (10.9 bits per code), 2.1 GB at 0.1%
//! (16.5 bits per code). A false positive costs one disk read, so 1% is a good trade.

use thiserror::Error;

/// Why a filter could not be made.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum FilterError {
    /// The false-positive rate is not in (0, 1).
    #[error("false-positive rate {0} must be in (0, 1)")]
    BadRate(f64),
    /// Bits per key must be finite and in 1..=64.
    #[error("bits per key {0} must be in 1..=64")]
    BadBits(f64),
    /// More blocks than a 32-bit block index can address (over 128 GiB).
    #[error("{keys} keys at {bits_per_key} bits each need more than 2^32 blocks")]
    TooLarge {
        /// Keys asked for.
        keys: u64,
        /// Bits per key asked for.
        bits_per_key: f64,
    },
}

/// Odd constants that spread the low 32 bits of a hash to one bit per word (Parquet's).
const SALT: [u32; 8] = [
    0x47b6_137b,
    0x4497_4d91,
    0x8824_ad5b,
    0xa2b7_289d,
    0x7054_95c7,
    0x2df1_424b,
    0x9efc_4947,
    0x5c6b_fb31,
];

/// A split-block Bloom filter over byte strings (codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeFilter {
    blocks: Vec<[u32; 8]>,
}

impl CodeFilter {
    /// A filter sized for `keys` codes at about the false-positive rate `fpr`.
    pub fn for_rate(keys: u64, fpr: f64) -> Result<Self, FilterError> {
        Self::with_bits_per_key(keys, bits_per_key_for(fpr)?)
    }

    /// A filter of `keys × bits_per_key` bits, rounded up to whole blocks.
    pub fn with_bits_per_key(keys: u64, bits_per_key: f64) -> Result<Self, FilterError> {
        if !(bits_per_key.is_finite() && (1.0..=64.0).contains(&bits_per_key)) {
            return Err(FilterError::BadBits(bits_per_key));
        }
        let bits = (keys.max(1) as f64) * bits_per_key;
        let n = (bits / 256.0).ceil().max(1.0);
        if n > f64::from(u32::MAX) {
            return Err(FilterError::TooLarge { keys, bits_per_key });
        }
        Ok(CodeFilter {
            blocks: vec![[0; 8]; n as usize],
        })
    }

    /// Adds a code; returns whether it may have been there already (every bit was set).
    pub fn insert(&mut self, code: &[u8]) -> bool {
        let h = hash(code);
        let i = self.block(h);
        let mask = mask(h);
        let b = &mut self.blocks[i];
        let mut present = true;
        for (w, m) in b.iter_mut().zip(mask) {
            present &= *w & m != 0;
            *w |= m;
        }
        present
    }

    /// Whether a code may have been inserted (false: certainly never).
    pub fn contains(&self, code: &[u8]) -> bool {
        self.contains_hash(hash(code))
    }

    /// Adds a key by a 64-bit hash the caller computed (any well-mixed hash; it must use the
    /// same one for [`CodeFilter::contains_hash`]).
    pub fn insert_hash(&mut self, h: u64) {
        let i = self.block(h);
        for (w, m) in self.blocks[i].iter_mut().zip(mask(h)) {
            *w |= m;
        }
    }

    /// Whether a key with this hash may have been added by [`CodeFilter::insert_hash`].
    pub fn contains_hash(&self, h: u64) -> bool {
        let b = &self.blocks[self.block(h)];
        b.iter().zip(mask(h)).all(|(w, m)| w & m != 0)
    }

    /// The filter as bytes (each word little-endian), for a checkpoint.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.blocks.len() * 32);
        for w in self.blocks.iter().flatten() {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b
    }

    /// The filter [`CodeFilter::to_bytes`] wrote; None unless whole non-empty blocks.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.is_empty() || !b.len().is_multiple_of(32) {
            return None;
        }
        let blocks = b
            .chunks_exact(32)
            .map(|c| {
                let mut block = [0u32; 8];
                for (w, x) in block.iter_mut().zip(c.chunks_exact(4)) {
                    *w = u32::from_le_bytes([x[0], x[1], x[2], x[3]]);
                }
                block
            })
            .collect();
        Some(CodeFilter { blocks })
    }

    /// Bytes of memory the bits take.
    pub fn memory_bytes(&self) -> usize {
        self.blocks.len() * 32
    }

    fn block(&self, h: u64) -> usize {
        // multiply-shift maps the high 32 bits onto 0..len without a division
        (((h >> 32) * self.blocks.len() as u64) >> 32) as usize
    }
}

fn mask(h: u64) -> [u32; 8] {
    let low = h as u32;
    SALT.map(|s| 1u32 << (low.wrapping_mul(s) >> 27))
}

/// The expected false-positive rate of a split-block filter at `bits_per_key`: a block
/// receives a Poisson number of keys with mean `256 / bits_per_key`; with `i` keys in it, a
/// word bit is set with probability `1 - (31/32)^i`, and all eight must be.
pub fn rate_at(bits_per_key: f64) -> f64 {
    let lambda = 256.0 / bits_per_key;
    let mut sum = 0.0;
    let mut log_p = -lambda; // ln Poisson(0)
    for i in 0..2_000u32 {
        if i > 0 {
            log_p += lambda.ln() - f64::from(i).ln();
        }
        let set = 1.0 - (31.0f64 / 32.0).powi(i as i32);
        sum += log_p.exp() * set.powi(8);
        if f64::from(i) > lambda && log_p < -40.0 {
            break;
        }
    }
    sum
}

/// The fewest bits per key (in steps of 0.1) that keep the rate at or below `fpr`.
pub fn bits_per_key_for(fpr: f64) -> Result<f64, FilterError> {
    if !(fpr > 0.0 && fpr < 1.0) {
        return Err(FilterError::BadRate(fpr));
    }
    let mut b = 1.0;
    while b <= 64.0 {
        if rate_at(b) <= fpr {
            return Ok(b);
        }
        b += 0.1;
    }
    Err(FilterError::BadRate(fpr))
}

/// A fast 64-bit hash of a byte string (folded multiplications over 8-byte words, murmur
/// finaliser): deterministic across runs and platforms, so a filter could be rebuilt anywhere.
pub fn hash(bytes: &[u8]) -> u64 {
    const K1: u64 = 0x9e37_79b9_7f4a_7c15;
    const K2: u64 = 0xd6e8_feb8_6659_fd93;
    fn fold(a: u64, b: u64) -> u64 {
        let r = u128::from(a) * u128::from(b);
        (r as u64) ^ ((r >> 64) as u64)
    }
    let mut h = 0x243f_6a88_85a3_08d3 ^ (bytes.len() as u64).wrapping_mul(K1);
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut v = [0u8; 8];
        v.copy_from_slice(w);
        h = fold(h ^ u64::from_le_bytes(v), K2);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut v = [0u8; 8];
        v[..rest.len()].copy_from_slice(rest);
        h = fold(h ^ u64::from_le_bytes(v), K1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_survives_its_bytes() {
        let mut f = CodeFilter::for_rate(1000, 0.01).unwrap();
        for i in 0..1000 {
            f.insert(&code(i));
        }
        let g = CodeFilter::from_bytes(&f.to_bytes()).unwrap();
        assert_eq!(f, g);
        assert!((0..1000).all(|i| g.contains(&code(i))));
        assert!(CodeFilter::from_bytes(&[0; 33]).is_none());
        assert!(CodeFilter::from_bytes(&[]).is_none());
    }

    fn code(i: u64) -> Vec<u8> {
        // codes as printed: 12 characters, a shared batch prefix and a serial number
        format!("HZ8K{i:08}").into_bytes()
    }

    #[test]
    fn inserted_codes_are_always_found() {
        let mut f = CodeFilter::for_rate(10_000, 0.01).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..10_000 {
            f.insert(&code(i));
        }
        assert!((0..10_000).all(|i| f.contains(&code(i))));
    }

    #[test]
    fn the_false_positive_rate_is_near_the_sizing_formula() {
        let n = 200_000;
        let mut f = CodeFilter::for_rate(n, 0.01).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..n {
            f.insert(&code(i));
        }
        let probes = 200_000;
        let fp = (n..n + probes).filter(|i| f.contains(&code(*i))).count();
        let rate = fp as f64 / probes as f64;
        assert!((0.005..0.015).contains(&rate), "measured {rate}");
    }

    #[test]
    fn sizing_per_billion_codes_matches_the_module_docs() {
        let at_1 = bits_per_key_for(0.01).unwrap_or(0.0);
        let at_01 = bits_per_key_for(0.001).unwrap_or(0.0);
        assert!((10.5..11.5).contains(&at_1), "{at_1}");
        assert!((15.5..17.5).contains(&at_01), "{at_01}");
        let gb = |b: f64| b * 1e9 / 8.0 / 1e9;
        assert!((1.3..1.45).contains(&gb(at_1)), "{}", gb(at_1));
        assert!(bits_per_key_for(0.0).is_err() && bits_per_key_for(1.0).is_err());
        assert!(CodeFilter::with_bits_per_key(10, 0.5).is_err());
    }

    #[test]
    fn insert_reports_whether_the_code_may_have_been_there() {
        let mut f = CodeFilter::with_bits_per_key(1_000, 16.0).unwrap_or_else(|e| panic!("{e}"));
        assert!(!f.insert(b"A1"));
        assert!(f.insert(b"A1"));
        assert_eq!(
            f.memory_bytes(),
            2_016,
            "16,000 bits in 63 blocks of 32 bytes"
        );
    }

    #[test]
    fn the_hash_depends_on_every_byte_and_the_length() {
        assert_ne!(hash(b"HZ8K00000001"), hash(b"HZ8K00000002"));
        assert_ne!(hash(b"A"), hash(b"A\0"));
        assert_ne!(hash(b""), hash(b"\0"));
        assert_eq!(hash(b"stable"), hash(b"stable"));
    }
}
