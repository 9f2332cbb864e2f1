//! Endpoints that follow DNS: the last good addresses of each `host:port`
//! endpoint, which the compiler expands into one endpoint per address.
//!
//! `reload::dns` does the lookups and republishes through the change path;
//! this table only holds their results, so compiling stays synchronous and
//! `cutover check` (an empty table) resolves nothing.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use http::uri::Authority;

/// What a group resolves: its host-name endpoints and the TTL bounds.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// `host:port` endpoints whose host is a name, in config order.
    pub names: Box<[Box<str>]>,
    /// Shortest time between two lookups of a name.
    pub min_ttl: Duration,
    /// Longest time between two lookups of a name.
    pub max_ttl: Duration,
}

/// The last good answer for one `host:port`.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// Every A/AAAA address, with the endpoint's port, sorted.
    pub addresses: Vec<SocketAddr>,
    /// When the last lookup (good or failed) finished.
    pub resolved_at: SystemTime,
    /// When `addresses` were last confirmed by a good answer.
    pub good_at: SystemTime,
    /// Whether the last lookup failed (the addresses are then the older ones).
    pub failing: bool,
}

/// Resolved addresses by `host:port`. Locked by the compiler and the DNS
/// task only, never on the request path.
#[derive(Debug, Default)]
pub struct DnsTable {
    names: Mutex<HashMap<Box<str>, Resolved>>,
}

/// Whether `authority` names a host to resolve: not an IP literal, and not
/// `localhost` (the loopback; splitting it into 127.0.0.1 and ::1 would add
/// an endpoint the app may not listen on).
pub fn is_name(authority: &Authority) -> bool {
    let host = authority.host();
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    literal.parse::<IpAddr>().is_err()
        && !host.eq_ignore_ascii_case("localhost")
        && !host.to_ascii_lowercase().ends_with(".localhost")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl DnsTable {
    /// The last good addresses of `name`, if a lookup ever succeeded.
    pub fn addresses(&self, name: &str) -> Option<Vec<SocketAddr>> {
        lock(&self.names).get(name).map(|r| r.addresses.clone())
    }

    /// Records a good answer; true if the addresses changed (the table
    /// must be recompiled).
    pub fn answer(&self, name: &str, mut addresses: Vec<SocketAddr>, now: SystemTime) -> bool {
        addresses.sort();
        addresses.dedup();
        let mut names = lock(&self.names);
        let changed = names.get(name).is_none_or(|r| r.addresses != addresses);
        names.insert(
            name.into(),
            Resolved {
                addresses,
                resolved_at: now,
                good_at: now,
                failing: false,
            },
        );
        changed
    }

    /// Records a failed lookup: the last good addresses stay. True if this
    /// is the first failure in a row (the one to log).
    pub fn failure(&self, name: &str, now: SystemTime) -> bool {
        let mut names = lock(&self.names);
        match names.get_mut(name) {
            Some(r) => {
                r.resolved_at = now;
                !std::mem::replace(&mut r.failing, true)
            }
            None => {
                names.insert(
                    name.into(),
                    Resolved {
                        addresses: Vec::new(),
                        resolved_at: now,
                        good_at: SystemTime::UNIX_EPOCH,
                        failing: true,
                    },
                );
                true
            }
        }
    }

    /// Whether the last lookup of `name` failed.
    pub fn is_failing(&self, name: &str) -> bool {
        lock(&self.names).get(name).is_some_and(|r| r.failing)
    }

    /// Forgets names no group uses any more.
    pub fn retain(&self, live: &dyn Fn(&str) -> bool) {
        lock(&self.names).retain(|name, _| live(name));
    }

    /// The state of `name`, for `/v1/status`.
    pub fn get(&self, name: &str) -> Option<Resolved> {
        lock(&self.names).get(name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_hosts_that_are_not_literals_or_localhost() {
        let name = |s: &str| is_name(&s.parse().unwrap());
        assert!(name("web.default.svc.cluster.local:80"));
        assert!(name("web:8080"));
        assert!(!name("10.0.0.5:8080"));
        assert!(!name("[::1]:8080"));
        assert!(!name("localhost:8080"));
        assert!(!name("app.localhost:8080"));
    }

    #[test]
    fn a_failure_keeps_the_last_good_addresses_and_is_reported_once() {
        let t = DnsTable::default();
        let now = crate::clock::wall_now();
        let a: SocketAddr = "127.0.0.2:80".parse().unwrap();
        let b: SocketAddr = "127.0.0.3:80".parse().unwrap();
        assert!(t.answer("web:80", vec![b, a, a], now));
        assert_eq!(t.addresses("web:80"), Some(vec![a, b]));
        assert!(!t.answer("web:80", vec![a, b], now), "same set");
        assert!(t.failure("web:80", now));
        assert!(!t.failure("web:80", now), "logged once");
        assert_eq!(t.addresses("web:80"), Some(vec![a, b]));
        assert!(!t.answer("web:80", vec![a, b], now));
        assert!(!t.is_failing("web:80"));
    }

    /// The compiler: a resolved name is one endpoint per address, state
    /// shared by address with the previous table; a literal is unchanged;
    /// a TLS group without `server_name` keeps the name.
    #[test]
    fn compile_expands_resolved_names_and_carries_state_by_address() {
        use crate::compile::compile;
        use crate::config::parse_yaml;
        let yaml = "listeners: [{name: public, address: \"127.0.0.1:0\"}]\n\
            groups:\n  \
              web: {endpoints: [\"web:80\", \"10.0.0.9:80\"]}\n  \
              secure: {endpoints: [\"web:80\"], tls: {}}\n\
            routes: [{name: r, rules: [{name: all, backends: [{group: web}, {group: secure}]}]}]\n";
        let cfg = parse_yaml(yaml).unwrap();
        let inherited = crate::route::Inherited::default();
        let registry = &inherited.upstream;
        let addresses = |t: &crate::route::RouteTable, g: usize| -> Vec<String> {
            t.groups[g]
                .endpoints
                .iter()
                .map(|e| e.state.address.to_string())
                .collect()
        };
        let first = compile(&cfg, &inherited, 1).unwrap();
        let (secure, web) = (0, 1);
        assert_eq!(addresses(&first, web), ["web:80", "10.0.0.9:80"]);
        let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let b: SocketAddr = "10.0.0.9:80".parse().unwrap();
        registry
            .dns
            .answer("web:80", vec![a], crate::clock::wall_now());
        let second = compile(&cfg, &inherited, 2).unwrap();
        assert_eq!(addresses(&second, web), ["10.0.0.1:80", "10.0.0.9:80"]);
        assert_eq!(addresses(&second, secure), ["web:80"], "SNI needs the name");
        registry
            .dns
            .answer("web:80", vec![a, b], crate::clock::wall_now());
        let third = compile(&cfg, &inherited, 3).unwrap();
        assert_eq!(
            addresses(&third, web),
            ["10.0.0.1:80", "10.0.0.9:80"],
            "no duplicate"
        );
        let state =
            |t: &crate::route::RouteTable| std::sync::Arc::clone(&t.groups[web].endpoints[0].state);
        assert!(std::sync::Arc::ptr_eq(&state(&second), &state(&third)));
    }
}
