//! Connections that cannot be admitted (the listener is at its limit and no
//! connection is idle) are accepted and closed at once, HTTP/1.1 ones with a
//! `503`, instead of waiting unseen in the kernel backlog until the client
//! times out.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Refusals in flight at once; beyond that a connection is closed unread.
const MAX_REFUSING: usize = 256;
/// How long a refused client has to send its first bytes (so that HTTP/1.1
/// is told why and h2c is not sent HTTP/1.1 bytes).
const FIRST_BYTES: Duration = Duration::from_millis(500);

/// Refusals are logged at most once per this interval, with their count.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Answers connections beyond the limit, a bounded number at a time; owned
/// by one accept loop.
pub struct Refusals {
    in_flight: Arc<Semaphore>,
    unreported: u64,
    reported_at: Option<Instant>,
}

impl Refusals {
    /// Room for [`MAX_REFUSING`] refusals in flight.
    pub fn new() -> Refusals {
        Refusals {
            in_flight: Arc::new(Semaphore::new(MAX_REFUSING)),
            unreported: 0,
            reported_at: None,
        }
    }

    /// Counts one refusal; returns the count to log when the last report is
    /// [`REPORT_EVERY`] old (one line per interval, however big the flood).
    pub fn count_and_report(&mut self) -> Option<u64> {
        self.unreported += 1;
        let now = Instant::now();
        if self.reported_at.is_some_and(|at| now < at + REPORT_EVERY) {
            return None;
        }
        self.reported_at = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }

    /// Closes `stream`: cleartext HTTP/1.1 gets a `503` with `Connection:
    /// close` first; TLS and h2c are just closed (no handshake or preface is
    /// spent on a connection that cannot be served).
    pub fn refuse(&self, stream: TcpStream, peer: SocketAddr, tls: bool) {
        tracing::debug!(client = %peer, "listener full: connection refused");
        if tls {
            return;
        }
        let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            return;
        };
        tokio::spawn(async move {
            let _ = tokio::time::timeout(FIRST_BYTES, answer_503(&stream)).await;
            drop(permit);
        });
    }
}

impl Default for Refusals {
    fn default() -> Self {
        Refusals::new()
    }
}

async fn answer_503(stream: &TcpStream) -> io::Result<()> {
    let mut first = [0u8; 4];
    let n = stream.peek(&mut first).await?;
    if n == 0 || first[..n] == b"PRI "[..n] {
        return Ok(());
    }
    let body = "cutover: too many connections; try again\n";
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{body}",
        body.len()
    );
    discard_available(stream);
    write_all(stream, reply.as_bytes()).await?;
    discard_available(stream);
    Ok(())
}

/// Reads and drops what the client has sent so far (at most 64 KiB): closing
/// a socket with unread data sends a reset, which can destroy an answer
/// before the client reads it.
pub fn discard_available(stream: &TcpStream) {
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match stream.try_read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => return,
        }
    }
}

/// Writes through a shared reference (`TcpStream::try_write`), so the caller
/// keeps ownership of the stream.
pub async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
