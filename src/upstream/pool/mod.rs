//! cutover's own upstream connections: per endpoint, a pool of keep-alive
//! HTTP/1.1 connections or shared h2 connections ([`EndpointPool`]), over
//! cleartext or TLS; and how a failed exchange is classified for retries.
//!
//! A pool belongs to one endpoint with one group's settings (protocol,
//! connect timeout, TLS, idle limits) and is shared by every table that has
//! them; it closes its connections when the last such table is dropped.

mod dial;
mod endpoint;

pub use dial::Dialer;
pub use endpoint::{Checkout, EndpointPool, H2Conn, IdleLimits};

use std::error::Error as _;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderMap, Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;

use super::counted::BoxError;
use crate::body::{Lease, UpstreamBody};
use crate::metrics::GroupSeries;

/// Why sending a request upstream failed, as far as the pool can tell.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made (refused, unreachable, timeout, TLS):
    /// the upstream never saw the request.
    Connect(BoxError),
    /// HTTP/2 REFUSED_STREAM: the upstream did not process the request.
    Refused(hyper::Error),
    /// The connection closed or was reset before any response byte came
    /// back. On a `reused` connection that is the keep-alive race (the
    /// upstream closed it as the request went out); on a new one the
    /// upstream may have died while acting on the request.
    Closed {
        /// The connection had carried requests before this one.
        reused: bool,
        /// What hyper saw.
        error: hyper::Error,
    },
    /// The connection was lost before the request was written: the upstream
    /// cannot have acted on it, whatever the method.
    Unsent(hyper::Error),
    /// The connection failed after the request was sent (protocol error,
    /// anything not known to be harmless to repeat).
    Broken(hyper::Error),
    /// The response head declared a transfer coding other than exactly
    /// `chunked`; its body cannot be framed or passed on faithfully. The
    /// connection is closed, never reused.
    Framing,
    /// The per-try timeout fired before the response head.
    TimedOut,
    /// The client's body failed (over the size limit, or the client went
    /// away): not the upstream's fault, so never counted against it.
    ClientBody(hyper::Error),
}

/// A response head, and the connection its body arrives on.
pub struct Sent {
    /// The upstream's response.
    pub response: Response<Incoming>,
    /// Hand it to the response body: the connection goes back to its pool
    /// when the body ends.
    pub lease: Lease,
}

/// Sends `req` (origin-form URI and `Host` for HTTP/1.1, absolute for h2)
/// on a pooled or new connection of `pool`, counting the request and any
/// connect in `series`.
///
/// A plain `fn` returning an `async` block: an `async fn` would keep the
/// request twice in its future (the argument and the local it is moved
/// into), and every move of the request's future copies both.
#[allow(clippy::manual_async_fn)] // see above: one copy of the request
pub fn send<'a>(
    pool: &'a Arc<EndpointPool>,
    req: Request<UpstreamBody>,
    series: &'a GroupSeries,
) -> impl Future<Output = Result<Sent, SendError>> + 'a {
    async move {
        series.upstream_request();
        match pool.checkout(series).await? {
            Checkout::Http1(mut conn, reused) => {
                let response = conn
                    .send_request(req)
                    .await
                    .map_err(|e| classify(e, reused))?;
                // Dropping `conn` here closes it: a badly framed response
                // leaves it unfit for another request.
                if !framing_ok(response.headers()) {
                    return Err(SendError::Framing);
                }
                let home: Arc<EndpointPool> = Arc::clone(pool);
                Ok(Sent {
                    response,
                    lease: Lease::http1(conn, home),
                })
            }
            Checkout::H2(mut sender, conn, reused) => {
                // The stream slot is freed when the lease goes, also on error.
                let lease = Lease::stream(conn);
                let response = sender
                    .send_request(req)
                    .await
                    .map_err(|e| classify(e, reused))?;
                Ok(Sent { response, lease })
            }
        }
    }
}

/// The TCP part of every upstream connection: `TCP_NODELAY` (off by default
/// in hyper's connector), keep-alive probes, the connect timeout. It
/// accepts `https://` URIs: whether to speak TLS is the
/// [`CountingConnector`](super::counted::CountingConnector)'s setting.
pub fn tcp_connector(connect_timeout: Option<Duration>) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(connect_timeout);
    connector.set_keepalive(Some(Duration::from_secs(30)));
    connector.enforce_http(false);
    connector
}

fn classify(e: hyper::Error, reused: bool) -> SendError {
    if caused_by_client_body(&e) {
        SendError::ClientBody(e)
    } else if refused_stream(&e) {
        SendError::Refused(e)
    } else {
        match lost_before_response(&e) {
            Some(Lost::Unsent) => SendError::Unsent(e),
            Some(Lost::Closed) => SendError::Closed { reused, error: e },
            None => SendError::Broken(e),
        }
    }
}

/// Whether a response's framing is one cutover can pass on: no
/// `Transfer-Encoding`, or exactly `chunked`. Anything else (`gzip, chunked`,
/// `chunked, gzip`, two headers) is a 502, as such requests get a 400.
pub fn framing_ok(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::TRANSFER_ENCODING).iter();
    match (values.next(), values.next()) {
        (None, _) => true,
        (Some(v), None) => v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked"),
        (Some(_), Some(_)) => false,
    }
}

/// How a connection was lost before any response came back.
enum Lost {
    /// Before the request was written (hyper handed it back).
    Unsent,
    /// After (or while) it was written, before a response byte.
    Closed,
}

/// Whether the exchange failed because the connection closed or was reset
/// before a response head, and whether the request was written. A protocol
/// error, a timeout or anything else is `None`.
fn lost_before_response(e: &hyper::Error) -> Option<Lost> {
    if e.is_canceled() {
        return Some(Lost::Unsent);
    }
    if e.is_incomplete_message() || e.is_closed() {
        return Some(Lost::Closed);
    }
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            if h.is_canceled() {
                return Some(Lost::Unsent);
            }
            if h.is_incomplete_message() || h.is_closed() {
                return Some(Lost::Closed);
            }
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
            return matches!(io.kind(), ConnectionReset | BrokenPipe | ConnectionAborted)
                .then_some(Lost::Closed);
        }
        source = s.source();
    }
    None
}

fn caused_by_client_body(e: &hyper::Error) -> bool {
    let mut source = e.source();
    while let Some(s) = source {
        if s.is::<crate::body::BodyError>() {
            return true;
        }
        source = s.source();
    }
    false
}

fn refused_stream(e: &hyper::Error) -> bool {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::framing_ok;
    use http::{header::TRANSFER_ENCODING, HeaderMap, HeaderValue};

    fn te(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(TRANSFER_ENCODING, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_exactly_chunked_framing_passes() {
        for ok in [&[][..], &["chunked"], &["Chunked"], &[" chunked "]] {
            assert!(framing_ok(&te(ok)), "{ok:?}");
        }
        for bad in [
            &["gzip, chunked"][..],
            &["chunked, gzip"],
            &["gzip"],
            &["chunked", "chunked"],
            &["identity"],
            &[""],
        ] {
            assert!(!framing_ok(&te(bad)), "{bad:?}");
        }
    }
}
