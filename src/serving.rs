//! What every connection and request reads, and nothing else: the live
//! table (one `ArcSwap` load per request), the drain flag, the process-level
//! connection limits, the metrics, and the certificates supplied at run time
//! (controller mode's Gateway Secrets). `reload` stores new tables into the
//! same `ArcSwap`; the listener and the proxy only read.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::metrics::Metrics;
use crate::route::RouteTable;

/// The serving side's shared state.
#[derive(Debug)]
pub struct Serving {
    /// The live table; one `load` per request.
    pub routes: Arc<ArcSwap<RouteTable>>,
    /// Set on shutdown: HTTP/1.1 answers ask clients to reconnect, `/ready`
    /// turns 503.
    pub draining: AtomicBool,
    /// Downstream connection limits.
    pub limits: ConnLimits,
    /// Request metrics, connection gauges.
    pub metrics: Arc<Metrics>,
    /// Certificates supplied at run time (controller mode: the Secrets of
    /// HTTPS Gateway listeners), served before a listener's own.
    pub certificates: Arc<crate::tls::server::Supplied>,
}

/// Process-level limits on every downstream connection; the rest are the
/// listener's own (`listeners[].timeouts`, `max_header_bytes`,
/// `max_connections`, see [`crate::route::ConnSettings`]).
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Time a client has for the TLS handshake.
    pub header_read_timeout: Duration,
    /// Most request headers (HTTP/1.1).
    pub max_headers: usize,
    /// Most open connections per listener when the table has no entry for it.
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_read_timeout: Duration::from_secs(10),
            max_headers: 100,
            max_connections: 10_000,
        }
    }
}
