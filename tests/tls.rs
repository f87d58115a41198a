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

// ---- the HTTP API over TLS (`[http] tls`): the service itself, started on port 0 ----

mod common;

/// A client trusting `ca`, presenting the test client certificate when `client` is true.
fn api_client(ca: &str, client: bool) -> Arc<rustls::ClientConfig> {
    api_client_as(ca, client.then_some(("client.pem", "client-key.pem")))
}

/// A client trusting `ca`, presenting the certificate and key of these fixtures if any.
fn api_client_as(ca: &str, presents: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    let ca = fixture(ca);
    let (cert, key) = presents.map_or((None, None), |(c, k)| (Some(fixture(c)), Some(fixture(k))));
    omnistream::tls::TlsKeys {
        section: "test",
        enabled: true,
        ca: Some(&ca),
        cert: cert.as_ref(),
        key: key.as_ref(),
    }
    .client_config()
    .unwrap()
    .unwrap()
}

/// One request over TLS to `addr` (the server checked as `localhost`): the status and the
/// body, or what failed (the handshake, the server hanging up).
fn https(
    addr: &str,
    client: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), String> {
    https_to("localhost", addr, client, method, path, body)
}

/// [`https`] checking the server's certificate for `name`.
fn https_to(
    name: &str,
    addr: &str,
    client: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), String> {
    use std::io::Write;
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(client, name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    match tls.read_to_end(&mut resp) {
        Ok(_) => {}
        // actix closes without close_notify once it has answered `Connection: close`
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !resp.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    let text = String::from_utf8_lossy(&resp).to_string();
    let code = text
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {text:?}"))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((code, body.to_string()))
}

/// A plain HTTP request to the TLS port `addr` gets no HTTP answer (the handshake fails on
/// it and the server hangs up).
fn plain_http_gets_no_answer(addr: &str) {
    let mut plain = std::net::TcpStream::connect(addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    std::io::Write::write_all(
        &mut plain,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(
        !got.starts_with(b"HTTP/"),
        "plain HTTP answered: {:?}",
        String::from_utf8_lossy(&got)
    );
}

/// `omnistream run` serving HTTPS with the test server certificate, and with the test CA as
/// the clients' CA when `mutual` is true.
fn https_service(dir: &Path, mutual: bool) -> common::Service {
    let (cert, key, ca) = (
        fixture("server.pem"),
        fixture("server-key.pem"),
        fixture("ca.pem"),
    );
    let mut env = vec![
        ("OMNISTREAM_HTTP__TLS", "true".to_string()),
        ("OMNISTREAM_HTTP__TLS_CERT_FILE", cert.display().to_string()),
        ("OMNISTREAM_HTTP__TLS_KEY_FILE", key.display().to_string()),
    ];
    if mutual {
        env.push(("OMNISTREAM_HTTP__TLS_CA_FILE", ca.display().to_string()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // the log in `dir/service.log`, the data in `dir/data`
    let log = std::fs::File::create(dir.join("service.log")).unwrap();
    let svc = common::Service::start_logging(&dir.join("data"), &env, log.into());
    assert_eq!(svc.scheme, "https", "the service says what it serves");
    svc
}

#[test]
fn the_api_serves_https_and_refuses_plain_http_and_untrusting_clients() {
    let dir = tempfile::tempdir().unwrap();
    let svc = https_service(dir.path(), false);
    let trusting = api_client("ca.pem", false);
    let (code, body) = https(&svc.addr, trusting.clone(), "GET", "/healthz", "").unwrap();
    assert_eq!(code, 200, "{body}");
    // the API itself, not only health: an event in, the member out
    let event = common::script().remove(0);
    let (code, body) = https(&svc.addr, trusting.clone(), "POST", "/v1/events", &event).unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"accepted\""), "{body}");
    let (code, body) = https(&svc.addr, trusting.clone(), "GET", "/v1/stats", "").unwrap();
    assert_eq!(code, 200, "{body}");
    plain_http_gets_no_answer(&svc.addr);
    // a client that trusts another CA refuses the service's certificate
    let err = https(
        &svc.addr,
        api_client("other-ca.pem", false),
        "GET",
        "/healthz",
        "",
    )
    .unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
    // and the service still serves the trusting client after those failures
    let (code, _) = https(&svc.addr, trusting, "GET", "/readyz", "").unwrap();
    assert_eq!(code, 200);
    svc.stop();
}

#[test]
fn the_api_with_a_clients_ca_serves_only_clients_with_its_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let svc = https_service(dir.path(), true);
    let err = https(
        &svc.addr,
        api_client("ca.pem", false),
        "GET",
        "/healthz",
        "",
    )
    .expect_err("a client without a certificate is refused in the handshake");
    eprintln!("no client certificate: {err}");
    // a client certificate the CA did not sign (self-signed), and one from the right CA
    // that is not for clients (the server's own: no clientAuth usage)
    for (cert, key) in [
        ("stranger.pem", "stranger-key.pem"),
        ("server.pem", "server-key.pem"),
    ] {
        let err = https(
            &svc.addr,
            api_client_as("ca.pem", Some((cert, key))),
            "GET",
            "/healthz",
            "",
        )
        .expect_err("refused in the handshake");
        // the client learns it by the server's alert, or by the hang-up after it (a broken
        // pipe when its request was still being written)
        eprintln!("{cert} as a client certificate: {err}");
    }
    let (code, body) = https(&svc.addr, api_client("ca.pem", true), "GET", "/healthz", "").unwrap();
    assert_eq!(code, 200, "{body}");
    // the health routes too: the whole port asks for a certificate
    let (code, metrics) =
        https(&svc.addr, api_client("ca.pem", true), "GET", "/metrics", "").unwrap();
    assert_eq!(code, 200);
    // the two certificates refused are counted by reason; the client without one is not
    // (rustls refuses it before any certificate is checked), but its handshake begun and
    // never completed is: five begun (this scrape's included), two served
    let value = |series: String| common::sample(&metrics, &series);
    let refused = "omnistream_http_tls_client_certificates_refused_total";
    assert_eq!(
        value(format!("{refused}{{reason=\"unknown_issuer\"}}")),
        1.0
    );
    assert_eq!(
        value(format!("{refused}{{reason=\"not_for_clients\"}}")),
        1.0
    );
    assert_eq!(value(format!("{refused}{{reason=\"expired\"}}")), 0.0);
    let handshakes = "omnistream_http_tls_handshakes_total";
    assert_eq!(value(format!("{handshakes}{{stage=\"begun\"}}")), 5.0);
    assert_eq!(value(format!("{handshakes}{{stage=\"completed\"}}")), 2.0);
    svc.stop();
    // one log line for the first refusal (the next within 10 s only counted), naming the
    // reason and the certificate's subject
    let log = std::fs::read_to_string(dir.path().join("service.log")).unwrap();
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("a client's certificate was refused"))
        .collect();
    assert_eq!(refusals.len(), 1, "{log}");
    for part in [
        "unknown_issuer",
        "omnistream test stranger",
        "UnknownIssuer",
    ] {
        assert!(refusals[0].contains(part), "{part}: {log}");
    }
}

#[test]
fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("api.pem"), dir.path().join("api-key.pem"));
    let put = |c: &str, k: &str| {
        for (from, to) in [(k, &key), (c, &cert)] {
            let tmp = to.with_extension("new");
            std::fs::copy(fixture(from), &tmp).unwrap();
            std::fs::rename(&tmp, to).unwrap();
        }
    };
    put("server.pem", "server-key.pem");
    let env = [
        ("OMNISTREAM_HTTP__TLS", "true"),
        ("OMNISTREAM_HTTP__TLS_CERT_FILE", cert.to_str().unwrap()),
        ("OMNISTREAM_HTTP__TLS_KEY_FILE", key.to_str().unwrap()),
        ("OMNISTREAM_HTTP__TLS_RELOAD_S", "1"),
    ];
    let svc = common::Service::start_with(&dir.path().join("data"), &env);
    let get = |ca: &str, name: &str, path: &str| {
        https_to(name, &svc.addr, api_client(ca, false), "GET", path, "")
    };
    assert_eq!(get("ca.pem", "localhost", "/healthz").unwrap().0, 200);
    // both outcomes are exported before anything happened (an alert on `failed` then sees
    // it rise from 0), and the certificate is not stale
    let (_, metrics) = get("ca.pem", "localhost", "/metrics").unwrap();
    for line in [
        "omnistream_http_tls_reloads_total{outcome=\"failed\"} 0",
        "omnistream_http_tls_reloads_total{outcome=\"reloaded\"} 0",
        "omnistream_http_tls_certificate_stale 0",
        // server.pem's end: 2126-11-06 08:31:41 UTC (openssl x509 -enddate)
        "omnistream_http_tls_certificate_expiry_timestamp_seconds 4949627501",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}: {metrics}");
    }
    // the renewal: Fluvio's test certificate, of another CA and name, in the same files
    put("fluvio.pem", "fluvio-key.pem");
    let t = std::time::Instant::now();
    while get("fluvio-ca.pem", "fluvio.local", "/healthz").is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the new certificate was not served within 20 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let err = get("ca.pem", "localhost", "/healthz").unwrap_err();
    assert!(err.contains("UnknownIssuer"), "the old one is gone: {err}");
    // (a reload can meet the key renamed and not yet the certificate: a failure, then the
    // pair on the next look; so failures are counted from here)
    let value = |name: &str| -> u64 {
        let (code, metrics) = get("fluvio-ca.pem", "fluvio.local", "/metrics").unwrap();
        assert_eq!(code, 200);
        let name = format!("{name} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&name))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    let count = |outcome: &str| {
        value(&format!(
            "omnistream_http_tls_reloads_total{{outcome=\"{outcome}\"}}"
        ))
    };
    let stale = || value("omnistream_http_tls_certificate_stale");
    assert!(count("reloaded") >= 1);
    assert_eq!(stale(), 0, "the files' certificate is the one in use");
    let failed = count("failed");
    // a renewal gone wrong (not a certificate) is not taken: the one in use stays, and the
    // failure is counted
    std::fs::write(&cert, b"not a certificate\n").unwrap();
    let t = std::time::Instant::now();
    while count("failed") == failed {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the bad file was not noticed within 20 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        get("fluvio-ca.pem", "fluvio.local", "/healthz").unwrap().0,
        200,
        "the certificate in use is kept"
    );
    assert_eq!(
        stale(),
        1,
        "and it is older than the files: the alert's gauge"
    );
    svc.stop();
}

#[test]
fn a_cluster_process_serves_health_and_metrics_over_https() {
    let mut cfg = omnistream::config::Config::default();
    cfg.http.tls = true;
    cfg.http.tls_cert_file = Some(fixture("server.pem"));
    cfg.http.tls_key_file = Some(fixture("server-key.pem"));
    cfg.check().unwrap();
    let metrics = Arc::new(omnistream::metrics::Metrics::new(true));
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let h = omnistream::http::serve_cluster(&cfg, l, metrics.clone()).unwrap();
    let (code, _) = https(&addr, api_client("ca.pem", false), "GET", "/healthz", "").unwrap();
    assert_eq!(code, 200);
    metrics.cluster_epochs.inc_by(3);
    let (code, body) = https(&addr, api_client("ca.pem", false), "GET", "/metrics", "").unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("omnistream_cluster_epochs_total 3"), "{body}");
    plain_http_gets_no_answer(&addr);
    rt().block_on(h.stop(true));
}

