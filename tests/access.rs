//! Access control end to end: every route of `omnistream::http::ROUTES` (the list the App is
//! built from) refuses no token (401) and a wrong-scope token (403) and serves the right one;
//! bad token configuration stops start-up naming the key; secrets are never printed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use common::{id, script, Service};
use omnistream::http::{Access, BOARD_ROUTES, ROUTES};
use serde_json::Value;
use std::process::Command;

const SECRETS: &[(&str, &str, &str)] = &[
    (
        "OMNISTREAM_TOKEN_INGEST",
        "ingest",
        "ingest-secret-0123456789",
    ),
    ("OMNISTREAM_TOKEN_READ", "read", "read-secret-0123456789ab"),
    (
        "OMNISTREAM_TOKEN_REVIEW",
        "review",
        "review-secret-0123456789",
    ),
    (
        "OMNISTREAM_TOKEN_POINTS",
        "points",
        "points-secret-0123456789",
    ),
    (
        "OMNISTREAM_TOKEN_MEMBERS",
        "members",
        "members-secret-012345678",
    ),
    (
        "OMNISTREAM_TOKEN_ADMIN",
        "admin",
        "admin-secret-0123456789a",
    ),
];

fn secret(scope: &str) -> &'static str {
    SECRETS.iter().find(|s| s.1 == scope).unwrap().2
}

