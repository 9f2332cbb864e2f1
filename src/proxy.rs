//! The request pipeline, top to bottom: framing check -> route match -> group
//! pick -> header hygiene and filters -> mirrors (spawned) -> retry loop
//! (endpoint pick, upstream pool) -> response.
//! Read [`handle`] first.

pub mod forward;
pub mod framing;
pub mod host;
pub mod mirror;
pub mod record;
pub mod rewrite;
pub mod upgrade;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{header, HeaderValue, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use rand::Rng;

use crate::body::{BodyError, PreparedBody, ProxyBody};
use crate::error::ProxyError;
use crate::metrics::Chosen;
use crate::retry;
use crate::route::matcher::RequestView;
use crate::route::{Entry, RouteTable, Rule};
use crate::serving::Serving;
use host::ClientHost;
use record::{Observed, RequestRecord};

/// What the pipeline knows about the connection a request came on.
/// Cloned per request: the clone of `client_ip` is a reference count.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// Index of the listener in the routing table.
    pub listener: usize,
    /// `http` or `https`, for `X-Forwarded-Proto`.
    pub proto: &'static str,
    /// The client's IP as the `X-Forwarded-For` entry, formatted once per
    /// connection rather than once per request.
    pub client_ip: HeaderValue,
    /// The port the connection arrived on (the bound one, also when the
    /// config said port 0), for redirects that keep the listener's port;
    /// 0 when unknown.
    pub local_port: u16,
}

impl ConnInfo {
    /// The connection from `peer` on listener `listener`, speaking `proto`.
    pub fn new(peer: SocketAddr, listener: usize, proto: &'static str) -> ConnInfo {
        ConnInfo {
            peer,
            listener,
            proto,
            client_ip: forward::client_ip_value(peer.ip()),
            local_port: 0,
        }
    }
}

/// Serves one request. Reads the routing table once; the request finishes on
/// that snapshot even if a new table is published meanwhile. The exchange
/// records metrics and the access log line when the response body ends.
pub async fn handle(
    shared: Arc<Serving>,
    conn: ConnInfo,
    req: Request<Incoming>,
) -> Result<Response<Observed>, Infallible> {
    let started = crate::clock::now();
    let mut ex = RequestRecord::start(shared.routes.load_full(), &req, started);
    let method = req.method().clone();
    let uri = req.uri().clone();
    let http1 = req.version() <= Version::HTTP_11;
    let grpc = is_grpc(req.headers());
    let result = forward_request(&ex.table, &conn, req, &mut ex.chosen).await;
    let mut resp = match result {
        Ok(resp) => resp,
        Err(e) => local_reply(e, &mut ex, (&method, &uri), &conn, (grpc, started)),
    };
    if http1 && shared.draining.load(Ordering::Relaxed) {
        ask_to_reconnect(&mut resp);
    }
    Ok(ex.finish(resp))
}

/// The proxy's own answer to a request it could not forward, and its log
/// line. Out of line and cold: see [`forward_request`].
#[cold]
#[inline(never)]
fn local_reply(
    e: ProxyError,
    ex: &mut RequestRecord,
    (method, uri): (&http::Method, &http::Uri),
    conn: &ConnInfo,
    (grpc, started): (bool, tokio::time::Instant),
) -> Response<ProxyBody> {
    tracing::warn!(
        status = e.status().as_u16(),
        reason = e.label(),
        %method,
        path = uri.path(),
        client = %conn.peer,
        elapsed_us = started.elapsed().as_micros() as u64,
        "local reply"
    );
    ex.local_reply(&e);
    e.reply(grpc)
}

/// A gRPC call (`content-type: application/grpc`, `+proto` and the like):
/// its local replies are gRPC statuses.
fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.get(..16))
        .is_some_and(|v| v.eq_ignore_ascii_case("application/grpc"))
}

/// While draining, an HTTP/1.1 client is told to close after this answer:
/// it leaves between requests, where nothing can be lost, and reconnects to
/// an endpoint that is not going away. (HTTP/2 gets GOAWAY when the
/// listeners close; an upgrade keeps its own `Connection` header.)
fn ask_to_reconnect<B>(resp: &mut Response<B>) {
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

/// What routing decided for a request.
struct Decision<'t> {
    rule: &'t Rule,
    key: Option<u64>,
    slot: usize,
}

