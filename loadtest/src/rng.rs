//! The generator's own randomness: a seeded xoshiro256** stream, stateless keyed hashes for
//! per-entity attributes, bijective mixers for ids that must never collide, and a Zipf table.
//!
//! Written here instead of taking `rand`: the output must stay byte-identical for a seed
//! across dependency upgrades, and `rand` reserves the right to change its algorithms between
//! versions. The whole thing is a hundred lines.

/// SplitMix64's finaliser: a bijection on u64 that scrambles every input bit.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A keyed hash of (seed, domain, index) for attributes derived without keeping state.
pub fn hash3(seed: u64, domain: u64, idx: u64) -> u64 {
    mix64(mix64(seed ^ domain.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_add(idx))
}

/// A bijection on the low `bits` bits (other bits must be zero), keyed: distinct inputs
/// give distinct outputs, so ids built from a counter are unique by construction.
pub fn mix_bits(x: u64, bits: u32, key: u64) -> u64 {
    let mask = if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let shift = bits / 2;
    // xor with a constant, multiply by an odd number and xor-shift right are each bijective
    // modulo 2^bits, so their composition is too
    let mut z = (x ^ key) & mask;
    for m in [0xbf58_476d_1ce4_e5b9u64, 0x94d0_49bb_1331_11eb] {
        z = z.wrapping_mul(m) & mask;
        z ^= z >> shift;
    }
    // a keyed final xor keeps the bijection and moves the fixed point away from zero, so no
    // id comes out as 000000000000
    z ^ (mix64(key) & mask)
}

/// The seeded random stream (xoshiro256**).
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A stream from a seed (expanded with SplitMix64, so seeds 0 and 1 are fine).
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            mix64(x)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A uniform float in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in [0, n); 0 when n is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Lemire's multiply-shift; the tiny bias is irrelevant for a workload generator
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A uniform integer in [lo, hi] (inclusive).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    /// True with probability p.
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// An exponential variate with this mean (Poisson inter-arrival gaps).
    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.f64()).ln()
    }

    /// Picks an index with probability proportional to its weight; 0 if all are zero.
    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.f64() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
    }
}

/// Zipf-distributed ranks 0..n (rank 0 most likely): P(k) ∝ 1/(k+1)^s, by a cumulative table.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// A table for n ranks with exponent s (n is at least 1).
    pub fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n.max(1));
        let mut acc = 0.0;
        for k in 0..n.max(1) {
            acc += 1.0 / ((k + 1) as f64).powf(s);
            cdf.push(acc);
        }
        Zipf { cdf }
    }

    /// A Zipf–Mandelbrot table, P(k) ∝ 1/(k+1+q)^s, with the offset q chosen so the most
    /// likely rank is at most `cap` times as likely as the average one.
    ///
    /// Pure Zipf over a hundred thousand members gives the top member 8% of all activity,
    /// thousands of scans an hour: a harvesting script, not a heavy buyer.
    pub fn capped(n: usize, s: f64, cap: f64) -> Self {
        let n = n.max(1);
        let top_ratio = |q: f64| {
            let total: f64 = (0..n).map(|k| 1.0 / (k as f64 + 1.0 + q).powf(s)).sum();
            (1.0 / (1.0 + q).powf(s)) * n as f64 / total
        };
        let (mut lo, mut hi) = (0.0f64, n as f64);
        if top_ratio(0.0) > cap {
            for _ in 0..30 {
                let mid = (lo + hi) / 2.0;
                if top_ratio(mid) > cap {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
        } else {
            hi = 0.0;
        }
        let mut cdf = Vec::with_capacity(n);
        let mut acc = 0.0;
        for k in 0..n {
            acc += 1.0 / (k as f64 + 1.0 + hi).powf(s);
            cdf.push(acc);
        }
        Zipf { cdf }
    }

    /// Draws one rank.
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let total = self.cdf.last().copied().unwrap_or(1.0);
        let x = rng.f64() * total;
        self.cdf
            .partition_point(|c| *c <= x)
            .min(self.cdf.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn mix_bits_is_a_bijection_on_small_widths() {
        for bits in [8u32, 12] {
            let n = 1u64 << bits;
            let out: HashSet<u64> = (0..n).map(|x| mix_bits(x, bits, 0x5a5a)).collect();
            assert_eq!(out.len() as u64, n);
            assert!(out.iter().all(|v| *v < n));
        }
    }

    #[test]
    fn same_seed_same_stream_other_seed_other_stream() {
        let a: Vec<u64> = (0..8)
            .map({
                let mut r = Rng::new(42);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..8)
            .map({
                let mut r = Rng::new(42);
                move |_| r.next_u64()
            })
            .collect();
        let c: Vec<u64> = (0..8)
            .map({
                let mut r = Rng::new(43);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn zipf_favours_low_ranks() {
        let z = Zipf::new(1000, 1.0);
        let mut r = Rng::new(1);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[z.sample(&mut r)] += 1;
        }
        // rank 0 should get about twice rank 1 and far more than rank 500
        assert!(
            counts[0] > counts[1] * 3 / 2,
            "{} vs {}",
            counts[0],
            counts[1]
        );
        assert!(counts[0] > 50 * counts[500].max(1));
    }

    #[test]
    fn capped_zipf_bounds_the_top_rank() {
        let z = Zipf::capped(10_000, 1.0, 20.0);
        let mut r = Rng::new(3);
        let mut counts = vec![0u32; 10_000];
        let draws = 1_000_000;
        for _ in 0..draws {
            counts[z.sample(&mut r)] += 1;
        }
        let mean = draws as f64 / 10_000.0;
        let top = f64::from(counts[0]);
        assert!(
            top < 25.0 * mean && top > 12.0 * mean,
            "top {top}, mean {mean}"
        );
        assert!(counts[0] > counts[5_000] * 5, "still skewed");
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = Rng::new(9);
        assert!((0..10_000).all(|_| r.below(7) < 7));
        assert_eq!(r.below(0), 0);
    }
}
