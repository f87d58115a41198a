//! The OpenAPI 3.1 document the service serves at `/openapi.json`.

use serde_json::{json, Value};

fn op(summary: &str, params: &[&str], body: Option<&str>) -> Value {
    let parameters: Vec<Value> = params
        .iter()
        .map(|p| {
            let (name, place) = p.split_once(':').unwrap_or((p, "path"));
            json!({"name": name, "in": place, "required": place == "path", "schema": {"type": "string"}})
        })
        .collect();
    let mut o = json!({
        "summary": summary,
        "parameters": parameters,
        "responses": {
            "200": {"description": "ok", "content": {"application/json": {}}},
            "400": {"description": "bad request: `{error, detail}`"},
            "404": {"description": "not found"},
        },
    });
    if let Some(b) = body {
        o["requestBody"] = json!({"required": true, "description": b, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Event"}},
            "application/x-ndjson": {},
        }});
        o["responses"]["413"] = json!({"description": "body or batch too large"});
        o["responses"]["429"] =
            json!({"description": "saturated; retry after the Retry-After header"});
        o["responses"]["503"] =
            json!({"description": "store unavailable; nothing of the request was applied"});
    }
    o
}

/// The document, with each operation's bearer scope from the route list the App is built
/// from (`crate::http::ROUTES`; tokens apply when `auth.enabled = true`).
pub fn document() -> Value {
    let mut doc = paths();
    for r in crate::http::ROUTES {
        // never index a missing path: serde_json would insert a null operation
        let Some(op) = doc["paths"]
            .get_mut(r.path)
            .and_then(|p| p.get_mut(r.method.to_ascii_lowercase()))
        else {
            continue;
        };
        let scopes: &[&str] = match r.access {
            crate::http::Access::Scope(s) => &[s],
            crate::http::Access::Metrics => &["read", "admin"],
            crate::http::Access::Health => &[],
        };
        op["security"] = json!([{"bearer": scopes}]);
        op["responses"]["401"] =
            json!({"description": "no valid bearer token (WWW-Authenticate: Bearer)"});
        op["responses"]["403"] =
            json!({"description": format!("the token lacks the scope: {}", scopes.join(" or "))});
    }
    doc["components"]["securitySchemes"] = json!({"bearer": {"type": "http", "scheme": "bearer",
        "description": "scopes ingest, read, review, admin; see the README, Access control"}});
    doc
}

