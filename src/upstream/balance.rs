//! Endpoint pick inside a group: round robin, least request (power of two
//! choices) or rendezvous hash of the sticky key.

use std::sync::atomic::Ordering;

use rand::Rng;

use super::{Endpoint, Group};
use crate::config::model::Balance;
use crate::hash::mix64;

/// Chooses an endpoint; `None` when the group has none. `key` is the rule's
/// sticky-key hash; without one, `hash` behaves as round robin.
pub fn pick<'g, R: Rng>(group: &'g Group, key: Option<u64>, rng: &mut R) -> Option<&'g Endpoint> {
    pick_where(group, key, rng, |_| true)
}

/// Like [`pick`], among the endpoints `eligible` accepts (available, not
/// already failed for this request); `None` when it accepts none.
pub fn pick_where<'g, R: Rng>(
    group: &'g Group,
    key: Option<u64>,
    rng: &mut R,
    eligible: impl Fn(&Endpoint) -> bool,
) -> Option<&'g Endpoint> {
    let endpoints = &group.endpoints;
    if endpoints.len() == 1 {
        return endpoints.first().filter(|e| eligible(e));
    }
    match (group.balance, key) {
        (Balance::Hash, Some(key)) => rendezvous(endpoints, key, eligible),
        (Balance::LeastRequest, _) => two_choices(endpoints, rng, eligible),
        _ => {
            let start = group.cursor.fetch_add(1, Ordering::Relaxed);
            (0..endpoints.len())
                .map(|i| &endpoints[(start + i) % endpoints.len()])
                .find(|e| eligible(e))
        }
    }
}

/// Power of two random choices on in-flight requests: near-optimal load
/// spread without scanning every endpoint (a scan only when the random picks
/// are not eligible).
fn two_choices<'g, R: Rng>(
    endpoints: &'g [Endpoint],
    rng: &mut R,
    eligible: impl Fn(&Endpoint) -> bool,
) -> Option<&'g Endpoint> {
    let n = endpoints.len();
    let a = rng.random_range(0..n);
    let b = (a + rng.random_range(1..n)) % n;
    let (ea, eb) = (&endpoints[a], &endpoints[b]);
    match (eligible(ea), eligible(eb)) {
        (true, true) if eb.state.in_flight() < ea.state.in_flight() => Some(eb),
        (true, _) => Some(ea),
        (false, true) => Some(eb),
        (false, false) => endpoints
            .iter()
            .filter(|e| eligible(e))
            .min_by_key(|e| e.state.in_flight()),
    }
}

/// Highest random weight: each endpoint scores `mix(key ^ hash(address))`.
/// Removing an endpoint moves only the keys that were on it.
fn rendezvous(
    endpoints: &[Endpoint],
    key: u64,
    eligible: impl Fn(&Endpoint) -> bool,
) -> Option<&Endpoint> {
    endpoints
        .iter()
        .filter(|e| eligible(e))
        .max_by_key(|e| mix64(key ^ e.state.address_hash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::UpstreamProtocol;
    use crate::upstream::UpstreamState;
    use rand::{rngs::SmallRng, SeedableRng};

    fn group(balance: Balance, n: usize) -> Group {
        let reg = UpstreamState::default();
        let eps = (0..n)
            .map(|i| {
                let addr = format!("10.0.0.{i}:80");
                Endpoint {
                    authority: addr.parse().unwrap(),
                    state: reg.get_or_create(&addr),
                }
            })
            .collect();
        Group::new("g".into(), eps, balance, UpstreamProtocol::Http1)
    }

    #[test]
    fn round_robin_cycles() {
        let g = group(Balance::RoundRobin, 3);
        let mut rng = SmallRng::seed_from_u64(1);
        let picks: Vec<_> = (0..6)
            .map(|_| pick(&g, None, &mut rng).unwrap().state.address.to_string())
            .collect();
        assert_eq!(picks[0], picks[3]);
        assert_ne!(picks[0], picks[1]);
        assert_ne!(picks[1], picks[2]);
    }

    #[test]
    fn least_request_avoids_busy_endpoint() {
        let g = group(Balance::LeastRequest, 2);
        let _busy: Vec<_> = (0..5).map(|_| g.endpoints[0].state.start()).collect();
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..50 {
            let e = pick(&g, None, &mut rng).unwrap();
            assert_eq!(&*e.state.address, "10.0.0.1:80");
        }
    }

    #[test]
    fn hash_is_stable_and_moves_few_keys_when_an_endpoint_goes() {
        let g4 = group(Balance::Hash, 4);
        let g3 = group(Balance::Hash, 3);
        let mut rng = SmallRng::seed_from_u64(1);
        let mut moved = 0;
        for key in 0..10_000u64 {
            let k = mix64(key);
            let a = pick(&g4, Some(k), &mut rng).unwrap().state.address.clone();
            let b = pick(&g4, Some(k), &mut rng).unwrap().state.address.clone();
            assert_eq!(a, b);
            let c = pick(&g3, Some(k), &mut rng).unwrap().state.address.clone();
            if a != c {
                assert_eq!(&*a, "10.0.0.3:80", "only keys of the removed endpoint move");
                moved += 1;
            }
        }
        assert!((2000..3000).contains(&moved), "moved {moved}");
    }
}
