//! Circuit breaking for a group: at most `max_requests` in flight and at most
//! `max_pending` waiting for a slot; anything beyond fails fast with 503.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Endpoint, Group};
use crate::config::model::{Limit, LimitsConfig, UpstreamProtocol};

/// The per-endpoint connection limit (`limits.max_connections`): an
/// HTTP/1.1 connection carries one request at a time, so the endpoint's
/// requests in flight are its connections. (h2 multiplexes; no limit.)
pub fn endpoint_has_room(group: &Group, endpoint: &Endpoint) -> Result<(), Limit> {
    let max = group.policy.limits.max_connections as usize;
    if group.protocol == UpstreamProtocol::Http1 && endpoint.state.in_flight() >= max {
        return Err(Limit::MaxConnections);
    }
    Ok(())
}

/// A group's admission state, shared across table generations.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    pending: AtomicU32,
    max_pending: u32,
}

/// Holds a `max_requests` slot until dropped.
pub type Slot = OwnedSemaphorePermit;

impl Admission {
    /// Limits from the config.
    pub fn new(limits: &LimitsConfig) -> Self {
        Admission {
            slots: Arc::new(Semaphore::new(limits.max_requests.max(1) as usize)),
            pending: AtomicU32::new(0),
            max_pending: limits.max_pending,
        }
    }

    /// A slot now, or after waiting in the bounded queue (the caller bounds
    /// the wait with its deadline); `Err` when the queue is full too.
    pub async fn admit(&self) -> Result<Slot, Limit> {
        if let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(slot);
        }
        let waiting = Waiting(&self.pending);
        if self.pending.fetch_add(1, Ordering::Relaxed) >= self.max_pending {
            return Err(Limit::MaxPendingRequests);
        }
        let slot = Arc::clone(&self.slots).acquire_owned().await;
        drop(waiting);
        slot.map_err(|_| Limit::MaxPendingRequests)
    }
}

/// Un-counts a waiter however the wait ends (slot, error, or the caller's
/// deadline dropping the future).
struct Waiting<'a>(&'a AtomicU32);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
