//! The TLS handshake of one client connection, bounded by the header-read
//! timeout so that a client that never finishes it does not hold a
//! connection slot for long.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::refuse::{discard_available, write_all};
use crate::metrics::Metrics;

/// Completes the handshake with `config` (the table's certificates when the
/// connection was accepted), or logs one line with the peer and the reason,
/// counts it, and returns `None`.
pub async fn handshake(
    stream: TcpStream,
    config: Arc<ServerConfig>,
    timeout: Duration,
    peer: SocketAddr,
    listener: &str,
    metrics: &Metrics,
) -> Option<TlsStream<TcpStream>> {
    let accepting = async {
        if let Some(reason) = refuse_plain_http(&stream, peer).await {
            return Err(reason);
        }
        TlsAcceptor::from(config).accept(stream).await.map_err(|e| {
            let reason = classify(&e);
            tracing::debug!(client = %peer, listener, reason, error = %e, "TLS handshake failed");
            reason
        })
    };
    let reason = match tokio::time::timeout(timeout, accepting).await {
        Ok(Ok(tls)) => return Some(tls),
        Ok(Err(reason)) => reason,
        Err(_) => {
            tracing::debug!(client = %peer, listener, "TLS handshake timed out");
            "timeout"
        }
    };
    metrics.tls_handshake_failed(listener, reason);
    None
}

/// The first byte of a TLS connection is 0x16 (a handshake record). A client
/// that speaks plain HTTP to the TLS port instead gets a readable 400, as
/// nginx answers it, rather than a reset it cannot explain.
async fn refuse_plain_http(stream: &TcpStream, peer: SocketAddr) -> Option<&'static str> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) if first[0].is_ascii_uppercase() => {}
        _ => return None,
    }
    let body = "This port speaks HTTPS; the request was sent as plain HTTP.\n";
    let reply = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // Best effort: the connection is closed either way.
    discard_available(stream);
    let _ = write_all(stream, reply.as_bytes()).await;
    discard_available(stream);
    tracing::info!(client = %peer, "plain HTTP on a TLS listener: 400");
    Some("plain_http")
}

/// A fixed label for the metric; the log line has the full error.
fn classify(e: &io::Error) -> &'static str {
    use rustls::Error as E;
    if e.kind() == io::ErrorKind::UnexpectedEof {
        return "closed";
    }
    match e.get_ref().and_then(|inner| inner.downcast_ref::<E>()) {
        Some(E::NoCertificatesPresented) => "no_client_certificate",
        Some(E::InvalidCertificate(_)) => "bad_client_certificate",
        Some(E::AlertReceived(_)) => "alert_received",
        Some(_) => "protocol",
        None => "io",
    }
}
