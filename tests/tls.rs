//! TLS from the client side, against a TLS server in the test on 127.0.0.1:0 (there is no
//! Fluvio cluster on this machine, and the test Cassandra node does not ask for client
//! certificates): the Fluvio transport and the CQL store really handshake with the configured
//! CA and client certificate, and refuse a server they should not trust. The server needs a
//! client certificate signed by the test CA (mutual TLS), completes the handshake, reads the
//! first bytes of the client's protocol, and hangs up; the client then fails for want of a
//! real cluster, after the part under test.

use omnistream::config::{CqlConfig, FluvioConfig};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Duration;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// What the server saw of one connection.
#[derive(Debug)]
enum Seen {
    /// Handshake done: the client's certificate (DER) and the first bytes it sent inside TLS.
    Handshake { client_cert: Vec<u8>, bytes: usize },
    /// The handshake failed, and why.
    Failed(String),
}

/// A TLS server on 127.0.0.1:0 with the test server certificate, requiring client
/// certificates signed by the test CA. Reports each connection (at most `n`) on the channel.
fn server(n: usize) -> (u16, mpsc::Receiver<Seen>) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(fixture("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let chain: Vec<_> = CertificateDer::pem_file_iter(fixture("server.pem"))
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(fixture("server-key.pem")).unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(n) {
            let Ok(mut tcp) = stream else { continue };
            tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
            let mut conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut seen = None;
            while conn.is_handshaking() {
                if let Err(e) = conn.complete_io(&mut tcp) {
                    seen = Some(Seen::Failed(e.to_string()));
                    break;
                }
            }
            let seen = seen.unwrap_or_else(|| {
                let client_cert = conn
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.to_vec())
                    .unwrap_or_default();
                let mut buf = [0u8; 64];
                let bytes = rustls::Stream::new(&mut conn, &mut tcp)
                    .read(&mut buf)
                    .unwrap_or(0);
                Seen::Handshake { client_cert, bytes }
            });
            if tx.send(seen).is_err() {
                return;
            }
        }
    });
    (port, rx)
}

fn client_cert_der() -> Vec<u8> {
    CertificateDer::from_pem_file(fixture("client.pem"))
        .unwrap()
        .to_vec()
}

/// The server's next connection completed the handshake with our client certificate and
/// then received `what` inside TLS; `err` is what the client said, for the message.
fn handshook(seen: &mpsc::Receiver<Seen>, what: &str, err: &dyn std::fmt::Display) {
    match seen.recv_timeout(Duration::from_secs(20)).unwrap() {
        Seen::Handshake { client_cert, bytes } => {
            assert_eq!(client_cert, client_cert_der(), "our client certificate");
            assert!(bytes > 0, "{what} after the handshake");
        }
        Seen::Failed(why) => panic!("handshake failed: {why} (client: {err})"),
    }
}

fn fluvio_cfg(port: u16, ca: &str, client: bool) -> FluvioConfig {
    let mut cfg = FluvioConfig {
        endpoint: format!("127.0.0.1:{port}"),
        tls: true,
        // a name of the test certificate (an SPU would be checked as `<SPU name>.localhost`)
        tls_domain: Some("localhost".into()),
        tls_ca_file: Some(fixture(ca)),
        connect_timeout_ms: 5_000,
        ..FluvioConfig::default()
    };
    if client {
        cfg.tls_cert_file = Some(fixture("client.pem"));
        cfg.tls_key_file = Some(fixture("client-key.pem"));
    }
    cfg.check().unwrap();
    cfg
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn fluvio_connects_over_mutual_tls_and_refuses_an_untrusted_server() {
    let (port, seen) = server(3);
    let rt = rt();
    // trusted CA and client certificate: the handshake completes with our certificate and
    // the first fluvio request arrives encrypted
    let err = rt
        .block_on(omnistream::fluvio::client::connect(&fluvio_cfg(
            port, "ca.pem", true,
        )))
        .err()
        .expect("the test server is no Fluvio cluster");
    handshook(&seen, "a fluvio request", &err);
    // the server's certificate is not from the CA we trust: the client refuses it
    let err = rt
        .block_on(omnistream::fluvio::client::connect(&fluvio_cfg(
            port,
            "other-ca.pem",
            true,
        )))
        .err()
        .expect("an untrusted server is refused")
        .to_string();
    assert!(matches!(
        seen.recv_timeout(Duration::from_secs(20)).unwrap(),
        Seen::Failed(_)
    ));
    assert!(
        err.contains(&format!("127.0.0.1:{port}")),
        "names the endpoint: {err}"
    );
    // no client certificate: the server refuses the client
    let _ = rt.block_on(omnistream::fluvio::client::connect(&fluvio_cfg(
        port, "ca.pem", false,
    )));
    match seen.recv_timeout(Duration::from_secs(20)).unwrap() {
        Seen::Failed(why) => assert!(why.to_lowercase().contains("certificate"), "{why}"),
        s => panic!("a client without a certificate got through: {s:?}"),
    }
}

#[test]
fn fluvio_tls_name_is_never_an_ip_address_and_a_wrong_name_is_refused() {
    let (port, seen) = server(1);
    let mut cfg = fluvio_cfg(port, "ca.pem", true);
    cfg.tls_domain = None;
    assert_eq!(
        cfg.tls_name(),
        "127.0.0.1",
        "the endpoint's host by default"
    );
    let e = cfg.check().unwrap_err();
    assert_eq!(e.key, "fluvio.tls-domain");
    cfg.tls_domain = Some("fluvio.example.com".into());
    cfg.check().unwrap();
    let err = rt()
        .block_on(omnistream::fluvio::client::connect(&cfg))
        .err()
        .expect("the certificate is not for that name")
        .to_string();
    assert!(matches!(
        seen.recv_timeout(Duration::from_secs(20)).unwrap(),
        Seen::Failed(_)
    ));
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

#[test]
fn cql_offers_its_client_certificate_to_a_node_that_asks() {
    let (port, seen) = server(1);
    let cfg = CqlConfig {
        contact_points: vec![format!("127.0.0.1:{port}")],
        tls: true,
        tls_ca_file: Some(fixture("ca.pem")),
        tls_cert_file: Some(fixture("client.pem")),
        tls_key_file: Some(fixture("client-key.pem")),
        request_timeout_ms: 3_000,
        ..CqlConfig::default()
    };
    cfg.check().unwrap();
    let err = omnistream::cql::CqlStore::open(&cfg)
        .err()
        .expect("the test server is no CQL node");
    handshook(&seen, "a CQL frame", &err);
}
