//! Circuit breaking for a group: at most `max_requests` in flight and at most
//! `max_pending` waiting for a slot; anything beyond fails fast with 503.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::model::LimitsConfig;

/// Which limit turned a request away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Too many requests in flight and waiting.
    MaxPending,
    /// Too many concurrent requests on one endpoint (HTTP/1.1: connections).
    MaxConnections,
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
    pub async fn admit(&self) -> Result<Slot, Overflow> {
        if let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(slot);
        }
        let waiting = Waiting(&self.pending);
        if self.pending.fetch_add(1, Ordering::Relaxed) >= self.max_pending {
            return Err(Overflow::MaxPending);
        }
        let slot = Arc::clone(&self.slots).acquire_owned().await;
        drop(waiting);
        slot.map_err(|_| Overflow::MaxPending)
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
