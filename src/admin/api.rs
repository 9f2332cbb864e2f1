//! Control API handlers: each one parses its input, calls the reload path,
//! and maps the outcome to a status. Documented in the README.

use std::collections::BTreeMap;
use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::json;

use super::json::{config_errors, error, json, parse};
use crate::app::Shared;
use crate::config::load::{parse_text, Origins};
use crate::config::Config;
use crate::reload::{self, overrides::Weights, ChangeError};
use crate::route::matcher::{percent_decode, RequestView};
use crate::route::observed::now_secs;

type Resp = Response<Full<Bytes>>;

/// Routes `/v1/*` requests to their handler.
pub fn dispatch(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &str,
    if_match: Option<u64>,
    body: &Bytes,
) -> Resp {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::GET, ["v1", "config"]) => get_config(shared),
        (&Method::PUT, ["v1", "config"]) => put_config(shared, if_match, body),
        (&Method::POST, ["v1", "config", "validate"]) => validate(body),
        (&Method::GET, ["v1", "status"]) => status(shared),
        (&Method::GET, ["v1", "stats"]) => json(
            StatusCode::OK,
            &crate::metrics::stats::to_json(&shared.metrics.series),
        ),
        (&Method::GET, ["v1", "explain"]) => explain(shared, query),
        (&Method::PATCH, ["v1", "weights"]) => patch_many(shared, if_match, body),
        (&Method::PATCH, ["v1", "routes", route, "rules", rule, "weights"]) => {
            patch_one(shared, if_match, route, rule, body)
        }
        (&Method::POST, ["v1", "routes", route, "rules", rule, "promote"]) => {
            promote(shared, if_match, route, rule, body)
        }
        (&Method::POST, ["v1", "routes", route, "rules", rule, "rollback"]) => {
            outcome(reload::rollback(shared, if_match, route, rule))
        }
        (&Method::POST, ["v1", "routes", route, "switch"]) => switch(shared, if_match, route, body),
        (&Method::POST, ["v1", "routes", route, "rules", rule, "rollout", action]) => {
            // Checked before the action, not inside its change: enough to
            // stop a dashboard acting on a state it has not seen.
            let current = shared.routes.load().generation;
            if if_match.is_some_and(|g| g != current) {
                return outcome(Err(ChangeError::Conflict { current }));
            }
            super::analysis::act(shared, route, rule, action)
        }
        (&Method::GET, ["v1", "analysis"]) => super::analysis::all(shared),
        (&Method::GET, ["v1", "analysis", route, rule]) => {
            super::analysis::get(shared, route, rule)
        }
        (&Method::POST, ["v1", "flagger", hook]) => super::analysis::flagger(shared, hook, body),
        _ => error(
            StatusCode::NOT_FOUND,
            &format!("no such endpoint: {method} {path}"),
        ),
    }
}

/// Maps a change's outcome to a response carrying the new generation.
fn outcome(result: Result<u64, ChangeError>) -> Resp {
    match result {
        Ok(generation) => {
            let mut resp = json(StatusCode::OK, &json!({ "generation": generation }));
            if let Ok(v) = HeaderValue::from_str(&format!("\"{generation}\"")) {
                resp.headers_mut().insert(http::header::ETAG, v);
            }
            resp
        }
        Err(ChangeError::Conflict { current }) => json(
            StatusCode::CONFLICT,
            &json!({ "error": format!("stale If-Match: the live generation is {current}"), "generation": current }),
        ),
        Err(ChangeError::Invalid(errors)) => config_errors(StatusCode::BAD_REQUEST, &errors),
        Err(ChangeError::Misfit(m)) => error(StatusCode::NOT_FOUND, &m),
        Err(ChangeError::NothingToRollBack) => {
            error(StatusCode::CONFLICT, "no earlier weights to roll back to")
        }
        Err(ChangeError::Persist(m)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("change not applied: cannot persist it: {m}"),
        ),
    }
}

fn get_config(shared: &Shared) -> Resp {
    let (generation, desired, effective) = reload::snapshot(shared);
    let mut resp = json(
        StatusCode::OK,
        &json!({
            "generation": generation,
            "base_origin": desired.base_origin,
            "overrides": desired.overrides,
            "config": effective,
        }),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("\"{generation}\"")) {
        resp.headers_mut().insert(http::header::ETAG, v);
    }
    resp
}