/// Every request runs this function's code, all of it inlined into one
/// large poll function: the features most requests do not use (redirects,
/// rewrites, CORS, mirrors, upgrades, local replies) are out-of-line
/// functions, so that the code a plain proxied request runs shares fewer
/// instruction-cache lines with code it skips (`CACHE=1 bash
/// benches/callgrind.sh`).
async fn forward_request(
    table: &RouteTable,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    chosen: &mut Chosen,
) -> Result<Response<ProxyBody>, ProxyError> {
    framing::check(&req)?;
    let upgrade = forward::requested_upgrade(req.headers());
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let client_host = clean_head(&mut parts, upgrade.clone())?;
    let raw_host = client_host.as_str();
    let matched = match_head(table, conn.listener, conn.peer.ip(), &parts, raw_host)?;
    chosen.rule = Some(matched.entry.rule);
    if let Some(cors) = &matched.rule.cors {
        if let Some(headers) = cors.preflight(&parts.method, &parts.headers) {
            return Ok(rewrite::preflight(headers));
        }
    }
    if let Some(r) = &matched.rule.redirect {
        return rewrite::redirect(r, table, conn, &parts, raw_host, matched.entry);
    }
    let entry = matched.entry;
    let decision = decide(table, matched, &mut parts, chosen)?;
    let rule = decision.rule;
    if let Some(fault) = rule.faults.for_slot(decision.slot) {
        inject(fault, &parts.headers).await?;
    }

    let forwarded_host = client_host.header_value();
    forward::add_forwarded(
        &mut parts.headers,
        &conn.client_ip,
        conn.proto,
        forwarded_host,
    );
    let mut upstream_host = raw_host;
    if let Some(r) = &rule.rewrite {
        if let Some(h) = rewrite::rewrite(r, &mut parts, entry)? {
            upstream_host = h;
        }
    }
    if !rule.request_headers.is_empty() {
        rule.request_headers.apply(&mut parts.headers);
    }
    let origin = rule
        .cors
        .as_ref()
        .and_then(|_| parts.headers.get(header::ORIGIN).cloned());
    let body = prepare_body(table, conn, rule, body).await?;
    if !rule.mirrors.is_empty() {
        mirror::launch(table, rule, &parts, upstream_host, &body);
    }
    let fault = body.fault();
    let answer = retry::send(retry::Outbound {
        table,
        rule,
        key: decision.key,
        first_slot: decision.slot,
        parts,
        raw_host: upstream_host,
        body,
        upgrade: upgrade.is_some(),
        chosen,
    })
    .await
    .map_err(|e| fault.and_then(|f| f.get()).map_or(e, body_error))?;
    let (mut resp, mut lease) = (answer.response, answer.lease);

    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    let kept_upgrade = match (switching, client_upgrade) {
        (false, _) => None,
        (true, None) => return Err(ProxyError::UnexpectedUpgrade),
        (true, Some(client)) => {
            // The connection is the tunnel's now, never the pool's again.
            lease = crate::body::Lease::default();
            upgrade::splice(client, hyper::upgrade::on(&mut resp));
            resp.headers().get(header::UPGRADE).cloned()
        }
    };
    let (mut rparts, rbody) = resp.into_parts();
    forward::strip_hop_by_hop(&mut rparts.headers, kept_upgrade);
    if !rule.response_headers.is_empty() {
        rule.response_headers.apply(&mut rparts.headers);
    }
    if let (Some(cors), Some(origin)) = (&rule.cors, &origin) {
        cors.decorate(origin, &mut rparts.headers);
    }
    // The backend that answered (a fallback may have changed it).
    let answered = chosen.backend.map_or(decision.slot, |b| b as usize);
    if let Some(b) = rule.backend_headers.get(answered) {
        b.response.apply(&mut rparts.headers);
    }
    Ok(Response::from_parts(
        rparts,
        ProxyBody::upstream(rbody, answer.body_idle_timeout, lease),
    ))
}