/// One token per scope, each holding only that scope.
fn tokens_toml() -> String {
    let t: Vec<String> = SECRETS
        .iter()
        .map(|(var, scope, _)| {
            format!(r#"{{name = "{scope}-only", scopes = ["{scope}"], token-env = "{var}"}}"#)
        })
        .collect();
    format!("[{}]", t.join(", "))
}

fn start(dir: &std::path::Path, extra: &[(&str, &str)]) -> Service {
    let tokens = tokens_toml();
    let mut env: Vec<(&str, &str)> = vec![
        ("OMNISTREAM_AUTH__ENABLED", "true"),
        ("OMNISTREAM_AUTH__TOKENS", &tokens),
    ];
    env.extend(SECRETS.iter().map(|(var, _, s)| (*var, *s)));
    env.extend_from_slice(extra);
    Service::start_with(dir, &env)
}

/// A path of the pattern with sample values, and a body fit for it.
fn sample(path: &str) -> (String, String) {
    let p = path
        .replace("{id}", "m1")
        .replace("{kind}", "openid")
        .replace("{value}", "oa")
        .replace("{sku}", "S1")
        .replace("{channel}", "mall")
        .replace("{order}", "o1")
        .replace("{event}", &id(999))
        .replace("{rep}", "r1")
        .replace("{on}", "device")
        .replace("{len}", "24");
    assert!(
        !p.contains('{'),
        "a parameter without a sample value: {path}"
    );
    let body = match path {
        "/v1/events" => script()[0].clone(),
        "/v1/scan" => script()[7].clone(),
        "/v1/reviews/{event}" => r#"{"decision": "allow"}"#.into(),
        "/v1/members/{id}/adjustments" => r#"{"points": 5, "ref": "case-1"}"#.into(),
        "/v1/members/{id}/phone" => r#"{"phone": "13800138000", "ref": "case-1"}"#.into(),
        "/v1/members/{id}/merge" => r#"{"with": "m2", "ref": "case-1"}"#.into(),
        "/v1/blocks" | "/v1/blocks/lift" => {
            r#"{"on": "device", "value": "d-1", "ref": "case-1"}"#.into()
        }
        _ => String::new(),
    };
    (p, body)
}

fn call(
    s: &Service,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &str,
) -> (u16, String, Value) {
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json");
    if let Some(a) = auth {
        head.push_str(&format!("\r\nAuthorization: {a}"));
    }
    let (code, h, b) = s.raw(&head, body.as_bytes());
    (code, h, serde_json::from_str(&b).unwrap_or(Value::Null))
}

fn bearer(scope: &str) -> String {
    format!("Bearer {}", secret(scope))
}

fn assert_401(s: &Service, method: &str, path: &str, auth: Option<&str>, body: &str) {
    let (code, head, v) = call(s, method, path, auth, body);
    assert_eq!(code, 401, "{method} {path} with {auth:?}: {v}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{method} {path}: {head}"
    );
    if method == "HEAD" {
        return; // a HEAD answer has no body
    }
    assert_eq!(v["error"], "unauthorized", "{method} {path}: {v}");
    assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
}

#[test]
fn every_route_refuses_no_token_and_a_wrong_scope_and_serves_the_right_scope() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(
        dir.path(),
        &[
            ("OMNISTREAM_AUTH__OPEN_METRICS", "false"),
            ("OMNISTREAM_AUTH__OPEN_HEALTH", "false"),
        ],
    );
    assert!(ROUTES.len() >= 21, "the route list lost routes: {ROUTES:?}");
    for r in ROUTES {
        let (path, body) = sample(r.path);
        let m = r.method;
        assert_401(&s, m, &path, None, &body);
        let (right, wrong): (Vec<&str>, Vec<&str>) = match r.access {
            Access::Scope(need) => (
                vec![need],
                vec!["ingest", "read", "review", "points", "admin"]
                    .into_iter()
                    .filter(|x| *x != need)
                    .collect(),
            ),
            Access::Metrics => (vec!["read", "admin"], vec!["ingest", "review", "points"]),
            // protected health, and the API's description, take any valid token
            Access::Health | Access::AnyToken => {
                (vec!["ingest", "read", "review", "points", "admin"], vec![])
            }
        };
        for w in wrong {
            let (code, _, v) = call(&s, m, &path, Some(&bearer(w)), &body);
            assert_eq!(code, 403, "{m} {path} with a {w} token: {v}");
            assert_eq!(v["error"], "forbidden", "{v}");
            let detail = v["detail"].as_str().unwrap();
            let needed = match r.access {
                Access::Scope(need) => need,
                _ => "read",
            };
            assert!(detail.contains(needed), "the 403 names the scope: {v}");
        }
        for ok in right {
            let (code, _, v) = call(&s, m, &path, Some(&bearer(ok)), &body);
            assert!(
                code != 401 && code != 403 && code < 500,
                "{m} {path} with a {ok} token: {code} {v}"
            );
        }
    }
    // spellings of a path that route to the same handler get the same rule: an encoded
    // letter (the router decodes unreserved characters) must not slip past the scope check
    for (path, need, wrong) in [
        ("/v1/admin/%73napshot", "admin", "read"),
        ("/v1/%61dmin/snapshot", "admin", "ingest"),
        ("/v1/st%61ts", "read", "ingest"),
        ("/v1/%65vents", "ingest", "read"),
        ("/%6Detrics", "read", "ingest"),
    ] {
        let method = if need == "ingest" { "POST" } else { "GET" };
        let body = if need == "ingest" {
            script()[0].clone()
        } else {
            String::new()
        };
        let (code, _, v) = call(&s, method, path, Some(&bearer(wrong)), &body);
        assert!(
            code == 403 || code == 404,
            "{method} {path} with a {wrong} token: {code} {v}"
        );
        assert_401(&s, method, path, None, &body);
    }
    // the OpenAPI document states each operation's scope from the same list
    let (_, _, doc) = call(&s, "GET", "/openapi.json", Some(&bearer("read")), "");
    let op = &doc["paths"]["/v1/admin/snapshot"]["get"];
    assert_eq!(op["security"][0]["bearer"][0], "admin", "{op}");
    assert_eq!(
        doc["paths"]["/v1/events"]["post"]["security"][0]["bearer"][0],
        "ingest"
    );
    // garbled or unknown credentials are 401 with a reason, on any route
    for auth in [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "Bearer not-a-configured-token-at-all",
        "Bearer read-secret-0123456789aX",
        "read-secret-0123456789ab",
    ] {
        assert_401(&s, "GET", "/v1/stats", Some(auth), "");
        assert_401(&s, "POST", "/v1/events", Some(auth), &script()[0]);
    }
    // the token works: ingest, then read it back
    let (code, _, v) = call(
        &s,
        "POST",
        "/v1/events",
        Some(&bearer("ingest")),
        &script()[1],
    );
    assert_eq!((code, &v["accepted"]), (200, &Value::from(1)), "{v}");
    let (code, _, v) = call(
        &s,
        "GET",
        "/v1/dealers/d1/credit",
        Some(&bearer("read")),
        "",
    );
    assert_eq!(code, 200, "{v}");
    let (code, _, v) = call(&s, "GET", "/v1/skus/S1/stock", Some(&bearer("read")), "");
    assert_eq!(
        (code, &v["atp"]),
        (200, &Value::from(100)),
        "the walk's event: {v}"
    );
    // unknown routes need a token too, then say 404 in JSON
    assert_401(&s, "GET", "/v1/nothing-here", None, "");
    let (code, _, v) = call(&s, "GET", "/v1/nothing-here", Some(&bearer("read")), "");
    assert_eq!(code, 404, "{v}");
    assert!(v["error"].is_string(), "{v}");
}