/// A config body: JSON, or YAML when it does not start with `{`. YAML may
/// hold several documents, cutover configs and Gateway API HTTPRoutes, as a
/// config file may; the origins point compile errors back at them.
fn config_body(body: &Bytes) -> Result<(Config, Origins), Resp> {
    let text = std::str::from_utf8(body)
        .map_err(|_| error(StatusCode::BAD_REQUEST, "body is not UTF-8"))?;
    if text.trim_start().starts_with('{') {
        parse::<Config>(body).map(|c| (c, Origins::default()))
    } else {
        parse_text(text).map_err(|e| config_errors(StatusCode::BAD_REQUEST, &e))
    }
}

fn put_config(shared: &Shared, if_match: Option<u64>, body: &Bytes) -> Resp {
    let (config, origins) = match config_body(body) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let generation = shared.routes.load().generation;
    if if_match.is_some_and(|g| g != generation) {
        return outcome(Err(ChangeError::Conflict {
            current: generation,
        }));
    }
    match reload::publish(shared, &config) {
        Ok(g) => outcome(Ok(g)),
        Err(errors) => config_errors(StatusCode::BAD_REQUEST, &origins.annotate(errors)),
    }
}

fn validate(body: &Bytes) -> Resp {
    let (config, origins) = match config_body(body) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let scratch = crate::upstream::EndpointRegistry::default();
    match crate::config::compile::compile(&config, &scratch, 0) {
        Ok(_) => json(StatusCode::OK, &json!({ "valid": true })),
        Err(errors) => config_errors(StatusCode::BAD_REQUEST, &origins.annotate(errors)),
    }
}

