//! The OpenAPI 3.1 document the service serves at `/openapi.json`.

use serde_json::{json, Value};

/// A parameter's schema: the paging ones are whole numbers, the others strings.
fn param_schema(name: &str) -> Value {
    match name {
        "from" => json!({"type": "integer", "minimum": 0, "default": 0,
            "description": "the sequence number to start at (an answer's `next`)"}),
        "limit" => json!({"type": "integer", "minimum": 0,
            "description": "at most this many items; more than 1000 is taken as 1000; absent: 100 (on `/v1/dealers`: every one)"}),
        "sort" => json!({"type": "string", "enum": ["exposure", "held_fen", "past_limit"],
            "description": "the most first (absent: by id)"}),
        "on" => json!({"type": "string", "enum": ["member", "device", "ip", "net"]}),
        _ => json!({"type": "string"}),
    }
}

fn op(summary: &str, params: &[&str], body: Option<&str>) -> Value {
    let parameters: Vec<Value> = params
        .iter()
        .map(|p| {
            let (name, place) = p.split_once(':').unwrap_or((p, "path"));
            json!({"name": name, "in": place, "required": place == "path", "schema": param_schema(name)})
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
        let event = json!({"$ref": "#/components/schemas/Event"});
        o["requestBody"] = json!({"required": true, "description": b, "content": {
            "application/json": {"schema": {"oneOf": [event, {"type": "array", "items": event}]}},
            "application/x-ndjson": {"schema": event},
        }});
        o["responses"]["413"] = json!({"description": "body or batch too large"});
        o["responses"]["415"] = json!({"description": "a Content-Type events are not sent as (a form upload, XML), or a Content-Encoding (compressed bodies are not read): `unsupported_media_type`"});
        let retry = json!({"Retry-After": {"description": "seconds to wait before sending the same request again",
            "schema": {"type": "integer", "minimum": 1}}});
        o["responses"]["429"] = json!({"description": "saturated; nothing of the request was applied: send it again after the Retry-After header",
            "headers": retry});
        o["responses"]["503"] = json!({"description": "store unavailable; nothing of the request was applied",
            "headers": retry});
    }
    o
}

/// The answers of `POST /v1/events` and `POST /v1/scan` as schemas (their fields are told in
/// the operations' summaries; an output's own fields in the README, Outputs).
fn answer_schemas() -> Value {
    let output = json!({"$ref": "#/components/schemas/Output"});
    let emitted = json!({"$ref": "#/components/schemas/Emitted"});
    let problems = json!({"type": "array", "items": {"$ref": "#/components/schemas/Problem"}});
    let warnings = json!({"type": "array", "items": {"type": "string"}, "description":
        "what `omnistream validate` warns of in this event, each starting with its code \
         (`unknown_field at pointsRedeemed: ignored; did you mean `points_redeemed`?`, \
         `unknown_channel`, `unknown_kind`): on an accepted event, whose misspelt field was \
         ignored as the contract says, or whose channel or identity kind is kept apart; on a \
         rejected one, beside its reasons"});
    let id = json!({"type": ["string", "null"], "description":
        "the event's id (a rejected event's as sent; null when it had none that could be read)"});
    let reasons: Vec<&str> = omnistream_schemas::Reason::ALL
        .iter()
        .map(|r| r.code())
        .collect();
    json!({
        "Output": {"type": "object", "required": ["output"],
            "description": "one output, its kind in `output`; the other fields by kind, one schema each in `oneOf` (their names and meanings, as the README's Outputs section gives them; an optional field is left out when it has nothing to say)",
            "properties": {"output": {"enum": omnistream_actors::output::kinds()}},
            "oneOf": output_kinds()},
        "Emitted": {"description": "an output with `event`, the id of the event that caused it (the nil id for a timer's), and `at`, the event time it ran at",
            "allOf": [output.clone(), {"type": "object", "required": ["event", "at"],
                "properties": {"event": {"type": "string", "format": "uuid"}, "at": {"type": "string"}}}]},
        "Problem": {"type": "object", "required": ["reason", "path", "detail"],
            "properties": {"reason": {"enum": reasons},
                "path": {"type": "string", "description": "the field's JSON path, as `lines[3].qty`; empty for the whole event"},
                "detail": {"type": "string", "description": "what is wrong, for a person"}}},
        "EventResult": {"type": "object", "required": ["id", "status"],
            "description": "one event's result, in the order the events were sent",
            "properties": {
                "id": id.clone(),
                "status": {"enum": ["accepted", "duplicate", "rejected"]},
                "order": output.clone(),
                "orders": {"type": "array", "items": output.clone()},
                "decision": output.clone(),
                "resolution": {"oneOf": [output.clone(), {"type": "null"}]},
                "credit": output.clone(),
                "merges": {"type": "array", "items": output.clone()},
                "stock": output.clone(),
                "unknown_member": {"allOf": [output.clone()], "description": "the event named a `member_id` this service never issued: its `unknown_member` output, what of it the member did not apply (the event itself is accepted)"},
                "order_state": {"type": "object", "description": "an order event sent again: its order as `GET /v1/orders/{channel}/{order}` answers now"},
                "credit_state": {"type": "object", "description": "a payment sent again: its dealer's credit as `GET /v1/dealers/{id}/credit` answers now"},
                "booked": {"type": ["integer", "boolean", "null"], "description": "a payment sent again: the amount its `ref` was booked for (null: not booked)"},
                "members": {"type": "object", "additionalProperties": {"type": ["string", "null"]},
                    "description": "an `identify` sent again: by identity kind, the member it leads to now"},
                "one_person": {"type": "boolean"},
                "warnings": warnings.clone(),
                "reasons": problems.clone()}},
        "EventsAnswer": {"type": "object", "required": ["accepted", "duplicates", "rejected", "results"],
            "properties": {
                "accepted": {"type": "integer", "minimum": 0},
                "duplicates": {"type": "integer", "minimum": 0},
                "rejected": {"type": "integer", "minimum": 0},
                "results": {"type": "array", "items": {"$ref": "#/components/schemas/EventResult"}},
                "warnings": {"type": "array", "items": {"type": "string"},
                    "description": "the request's own (absent: none): `truncated at body: ...` when a JSON array never closes after a complete element (the body looks cut; its events are answered as sent)"}}},
        "ScanAnswer": {"type": "object", "required": ["id", "status"],
            "properties": {
                "id": id,
                "status": {"enum": ["accepted", "duplicate", "rejected"]},
                "decision": {"oneOf": [emitted.clone(), {"type": "null"}]},
                "resolution": {"oneOf": [emitted.clone(), {"type": "null"}]},
                "outputs": {"type": "array", "items": emitted},
                "merges": {"type": "array", "items": output},
                "warnings": warnings.clone(),
                "reasons": problems}},
    })
}

/// The sample feed the examples come from (the README's `curl` examples send it too).
const SAMPLE: &str = include_str!("../examples/sample.jsonl");

/// Example answers: the sample feed run through the entities under the default rules and the
/// public development key, read with the functions the routes answer with. Each is what a
/// service started on defaults answers after `POST /v1/events` of `examples/sample.jsonl`
/// (`tests/service.rs` asks it and compares), so the examples cannot drift from the code;
/// and the answers of that POST and of `POST /v1/scan` of the sample's first scan.
/// Each: the method, the path, the example's summary (which names its request), the answer.
fn examples() -> Vec<(&'static str, &'static str, String, Value)> {
    use crate::http::{
        blocks_view, campaign_view, campaigns_view, credit_view, dealers_list, kpis_view,
        ledger_page, location_view, loyalty_view, member_view, members_list, order_view, rep_view,
        reps_view, stock_view, stores_view, DealersQuery, Holders, MembersQuery,
    };
    use crate::shard::{Item, Outcome};
    use omnistream_actors::{sharded::Sharded, Output, Rules};
    let pii = omnistream_schemas::Pii::new(crate::cli::DEV_PII_KEY.as_bytes());
    let decoder = omnistream_schemas::Decoder::new(pii.clone());
    let rules = Rules::default();
    let mut board = crate::board::Board::new(rules.stock.low_stock_atp);
    let mut e = Sharded::new(rules, 1);
    let mut out = Vec::new();
    let mut outcomes = Vec::new();
    for line in SAMPLE.lines() {
        match Item::decode(&decoder, &pii, line.as_bytes(), 0, 0) {
            Item::Event(ev) => {
                let start = out.len();
                board.saw(&e, &ev);
                e.apply(&ev, &mut out);
                board.observe(&e, &out[start..]);
                outcomes.push(Outcome::Accepted {
                    id: ev.id,
                    outputs: out[start..].to_vec(),
                });
            }
            Item::Rejected(r) => outcomes.push(Outcome::Rejected {
                id: r.id,
                reasons: r.reasons,
            }),
        }
    }
    let scan = outcomes
        .iter()
        .position(|o| matches!(o, Outcome::Accepted { outputs, .. } if outputs.iter().any(|e| matches!(e.output, Output::Decision { .. }))));
    let json = |v: Result<Option<Value>, crate::http::ReadError>| match v {
        Ok(Some(v)) => v,
        _ => Value::Null,
    };
    let items: Vec<Value> = out
        .iter()
        .enumerate()
        .map(|(seq, o)| json!({"seq": seq, "output": o}))
        .collect();
    let page = |items: Vec<Value>, end: usize| {
        let next = items
            .last()
            .and_then(|i| i["seq"].as_u64())
            .map_or(end as u64, |s| s + 1);
        json!({"next": next, "items": items})
    };
    let decisions: Vec<Value> = items
        .iter()
        .filter(|i| i["output"]["output"] == "decision")
        .take(2)
        .cloned()
        .map(|mut i| {
            if i["output"]["decision"] == "review" {
                i["output"]["pending"] = json!(Holders::default().pending(&e, &i["output"]));
            }
            i
        })
        .collect();
    let Some(m) = e.member_of("tmall", "tb_lili").map(|m| m.into_owned()) else {
        return Vec::new();
    };
    let entries: Vec<Value> = out
        .iter()
        .filter(|o| matches!(&o.output, Output::Ledger { member, .. } if *member == m.id))
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect();
    let first = items[..3.min(items.len())].to_vec();
    let gets = vec![
        (
            "/v1/members/{id}",
            format!("/v1/members/{}", m.id),
            json(member_view(&e, &m.id)),
        ),
        (
            "/v1/identities/{kind}/{value}",
            "/v1/identities/tmall/tb_lili".into(),
            json(member_view(&e, &m.id)),
        ),
        (
            "/v1/members/{id}/ledger",
            format!("/v1/members/{}/ledger", m.id),
            ledger_page(&m, 0, entries),
        ),
        (
            "/v1/skus/{sku}/stock",
            "/v1/skus/SKU-COLA-500/stock".into(),
            json(stock_view(&e, "SKU-COLA-500")),
        ),
        (
            "/v1/locations/{id}/stock",
            "/v1/locations/wh-sh/stock".into(),
            json(location_view(&e, "wh-sh")),
        ),
        (
            "/v1/dealers/{id}/credit",
            "/v1/dealers/dl-north/credit".into(),
            json(credit_view(&e, "dl-north")),
        ),
        (
            "/v1/dealers",
            "/v1/dealers".into(),
            json(dealers_list(&e, &DealersQuery::default())),
        ),
        (
            "/v1/stores/{id}/kpis",
            "/v1/stores/st-001/kpis".into(),
            json(kpis_view(&e, "st-001")),
        ),
        ("/v1/stores", "/v1/stores".into(), json(stores_view(&e))),
        (
            "/v1/reps/{rep}",
            "/v1/reps/rep-zhang".into(),
            json(rep_view(&e, "rep-zhang")),
        ),
        ("/v1/reps", "/v1/reps".into(), json(reps_view(&e))),
        (
            "/v1/orders/{channel}/{order}",
            "/v1/orders/tmall/T-1001".into(),
            json(order_view(&e, "tmall", "T-1001")),
        ),
        (
            "/v1/blocks/{on}/{value}",
            "/v1/blocks/ip/112.65.3.18".into(),
            json(blocks_view(
                &e,
                omnistream_actors::fraud::block::BlockOn::Ip,
                "112.65.3.18",
            )),
        ),
        (
            "/v1/outputs",
            "/v1/outputs?limit=3".into(),
            page(first, items.len()),
        ),
        (
            "/v1/decisions",
            "/v1/decisions?campaign=cny-2027&limit=2".into(),
            page(decisions, items.len()),
        ),
        (
            "/v1/campaigns/{id}",
            "/v1/campaigns/cny-2027".into(),
            json(campaign_view(&e, "cny-2027")),
        ),
        (
            "/v1/campaigns",
            "/v1/campaigns".into(),
            json(campaigns_view(&e)),
        ),
        ("/v1/loyalty", "/v1/loyalty".into(), json(loyalty_view(&e))),
        (
            "/v1/members",
            "/v1/members?limit=2".into(),
            json(members_list(
                &e,
                &MembersQuery {
                    limit: Some("2".into()),
                    ..MembersQuery::default()
                },
            )),
        ),
        (
            "/v1/board",
            "/v1/board".into(),
            serde_json::to_value(board.view(&e)).unwrap_or_default(),
        ),
    ];
    let mut all: Vec<(&str, &str, String, Value)> = gets
        .into_iter()
        .map(|(path, request, answer)| {
            let summary = format!(
                "GET {request}, after POST /v1/events of examples/sample.jsonl to a service on defaults"
            );
            ("get", path, summary, answer)
        })
        .collect();
    // with each line's warnings, as the service words them (its last, bad line has some)
    let mut answer = crate::http::events_answer(&outcomes, &Default::default());
    let warnings: Vec<Vec<String>> = (SAMPLE.lines())
        .map(|l| omnistream_schemas::lint(l.as_bytes()))
        .collect();
    crate::http::with_warnings(&mut answer["results"], &warnings);
    all.push((
        "post",
        "/v1/events",
        "POST /v1/events of examples/sample.jsonl (JSON lines) to a service on defaults".into(),
        answer,
    ));
    if let Some(n) = scan {
        all.push((
            "post",
            "/v1/scan",
            format!(
                "POST /v1/scan of line {} of examples/sample.jsonl (its first scan), after POST /v1/events of the lines before it, to a service on defaults",
                n + 1
            ),
            crate::http::scan_answer(outcomes[n].clone()).1,
        ));
    }
    all
}

/// The event contract's JSON schema as components: its definitions (`$defs`, which the
/// document root does not have) become schemas of their own beside `Event`, and every
/// reference follows them, so each `$ref` resolves within the document.
fn components() -> Value {
    fn relink(v: &mut Value) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get_mut("$ref") {
                    if let Some(name) = r.strip_prefix("#/$defs/") {
                        *r = format!("#/components/schemas/{name}");
                    }
                }
                m.values_mut().for_each(relink);
            }
            Value::Array(a) => a.iter_mut().for_each(relink),
            _ => {}
        }
    }
    let mut event = omnistream_schemas::json_schema();
    relink(&mut event);
    let mut schemas = serde_json::Map::new();
    if let Some(Value::Object(defs)) = event.as_object_mut().and_then(|e| e.remove("$defs")) {
        schemas.extend(defs);
    }
    if let Some(e) = event.as_object_mut() {
        e.remove("$schema");
    }
    schemas.insert("Event".into(), event);
    json!({"schemas": schemas})
}

