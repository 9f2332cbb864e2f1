//! A Prometheus duration histogram made of plain atomics, and a small
//! lock-free table of them keyed by a bounded label (status code, reason).
//!
//! Why not `prometheus_client::metrics::histogram::Histogram`: it keeps its
//! buckets behind a mutex, which every request of a busy (route, group) would
//! take from every core. Here an observation is two relaxed atomic adds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Upper bounds of the duration buckets, in microseconds (the last bucket,
/// `+Inf`, is implicit): 0.5 ms to 10 s, fine where a proxy's own cost shows.
pub const BOUNDS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// Number of buckets including `+Inf`.
const BUCKETS: usize = BOUNDS_US.len() + 1;

/// Durations by bucket, plus their sum; the count is the sum of the buckets,
/// so a scrape never sees a count that disagrees with the buckets.
#[derive(Debug, Default)]
pub struct DurationHistogram {
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

impl DurationHistogram {
    /// Records one duration.
    pub fn observe_us(&self, us: u64) {
        let i = BOUNDS_US.partition_point(|&b| b < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Adds this histogram's counts into `into` (for scrapes that merge).
    pub fn add_to(&self, into: &mut Snapshot) {
        for (acc, b) in into.buckets.iter_mut().zip(&self.buckets) {
            *acc += b.load(Ordering::Relaxed);
        }
        into.sum_us += self.sum_us.load(Ordering::Relaxed);
    }

    /// A point-in-time copy.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        self.add_to(&mut s);
        s
    }
}

/// A histogram's values at one scrape.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot {
    /// Per-bucket (not cumulative) counts; the last is `+Inf`.
    pub buckets: [u64; BUCKETS],
    /// Sum of the observations, microseconds.
    pub sum_us: u64,
}

impl Snapshot {
    /// Observations counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// `(upper bound in seconds, count)` pairs as prometheus-client encodes
    /// them (non-cumulative, ending with `+Inf`).
    pub fn buckets_seconds(&self) -> Vec<(f64, u64)> {
        BOUNDS_US
            .iter()
            .map(|&b| b as f64 / 1e6)
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.buckets.iter().copied())
            .collect()
    }

    /// Sum in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_us as f64 / 1e6
    }
}

/// Up to `N` values keyed by a small label, filled first come first served
/// without a lock; further keys share the `other` value. This bounds the
/// series one handle can produce whatever the traffic does.
#[derive(Debug)]
pub struct Slots<K, V, const N: usize> {
    slots: [OnceLock<(K, V)>; N],
    other: V,
}

impl<K, V: Default, const N: usize> Default for Slots<K, V, N> {
    fn default() -> Self {
        Slots {
            slots: std::array::from_fn(|_| OnceLock::new()),
            other: V::default(),
        }
    }
}

impl<K: Copy + PartialEq, V: Default, const N: usize> Slots<K, V, N> {
    /// The value for `key`, claiming a free slot on first use. Two threads
    /// racing for one slot with different keys: one wins, the other moves on.
    pub fn get(&self, key: K) -> &V {
        for slot in &self.slots {
            let (k, v) = match slot.get() {
                Some(kv) => kv,
                None => slot.get_or_init(|| (key, V::default())),
            };
            if *k == key {
                return v;
            }
        }
        &self.other
    }

    /// Claimed slots in claim order, then `None` for the overflow value.
    pub fn iter(&self) -> impl Iterator<Item = (Option<K>, &V)> {
        self.slots
            .iter()
            .filter_map(|s| s.get().map(|(k, v)| (Some(*k), v)))
            .chain(std::iter::once((None, &self.other)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket() {
        let h = DurationHistogram::default();
        h.observe_us(100);
        h.observe_us(500);
        h.observe_us(501);
        h.observe_us(60_000_000);
        let s = h.snapshot();
        assert_eq!(s.count(), 4);
        assert_eq!(s.buckets[0], 2, "<= 0.5 ms, bounds are inclusive");
        assert_eq!(s.buckets[1], 1);
        assert_eq!(s.buckets[BUCKETS - 1], 1, "+Inf");
        assert_eq!(s.sum_us, 60_001_101);
        let b = s.buckets_seconds();
        assert_eq!(b[0], (0.0005, 2));
        assert_eq!(b[BUCKETS - 1].0, f64::INFINITY);
    }

    #[test]
    fn slots_overflow_into_other() {
        let s: Slots<u16, AtomicU64, 2> = Slots::default();
        s.get(200).fetch_add(1, Ordering::Relaxed);
        s.get(500).fetch_add(1, Ordering::Relaxed);
        s.get(200).fetch_add(1, Ordering::Relaxed);
        s.get(404).fetch_add(1, Ordering::Relaxed);
        s.get(503).fetch_add(1, Ordering::Relaxed);
        let seen: Vec<_> = s
            .iter()
            .map(|(k, v)| (k, v.load(Ordering::Relaxed)))
            .collect();
        assert_eq!(seen, [(Some(200), 2), (Some(500), 1), (None, 2)]);
    }
}
