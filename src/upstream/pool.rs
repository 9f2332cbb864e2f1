//! Upstream connection pools (keep-alive HTTP/1.1, multiplexed h2 over
//! cleartext or TLS), one pool per endpoint address inside each client,
//! shared by every table generation.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderMap, Request, Response, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{capture_connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::counted::CountingConnector;
use crate::body::UpstreamBody;
use crate::config::model::UpstreamProtocol;
use crate::metrics::Metrics;
use crate::tls::client::UpstreamTls;

/// A pooled upstream client; open connections are counted in the metrics.
pub type Client = hyper_util::client::legacy::Client<CountingConnector, UpstreamBody>;

/// Idle pooled connections are closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why sending a request upstream failed, as far as the client can tell.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made (refused, unreachable, DNS, timeout):
    /// the upstream never saw the request.
    Connect(hyper_util::client::legacy::Error),
    /// HTTP/2 REFUSED_STREAM: the upstream did not process the request.
    Refused(hyper_util::client::legacy::Error),
    /// The connection closed or was reset before any response byte came
    /// back (an origin that died, or closed a pooled connection as it was
    /// reused). An idempotent request may be sent again.
    Closed(hyper_util::client::legacy::Error),
    /// The connection was lost before the request was written: the upstream
    /// cannot have acted on it, whatever the method.
    Unsent(hyper_util::client::legacy::Error),
    /// The connection failed after the request was sent (protocol error,
    /// anything not known to be harmless to repeat).
    Broken(hyper_util::client::legacy::Error),
    /// The response head declared a transfer coding other than exactly
    /// `chunked`; its body cannot be framed or passed on faithfully. The
    /// connection has been taken out of the pool.
    Framing,
    /// The per-try timeout fired before the response head.
    TimedOut,
    /// The client's body failed (over the size limit, or the client went
    /// away): not the upstream's fault, so never counted against it.
    ClientBody(hyper_util::client::legacy::Error),
}

/// A client with `TCP_NODELAY` (off by default in hyper's connector) and an
/// idle timer (without one hyper-util never evicts idle connections); with
/// `tls`, every connection is TLS (see [`tcp_connector`]).
pub fn new_client(
    protocol: UpstreamProtocol,
    connect_timeout: Option<Duration>,
    tls: Option<Arc<UpstreamTls>>,
    metrics: Arc<Metrics>,
) -> Client {
    let connector = tcp_connector(connect_timeout);
    let mut builder = hyper_util::client::legacy::Client::builder(TokioExecutor::new());
    builder
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(IDLE_TIMEOUT)
        .timer(TokioTimer::new());
    if protocol == UpstreamProtocol::H2 {
        builder.http2_only(true);
    }
    builder.build(
        CountingConnector::new(connector, Some(metrics))
            .with_tls(tls)
            .with_handshake_timeout(connect_timeout.unwrap_or(Duration::from_secs(10))),
    )
}

/// The TCP part of every upstream connection. It accepts `https://` URIs:
/// whether to speak TLS is the [`CountingConnector`]'s setting, not the
/// scheme's.
pub fn tcp_connector(connect_timeout: Option<Duration>) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(connect_timeout);
    connector.set_keepalive(Some(Duration::from_secs(30)));
    connector.enforce_http(false);
    connector
}

/// Sends `req` (absolute URI, version already set for the protocol).
pub async fn send(
    client: &Client,
    mut req: Request<UpstreamBody>,
) -> Result<Response<Incoming>, SendError> {
    // Only HTTP/1.1 has transfer codings; only there may a response have to
    // take its connection out of the pool.
    let captured = (req.version() == Version::HTTP_11).then(|| capture_connection(&mut req));
    let resp = client.request(req).await.map_err(classify)?;
    if !framing_ok(resp.headers()) {
        // hyper may already have read the whole body and put the
        // connection back: it must not carry another request.
        if let Some(conn) = captured.as_ref().map(|c| c.connection_metadata()) {
            if let Some(conn) = conn.as_ref() {
                conn.poison();
            }
        }
        return Err(SendError::Framing);
    }
    Ok(resp)
}

fn classify(e: hyper_util::client::legacy::Error) -> SendError {
    if e.is_connect() {
        SendError::Connect(e)
    } else if caused_by_client_body(&e) {
        SendError::ClientBody(e)
    } else if refused_stream(&e) {
        SendError::Refused(e)
    } else {
        match lost_before_response(&e) {
            Some(Lost::Unsent) => SendError::Unsent(e),
            Some(Lost::Closed) => SendError::Closed(e),
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
fn lost_before_response(e: &hyper_util::client::legacy::Error) -> Option<Lost> {
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

fn caused_by_client_body(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source = e.source();
    while let Some(s) = source {
        if s.is::<crate::body::BodyError>() {
            return true;
        }
        source = s.source();
    }
    false
}

fn refused_stream(e: &hyper_util::client::legacy::Error) -> bool {
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
