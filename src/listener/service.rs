//! The service of one connection: marks each request in flight on the
//! connection's slot until its response body ends (so idle deadlines and
//! eviction see what is really idle), and answers a request target over the
//! listener's limit with 414, an oversized head with 431 and a head with
//! both `Content-Length` and `Transfer-Encoding` with 400, before the
//! pipeline sees it.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::slots::{Active, ConnState};
use crate::proxy::record::Observed;
use crate::proxy::{self, ConnInfo};
use crate::serving::Serving;

/// Serves `req` through the pipeline, unless its target or (HTTP/1.1) its
/// head is over the listener's limits. hyper bounds the HTTP/1.1 head only
/// by its read buffer, which can hold more than the limit, and checks no
/// target length below 64 KiB; h2 enforces the header list size itself.
pub async fn serve(
    shared: Arc<Serving>,
    conn: ConnInfo,
    state: Arc<ConnState>,
    limits: HeadLimits,
    req: Request<Incoming>,
) -> Result<Response<ConnBody>, Infallible> {
    let active = state.begin();
    let http1 = req.version() <= Version::HTTP_11;
    let target = target_len(req.uri(), http1);
    let refusal = if target > limits.max_target {
        Some((
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("request target over {} bytes", limits.max_target),
        ))
    } else if http1 && head_len(&req, target) > limits.max_header_bytes {
        Some((
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "request header block over {} bytes",
                limits.max_header_bytes
            ),
        ))
    } else if http1
        && state.framing_conflict()
        && req.headers().contains_key(header::TRANSFER_ENCODING)
    {
        // hyper dropped the Content-Length of this head (see h1scan).
        Some((
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Content-Length together with Transfer-Encoding".to_string(),
        ))
    } else {
        None
    };
    if let Some((status, reason, what)) = refusal {
        tracing::warn!(
            status = status.as_u16(),
            reason,
            method = %req.method(),
            target_bytes = target,
            client = %conn.peer,
            "local reply"
        );
        let body = format!("cutover: {what}\n");
        let mut resp = Response::new(ConnBody::local(Bytes::from(body), active));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if http1 {
            // The body, if any, is not read: the connection cannot be reused.
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        return Ok(resp);
    }
    let resp = match proxy::handle(shared, conn, req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    };
    Ok(resp.map(|body| ConnBody::proxied(body, active)))
}

/// The listener's request head limits, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Longest request target (414 above).
    pub max_target: usize,
    /// Largest HTTP/1.1 head (431 above).
    pub max_header_bytes: usize,
}

/// The HTTP/1.1 head as it was on the wire: request line, header lines and
/// the blank line.
fn head_len<B>(req: &Request<B>, target: usize) -> usize {
    let line = req.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let fields: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    line + fields + 2
}

/// The request target as the client sent it: on HTTP/1.1 the origin-form
/// path and query, or the absolute form with scheme and authority; on
/// HTTP/2 `:path` (scheme and authority are separate pseudo-headers there).
fn target_len(uri: &Uri, http1: bool) -> usize {
    let path = uri.path_and_query().map_or(0, |p| p.as_str().len());
    if !http1 {
        return path;
    }
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => scheme.len() + 3 + authority.as_str().len() + path,
        (None, Some(authority)) => authority.as_str().len() + path,
        _ => path,
    }
}

/// A response body that keeps its request marked in flight until it ends or
/// is dropped.
pub struct ConnBody {
    inner: Inner,
    _active: Active,
}

enum Inner {
    Proxied(Observed),
    Local(Option<Bytes>),
}

impl ConnBody {
    fn proxied(body: Observed, active: Active) -> ConnBody {
        ConnBody {
            inner: Inner::Proxied(body),
            _active: active,
        }
    }

    fn local(body: Bytes, active: Active) -> ConnBody {
        ConnBody {
            inner: Inner::Local(Some(body)),
            _active: active,
        }
    }
}

impl Body for ConnBody {
    type Data = Bytes;
    type Error = <Observed as Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match &mut self.get_mut().inner {
            Inner::Proxied(body) => Pin::new(body).poll_frame(cx),
            Inner::Local(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Proxied(body) => body.is_end_stream(),
            Inner::Local(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Proxied(body) => body.size_hint(),
            Inner::Local(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Inner::Local(None) => SizeHint::with_exact(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{head_len, target_len};

    #[test]
    fn target_length_counts_what_the_client_sent() {
        let cases = [
            ("/", 1),
            ("/a/b?c=d", 8),
            ("http://a.example/x?y", 20),
            ("a.example:443", 13),
        ];
        for (target, len) in cases {
            let uri: http::Uri = target.parse().unwrap();
            assert_eq!(target_len(&uri, true), len, "{target}");
        }
        let h2: http::Uri = "http://a.example/x?y".parse().unwrap();
        assert_eq!(target_len(&h2, false), 4);
    }

    #[test]
    fn head_length_is_the_wire_length() {
        let wire = "GET /a HTTP/1.1\r\nhost: x\r\nx-pad: ppp\r\n\r\n";
        let req = http::Request::get("/a")
            .header("host", "x")
            .header("x-pad", "ppp")
            .body(())
            .unwrap();
        assert_eq!(head_len(&req, 2), wire.len());
    }
}
