//! Upstream connection pools (keep-alive HTTP/1.1, multiplexed h2 over
//! cleartext or TLS), one pool per endpoint address inside each client,
//! shared by every table generation.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::counted::CountingConnector;
use crate::config::model::UpstreamProtocol;
use crate::metrics::Metrics;
use crate::proxy::request_body::UpstreamBody;
use crate::tls::client::UpstreamTls;

/// A pooled upstream client; open connections are counted in the metrics.
pub type Client = hyper_util::client::legacy::Client<CountingConnector, UpstreamBody>;

/// Idle pooled connections are closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why an upstream exchange failed, as far as the client can tell.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made (refused, unreachable, DNS, timeout):
    /// the upstream never saw the request.
    Connect(hyper_util::client::legacy::Error),
    /// HTTP/2 REFUSED_STREAM: the upstream did not process the request.
    Refused(hyper_util::client::legacy::Error),
    /// The connection failed after the request was sent (reset, close).
    Exchange(hyper_util::client::legacy::Error),
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
    req: Request<UpstreamBody>,
) -> Result<Response<Incoming>, SendError> {
    client.request(req).await.map_err(|e| {
        if e.is_connect() {
            SendError::Connect(e)
        } else if caused_by_client_body(&e) {
            SendError::ClientBody(e)
        } else if refused_stream(&e) {
            SendError::Refused(e)
        } else {
            SendError::Exchange(e)
        }
    })
}

fn caused_by_client_body(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source = e.source();
    while let Some(s) = source {
        if s.is::<crate::proxy::request_body::BodyError>() {
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
