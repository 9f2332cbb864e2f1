//! A client connection's I/O with its deadline and limit. Writes that make
//! no progress fail after `send_idle`: a client that stops reading fills its
//! receive window and then the socket buffer, after which every write waits;
//! without a deadline it holds the connection (and the response it is not
//! reading) forever. Reads pass through [`HeaderScan`] (HTTP/2 header
//! blocks) and [`HeadScan`] (HTTP/1.1 heads with conflicting framing).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use std::sync::Arc;

use super::h1scan::{Found, HeadScan};
use super::h2guard::HeaderScan;
use super::slots::ConnState;

/// Fails a write, flush or shutdown with `TimedOut` once writing has made no
/// progress for `timeout`, and a read that takes an HTTP/2 header block over
/// the limit with `InvalidData`.
pub struct ConnIo<S> {
    inner: S,
    headers: HeaderScan,
    heads: HeadScan,
    state: Arc<ConnState>,
    timeout: Duration,
    /// Created on the first stall only: most connections never stall.
    stalled: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl<S> ConnIo<S> {
    /// Wraps `inner`: `send_idle` for writes, `max_header_bytes` for HTTP/2
    /// header blocks; a conflicting HTTP/1.1 head is flagged on `state`.
    pub fn new(
        inner: S,
        send_idle: Duration,
        max_header_bytes: usize,
        state: Arc<ConnState>,
    ) -> Self {
        ConnIo {
            inner,
            headers: HeaderScan::new(max_header_bytes),
            heads: HeadScan::default(),
            state,
            timeout: send_idle,
            stalled: None,
            armed: false,
        }
    }

    /// After a write returned `Pending`: starts the clock if it is not
    /// running, and fails once it ran out.
    fn poll_stall<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let deadline = Instant::now() + self.timeout;
        let timer = match &mut self.stalled {
            Some(t) => {
                if !self.armed {
                    t.as_mut().reset(deadline);
                }
                t
            }
            None => self
                .stalled
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        self.armed = true;
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client stopped reading (send idle timeout)",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progress<T>(
        &mut self,
        polled: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(r) => {
                self.armed = false;
                Poll::Ready(r)
            }
            Poll::Pending => self.poll_stall(cx),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ConnIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                let checked = this.headers.check(read);
                if this.headers.is_h2() {
                    this.heads.stop();
                } else if this.heads.feed(read) == Found::Conflict {
                    this.state.flag_framing_conflict();
                }
                Poll::Ready(checked)
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ConnIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progress(polled, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progress(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.progress(polled, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.progress(polled, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn test_state() -> Arc<ConnState> {
        let slot = super::super::slots::Slots::new(1).admit();
        Arc::clone(&slot.expect("a free slot").state)
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_without_progress_fails_after_the_timeout() {
        // A peer that never reads: a 1 KiB pipe fills, then writes wait.
        let (client, _peer) = tokio::io::duplex(1024);
        let mut s = ConnIo::new(client, Duration::from_secs(30), usize::MAX, test_state());
        let started = Instant::now();
        let chunk = vec![0u8; 64 * 1024];
        let err = s.write_all(&chunk).await.expect_err("the peer never reads");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_reading_is_not_cut() {
        use tokio::io::AsyncReadExt;
        let (client, mut peer) = tokio::io::duplex(1024);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let mut total = 0;
            while total < 16 * 1024 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                total += peer.read(&mut buf).await.unwrap();
            }
        });
        let mut s = ConnIo::new(client, Duration::from_secs(30), usize::MAX, test_state());
        s.write_all(&vec![0u8; 16 * 1024])
            .await
            .expect("progress every 20 s");
        reader.await.unwrap();
    }
}
