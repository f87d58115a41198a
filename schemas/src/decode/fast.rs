//! The fast path's JSON reader: fills a [`Wire`] straight from the text, without serde.
//!
//! serde_json's map and key plumbing, its string scanner and its number parser were about 40%
//! of decoding a scan. This reader knows the contract's keys and reads them in one pass,
//! borrowing every string from the input. It only handles the plain shapes real events have;
//! on anything else it gives up (`None`) and the caller reads the text again with serde, so
//! every error, reason and field path stays exactly what serde's path produces. The rule it
//! keeps: whatever it accepts, serde accepts too and reads into the same [`Wire`].
//!
//! It gives up on: a backslash or a control character in a string (escapes are rare; serde
//! decodes them), a repeated known key (serde's error names it), numbers it cannot convert
//! exactly as serde_json does (exponents, more than 15 significant digits for a float or 18
//! for an integer, `-0` where an integer is wanted), a value of the wrong type, nesting deeper
//! than [`MAX_SKIP_DEPTH`] inside an unknown field, and any syntax error.

use super::{field_index, MapOnly, Wire, WireGeo, WireIds, WireLine, WireRegion, S};
use std::borrow::Cow;

/// Deepest nesting skipped inside a field the contract does not name (serde allows 128).
const MAX_SKIP_DEPTH: u32 = 16;

/// Most digits of a float read here: below 2^53, so the significand is exact in an f64.
const MAX_FLOAT_DIGITS: usize = 15;

/// Most digits of an integer read here: always fits an i64 (serde_json takes up to 20).
const MAX_INT_DIGITS: usize = 18;

/// Powers of ten exact in an f64, divisors for up to [`MAX_FLOAT_DIGITS`] decimals.
const POW10: [f64; MAX_FLOAT_DIGITS + 1] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// Reads one JSON object (and nothing after it but whitespace) into `w`, which starts empty.
/// `None`: not read here; `w` is then partly filled and must be discarded.
pub(super) fn read<'a>(w: &mut Wire<'a>, text: &'a str) -> Option<()> {
    let mut r = Reader {
        b: text.as_bytes(),
        text,
        i: 0,
    };
    r.ws();
    r.eat(b'{')?;
    let mut seen: u64 = 0;
    r.members_by(Reader::top_key, |r, key| {
        let Some(i) = key else {
            w.unknown = true;
            return r.skip(0);
        };
        if seen & (1 << i) != 0 {
            return None; // serde reports the duplicate
        }
        seen |= 1 << i;
        w.seen = seen;
        // the 22 string fields share one call site, their slot looked up by index
        if let Some(slot) = text_slot(w, i) {
            *slot = r.opt_str()?;
            return Some(());
        }
        match i {
            22 => w.member = r.ids()?,
            23 => w.geo = r.geo()?,
            24 => w.lines = r.lines()?,
            25 => w.qty = r.opt_int()?,
            26 => w.safety = r.opt_int()?,
            27 => w.amount = r.opt_int()?,
            28 => w.credit_limit = r.opt_int()?,
            29 => w.points_redeemed = r.opt_int()?,
            30 => w.duration_s = r.opt_int()?,
            31 => w.region = r.region()?,
            _ => return None,
        }
        Some(())
    })?;
    r.ws();
    (r.i == r.b.len()).then_some(())
}

/// The string field at this index of `FIELDS`, if it is one.
#[inline]
fn text_slot<'w, 'a>(w: &'w mut Wire<'a>, i: usize) -> Option<&'w mut S<'a>> {
    Some(match i {
        0 => &mut w.id,
        1 => &mut w.ty,
        2 => &mut w.ts,
        3 => &mut w.channel,
        4 => &mut w.code,
        5 => &mut w.sku,
        6 => &mut w.campaign,
        7 => &mut w.device,
        8 => &mut w.ip,
        9 => &mut w.store,
        10 => &mut w.target,
        11 => &mut w.order,
        12 => &mut w.status,
        13 => &mut w.kind,
        14 => &mut w.location,
        15 => &mut w.dealer,
        16 => &mut w.visitor,
        17 => &mut w.rep,
        18 => &mut w.op,
        19 => &mut w.batch,
        20 => &mut w.prefix,
        21 => &mut w.reference,
        _ => return None,
    })
}

