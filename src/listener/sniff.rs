//! Which HTTP version a connection speaks: on cleartext the first bytes are
//! peeked (and left in the socket for hyper) and compared with the HTTP/2
//! preface; on TLS the client said it through ALPN.

use std::io;
use std::time::Duration;

use tokio::io::ReadBuf;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::h2guard::PREFACE;

/// The HTTP version of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 (and 1.0).
    Http1,
    /// HTTP/2: h2c with prior knowledge, or `h2` through ALPN.
    Http2,
}

/// How often the first bytes are peeked again while they are only a part of
/// the preface (rare: a client whose preface arrived in pieces).
const PREFACE_POLL: Duration = Duration::from_millis(5);

impl Protocol {
    /// The protocol TLS negotiated. RFC 9113 section 3.2 requires ALPN for
    /// HTTP/2 over TLS, so without ALPN it is HTTP/1.1.
    pub fn from_alpn(alpn: Option<&[u8]>) -> Protocol {
        match alpn {
            Some(b"h2") => Protocol::Http2,
            _ => Protocol::Http1,
        }
    }

    /// What cleartext first bytes say; `None` while they are a strict
    /// prefix of the preface (or empty).
    pub fn from_first_bytes(first: &[u8]) -> Option<Protocol> {
        let n = first.len().min(PREFACE.len());
        if first[..n] != PREFACE[..n] {
            Some(Protocol::Http1)
        } else if n == PREFACE.len() {
            Some(Protocol::Http2)
        } else {
            None
        }
    }
}

/// Peeks at a cleartext connection until its first bytes tell the
/// protocol; `None` when the client closed (or failed) first.
pub async fn sniff(socket: &TcpStream) -> Option<Protocol> {
    let mut first = [0u8; PREFACE.len()];
    loop {
        // `poll_peek`: see `next_bytes`.
        let peek =
            |cx: &mut std::task::Context<'_>| socket.poll_peek(cx, &mut ReadBuf::new(&mut first));
        let n = std::future::poll_fn(peek).await.ok()?;
        if n == 0 {
            return None;
        }
        if let Some(protocol) = Protocol::from_first_bytes(&first[..n]) {
            return Some(protocol);
        }
        tokio::time::sleep(PREFACE_POLL).await;
    }
}

/// Waits for a parked connection's next bytes, leaving them in the socket:
/// `Ok(false)` when the client closed instead.
pub async fn next_bytes(socket: &TcpStream) -> io::Result<bool> {
    let mut one = [0u8; 1];
    // A peek (not `readable`): a stale readiness from hyper's last read is
    // cleared by the peek's `WouldBlock`, so this waits for real bytes.
    // `poll_peek`, not `peek`: `peek`'s future (about 250 bytes) would sit
    // in every connection's task (as large as its largest state) for as long
    // as it is open.
    let n = std::future::poll_fn(|cx| socket.poll_peek(cx, &mut ReadBuf::new(&mut one))).await?;
    Ok(n > 0)
}

/// A client connection's stream as the listener serves it.
pub trait Socket: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {
    /// The socket an idle connection can wait on without hyper, if it can
    /// be parked: not TLS, whose library may hold bytes already read from
    /// the socket (and holds its own buffers while idle anyway).
    fn parkable(&self) -> Option<&TcpStream>;
}

impl Socket for TcpStream {
    fn parkable(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl Socket for TlsStream<TcpStream> {
    fn parkable(&self) -> Option<&TcpStream> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_tell_the_protocol_as_soon_as_they_can() {
        assert_eq!(
            Protocol::from_first_bytes(b"GET / HTTP/1.1\r\n"),
            Some(Protocol::Http1)
        );
        assert_eq!(Protocol::from_first_bytes(b"PO"), Some(Protocol::Http1));
        assert_eq!(
            Protocol::from_first_bytes(b"PRI * HTTP/1.1"),
            Some(Protocol::Http1)
        );
        assert_eq!(Protocol::from_first_bytes(b"PRI * HTTP/2.0\r\n"), None);
        assert_eq!(Protocol::from_first_bytes(b""), None);
        assert_eq!(Protocol::from_first_bytes(PREFACE), Some(Protocol::Http2));
        assert_eq!(Protocol::from_alpn(Some(b"h2")), Protocol::Http2);
        assert_eq!(Protocol::from_alpn(Some(b"http/1.1")), Protocol::Http1);
        assert_eq!(Protocol::from_alpn(None), Protocol::Http1);
    }
}
