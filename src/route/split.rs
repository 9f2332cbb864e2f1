//! Group pick: maps a point in the 64-bit space onto a rule's groups as fixed,
//! ordered ranges sized by weight. Pure code; the caller supplies the point
//! (a sticky-key hash or a random number).
//!
//! Why fixed ranges: with a sticky key, raising the canary's weight only grows
//! the canary's range into its neighbour's, so a user already on the canary
//! stays there and cohorts only grow. `hash % total_weight` (Envoy) reshuffles
//! users whenever the total changes.

use std::net::IpAddr;
use std::sync::Arc;

use http::{header, HeaderMap, HeaderName};

use super::Rule;
use crate::config::model::{Fallback, OnGroupUnavailable};
use crate::error::ProxyError;
use crate::hash::hash_key;
use crate::upstream::Group;

/// A rule's weighted backends, compiled to cumulative range bounds.
#[derive(Debug, Clone)]
pub struct Split {
    groups: Box<[u32]>,
    weights: Box<[u32]>,
    /// `bounds[i]` is the exclusive upper end of backend `i`'s range.
    bounds: Box<[u64]>,
    last_live: Option<usize>,
}

impl Split {
    /// Builds the ranges, in config order, for `(group index, weight)` pairs.
    pub fn new(backends: &[(u32, u32)]) -> Split {
        let total: u128 = backends.iter().map(|&(_, w)| u128::from(w)).sum();
        let mut cumulative: u128 = 0;
        let bounds = backends
            .iter()
            .map(|&(_, w)| {
                cumulative += u128::from(w);
                if total == 0 {
                    0
                } else if cumulative == total {
                    u64::MAX
                } else {
                    ((cumulative << 64) / total) as u64
                }
            })
            .collect();
        Split {
            groups: backends.iter().map(|&(g, _)| g).collect(),
            weights: backends.iter().map(|&(_, w)| w).collect(),
            bounds,
            last_live: backends.iter().rposition(|&(_, w)| w > 0),
        }
    }

    /// The group whose range holds `point`; `None` when every weight is 0.
    pub fn pick(&self, point: u64) -> Option<u32> {
        self.pick_slot(point).map(|i| self.groups[i])
    }

    /// Like [`Split::pick`], but the backend's position in the rule.
    pub fn pick_slot(&self, point: u64) -> Option<usize> {
        let last = self.last_live?;
        Some(self.bounds.iter().position(|&b| point < b).unwrap_or(last))
    }

    /// Like [`Split::pick_slot`], with only the backends `eligible` accepts
    /// sharing the space by weight (used when a group is unavailable, and for
    /// fallback). Keeps the backends' order, so sticky users of the remaining
    /// groups mostly stay put.
    pub fn pick_slot_among(&self, point: u64, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let total: u128 = (0..self.weights.len())
            .filter(|&i| eligible(i))
            .map(|i| u128::from(self.weights[i]))
            .sum();
        if total == 0 {
            return None;
        }
        let target = (u128::from(point) * total) >> 64;
        let mut cumulative = 0u128;
        let mut last = None;
        for i in (0..self.weights.len()).filter(|&i| eligible(i) && self.weights[i] > 0) {
            cumulative += u128::from(self.weights[i]);
            last = Some(i);
            if target < cumulative {
                return Some(i);
            }
        }
        last
    }

    /// Number of backends.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// True when the rule has no backend.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Group index of the backend at `slot`.
    pub fn group_at(&self, slot: usize) -> u32 {
        self.groups[slot]
    }

    /// `(group index, weight)` in config order.
    pub fn backends(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.groups
            .iter()
            .copied()
            .zip(self.weights.iter().copied())
    }
}

/// The group choice for a rule's requests: the split, then what happens
/// when the picked group has no available endpoint. `groups` is the table's,
/// `now_ms` the clock for ejections.
impl Rule {
    /// Picks the first group: the split's choice, or, when that group has no
    /// available endpoint, the others by weight (`redistribute`) or 503
    /// (`fail`).
    pub fn first_slot(
        &self,
        groups: &[Arc<Group>],
        point: u64,
        now_ms: u64,
    ) -> Result<usize, ProxyError> {
        let slot = self.split.pick_slot(point).ok_or(ProxyError::NoBackend)?;
        if self.is_unresolved(slot) {
            return Err(ProxyError::UnresolvedBackend);
        }
        let group = &groups[self.split.group_at(slot) as usize];
        if group.has_available(now_ms) {
            return Ok(slot);
        }
        // An empty group (scaled to zero) is as unavailable as an ejected one.
        let unavailable = if group.endpoints.is_empty() {
            ProxyError::NoEndpoints
        } else {
            ProxyError::NoHealthyEndpoints
        };
        if self.policy.on_unavailable == OnGroupUnavailable::Fail {
            return Err(unavailable);
        }
        self.split
            .pick_slot_among(point, |s| self.usable(groups, s, now_ms))
            .ok_or(unavailable)
    }

