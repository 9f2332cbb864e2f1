//! Upstream connection pools: keep-alive HTTP/1.1 and multiplexed h2c, one
//! pool per endpoint address, shared by every table generation.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::counted::CountingConnector;
use crate::config::model::UpstreamProtocol;
use crate::metrics::Metrics;

/// Connect timeout until per-route timeouts exist (resilience issue).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Idle pooled connections are closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why an upstream exchange failed, as far as the client can tell.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made (refused, unreachable, DNS, timeout).
    Connect(hyper_util::client::legacy::Error),
    /// The connection failed after it was made (reset, protocol error).
    Exchange(hyper_util::client::legacy::Error),
}

/// The pools for both upstream protocols.
#[derive(Debug, Clone)]
pub struct UpstreamPool {
    http1: Client<CountingConnector, Incoming>,
    h2: Client<CountingConnector, Incoming>,
}

impl Default for UpstreamPool {
    fn default() -> Self {
        Self::new(Arc::default())
    }
}

impl UpstreamPool {
    /// Pools with `TCP_NODELAY` (off by default in hyper's connector) and an
    /// idle timer (without one hyper-util never evicts idle connections).
    /// Open connections are counted in `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_keepalive(Some(Duration::from_secs(30)));
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .timer(TokioTimer::new());
        let connector = CountingConnector::new(connector, metrics);
        let http1 = builder.build(connector.clone());
        builder.http2_only(true);
        let h2 = builder.build(connector);
        UpstreamPool { http1, h2 }
    }

    /// Sends `req` (absolute URI, version already set for the protocol).
    pub async fn send(
        &self,
        protocol: UpstreamProtocol,
        req: Request<Incoming>,
    ) -> Result<Response<Incoming>, SendError> {
        let client = match protocol {
            UpstreamProtocol::Http1 => &self.http1,
            UpstreamProtocol::H2 => &self.h2,
        };
        client.request(req).await.map_err(|e| {
            if e.is_connect() {
                SendError::Connect(e)
            } else {
                SendError::Exchange(e)
            }
        })
    }
}