fn patch_one(
    shared: &Shared,
    if_match: Option<u64>,
    route: &str,
    rule: &str,
    body: &Bytes,
) -> Resp {
    let weights: Weights = match parse(body) {
        Ok(w) => w,
        Err(resp) => return resp,
    };
    let changes = [(route.to_string(), rule.to_string(), weights)];
    outcome(reload::set_weights(shared, if_match, "patch", &changes))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManyChanges {
    changes: Vec<OneChange>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OneChange {
    route: String,
    rule: String,
    weights: Weights,
}

fn patch_many(shared: &Shared, if_match: Option<u64>, body: &Bytes) -> Resp {
    let many: ManyChanges = match parse(body) {
        Ok(m) => m,
        Err(resp) => return resp,
    };
    let changes: Vec<_> = many
        .changes
        .into_iter()
        .map(|c| (c.route, c.rule, c.weights))
        .collect();
    outcome(reload::set_weights(shared, if_match, "patch", &changes))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteBody {
    group: String,
}

fn promote(shared: &Shared, if_match: Option<u64>, route: &str, rule: &str, body: &Bytes) -> Resp {
    match parse::<PromoteBody>(body) {
        Ok(p) => outcome(reload::promote(shared, if_match, route, rule, &p.group)),
        Err(resp) => resp,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchBody {
    to: String,
}

fn switch(shared: &Shared, if_match: Option<u64>, route: &str, body: &Bytes) -> Resp {
    match parse::<SwitchBody>(body) {
        Ok(s) => outcome(reload::switch(shared, if_match, route, &s.to)),
        Err(resp) => resp,
    }
}

/// Desired and effective weights per rule, and the split observed over the
/// last minute, so a controller can verify a change took effect.
fn status(shared: &Shared) -> Resp {
    let table = shared.routes.load_full();
    let now = now_secs();
    let mut routes: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
    for rule in table.rules.iter() {
        let mut desired = serde_json::Map::new();
        let mut observed = serde_json::Map::new();
        let counts: Vec<u64> = rule.observed.iter().map(|c| c.last_minute(now)).collect();
        let total: u64 = counts.iter().sum();
        for ((group, weight), count) in rule.split.backends().zip(&counts) {
            let name = table.groups[group as usize].name.to_string();
            desired.insert(name.clone(), json!(weight));
            let share = if total == 0 {
                0.0
            } else {
                *count as f64 / total as f64
            };
            observed.insert(name, json!({ "requests": count, "share": share }));
        }
        routes.entry(&rule.route).or_default().push(json!({
            "rule": &*rule.name,
            "desired_weights": desired,
            "effective_weights": desired,
            "observed_last_minute": observed,
        }));
    }
    let routes: Vec<_> = routes
        .into_iter()
        .map(|(route, rules)| json!({ "route": route, "rules": rules }))
        .collect();
    json(
        StatusCode::OK,
        &json!({
            "generation": table.generation,
            "reload_errors": shared.reload_errors.load(std::sync::atomic::Ordering::Relaxed),
            "draining": shared.draining.load(std::sync::atomic::Ordering::Relaxed),
            "routes": routes,
            "dns": dns_status(shared, &table),
        }),
    )
}

/// Per group with host-name endpoints: each name's resolved addresses (the
/// group's endpoints) and when it was last resolved.
fn dns_status(shared: &Shared, table: &crate::route::RouteTable) -> serde_json::Value {
    let unix = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let mut groups = serde_json::Map::new();
    for g in table
        .groups
        .iter()
        .filter(|g| !g.discovery.names.is_empty())
    {
        let names: Vec<_> = g
            .discovery
            .names
            .iter()
            .map(|name| match shared.endpoints.dns.get(name) {
                Some(r) => json!({
                    "endpoint": &**name,
                    "addresses": r.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "resolved_at_unix": unix(r.resolved_at),
                    "last_good_at_unix": (!r.addresses.is_empty()).then(|| unix(r.good_at)),
                    "failing": r.failing,
                }),
                None => json!({ "endpoint": &**name, "addresses": [], "resolved_at_unix": null }),
            })
            .collect();
        groups.insert(g.name.to_string(), json!(names));
    }
    serde_json::Value::Object(groups)
}

/// Which route, rule and group a described request would take, and why.
/// Query: `method`, `path` (may carry `?query`), `host`, `header=name:value`
/// (repeatable), `listener` (name; default the first), `client` (IP).
fn explain(shared: &Shared, query: &str) -> Resp {
    let table = shared.routes.load_full();
    let mut method = Method::GET;
    let (mut path, mut host, mut listener) = ("/".to_string(), String::new(), None);
    let mut client: IpAddr = IpAddr::from([127, 0, 0, 1]);
    let mut headers = HeaderMap::new();
    for (k, v) in form_pairs(query) {
        let bad = |what: &str| {
            error(
                StatusCode::BAD_REQUEST,
                &format!("{k}: invalid {what} {v:?}"),
            )
        };
        match k.as_str() {
            "method" => match Method::from_bytes(v.as_bytes()) {
                Ok(m) => method = m,
                Err(_) => return bad("method"),
            },
            "path" => path = v,
            "host" => host = v.to_ascii_lowercase(),
            "listener" => listener = Some(v),
            "client" => match v.parse() {
                Ok(ip) => client = ip,
                Err(_) => return bad("IP address"),
            },
            "header" => {
                let Some((name, value)) = v.split_once(':') else {
                    return bad("header (want name:value)");
                };
                match (
                    HeaderName::from_bytes(name.trim().as_bytes()),
                    HeaderValue::from_str(value.trim()),
                ) {
                    (Ok(n), Ok(val)) => {
                        headers.append(n, val);
                    }
                    _ => return bad("header"),
                }
            }
            _ => return error(StatusCode::BAD_REQUEST, &format!("unknown parameter {k:?}")),
        }
    }
    let index = match &listener {
        None => 0,
        Some(name) => match table.listeners.iter().position(|l| &*l.name == name) {
            Some(i) => i,
            None => {
                return error(
                    StatusCode::NOT_FOUND,
                    &format!("unknown listener \"{name}\""),
                )
            }
        },
    };
    let (only_path, q) = match path.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (path.clone(), None),
    };
    let view = RequestView {
        method: &method,
        host: host.split(':').next().unwrap_or(""),
        path: &only_path,
        query: q.as_deref(),
        headers: &headers,
    };
    let Some((rule, entry)) = table.find(index, &view) else {
        return json(
            StatusCode::OK,
            &json!({ "matched": false, "status": 404, "reason": "no route rule matches this request" }),
        );
    };
    let backends: Vec<_> = rule
        .split
        .backends()
        .map(|(g, w)| json!({ "group": &*table.groups[g as usize].name, "weight": w }))
        .collect();
    let sticky_group = rule.sticky.as_ref().and_then(|s| {
        let key = s.hash(&headers, client)?;
        let g = rule.split.pick(key)?;
        Some(table.groups[g as usize].name.to_string())
    });
    json(
        StatusCode::OK,
        &json!({
            "matched": true,
            "generation": table.generation,
            "route": &*rule.route,
            "rule": &*rule.name,
            "matched_by": entry.conditions.describe(),
            "why": "first rule in Gateway API precedence whose match holds: exact path > regex > longest prefix > method > most headers > most query params > config order",
            "backends": backends,
            "group": sticky_group.unwrap_or_else(|| "chosen per request by weight".into()),
        }),
    )
}

/// `a=1&b=x%20y` -> pairs, percent- and plus-decoded.
fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                percent_decode(k).into_owned(),
                percent_decode(v).into_owned(),
            )
        })
        .collect()
}
