//! The service harness the end-to-end tests share: `omnistream run` as a child process on
//! port 0, driven over real HTTP, and the scripted day with its observed final state.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test binary uses a part

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One GET to `addr` over real HTTP, with a bearer token if given: the status and the body.
pub fn http_get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp[9..12].parse().unwrap();
    (
        code,
        resp.split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string(),
    )
}

/// A running `omnistream run` child process and its address.
pub struct Service {
    child: Child,
    /// `ip:port` it listens on.
    pub addr: String,
    /// `http` or `https`, as it said.
    pub scheme: String,
}

/// The scheme and address a started `omnistream run` or `demo` (its standard output piped)
/// says it listens on, from its first line.
pub fn listening_url(child: &mut Child) -> (String, String) {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim()
        .strip_prefix("omnistream listening on ")
        .and_then(|url| url.split_once("://"))
        .map(|(scheme, addr)| (scheme.to_string(), addr.to_string()))
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
}

/// The address of [`listening_url`].
pub fn listening_addr(child: &mut Child) -> String {
    listening_url(child).1
}

impl Service {
    /// `omnistream run` on the embedded store in `dir`.
    pub fn start(dir: &Path) -> Service {
        Service::start_with(dir, &[])
    }

    /// `omnistream run` with extra environment (e.g. `OMNISTREAM_STORE=cql`).
    pub fn start_with(dir: &Path, env: &[(&str, &str)]) -> Service {
        Service::start_logging(dir, env, Stdio::inherit())
    }

    /// `omnistream run` with extra environment and its log (stderr) sent to `stderr`.
    pub fn start_logging(dir: &Path, env: &[(&str, &str)], stderr: Stdio) -> Service {
        Service::start_args(dir, &[], env, stderr)
    }

