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
    r.members(|r, key| {
        let Some(i) = field_index(key) else {
            return r.skip(0);
        };
        if seen & (1 << i) != 0 {
            return None; // serde reports the duplicate
        }
        seen |= 1 << i;
        match i {
            0 => w.id = r.opt_str()?,
            1 => w.ty = r.opt_str()?,
            2 => w.ts = r.opt_str()?,
            3 => w.channel = r.opt_str()?,
            4 => w.code = r.opt_str()?,
            5 => w.sku = r.opt_str()?,
            6 => w.campaign = r.opt_str()?,
            7 => w.device = r.opt_str()?,
            8 => w.ip = r.opt_str()?,
            9 => w.store = r.opt_str()?,
            10 => w.target = r.opt_str()?,
            11 => w.order = r.opt_str()?,
            12 => w.status = r.opt_str()?,
            13 => w.kind = r.opt_str()?,
            14 => w.location = r.opt_str()?,
            15 => w.dealer = r.opt_str()?,
            16 => w.visitor = r.opt_str()?,
            17 => w.rep = r.opt_str()?,
            18 => w.op = r.opt_str()?,
            19 => w.batch = r.opt_str()?,
            20 => w.prefix = r.opt_str()?,
            21 => w.reference = r.opt_str()?,
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
    fn members(&mut self, mut f: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let key = self.string()?;
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

    fn null(&mut self) -> Option<()> {
        self.lit(b"null")
    }

    /// A string field; `null` counts as absent.
    #[inline]
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
        self.members(|r, k| {
            let (bit, slot) = match k {
                "lat" => (1, &mut g.lat),
                "lon" => (2, &mut g.lon),
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
                    _ => return r.skip(0),
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
/// character comes first. Eight bytes at a time while none of them can be one of those.
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
        // the high bit is set in some byte iff some byte is zero (or, for the last term,
        // below 0x20); never missed, sometimes flagged in the wrong byte: the loop below decides
        let special = (q.wrapping_sub(ONES) & !q)
            | (b.wrapping_sub(ONES) & !b)
            | (x.wrapping_sub(ONES * 0x20) & !x);
        if special & HIGH != 0 {
            break;
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

    /// An object of those keys and values, with whitespace between tokens.
    fn object() -> impl Strategy<Value = String> {
        proptest::collection::vec((ws(), key(), ws(), ws(), value(), ws()), 0..8).prop_map(|m| {
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
