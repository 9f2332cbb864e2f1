//! One endpoint's connections: a LIFO stack of idle HTTP/1.1 connections
//! and the shared h2 connections, with the idle timeout and idle cap.
//!
//! The newest idle connection is handed out first (it is the least likely
//! to have been closed by the upstream's own idle timer, and the oldest
//! ones age out). A request waits for a connection only when one exists;
//! it never races a connect against that wait. An h2 connection takes
//! streams up to the peer's `SETTINGS_MAX_CONCURRENT_STREAMS`; another is
//! opened only when every one is full, and by one request at a time.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use hyper::client::conn::http2;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::dial::Dialer;
use super::SendError;
use crate::body::lease::Http1Sender;
use crate::body::{Park, UpstreamBody};
use crate::carry::lock;
use crate::metrics::GroupSeries;

/// Idle-connection limits of one endpoint's pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdleLimits {
    /// An idle connection is closed after this long.
    pub timeout: Duration,
    /// At most this many idle connections are kept; more are closed.
    pub max: usize,
}

/// The connections of one endpoint with one group's settings; shared by
/// every table that has this endpoint with these settings, closed with the
/// last of them.
pub struct EndpointPool {
    dialer: Dialer,
    limits: IdleLimits,
    conns: Mutex<Conns>,
    /// Wakes requests waiting for an h2 connect in progress.
    opened: Notify,
    /// Lets the reaper task reach the pool without keeping it alive.
    this: Weak<EndpointPool>,
}

#[derive(Default)]
struct Conns {
    /// Idle HTTP/1.1 connections, oldest first; taken from the back.
    idle: VecDeque<Idle>,
    /// Shared h2 connections.
    h2: Vec<Arc<H2Conn>>,
    /// An h2 connect is in progress.
    connecting: bool,
    /// The reaper task runs.
    reaping: bool,
}

struct Idle {
    conn: Http1Sender,
    since: Instant,
}

/// A shared h2 connection and its streams in use.
pub struct H2Conn {
    sender: http2::SendRequest<UpstreamBody>,
    streams: AtomicUsize,
    /// The peer's `SETTINGS_MAX_CONCURRENT_STREAMS`, kept current by the
    /// connection task.
    max_streams: Arc<AtomicUsize>,
    /// When the last stream ended, in ms since `epoch`.
    idle_since_ms: AtomicU64,
    epoch: Instant,
}

/// A connection for one request, and whether it carried requests before.
pub enum Checkout {
    /// An HTTP/1.1 connection, ready for a request.
    Http1(Http1Sender, bool),
    /// A stream slot on an h2 connection (released by a `Lease::stream`).
    H2(http2::SendRequest<UpstreamBody>, Arc<H2Conn>, bool),
}

impl std::fmt::Debug for EndpointPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointPool")
            .field("limits", &self.limits)
            .field("open_idle", &self.open_idle())
            .finish_non_exhaustive()
    }
}

impl EndpointPool {
    /// An empty pool dialing with `dialer`.
    pub fn new(dialer: Dialer, limits: IdleLimits) -> Arc<EndpointPool> {
        Arc::new_cyclic(|this| EndpointPool {
            dialer,
            limits,
            conns: Mutex::new(Conns::default()),
            opened: Notify::new(),
            this: this.clone(),
        })
    }

    /// Idle HTTP/1.1 connections plus open h2 connections, for tests and
    /// diagnostics.
    pub fn open_idle(&self) -> usize {
        let conns = lock(&self.conns);
        conns.idle.len() + conns.h2.len()
    }

    /// A connection for one request: an idle one if any (newest first),
    /// else a new one, counted in `series`.
    pub async fn checkout(&self, series: &GroupSeries) -> Result<Checkout, SendError> {
        if self.dialer.h2 {
            return self.checkout_h2(series).await;
        }
        while let Some(mut conn) = self.pop_idle() {
            if conn.is_ready() || conn.ready().await.is_ok() {
                return Ok(Checkout::Http1(conn, true));
            }
        }
        // Boxed: the connect's future (over 1 KiB: TCP, TLS, hyper's
        // handshake) would otherwise be part of every checkout's, and of
        // every future above it, moved by value on each request.
        let conn = Box::pin(self.dialer.http1(series)).await?;
        Ok(Checkout::Http1(conn, false))
    }

    fn pop_idle(&self) -> Option<Http1Sender> {
        let mut conns = lock(&self.conns);
        // A connection the upstream closed while idle is dropped here, so
        // no request is written to it.
        while let Some(idle) = conns.idle.pop_back() {
            if !idle.conn.is_closed() {
                return Some(idle.conn);
            }
        }
        None
    }

