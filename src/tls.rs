//! TLS settings, one set of rules for the CQL store and the Fluvio transport (clients) and the
//! HTTP API (a server): rustls with the aws-lc-rs provider. A client trusts the certificates
//! of a PEM file (`tls-ca-file`) and may present its own (`tls-cert-file`, `tls-key-file`) to
//! servers that authenticate their clients (mutual TLS); the server presents
//! `tls-cert-file` and, with `tls-ca-file`, requires clients' certificates signed by it.
//!
//! The files are read and checked when the configuration is checked, so a bad file stops
//! start-up naming the key and the file, before anything connects.

use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

/// The TLS keys of one configuration section (`cql`, `fluvio` or `http`).
#[derive(Debug, Clone, Copy)]
pub struct TlsKeys<'a> {
    /// The section, for error messages: `cql`, `fluvio`.
    pub section: &'static str,
    /// `tls`: encrypt the connections.
    pub enabled: bool,
    /// `tls-ca-file`: the certificates to trust (a server's, or the clients' issuers).
    pub ca: Option<&'a PathBuf>,
    /// `tls-cert-file`: this side's certificate chain.
    pub cert: Option<&'a PathBuf>,
    /// `tls-key-file`: the private key of that certificate.
    pub key: Option<&'a PathBuf>,
}

/// A TLS setting that cannot work: the full key (`fluvio.tls-key-file`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    /// The configuration key at fault, with its section.
    pub key: String,
    /// What is wrong, naming the file where there is one.
    pub why: String,
}

impl TlsKeys<'_> {
    fn err(&self, key: &str, why: impl Into<String>) -> TlsError {
        TlsError {
            key: format!("{}.{key}", self.section),
            why: why.into(),
        }
    }

    /// The client configuration these keys describe, `None` with `tls = false`; every rule
    /// checked: `tls` needs a CA file, a certificate goes with its key, and no file is set
    /// without `tls` (it would suggest encryption that does not happen).
    pub fn client_config(&self) -> Result<Option<Arc<rustls::ClientConfig>>, TlsError> {
        if !self.enabled {
            return self.none_set().map(|()| None);
        }
        let Some(ca) = self.ca else {
            return Err(self.err(
                "tls-ca-file",
                "tls = true needs the PEM file of the certificates to trust",
            ));
        };
        let roots = roots(ca).map_err(|why| self.err("tls-ca-file", why))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| self.err("tls", format!("TLS versions: {e}")))?
            .with_root_certificates(roots);
        let config = match (self.cert, self.key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => {
                return Err(self.err(
                    "tls-key-file",
                    "tls-cert-file is set: its private key is needed too",
                ))
            }
            (None, Some(_)) => {
                return Err(self.err(
                    "tls-cert-file",
                    "tls-key-file is set: the certificate it belongs to is needed too",
                ))
            }
            (Some(cert), Some(key)) => {
                let chain = chain(cert).map_err(|why| self.err("tls-cert-file", why))?;
                let private = private_key(key).map_err(|why| self.err("tls-key-file", why))?;
                builder.with_client_auth_cert(chain, private).map_err(|e| {
                    self.err(
                        "tls-key-file",
                        format!(
                            "{} does not fit the certificate in {}: {e}",
                            key.display(),
                            cert.display()
                        ),
                    )
                })?
            }
        };
        Ok(Some(Arc::new(config)))
    }

    /// With `tls = false`, no file may be set: it would suggest encryption that does not
    /// happen.
    fn none_set(&self) -> Result<(), TlsError> {
        for (key, set) in [
            ("tls-ca-file", self.ca.is_some()),
            ("tls-cert-file", self.cert.is_some()),
            ("tls-key-file", self.key.is_some()),
        ] {
            if set {
                return Err(self.err(
                    key,
                    "set without tls = true: connections would not be encrypted",
                ));
            }
        }
        Ok(())
    }

    /// The server configuration these keys describe (the HTTP API), `None` with `tls =
    /// false`: `tls` needs the certificate and its key; `tls-ca-file`, when set, makes every
    /// client present a certificate signed by one of its certificates (mutual TLS).
    pub fn server_config(&self) -> Result<Option<ServerTls>, TlsError> {
        if !self.enabled {
            return self.none_set().map(|()| None);
        }
        let need = |key: &str| {
            self.err(
                key,
                "tls = true needs the PEM files of the certificate the service presents \
                 (tls-cert-file) and of its private key (tls-key-file)",
            )
        };
        let cert_file = self.cert.ok_or_else(|| need("tls-cert-file"))?;
        let key_file = self.key.ok_or_else(|| need("tls-key-file"))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let handshakes = Arc::new(Handshakes::default());
        let cert = Arc::new(ServerCert::read(
            self.section,
            cert_file,
            key_file,
            provider.clone(),
            handshakes.clone(),
        )?);
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| self.err("tls", format!("TLS versions: {e}")))?;
        let builder = match self.ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let certs = chain(ca).map_err(|why| self.err("tls-ca-file", why))?;
                let roots =
                    roots_of(ca, certs.clone()).map_err(|why| self.err("tls-ca-file", why))?;
                // webpki never takes a leaf as its own issuer: a client's own certificate
                // here would let no client in, so it is refused now rather than then
                if let Some(n) = certs.iter().position(|c| is_ca(c) != Some(true)) {
                    return Err(self.err(
                        "tls-ca-file",
                        format!(
                            "{}: certificate {} of the file is not a CA certificate \
                             (basicConstraints CA:TRUE): clients' certificates are checked \
                             against the CA that signed them, not against themselves",
                            ca.display(),
                            n + 1
                        ),
                    ));
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| self.err("tls-ca-file", format!("{}: {e}", ca.display())))?;
                builder.with_client_cert_verifier(Arc::new(ClientCheck {
                    inner: verifier,
                    handshakes: handshakes.clone(),
                }))
            }
        };
        let config = builder.with_cert_resolver(cert.clone());
        Ok(Some(ServerTls {
            config: Arc::new(config),
            cert,
            handshakes,
        }))
    }
}

