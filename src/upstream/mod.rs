//! Upstream groups (versions) and their endpoints.
//!
//! A [`Group`] belongs to one table generation. The mutable per-endpoint state
//! ([`EndpointState`]: in-flight count, outlier and health state) does not: it
//! lives in the [`UpstreamState`], keyed by address, so it survives a
//! reload; so do admission limits, DNS answers and each endpoint's
//! connection pool of unchanged settings (a pool no published table uses
//! leaves the cache, and closes with the last table that holds it).

pub mod balance;
pub mod counted;
pub mod dns;
pub mod health;
pub mod limits;
pub mod outlier;
pub mod pool;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::Uri;

use crate::carry::WeakMap;
use crate::config::model::{
    Balance, Dur, HealthCheckConfig, LimitsConfig, OutlierConfig, UpstreamProtocol,
};
use crate::metrics::{GroupSeries, Metrics};
use crate::tls::client::UpstreamTls;
use counted::CountingConnector;
use limits::Admission;
use outlier::OutlierState;
use pool::{Dialer, EndpointPool, IdleLimits};

/// One version of a service: endpoints plus how to reach them.
#[derive(Debug)]
pub struct Group {
    /// Name from the config (`stable`, `canary`, ...).
    pub name: Box<str>,
    /// Endpoints in config order (shared with the next table when the
    /// group is unchanged, see [`Group::share`]).
    pub endpoints: Arc<[Endpoint]>,
    /// Endpoint pick policy.
    pub balance: Balance,
    /// Upstream protocol.
    pub protocol: UpstreamProtocol,
    /// Round-robin cursor; restarting it on reload is harmless.
    pub(crate) cursor: AtomicUsize,
    /// Resilience settings.
    pub policy: GroupPolicy,
    /// Each endpoint's connection pool, by endpoint index.
    pub pools: Arc<[Arc<EndpointPool>]>,
    /// `max_requests` / `max_pending` admission, shared across reloads.
    pub admission: Arc<Admission>,
    /// Group-level metric handles (ejections, overflows), kept by name.
    pub metrics: Arc<GroupSeries>,
    /// The host-name endpoints `reload::dns` resolves for this group.
    pub discovery: dns::Discovery,
}

/// A group's resilience settings, compiled.
#[derive(Debug, Clone, Default)]
pub struct GroupPolicy {
    /// Passive ejection; `None` when disabled.
    pub outlier: Option<OutlierConfig>,
    /// Circuit-breaking limits.
    pub limits: LimitsConfig,
    /// Active health check, if configured.
    pub health_check: Option<HealthCheckConfig>,
    /// Connect timeout.
    pub connect_timeout: Option<Dur>,
    /// Longest gap between response body frames (`None`: no limit, only for
    /// groups built without a config).
    pub body_idle_timeout: Option<Dur>,
    /// TLS to the endpoints, if the group has a `tls` block.
    pub tls: Option<Arc<UpstreamTls>>,
    /// Idle connections kept per endpoint.
    pub idle: IdleLimits,
}

impl Default for IdleLimits {
    fn default() -> Self {
        IdleLimits {
            timeout: Duration::from_secs(60),
            max: 128,
        }
    }
}

/// One upstream address, as a table sees it.
#[derive(Debug)]
pub struct Endpoint {
    /// `host:port`, pre-parsed so building the upstream URI is a clone.
    pub authority: Authority,
    /// Shared state that outlives the table.
    pub state: Arc<EndpointState>,
}

/// Per-endpoint counters shared by every table generation.
#[derive(Debug)]
pub struct EndpointState {
    /// `host:port`.
    pub address: Box<str>,
    /// Hash of the address, for rendezvous hashing.
    pub address_hash: u64,
    in_flight: AtomicUsize,
    /// Passive outlier state.
    pub outlier: OutlierState,
    /// Result of the active health check (true until a check says otherwise).
    pub healthy: AtomicBool,
    /// Set while a health-check task runs for this endpoint.
    pub(crate) checked: AtomicBool,
}

impl EndpointState {
    /// Requests currently sent to this endpoint and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether the endpoint may be picked: not ejected, and not failing its
    /// active health check.
    pub fn available(&self, now_ms: u64) -> bool {
        self.healthy.load(Ordering::Relaxed) && self.outlier.available(now_ms)
    }

    /// Counts a request until the guard drops.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }
}

