//! The request pipeline, top to bottom: framing check -> route match -> group
//! pick -> endpoint pick -> header hygiene -> upstream pool -> response.
//! Read [`handle`] first.

pub mod body;
pub mod error;
pub mod forward;
pub mod framing;
pub mod host;
pub mod request_body;
pub mod upgrade;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::request::Parts;
use http::uri::{PathAndQuery, Scheme};
use http::{header, HeaderValue, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use rand::Rng;

use crate::app::Shared;
use crate::config::model::UpstreamProtocol;
use crate::metrics::{Chosen, Exchange, Observed};
use crate::retry;
use crate::route::matcher::RequestView;
use crate::route::observed;
use crate::route::{RouteTable, Rule};
use crate::upstream::Endpoint;
pub use body::ProxyBody;
pub use error::ProxyError;
use host::ClientHost;
use request_body::{BodyError, PreparedBody};

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
}

impl ConnInfo {
    /// The connection from `peer` on listener `listener`, speaking `proto`.
    pub fn new(peer: SocketAddr, listener: usize, proto: &'static str) -> ConnInfo {
        ConnInfo {
            peer,
            listener,
            proto,
            client_ip: forward::client_ip_value(peer.ip()),
        }
    }
}

/// Serves one request. Reads the routing table once; the request finishes on
/// that snapshot even if a new table is published meanwhile. The exchange
/// records metrics and the access log line when the response body ends.
pub async fn handle(
    shared: Arc<Shared>,
    conn: ConnInfo,
    req: Request<Incoming>,
) -> Result<Response<Observed>, Infallible> {
    let started = Instant::now();
    let mut ex = Exchange::start(shared.routes.load_full(), &req, started);
    let method = req.method().clone();
    let uri = req.uri().clone();
    let http1 = req.version() <= Version::HTTP_11;
    let result = forward_request(&ex.table, &conn, req, &mut ex.chosen).await;
    let mut resp = result.unwrap_or_else(|e| {
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
        e.into_response()
    });
    if http1 && shared.draining.load(Ordering::Relaxed) {
        ask_to_reconnect(&mut resp);
    }
    Ok(ex.finish(resp))
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
    let decision = decide(table, conn, &mut parts, raw_host, chosen)?;
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
    if !rule.request_headers.is_empty() {
        rule.request_headers.apply(&mut parts.headers);
    }
    let body = prepare_body(table, conn, rule, body).await?;
    let fault = body.fault();
    let answer = retry::exchange(retry::Exchange {
        table,
        rule,
        key: decision.key,
        first_slot: decision.slot,
        parts,
        raw_host,
        body,
        upgrade: upgrade.is_some(),
        chosen,
    })
    .await
    .map_err(|e| fault.and_then(|f| f.get()).map_or(e, body_error))?;
    let mut resp = answer.response;

    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    let kept_upgrade = match (switching, client_upgrade) {
        (false, _) => None,
        (true, None) => return Err(ProxyError::UnexpectedUpgrade),
        (true, Some(client)) => {
            upgrade::splice(client, hyper::upgrade::on(&mut resp));
            resp.headers().get(header::UPGRADE).cloned()
        }
    };
    let (mut rparts, rbody) = resp.into_parts();
    forward::strip_hop_by_hop(&mut rparts.headers, kept_upgrade);
    if !rule.response_headers.is_empty() {
        rule.response_headers.apply(&mut rparts.headers);
    }
    let idle = answer.group.policy.body_idle_timeout.map(|d| d.0);
    Ok(Response::from_parts(
        rparts,
        ProxyBody::upstream(rbody, idle),
    ))
}

/// Applies a configured fault: waits out its delay, then answers its abort
/// status (a local reply with reason `fault_injected`) or lets the request go.
async fn inject(
    fault: &crate::route::fault::Fault,
    headers: &http::HeaderMap,
) -> Result<(), ProxyError> {
    let Some(injected) = retry::with_rng(|rng| fault.roll(headers, rng)) else {
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
fn clean_head(parts: &mut Parts, upgrade: Option<HeaderValue>) -> Result<ClientHost, ProxyError> {
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
    let replay = rule.policy.retry.replay_buffer.0;
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

/// Route match and group pick: pure decisions, taken before the first await
/// (the thread-local RNG never crosses one).
fn decide<'t>(
    table: &'t RouteTable,
    conn: &ConnInfo,
    parts: &mut Parts,
    raw_host: &str,
    chosen: &mut Chosen,
) -> Result<Decision<'t>, ProxyError> {
    let host = host::normalize(raw_host);
    let view = RequestView {
        method: &parts.method,
        host: &host,
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
    };
    let (rule, entry) = table
        .find(conn.listener, &view)
        .ok_or(ProxyError::NoRoute)?;
    chosen.rule = Some(entry.rule);
    let key = rule
        .sticky
        .as_ref()
        .and_then(|s| s.hash(&parts.headers, conn.peer.ip()));
    retry::with_rng(|rng| {
        let point = key.unwrap_or_else(|| rng.random());
        let slot = retry::first_slot(rule, table, point)?;
        rule.observed[slot].record(observed::now_secs());
        chosen.backend = u32::try_from(slot).ok();
        chosen.request_id = Some(forward::ensure_request_id(&mut parts.headers, rng));
        Ok(Decision { rule, key, slot })
    })
}

/// Points the request at the endpoint in the form the upstream protocol
/// wants. HTTP/1.1 upstreams get the routed host as Host (the client's
/// Host, or the target's authority that replaced it, see [`ClientHost`]).
/// h2 upstreams get `:authority` = the endpoint and no Host header (two
/// differing authorities are invalid in HTTP/2); the client's host is still in
/// `X-Forwarded-Host`. TLS groups get `https://`, so the pool keys their
/// connections apart from plaintext ones to the same address.
pub fn aim_at(
    parts: &mut Parts,
    endpoint: &Endpoint,
    protocol: UpstreamProtocol,
    tls: bool,
    raw_host: &str,
) -> Result<(), ProxyError> {
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(if tls { Scheme::HTTPS } else { Scheme::HTTP });
    uri.authority = Some(endpoint.authority.clone());
    uri.path_and_query = Some(path);
    parts.uri =
        Uri::from_parts(uri).map_err(|_| ProxyError::BadRequest("invalid request target"))?;
    match protocol {
        UpstreamProtocol::Http1 => {
            parts.version = Version::HTTP_11;
            if !parts.headers.contains_key(header::HOST) && !raw_host.is_empty() {
                let host = HeaderValue::from_str(raw_host)
                    .map_err(|_| ProxyError::BadRequest("invalid host"))?;
                parts.headers.insert(header::HOST, host);
            }
        }
        UpstreamProtocol::H2 => {
            parts.version = Version::HTTP_2;
            parts.headers.remove(header::HOST);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