/// Why a client's certificate was refused, as the metric's `reason` label says it.
pub const REFUSALS: [&str; 7] = [
    "unknown_issuer",
    "expired",
    "not_yet_valid",
    "not_for_clients",
    "bad_signature",
    "bad_encoding",
    "other",
];

fn refusal(e: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "unknown_issuer",
            C::Expired | C::ExpiredContext { .. } => "expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "not_yet_valid",
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => "not_for_clients",
            C::BadSignature => "bad_signature",
            C::BadEncoding => "bad_encoding",
            _ => "other",
        },
        _ => "other",
    }
}

/// At most one log line a refused client certificate every this many seconds (a scanner
/// trying certificates must not flood the log); the line says how many since the last.
const REFUSAL_LOG_EVERY_S: i64 = 10;

/// What the HTTPS server counts of its handshakes: those begun (a client's hello read: every
/// handshake that gets that far, whatever happens next) and clients' certificates refused,
/// by reason. The service hands over its Prometheus counters when it serves; a configuration
/// only checked (`check-config`) counts nothing.
#[derive(Debug, Default)]
pub struct Handshakes {
    begun: OnceLock<prometheus::IntCounter>,
    refused: OnceLock<prometheus::IntCounterVec>,
    /// Refusals not yet in a log line, and when the last line was written (Unix seconds).
    unlogged: AtomicU64,
    logged_at: AtomicI64,
}

impl Handshakes {
    /// Counts from now on into `begun` and `refused` (by `reason`, every reason of
    /// [`REFUSALS`] exported at 0 from the start).
    pub fn count_into(&self, begun: prometheus::IntCounter, refused: prometheus::IntCounterVec) {
        for reason in REFUSALS {
            refused.with_label_values(&[reason]);
        }
        let _ = self.begun.set(begun);
        let _ = self.refused.set(refused);
    }

    fn begun(&self) {
        if let Some(c) = self.begun.get() {
            c.inc();
        }
    }

