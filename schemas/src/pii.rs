//! Personal data protection: identity values of personal kinds are replaced on ingest by a
//! keyed hash (HMAC-SHA256), so no plain phone number reaches state, logs or outputs.

use crate::event::{IdKind, Str};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The keyed hasher for personal identity values. Cheap to clone (the key schedule is shared).
#[derive(Clone)]
pub struct Pii {
    mac: Hmac<Sha256>,
    /// Input comes from omnistream's own store: personal values are hashes already.
    stored: bool,
}

impl std::fmt::Debug for Pii {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never print the key
        f.write_str("Pii(<keyed>)")
    }
}

/// Why a personal value could not be protected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PiiError {
    /// The phone number has characters or a length no phone number has.
    #[error("not a phone number: {0}")]
    BadPhone(&'static str),
    /// Stored input carried a personal value that is not a keyed hash.
    #[error("a stored personal value must be a keyed hash")]
    NotHashed,
    /// A `member_id` of a form this service never issues (a typo, a made-up or another
    /// system's id): taken as given, it would start a member of that id.
    #[error("not a member id this service issued (`m` and 16 lowercase hex digits){0}")]
    NotIssued(&'static str),
}

/// What is wrong with a `member_id` not of the issued form, when it is one small slip from
/// it (for [`PiiError::NotIssued`]'s message).
fn not_issued_hint(id: &str) -> &'static str {
    if id.trim() != id && issued_member_id(id.trim()) {
        ": white space at an end"
    } else if issued_member_id(&id.to_ascii_lowercase()) {
        ": uppercase hex digits"
    } else {
        ""
    }
}