/// The index in `FIELDS` of the contract's name at the start of `rest` (the text after a key's
/// opening quote) and the length of that name with its closing quote; `None` if no name
/// matches exactly (then the key is read the general way, with the same result).
#[inline]
fn known_key(rest: &[u8]) -> Option<(usize, usize)> {
    macro_rules! names {
        ($($name:literal => $i:expr),+) => {{
            $(
                if rest.starts_with($name) {
                    return Some(($i, $name.len()));
                }
            )+
            None
        }};
    }
    match rest.first()? {
        b'i' => names!(b"id\"" => 0, b"ip\"" => 8),
        b't' => names!(b"type\"" => 1, b"ts\"" => 2, b"target\"" => 10),
        b'c' => {
            names!(b"channel\"" => 3, b"code\"" => 4, b"campaign\"" => 6, b"credit_limit\"" => 28)
        }
        b's' => names!(b"sku\"" => 5, b"store\"" => 9, b"status\"" => 12, b"safety\"" => 26),
        b'd' => names!(b"device\"" => 7, b"dealer\"" => 15, b"duration_s\"" => 30),
        b'o' => names!(b"order\"" => 11, b"op\"" => 18),
        b'k' => names!(b"kind\"" => 13),
        b'l' => names!(b"location\"" => 14, b"lines\"" => 24),
        b'v' => names!(b"visitor\"" => 16),
        b'r' => names!(b"rep\"" => 17, b"ref\"" => 21, b"region\"" => 31),
        b'b' => names!(b"batch\"" => 19),
        b'p' => names!(b"prefix\"" => 20, b"points_redeemed\"" => 29),
        b'm' => names!(b"member\"" => 22),
        b'g' => names!(b"geo\"" => 23),
        b'q' => names!(b"qty\"" => 25),
        b'a' => names!(b"amount\"" => 27),
        _ => None,
    }
}

/// A cursor over the text. Every method returns `None` to give up.
struct Reader<'a> {
    b: &'a [u8],
    text: &'a str,
    i: usize,
}

