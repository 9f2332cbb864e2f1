//! Upstream groups (versions) and their endpoints.
//!
//! A [`Group`] belongs to one table generation. The mutable per-endpoint state
//! ([`EndpointState`]: in-flight count, later outlier state) does not: it lives
//! in the [`EndpointRegistry`], keyed by address, so it survives a reload.

pub mod balance;
pub mod counted;
pub mod pool;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use http::uri::Authority;

use crate::config::model::{Balance, UpstreamProtocol};
use crate::metrics::{GroupSeries, Metrics};
use crate::route::observed::SplitCounter;

/// One version of a service: endpoints plus how to reach them.
#[derive(Debug)]
pub struct Group {
    /// Name from the config (`stable`, `canary`, ...).
    pub name: Box<str>,
    /// Endpoints in config order.
    pub endpoints: Box<[Endpoint]>,
    /// Endpoint pick policy.
    pub balance: Balance,
    /// Upstream protocol.
    pub protocol: UpstreamProtocol,
    /// Round-robin cursor; restarting it on reload is harmless.
    pub(crate) cursor: AtomicUsize,
    /// Group-level metric handles (ejections, overflows), kept by name.
    pub metrics: Arc<GroupSeries>,
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
}

impl EndpointState {
    /// Requests currently sent to this endpoint and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
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

/// Endpoint state by address. Locked only while a table is compiled, never on
/// the request path. Holds weak references: state dies with the last table
/// that uses the endpoint.
#[derive(Debug, Default)]
pub struct EndpointRegistry {
    by_address: Mutex<HashMap<Box<str>, Weak<EndpointState>>>,
    /// Observed-split counters by `route/rule/group`, carried over the same way.
    split_counters: Mutex<HashMap<String, Weak<SplitCounter>>>,
    /// Metric handles by config name, carried over the same way.
    pub metrics: Arc<Metrics>,
}

impl EndpointRegistry {
    /// A registry whose tables record into `metrics`.
    pub fn with_metrics(metrics: Arc<Metrics>) -> Self {
        EndpointRegistry {
            by_address: Mutex::default(),
            split_counters: Mutex::default(),
            metrics,
        }
    }

    /// The state for `address`, shared with older tables if they have it.
    pub fn get_or_create(&self, address: &str) -> Arc<EndpointState> {
        let mut map = self
            .by_address
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(state) = map.get(address).and_then(Weak::upgrade) {
            return state;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let state = Arc::new(EndpointState {
            address: address.into(),
            address_hash: crate::route::split::hash_key(address.as_bytes()),
            in_flight: AtomicUsize::new(0),
        });
        map.insert(address.into(), Arc::downgrade(&state));
        state
    }
}

impl EndpointRegistry {
    /// The observed-split counter of `group` in `route/rule`.
    pub fn split_counter(&self, route: &str, rule: &str, group: &str) -> Arc<SplitCounter> {
        let key = format!("{route}/{rule}/{group}");
        let mut map = self
            .split_counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(c) = map.get(&key).and_then(Weak::upgrade) {
            return c;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let c = Arc::new(SplitCounter::default());
        map.insert(key, Arc::downgrade(&c));
        c
    }
}

impl Group {
    /// Assembles a group; used by the compiler.
    pub fn new(
        name: Box<str>,
        endpoints: Vec<Endpoint>,
        balance: Balance,
        protocol: UpstreamProtocol,
        metrics: Arc<GroupSeries>,
    ) -> Group {
        Group {
            name,
            endpoints: endpoints.into(),
            balance,
            protocol,
            cursor: AtomicUsize::new(0),
            metrics,
        }
    }
}