    /// `omnistream run` with more arguments (`--input FILE`), environment and log.
    pub fn start_args(dir: &Path, args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Service {
        Service::listening(Service::spawn(dir, args, env, stderr))
    }

    /// `omnistream run` started, not yet listening (its standard output piped).
    pub fn spawn(dir: &Path, args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Child {
        Command::new(env!("CARGO_BIN_EXE_omnistream"))
            .args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(args)
            .env("OMNISTREAM_PII_KEY", "service-test-key")
            .env("OMNISTREAM_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap()
    }

    /// A [`Service::spawn`]ed process once it says it listens (blocks until then).
    pub fn listening(mut child: Child) -> Service {
        let (scheme, addr) = listening_url(&mut child);
        Service {
            child,
            addr,
            scheme,
        }
    }

    /// One request; the status and the body as text.
    pub fn request_text(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let code: u16 = resp[9..12].parse().unwrap();
        let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        (code, body.to_string())
    }

    /// One request; the status and the body as JSON (null when it is not JSON).
    pub fn request(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let (code, text) = self.request_text(method, path, body);
        (code, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Sends `head` (request line and headers, without the blank line) and `body` as they are;
    /// answers the status, the response head and the body. An event stream is answered
    /// once its head arrived (it would never end).
    pub fn raw(&self, head: &str, body: &[u8]) -> (u16, String, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut req = format!(
            "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        // the server may answer (413) and close before it read the whole body
        let _ = s.write_all(&req);
        let mut resp = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            let n = match s.read(&mut buf) {
                Ok(n) => n,
                Err(_) if !resp.is_empty() => 0,
                Err(e) => panic!("{head}: {e}"),
            };
            if n == 0 {
                break;
            }
            resp.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&resp);
            if let Some((h, _)) = text.split_once("\r\n\r\n") {
                if h.to_ascii_lowercase()
                    .contains("content-type: text/event-stream")
                {
                    break;
                }
            }
        }
        let text = String::from_utf8_lossy(&resp).to_string();
        assert!(text.len() >= 12, "{head}: short answer {text:?}");
        let code: u16 = text[9..12].parse().unwrap();
        let (h, b) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (code, h.to_string(), b.to_string())
    }

    /// The process id (for /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn get(&self, path: &str) -> Value {
        let (code, v) = self.request("GET", path, "");
        assert_eq!(code, 200, "GET {path}: {v}");
        v
    }

    pub fn post(&self, events: &[String]) -> Value {
        let (code, v) = self.request("POST", "/v1/events", &events.join("\n"));
        assert_eq!(code, 200, "{v}");
        v
    }

    /// SIGTERM: graceful, commits what waits.
    pub fn stop(mut self) {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "exit after SIGTERM: {status}");
    }

    /// Waits for the process to exit after a signal sent otherwise; asserts it exited 0.
    pub fn wait_exit(mut self) {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "exit: {status}");
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Each item of the array `list`'s `field`, as text: the statuses of an ingest answer's
/// `results`, the ids of a list route's `items`.
pub fn texts<'a>(list: &'a Value, field: &str) -> Vec<&'a str> {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|i| i[field].as_str().unwrap())
        .collect()
}

pub fn id(n: u32) -> String {
    format!("00000000-0000-7000-8000-{n:012}")
}

/// A scripted day: stock, a consumer order through fulfilment and a partial return, a scan
/// campaign, a dealer order held then released, and an identity merge across channels.
pub fn script() -> Vec<String> {
    let t = |h: u32, m: u32| format!("2026-11-11T{h:02}:{m:02}:00+08:00");
    let mut n = 0;
    let mut ev = |v: Value| {
        n += 1;
        let mut v = v;
        v["id"] = json!(id(n));
        v.to_string()
    };
    let mut out = vec![
        ev(json!({"type":"stock","ts":t(8,0),"sku":"S1","location":"wh","op":"receive","qty":100})),
        ev(json!({"type":"dealer","ts":t(8,0),"dealer":"d1","credit_limit":50000})),
        ev(
            json!({"type":"order","ts":t(9,0),"channel":"mall","order":"o1","status":"placed","kind":"consumer",
            "member":{"openid":"oa"},"lines":[{"sku":"S1","qty":2,"unit_price":10000}],"location":"wh"}),
        ),
        ev(
            json!({"type":"order","ts":t(10,0),"channel":"mall","order":"o1","status":"fulfilled","kind":"consumer","member":{"openid":"oa"}}),
        ),
        ev(
            json!({"type":"order","ts":t(11,0),"channel":"mall","order":"o1","status":"returned","kind":"consumer",
            "member":{"openid":"oa"},"lines":[{"sku":"S1","qty":1,"unit_price":10000}]}),
        ),
        ev(
            json!({"type":"order","ts":t(12,0),"channel":"dealer","order":"p1","status":"placed","kind":"dealer","dealer":"d1",
            "lines":[{"sku":"S1","qty":40,"unit_price":1000}],"location":"wh"}),
        ),
        ev(
            json!({"type":"order","ts":t(12,5),"channel":"dealer","order":"p2","status":"placed","kind":"dealer","dealer":"d1",
            "lines":[{"sku":"S1","qty":20,"unit_price":1000}],"location":"wh"}),
        ),
    ];
    for (i, who) in ["ob", "ob", "oc"].iter().enumerate() {
        out.push(ev(json!({"type":"scan","ts":t(13, i as u32),"channel":"campaign","code":format!("C{i}"),"sku":"S1",
            "campaign":"cny","member":{"openid":who},"device":"d1","ip":"10.1.1.1"})));
    }
    out.extend([
        ev(json!({"type":"order","ts":t(14,0),"channel":"dealer","order":"p1","status":"fulfilled","kind":"dealer","dealer":"d1"})),
        ev(json!({"type":"payment","ts":t(15,0),"dealer":"d1","amount":40000,"ref":"B-1"})),
        ev(json!({"type":"visit","ts":t(16,0),"channel":"store","store":"st1","visitor":"member","member":{"phone":"13800138000"}})),
        ev(json!({"type":"identify","ts":t(17,0),"member":{"phone":"13800138000","openid":"oa"}})),
    ]);
    out
}

/// What the scenario's final state looks like through the API.
pub fn observe(s: &Service) -> Value {
    let by_phone = s.get("/v1/identities/phone/13800138000");
    let by_openid = s.get("/v1/identities/openid/oa");
    let ledger = s.get(&format!(
        "/v1/members/{}/ledger",
        by_openid["id"].as_str().unwrap()
    ));
    json!({
        "member": by_openid,
        "same_member": by_phone["id"] == by_openid["id"],
        "ledger": ledger,
        "scanner": s.get("/v1/identities/openid/ob"),
        "stock": s.get("/v1/skus/S1/stock"),
        "credit": s.get("/v1/dealers/d1/credit"),
        "kpis": s.get("/v1/stores/st1/kpis"),
        "order": s.get("/v1/orders/mall/o1"),
    })
}

/// `n` events of the `smoke` scenario, as JSON lines.
pub fn smoke_events(n: u64) -> Vec<u8> {
    let mut sc = omnistream_loadtest::Scenario::load("smoke").unwrap();
    sc.events = n;
    let mut events = Vec::new();
    omnistream_loadtest::generate(&sc, &mut events, &mut std::io::sink(), &mut |_| {}).unwrap();
    events
}

/// A short `loadtest http` drive: one event a request over two connections, 0.2 s closed
/// loop, then 0.3 s paced at half its rate.
pub fn short_drive() -> omnistream_loadtest::http::Options {
    omnistream_loadtest::http::Options {
        batch: 1,
        connections: 2,
        max_secs: 0.2,
        paced_secs: 0.3,
        fraction: 0.5,
    }
}

/// The value of one sample line of the Prometheus text format (`series` is the metric's
/// name with its labels as the service writes them); panics when it is missing.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}
