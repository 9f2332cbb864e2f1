//! The request pipeline, top to bottom: framing check -> route match -> group
//! pick -> endpoint pick -> header hygiene -> upstream pool -> response.
//! Read [`handle`] first.

pub mod body;
pub mod error;
pub mod forward;
pub mod framing;
pub mod upgrade;

use std::borrow::Cow;
use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::request::Parts;
use http::uri::{PathAndQuery, Scheme};
use http::{header, HeaderValue, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::app::Shared;
use crate::config::model::UpstreamProtocol;
use crate::metrics::{Chosen, Exchange, Observed};
use crate::route::matcher::RequestView;
use crate::route::observed;
use crate::route::{RouteTable, Rule};
use crate::upstream::pool::SendError;
use crate::upstream::{balance, Endpoint, Group};
pub use body::ProxyBody;
pub use error::ProxyError;

/// What the pipeline knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// Index of the listener in the routing table.
    pub listener: usize,
    /// `http` or `https`, for `X-Forwarded-Proto`.
    pub proto: &'static str,
}

thread_local! {
    /// Per-thread RNG: fast, no lock, seeded once from the OS.
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_os_rng());
}

fn with_rng<T>(f: impl FnOnce(&mut SmallRng) -> T) -> T {
    RNG.with(|r| f(&mut r.borrow_mut()))
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
    let result = forward_request(&shared, &ex.table, conn, req, &mut ex.chosen).await;
    let resp = result.unwrap_or_else(|e| {
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
    Ok(ex.finish(resp))
}

/// The chosen destination of one request.
struct Target<'t> {
    rule: &'t Rule,
    group: &'t Group,
    endpoint: &'t Endpoint,
}

async fn forward_request(
    shared: &Shared,
    table: &RouteTable,
    conn: ConnInfo,
    mut req: Request<Incoming>,
    chosen: &mut Chosen,
) -> Result<Response<ProxyBody>, ProxyError> {
    framing::check(&req)?;
    let upgrade = forward::requested_upgrade(req.headers());
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let raw_host = raw_host(&parts).unwrap_or_default().to_owned();
    let target = choose_target(table, conn, &mut parts, &raw_host, chosen)?;

    forward::strip_hop_by_hop(&mut parts.headers, upgrade.clone());
    forward::add_forwarded(&mut parts.headers, conn.peer.ip(), conn.proto, &raw_host);
    if !target.rule.request_headers.is_empty() {
        target.rule.request_headers.apply(&mut parts.headers);
    }
    aim_at(
        &mut parts,
        target.endpoint,
        target.group.protocol,
        &raw_host,
    )?;

    let in_flight = target.endpoint.state.start();
    let sent = shared
        .pool
        .send(target.group.protocol, Request::from_parts(parts, body))
        .await;
    drop(in_flight);
    let mut resp = sent.map_err(|e| upstream_error(e, target.endpoint))?;

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
    if !target.rule.response_headers.is_empty() {
        target.rule.response_headers.apply(&mut rparts.headers);
    }
    Ok(Response::from_parts(rparts, ProxyBody::Upstream(rbody)))
}

/// Route match, group pick and endpoint pick: the pure decisions, taken
/// before the first await (the thread-local RNG never crosses one).
fn choose_target<'t>(
    table: &'t RouteTable,
    conn: ConnInfo,
    parts: &mut Parts,
    raw_host: &str,
    chosen: &mut Chosen,
) -> Result<Target<'t>, ProxyError> {
    let host = normalize_host(raw_host);
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
    with_rng(|rng| {
        let point = key.unwrap_or_else(|| rng.random());
        let slot = rule.split.pick_slot(point).ok_or(ProxyError::NoBackend)?;
        rule.observed[slot].record(observed::now_secs());
        chosen.backend = u32::try_from(slot).ok();
        let group = &table.groups[rule.split.group_at(slot) as usize];
        let endpoint = balance::pick(group, key, rng).ok_or(ProxyError::NoEndpoints)?;
        chosen.endpoint = group
            .endpoints
            .iter()
            .position(|e| std::ptr::eq(e, endpoint))
            .and_then(|i| u32::try_from(i).ok());
        chosen.request_id = Some(forward::ensure_request_id(&mut parts.headers, rng));
        Ok(Target {
            rule,
            group,
            endpoint,
        })
    })
}

/// The authority the client asked for: the absolute URI's (HTTP/2, or
/// absolute-form HTTP/1.1), else the Host header.
fn raw_host(parts: &Parts) -> Option<&str> {
    match parts.uri.authority() {
        Some(a) => Some(a.as_str()),
        None => parts.headers.get(header::HOST)?.to_str().ok(),
    }
}

/// Lower case, without port or trailing dot, for hostname matching.
/// Borrows unless the host has upper-case letters.
fn normalize_host(raw: &str) -> Cow<'_, str> {
    let without_port = if let Some(rest) = raw.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, _)| h)
    };
    let host = without_port.strip_suffix('.').unwrap_or(without_port);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// Points the request at the endpoint in the form the upstream protocol
/// wants. HTTP/1.1 upstreams get the client's Host (preserved by default).
/// h2 upstreams get `:authority` = the endpoint and no Host header (two
/// differing authorities are invalid in HTTP/2); the client's host is still in
/// `X-Forwarded-Host`.
fn aim_at(
    parts: &mut Parts,
    endpoint: &Endpoint,
    protocol: UpstreamProtocol,
    raw_host: &str,
) -> Result<(), ProxyError> {
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(Scheme::HTTP);
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

fn upstream_error(e: SendError, endpoint: &Endpoint) -> ProxyError {
    match e {
        SendError::Connect(e) => {
            tracing::debug!(endpoint = &*endpoint.state.address, error = %e, "connect failed");
            ProxyError::ConnectFailed
        }
        SendError::Exchange(e) => {
            tracing::debug!(endpoint = &*endpoint.state.address, error = %e, "upstream failed");
            ProxyError::UpstreamFailed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_host;

    #[test]
    fn hosts_are_normalized() {
        assert_eq!(normalize_host("Example.COM:8080"), "example.com");
        assert_eq!(normalize_host("example.com."), "example.com");
        assert_eq!(normalize_host("[::1]:80"), "::1");
        assert_eq!(normalize_host("a.b"), "a.b");
    }
}
