//! The request path's clocks and random numbers, in one place so tests can
//! control them: every clock here reads tokio's clock, which a test with
//! paused time (`#[tokio::test(start_paused = true)]`) moves by hand. The
//! thread-local RNG is the one fast generator the split, the balancer, the
//! backoff and fault injection share.

use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::time::Instant;

thread_local! {
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_os_rng());
}

/// Runs `f` with this thread's fast RNG (never held across an await).
pub fn with_rng<T>(f: impl FnOnce(&mut SmallRng) -> T) -> T {
    RNG.with(|r| f(&mut r.borrow_mut()))
}

/// Time since the process's clock started (on tokio's clock; outside a
/// runtime, or with time running, it is the monotonic clock).
pub fn uptime() -> Duration {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(anchor).elapsed()
}

/// The clock's zero: the earlier of tokio's now and the monotonic clock's.
/// A paused runtime's clock starts at the monotonic time it was created
/// and then only moves by hand, so it may lag (time has not been advanced
/// yet) or lead (it has): the earlier reading keeps every runtime's
/// `elapsed()` from sticking at zero.
#[allow(
    clippy::disallowed_methods,
    reason = "compares tokio's clock with the monotonic one it may be paused from"
)]
fn anchor() -> Instant {
    Instant::now().min(Instant::from_std(std::time::Instant::now()))
}

/// Milliseconds since the clock started, plus one (0 means "never"):
/// outlier ejections and endpoint availability.
pub fn now_ms() -> u64 {
    uptime().as_millis() as u64 + 1
}

/// Seconds since the clock started, plus one (0 means "never"): the
/// per-second slots of retry budgets and observed-split counters.
pub fn now_secs() -> u64 {
    uptime().as_secs() + 1
}

/// Wall-clock time, only for timestamps shown to people (the access log's
/// `time`, when a DNS answer arrived); durations use [`now`].
#[allow(
    clippy::disallowed_methods,
    reason = "the one wall-clock reading, for timestamps"
)]
pub fn wall_now() -> std::time::SystemTime {
    std::time::SystemTime::now()
}

/// The instant a request or connection starts, for durations measured
/// against the same clock the timers use.
pub fn now() -> Instant {
    Instant::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paused time moves these clocks: outlier and budget tests can wait
    /// for an ejection or a budget window without sleeping for real.
    #[tokio::test(start_paused = true)]
    async fn paused_time_moves_the_clocks() {
        let (ms, s) = (now_ms(), now_secs());
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(now_ms() >= ms + 3_000, "{} vs {ms}", now_ms());
        assert!(now_secs() >= s + 3);
    }
}