/// The document, with each operation's bearer scope from the route list the App is built
/// from (`crate::http::ROUTES`; tokens apply when `auth.enabled = true`), and example answers
/// (see [`examples`]). Built once.
/// The README's Outputs section (up to the next `###` heading).
fn outputs_section() -> &'static str {
    let readme = include_str!("../README.md");
    let Some(start) = readme.find("### Outputs") else {
        return "";
    };
    let section = &readme[start..];
    &section[..section[4..].find("\n### ").map_or(section.len(), |e| e + 4)]
}

/// Each output kind as the README's Outputs section lists it (`- **`kind`** — what it is`,
/// then `  - `field`: what it holds` lines), as a schema: its `output` and the fields it may
/// carry, each with its meaning.
fn output_kinds() -> Vec<Value> {
    let mut kinds: Vec<Value> = Vec::new();
    for line in outputs_section().lines() {
        if let Some((kind, what)) = line
            .strip_prefix("- **`")
            .and_then(|rest| rest.split_once("`**"))
        {
            kinds.push(
                json!({"type": "object", "title": kind, "required": ["output"],
                "description": what.trim_start_matches(" — ").trim(),
                "properties": {"output": {"const": kind}}}),
            );
        } else if let Some((field, what)) = line
            .strip_prefix("  - `")
            .and_then(|rest| rest.split_once("`: "))
        {
            if let Some(k) = kinds.last_mut() {
                k["properties"][field] = json!({"description": what.trim()});
            }
        }
    }
    kinds
}

