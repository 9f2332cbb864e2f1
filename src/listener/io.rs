//! A client connection's I/O with its deadline and limit. Writes that make
//! no progress fail after `send_idle`: a client that stops reading fills its
//! receive window and then the socket buffer, after which every write waits;
//! without a deadline it holds the connection (and the response it is not
//! reading) forever. Reads pass through [`HeaderScan`] (HTTP/2 header
//! blocks) or [`HeadScan`] (HTTP/1.1 message boundaries and heads with
//! conflicting framing). While an HTTP/1.1 connection is being parked, a
//! shutdown leaves the socket open, and bytes hyper had read but not used
//! are read again first when it resumes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use std::sync::Arc;

use super::h1scan::{Found, HeadScan};
use super::h2guard::HeaderScan;
use super::slots::ConnState;
use super::sniff::Protocol;

/// Fails a write, flush or shutdown with `TimedOut` once writing has made no
/// progress for `timeout`, and a read that takes an HTTP/2 header block over
/// the limit with `InvalidData`.
pub struct ConnIo<S> {
    inner: S,
    guard: Guard,
    /// Read by hyper before the connection was parked, not used by it.
    unread: Bytes,
    state: Arc<ConnState>,
    timeout: Duration,
    /// Created on the first stall only: most connections never stall.
    stalled: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl<S> ConnIo<S> {
    /// Wraps `inner`: `send_idle` for writes, `max_header_bytes` for HTTP/2
    /// header blocks; a conflicting HTTP/1.1 head and message boundaries
    /// are noted on `state`.
    pub fn new(
        inner: S,
        protocol: Protocol,
        send_idle: Duration,
        max_header_bytes: usize,
        state: Arc<ConnState>,
    ) -> Self {
        let guard = if protocol == Protocol::Http2 {
            state.set_between_requests(false);
            Guard::H2(HeaderScan::new(max_header_bytes))
        } else {
            Guard::H1(HeadScan::default())
        };
        ConnIo {
            inner,
            guard,
            unread: Bytes::new(),
            state,
            timeout: send_idle,
            stalled: None,
            armed: false,
        }
    }

    /// The socket.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Back from hyper to be parked (or resumed at once when hyper left
    /// bytes unread): the stall timer goes, the scan state stays.
    pub fn parked(mut self, unread: Bytes) -> Self {
        self.stalled = None;
        self.armed = false;
        // hyper's leftover is a view of its whole read buffer (8 KiB or
        // more), even when empty: keep a copy of the bytes, not the buffer.
        self.unread = if unread.is_empty() {
            Bytes::new()
        } else {
            Bytes::copy_from_slice(&unread)
        };
        self
    }

    /// Whether bytes hyper read before parking wait to be read again.
    pub fn has_unread(&self) -> bool {
        !self.unread.is_empty()
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

/// The scan of what the client sends, by protocol.
enum Guard {
    H1(HeadScan),
    H2(HeaderScan),
}

impl Guard {
    /// Follows bytes just read; an error ends the connection.
    fn check(&mut self, read: &[u8], state: &ConnState) -> io::Result<()> {
        match self {
            Guard::H1(heads) => {
                if heads.feed(read) == Found::Conflict {
                    state.flag_framing_conflict();
                }
                state.set_between_requests(heads.between_requests());
                Ok(())
            }
            Guard::H2(headers) => headers.check(read),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ConnIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.unread.is_empty() {
            // Scanned when first read.
            let n = this.unread.len().min(buf.remaining());
            buf.put_slice(&this.unread[..n]);
            this.unread.advance(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                Poll::Ready(this.guard.check(read, &this.state))
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
        let polled = if this.state.parking() {
            Pin::new(&mut this.inner).poll_flush(cx)
        } else {
            Pin::new(&mut this.inner).poll_shutdown(cx)
        };
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

    /// HTTP/1.1 I/O with a 30 s send idle timeout.
    fn http1_io<S>(stream: S) -> ConnIo<S> {
        let send_idle = Duration::from_secs(30);
        ConnIo::new(stream, Protocol::Http1, send_idle, usize::MAX, test_state())
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_without_progress_fails_after_the_timeout() {
        // A peer that never reads: a 1 KiB pipe fills, then writes wait.
        let (client, _peer) = tokio::io::duplex(1024);
        let mut s = http1_io(client);
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
        let mut s = http1_io(client);
        s.write_all(&vec![0u8; 16 * 1024])
            .await
            .expect("progress every 20 s");
        reader.await.unwrap();
    }

    #[tokio::test]
    async fn a_parking_shutdown_keeps_the_stream_and_unread_bytes_come_first() {
        use tokio::io::AsyncReadExt;
        let (client, mut peer) = tokio::io::duplex(1024);
        let mut s = http1_io(client);
        s.state.set_parking(true);
        s.shutdown().await.expect("a no-op while parking");
        s.state.set_parking(false);
        s.write_all(b"x").await.expect("still open for writing");
        let mut x = [0u8; 1];
        peer.read_exact(&mut x).await.unwrap();
        peer.write_all(b"after").await.unwrap();
        let mut s = s.parked(Bytes::from_static(b"before "));
        let mut got = [0u8; 12];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"before after");
        s.shutdown().await.expect("a real shutdown");
        let mut rest = Vec::new();
        peer.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "EOF after the real shutdown");
    }
}
