//! The dashboard's memory: per (route, rule, group), one sample a second of
//! requests per second, error rate, p50 and p99, five minutes deep, taken
//! from the counters the request path keeps anyway (so a page reload does
//! not lose the sparklines, and the request path pays nothing more).
//!
//! Each sample is the difference of two readings of cumulative counters, so
//! it shows the last second alone: a canary that starts failing shows a high
//! error rate in the next sample, not diluted by a minute of good requests.
//! Latency comes from the (route, group) duration histogram (its buckets,
//! interpolated as Prometheus' `histogram_quantile` does); it is shared by
//! the rules of a route that send to the same group.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

use crate::metrics::histogram::{Snapshot, BOUNDS_US};
use crate::metrics::series::{class_index, RuleGroupSeries};
use crate::route::RouteTable;

/// Samples kept per series: five minutes at one a second.
pub const DEPTH: usize = 300;

/// Samples the observed split is taken over.
const OBSERVED_SAMPLES: usize = 10;

/// One second of one (route, rule, group).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// Unix time of the reading, seconds.
    pub t: u64,
    /// Requests answered since the previous reading.
    pub n: u64,
    /// Requests per second.
    pub rps: f64,
    /// Share of those requests answered 5xx; `None` without requests.
    pub err: Option<f64>,
    /// Median latency, milliseconds; `None` without requests.
    pub p50: Option<f64>,
    /// 99th percentile latency, milliseconds; `None` without requests.
    pub p99: Option<f64>,
}

/// `(route, rule, group)`.
pub type Key = (Box<str>, Box<str>, Box<str>);

/// Cumulative counters at one reading.
#[derive(Debug, Clone, Default)]
struct Reading {
    requests: u64,
    errors: u64,
    latency: Snapshot,
}

impl Reading {
    fn of(series: &RuleGroupSeries) -> Reading {
        let mut r = Reading::default();
        for (_, class, n) in series.counts() {
            r.requests += n;
            if class == class_index(500) {
                r.errors += n;
            }
        }
        for (_, h) in series.route_group.by_status() {
            h.add_to(&mut r.latency);
        }
        r
    }
}

#[derive(Debug, Default)]
struct Track {
    last: Option<Reading>,
    ring: VecDeque<Sample>,
}

/// Every series' ring; bounded by the table's rules and [`DEPTH`].
#[derive(Debug, Default)]
pub struct History {
    tracks: HashMap<Key, Track>,
}

impl History {
    /// Reads every rule's counters in `table` and appends one sample per
    /// group; `secs` is the time since the previous call. Series the table
    /// no longer has are forgotten.
    pub fn sample(&mut self, table: &RouteTable, unix: u64, secs: f64) {
        let mut live = Vec::with_capacity(self.tracks.len());
        for rule in table.rules.iter() {
            for ((group, _), series) in rule.split.backends().zip(rule.metrics.backends.iter()) {
                let Some(g) = table.groups.get(group as usize) else {
                    continue;
                };
                let key: Key = (rule.route.clone(), rule.name.clone(), g.name.clone());
                let now = Reading::of(series);
                let track = self.tracks.entry(key.clone()).or_default();
                if let Some(before) = &track.last {
                    if track.ring.len() == DEPTH {
                        track.ring.pop_front();
                    }
                    track.ring.push_back(delta(before, &now, unix, secs));
                }
                track.last = Some(now);
                live.push(key);
            }
        }
        self.tracks.retain(|k, _| live.contains(k));
    }

    /// The newest sample of a series.
    pub fn latest(&self, key: &Key) -> Option<Sample> {
        self.tracks.get(key).and_then(|t| t.ring.back().copied())
    }

    /// Requests a series answered over the last few samples: the observed
    /// split is their share.
    pub fn recent_requests(&self, key: &Key) -> u64 {
        self.tracks.get(key).map_or(0, |t| {
            t.ring
                .iter()
                .rev()
                .take(OBSERVED_SAMPLES)
                .map(|s| s.n)
                .sum()
        })
    }

    /// Every ring as `{"route/rule/group": [sample, ...]}`, oldest first.
    pub fn to_json(&self) -> serde_json::Value {
        let map: serde_json::Map<String, serde_json::Value> = self
            .tracks
            .iter()
            .map(|((route, rule, group), t)| {
                let samples: Vec<&Sample> = t.ring.iter().collect();
                (
                    format!("{route}/{rule}/{group}"),
                    serde_json::json!(samples),
                )
            })
            .collect();
        serde_json::Value::Object(map)
    }
}

/// The sample between two readings.
fn delta(before: &Reading, now: &Reading, unix: u64, secs: f64) -> Sample {
    let n = now.requests.saturating_sub(before.requests);
    let errors = now.errors.saturating_sub(before.errors);
    let mut latency = Snapshot::default();
    for (d, (a, b)) in latency
        .buckets
        .iter_mut()
        .zip(now.latency.buckets.iter().zip(&before.latency.buckets))
    {
        *d = a.saturating_sub(*b);
    }
    Sample {
        t: unix,
        n,
        rps: n as f64 / secs.max(0.001),
        err: (n > 0).then(|| errors.min(n) as f64 / n as f64),
        // Latency is the (route, group)'s: shown only while this rule sends
        // the group traffic, or a quiet rule would show another's.
        p50: quantile_ms(&latency, 0.5).filter(|_| n > 0),
        p99: quantile_ms(&latency, 0.99).filter(|_| n > 0),
    }
}

/// The duration at quantile `q` of per-bucket counts, interpolated linearly
/// inside its bucket; the open last bucket answers its lower bound.
fn quantile_ms(h: &Snapshot, q: f64) -> Option<f64> {
    let total = h.count();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &n) in h.buckets.iter().enumerate() {
        if n > 0 && (below + n) as f64 >= rank {
            let low = if i == 0 { 0 } else { BOUNDS_US[i - 1] };
            let Some(&high) = BOUNDS_US.get(i) else {
                return Some(low as f64 / 1000.0);
            };
            let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
            return Some((low as f64 + within * (high - low) as f64) / 1000.0);
        }
        below += n;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::histogram::DurationHistogram;

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let h = DurationHistogram::default();
        for _ in 0..100 {
            h.observe_us(700); // bucket 0.5..1 ms
        }
        let s = h.snapshot();
        let p50 = quantile_ms(&s, 0.5).unwrap();
        assert!((0.74..=0.76).contains(&p50), "{p50}");
        assert_eq!(quantile_ms(&Snapshot::default(), 0.5), None);
        h.observe_us(60_000_000);
        let p100 = quantile_ms(&h.snapshot(), 1.0).unwrap();
        assert_eq!(p100, 10_000.0, "the open bucket answers its lower bound");
    }

    #[test]
    fn a_sample_is_the_last_interval_alone() {
        let before = Reading {
            requests: 1000,
            errors: 0,
            latency: Snapshot::default(),
        };
        let now = Reading {
            requests: 1010,
            errors: 5,
            latency: Snapshot::default(),
        };
        let s = delta(&before, &now, 7, 0.5);
        assert_eq!((s.t, s.n), (7, 10));
        assert_eq!(s.rps, 20.0);
        assert_eq!(s.err, Some(0.5), "not 5 in 1010");
        let idle = delta(&now, &now, 8, 1.0);
        assert_eq!((idle.err, idle.p50), (None, None));
    }
}
