//! TLS client settings, one set of rules for the CQL store and the Fluvio transport: rustls
//! with the aws-lc-rs provider, trust anchors from a PEM file (`tls-ca-file`), and optionally
//! a client certificate and its key (`tls-cert-file`, `tls-key-file`) for servers that
//! authenticate their clients (mutual TLS).
//!
//! The files are read and checked when the configuration is checked, so a bad file stops
//! start-up naming the key and the file, before anything connects.

use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The TLS keys of one configuration section (`cql` or `fluvio`).
#[derive(Debug, Clone, Copy)]
pub struct TlsKeys<'a> {
    /// The section, for error messages: `cql`, `fluvio`.
    pub section: &'static str,
    /// `tls`: encrypt the connections.
    pub enabled: bool,
    /// `tls-ca-file`: the certificates to trust.
    pub ca: Option<&'a PathBuf>,
    /// `tls-cert-file`: this client's certificate chain.
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
            return Ok(None);
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
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Every certificate in the PEM file `ca` becomes a trust anchor (a CA, or a self-signed
/// server certificate).
fn roots(ca: &Path) -> Result<rustls::RootCertStore, String> {
    let shown = ca.display();
    let mut roots = rustls::RootCertStore::empty();
    for cert in chain(ca)? {
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
        .map_err(|e| format!("{shown}: {e}"))?;
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
        e => format!("{shown}: {e}"),
    })
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
    }
}