/// Whether `id` has the form of the member ids this service issues: `m` and 16 lowercase hex
/// digits (the number of the identity that created the member).
pub fn issued_member_id(id: &str) -> bool {
    id.len() == 17
        && id.starts_with('m')
        && id.as_bytes()[1..]
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// Prefix of every hashed value, so a reader can tell a hash from a raw value.
pub const HASH_PREFIX: char = 'h';

impl Pii {
    /// A hasher with this secret key (any length; 32 random bytes recommended).
    pub fn new(key: &[u8]) -> Self {
        #[allow(clippy::expect_used)]
        let mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac accepts keys of any length");
        Pii { mac, stored: false }
    }

    /// A hasher for events read back from omnistream's own store, whose personal values were
    /// hashed on ingest: they are checked to be hashes and kept, never hashed twice.
    pub fn for_stored(key: &[u8]) -> Self {
        Pii {
            stored: true,
            ..Pii::new(key)
        }
    }

    /// Whether this reads the service's own log back ([`Pii::for_stored`]): what was accepted
    /// then is accepted again, so the log replays as it ran.
    pub fn is_stored(&self) -> bool {
        self.stored
    }

    /// Whether a value has the shape of [`Pii::hash`] output.
    pub fn is_hash(value: &str) -> bool {
        value.len() == 23
            && value.starts_with(HASH_PREFIX)
            && value[1..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    /// Protects one identity value: personal kinds are normalised and hashed, others kept.
    pub fn protect(&self, kind: &IdKind, value: &str) -> Result<Str, PiiError> {
        if self.stored && kind.is_personal() {
            return if Self::is_hash(value) {
                Ok(Str::from(value))
            } else {
                Err(PiiError::NotHashed)
            };
        }
        match kind {
            IdKind::Phone => {
                let mut buf = [0u8; 24];
                let digits = phone_digits(value, &mut buf)?;
                Ok(self.hash(kind, digits))
            }
            k if k.is_personal() => Ok(self.hash(kind, value.trim())),
            // the log keeps what was accepted before this check: it replays as it ran
            IdKind::MemberId if !self.stored && !issued_member_id(value) => {
                Err(PiiError::NotIssued(not_issued_hint(value)))
            }
            _ => Ok(Str::from(value)),
        }
    }

    /// The keyed hash of a value of a kind: `h` + 22 characters of base64url (128 bits).
    ///
    /// The kind is part of the hashed input, so equal strings of two kinds never collide.
    pub fn hash(&self, kind: &IdKind, value: &str) -> Str {
        let mut mac = self.mac.clone();
        mac.update(kind.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        let out = mac.finalize().into_bytes();
        // built in a stack buffer: pushing char by char into the string cost more than the mac
        let mut buf = [0u8; 23];
        buf[0] = HASH_PREFIX as u8;
        b64url(&out[..16], &mut buf[1..]);
        match std::str::from_utf8(&buf) {
            Ok(s) => Str::from(s),
            Err(_) => unreachable!("base64url is ascii"),
        }
    }
}

/// Longest raw text kept by [`Pii::redact`]; longer input is cut and marked.
pub const REDACT_KEEP: usize = 4096;

impl Pii {
    /// A copy of a raw input line, valid or not, that is safe to keep in a dead-letter or
    /// rejects file: values of personal identity kinds under `member` are replaced by their
    /// keyed hash (or `<redacted>` when they are not usable), and when the line is not a JSON
    /// object every run of five or more digits is masked, since it may hold a phone number.
    pub fn redact(&self, bytes: &[u8]) -> String {
        if let Ok(serde_json::Value::Object(mut map)) = serde_json::from_slice(bytes) {
            if let Some(serde_json::Value::Object(ids)) = map.get_mut("member") {
                for (k, v) in ids.iter_mut() {
                    let kind = IdKind::parse(k);
                    if !kind.is_personal() {
                        continue;
                    }
                    let hashed = match v {
                        serde_json::Value::String(s) => self.protect(&kind, s).ok(),
                        _ => None,
                    };
                    *v = serde_json::Value::String(
                        hashed.map_or_else(|| "<redacted>".to_string(), |h| h.to_string()),
                    );
                }
            } else if map.contains_key("member") {
                map.insert("member".into(), "<redacted>".into());
            }
            let text = serde_json::Value::Object(map).to_string();
            return cut(text);
        }
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(REDACT_KEEP * 2)]);
        let mut out = String::with_capacity(text.len());
        let mut run = String::new();
        for c in text.chars() {
            if c.is_ascii_digit() {
                run.push(c);
                continue;
            }
            flush_digits(&mut run, &mut out);
            out.push(c);
        }
        flush_digits(&mut run, &mut out);
        cut(out)
    }
}

fn flush_digits(run: &mut String, out: &mut String) {
    if run.len() >= 5 {
        out.extend(std::iter::repeat_n('#', run.len()));
    } else {
        out.push_str(run);
    }
    run.clear();
}

fn cut(mut s: String) -> String {
    if s.len() > REDACT_KEEP {
        let mut end = REDACT_KEEP;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("…<cut>");
    }
    s
}

/// Normalises a phone number to its digits, dropping a leading mainland China country code
/// (`+86`, `0086`, `86` before 11 digits) so the same phone from two channels matches.
pub fn normalize_phone(raw: &str) -> Result<String, PiiError> {
    let mut buf = [0u8; 24];
    phone_digits(raw, &mut buf).map(str::to_string)
}

/// [`normalize_phone`] into a stack buffer (the hot path hashes it and needs no string).
fn phone_digits<'b>(raw: &str, buf: &'b mut [u8; 24]) -> Result<&'b str, PiiError> {
    // more than 24 digits can never trim down to 20: only the count matters then
    let mut n = 0;
    for &c in raw.as_bytes() {
        match c {
            b'0'..=b'9' => {
                if let Some(d) = buf.get_mut(n) {
                    *d = c;
                }
                n += 1;
            }
            b' ' | b'-' | b'(' | b')' | b'+' | b'.' => {}
            _ => {
                return Err(PiiError::BadPhone(
                    "characters other than digits and + - ( ) .",
                ))
            }
        }
    }
    let digits = &buf[..n.min(24)];
    let trimmed = if n == 15 && digits.starts_with(b"0086") {
        &digits[4..]
    } else if n == 13 && digits.starts_with(b"86") {
        &digits[2..]
    } else {
        digits
    };
    let len = if n > 24 { n } else { trimmed.len() };
    if !(5..=20).contains(&len) {
        return Err(PiiError::BadPhone("phone numbers have 5 to 20 digits"));
    }
    match std::str::from_utf8(trimmed) {
        Ok(s) => Ok(s),
        Err(_) => unreachable!("ascii digits"),
    }
}