impl<'a> Reader<'a> {
    /// Skips JSON whitespace (the four bytes serde_json skips).
    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        if self.peek()? == c {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    fn lit(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.i..)?.starts_with(word) {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    /// The members of an object whose `{` was just read, up to and including its `}`; `f`
    /// reads each value, the cursor on its first byte.
    #[inline]
    fn members(&mut self, f: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.members_by(Self::string, f)
    }

    /// [`Self::members`] with the keys read by `key`.
    #[inline]
    fn members_by<K>(
        &mut self,
        mut key: impl FnMut(&mut Self) -> Option<K>,
        mut f: impl FnMut(&mut Self, K) -> Option<()>,
    ) -> Option<()> {
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let key = key(self)?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            f(self, key)?;
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// The elements of an array whose `[` was just read, up to and including its `]`.
    fn elements(&mut self, mut f: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.ws();
        if self.peek()? == b']' {
            self.i += 1;
            return Some(());
        }
        loop {
            f(self)?;
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A string without escapes or control characters, borrowed from the text.
    #[inline]
    fn string(&mut self) -> Option<&'a str> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.i + 1;
        let end = start + plain_len(self.b.get(start..)?)?;
        self.i = end + 1;
        // both ends are at an ASCII quote, so on character boundaries
        self.text.get(start..end)
    }

    /// A top-level key: the index in `FIELDS` of a name the contract knows, `None` for another.
    /// The contract's names are recognised by comparing the text with the few names that start
    /// with its first letter (constant-length compares, which the compiler inlines): scanning a
    /// short key for its closing quote cost more than the compare.
    #[inline]
    fn top_key(&mut self) -> Option<Option<usize>> {
        if self.peek()? != b'"' {
            return None;
        }
        if let Some((i, len)) = self.b.get(self.i + 1..).and_then(known_key) {
            self.i += 1 + len;
            return Some(Some(i));
        }
        self.string().map(field_index)
    }

    fn null(&mut self) -> Option<()> {
        self.lit(b"null")
    }

    /// A string field; `null` counts as absent. (Inlined: returned through memory, the
    /// 32-byte result cost a store-forwarding stall per field.)
    #[inline(always)]
    fn opt_str(&mut self) -> Option<S<'a>> {
        match self.peek()? {
            b'"' => Some(Some(Cow::Borrowed(self.string()?))),
            b'n' => self.null().map(|()| None),
            _ => None,
        }
    }

    /// An integer field; `null` counts as absent.
    fn opt_int(&mut self) -> Option<Option<i64>> {
        match self.peek()? {
            b'n' => self.null().map(|()| None),
            _ => self.int().map(Some),
        }
    }

    /// An integer as serde_json gives it to an i64: no fraction or exponent (serde_json reads
    /// those as floats, which an i64 refuses), and not `-0` (also a float to serde_json).
    fn int(&mut self) -> Option<i64> {
        let neg = self.peek()? == b'-';
        if neg {
            self.i += 1;
        }
        let start = self.i;
        let mut v: i64 = 0;
        while let Some(&c @ b'0'..=b'9') = self.b.get(self.i) {
            if self.i - start == MAX_INT_DIGITS {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
            self.i += 1;
        }
        let digits = self.i - start;
        if digits == 0 || (self.b[start] == b'0' && (digits > 1 || neg)) {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = self.peek() {
            return None;
        }
        Some(if neg { -v } else { v })
    }

    /// A float field; `null` counts as absent.
    fn opt_float(&mut self) -> Option<Option<f64>> {
        match self.peek()? {
            b'n' => self.null().map(|()| None),
            _ => self.float().map(Some),
        }
    }

    /// A number read as an f64, for the numbers whose significand and divisor are both exact
    /// in an f64: then one division is correctly rounded, as serde_json's reading is (it is
    /// built with `float_roundtrip`), and an integer gives what serde_json's `as f64` gives.
    fn float(&mut self) -> Option<f64> {
        let neg = self.peek()? == b'-';
        if neg {
            self.i += 1;
        }
        let start = self.i;
        let mut sig: u64 = 0;
        let mut digits = 0;
        while let Some(&c @ b'0'..=b'9') = self.b.get(self.i) {
            digits += 1;
            if digits > MAX_FLOAT_DIGITS {
                return None;
            }
            sig = sig * 10 + u64::from(c - b'0');
            self.i += 1;
        }
        let int_digits = self.i - start;
        if int_digits == 0 || (self.b[start] == b'0' && int_digits > 1) {
            return None;
        }
        let mut decimals = 0;
        if self.peek() == Some(b'.') {
            self.i += 1;
            while let Some(&c @ b'0'..=b'9') = self.b.get(self.i) {
                digits += 1;
                if digits > MAX_FLOAT_DIGITS {
                    return None;
                }
                sig = sig * 10 + u64::from(c - b'0');
                decimals += 1;
                self.i += 1;
            }
            if decimals == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            return None;
        }
        let f = sig as f64 / POW10[decimals];
        Some(if neg { -f } else { f })
    }

    /// `member`: identity kind to string value, in arrival order; a repeated kind gives up.
    fn ids(&mut self) -> Option<Option<WireIds<'a>>> {
        if self.peek()? == b'n' {
            return self.null().map(|()| None);
        }
        self.eat(b'{')?;
        let mut v = WireIds::default();
        self.members(|r, k| {
            let val = r.string()?;
            if v.iter().any(|(x, _)| x == k) {
                return None;
            }
            v.push((Cow::Borrowed(k), Cow::Borrowed(val)));
            Some(())
        })?;
        Some(Some(v))
    }

    fn geo(&mut self) -> Option<Option<MapOnly<WireGeo>>> {
        if self.peek()? == b'n' {
            return self.null().map(|()| None);
        }
        self.eat(b'{')?;
        let mut g = WireGeo::default();
        let mut seen = 0u8;
        self.members_by(Self::geo_key, |r, k| {
            let (bit, slot) = match k {
                1 => (1, &mut g.lat),
                2 => (2, &mut g.lon),
                _ => return r.skip(0),
            };
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            *slot = r.opt_float()?;
            Some(())
        })?;
        Some(Some(MapOnly(g)))
    }

    /// A key of `geo`: 1 for `lat`, 2 for `lon`, 0 for another (compared first, as top-level
    /// keys are, since every scan has both).
    #[inline]
    fn geo_key(&mut self) -> Option<u8> {
        if self.peek()? != b'"' {
            return None;
        }
        let rest = self.b.get(self.i + 1..)?;
        if rest.starts_with(b"lat\"") {
            self.i += 5;
            return Some(1);
        }
        if rest.starts_with(b"lon\"") {
            self.i += 5;
            return Some(2);
        }
        Some(match self.string()? {
            "lat" => 1,
            "lon" => 2,
            _ => 0,
        })
    }

    fn region(&mut self) -> Option<Option<MapOnly<WireRegion>>> {
        if self.peek()? == b'n' {
            return self.null().map(|()| None);
        }
        self.eat(b'{')?;
        let mut g = WireRegion::default();
        let mut seen = 0u8;
        self.members(|r, k| {
            let (bit, slot) = match k {
                "lat" => (1, &mut g.lat),
                "lon" => (2, &mut g.lon),
                "radius_km" => (4, &mut g.radius_km),
                _ => return r.skip(0),
            };
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            *slot = r.opt_float()?;
            Some(())
        })?;
        Some(Some(MapOnly(g)))
    }

    fn lines(&mut self) -> Option<Option<Vec<MapOnly<WireLine<'a>>>>> {
        if self.peek()? == b'n' {
            return self.null().map(|()| None);
        }
        self.eat(b'[')?;
        let mut out = Vec::new();
        self.elements(|r| {
            r.eat(b'{')?;
            let mut l = WireLine::default();
            let mut seen = 0u8;
            r.members(|r, k| {
                let bit = match k {
                    "sku" => 1,
                    "qty" => 2,
                    "unit_price" => 4,
                    _ => {
                        l.unknown = true;
                        return r.skip(0);
                    }
                };
                if seen & bit != 0 {
                    return None;
                }
                seen |= bit;
                match bit {
                    1 => l.sku = r.opt_str()?,
                    2 => l.qty = r.opt_int()?,
                    _ => l.unit_price = r.opt_int()?,
                }
                Some(())
            })?;
            out.push(MapOnly(l));
            Some(())
        })?;
        Some(Some(out))
    }

    /// Any JSON value, checked and dropped (the value of a field the contract does not name).
    fn skip(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'n' => self.null(),
            b't' => self.lit(b"true"),
            b'f' => self.lit(b"false"),
            b'-' | b'0'..=b'9' => self.skip_number(),
            b'{' if depth < MAX_SKIP_DEPTH => {
                self.i += 1;
                self.members(|r, _| r.skip(depth + 1))
            }
            b'[' if depth < MAX_SKIP_DEPTH => {
                self.i += 1;
                self.elements(|r| r.skip(depth + 1))
            }
            _ => None,
        }
    }

    /// A number by JSON's grammar, any size (serde_json ignores a number without converting it).
    fn skip_number(&mut self) -> Option<()> {
        if self.peek()? == b'-' {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => {
                self.i += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return None;
                }
            }
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return None;
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return None;
            }
            self.digits();
        }
        Some(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }
}

/// The length of a string's contents up to its closing quote, if no backslash or control
/// character comes first. Eight bytes at a time (the words are read little-endian, so the
/// lowest flagged byte comes first in the text).
#[inline]
fn plain_len(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(chunk) = s.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        // a byte is zero in `q` where x has a quote, in `b` where it has a backslash
        let q = x ^ (ONES * u64::from(b'"'));
        let b = x ^ (ONES * u64::from(b'\\'));
        // each term sets the high bit of the first byte that is zero (below 0x20 for the
        // last), never of a byte before it; a borrow may also flag bytes after it
        let hit = ((q.wrapping_sub(ONES) & !q)
            | (b.wrapping_sub(ONES) & !b)
            | (x.wrapping_sub(ONES * 0x20) & !x))
            & HIGH;
        if hit != 0 {
            let at = i + (hit.trailing_zeros() / 8) as usize;
            return (s[at] == b'"').then_some(at);
        }
        i += 8;
    }
    for (j, &c) in s.get(i..)?.iter().enumerate() {
        match c {
            b'"' => return Some(i + j),
            b'\\' | 0..=0x1f => return None,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose
    use super::*;
    use crate::decode::FIELDS;
    use proptest::prelude::*;

    /// The fast reader's result, as text (`None` when it gives up).
    fn fast(text: &str) -> Option<String> {
        let mut w = Wire::default();
        read(&mut w, text).map(|()| format!("{w:?}"))
    }

    /// serde's result for the same text, as text (`None` when serde refuses it).
    fn serde(text: &str) -> Option<String> {
        let mut w = Wire::default();
        w.read(text).ok().map(|()| format!("{w:?}"))
    }

    fn wire(text: &str) -> Wire<'_> {
        let mut w = Wire::default();
        read(&mut w, text).unwrap_or_else(|| panic!("fast reader gave up on {text}"));
        w
    }

    const SCAN: &str = r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"scan","ts":"2026-11-11T20:15:03.120+08:00","channel":"campaign","code":"HZ8K2M9Q4T7W","sku":"SKU-COLA-500","campaign":"cny-2027","member":{"openid":"o6_bmjrPTlm6_2sgVt7hMZOPfL2M","phone":"13800138000"},"device":"d-7f3a91","ip":"112.65.3.18","geo":{"lat":31.23,"lon":-121.47},"extra":{"a":[1,-2.5e3,true,false,null,"x",{}],"b":[]}}"#;