pub fn document() -> Value {
    static DOC: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    DOC.get_or_init(build).clone()
}

fn build() -> Value {
    let mut doc = paths();
    for (method, path, summary, answer) in examples() {
        if let Some(ok) = doc["paths"]
            .get_mut(path)
            .and_then(|p| p.get_mut(method))
            .and_then(|op| op["responses"].get_mut("200"))
        {
            ok["content"]["application/json"]["examples"] = json!({"sample": {
                "summary": summary,
                "value": answer,
            }});
        }
    }
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
            // any valid token: no scope to lack, so no 403
            crate::http::Access::AnyToken => {
                op["security"] = json!([{"bearer": []}]);
                op["responses"]["401"] =
                    json!({"description": "no valid bearer token (WWW-Authenticate: Bearer)"});
                continue;
            }
            // open to all, tokens or not
            crate::http::Access::Health => continue,
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
            "/v1/events": {"post": op("ingest events (a JSON array, JSON lines, or one JSON object, also spread over lines; a leading byte-order mark is dropped; an array element that is not JSON is refused on its own, `bad_json`, the others applied); answers per event after they are durable: accepted, duplicate or rejected (with reasons); an accepted event whose identities joined two members or were refused for it carries `merges`, its `merged` and `merge_conflict` outputs; an accepted event that placed, changed or released an order carries `order`, the order's result, the last it made (order_accepted, order_rejected with its reason such as insufficient_stock, not_stocked (the SKU never had stock at the order's location), insufficient_points or unknown_member (a redemption under a `member_id` never issued), order_held with the dealer's shortfall, order_released, order_status, order_deferred for a status that waits for `placed` or for the dealer's credit, order_ignored with the reason), and `orders`, every one of them, when it made more than one (a payment releasing held orders, which then take their stock); an accepted scan carries `decision`, its decision output (as in `/v1/scan`'s answer, without the envelope's `event` and `at`), and so does a scan sent again (`duplicate`, with its review's `resolution`, while remembered; none, with the warning `id_reused`, when the id was taken by a scan of another code; an order event sent again: `duplicate` with `order_state`, its order's view as `/v1/orders/{channel}/{order}` answers it now (null, with the warning `id_reused`, when that order has no state: the id was taken by another event and this one was not applied); a payment sent again: `credit_state`, its dealer's credit now, and `booked`, the amount its `ref` was booked for, null when not (then with the warning `id_reused`: the id was taken by another event and this payment was not booked); an `identify` sent again: `members`, by identity kind the member it leads to now (null: none, as a phone a conflict refused), and `one_person`, whether they are all one member); a payment (or a dealer's order, or its fulfilment) carries `credit`, the dealer's credit after all it did (a status that waited on an order a payment released runs right after it, under its own event id: its outputs are its own), or payment_ignored with the reason (a `ref` already booked; `reference already booked with another amount` when its amount is not the one `booked` first), and a payment to a dealer no `dealer` event set up the warning `unknown_dealer` (booked all the same, as credit paid ahead, and again when sent again; a dealer's order placed for one, held for want of a limit, carries it too when first sent); an event accepted but not applied carries the warning of its result's kind (`order_ignored`, `payment_ignored`, `dealer_ignored`, `stock_count_ignored`, `stock_move_ignored`); a `code_batch` that takes its prefix from another batch, SKU or dealer carries the warning `prefix_taken`, and one stamped before the registration in effect `code_batch_ignored` (not applied); an event naming a `member_id` this service never issued carries `unknown_member`, what of it the member did not apply (no member is started; a scan's is its decision, `block` with `no_reward: unknown_member`)", &[], Some("events per the contract"))},
            "/v1/scan": {"post": op("one scan, answered with its outputs (and decision); sent again, `duplicate` with the decision it got and its review's resolution while remembered", &[], Some("one scan event"))},
            "/v1/members": {"get": op("members in a segment, by id, a page at a time: those in `tier`, with `tag` (each must be a configured one: 400 naming them), who used `channel`, holding at least `min_balance` points (each optional; all given must hold); `after` a member id (the answer's `next`, null on the last page); `limit` up to 1000 (0: only `total`, the segment's size). Each item: `id`, `tier`, `tags`, `channels`, `balance`, `last_seen`; the profile has the rest. Ids merged away are left out. Reads every member, so it takes longer the more members there are", &["tier:query", "tag:query", "channel:query", "min_balance:query", "after:query", "limit:query"], None)},
            "/v1/members/{id}": {"get": op("a member's profile, X-RFM, tags, tier and points (`pending`: order points not yet earned), and `held_reviews` (scan rewards held for a person's review: scan_event, campaign, points, at; left out when none); `tier_progress` (`earned` in the tier period, `period_days`, `qualifies_for`, the `next` tier and the points `needed`, `kept_until`: the grace's end when its points no longer qualify for its tier, and `needed_to_keep`, the points that would keep it), `expiring_30d` (points that expire within 30 days) and `next_expiry` ({at, points}, null when none held); 404 for an id no member has (one not of the issued form says where to look a member up)", &["id"], None)},
            "/v1/members/{id}/ledger": {"get": op("a member's points ledger: `balance`, `debt`, `next` (the `from` of the following page) and `entries`, each with `seq`, `delta`, `balance` after, `reason` (earned, scan_reward, redeemed, redeem_refund, reversed, expired, merged_in, merged_out, debt_paid, adjusted: a person's adjustment, its `ref` in `about`), `about` (the order, campaign or other member), and `debt_delta`/`debt` when the debt changed (left out when 0); an id merged into another shows its own entries, up to its `merged_out`, with `merged_into`, the member it went to (whose ledger has the `merged_in` naming it), and `survivor`, where the person is now (another when that member merged on too)", &["id", "from:query", "limit:query"], None)},
            "/v1/identities/{kind}/{value}": {"get": op("the member an identity belongs to (personal values are hashed by the server); `member_id` with an issued id answers as `/v1/members/{id}`, following merges", &["kind", "value"], None)},
            "/v1/skus/{sku}/stock": {"get": op("stock per location and total available-to-promise", &["sku"], None)},
            "/v1/locations/{id}/stock": {"get": op("every SKU's stock at one location (a store, a warehouse), by SKU: `on_hand`, `reserved`, `safety`, `atp`, and the location's total `atp`; 404 for a location no SKU was ever stocked at (ids are exact: `ST-001` is not `st-001`); reads every SKU", &["id"], None)},
            "/v1/dealers/{id}/credit": {"get": op("a dealer's limit, exposure, available credit and held orders", &["id"], None)},
            "/v1/dealers": {"get": op("every dealer's credit, resident or not, by id, each as `/v1/dealers/{id}/credit` shows it; `held=true`: only dealers with orders held for credit (`false`: only those without), `over_limit=true`: only those whose exposure is past their limit (`false`: only those within it); `sort=exposure`, `held_fen` or `past_limit` (exposure − limit): the most first (else by id); `limit=N`: the first N listed, 1000 at most (all when absent; 0: only the count and totals); each item also says `open_fen` and `held_fen`, what its open and held orders amount to; `dealers` (how many matched, listed or not), `exposure` (of those with some: a dealer paid ahead covers no other's debt), `prepaid` (what those paid ahead hold beyond their open orders and debts: the sum of each one's exposure below 0; a dealer's own `unpaid` below 0 is what it paid ahead of shipments, open orders apart) and `held_fen` total every dealer that matched; reads every dealer", &["held:query", "over_limit:query", "sort:query", "limit:query"], None)},
            "/v1/stores": {"get": op("every store, resident or not, by id: `store`, its `today` and `this_hour` as `/v1/stores/{id}/kpis` shows them, `rep_count`, how many sales reps visited it, `last_rep_visit` (null: none remembered), `rep_visits_30d`, and its `recent_visitors`; today and this hour in `rules.store.utc-offset-minutes` when set; `unvisited_days` (0 to 3660) lists only the stores no sales rep visited in that many days before the newest event time (never visited ones too): the reps' coverage. Stores the configuration names (`[stores.ID]`) are listed before their first event, with their `name`, `region` and `kind`; `region` lists only that region's; `day` (YYYY-MM-DD) adds each store's KPIs of that local day (`day`) and their sum over the stores listed (`total`, and `hours`: each hour's sum; a member who visited two stores is a visitor of each)", &["unvisited_days:query", "region:query", "day:query"], None)},
            "/v1/reps": {"get": op("every sales rep any store has seen, by id: `visits`, `visits_30d`, `last_visit` and the time spent (`visit_seconds` over `timed_visits`, `avg_duration_s`) over all stores, and `store_count`, the stores visited (listed at `/v1/reps/{rep}`)", &[], None)},
            "/v1/reps/{rep}": {"get": op("one sales rep's visits across stores: per store (`visits`, `last_visit`, `visits_30d`, `avg_duration_s`, `visit_seconds` over `timed_visits`, `recent_visits`: when those 30 days' visits were, as the store's KPIs show them) and the totals (the time spent over every store, `avg_duration_s` its average per timed visit); 404 when no store has seen the rep", &["rep"], None)},
            "/v1/stores/{id}/kpis": {"get": op("a store's KPIs by the sender's local hour and day (README, \"Store KPIs\"), and sales-rep visits; `today` and `this_hour` in the offset of the store's newest event; `hours`: today's hours with any activity, or those of `day` (YYYY-MM-DD) when given; `hours_note`, when that day has none, says whether it is before the days kept, after the newest, or had no event of the store", &["id", "day:query"], None)},
            "/v1/orders/{channel}/{order}": {"get": op("an order: its placement's phase (new, credit, held, checking_points, checking_stock, reserving, redeeming, accepted, rejected, cancelled), latest status (`paid` is a flag of its own, not a status), lines and amount, the SKUs whose answer its placement awaits (`waiting`), the SKUs holding units for it (`reserved`: emptied by a cancellation, which releases them, and by fulfilment, which ships them: then they are in `shipped`; the stock view says what is held now) or refused (`refused`: the SKU, what it had `available`, and `never_stocked` when it never had stock at the order's location), quantities returned, and `deferred`: status events that came before `placed` or while placement was in flight, each applied under its own id and time once placement settles; `cancel_unpaid_at`, while a consumer order is unpaid and `rules.stock.cancel-unpaid-after-s` is set, is when it will be cancelled unless paid first; `placed_at`, when `placed` came, in its sender's offset; `cancel_detail`, why it was cancelled when not by its channel; `rejection` ({reason, detail}), why placement was refused, as `order_rejected` said (a `placed` under its id again is a placement anew); `member_unknown: true` when it was placed under a `member_id` never issued (its points went to nobody; a later status naming the member gives that member the order)", &["channel", "order"], None)},
            "/v1/outputs": {"get": op("outputs in order (points, stock, credit, orders, dead letters), optionally of one kind (`output`) and of one campaign, SKU, location, member, dealer, order (`channel:order`) or code, each an exact match on the output's field of that name (and for `order` and `campaign` on a ledger entry's `about`, for `member` on a merge's `survivor` and `alias` and a refused merge's `other`, and with `output=merge_conflict` by the person: a refusal naming any id merged into it since, or it into; a dealer's order outputs carry its `dealer`): a channel follows its stock with ?output=stock&sku=..., starting from `next` of the page before (a filtered page reads at most 50,000 outputs, so it can hold fewer items than `limit`, even none, with `next` moved on: follow `next` until it stops moving); `limit=0` answers no item and `next` at the end: where a follower starting now begins; dead letters (`output=dead_letter`) also by `reason` (a refusal's reason code, checked) and `id` (the event id as it was sent); ledger entries (`output=ledger`) by `reason` (earned, adjusted, ...: `reason=adjusted` lists every adjustment); a merge refused for two phones (`output=merge_conflict`, reason `different phone numbers`) carries `pending`, whether the two are still two members (customer service's work list: `pending=true`; merged since by a person, `POST /v1/members/{id}/merge`, or by identities: `pending=false`; `pending` only with `output=merge_conflict`)", &["from:query", "limit:query", "output:query", "campaign:query", "sku:query", "location:query", "member:query", "dealer:query", "order:query", "code:query", "reason:query", "id:query", "pending:query"], None)},
            "/v1/decisions": {"get": op("scan decisions in order, optionally of one campaign, one `decision` (allow, review, block, duplicate), one member, what was scanned (`sku`, `device`, `ip`: each decision's `scan` holds them, with the store, the code's batch and its dealer when known; `code`: who else scanned it), one of its `reason`s (e.g. `code_shared`), and one scan (`scan_event`: its decision, and a repeat's); `member` matches the person (decisions written under an id merged into it, or it into, included; 404 for an id no member has: find one by identity at /v1/identities/{kind}/{value}); a review also says whether it is `pending` (still holding its points for a person to resolve, as the member's state says now), and `pending=true` lists only those (the risk team's queue; `false`, the reviews resolved or never holding points, a resolved one with its `resolution` while the service remembers the scan (so is a block a person overturned, `overturned: true`), the last 50,000 decisions; with `pending`, only reviews are listed, and a `decision` other than review is a 400); an allowed or reviewed scan that got no points says why in `no_reward` (daily_cap, budget_exhausted, no_points, not_configured); pages as /v1/outputs", &["campaign:query", "from:query", "limit:query", "decision:query", "member:query", "pending:query", "sku:query", "device:query", "ip:query", "code:query", "reason:query", "scan_event:query"], None)},
            "/v1/loyalty": {"get": op("the loyalty programme in figures, over every member, resident or not (ids merged away left out): `members`, members per tier (every configured tier listed) and per tag (every configured tag listed), and their points: `balance` (held: the programme's liability), `pending` (waiting for fulfilments), `debt` (owed from later points), `held` (waiting for reviews); reads every member, so it takes longer the more members there are", &[], None)},
            "/v1/campaigns": {"get": op("every campaign, by id, as `/v1/campaigns/{id}` shows each: those the configuration names (scanned or not) and those any scan named (a misspelt id among them, with `configured: false`); reads every campaign's state", &[], None)},
            "/v1/campaigns/{id}": {"get": op("a scan campaign: whether it has rules of its own (`configured`; else it runs on `rules.default-campaign`, as a misspelt id does), its `points` (what a rewarded scan is paid: 0 for one nobody configured when `rules.unconfigured-campaigns` is `no-reward`), daily cap and review/block thresholds, and its budget: `budget` (0: no limit), `spent` (paid and held for reviews, net of what came back), `remaining`, `granted`, `refunded` (blocked reviews, grants a member's daily cap sent back), claims, `rewarded` (grants), `denied` for lack of budget, `exhausted` (the last claim found the budget short), and decisions per kind; 404 for an id neither configured nor named by a scan", &["id"], None)},
            "/v1/members/{id}/phone": {"post": op("a person replaces a member's phone (customer service, once the member proved the new number): body {\"phone\": the new number as the member gives it (hashed by the server; the plain number is never stored or logged), \"ref\": the case it is recorded under (1 to 64 characters), \"reviewer\"?: name, \"note\"?: why}, no other key; the new phone is bound to the member and the old one (if any) to nobody, and a `phone_replaced` output records it with `previous` and `by`; an id merged away changes its survivor; answers `{member, ref, status: replaced, phone_replaced}` once durable, `status: unchanged` when the member has that phone already or the ref replaced it with this number before (a retry, even after a later change, which it does not undo); 409 `ref_conflict` for the same member and ref with another number; 409 `phone_taken` naming the member the phone belongs to (the service never moves a phone between people on its own), 409 `phone_refused` for a member at `member.max-identities` without a phone; 404 for an id no member has; scope `members`", &["id"], None)},
            "/v1/members/{id}/merge": {"post": op("a person merges two members (customer service, once it knows the two are one person; the service on its own refuses to merge two members with different phones, `merge_conflict`): body {\"with\": the other member's id, \"keep_phone_of\"?: `{id}` or `with` (or the member either leads to), whose phone stays when the two have different phones (required then; the other phone is released, bound to nobody; not needed, and nothing dropped for it, with one phone or none), \"ref\": the case it is recorded under (1 to 64 characters), \"reviewer\"?: name, \"note\"?: why}, no other key; each id merged away stands for its survivor; the member giving its phone up says `merge_approved` (with `phone` kept, `released`, `by`), then the two merge as identities would merge them (`merged`: the smaller id survives and takes the other's points, identities, orders and reviews); answers `{member: the survivor, alias, ref, status: merged, merge_approved, merged, ledger}` once durable, `status: unchanged` when the two are one member already (a retry); 500 `merge_unfinished` when the merge was approved and logged but its cascade was cut at the engine's bound (`runaway` in /v1/stats: the two are not merged); 409 `phones_differ` without `keep_phone_of` for two phones; 409 `ref_conflict` when the ref merged one of them with a third member (a ref is one merge of a member, not checked across members it never merged); 400 when `keep_phone_of` names neither, or `with` is `{id}` itself; 404 for an id no member has (`detail` names it); 409 `merging` when either is in a merge that never finished (its cascade cut at the engine's bound); scope `members`", &["id"], None)},
            "/v1/blocks": {"post": op("a person (a risk team) blocks a member, a device, an IP address or a network prefix: its scans in `campaign` (absent: every campaign) are blocked, reason `blocked` (100 points, never shadow), the decision's `scan.blocked` naming the block ({on, value, campaign?, ref}), until `until` (RFC 3339 event time; absent: until lifted); counts go on while blocked. Body {\"on\": member | device | ip | net, \"value\": the member id (one merged away: its survivor; the block follows the person into later merges), the device fingerprint, the address, or the prefix (a.b.c.0/24, an IPv6 /64, or any address within it), \"campaign\"?: campaign id, \"until\"?: RFC 3339, \"ref\": the case (1 to 64 characters), \"reviewer\"?: name, \"note\"?: why}, no other key. A block for the same campaign (or for every campaign) is replaced (`updated`, the `block_set` output's `replaced` naming the case it replaced); the same block again is `unchanged`, nothing logged. Logged like an event at the service's event time (a replay blocks the same scans). Answers `{on, value, status: blocked | updated | unchanged, block_set?, blocks: the blocks in force on it, warning?}` once durable (`warning`: a campaign neither configured nor scanned, a replacement that shortens a ban); 409 `merging` for a member in a merge that never finished; 400 for a bad body or an `until` not after the service's event time now; 404 for a member id no member has; scope `review`", &[], None)},
            "/v1/blocks/lift": {"post": op("a person lifts a block: body {\"on\", \"value\", \"campaign\"?: the campaign whose block is lifted (absent: the block for every campaign), \"ref\", \"reviewer\"?, \"note\"?}, no `until`; says `block_lifted` (its `lifted` naming the case the block was set under); answers `{on, value, status: lifted | not_blocked, block_lifted?, blocks, warning?}` (`warning`: no block for every campaign while some campaigns' blocks stay) (`not_blocked`: no such block in force, nothing logged: a retry answers so); scope `review`", &[], None)},
            "/v1/blocks/{on}/{value}": {"get": op("the blocks in force on a member (by id: its survivor's), a device, an address or a prefix (`on`: member, device, ip, net; `value` as POST /v1/blocks takes it, URL-encoded: a /24 is `1.2.3.0%2F24`), at the service's event time now: `{on, value, blocks: [{campaign?, until?, ref, since}]}` (`since`: the service's event time when it was set), for an address also `net`: its prefix's blocks, which its scans meet too; set and lifted blocks, ended ones too, are in /v1/outputs (`output=block_set`, `output=block_lifted`); 404 for a member id no member has", &["on", "value"], None)},
            "/v1/members/{id}/adjustments": {"post": op("a person adjusts a member's points: body {\"points\": n (not 0; at most 10,000,000 either way), \"ref\": the case it is recorded under (1 to 64 characters), \"reviewer\"?: name, \"note\"?: why}, no other key; added points pay the member's debt first; taken points never make the balance negative: what it cannot cover is owed (`debt`) from later points; the ledger entry's reason is `adjusted`, its `about` the ref, and a `points_adjusted` output records it with `by` (reviewer, note, token, the service's clock); an id merged away adjusts its survivor; answers `{member, ref, status: accepted, adjustment, ledger}` once durable; the same member and ref again: `status: duplicate` with its points, another amount 409 `ref_conflict`; 404 for an id no member has; scope `points`", &["id"], None)},
            "/v1/reviews/{event}": {"post": op("resolve a scan under review, or overturn a block: body {\"decision\": \"allow\"|\"block\", \"reviewer\"?: name (at most 64 characters), \"note\"?: why (at most 1,000)}, no other key; the resolution's `by` records them with `at` (the service's clock, UTC) and `token` (the access token's name, when access control is on); answers `{event, status: accepted, resolution, outputs}` (a retry of the same decision: `status: duplicate` and the `resolution`; the other decision, 409 `already_resolved` (a hold the service refused because its member held more than `max-held-reviews`, `refused: true` in the resolution, counts as blocked); `allow` on a blocked scan overturns the block (a customer's appeal: its reward granted from the campaign's budget and paid within the daily cap; the resolution says `overturned: true`), `block` on one answers 409 `not_under_review`; an allowed scan, 409 `not_under_review` saying what it was decided; a review that holds nothing, or an id the service does not remember deciding, 404 `no_review`)", &["event"], None)},
            "/v1/admin/snapshot": {"get": op("every entity's state, sorted by key (large)", &[], None)},
            "/v1/stats": {"get": op("counters of the shard and the engine", &[], None)},
            "/healthz": {"get": op("the process is up", &[], None), "head": op("the process is up (no body)", &[], None)},
            "/readyz": {"get": op("the store is open and the shard runs", &[], None), "head": op("the store is open and the shard runs (no body)", &[], None)},
            "/openapi.json": {"get": op("this document", &[], None)},
            "/metrics": {"get": op("Prometheus metrics, text format (404 `metrics_off` when `metrics = false`)", &[], None)},
            "/": {"get": op("the live board for managers (HTML; takes ?token= when tokens are on, and ?poll to ask for the figures once a second instead of a server-sent event stream, behind proxies that buffer one)", &["token:query", "poll:query"], None)},
            "/v1/board": {"get": op("the board's figures as JSON", &["token:query"], None)},
            "/v1/board/stream": {"get": op("the board's figures as server-sent events, one a second", &["token:query"], None)},
            "/v1/outputs/stream": {"get": op("outputs pushed as server-sent events once durable (a channel follows its stock: ?output=stock&sku=...): each event `output`, its `id` the output's `seq`, its `data` `{\"seq\", \"output\"}` as `/v1/outputs` lists them, with `/v1/outputs`' filters; after the `Last-Event-ID` header a reconnecting client sends (it wins over `from`: a client reconnects to the same URL), else from `from`, else from the end (what becomes durable from now on); at the start and at least every 15 s without an output, a comment and an event of only an `id`, where the reading has come to (-1 before the first output), so a reconnect after a quiet spell misses nothing; a position past the end starts at the end; the token in the Authorization header (no `?token=`); 400 `bad_query` for a bad filter or `Last-Event-ID`", &["from:query", "output:query", "campaign:query", "sku:query", "location:query", "member:query", "dealer:query", "order:query", "code:query", "reason:query", "id:query"], None)},
        },
        "components": components(),
    });
    // what ingest answers, as schemas
    if let (Some(schemas), Value::Object(more)) = (
        doc["components"]["schemas"].as_object_mut(),
        answer_schemas(),
    ) {
        schemas.extend(more);
    }
    let answer = |name: &str| json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}});
    doc["paths"]["/v1/events"]["post"]["responses"]["200"]["content"] = answer("EventsAnswer");
    doc["paths"]["/v1/scan"]["post"]["responses"]["200"]["content"] = answer("ScanAnswer");

    // what the routes that answer no JSON answer
    for (path, method, kind) in [
        ("/", "get", "text/html"),
        ("/metrics", "get", "text/plain"),
        ("/v1/board/stream", "get", "text/event-stream"),
        ("/v1/outputs/stream", "get", "text/event-stream"),
    ] {
        doc["paths"][path][method]["responses"]["200"]["content"] = json!({kind: {}});
    }
    for path in ["/healthz", "/readyz"] {
        if let Some(head) = doc["paths"][path].get_mut("head") {
            head["responses"]["200"] = json!({"description": "ok (no body)"});
        }
    }
    doc["paths"]["/v1/scan"]["post"]["requestBody"]["content"] = json!({"application/json":
        {"schema": {"$ref": "#/components/schemas/Event"}}});
    doc["paths"]["/v1/reviews/{event}"]["post"]["requestBody"] = json!({"required": true,
        "content": {"application/json": {"schema": {"type": "object", "required": ["decision"],
            "additionalProperties": false,
            "properties": {"decision": {"enum": ["allow", "block"]},
                "reviewer": {"type": "string", "minLength": 1, "maxLength": 64},
                "note": {"type": "string", "minLength": 1, "maxLength": 1000}}}}}});
    doc["paths"]["/v1/scan"]["post"]["responses"]["422"] = json!({"description":
        "the scan was rejected (its reasons in the body) and kept as a dead letter",
        "content": answer("ScanAnswer")});
    doc["paths"]["/v1/reviews/{event}"]["post"]["responses"]["409"] = json!({"description":
        "`already_resolved`: the review was resolved with the other decision (the same decision again answers 200 `duplicate` with the resolution)"});
    doc["paths"]["/v1/reviews/{event}"]["post"]["responses"]["503"] = json!({"description":
        "not ready: the store is unavailable; retry after the Retry-After header"});
    let phone = &mut doc["paths"]["/v1/members/{id}/phone"]["post"];
    phone["requestBody"] = json!({"required": true,
        "content": {"application/json": {"schema": {"type": "object", "required": ["phone", "ref"],
            "additionalProperties": false,
            "properties": {"phone": {"type": "string", "minLength": 1, "maxLength": 256},
                "ref": {"type": "string", "minLength": 1, "maxLength": 64},
                "reviewer": {"type": "string", "minLength": 1, "maxLength": 64},
                "note": {"type": "string", "minLength": 1, "maxLength": 1000}}}}}});
    phone["responses"]["409"] = json!({"description":
        "`phone_taken`: the phone belongs to another member (named); `phone_refused`: the member holds `member.max-identities` identities and no phone; `ref_conflict`: the member's phone was replaced under this ref with another number"});
    phone["responses"]["503"] = json!({"description":
        "not ready: the store is unavailable; retry after the Retry-After header"});
    let merge = &mut doc["paths"]["/v1/members/{id}/merge"]["post"];
    merge["requestBody"] = json!({"required": true,
        "content": {"application/json": {"schema": {"type": "object", "required": ["with", "ref"],
            "additionalProperties": false,
            "properties": {"with": {"type": "string", "minLength": 1},
                "keep_phone_of": {"type": "string", "minLength": 1},
                "ref": {"type": "string", "minLength": 1, "maxLength": 64},
                "reviewer": {"type": "string", "minLength": 1, "maxLength": 64},
                "note": {"type": "string", "minLength": 1, "maxLength": 1000}}}}}});
    merge["responses"]["409"] = json!({"description":
        "`phones_differ`: the two have different phones and `keep_phone_of` is absent; `ref_conflict`: the ref merged one of the two with another member; `merging`: one of the two is in a merge that never finished"});
    merge["responses"]["503"] = json!({"description":
        "not ready: the store is unavailable; retry after the Retry-After header"});
    doc["paths"]["/v1/blocks"]["get"] = op(
        "every block in force now (a risk team's list of what is blocked), a page at a time: `{total, items: [{on, value, campaign?, until?, ref, since, by?}], next}` in order of what they are on (`on:value`), `by` who set it and why as the service recorded the request; `on=` only those on member, device, ip or net; `campaign=` those holding in it (its own and those for every campaign); `limit=` about this many items (default 100, at most 1000; one thing's blocks are never split over two pages), `after=` the previous page's `next` (null on the last page); `total` counts every page's. Set and lifted blocks, ended ones too, are in /v1/outputs (`output=block_set`, `output=block_lifted`); `omnistream_blocks_in_force{on}` counts them at each scrape",
        &["on:query", "campaign:query", "after:query", "limit:query"],
        None,
    );
    doc["paths"]["/v1/blocks/{on}/{value}/{len}"] = json!({"get": op(
        "GET /v1/blocks/{on}/{value} of a prefix written with its slash (`/v1/blocks/net/203.0.113.0/24`)",
        &["on", "value", "len"],
        None
    )});
    doc["paths"]["/v1/admin/reload"] = json!({"post": op(
        "reads the configuration again (the file, the OMNISTREAM_* variables and the flags, as at start-up; SIGHUP does the same) and runs its `[rules]` from now on: campaigns, points, fraud thresholds and weights, tags, tiers, stock and store rules; logged where it happens, so a restart replays each event under the rules it ran under. While access control is on, the tokens too: a secret rotated in its `token-file`, a token added or removed, taken (or refused) from this request on. No body. Answers `{status: reloaded | unchanged, changed: the rules' dotted paths that changed (and `auth.tokens` when the tokens did; never a secret), restart_needed: other settings that differ from those the service started with (read at start-up only: not applied)}`; 400 `bad_config` naming the key when the configuration does not load (the rules in effect stay); 503 when the store fails to write the switch (the reloaded rules then run from the rebuild once it answers); scope `admin`",
        &[],
        None
    )});
    for (path, lift) in [("/v1/blocks", false), ("/v1/blocks/lift", true)] {
        let mut properties = json!({
            "on": {"type": "string", "enum": ["member", "device", "ip", "net"]},
            "value": {"type": "string", "minLength": 1, "maxLength": 256,
                "description": "a member id (at most 64 characters), a device (at most 256), an IP address, or a prefix"},
            "campaign": {"type": "string", "minLength": 1, "maxLength": 128},
            "ref": {"type": "string", "minLength": 1, "maxLength": 64},
            "reviewer": {"type": "string", "minLength": 1, "maxLength": 64},
            "note": {"type": "string", "minLength": 1, "maxLength": 1000}});
        if !lift {
            properties["until"] = json!({"type": "string", "format": "date-time"});
        }
        let block = &mut doc["paths"][path]["post"];
        block["requestBody"] = json!({"required": true,
            "content": {"application/json": {"schema": {"type": "object",
                "required": ["on", "value", "ref"], "additionalProperties": false,
                "properties": properties}}}});
        block["responses"]["503"] = json!({"description":
            "not ready: the store is unavailable; retry after the Retry-After header"});
    }
    let adjust = &mut doc["paths"]["/v1/members/{id}/adjustments"]["post"];
    adjust["requestBody"] = json!({"required": true,
        "content": {"application/json": {"schema": {"type": "object", "required": ["points", "ref"],
            "additionalProperties": false,
            "properties": {"points": {"type": "integer", "minimum": -10_000_000, "maximum": 10_000_000,
                    "not": {"const": 0}},
                "ref": {"type": "string", "minLength": 1, "maxLength": 64},
                "reviewer": {"type": "string", "minLength": 1, "maxLength": 64},
                "note": {"type": "string", "minLength": 1, "maxLength": 1000}}}}}});
    adjust["responses"]["409"] = json!({"description":
        "`ref_conflict`: the member has an adjustment under this ref with another amount (the same amount again answers 200 `duplicate`)"});
    adjust["responses"]["503"] = json!({"description":
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

    /// Every field of every output the sample feed (`examples/sample.jsonl`) makes is one
    /// the README lists for its kind: a field added to such an output and not documented
    /// fails here.
    #[test]
    fn every_output_field_a_feed_makes_is_listed() {
        let decoder = omnistream_schemas::Decoder::new(omnistream_schemas::Pii::new(b"k"));
        let mut engine = omnistream_actors::sharded::Sharded::new(Default::default(), 1);
        let mut out = Vec::new();
        let sample = include_str!("../examples/sample.jsonl");
        for line in sample.lines().filter(|l| !l.trim().is_empty()) {
            if let Ok(ev) = decoder.decode(line.as_bytes()) {
                engine.apply(&ev, &mut out);
            }
        }
        let listed = output_kinds();
        let mut seen = std::collections::BTreeSet::new();
        for e in &out {
            let v = serde_json::to_value(&e.output).unwrap_or_default();
            let kind = listed
                .iter()
                .find(|k| k["title"] == v["output"])
                .unwrap_or_else(|| panic!("no schema for {v}"));
            for (field, _) in v.as_object().into_iter().flatten() {
                assert!(
                    kind["properties"][field].is_object(),
                    "the README does not list `{field}` of {v}"
                );
            }
            seen.insert(v["output"].as_str().unwrap_or_default().to_string());
        }
        assert!(seen.len() >= 10, "the sample made only {seen:?}");
    }

    /// The `Output` schema's `oneOf` is the README's Outputs section: every kind is there,
    /// once, with fields.
    #[test]
    fn the_readme_lists_every_output_kind() {
        let section = outputs_section();
        let listed: Vec<Value> = output_kinds();
        for kind in omnistream_actors::output::kinds() {
            assert!(section.contains(&format!("**`{kind}`**")), "{kind}");
            let schemas: Vec<&Value> = listed.iter().filter(|k| k["title"] == kind).collect();
            assert_eq!(schemas.len(), 1, "{kind}");
            let fields = schemas[0]["properties"].as_object().map_or(0, |p| p.len());
            assert!(fields > 1, "{kind}: no fields listed");
        }
        assert_eq!(listed.len(), omnistream_actors::output::kinds().len());
    }

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
            let open = matches!(r.access, crate::http::Access::Health);
            assert_eq!(op["security"].is_array(), !open, "{} {}", r.method, r.path);
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

    /// The ingest answers' examples hold only fields their schemas declare, with every
    /// required one, and outputs and reasons of the kinds declared: the schemas cannot fall
    /// behind what the routes answer (the examples are those answers, `tests/service.rs`).
    #[test]
    fn the_ingest_examples_keep_to_their_schemas() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        let enum_has =
            |schema: &Value, v: &Value| schema["enum"].as_array().is_some_and(|e| e.contains(v));
        let fits = |name: &str, v: &Value| {
            let s = &schemas[name];
            let o = v.as_object().unwrap_or_else(|| panic!("{name}: {v}"));
            for k in o.keys() {
                assert!(
                    s["properties"][k].is_object(),
                    "{name} does not declare {k}: {v}"
                );
            }
            for r in s["required"].as_array().unwrap() {
                assert!(o.contains_key(r.as_str().unwrap()), "{name} lacks {r}: {v}");
            }
            if s["properties"]["status"].is_object() {
                assert!(enum_has(&s["properties"]["status"], &v["status"]), "{v}");
            }
        };
        // of a declared kind, each field one its schema in `oneOf` lists
        let output_kind = |o: &Value| {
            assert!(
                enum_has(&schemas["Output"]["properties"]["output"], &o["output"]),
                "{o}"
            );
            let kind = schemas["Output"]["oneOf"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|k| k["title"] == o["output"])
                .unwrap_or_else(|| panic!("no schema for {o}"));
            // (beside the envelope's `event` and `at`, where an answer keeps them)
            let fields = o.as_object().into_iter().flatten().map(|(f, _)| f);
            for field in fields.filter(|f| !matches!(f.as_str(), "event" | "at")) {
                assert!(
                    kind["properties"][field].is_object(),
                    "the README does not list `{field}` of {o}"
                );
            }
        };
        let example = |path: &str| {
            doc["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]
                ["examples"]["sample"]["value"]
                .clone()
        };
        let events = example("/v1/events");
        fits("EventsAnswer", &events);
        let mut statuses = std::collections::BTreeSet::new();
        for r in events["results"].as_array().unwrap() {
            fits("EventResult", r);
            statuses.insert(r["status"].as_str().unwrap().to_string());
            for f in ["order", "decision", "credit", "stock"] {
                if r[f].is_object() {
                    output_kind(&r[f]);
                }
            }
            for f in ["orders", "merges"] {
                r[f].as_array().into_iter().flatten().for_each(output_kind);
            }
            for p in r["reasons"].as_array().into_iter().flatten() {
                assert!(
                    enum_has(&schemas["Problem"]["properties"]["reason"], &p["reason"]),
                    "{p}"
                );
            }
        }
        assert_eq!(statuses.len(), 2, "accepted and rejected: {statuses:?}");
        assert!(events["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["decision"].is_object() && r["order"].is_null()));
        let scan = example("/v1/scan");
        fits("ScanAnswer", &scan);
        output_kind(&scan["decision"]);
        assert!(scan["decision"]["event"].is_string() && scan["decision"]["at"].is_string());
        scan["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .for_each(output_kind);
    }

    /// Every `$ref` points at something in the document (the event schema's definitions once
    /// pointed at a `$defs` only its own root had: a client generator stopped there).
    #[test]
    fn every_reference_resolves_within_the_document() {
        fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r);
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let doc = document();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 5, "{found:?}");
        for r in found {
            let pointer = r.strip_prefix('#').unwrap_or(r);
            assert!(doc.pointer(pointer).is_some(), "{r} resolves to nothing");
        }
    }
}