/// Writes the unpadded base64url of `bytes` to the start of `out` (which must be long enough).
fn b64url(bytes: &[u8], out: &mut [u8]) {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut o = 0;
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out[o] = A[((n >> (18 - 6 * i)) & 63) as usize];
            o += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_id_one_slip_from_the_issued_form_says_which() {
        let p = Pii::new(b"test-key");
        let id = "mb10c39d5cbac8d14";
        assert_eq!(p.protect(&IdKind::MemberId, id).unwrap(), id);
        let why = |v: &str| p.protect(&IdKind::MemberId, v).unwrap_err().to_string();
        assert!(why(" mb10c39d5cbac8d14").ends_with(": white space at an end"));
        assert!(why("MB10C39D5CBAC8D14").ends_with(": uppercase hex digits"));
        assert!(why("hello").ends_with("hex digits)"));
    }

    #[test]
    fn same_phone_in_any_format_hashes_the_same() {
        let p = Pii::new(b"test-key");
        let a = p.protect(&IdKind::Phone, "13800138000").unwrap();
        let b = p.protect(&IdKind::Phone, "+86 138-0013-8000").unwrap();
        let c = p.protect(&IdKind::Phone, "0086 13800138000").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.len(), 23);
        assert!(a.starts_with('h'));
        assert!(!a.contains("13800138000"));
    }

    #[test]
    fn key_and_kind_change_the_hash() {
        let p = Pii::new(b"k1");
        let q = Pii::new(b"k2");
        assert_ne!(
            p.protect(&IdKind::Phone, "13800138000").unwrap(),
            q.protect(&IdKind::Phone, "13800138000").unwrap()
        );
        assert_ne!(
            p.protect(&IdKind::Card, "13800138000").unwrap(),
            p.protect(&IdKind::Phone, "13800138000").unwrap()
        );
    }

    #[test]
    fn platform_ids_are_kept_and_unknown_kinds_hashed() {
        let p = Pii::new(b"k");
        assert_eq!(p.protect(&IdKind::Openid, "o6_abc").unwrap(), "o6_abc");
        let email = p.protect(&IdKind::Other("email".into()), "a@b.cn").unwrap();
        assert!(email.starts_with('h') && !email.contains('@'));
    }

    #[test]
    fn redact_hashes_personal_values_and_masks_digits_in_broken_lines() {
        let p = Pii::new(b"k");
        let line = br#"{"id":"x","member":{"phone":"13800138000","openid":"o6_a","card":7},"type":"scan"}"#;
        let r = p.redact(line);
        assert!(!r.contains("13800138000"), "{r}");
        assert!(r.contains(p.protect(&IdKind::Phone, "13800138000").unwrap().as_str()));
        assert!(r.contains("o6_a") && r.contains("<redacted>"));
        let broken = br#"{"member":{"phone":"13800138000"},"#;
        let r = p.redact(broken);
        assert!(
            !r.contains("13800138000") && r.contains("###########"),
            "{r}"
        );
        assert!(p.redact(b"id 1234 ok").contains("1234"));
        let huge = vec![b'a'; 100_000];
        assert!(p.redact(&huge).len() < REDACT_KEEP + 16);
    }

    #[test]
    fn stored_values_are_kept_once_hashed_and_refused_in_plain() {
        let p = Pii::new(b"k");
        let h = p.protect(&IdKind::Phone, "13800138000").unwrap();
        let s = Pii::for_stored(b"k");
        assert_eq!(s.protect(&IdKind::Phone, &h).unwrap(), h);
        assert_eq!(
            s.protect(&IdKind::Phone, "13800138000"),
            Err(PiiError::NotHashed)
        );
        assert_eq!(s.protect(&IdKind::Openid, "o1").unwrap(), "o1");
    }

    #[test]
    fn bad_phones_are_refused() {
        assert!(normalize_phone("call me").is_err());
        assert!(normalize_phone("123").is_err());
        assert!(normalize_phone("1234567890123456789012").is_err());
    }
}