fn paths() -> Value {
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {"title": "omnistream", "version": env!("CARGO_PKG_VERSION"),
                 "description": "real-time entity state for omnichannel brands: ingest events, read members, points, stock, credit and store KPIs. Every error answers a JSON body `{error, detail}`: another method on a path below answers 405 `method_not_allowed` with an `Allow` header listing its methods; a path not below answers 404 `no_route`."},
        "paths": {
            "/v1/events": {"post": op("ingest events (a JSON array or JSON lines); answers per event after they are durable: accepted, duplicate or rejected (with reasons); an accepted event that placed, changed or released an order carries `order`, the order's result (order_accepted, order_rejected with its reason such as insufficient_stock or insufficient_points, order_held with the dealer's shortfall, order_released, order_status, order_ignored)", &[], Some("events per the contract"))},
            "/v1/scan": {"post": op("one scan, answered with its outputs (and decision); sent again, `duplicate` with the decision it got and its review's resolution while remembered", &[], Some("one scan event"))},
            "/v1/members/{id}": {"get": op("a member's profile, X-RFM, tags, tier and points", &["id"], None)},
            "/v1/members/{id}/ledger": {"get": op("a member's points ledger", &["id", "from:query", "limit:query"], None)},
            "/v1/identities/{kind}/{value}": {"get": op("the member an identity belongs to (personal values are hashed by the server)", &["kind", "value"], None)},
            "/v1/skus/{sku}/stock": {"get": op("stock per location and total available-to-promise", &["sku"], None)},
            "/v1/dealers/{id}/credit": {"get": op("a dealer's limit, exposure, available credit and held orders", &["id"], None)},
            "/v1/stores/{id}/kpis": {"get": op("a store's KPIs by hour and day, and sales-rep visits", &["id"], None)},
            "/v1/orders/{channel}/{order}": {"get": op("an order: its placement's phase (new, credit, held, reserving, redeeming, accepted, rejected, cancelled), latest status, lines and amount, SKUs reserved or refused, quantities returned, and `deferred`: status events that came before `placed` or while placement was in flight, each applied under its own id and time once placement settles", &["channel", "order"], None)},
            "/v1/outputs": {"get": op("outputs in order (points, stock, credit, orders, dead letters)", &["from:query", "limit:query", "output:query", "campaign:query"], None)},
            "/v1/decisions": {"get": op("scan decisions, optionally of one campaign", &["campaign:query", "from:query", "limit:query"], None)},
            "/v1/reviews/{event}": {"post": op("resolve a scan under review: body {\"decision\": \"allow\"|\"block\"}", &["event"], None)},
            "/v1/admin/snapshot": {"get": op("every entity's state, sorted by key (large)", &[], None)},
            "/v1/stats": {"get": op("counters of the shard and the engine", &[], None)},
            "/healthz": {"get": op("the process is up", &[], None), "head": op("the process is up (no body)", &[], None)},
            "/readyz": {"get": op("the store is open and the shard runs", &[], None), "head": op("the store is open and the shard runs (no body)", &[], None)},
            "/openapi.json": {"get": op("this document", &[], None)},
            "/metrics": {"get": op("Prometheus metrics, text format (404 `metrics_off` when `metrics = false`)", &[], None)},
            "/": {"get": op("the live board for managers (HTML; takes ?token= when tokens are on, and ?poll to ask for the figures once a second instead of a server-sent event stream, behind proxies that buffer one)", &["token:query", "poll:query"], None)},
            "/v1/board": {"get": op("the board's figures as JSON", &["token:query"], None)},
            "/v1/board/stream": {"get": op("the board's figures as server-sent events, one when they change", &["token:query"], None)},
        },
        "components": {"schemas": {"Event": omnistream_schemas::json_schema()}},
    });
    doc["paths"]["/v1/scan"]["post"]["responses"]["422"] = json!({"description":
        "the scan was rejected (its reasons in the body) and kept as a dead letter"});
    doc["paths"]["/v1/reviews/{event}"]["post"]["responses"]["503"] = json!({"description":
        "not ready: the store is unavailable; retry after the Retry-After header"});
    // reads of state are refused while not ready: the state may hold a failed commit's events
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, ops) in paths.iter_mut() {
            if path.starts_with("/v1/") && path != "/v1/stats" && ops["get"].is_object() {
                ops["get"]["responses"]["503"] = json!({"description":
                    "not ready: the store is unavailable and the state not yet rebuilt; retry after the Retry-After header"});
            }
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_an_operation_and_none_is_null() {
        let doc = document();
        for r in crate::http::ROUTES {
            let op = &doc["paths"][r.path][r.method.to_ascii_lowercase()];
            assert!(
                op["responses"]["200"].is_object(),
                "{} {}",
                r.method,
                r.path
            );
            assert!(op["security"].is_array(), "{} {}", r.method, r.path);
            // the query parameters documented are the ones the route takes (others are 400)
            let mut documented: Vec<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str())
                .collect();
            documented.sort_unstable();
            let mut taken = r.query.to_vec();
            taken.sort_unstable();
            assert_eq!(documented, taken, "{} {}", r.method, r.path);
        }
        for (path, ops) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in ops.as_object().into_iter().flatten() {
                assert!(op.is_object(), "{method} {path}: {op}");
            }
        }
        assert!(doc["paths"]["/v1/scan"]["post"]["responses"]["422"].is_object());
    }
}
