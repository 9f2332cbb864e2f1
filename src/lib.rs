//! cutover: an L7 proxy that splits traffic between versions of a service
//! (stable/canary, blue/green) by weight, header or sticky hash.
//!
//! # Layout: the request flow
//!
//! Each module calls only downward; nothing on the request path calls back
//! up (`python3 ../shared/tools/modcycles.py listener,proxy,retry,upstream,route`
//! prints no mutual pair and no cycle).
//!
//! ```text
//! listener      accept loop, TLS handshake (tls::server: SNI, ALPN, mTLS),
//!               HTTP/1.1 + h2 (h2c or ALPN), limits, drain; reads serving::Serving
//!   -> proxy    handle(): the pipeline, read it first
//!      -> proxy::host          the one host: target authority or Host, validated
//!      -> proxy::match_head    route::find: host -> virtual host -> rule
//!                              (Gateway API precedence); /v1/explain calls it too
//!      -> route::split         group pick (Rule::first_slot): weighted ranges,
//!                              sticky hash, redistribution when a group is down
//!      -> proxy::forward       hop-by-hop stripping, X-Forwarded-*, request id
//!      -> retry::send          attempts: timeouts, budget, backoff, fallback
//!                              (Rule::next_slot), retry::aim_at per endpoint
//!         -> upstream::balance endpoint pick: round robin, least request, hash
//!            (skipping upstream::outlier ejections and health-check failures)
//!         -> upstream::limits  circuit breaking (group admission, endpoint
//!                              connections)
//!         -> upstream::pool    keep-alive HTTP/1.1 and h2 connections,
//!                              over TLS for groups with `tls` (tls::client)
//!   <- response (streamed; upgrades spliced by proxy::upgrade)
//!   -> proxy::record       at the end of the body: per-version series, live
//!                          latency window, access log line
//!
//! below them all: error (ProxyError), body (request and response bodies),
//! clock (tokio's clock and the RNG), hash, carry (state kept by key across
//! tables), config (the YAML model), metrics (series and handles)
//! ```
//!
//! Tables change only through [`reload::change`] ([`reload::Tables`] owns
//! the bookkeeping; [`reload::replace_base`] replaces the base config):
//! `config` is parsed, compiled into an immutable [`route::RouteTable`] and
//! stored in one `ArcSwap` that [`serving::Serving`] shares with the
//! listeners; each request loads it once. A new table inherits endpoint,
//! pool, budget and counter state by key ([`route::Inherited`]).
//! Certificates are read during that compile, so they reload with the table
//! (`reload::certs` watches their files); each connection loads the table
//! once for its TLS config. DNS answers for host-name endpoints
//! (`reload::dns`) republish the same way. `app` only wires these together;
//! the control plane (`admin`, `rollout`) changes tables through `reload`.
//! `inject` (the `cutover inject` command) is outside the request path, and
//! so is `kubernetes` (controller mode): it watches the API server and
//! publishes through the same change path, layering routes and pod groups on
//! the file's config.
//!
//! Below everything, [`analysis`] is the pure release judge (counts in,
//! verdict out): the anytime-valid canary-versus-baseline tests that
//! progressive rollouts are steered by.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod analysis;
pub mod app;
pub mod body;
pub mod carry;
pub mod clock;
pub mod compile;
pub mod config;
pub mod ctl;
pub mod demo;
pub mod error;
pub mod hash;
pub mod inject;
pub mod kubernetes;
pub mod listener;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod retry;
pub mod rollout;
pub mod route;
pub mod serving;
pub mod tls;
pub mod upstream;

/// The property tests' settings: `cases` per test, and failures kept next
/// to the test's source file (`*.proptest-regressions`) rather than in a
/// top-level folder.
#[cfg(test)]
pub(crate) fn prop_config(cases: u32) -> proptest::test_runner::Config {
    use proptest::test_runner::{Config, FileFailurePersistence};
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::default()
    }
}