    /// A client's certificate refused: counted, and logged with its subject unless a line
    /// was written in the last [`REFUSAL_LOG_EVERY_S`] seconds.
    fn refused(&self, cert: &CertificateDer<'_>, e: &rustls::Error) {
        let reason = refusal(e);
        if let Some(c) = self.refused.get() {
            c.with_label_values(&[reason]).inc();
        }
        self.unlogged.fetch_add(1, Relaxed);
        let now = unix_now();
        let last = self.logged_at.load(Relaxed);
        if now - last < REFUSAL_LOG_EVERY_S
            || self
                .logged_at
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_err()
        {
            return;
        }
        let refused = self.unlogged.swap(0, Relaxed);
        // the subject is the client's word, not checked: shown escaped and cut short
        let subject: String = common_name(cert)
            .unwrap_or_else(|| "(no common name)".into())
            .chars()
            .take(80)
            .collect();
        tracing::warn!(
            reason,
            subject = ?subject,
            refused_since_last_line = refused,
            "https: a client's certificate was refused ({e})"
        );
    }
}

/// The clients' CA check of mutual TLS (webpki's), counting and logging what it refuses.
#[derive(Debug)]
struct ClientCheck {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    handshakes: Arc<Handshakes>,
}

impl rustls::server::danger::ClientCertVerifier for ClientCheck {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
            .inspect_err(|e| self.handshakes.refused(end_entity, e))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner
            .verify_tls12_signature(message, cert, dss)
            .inspect_err(|e| self.handshakes.refused(cert, e))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner
            .verify_tls13_signature(message, cert, dss)
            .inspect_err(|e| self.handshakes.refused(cert, e))
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }
}

/// The HTTP API's TLS: the rustls configuration, and the certificate it presents.
#[derive(Debug)]
pub struct ServerTls {
    /// What the server hands to rustls.
    pub config: Arc<rustls::ServerConfig>,
    /// The certificate in use, read again by [`ServerCert::reload`].
    pub cert: Arc<ServerCert>,
    /// What the handshakes count.
    pub handshakes: Arc<Handshakes>,
}

/// What identifies a file's contents without reading them: modification time, length and
/// inode (a renewal tool's rename, or Kubernetes' swap of a secret's symlink, changes it).
type Stamp = (Option<std::time::SystemTime>, u64, u64);

/// The certificate and key the service presents, swapped for the files' new contents when
/// they change (a renewed certificate without a restart). Connections take the one in use
/// when they start.
#[derive(Debug)]
pub struct ServerCert {
    section: &'static str,
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// When the certificate in use expires, Unix seconds.
    not_after: AtomicI64,
    /// The two files' stamps when they were last read.
    seen: Mutex<[Option<Stamp>; 2]>,
    /// Every client's hello asks this for the certificate: a handshake begun.
    handshakes: Arc<Handshakes>,
}

