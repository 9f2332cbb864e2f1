//! Applies a rule's `request_redirect` (the proxy answers) and
//! `url_rewrite` (the forwarded head changes) to a matched request.

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderValue, Response, Uri};

use crate::body::ProxyBody;
use crate::error::ProxyError;
use crate::route::matcher::PathMatch;
use crate::route::rewrite::{Redirect, RedirectFrom, UrlRewrite};
use crate::route::{Entry, RouteTable};

use super::ConnInfo;

/// The prefix the matched entry stands for, which `ReplacePrefixMatch`
/// replaces (compile allows it only under `PathPrefix` matches).
fn matched_prefix(entry: &Entry) -> &str {
    match &entry.conditions.path {
        PathMatch::Prefix(p) => p,
        _ => "/",
    }
}

/// The redirect answer: status and `Location`, no body.
#[inline(never)] // off the request path's hot code: see proxy::forward_request
pub fn redirect(
    r: &Redirect,
    table: &RouteTable,
    conn: &ConnInfo,
    parts: &Parts,
    raw_host: &str,
    entry: &Entry,
) -> Result<Response<ProxyBody>, ProxyError> {
    let listener_port = match conn.local_port {
        0 => table
            .listeners
            .get(conn.listener)
            .map_or(0, |l| l.address.port()),
        bound => bound,
    };
    let host = super::host::normalize(raw_host);
    let location = r
        .location(&RedirectFrom {
            scheme: conn.proto,
            host: &host,
            listener_port,
            path: parts.uri.path(),
            query: parts.uri.query(),
            matched_prefix: matched_prefix(entry),
        })
        .map_err(|_| ProxyError::BadRequest("the redirect target is not a valid Location"))?;
    let mut resp = Response::new(ProxyBody::local(Bytes::new()));
    *resp.status_mut() = r.status;
    resp.headers_mut().insert(header::LOCATION, location);
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    Ok(resp)
}

/// The proxy's own answer to a CORS preflight: 200, no body, `headers`
/// (none when the origin is not allowed, so the browser refuses).
#[inline(never)] // off the request path's hot code: see proxy::forward_request
pub fn preflight(headers: http::HeaderMap) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::local(bytes::Bytes::new()));
    *resp.headers_mut() = headers;
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp
}

/// Rewrites the head that will be forwarded: `Host` and the path (the
/// query is kept). Returns the host to forward, if it changed.
#[inline(never)] // off the request path's hot code: see proxy::forward_request
pub fn rewrite<'r>(
    r: &'r UrlRewrite,
    parts: &mut Parts,
    entry: &Entry,
) -> Result<Option<&'r str>, ProxyError> {
    if let Some(m) = &r.path {
        let mut target = m.apply(parts.uri.path(), matched_prefix(entry));
        if let Some(q) = parts.uri.query() {
            target.push('?');
            target.push_str(q);
        }
        parts.uri = Uri::try_from(target)
            .map_err(|_| ProxyError::BadRequest("the rewritten path is not a valid target"))?;
    }
    let Some(host) = &r.hostname else {
        return Ok(None);
    };
    parts.headers.insert(header::HOST, host.clone());
    // Compile accepted only ASCII host names: `to_str` cannot fail.
    Ok(host.to_str().ok())
}
