//! An upstream connector whose connections hold the
//! `cutover_upstream_connections_active` gauge up while they are open, and
//! that speaks TLS to groups that have it. The pool (`upstream::pool`) and
//! the health checks' hyper-util client dial through it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::metrics::{ConnectionGuard, Metrics};
use crate::tls::client::UpstreamTls;

/// Error type of a connect attempt.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// [`HttpConnector`] plus a gauge guard per connection, plus TLS if set.
#[derive(Debug, Clone)]
pub struct CountingConnector {
    inner: HttpConnector,
    metrics: Option<Arc<Metrics>>,
    tls: Option<Arc<UpstreamTls>>,
    /// Bounds the TLS handshake like the connect timeout bounds TCP: an
    /// endpoint that accepts but never answers must not hold a try forever.
    handshake_timeout: Duration,
}

impl CountingConnector {
    /// Wraps `inner`, counting into `metrics` (health checks pass `None`:
    /// their connections are not traffic).
    pub fn new(inner: HttpConnector, metrics: Option<Arc<Metrics>>) -> Self {
        CountingConnector {
            inner,
            metrics,
            tls: None,
            handshake_timeout: Duration::from_secs(10),
        }
    }

    /// Speaks TLS with `tls` on every connection (plain TCP when `None`).
    pub fn with_tls(mut self, tls: Option<Arc<UpstreamTls>>) -> Self {
        self.tls = tls;
        self
    }

    /// Sets the TLS handshake deadline (default 10 s).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }
}

impl tower_service::Service<Uri> for CountingConnector {
    type Response = Counted;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Counted, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let host = uri
            .host()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string());
        let connecting = self.inner.call(uri);
        let metrics = self.metrics.clone();
        let tls = self.tls.clone();
        let timeout = self.handshake_timeout;
        Box::pin(async move {
            let tcp = connecting.await?;
            let io = match tls {
                None => Io::Plain(tcp),
                Some(tls) => {
                    let name = match &tls.server_name {
                        Some(n) => n.clone(),
                        None => ServerName::try_from(host.unwrap_or_default())?,
                    };
                    let tcp_peer = tcp.inner().peer_addr().ok();
                    let connector = TlsConnector::from(Arc::clone(&tls.config));
                    let handshake = connector.connect(name, tcp.into_inner());
                    let result = match tokio::time::timeout(timeout, handshake).await {
                        Ok(r) => r,
                        Err(_) => Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "TLS handshake timed out",
                        )),
                    };
                    // The request only logs "connect_failed"; the operator
                    // needs the TLS reason (unknown CA, name mismatch, ...).
                    let stream = result.inspect_err(|e| {
                        let endpoint = tcp_peer.map(|a| a.to_string()).unwrap_or_default();
                        tracing::warn!(endpoint, error = %e, "upstream TLS handshake failed");
                    })?;
                    Io::Tls(Box::new(TokioIo::new(stream)))
                }
            };
            Ok(Counted {
                io,
                _open: metrics.map(|m| m.upstream_connection()),
            })
        })
    }
}

/// A connection that lowers the gauge when dropped.
pub struct Counted {
    io: Io,
    _open: Option<ConnectionGuard>,
}

enum Io {
    Plain(TokioIo<TcpStream>),
    /// Boxed: a TLS session is ~1 KiB, a plain stream 40 bytes.
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Connection for Counted {
    /// For the health checks' hyper-util client. Without the `HttpInfo`
    /// extra that `TcpStream` would add: hyper-util inserts the extra into
    /// every response's extensions (three allocations per request), and
    /// nothing reads it.
    fn connected(&self) -> Connected {
        let connected = Connected::new();
        match &self.io {
            Io::Plain(_) => connected,
            Io::Tls(io) => {
                // Tells hyper-util to speak h2 on this connection.
                if io.inner().get_ref().1.alpn_protocol() == Some(b"h2") {
                    connected.negotiated_h2()
                } else {
                    connected
                }
            }
        }
    }
}

/// Calls `$method` on whichever stream the connection holds.
macro_rules! delegate {
    ($self:ident, $io:ident => $call:expr) => {
        match &mut $self.io {
            Io::Plain($io) => $call,
            Io::Tls($io) => $call,
        }
    };
}

impl Read for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, io => Pin::new(io).poll_read(cx, buf))
    }
}

impl Write for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, io => Pin::new(io).poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, io => Pin::new(io).poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, io => Pin::new(io).poll_shutdown(cx))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(io) => io.is_write_vectored(),
            Io::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, io => Pin::new(io).poll_write_vectored(cx, bufs))
    }
}
