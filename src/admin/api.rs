//! Control API handlers: each one parses its input, calls the reload path,
//! and maps the outcome to a status. Documented in the README.

use std::collections::BTreeMap;
use std::net::IpAddr;

use bytes::Bytes;
use http::{
    header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version,
};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::json;

use super::json::{config_errors, error, json, parse};
use super::Context;
use crate::clock::{now_ms, now_secs};
use crate::config::load::{parse_text, Origins};
use crate::config::Config;
use crate::proxy::{self, Matched};
use crate::reload::{self, overrides::Weights, ChangeError};
use crate::route::matcher::percent_decode;

type Resp = Response<Full<Bytes>>;

/// Routes `/v1/*` requests to their handler.
pub fn dispatch(
    shared: &Context,
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
            &crate::metrics::stats::to_json(&shared.tables.metrics().series),
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
            outcome(reload::rollback(&shared.tables, if_match, route, rule))
        }
        (&Method::POST, ["v1", "routes", route, "switch"]) => switch(shared, if_match, route, body),
        (&Method::POST, ["v1", "routes", route, "rules", rule, "rollout", action]) => {
            // Checked before the action, not inside its change: enough to
            // stop a dashboard acting on a state it has not seen.
            let current = shared.tables.routes.load().generation;
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

fn get_config(shared: &Context) -> Resp {
    let (generation, desired, effective) = reload::snapshot(&shared.tables);
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

fn put_config(shared: &Context, if_match: Option<u64>, body: &Bytes) -> Resp {
    let (config, origins) = match config_body(body) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let generation = shared.tables.routes.load().generation;
    if if_match.is_some_and(|g| g != generation) {
        return outcome(Err(ChangeError::Conflict {
            current: generation,
        }));
    }
    match reload::replace_base(&shared.tables, &config) {
        Ok(g) => outcome(Ok(g)),
        Err(errors) => config_errors(StatusCode::BAD_REQUEST, &origins.annotate(errors)),
    }
}

fn validate(body: &Bytes) -> Resp {
    let (config, origins) = match config_body(body) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let scratch = crate::route::Inherited::default();
    match crate::compile::compile(&config, &scratch, 0) {
        Ok(_) => json(StatusCode::OK, &json!({ "valid": true })),
        Err(errors) => config_errors(StatusCode::BAD_REQUEST, &origins.annotate(errors)),
    }
}

fn patch_one(
    shared: &Context,
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
    outcome(reload::set_weights(
        &shared.tables,
        if_match,
        "patch",
        &changes,
    ))
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

fn patch_many(shared: &Context, if_match: Option<u64>, body: &Bytes) -> Resp {
    let many: ManyChanges = match parse(body) {
        Ok(m) => m,
        Err(resp) => return resp,
    };
    let changes: Vec<_> = many
        .changes
        .into_iter()
        .map(|c| (c.route, c.rule, c.weights))
        .collect();
    outcome(reload::set_weights(
        &shared.tables,
        if_match,
        "patch",
        &changes,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteBody {
    group: String,
}

fn promote(shared: &Context, if_match: Option<u64>, route: &str, rule: &str, body: &Bytes) -> Resp {
    match parse::<PromoteBody>(body) {
        Ok(p) => outcome(reload::promote(
            &shared.tables,
            if_match,
            route,
            rule,
            &p.group,
        )),
        Err(resp) => resp,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchBody {
    to: String,
}

fn switch(shared: &Context, if_match: Option<u64>, route: &str, body: &Bytes) -> Resp {
    match parse::<SwitchBody>(body) {
        Ok(s) => outcome(reload::switch(&shared.tables, if_match, route, &s.to)),
        Err(resp) => resp,
    }
}

/// Desired and effective weights per rule, and the split observed over the
/// last minute, so a controller can verify a change took effect.
fn status(shared: &Context) -> Resp {
    let table = shared.tables.routes.load_full();
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
            "reload_errors": shared.tables.reload_errors.load(std::sync::atomic::Ordering::Relaxed),
            "draining": shared.serving.draining.load(std::sync::atomic::Ordering::Relaxed),
            "routes": routes,
            "dns": dns_status(shared, &table),
        }),
    )
}

/// Per group with host-name endpoints: each name's resolved addresses (the
/// group's endpoints) and when it was last resolved.
fn dns_status(shared: &Context, table: &crate::route::RouteTable) -> serde_json::Value {
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
            .map(
                |name| match shared.tables.inherited.upstream.dns.get(name) {
                    Some(r) => json!({
                        "endpoint": &**name,
                        "addresses": r.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                        "resolved_at_unix": unix(r.resolved_at),
                        "last_good_at_unix": (!r.addresses.is_empty()).then(|| unix(r.good_at)),
                        "failing": r.failing,
                    }),
                    None => {
                        json!({ "endpoint": &**name, "addresses": [], "resolved_at_unix": null })
                    }
                },
            )
            .collect();
        groups.insert(g.name.to_string(), json!(names));
    }
    serde_json::Value::Object(groups)
}

/// Which route, rule and group a described request would take, and why.
/// Query: `method`, `path` (may carry `?query`), `host`, `header=name:value`
/// (repeatable), `listener` (name; default the first), `client` (IP).
fn explain(shared: &Context, query: &str) -> Resp {
    let table = shared.tables.routes.load_full();
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
            "host" => host = v,
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
    let mut parts = Request::new(()).into_parts().0;
    parts.method = method;
    parts.uri = match path.parse() {
        Ok(uri) => uri,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("path: invalid request target {path:?}"),
            )
        }
    };
    // No host given: a request without one (HTTP/1.0), which only routes
    // without hostnames match.
    parts.version = if host.is_empty() && parts.uri.authority().is_none() {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    parts.headers = headers;
    if !host.is_empty() {
        match HeaderValue::from_str(&host) {
            Ok(h) => parts.headers.insert(header::HOST, h),
            Err(_) => return error(StatusCode::BAD_REQUEST, &format!("host: invalid {host:?}")),
        };
    }
    // The proxy's own decision code, host validation and hop-by-hop
    // stripping included.
    let decided = proxy::clean_head(&mut parts, None).and_then(|client_host| {
        proxy::match_head(&table, index, client, &parts, client_host.as_str())
    });
    let Matched { rule, entry, key } = match decided {
        Ok(m) => m,
        Err(e) => {
            return json(
                StatusCode::OK,
                &json!({
                    "matched": false,
                    "status": e.status().as_u16(),
                    "reason": e.message(),
                }),
            )
        }
    };
    let backends: Vec<_> = rule
        .split
        .backends()
        .map(|(g, w)| json!({ "group": &*table.groups[g as usize].name, "weight": w }))
        .collect();
    // The group as the proxy would pick it now: for the sticky key, or for
    // every point of the split when they all land on one group.
    let now = now_ms();
    let slot_at = |point| rule.first_slot(&table.groups, point, now).ok();
    let slot = match key {
        Some(k) => slot_at(k),
        None => Some((slot_at(0), slot_at(u64::MAX)))
            .filter(|(lo, hi)| lo == hi)
            .and_then(|(lo, _)| lo),
    };
    let group = slot.map_or_else(
        || "chosen per request by weight".to_string(),
        |s| rule.group(&table.groups, s).name.to_string(),
    );
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
            "group": group,
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