/// Applies a configured fault: waits out its delay, then answers its abort
/// status (a local reply with reason `fault_injected`) or lets the request go.
async fn inject(
    fault: &crate::route::fault::Fault,
    headers: &http::HeaderMap,
) -> Result<(), ProxyError> {
    let Some(injected) = crate::clock::with_rng(|rng| fault.roll(headers, rng)) else {
        return Ok(());
    };
    if let Some(d) = injected.delay {
        tokio::time::sleep(d).await;
    }
    match injected.abort {
        Some(status) => Err(ProxyError::FaultInjected(status)),
        None => Ok(()),
    }
}

/// Settles the host (see [`ClientHost::resolve`]) and strips hop-by-hop
/// headers, before routing: the request is routed by what is forwarded, and
/// the request id is adopted or generated after a `Connection` header could
/// have named it for removal.
pub fn clean_head(
    parts: &mut Parts,
    upgrade: Option<HeaderValue>,
) -> Result<ClientHost, ProxyError> {
    let host = ClientHost::resolve(parts)?;
    forward::strip_hop_by_hop(&mut parts.headers, upgrade);
    Ok(host)
}

/// Reads a small body so it can be replayed, or sets up streaming; enforces
/// the listener's body limit (413) and body idle timeout (408).
async fn prepare_body(
    table: &RouteTable,
    conn: &ConnInfo,
    rule: &Rule,
    body: Incoming,
) -> Result<PreparedBody, ProxyError> {
    let (max_body, idle) = table
        .listeners
        .get(conn.listener)
        .map_or((u64::MAX, Duration::from_secs(30)), |l| {
            (l.max_request_body, l.request_body_timeout)
        });
    // A mirror copies only a kept body: keep bodies up to its limit too.
    let mirrored = rule.mirrors.iter().map(|m| m.max_body).max();
    let replay = rule.policy.retry.replay_buffer.0.max(mirrored.unwrap_or(0));
    PreparedBody::prepare(body, replay, max_body, idle)
        .await
        .map_err(body_error)
}

fn body_error(e: BodyError) -> ProxyError {
    match e {
        BodyError::TooLarge => ProxyError::BodyTooLarge,
        BodyError::Idle => ProxyError::BodyTimeout,
        BodyError::Client(_) => ProxyError::ClientBodyFailed,
    }
}

/// A request's route match: the rule, the match entry that chose it, and
/// the request's sticky-key hash.
pub struct Matched<'t> {
    /// The matched rule.
    pub rule: &'t Rule,
    /// The `matches` alternative that held.
    pub entry: &'t Entry,
    /// Sticky-key hash, if the rule is sticky and the request has the key.
    pub key: Option<u64>,
}

/// Matches a cleaned head (see [`clean_head`]) against listener
/// `listener`'s routes, with the host normalised (port, trailing dot, case).
/// The one match code for the pipeline and for `/v1/explain`, so that the
/// two cannot disagree.
pub fn match_head<'t>(
    table: &'t RouteTable,
    listener: usize,
    client: IpAddr,
    parts: &Parts,
    raw_host: &str,
) -> Result<Matched<'t>, ProxyError> {
    let host = host::normalize(raw_host);
    let view = RequestView {
        method: &parts.method,
        host: &host,
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
    };
    let (rule, entry) = table.find(listener, &view).ok_or(ProxyError::NoRoute)?;
    let key = rule
        .sticky
        .as_ref()
        .and_then(|s| s.hash(&parts.headers, client));
    Ok(Matched { rule, entry, key })
}

/// Group pick for a matched request: a pure decision, taken before the
/// first await (the thread-local RNG never crosses one).
fn decide<'t>(
    table: &'t RouteTable,
    matched: Matched<'t>,
    parts: &mut Parts,
    chosen: &mut Chosen,
) -> Result<Decision<'t>, ProxyError> {
    let Matched { rule, key, .. } = matched;
    crate::clock::with_rng(|rng| {
        let point = key.unwrap_or_else(|| rng.random());
        let slot = rule.first_slot(&table.groups, point, crate::clock::now_ms())?;
        rule.observed[slot].record(crate::clock::now_secs());
        chosen.backend = u32::try_from(slot).ok();
        chosen.request_id = Some(forward::ensure_request_id(&mut parts.headers, rng));
        Ok(Decision { rule, key, slot })
    })
}

#[cfg(test)]
mod tests;