#[test]
fn the_board_takes_a_query_token_on_get_and_nothing_else_does() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), &[]);
    let read = format!("?token={}", secret("read"));
    for path in BOARD_ROUTES {
        assert_401(&s, "GET", path, None, "");
        let (code, _, _) = call(&s, "GET", &format!("{path}{read}"), None, "");
        assert_eq!(code, 200, "GET {path} with a read query token");
        let (code, _, v) = call(
            &s,
            "GET",
            &format!("{path}?token={}", secret("ingest")),
            None,
            "",
        );
        assert_eq!(code, 403, "GET {path} with an ingest query token: {v}");
        assert_401(
            &s,
            "GET",
            &format!("{path}?token=wrong-token-0123456789"),
            None,
            "",
        );
    }
    // no other route takes it
    assert_401(&s, "GET", &format!("/v1/stats{read}"), None, "");
    assert_401(&s, "GET", &format!("/v1/members/m1{read}"), None, "");
    assert_401(
        &s,
        "POST",
        &format!("/v1/events?token={}", secret("ingest")),
        None,
        &script()[0],
    );
    // open by default: health and metrics
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (code, _, _) = call(&s, "GET", path, None, "");
        assert_eq!(code, 200, "{path} is open by default");
    }
}

/// A resolution records the name of the token it came with, beside the reviewer's own name
/// (what that caller said): the risk team's audit trail says who the service let in.
#[test]
fn a_resolution_records_the_token_it_came_with() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), &[]);
    // Shanghai, then Beijing ten minutes later: the second scan is held for review
    for (n, ts, lat, lon) in [
        (1, "2026-11-11T10:00:00+08:00", 31.23, 121.47),
        (2, "2026-11-11T10:10:00+08:00", 39.90, 116.40),
    ] {
        let scan = serde_json::json!({"id": id(n), "type": "scan", "ts": ts, "channel": "campaign",
            "code": format!("A{n}"), "sku": "S1", "campaign": "cny", "member": {"openid": "o-t"},
            "device": "d9", "ip": "10.9.9.9", "geo": {"lat": lat, "lon": lon}});
        let (code, _, v) = call(
            &s,
            "POST",
            "/v1/scan",
            Some(&bearer("ingest")),
            &scan.to_string(),
        );
        assert_eq!(code, 200, "{v}");
    }
    let (code, _, v) = call(
        &s,
        "POST",
        &format!("/v1/reviews/{}", id(2)),
        Some(&bearer("review")),
        r#"{"decision": "block", "reviewer": "ann"}"#,
    );
    assert_eq!(code, 200, "{v}");
    let by = &v["resolution"]["by"];
    assert_eq!(
        (&by["reviewer"], &by["token"], by["note"].is_null()),
        (&Value::from("ann"), &Value::from("review-only"), true),
        "{v}"
    );
}

