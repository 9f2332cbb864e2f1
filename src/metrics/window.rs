//! Live latency quantiles: an hdrhistogram per (route, group) over the last
//! minute, in six rotating 10-second slices, sharded by thread.
//!
//! Why sharded by thread: a single `Mutex<Histogram>` per series would be
//! taken by every core on every request, and a plain `thread_local!` cannot
//! be reached by the reader that merges. So each series has one shard per
//! core (up to 8), each a mutex padded to its own cache lines, and a thread
//! always records into the shard of its own index. A worker thread then takes
//! a lock no other core touches, except `/v1/stats` for a few microseconds
//! while it merges; the cost is one uncontended atomic pair per request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::clock::uptime;

use hdrhistogram::Histogram;

/// Length of one slice.
const SLICE_SECS: u64 = 10;
/// Slices kept: the window is the current slice plus five full ones.
const SLICES: usize = 6;
/// Largest recorded duration; longer ones count as this.
const HIGHEST_US: u64 = 60_000_000;
/// Two significant digits: quantiles within 1%, 10 KiB per slice.
const SIGFIG: u8 = 2;
/// Most shards per series, bounding memory on large machines.
const MAX_SHARDS: usize = 8;

fn shard_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_SHARDS)
    })
}

/// This thread's shard index (modulo the shard count), assigned once.
fn thread_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    INDEX.with(|i| *i)
}

/// One series' sliding window.
#[derive(Debug)]
pub struct Window {
    shards: Box<[Shard]>,
}

/// Padded so two shards never share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(Mutex<[Slice; SLICES]>);

#[derive(Debug, Default)]
struct Slice {
    /// `uptime / SLICE_SECS` when this slice was last restarted.
    epoch: u64,
    requests: u64,
    errors: u64,
    /// Allocated on first use: idle series cost no histogram.
    hist: Option<Histogram<u32>>,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            shards: (0..shard_count()).map(|_| Shard::default()).collect(),
        }
    }
}

/// A window's merged content.
#[derive(Debug)]
pub struct WindowStats {
    /// Requests in the window.
    pub requests: u64,
    /// Of which errors (5xx, local or upstream).
    pub errors: u64,
    /// Seconds the window covers (less than a minute just after start).
    pub span_secs: f64,
    hist: Option<Histogram<u32>>,
}

impl WindowStats {
    /// Duration at quantile `q` (0..=1), milliseconds; `None` without data.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let h = self.hist.as_ref().filter(|h| !h.is_empty())?;
        Some(h.value_at_quantile(q) as f64 / 1000.0)
    }
}

impl Window {
    /// Records one finished request.
    pub fn record(&self, us: u64, error: bool) {
        self.record_at(uptime(), us, error);
    }

    fn record_at(&self, now: Duration, us: u64, error: bool) {
        let epoch = now.as_secs() / SLICE_SECS;
        let shard = &self.shards[thread_index() % self.shards.len()];
        let mut slices = shard.0.lock().unwrap_or_else(|p| p.into_inner());
        let slice = &mut slices[(epoch % SLICES as u64) as usize];
        if slice.epoch != epoch {
            slice.epoch = epoch;
            slice.requests = 0;
            slice.errors = 0;
            if let Some(h) = &mut slice.hist {
                h.reset();
            }
        }
        slice.requests += 1;
        slice.errors += u64::from(error);
        if slice.hist.is_none() {
            slice.hist = Histogram::new_with_bounds(1, HIGHEST_US, SIGFIG).ok();
        }
        if let Some(h) = &mut slice.hist {
            h.saturating_record(us.clamp(1, HIGHEST_US));
        }
    }

    /// Merges every shard's live slices.
    pub fn read(&self) -> WindowStats {
        self.read_at(uptime())
    }

    fn read_at(&self, now: Duration) -> WindowStats {
        let current = now.as_secs() / SLICE_SECS;
        let oldest = current.saturating_sub(SLICES as u64 - 1);
        let oldest_start = Duration::from_secs(oldest * SLICE_SECS);
        let mut out = WindowStats {
            requests: 0,
            errors: 0,
            span_secs: now.saturating_sub(oldest_start).as_secs_f64().max(1.0),
            hist: None,
        };
        for shard in self.shards.iter() {
            let slices = shard.0.lock().unwrap_or_else(|p| p.into_inner());
            for s in slices
                .iter()
                .filter(|s| (oldest..=current).contains(&s.epoch))
            {
                out.requests += s.requests;
                out.errors += s.errors;
                let Some(h) = &s.hist else { continue };
                match &mut out.hist {
                    Some(acc) => {
                        // Same bounds on both sides: the add cannot fail.
                        let _ = acc.add(h);
                    }
                    None => out.hist = Some(h.clone()),
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn quantiles_come_from_the_recorded_durations() {
        let w = Window::default();
        for i in 1..=1000 {
            w.record_at(at(5), i * 100, i > 990);
        }
        let s = w.read_at(at(6));
        assert_eq!((s.requests, s.errors), (1000, 10));
        let p50 = s.quantile_ms(0.5).unwrap();
        let p99 = s.quantile_ms(0.99).unwrap();
        assert!((49.0..=51.0).contains(&p50), "p50 {p50}");
        assert!((98.0..=100.0).contains(&p99), "p99 {p99}");
        assert_eq!(s.span_secs, 6.0);
    }

    #[test]
    fn old_slices_leave_the_window() {
        let w = Window::default();
        w.record_at(at(1), 1000, false);
        w.record_at(at(15), 2000, true);
        assert_eq!(w.read_at(at(59)).requests, 2);
        let later = w.read_at(at(65));
        assert_eq!((later.requests, later.errors), (1, 1), "slice 0 expired");
        assert!((50.0..=60.0).contains(&later.span_secs));
        // The slot of epoch 0 is reused for epoch 6 and restarts.
        w.record_at(at(61), 3000, false);
        let s = w.read_at(at(62));
        assert_eq!(s.requests, 2);
        assert!(s.quantile_ms(0.0).unwrap() >= 1.9);
        assert!(w.read_at(at(200)).quantile_ms(0.5).is_none());
    }
}
