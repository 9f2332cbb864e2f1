//! cutover: an L7 proxy that splits traffic between versions of a service
//! (stable/canary, blue/green) by weight, header or sticky hash.
//!
//! # Layout: the request flow
//!
//! ```text
//! listener      accept loop, TLS handshake (tls::server: SNI, ALPN, mTLS),
//!               HTTP/1.1 + h2 (h2c or ALPN), limits, drain
//!   -> proxy    handle(): the pipeline, read it first
//!      -> proxy::host          the one host: target authority or Host, validated
//!      -> route::find          host -> virtual host -> rule (Gateway API precedence)
//!      -> route::split         group pick: weighted ranges, sticky hash
//!      -> proxy::forward       hop-by-hop stripping, X-Forwarded-*, request id
//!      -> retry::exchange      attempts: timeouts, budget, backoff, fallback
//!         -> upstream::balance endpoint pick: round robin, least request, hash
//!            (skipping upstream::outlier ejections and health-check failures)
//!         -> upstream::limits  circuit breaking
//!         -> upstream::pool    keep-alive HTTP/1.1 and h2 connections,
//!                              over TLS for groups with `tls` (tls::client)
//!   <- response (streamed; upgrades spliced by proxy::upgrade)
//!   -> metrics::Exchange   at the end of the body: per-version series, live
//!                          latency window, access log line
//! ```
//!
//! Tables change only through [`reload::publish`]: `config` is parsed,
//! compiled into an immutable [`route::RouteTable`] and stored in one
//! `ArcSwap`; each request loads it once. Certificates are read during that
//! compile, so they reload with the table (`reload::certs` watches their
//! files); each connection loads the table once for its TLS config. DNS
//! answers for host-name endpoints (`reload::dns`) republish the same way.
//! `inject` (the `cutover inject` command) is outside the request path, and
//! so is `kubernetes` (controller mode): it watches the API server and
//! publishes through the same change path, layering routes and pod groups on
//! the file's config.
//!
//! Below everything, [`analysis`] is the pure release judge (counts in,
//! verdict out): the anytime-valid canary-versus-baseline tests that
//! progressive rollouts will be steered by.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod analysis;
pub mod app;
pub mod config;
pub mod ctl;
pub mod demo;
pub mod inject;
pub mod kubernetes;
pub mod listener;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod retry;
pub mod rollout;
pub mod route;
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
