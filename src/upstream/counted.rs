//! An upstream connector whose connections hold the
//! `cutover_upstream_connections_active` gauge up while they are open: the
//! pool's clients give no other view of their connections.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::metrics::{ConnectionGuard, Metrics};

/// Error type of a connect attempt.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// [`HttpConnector`] plus a gauge guard per connection.
#[derive(Debug, Clone)]
pub struct CountingConnector {
    inner: HttpConnector,
    metrics: Arc<Metrics>,
}

impl CountingConnector {
    /// Wraps `inner`, counting into `metrics`.
    pub fn new(inner: HttpConnector, metrics: Arc<Metrics>) -> Self {
        CountingConnector { inner, metrics }
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
        let connecting = self.inner.call(uri);
        let metrics = Arc::clone(&self.metrics);
        Box::pin(async move {
            let io = connecting.await?;
            Ok(Counted {
                io,
                _open: metrics.upstream_connection(),
            })
        })
    }
}

/// A connection that lowers the gauge when dropped.
pub struct Counted {
    io: TokioIo<TcpStream>,
    _open: ConnectionGuard,
}

impl Connection for Counted {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

impl Read for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}
