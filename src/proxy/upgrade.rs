//! Upgrade passthrough (WebSocket and friends): after the upstream's 101, the
//! two upgraded connections are spliced until either side closes.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// Spawns the byte pump between the client and the upstream. Bytes the client
/// sent after its upgrade request stay buffered in hyper until the client
/// side is upgraded, which happens only after the 101 is sent back.
#[cold]
#[inline(never)]
pub fn splice(client: OnUpgrade, upstream: OnUpgrade) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(error = %e, "upgraded connection ended with an error");
        }
    });
}