/// The two files read and checked: a certificate chain, its first certificate valid now, a
/// private key, and the key the one of that certificate; with the certificate's expiry
/// (Unix seconds).
fn load(
    section: &str,
    cert: &Path,
    key: &Path,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<(CertifiedKey, i64), TlsError> {
    let err = |k: &str, why: String| TlsError {
        key: format!("{section}.{k}"),
        why,
    };
    let chain = chain(cert).map_err(|why| err("tls-cert-file", why))?;
    let private = private_key(key).map_err(|why| err("tls-key-file", why))?;
    let (not_before, not_after) = validity(&chain[0]).ok_or_else(|| {
        err(
            "tls-cert-file",
            format!(
                "{}: its first certificate's validity cannot be read",
                cert.display()
            ),
        )
    })?;
    let now = unix_now();
    if now >= not_after.0 {
        return Err(err(
            "tls-cert-file",
            format!(
                "{}: the certificate expired on {}",
                cert.display(),
                not_after.1
            ),
        ));
    }
    if now < not_before.0 {
        return Err(err(
            "tls-cert-file",
            format!(
                "{}: the certificate is not valid before {}",
                cert.display(),
                not_before.1
            ),
        ));
    }
    let certified = CertifiedKey::from_der(chain, private, provider).map_err(|e| {
        err(
            "tls-key-file",
            format!(
                "{} does not fit the certificate in {} (its first certificate must be the \
                 service's own): {e}",
                key.display(),
                cert.display()
            ),
        )
    })?;
    Ok((certified, not_after.0))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// One DER element: its tag, its contents, and what follows it.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |l, &b| (l << 8) | usize::from(b));
        rest = &rest[n..];
        len
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// A time of a certificate's validity: Unix seconds, and as shown (`2027-01-31 23:59:59 UTC`).
type When = (i64, String);

const SEQUENCE: u8 = 0x30;

/// The elements of a certificate's `TBSCertificate` in order (RFC 5280): [0] version (absent
/// in v1), serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, ...,
/// [3] extensions.
fn tbs(cert: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let (SEQUENCE, cert, _) = der(cert)? else {
        return None;
    };
    let (SEQUENCE, mut tbs, _) = der(cert)? else {
        return None;
    };
    let mut fields = Vec::new();
    while !tbs.is_empty() {
        let (tag, contents, rest) = der(tbs)?;
        fields.push((tag, contents));
        tbs = rest;
    }
    Some(fields)
}

/// Whether a certificate says it is a CA (basicConstraints with cA TRUE); `None` when it
/// does not parse.
fn is_ca(cert: &[u8]) -> Option<bool> {
    let fields = tbs(cert)?;
    // without extensions (v1, v2) nothing says so
    let Some(&(_, extensions)) = fields.iter().find(|(tag, _)| *tag == 0xa3) else {
        return Some(false);
    };
    let (SEQUENCE, mut list, _) = der(extensions)? else {
        return None;
    };
    while !list.is_empty() {
        let (_, extension, rest) = der(list)?;
        list = rest;
        // extnID, critical (a BOOLEAN, absent when false), extnValue (an OCTET STRING)
        let (0x06, oid, mut extension) = der(extension)? else {
            return None;
        };
        if oid != [0x55, 0x1d, 0x13] {
            continue; // not 2.5.29.19, basicConstraints
        }
        if extension.first() == Some(&0x01) {
            extension = der(extension)?.2;
        }
        let (0x04, value, _) = der(extension)? else {
            return None;
        };
        let (SEQUENCE, constraints, _) = der(value)? else {
            return None;
        };
        return Some(matches!(der(constraints), Some((0x01, [v], _)) if *v != 0));
    }
    Some(false)
}

/// The `n`-th field of a certificate's `TBSCertificate` after its version ([0], absent in
/// v1): 0 serialNumber, 1 signature, 2 issuer, 3 validity, 4 subject, ...
fn tbs_field(cert: &[u8], n: usize) -> Option<(u8, &[u8])> {
    let fields = tbs(cert)?;
    let skip = usize::from(fields.first()?.0 == 0xa0);
    fields.get(skip + n).copied()
}

/// The first common name (2.5.4.3) of a certificate's subject, `None` when it has none or
/// does not parse.
fn common_name(cert: &[u8]) -> Option<String> {
    let (SEQUENCE, mut names) = tbs_field(cert, 4)? else {
        return None;
    };
    // a SEQUENCE of SETs of (OID, value) SEQUENCEs
    while !names.is_empty() {
        let (_, mut set, rest) = der(names)?;
        names = rest;
        while !set.is_empty() {
            let (_, pair, more) = der(set)?;
            set = more;
            let (0x06, oid, value) = der(pair)? else {
                return None;
            };
            if oid == [0x55, 0x04, 0x03] {
                return Some(String::from_utf8_lossy(der(value)?.1).into_owned());
            }
        }
    }
    None
}

/// A certificate's `notBefore` and `notAfter` (RFC 5280: UTCTime or GeneralizedTime, UTC).
fn validity(cert: &[u8]) -> Option<(When, When)> {
    let (SEQUENCE, validity) = tbs_field(cert, 3)? else {
        return None;
    };
    let (t1, before, rest) = der(validity)?;
    let (t2, after, _) = der(rest)?;
    Some((time(t1, before)?, time(t2, after)?))
}

/// UTCTime (`YYMMDDHHMMSSZ`, 1950-2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn time(tag: u8, text: &[u8]) -> Option<When> {
    let text = std::str::from_utf8(text).ok()?;
    let digits = text.strip_suffix('Z')?;
    let (year, rest) = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy: i64 = digits[..2].parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &digits[2..])
        }
        (0x18, 14) => (digits[..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    let field = |i: usize| rest.get(i..i + 2)?.parse::<i64>().ok();
    let (month, day, hour, min, sec) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    // days from 1970-01-01 to the date (the proleptic Gregorian calendar, by eras of 400 years)
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((
        days * 86_400 + hour * 3_600 + min * 60 + sec,
        format!("{year:04}-{month:02}-{day:02} {hour:02}:{min:02}:{sec:02} UTC"),
    ))
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok(), m.len(), m.ino()))
}