    /// The group slot of the attempt after one on `failed_slot` failed, per
    /// the fallback policy; `point` is the sticky hash or a fresh random one.
    pub fn next_slot(
        &self,
        groups: &[Arc<Group>],
        failed_slot: usize,
        point: u64,
        fallback: Fallback,
        now_ms: u64,
    ) -> usize {
        let usable = |slot: usize| self.usable(groups, slot, now_ms);
        let choice = match fallback {
            Fallback::SameGroup => None,
            Fallback::OtherGroups => self
                .split
                .pick_slot_among(point, |s| s != failed_slot && usable(s)),
            Fallback::Any => self.split.pick_slot_among(point, usable),
        };
        choice.unwrap_or(failed_slot)
    }

    /// The group at `slot`.
    pub fn group<'g>(&self, groups: &'g [Arc<Group>], slot: usize) -> &'g Group {
        &groups[self.split.group_at(slot) as usize]
    }

    fn usable(&self, groups: &[Arc<Group>], slot: usize, now_ms: u64) -> bool {
        !self.is_unresolved(slot) && self.group(groups, slot).has_available(now_ms)
    }

    /// True for the slot of an unresolved HTTPRoute backendRef: never
    /// forwarded to, not even as a fallback.
    fn is_unresolved(&self, slot: usize) -> bool {
        self.unresolved.get(slot).copied().unwrap_or(false)
    }
}

/// Where a rule reads its sticky key from.
#[derive(Debug, Clone)]
pub enum StickyKey {
    /// A request header's value.
    Header(HeaderName),
    /// A cookie's value.
    Cookie(Box<str>),
    /// The client's IP address.
    SourceIp,
}

impl StickyKey {
    /// Hash of the request's key; `None` when the request carries none.
    pub fn hash(&self, headers: &HeaderMap, client: IpAddr) -> Option<u64> {
        match self {
            StickyKey::Header(name) => {
                let v = headers.get(name)?.as_bytes();
                (!v.is_empty()).then(|| hash_key(v))
            }
            StickyKey::Cookie(name) => cookie_value(headers, name).map(hash_key),
            StickyKey::SourceIp => Some(match client {
                IpAddr::V4(ip) => hash_key(&ip.octets()),
                IpAddr::V6(ip) => hash_key(&ip.octets()),
            }),
        }
    }
}

/// The value of cookie `name` across all `Cookie` headers.
fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            let (k, v) = (&pair[..eq], &pair[eq + 1..]);
            (k == name.as_bytes() && !v.is_empty()).then_some(v)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::mix64;

    #[test]
    fn weights_map_to_ordered_ranges() {
        let s = Split::new(&[(0, 90), (1, 10)]);
        assert_eq!(s.pick(0), Some(0));
        assert_eq!(s.pick(u64::MAX / 10 * 9 - 1000), Some(0));
        assert_eq!(s.pick(u64::MAX / 10 * 9 + 1000), Some(1));
        assert_eq!(s.pick(u64::MAX), Some(1));
    }

    #[test]
    fn zero_weights_are_never_picked() {
        let s = Split::new(&[(0, 0), (1, 5), (2, 0)]);
        for p in [0, 1, u64::MAX / 2, u64::MAX] {
            assert_eq!(s.pick(p), Some(1));
        }
        assert_eq!(Split::new(&[(0, 0)]).pick(7), None);
    }

    #[test]
    fn unavailable_backends_share_goes_to_the_others() {
        let s = Split::new(&[(0, 80), (1, 10), (2, 10)]);
        let mut counts = [0u32; 3];
        for i in 0..10_000u64 {
            let p = mix64(i);
            counts[s.pick_slot_among(p, |slot| slot != 0).unwrap()] += 1;
        }
        assert_eq!(counts[0], 0);
        assert!((4_500..5_500).contains(&counts[1]), "{counts:?}");
        assert_eq!(s.pick_slot_among(7, |_| false), None);
    }

    #[test]
    fn cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; session=abc".parse().unwrap());
        h.append(header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(cookie_value(&h, "session"), Some(&b"abc"[..]));
        assert_eq!(cookie_value(&h, "b"), Some(&b"2"[..]));
        assert_eq!(cookie_value(&h, "sess"), None);
    }
}