fn run_expecting_failure(env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("OMNISTREAM_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success(), "start-up should fail with {env:?}");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn bad_token_configuration_stops_start_up_naming_the_key() {
    let on = ("OMNISTREAM_AUTH__ENABLED", "true");
    let e = run_expecting_failure(&[on]);
    assert!(e.contains("auth.tokens"), "{e}");
    let tokens = r#"[{name = "pos", scopes = ["ingest"], token-env = "OMNISTREAM_TOKEN_POS"}]"#;
    let e = run_expecting_failure(&[on, ("OMNISTREAM_AUTH__TOKENS", tokens)]);
    assert!(
        e.contains("auth.tokens.pos.token-env") && e.contains("not set"),
        "{e}"
    );
    let e = run_expecting_failure(&[
        on,
        ("OMNISTREAM_AUTH__TOKENS", tokens),
        ("OMNISTREAM_TOKEN_POS", "short"),
    ]);
    assert!(
        e.contains("auth.tokens.pos.token-env") && e.contains("shorter"),
        "{e}"
    );
    assert!(!e.contains("short\n") && !e.contains("`short`"), "{e}");
    let bad_scope =
        r#"[{name = "pos", scopes = ["ingest", "write"], token-env = "OMNISTREAM_TOKEN_POS"}]"#;
    let e = run_expecting_failure(&[
        on,
        ("OMNISTREAM_AUTH__TOKENS", bad_scope),
        ("OMNISTREAM_TOKEN_POS", "0123456789abcdef"),
    ]);
    assert!(
        e.contains("auth.tokens.pos.scopes") && e.contains("write"),
        "{e}"
    );
    let e = run_expecting_failure(&[
        on,
        (
            "OMNISTREAM_AUTH__TOKENS",
            r#"[{name = "pos", scopes = ["read"], token-file = "/nonexistent/token"}]"#,
        ),
    ]);
    assert!(e.contains("auth.tokens.pos.token-file"), "{e}");
}

#[test]
fn check_config_shows_token_names_and_scopes_never_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "file-secret-abcdefghijkl\n").unwrap();
    let tokens = format!(
        r#"[{{name = "pos", scopes = ["ingest"], token-env = "OMNISTREAM_TOKEN_POS"}}, {{name = "ops", scopes = ["read", "admin"], token-file = "{}"}}]"#,
        file.display()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["check-config", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("OMNISTREAM_AUTH__ENABLED", "true")
        .env("OMNISTREAM_AUTH__TOKENS", &tokens)
        .env("OMNISTREAM_TOKEN_POS", "env-secret-abcdefghijklm")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    for shown in ["pos", "ops", "ingest", "admin", "OMNISTREAM_TOKEN_POS"] {
        assert!(all.contains(shown), "{shown} missing: {all}");
    }
    assert!(!all.contains("env-secret"), "{all}");
    assert!(!all.contains("file-secret"), "{all}");
}

/// A token rotated or revoked without a restart: the configuration's token file rewritten
/// and a token removed, then `POST /v1/admin/reload`: the old secret is refused at once, the
/// new one served, the answer names `auth.tokens` among what changed (never a secret).
#[test]
fn tokens_rotate_and_revoke_on_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (conf, file) = (
        dir.path().join("omnistream.toml"),
        dir.path().join("ops-token"),
    );
    std::fs::write(&file, "ops-secret-one-0123456789\n").unwrap();
    let write = |with_pos: bool| {
        let pos = if with_pos {
            r#"{ name = "pos", scopes = ["ingest", "read"], token-env = "OMNISTREAM_TOKEN_POS" },"#
        } else {
            ""
        };
        let text = format!(
            "[auth]\nenabled = true\ntokens = [\n  {pos}\n  {{ name = \"ops\", scopes = [\"read\", \"admin\"], token-file = \"{}\" }},\n]\n",
            file.display()
        );
        std::fs::write(&conf, text).unwrap();
    };
    write(true);
    let s = Service::start_args(
        &dir.path().join("data"),
        &["--config", conf.to_str().unwrap()],
        &[("OMNISTREAM_TOKEN_POS", "pos-secret-0123456789ab")],
        std::process::Stdio::inherit(),
    );
    let ask = |method: &str, path: &str, token: &str| {
        let head = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}");
        let (code, _, body) = s.raw(&head, b"");
        (
            code,
            serde_json::from_str::<Value>(&body).unwrap_or(Value::Null),
        )
    };
    assert_eq!(
        ask("GET", "/v1/campaigns", "ops-secret-one-0123456789").0,
        200
    );
    assert_eq!(
        ask("GET", "/v1/campaigns", "pos-secret-0123456789ab").0,
        200
    );
    // nothing changed: nothing said
    let (code, v) = ask("POST", "/v1/admin/reload", "ops-secret-one-0123456789");
    assert_eq!(
        (code, &v["status"]),
        (200, &Value::from("unchanged")),
        "{v}"
    );
    // the ops secret rotated in its file, the pos token revoked
    std::fs::write(&file, "ops-secret-two-0123456789\n").unwrap();
    write(false);
    let (code, v) = ask("POST", "/v1/admin/reload", "ops-secret-one-0123456789");
    assert_eq!((code, &v["status"]), (200, &Value::from("reloaded")), "{v}");
    assert_eq!(v["changed"], serde_json::json!(["auth.tokens"]), "{v}");
    assert_eq!(v["restart_needed"], serde_json::json!([]), "{v}");
    assert!(!v.to_string().contains("secret"), "{v}");
    for (token, want) in [
        ("ops-secret-one-0123456789", 401),
        ("pos-secret-0123456789ab", 401),
        ("ops-secret-two-0123456789", 200),
    ] {
        assert_eq!(ask("GET", "/v1/campaigns", token).0, want, "{token}");
    }
    // a file that does not load changes nothing: the tokens in effect stay
    std::fs::remove_file(&file).unwrap();
    let (code, v) = ask("POST", "/v1/admin/reload", "ops-secret-two-0123456789");
    assert_eq!(
        (code, &v["error"]),
        (400, &Value::from("bad_config")),
        "{v}"
    );
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("auth.tokens.ops.token-file"),
        "{v}"
    );
    assert_eq!(
        ask("GET", "/v1/campaigns", "ops-secret-two-0123456789").0,
        200
    );
    s.stop();
}