impl ServerCert {
    fn read(
        section: &'static str,
        cert_file: &Path,
        key_file: &Path,
        provider: Arc<rustls::crypto::CryptoProvider>,
        handshakes: Arc<Handshakes>,
    ) -> Result<ServerCert, TlsError> {
        let seen = [stamp(cert_file), stamp(key_file)];
        let (first, not_after) = load(section, cert_file, key_file, &provider)?;
        let cert = ServerCert {
            section,
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            current: RwLock::new(Arc::new(first)),
            not_after: not_after.into(),
            provider,
            seen: Mutex::new(seen),
            handshakes,
        };
        Ok(cert)
    }

    fn load(&self) -> Result<(CertifiedKey, i64), TlsError> {
        load(
            self.section,
            &self.cert_file,
            &self.key_file,
            &self.provider,
        )
    }

    /// Reads the files again if they changed since they were last read: `Ok(true)` when the
    /// new certificate is in use (for connections from now on), `Ok(false)` when neither
    /// changed. A pair that does not work leaves the one in use, and is reported once (a
    /// renewal writing one file, then the other, is read again after the second).
    pub fn reload(&self) -> Result<bool, TlsError> {
        let now = [stamp(&self.cert_file), stamp(&self.key_file)];
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if *seen == now {
                return Ok(false);
            }
            *seen = now;
        }
        let (fresh, not_after) = self.load()?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(fresh);
        self.not_after.store(not_after, Relaxed);
        Ok(true)
    }

    /// When the certificate in use expires, Unix seconds.
    pub fn not_after(&self) -> i64 {
        self.not_after.load(Relaxed)
    }

    /// The certificate file, for logs.
    pub fn cert_file(&self) -> &Path {
        &self.cert_file
    }
}

impl rustls::server::ResolvesServerCert for ServerCert {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.handshakes.begun();
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Every certificate in the PEM file `ca` becomes a trust anchor (a CA, or a self-signed
/// server certificate).
fn roots(ca: &Path) -> Result<rustls::RootCertStore, String> {
    roots_of(ca, chain(ca)?)
}

/// [`roots`] of certificates already read from the file `ca`.
fn roots_of(
    ca: &Path,
    certs: Vec<CertificateDer<'static>>,
) -> Result<rustls::RootCertStore, String> {
    let shown = ca.display();
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("{shown}: a certificate rustls cannot use: {e}"))?;
    }
    Ok(roots)
}

/// The certificates in a PEM file, at least one.
fn chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_problem(path, e))?;
    if certs.is_empty() {
        return Err(format!(
            "no certificate (PEM `BEGIN CERTIFICATE`) in {shown}"
        ));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file. The key itself never
/// appears in a message.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let shown = path.display();
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            format!("no private key (PEM `BEGIN PRIVATE KEY`) in {shown}")
        }
        e => pem_problem(path, e),
    })
}

