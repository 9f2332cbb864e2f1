//! The connection slots of one listener: which connections are open, and
//! which of them are idle since when. At the limit the oldest idle one is
//! closed to make room (as nginx reuses connections), so idle clients cannot
//! keep new ones out; idle deadlines are computed from the same record.
//!
//! The lock is taken when a connection opens or closes, never per request:
//! a request only touches its own connection's atomics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::route::ConnSettings;

/// How long an HTTP/1.1 connection must be idle before it is parked (its
/// hyper connection and buffers freed, the socket kept): long enough that
/// busy keep-alive connections never pay for it, short enough that idle
/// ones cost little for most of their idle time.
pub const PARK_DELAY: Duration = Duration::from_secs(1);

/// The open connections of one listener, up to `max`.
pub struct Slots {
    open: Mutex<Open>,
    max: usize,
    epoch: Instant,
}

struct Open {
    by_id: HashMap<u64, Arc<ConnState>>,
    next_id: u64,
}

impl Slots {
    /// Room for `max` connections (at least one).
    pub fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            open: Mutex::new(Open {
                by_id: HashMap::new(),
                next_id: 0,
            }),
            max: max.max(1),
            epoch: Instant::now(),
        })
    }

    /// A slot for a new connection: a free one, or the one of the connection
    /// idle the longest, which is told to close at once. `None` when every
    /// open connection has a request in flight.
    pub fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.by_id.len() >= self.max {
            let oldest_idle = open
                .by_id
                .iter()
                .filter(|(_, c)| c.active.load(Ordering::Acquire) == 0)
                .min_by_key(|(_, c)| c.idle_since.load(Ordering::Acquire))
                .map(|(&id, _)| id);
            let victim = oldest_idle.and_then(|id| open.by_id.remove(&id))?;
            victim.evicted.notify_one();
        }
        let id = open.next_id;
        open.next_id += 1;
        let state = Arc::new(ConnState {
            epoch: self.epoch,
            active: AtomicU32::new(0),
            idle_since: AtomicU64::new(millis_since(self.epoch)),
            requested: AtomicBool::new(false),
            framing_conflict: AtomicBool::new(false),
            between_requests: AtomicBool::new(true),
            parking: AtomicBool::new(false),
            evicted: Notify::new(),
        });
        open.by_id.insert(id, Arc::clone(&state));
        Some(Slot {
            slots: Arc::clone(self),
            id,
            state,
        })
    }

    /// Open connections.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.by_id.len()
    }
}

/// One open connection's slot; dropping it frees the slot (unless the slot
/// was already taken over by a newer connection).
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    /// What the connection is doing, shared with its requests.
    pub state: Arc<ConnState>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.by_id.remove(&self.id);
    }
}

/// Whether a connection is busy, and since when it is idle.
pub struct ConnState {
    epoch: Instant,
    /// Requests in flight: from the head to the end of the response body.
    active: AtomicU32,
    /// Milliseconds since `epoch` at which `active` last fell to 0 (or the
    /// connection opened).
    idle_since: AtomicU64,
    /// A request head has arrived on this connection.
    requested: AtomicBool,
    /// A request head with both `Content-Length` and `Transfer-Encoding`
    /// was read (see `h1scan`).
    framing_conflict: AtomicBool,
    /// Every byte read so far belongs to complete HTTP/1.1 requests (see
    /// `h1scan`); false on HTTP/2.
    between_requests: AtomicBool,
    /// hyper is being ended to park the connection: its I/O must not shut
    /// the socket down.
    parking: AtomicBool,
    /// Signalled when the slot was given to a newer connection.
    evicted: Notify,
}

/// When an idle connection is due to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// A request is in flight: check again later.
    Busy,
    /// Idle: close at this instant unless a request comes first.
    At(Instant),
}

impl ConnState {
    /// Marks a request in flight until the returned guard drops (with the
    /// response body).
    pub fn begin(self: &Arc<Self>) -> Active {
        self.requested.store(true, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::AcqRel);
        Active(Arc::clone(self))
    }

    /// Notes that a head with both `Content-Length` and
    /// `Transfer-Encoding` was read on this connection.
    pub fn flag_framing_conflict(&self) {
        self.framing_conflict.store(true, Ordering::Relaxed);
    }