/// Decrements the endpoint's in-flight count on drop, whatever the outcome.
#[derive(Debug)]
pub struct InFlight(Arc<EndpointState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The upstream side's state that outlives a table, each kind by its key:
/// endpoint state by address, connection pools by settings, admission
/// limits by group, DNS answers by host name. Locked only while a table is
/// compiled, never on the request path; weak references, so state dies with
/// the last table that uses it.
#[derive(Debug, Default)]
pub struct UpstreamState {
    endpoints: WeakMap<Box<str>, EndpointState>,
    /// Connection pools by endpoint address and settings (protocol,
    /// connect timeout, TLS fingerprint, idle limits). A rotated certificate
    /// or a new `connect_timeout` makes a new one; a pool (and its idle
    /// connections) closes with the last table that uses it, so a publish
    /// never walks the pools of the tables it replaces.
    clients: WeakMap<PoolKey, EndpointPool>,
    /// Admission limits by group name and limit values.
    admissions: WeakMap<(String, u32, u32), Admission>,
    /// Metric handles by config name, carried over the same way.
    pub metrics: Arc<Metrics>,
    /// The last good addresses of host-name endpoints (empty until the DNS
    /// task resolves them; `cutover check` never does).
    pub dns: dns::DnsTable,
}

/// Protocol, connect timeout, TLS fingerprint, idle limits.
type ClientKey = (UpstreamProtocol, Option<Dur>, Option<u64>, IdleLimits);

/// Endpoint address and its group's connection settings.
type PoolKey = (Box<str>, ClientKey);

fn client_key(protocol: UpstreamProtocol, policy: &GroupPolicy) -> ClientKey {
    (
        protocol,
        policy.connect_timeout,
        policy.tls.as_ref().map(|t| t.fingerprint),
        policy.idle,
    )
}

/// What the connector dials: the endpoint with the scheme of its TLS setting.
fn target_uri(authority: &Authority, tls: bool) -> Uri {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(if tls { Scheme::HTTPS } else { Scheme::HTTP });
    parts.authority = Some(authority.clone());
    parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    Uri::from_parts(parts).expect("scheme, authority and path") // ok: a scheme, a parsed authority and "/" always make a URI
}

impl UpstreamState {
    /// State whose tables record into `metrics`.
    pub fn with_metrics(metrics: Arc<Metrics>) -> Self {
        UpstreamState {
            metrics,
            ..UpstreamState::default()
        }
    }

    /// The state for `address`, shared with older tables if they have it.
    pub fn get_or_create(&self, address: &str) -> Arc<EndpointState> {
        self.endpoints
            .get_or_make(address.into(), || EndpointState {
                address: address.into(),
                address_hash: crate::hash::hash_key(address.as_bytes()),
                in_flight: AtomicUsize::new(0),
                outlier: OutlierState::default(),
                healthy: AtomicBool::new(true),
                checked: AtomicBool::new(false),
            })
    }
}

impl UpstreamState {
    /// The pool of `endpoint` for a group with `protocol` and `policy`.
    /// Groups with equal settings (and equal certificate files) share it;
    /// changed files make a new one, so connections made with the old ones
    /// are not reused. `connector` is the group's [`Self::connector`]: a
    /// new pool dials with a clone of it (its settings shared, not copied:
    /// 50,000 endpoints would otherwise hold 50,000 copies).
    pub fn pool(
        &self,
        endpoint: &Endpoint,
        protocol: UpstreamProtocol,
        policy: &GroupPolicy,
        connector: &CountingConnector,
    ) -> Arc<EndpointPool> {
        let key = (endpoint.state.address.clone(), client_key(protocol, policy));
        let make = || {
            let target = target_uri(&endpoint.authority, policy.tls.is_some());
            let dialer = Dialer::new(connector.clone(), target, protocol == UpstreamProtocol::H2);
            EndpointPool::new(dialer, policy.idle)
        };
        self.clients.get_or_make_arc(key, make)
    }

    /// What the pools of a group with `policy` dial with: TCP with its
    /// connect timeout, counted, and TLS if set.
    pub fn connector(&self, policy: &GroupPolicy) -> CountingConnector {
        let timeout = policy.connect_timeout.map(|d| d.0);
        CountingConnector::new(
            pool::tcp_connector(timeout),
            Some(Arc::clone(&self.metrics)),
        )
        .with_tls(policy.tls.clone())
        .with_handshake_timeout(timeout.unwrap_or(Duration::from_secs(10)))
    }

    /// How many pools are open: one per endpoint and distinct settings
    /// (protocol, connect timeout, TLS, idle limits) of the live table, plus
    /// those of older tables still serving requests. For tests and
    /// diagnostics.
    pub fn cached_clients(&self) -> usize {
        self.clients.live()
    }

    /// The admission limits of group `name`.
    pub fn admission(&self, name: &str, limits: &LimitsConfig) -> Arc<Admission> {
        let key = (name.to_string(), limits.max_requests, limits.max_pending);
        self.admissions.get_or_make(key, || Admission::new(limits))
    }
}

impl Group {
    /// Assembles a group with default policy; used by tests and benches.
    pub fn new(
        name: Box<str>,
        endpoints: Vec<Endpoint>,
        balance: Balance,
        protocol: UpstreamProtocol,
    ) -> Group {
        let registry = UpstreamState::default();
        Group::with_policy(
            name,
            endpoints,
            balance,
            protocol,
            GroupPolicy::default(),
            &registry,
        )
    }

    /// Assembles a group; used by the compiler.
    pub fn with_policy(
        name: Box<str>,
        endpoints: Vec<Endpoint>,
        balance: Balance,
        protocol: UpstreamProtocol,
        policy: GroupPolicy,
        registry: &UpstreamState,
    ) -> Group {
        let connector = registry.connector(&policy);
        Group {
            pools: endpoints
                .iter()
                .map(|e| registry.pool(e, protocol, &policy, &connector))
                .collect(),
            admission: registry.admission(&name, &policy.limits),
            metrics: registry.metrics.series.group(&name),
            name,
            endpoints: endpoints.into(),
            balance,
            protocol,
            cursor: AtomicUsize::new(0),
            policy,
            discovery: dns::Discovery::default(),
        }
    }

    /// The settings part of this group's pool keys.
    #[cfg(test)]
    fn client_key(&self) -> ClientKey {
        client_key(self.protocol, &self.policy)
    }

    /// Whether any endpoint may take traffic now.
    pub fn has_available(&self, now_ms: u64) -> bool {
        self.endpoints.iter().any(|e| e.state.available(now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::compile;
    use crate::config::parse_yaml;
    use std::collections::HashSet;

    /// A fresh self-signed CA certificate, as PEM: a rotation.
    fn ca_pem() -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    fn cached_keys(registry: &UpstreamState) -> HashSet<ClientKey> {
        registry
            .clients
            .live_keys()
            .into_iter()
            .map(|k| k.1)
            .collect()
    }

    /// Each compile of a rotated CA file or a new connect timeout makes a
    /// new pool; once the previous table is gone the cache holds exactly
    /// the pools of the live one, however many rotations came before.
    #[test]
    fn rotations_and_timeout_changes_leave_only_the_live_pools() {
        let dir = std::env::temp_dir().join(format!("cutover-clients-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        let inherited = crate::route::Inherited::default();
        let registry = &inherited.upstream;
        let mut fingerprints = HashSet::new();
        let mut previous = None;
        for generation in 1..=8u64 {
            std::fs::write(&ca, ca_pem()).unwrap();
            let timeout = if generation % 3 == 0 { "2s" } else { "1s" };
            let yaml = format!(
                "listeners: [{{name: public, address: \"127.0.0.1:0\"}}]\n\
                 groups:\n  \
                   secure: {{endpoints: [\"127.0.0.1:9\"], tls: {{ca: \"{}\"}}}}\n  \
                   plain: {{endpoints: [\"127.0.0.1:9\"], connect_timeout: {timeout}}}\n  \
                   multiplexed: {{endpoints: [\"127.0.0.1:9\"], protocol: h2}}\n\
                 routes: [{{name: web, rules: [{{name: all, backends: \
                   [{{group: secure, weight: 1}}, {{group: plain, weight: 1}}, {{group: multiplexed, weight: 1}}]}}]}}]\n",
                ca.display()
            );
            let table = compile(&parse_yaml(&yaml).unwrap(), &inherited, generation).unwrap();
            // While the previous table lives, its pools do: the rotated
            // CA's pool is new (and the plain group's, when its timeout
            // changed), the others are shared with it.
            if let Some((previous, was)) = previous.take() {
                let new = if was == timeout { 1 } else { 2 };
                let open = cached_keys(registry).len();
                assert_eq!(open, 3 + new, "generation {generation}");
                drop::<crate::route::RouteTable>(previous);
            }
            let live: HashSet<ClientKey> = table.groups.iter().map(|g| g.client_key()).collect();
            assert_eq!(live.len(), 3, "three distinct pools");
            assert_eq!(cached_keys(registry), live, "generation {generation}");
            assert_eq!(registry.cached_clients(), 3);
            fingerprints.extend(table.groups.iter().filter_map(|g| g.client_key().2));
            previous = Some((table, timeout));
        }
        assert_eq!(fingerprints.len(), 8, "every rotation made a new pool");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