/// A PEM file's damage, in words (the library's own messages show markers as byte lists).
fn pem_problem(path: &Path, e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    let shown = path.display();
    match e {
        Error::MissingSectionEnd { end_marker } => format!(
            "{shown}: a `BEGIN {}` section has no END line (a file cut short?)",
            String::from_utf8_lossy(&end_marker)
        ),
        Error::IllegalSectionStart { .. } => {
            format!("{shown}: a `-----BEGIN` line that is not PEM")
        }
        Error::Base64Decode(why) => format!("{shown}: damaged base64 in a PEM section ({why})"),
        e => format!("{shown}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tls")
            .join(name)
    }

    fn keys<'a>(
        enabled: bool,
        ca: Option<&'a PathBuf>,
        cert: Option<&'a PathBuf>,
        key: Option<&'a PathBuf>,
    ) -> TlsKeys<'a> {
        TlsKeys {
            section: "fluvio",
            enabled,
            ca,
            cert,
            key,
        }
    }

    #[test]
    fn the_rules_name_the_key_at_fault() {
        let (ca, cert, key) = (
            fixture("ca.pem"),
            fixture("client.pem"),
            fixture("client-key.pem"),
        );
        assert!(keys(false, None, None, None)
            .client_config()
            .unwrap()
            .is_none());
        let e = keys(false, None, Some(&cert), None)
            .client_config()
            .unwrap_err();
        assert_eq!(e.key, "fluvio.tls-cert-file");
        assert!(e.why.contains("without tls = true"), "{e:?}");
        let e = keys(true, None, None, None).client_config().unwrap_err();
        assert_eq!(e.key, "fluvio.tls-ca-file");
        let e = keys(true, Some(&ca), Some(&cert), None)
            .client_config()
            .unwrap_err();
        assert_eq!(e.key, "fluvio.tls-key-file");
        let e = keys(true, Some(&ca), None, Some(&key))
            .client_config()
            .unwrap_err();
        assert_eq!(e.key, "fluvio.tls-cert-file");
        // a CA only: the server is verified, no client certificate is offered
        let c = keys(true, Some(&ca), None, None)
            .client_config()
            .unwrap()
            .unwrap();
        assert!(!c.client_auth_cert_resolver.has_certs());
        // mutual: the client certificate is offered
        let c = keys(true, Some(&ca), Some(&cert), Some(&key))
            .client_config()
            .unwrap()
            .unwrap();
        assert!(c.client_auth_cert_resolver.has_certs());
    }

    #[test]
    fn the_server_side_needs_its_certificate_and_key_and_may_require_clients_certificates() {
        let (ca, cert, key) = (
            fixture("ca.pem"),
            fixture("server.pem"),
            fixture("server-key.pem"),
        );
        let http = |enabled, ca, cert, key| TlsKeys {
            section: "http",
            ..keys(enabled, ca, cert, key)
        };
        assert!(http(false, None, None, None)
            .server_config()
            .unwrap()
            .is_none());
        let e = http(false, None, Some(&cert), Some(&key))
            .server_config()
            .unwrap_err();
        assert_eq!(e.key, "http.tls-cert-file");
        assert!(e.why.contains("without tls = true"), "{e:?}");
        let e = http(true, None, None, Some(&key))
            .server_config()
            .unwrap_err();
        assert_eq!(e.key, "http.tls-cert-file");
        let e = http(true, None, Some(&cert), None)
            .server_config()
            .unwrap_err();
        assert_eq!(e.key, "http.tls-key-file");
        // the client's key with the server's certificate
        let other = fixture("client-key.pem");
        let e = http(true, None, Some(&cert), Some(&other))
            .server_config()
            .unwrap_err();
        assert_eq!(e.key, "http.tls-key-file");
        assert!(e.why.contains("does not fit"), "{e:?}");
        let e = http(true, Some(&key), Some(&cert), Some(&key))
            .server_config()
            .unwrap_err();
        assert_eq!(e.key, "http.tls-ca-file");
        assert!(e.why.contains("no certificate"), "{e:?}");
        // a client's own certificate as the clients' CA
        let own = fixture("client.pem");
        let e = http(true, Some(&own), Some(&cert), Some(&key))
            .server_config()
            .unwrap_err();
        assert_eq!(e.key, "http.tls-ca-file");
        assert!(
            e.why.contains("certificate 1 of the file is not a CA"),
            "{e:?}"
        );
        // a certificate, with or without the clients' CA (what each asks of clients:
        // tests/tls.rs, against the running service)
        for ca in [None, Some(&ca)] {
            assert!(http(true, ca, Some(&cert), Some(&key))
                .server_config()
                .unwrap()
                .is_some());
        }
    }

    #[test]
    fn a_refused_client_certificate_is_counted_by_reason_with_its_subject_read() {
        let first = |name: &str| chain(&fixture(name)).unwrap().remove(0);
        assert_eq!(
            common_name(&first("stranger.pem")).as_deref(),
            Some("omnistream test stranger")
        );
        assert_eq!(
            common_name(&first("ca.pem")).as_deref(),
            Some("omnistream test CA")
        );
        assert_eq!(common_name(b"not a certificate"), None);
        // the clients' check of `tls-ca-file`, counting into a registry of its own
        let roots = roots(&fixture("ca.pem")).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let check = ClientCheck {
            inner: rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap(),
            handshakes: Arc::default(),
        };
        let refused =
            prometheus::IntCounterVec::new(prometheus::Opts::new("r", "r"), &["reason"]).unwrap();
        let begun = prometheus::IntCounter::new("b", "b").unwrap();
        check.handshakes.count_into(begun, refused.clone());
        let count = |reason: &str| refused.with_label_values(&[reason]).get();
        assert_eq!(count("unknown_issuer"), 0, "exported at 0");
        use rustls::server::danger::ClientCertVerifier;
        let now = rustls::pki_types::UnixTime::now();
        for (name, outcome) in [
            ("client.pem", None),
            ("stranger.pem", Some("unknown_issuer")),
            ("server.pem", Some("not_for_clients")),
            ("stranger.pem", Some("unknown_issuer")),
        ] {
            let checked = check.verify_client_cert(&first(name), &[], now);
            assert_eq!(checked.is_ok(), outcome.is_none(), "{name}");
        }
        assert_eq!(count("unknown_issuer"), 2);
        assert_eq!(count("not_for_clients"), 1);
        // one log line in the window, the other two refusals waiting for the next
        assert_eq!(check.handshakes.unlogged.load(Relaxed), 2);
        use rustls::CertificateError as C;
        for (e, reason) in [
            (C::Expired, "expired"),
            (C::NotValidYet, "not_yet_valid"),
            (C::BadSignature, "bad_signature"),
            (C::Revoked, "other"),
        ] {
            assert_eq!(refusal(&rustls::Error::InvalidCertificate(e)), reason);
        }
    }

    #[test]
    fn a_certificates_validity_is_read_and_an_expired_one_refused() {
        let der = |f: &str| CertificateDer::from_pem_file(fixture(f)).unwrap().to_vec();
        // made with `-startdate 20200101000000Z -enddate 20210101000000Z` (UTCTime)
        let (before, after) = validity(&der("expired.pem")).unwrap();
        assert_eq!(
            before,
            (1_577_836_800, "2020-01-01 00:00:00 UTC".to_string())
        );
        assert_eq!(
            after,
            (1_609_459_200, "2021-01-01 00:00:00 UTC".to_string())
        );
        // 100 years from 2026-11-30: the end is a GeneralizedTime (after 2049)
        let (before, after) = validity(&der("server.pem")).unwrap();
        assert!(before.1.starts_with("2026-11-30"), "{before:?}");
        assert!(after.1.starts_with("2126-"), "{after:?}");
        assert_eq!(time(0x18, b"21261106100000Z").unwrap().0, 4_949_632_800);
        for bad in [&b"2612011200Z"[..], b"261301120000Z", b"261201120000"] {
            assert!(time(0x17, bad).is_none(), "{bad:?}");
        }
        assert!(validity(b"\x30\x03\x02\x01\x01").is_none());
        // basicConstraints: the CAs say so, the leaves do not
        for (f, ca) in [
            ("ca.pem", true),
            ("other-ca.pem", true),
            ("fluvio-ca.pem", true),
            ("server.pem", false),
            ("client.pem", false),
            ("stranger.pem", false),
            ("expired.pem", false),
        ] {
            assert_eq!(is_ca(&der(f)), Some(ca), "{f}");
        }
        let (cert, key) = (fixture("expired.pem"), fixture("expired-key.pem"));
        let e = TlsKeys {
            section: "http",
            ..keys(true, None, Some(&cert), Some(&key))
        }
        .server_config()
        .unwrap_err();
        assert_eq!(e.key, "http.tls-cert-file");
        assert!(
            e.why.contains("expired on 2021-01-01 00:00:00 UTC"),
            "{e:?}"
        );
    }

    #[test]
    fn the_servers_certificate_is_read_again_when_its_files_change() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("api.pem"), dir.path().join("api-key.pem"));
        let put = |c: &str, k: &str| {
            // a renewal tool's way: write aside, rename over (a new inode each time)
            for (from, to) in [(c, &cert), (k, &key)] {
                let tmp = to.with_extension("new");
                std::fs::copy(fixture(from), &tmp).unwrap();
                std::fs::rename(&tmp, to).unwrap();
            }
        };
        put("server.pem", "server-key.pem");
        let tls = keys(true, None, Some(&cert), Some(&key));
        let tls = TlsKeys {
            section: "http",
            ..tls
        }
        .server_config()
        .unwrap()
        .unwrap();
        let served = || tls.cert.current.read().unwrap().cert[0].to_vec();
        let der = |f: &str| CertificateDer::from_pem_file(fixture(f)).unwrap().to_vec();
        assert_eq!(served(), der("server.pem"));
        assert!(!tls.cert.reload().unwrap(), "nothing changed");
        put("fluvio.pem", "fluvio-key.pem");
        assert!(tls.cert.reload().unwrap());
        assert_eq!(served(), der("fluvio.pem"));
        assert!(!tls.cert.reload().unwrap());
        // half a renewal: a certificate whose key is not there yet is not taken...
        std::fs::copy(fixture("server.pem"), &cert).unwrap();
        let e = tls.cert.reload().unwrap_err();
        assert_eq!(e.key, "http.tls-key-file");
        assert!(e.why.contains("does not fit"), "{e:?}");
        assert_eq!(served(), der("fluvio.pem"), "the one in use is kept");
        // ...nor reported again until the files change once more
        assert!(!tls.cert.reload().unwrap());
        std::fs::copy(fixture("server-key.pem"), &key).unwrap();
        assert!(tls.cert.reload().unwrap());
        assert_eq!(served(), der("server.pem"));
        // a file gone: refused, the one in use kept
        std::fs::remove_file(&cert).unwrap();
        let e = tls.cert.reload().unwrap_err();
        assert_eq!(e.key, "http.tls-cert-file");
        assert_eq!(served(), der("server.pem"));
    }

    #[test]
    fn bad_files_are_refused_naming_the_file_and_never_showing_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = (
            fixture("ca.pem"),
            fixture("client.pem"),
            fixture("client-key.pem"),
        );
        let missing = dir.path().join("missing.pem");
        let e = keys(true, Some(&missing), None, None)
            .client_config()
            .unwrap_err();
        assert_eq!(e.key, "fluvio.tls-ca-file");
        assert!(e.why.contains("missing.pem"), "{e:?}");
        // a certificate file where the key should be
        let e = keys(true, Some(&ca), Some(&cert), Some(&cert))
            .client_config()
            .unwrap_err();
        assert_eq!(e.key, "fluvio.tls-key-file");
        assert!(e.why.contains("no private key"), "{e:?}");
        // a key file where the certificate should be
        let e = keys(true, Some(&ca), Some(&key), Some(&key))
            .client_config()
            .unwrap_err();
        assert_eq!(e.key, "fluvio.tls-cert-file");
        assert!(e.why.contains("no certificate"), "{e:?}");
        // the server's key with the client's certificate: they do not belong together
        let other = fixture("server-key.pem");
        let e = keys(true, Some(&ca), Some(&cert), Some(&other))
            .client_config()
            .unwrap_err();
        assert_eq!(e.key, "fluvio.tls-key-file");
        assert!(e.why.contains("does not fit"), "{e:?}");
        let secret = std::fs::read_to_string(&other).unwrap();
        let body = secret.lines().nth(1).unwrap();
        assert!(!e.why.contains(body), "the key is never shown: {e:?}");
        // a damaged certificate
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = keys(true, Some(&broken), None, None)
            .client_config()
            .unwrap_err();
        assert_eq!(e.key, "fluvio.tls-ca-file");
        assert!(e.why.contains("broken.pem"), "{e:?}");
        // a file cut short: said in words, not as the marker's bytes
        let pem = std::fs::read_to_string(&ca).unwrap();
        std::fs::write(&broken, &pem[..pem.len() / 2]).unwrap();
        let e = keys(true, Some(&broken), None, None)
            .client_config()
            .unwrap_err();
        assert!(
            e.why
                .contains("`BEGIN CERTIFICATE` section has no END line"),
            "{e:?}"
        );
    }
}
