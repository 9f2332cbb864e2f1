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
    let accepting = TlsAcceptor::from(config).accept(stream);
    let reason = match tokio::time::timeout(timeout, accepting).await {
        Ok(Ok(tls)) => return Some(tls),
        Ok(Err(e)) => {
            let reason = classify(&e);
            tracing::debug!(client = %peer, listener, reason, error = %e, "TLS handshake failed");
            reason
        }
        Err(_) => {
            tracing::debug!(client = %peer, listener, "TLS handshake timed out");
            "timeout"
        }
    };
    metrics.tls_handshake_failed(listener, reason);
    None
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