#[test]
fn https_settings_that_cannot_work_stop_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let (cert, other_key) = (fixture("server.pem"), fixture("client-key.pem"));
    // the environment, the key named, a word of the reason
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let (expired, expired_key) = (fixture("expired.pem"), fixture("expired-key.pem"));
    let cases: [Case; 5] = [
        (
            &[("OMNISTREAM_HTTP__TLS", "true")],
            "http.tls-cert-file",
            "tls = true needs",
        ),
        (
            &[
                ("OMNISTREAM_HTTP__TLS", "true"),
                ("OMNISTREAM_HTTP__TLS_CERT_FILE", missing.to_str().unwrap()),
                ("OMNISTREAM_HTTP__TLS_KEY_FILE", missing.to_str().unwrap()),
            ],
            "http.tls-cert-file",
            "missing.pem",
        ),
        (
            &[("OMNISTREAM_HTTP__TLS_KEY_FILE", missing.to_str().unwrap())],
            "http.tls-key-file",
            "without tls = true",
        ),
        (
            &[
                ("OMNISTREAM_HTTP__TLS", "true"),
                ("OMNISTREAM_HTTP__TLS_CERT_FILE", cert.to_str().unwrap()),
                ("OMNISTREAM_HTTP__TLS_KEY_FILE", other_key.to_str().unwrap()),
            ],
            "http.tls-key-file",
            "does not fit",
        ),
        (
            &[
                ("OMNISTREAM_HTTP__TLS", "true"),
                ("OMNISTREAM_HTTP__TLS_CERT_FILE", expired.to_str().unwrap()),
                (
                    "OMNISTREAM_HTTP__TLS_KEY_FILE",
                    expired_key.to_str().unwrap(),
                ),
            ],
            "http.tls-cert-file",
            "expired on 2021-01-01",
        ),
    ];
    for (env, key, why) in cases {
        for cmd in ["run", "check-config"] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_omnistream"))
                .arg(cmd)
                .args(["--listen", "127.0.0.1:0", "--data-dir"])
                .arg(dir.path().join("data"))
                .env("OMNISTREAM_LOG", "warn")
                .envs(env.iter().copied())
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{cmd} {env:?}: {err}");
            assert!(
                err.contains(key) && err.contains(why),
                "{cmd} {env:?}: {err}"
            );
        }
    }
    // demo feeds itself over plain HTTP: it says so instead of failing every request
    let key = fixture("server-key.pem");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["demo", "--listen", "127.0.0.1:0"])
        .env("OMNISTREAM_LOG", "warn")
        .env("OMNISTREAM_HTTP__TLS", "true")
        .env("OMNISTREAM_HTTP__TLS_CERT_FILE", &cert)
        .env("OMNISTREAM_HTTP__TLS_KEY_FILE", &key)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("http.tls") && err.contains("plain HTTP"),
        "{err}"
    );
}

/// `loadtest http --tls-ca`: the load driver speaks HTTPS to a service with `[http] tls`,
/// and its report counts the events the service accepted (so the HTTPS figures of
/// BENCHMARKS.md measure the service, not refusals).
#[test]
fn the_load_driver_drives_a_service_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let svc = https_service(dir.path(), false);
    omnistream_loadtest::http::use_https(&fixture("ca.pem")).unwrap();
    let events = common::smoke_events(2_000);
    // the test certificate carries IP:127.0.0.1, the host of the service's address
    let report =
        omnistream_loadtest::http::run(&svc.addr, &events, &common::short_drive(), &mut |_| {})
            .unwrap();
    let paced = report.paced.as_ref().expect("2,000 events outlast 0.2 s");
    for p in [&report.max, paced] {
        assert!(p.events_accepted > 0, "{p:?}");
        assert_eq!(p.events_accepted + p.events_duplicate, p.ok, "{p:?}");
    }
    svc.stop();
}