    const ORDER: &str = r#"{"id":"x","type":"order","lines":[{"sku":"S1","qty":2,"unit_price":1299},{"sku":null,"qty":1,"unit_price":0,"note":"n"}],"points_redeemed":100,"region":{"lat":1,"lon":-0,"radius_km":300.5}}"#;

    #[test]
    fn reads_plain_events_itself_and_as_serde_does() {
        for text in [SCAN, ORDER, "{}", " {\t}\r\n"] {
            let f = fast(text);
            assert!(f.is_some(), "gave up on {text}");
            assert_eq!(f, serde(text), "{text}");
        }
        let w = wire(SCAN);
        assert_eq!(w.code.as_deref(), Some("HZ8K2M9Q4T7W"));
        assert!(
            matches!(w.code, Some(Cow::Borrowed(_))),
            "strings are borrowed"
        );
        let ids: Vec<_> = w.member.as_ref().unwrap().iter().cloned().collect();
        assert_eq!(
            ids[0],
            (
                Cow::from("openid"),
                Cow::from("o6_bmjrPTlm6_2sgVt7hMZOPfL2M")
            )
        );
        assert_eq!(ids[1], (Cow::from("phone"), Cow::from("13800138000")));
        let g = &w.geo.as_ref().unwrap().0;
        assert_eq!((g.lat, g.lon), (Some(31.23), Some(-121.47)));
        let o = wire(ORDER);
        let lines = o.lines.as_ref().unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (
                lines[0].0.sku.as_deref(),
                lines[0].0.qty,
                lines[0].0.unit_price
            ),
            (Some("S1"), Some(2), Some(1299))
        );
        assert_eq!((lines[1].0.sku.as_deref(), lines[1].0.qty), (None, Some(1)));
        assert_eq!(o.points_redeemed, Some(100));
        let r = &o.region.as_ref().unwrap().0;
        assert_eq!(
            r.lon.map(f64::to_bits),
            Some((-0.0f64).to_bits()),
            "-0 is -0.0"
        );
        assert_eq!(r.radius_km, Some(300.5));
    }

    #[test]
    fn whitespace_anywhere_and_null_as_absent() {
        let text = " \n{ \"id\" :\t\"a\" ,\r\n\"qty\" : -12 , \"geo\" : { \"lat\" : null , \"lon\" : 0.5 } ,\"member\":null,\"lines\" : [ { } , {\"qty\" :3 } ] , \"sku\" : null }\t";
        let w = wire(text);
        assert_eq!(w.id.as_deref(), Some("a"));
        assert_eq!(w.qty, Some(-12));
        assert_eq!(w.sku, None);
        assert!(w.member.is_none());
        let g = &w.geo.as_ref().unwrap().0;
        assert_eq!((g.lat, g.lon), (None, Some(0.5)));
        assert_eq!(w.lines.as_ref().unwrap().len(), 2);
        assert_eq!(fast(text), serde(text));
    }

    #[test]
    fn integers_are_read_as_serde_gives_them_to_an_i64() {
        for (n, want) in [
            ("0", Some(0)),
            ("7", Some(7)),
            ("-7", Some(-7)),
            ("999999999999999999", Some(999_999_999_999_999_999)),
            ("-999999999999999999", Some(-999_999_999_999_999_999)),
            // left to serde: 19+ digits, -0, fractions, exponents, bad syntax
            ("1000000000000000000", None),
            ("-0", None),
            ("1.0", None),
            ("1e2", None),
            ("1E2", None),
            ("01", None),
            ("-", None),
            ("+1", None),
            ("1x", None),
            ("\"1\"", None),
            ("true", None),
        ] {
            let text = format!(r#"{{"qty":{n}}}"#);
            assert_eq!(fast(&text).map(|_| wire(&text).qty), want.map(Some), "{n}");
        }
    }

    #[test]
    fn floats_are_correctly_rounded_or_left_to_serde() {
        for n in [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "31.2304",
            "121.4737",
            "-90",
            "0.1",
            "0.3",
            "1.7976931348623",
            "123456789012345",
            "0.00000000000001",
            "9007199254740.99",
            "-180.000000000000",
        ] {
            let text = format!(r#"{{"geo":{{"lat":{n}}}}}"#);
            let got = wire(&text).geo.unwrap().0.lat.unwrap();
            let want: f64 = n.parse().unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "{n}");
            assert_eq!(fast(&text), serde(&text), "{n}");
        }
        for n in [
            "1e5",
            "1.5E-3",
            "1234567890123456",
            "0.1234567890123456",
            "1.",
            ".5",
            "01.5",
            "-",
            "--1",
            "NaN",
            "Infinity",
            "1e400",
        ] {
            let text = format!(r#"{{"geo":{{"lat":{n}}}}}"#);
            assert_eq!(fast(&text), None, "{n}");
        }
    }

    #[test]
    fn gives_up_on_escapes_duplicates_and_anything_unusual() {
        for text in [
            r#"{"id":"a\"b"}"#,
            r#"{"id":"\u00e9"}"#,
            r#"{"id":"\ud83d\ude00"}"#,
            r#"{"x":"a\\b"}"#,
            r#"{"i\u0064":"a"}"#,
            "{\"id\":\"tab\there\"}",
            r#"{"id":"a","id":"b"}"#,
            r#"{"id":null,"id":"b"}"#,
            r#"{"member":{"phone":"1","phone":"2"}}"#,
            r#"{"member":{"phone":null}}"#,
            r#"{"geo":{"lat":1,"lat":2}}"#,
            r#"{"lines":[{"qty":1,"qty":2}]}"#,
            r#"{"lines":[1]}"#,
            r#"{"lines":{}}"#,
            r#"{"geo":[1,2]}"#,
            r#"{"id":1}"#,
            r#"{"id":"a",}"#,
            r#"{id":"a"}"#,
            r#"{"id":"a",type":"scan"}"#,
            r#"{"id":"a"} x"#,
            r#"{"id":"a"}{}"#,
            r#"{"id" "a"}"#,
            r#"{"x":[1,]}"#,
            r#"{"x":01}"#,
            r#"{"x":tru}"#,
            r#"{"id":"a""#,
            "[]",
            "null",
            "",
            "\u{feff}{}",
        ] {
            assert_eq!(fast(text), None, "{text}");
        }
        // unknown fields are skipped to a depth, then left to serde
        let nested = |d: usize| format!(r#"{{"x":{}1{}}}"#, "[".repeat(d), "]".repeat(d));
        assert!(fast(&nested(MAX_SKIP_DEPTH as usize)).is_some());
        assert_eq!(fast(&nested(MAX_SKIP_DEPTH as usize + 1)), None);
        // unicode is plain text
        let text = r#"{"id":"会员-é-😀","x":"中"}"#;
        assert_eq!(wire(text).id.as_deref(), Some("会员-é-😀"));
    }

    #[test]
    fn string_ends_are_found_at_every_offset() {
        for len in 0..40 {
            let body: String = "abcdefghij".chars().cycle().take(len).collect();
            let text = format!(r#"{{"id":"{body}","sku":"z"}}"#);
            let w = wire(&text);
            assert_eq!(w.id.as_deref(), Some(body.as_str()));
            assert_eq!(w.sku.as_deref(), Some("z"));
            for bad in ['\\', '\u{1f}', '\n', '\0'] {
                let mut b = body.clone();
                b.insert(len / 2, bad);
                assert_eq!(fast(&format!(r#"{{"id":"{b}"}}"#)), None, "{b:?}");
            }
        }
    }

    #[test]
    fn known_names_are_recognised_exactly() {
        for (i, name) in FIELDS.iter().enumerate() {
            assert_eq!(field_index(name), Some(i));
            let text = format!("{name}\":1");
            assert_eq!(
                known_key(text.as_bytes()),
                Some((i, name.len() + 1)),
                "{name}"
            );
            // a longer or shorter key is another key, read the general way
            for other in [
                format!("{name}x\""),
                format!("{}\"", &name[..name.len() - 1]),
            ] {
                assert_eq!(known_key(other.as_bytes()), None, "{other}");
            }
            let quoted = format!("{{\"{name}\":null,\"{name}x\":1}}");
            assert_eq!(fast(&quoted), serde(&quoted), "{quoted}");
        }
        assert_eq!(known_key(b"i\\u0064\""), None);
        for text in [
            r#"{"geo":{"lat":1,"lon":2,"latx":3,"la":4,"lonlat":5,"":6}}"#,
            r#"{"geo":{lat":1}}"#,
            r#"{"geo":{"lat":1,lon":2}}"#,
            r#"{"geo":{"lat":1,"lat":2}}"#,
        ] {
            assert_eq!(fast(text), serde(text), "{text}");
        }
        let g = wire(r#"{"geo":{"latx":3,"lon":2,"lat":1}}"#).geo.unwrap().0;
        assert_eq!((g.lat, g.lon), (Some(1.0), Some(2.0)));
    }

    /// The string scanner against the obvious byte loop, on bytes next to the ones it looks for.
    #[test]
    fn string_scanner_agrees_with_a_byte_loop() {
        fn naive(s: &[u8]) -> Option<usize> {
            for (i, &c) in s.iter().enumerate() {
                match c {
                    b'"' => return Some(i),
                    b'\\' | 0..=0x1f => return None,
                    _ => {}
                }
            }
            None
        }
        let alphabet = [
            b'a', b'"', b'\\', 0, 1, 0x1f, 0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0x80, 0xa2, 0xdc,
            0xff,
        ];
        let mut r: u64 = 1;
        for _ in 0..200_000 {
            r = r
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (r >> 59) as usize + (r >> 62) as usize * 8;
            let mut s = Vec::with_capacity(len);
            let mut x = r;
            for _ in 0..len {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                // mostly plain bytes, so the special ones land at every offset
                let c = if (x >> 60) < 13 {
                    b'a'
                } else {
                    alphabet[(x >> 33) as usize % alphabet.len()]
                };
                s.push(c);
            }
            assert_eq!(plain_len(&s), naive(&s), "{s:?}");
        }
    }

    /// Values of every shape the reader meets, well and badly formed.
    fn value() -> impl Strategy<Value = String> {
        let number = "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,18})?([eE][+-]?[0-9]{1,3})?";
        let odd_number = prop_oneof![
            Just("-0".to_string()),
            Just("01".to_string()),
            Just("1.".to_string()),
            Just(".5".to_string()),
            Just("1e".to_string()),
            Just("-".to_string()),
            Just("9223372036854775808".to_string()),
            Just("-9223372036854775808".to_string()),
            Just("18446744073709551616".to_string()),
        ];
        let string = prop_oneof![
            "\"[a-zA-Z0-9 _.:+-]{0,24}\"",
            "\"[a-z]{0,3}(\\\\[\"\\\\/bfnrt]|\\\\u00e9|\\\\ud83d\\\\ude00|\\\\x|[\t\u{1}])?[é中😀]{0,2}\"",
        ];
        let leaf = prop_oneof![
            3 => string,
            3 => number.prop_map(|s| s.to_string()),
            4 => "-?(0|[1-9][0-9]{0,4})(\\.[0-9]{1,6})?".prop_map(|s| s.to_string()),
            1 => odd_number,
            1 => prop_oneof![Just("null"), Just("true"), Just("false")].prop_map(str::to_string),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                proptest::collection::vec((key(), inner), 0..4).prop_map(|v| {
                    let m: Vec<String> =
                        v.into_iter().map(|(k, x)| format!("\"{k}\":{x}")).collect();
                    format!("{{{}}}", m.join(","))
                }),
            ]
        })
    }

    /// Keys of the top level and of the nested objects, and others.
    fn key() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "id",
            "type",
            "ts",
            "code",
            "sku",
            "ip",
            "member",
            "geo",
            "lines",
            "region",
            "qty",
            "amount",
            "duration_s",
            "lat",
            "lon",
            "radius_km",
            "unit_price",
            "phone",
            "openid",
            "extra",
            "",
        ])
    }

    fn ws() -> impl Strategy<Value = String> {
        "[ \t\r\n]{0,2}"
    }

    /// Values shaped like `geo`, `region`, `lines` and `member`, so their keys meet numbers
    /// and strings of every kind.
    fn shaped() -> impl Strategy<Value = String> {
        let field = || {
            (
                prop::sample::select(vec!["lat", "lon", "radius_km", "sku", "qty", "unit_price"]),
                prop_oneof![
                    3 => "-?(0|[1-9][0-9]{0,4})(\\.[0-9]{1,6})?",
                    1 => "\"[a-z0-9]{0,4}\"",
                    1 => value(),
                ],
            )
                .prop_map(|(k, v)| format!("\"{k}\":{v}"))
        };
        prop_oneof![
            proptest::collection::vec(field(), 0..4).prop_map(|f| format!("{{{}}}", f.join(","))),
            proptest::collection::vec(
                proptest::collection::vec(field(), 0..4)
                    .prop_map(|f| format!("{{{}}}", f.join(","))),
                0..3
            )
            .prop_map(|l| format!("[{}]", l.join(","))),
        ]
    }

    /// An object of those keys and values, with whitespace between tokens.
    fn object() -> impl Strategy<Value = String> {
        let v = prop_oneof![value(), shaped()];
        proptest::collection::vec((ws(), key(), ws(), ws(), v, ws()), 0..8).prop_map(|m| {
            let parts: Vec<String> = m
                .into_iter()
                .map(|(a, k, b, c, v, d)| format!("{a}\"{k}\"{b}:{c}{v}{d}"))
                .collect();
            format!("{{{}}}", parts.join(","))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Whatever the fast reader accepts, serde accepts and reads into the same wire struct.
        #[test]
        fn accepts_only_what_serde_reads_the_same(text in object(), cut in any::<prop::sample::Index>(), byte in any::<u8>(), edit in 0u8..3) {
            let mut b = text.into_bytes();
            match edit {
                0 => {}
                1 => { let i = cut.index(b.len()); b[i] = byte; }
                _ => { let i = cut.index(b.len() + 1); b.truncate(i); }
            }
            let Ok(text) = String::from_utf8(b) else { return Ok(()) };
            if let Some(f) = fast(&text) {
                prop_assert_eq!(Some(f), serde(&text), "{}", text);
            }
        }
    }
}
