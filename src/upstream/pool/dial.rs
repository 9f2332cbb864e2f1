//! Opening one upstream connection: TCP (and TLS) through the counting
//! connector, then the HTTP/1.1 or h2 handshake, with hyper's connection
//! task spawned to drive it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_service::Service;

use super::SendError;
use crate::body::lease::Http1Sender;
use crate::body::UpstreamBody;
use crate::metrics::GroupSeries;
use crate::upstream::counted::{Counted, CountingConnector};

/// How to reach one endpoint.
#[derive(Clone)]
pub struct Dialer {
    connector: CountingConnector,
    /// `http(s)://host:port/`: what the connector dials (and, without a
    /// configured `server_name`, the TLS name).
    target: Uri,
    /// Speak h2 (`protocol: h2`), else HTTP/1.1.
    pub h2: bool,
}

impl Dialer {
    /// Dials `target` with `connector`.
    pub fn new(connector: CountingConnector, target: Uri, h2: bool) -> Dialer {
        Dialer {
            connector,
            target,
            h2,
        }
    }

    async fn io(&self, series: &GroupSeries) -> Result<Counted, SendError> {
        let io = self.connector.clone().call(self.target.clone()).await;
        let io = io.map_err(SendError::Connect)?;
        series.upstream_connect();
        Ok(io)
    }

    /// A new HTTP/1.1 connection (upgrades allowed, for `101` responses).
    pub async fn http1(&self, series: &GroupSeries) -> Result<Http1Sender, SendError> {
        let io = self.io(series).await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| SendError::Connect(e.into()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(sender)
    }

    /// A new h2 connection, and the peer's current
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` (updated as its SETTINGS arrive).
    /// PINGs keep a quiet one honest: a peer that vanished without a FIN
    /// fails its streams instead of holding them.
    pub async fn h2(
        &self,
        series: &GroupSeries,
    ) -> Result<(http2::SendRequest<UpstreamBody>, Arc<AtomicUsize>), SendError> {
        let io = self.io(series).await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .handshake(io)
            .await
            .map_err(|e| SendError::Connect(e.into()))?;
        let max_streams = Arc::new(AtomicUsize::new(conn.current_max_send_streams()));
        let seen = Arc::clone(&max_streams);
        let mut conn = conn;
        tokio::spawn(async move {
            // hyper reports the peer's limit only on the connection, which
            // this task owns: copy it out after every poll.
            let driven = std::future::poll_fn(|cx| {
                let polled = Pin::new(&mut conn).poll(cx);
                seen.store(conn.current_max_send_streams(), Ordering::Relaxed);
                polled
            });
            if let Err(e) = driven.await {
                tracing::debug!(error = %e, "upstream h2 connection ended");
            }
        });
        Ok((sender, max_streams))
    }
}