    /// Whether a head with both `Content-Length` and `Transfer-Encoding`
    /// was read: hyper serves only that one more request with
    /// `Transfer-Encoding` on the connection, then closes it.
    pub fn framing_conflict(&self) -> bool {
        self.framing_conflict.load(Ordering::Relaxed)
    }

    /// Notes whether the bytes read so far end at a request boundary.
    pub fn set_between_requests(&self, between: bool) {
        self.between_requests.store(between, Ordering::Relaxed);
    }

    /// When the connection may be parked: [`PARK_DELAY`] after its last
    /// response, if no request is in flight and every byte read belongs to
    /// complete requests; `None` otherwise.
    pub fn park_at(&self) -> Option<Instant> {
        if self.active.load(Ordering::Acquire) > 0 || !self.between_requests.load(Ordering::Relaxed)
        {
            return None;
        }
        let since = self.idle_since.load(Ordering::Acquire);
        Some(self.epoch + Duration::from_millis(since) + PARK_DELAY)
    }

    /// Marks hyper's end as a parking one (or not any more).
    pub fn set_parking(&self, parking: bool) {
        self.parking.store(parking, Ordering::Relaxed);
    }

    /// Whether hyper is being ended to park the connection.
    pub fn parking(&self) -> bool {
        self.parking.load(Ordering::Relaxed)
    }

    /// When the connection closes if nothing happens: `first_request` after
    /// it opened if it never sent a request head, else `idle` after its last
    /// response.
    pub fn expiry(&self, settings: &ConnSettings) -> Expiry {
        if self.active.load(Ordering::Acquire) > 0 {
            return Expiry::Busy;
        }
        let since = self.idle_since.load(Ordering::Acquire);
        let timeout = if self.requested.load(Ordering::Relaxed) {
            settings.idle
        } else {
            settings.first_request
        };
        Expiry::At(self.epoch + Duration::from_millis(since) + timeout)
    }

    /// Whether no request is in flight.
    pub fn is_idle(&self) -> bool {
        self.active.load(Ordering::Acquire) == 0
    }

    /// Completes when the slot was handed to a newer connection.
    pub async fn evicted(&self) {
        self.evicted.notified().await
    }
}

/// A request in flight on its connection.
pub struct Active(Arc<ConnState>);

impl Drop for Active {
    fn drop(&mut self) {
        let state = &self.0;
        // The time first, so whoever sees `active == 0` sees it fresh.
        state
            .idle_since
            .store(millis_since(state.epoch), Ordering::Release);
        state.active.fetch_sub(1, Ordering::AcqRel);
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_slots_go_to_the_oldest_idle_connection() {
        let slots = Slots::new(2);
        let a = slots.admit().unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let b = slots.admit().unwrap();
        let busy = b.state.begin();
        // a is idle, b busy: the third takes a's slot, and a is told.
        let c = slots.admit().unwrap();
        tokio::time::timeout(Duration::from_secs(1), a.state.evicted())
            .await
            .expect("a evicted");
        assert_eq!(slots.len(), 2);
        drop(a); // its late drop must not free c's slot
        assert_eq!(slots.len(), 2);
        let c_busy = c.state.begin();
        assert!(slots.admit().is_none(), "every connection is busy");
        drop(busy);
        let d = slots.admit().expect("b is idle now");
        drop((c_busy, d));
    }

    #[tokio::test]
    async fn idle_deadline_follows_the_last_response() {
        let settings = ConnSettings {
            idle: Duration::from_secs(60),
            first_request: Duration::from_secs(10),
            ..ConnSettings::default()
        };
        let slots = Slots::new(1);
        let slot = slots.admit().unwrap();
        let opened = Instant::now();
        let Expiry::At(first) = slot.state.expiry(&settings) else {
            panic!("a new connection is idle")
        };
        assert!(first <= opened + Duration::from_secs(10));
        let active = slot.state.begin();
        assert_eq!(slot.state.expiry(&settings), Expiry::Busy);
        drop(active);
        let Expiry::At(idle) = slot.state.expiry(&settings) else {
            panic!("idle after the response")
        };
        assert!(idle >= opened + Duration::from_secs(59));
    }
}