    async fn checkout_h2(&self, series: &GroupSeries) -> Result<Checkout, SendError> {
        loop {
            let opened = {
                let mut conns = lock(&self.conns);
                conns.h2.retain(|c| !c.sender.is_closed());
                if let Some(c) = conns.h2.iter().find(|c| c.has_room()) {
                    c.streams.fetch_add(1, Ordering::Relaxed);
                    return Ok(Checkout::H2(c.sender.clone(), Arc::clone(c), true));
                }
                if !conns.connecting {
                    conns.connecting = true;
                    None
                } else {
                    // Created under the lock: the connect's wake-up cannot
                    // be missed.
                    Some(self.opened.notified())
                }
            };
            match opened {
                Some(wait) => wait.await,
                // Boxed, as HTTP/1.1's connect in `checkout`.
                None => return Box::pin(self.open_h2(series)).await,
            }
        }
    }

    async fn open_h2(&self, series: &GroupSeries) -> Result<Checkout, SendError> {
        let dialed = self.dialer.h2(series).await;
        let mut conns = lock(&self.conns);
        conns.connecting = false;
        self.opened.notify_waiters();
        let (sender, max_streams) = dialed?;
        let conn = Arc::new(H2Conn {
            sender: sender.clone(),
            streams: AtomicUsize::new(1),
            max_streams,
            idle_since_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        conns.h2.push(Arc::clone(&conn));
        self.reap_later(&mut conns);
        Ok(Checkout::H2(sender, conn, false))
    }

    /// Starts the reaper if it is not running. It closes connections idle
    /// past the timeout and ends when the pool has none left (or is gone).
    fn reap_later(&self, conns: &mut Conns) {
        if conns.reaping {
            return;
        }
        // Outside a runtime (a body dropped after shutdown) nothing can
        // reap: the connection is not kept.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            conns.idle.clear();
            return;
        };
        conns.reaping = true;
        let weak = self.this.clone();
        let timeout = self.limits.timeout;
        runtime.spawn(async move {
            let mut next = Instant::now() + timeout;
            loop {
                tokio::time::sleep_until(next).await;
                let Some(pool) = weak.upgrade() else { return };
                match pool.reap(Instant::now()) {
                    Some(at) => next = at,
                    None => return,
                }
            }
        });
    }

    /// Closes what has been idle for the timeout; the next deadline, or
    /// `None` (and the reaper stops) when nothing is left to watch.
    fn reap(&self, now: Instant) -> Option<Instant> {
        let timeout = self.limits.timeout;
        let mut conns = lock(&self.conns);
        while conns.idle.front().is_some_and(|i| i.since + timeout <= now) {
            conns.idle.pop_front();
        }
        conns
            .h2
            .retain(|c| !c.sender.is_closed() && c.idle_until(timeout).is_none_or(|t| t > now));
        let h1 = conns.idle.front().map(|i| i.since + timeout);
        // A busy h2 connection is looked at again one timeout later.
        let h2 = conns
            .h2
            .iter()
            .map(|c| c.idle_until(timeout).unwrap_or(now + timeout))
            .min();
        let next = h1.into_iter().chain(h2).min();
        if next.is_none() {
            conns.reaping = false;
        }
        next
    }
}

impl Park for EndpointPool {
    fn park(&self, conn: Http1Sender) {
        if conn.is_closed() {
            return;
        }
        let mut conns = lock(&self.conns);
        if conns.idle.len() >= self.limits.max {
            // The cap keeps the newest: the oldest is the next to time out.
            conns.idle.pop_front();
        }
        if self.limits.max > 0 {
            conns.idle.push_back(Idle {
                conn,
                since: Instant::now(),
            });
            self.reap_later(&mut conns);
        }
    }

    fn stream_ended(&self) {}
}

impl H2Conn {
    fn has_room(&self) -> bool {
        self.streams.load(Ordering::Relaxed) < self.max_streams.load(Ordering::Relaxed)
    }

    /// When this connection's idle time runs out; `None` while streams are
    /// open.
    fn idle_until(&self, timeout: Duration) -> Option<Instant> {
        (self.streams.load(Ordering::Relaxed) == 0).then(|| {
            self.epoch + Duration::from_millis(self.idle_since_ms.load(Ordering::Relaxed)) + timeout
        })
    }
}

impl Park for H2Conn {
    fn park(&self, _conn: Http1Sender) {}

    fn stream_ended(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.idle_since_ms.store(ms, Ordering::Relaxed);
        self.streams.fetch_sub(1, Ordering::Relaxed);
    }
}
