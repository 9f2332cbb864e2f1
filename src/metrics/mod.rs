//! Per-version observability: Prometheus series (`/metrics`), live latency
//! quantiles (`/v1/stats`) and the access log, all recorded once per request
//! at the end of `proxy::handle`.
//!
//! # How a request is measured
//!
//! The compiler attaches handles to each rule ([`RuleMetrics`]) and group
//! ([`GroupSeries`]), taken from [`Series`] by config name; `handle()` starts
//! a `proxy::record::RequestRecord`, the pipeline fills in its [`Chosen`] (rule, backend,
//! endpoint, request id), and the record writes itself when the response
//! body ends: a few relaxed atomic adds, one uncontended shard lock for the
//! live window, and the access log line if this request is logged.
//!
//! # For the resilience work: what to call
//!
//! | event | call |
//! |---|---|
//! | attempt sent (first try, retry, fallback) | `chosen.attempt(&rule.metrics, backend, endpoint)` |
//! | retry sent | `rule.metrics.route.retry()` |
//! | fell back to another group | `rule.metrics.route.fallback()` |
//! | retry refused by the budget | `rule.metrics.route.budget_exhausted()` |
//! | endpoint ejected / back | `group.metrics.ejection()` / `group.metrics.ejection_ended()` |
//! | circuit-breaker refusal | `group.metrics.overflow(Limit::MaxRequests)` |
//! | upstream connection open | counted by `upstream::counted::CountingConnector`, through which `upstream::pool` dials |
//! | upstream request / connect | `group.metrics.upstream_request()` / `group.metrics.upstream_connect()` in `upstream::pool` |
//!
//! Each is one relaxed atomic add on a handle the table already holds. New
//! `ProxyError` variants need nothing here: the `reason` label is their
//! `label()`, up to 12 distinct reasons per series.

pub mod access_log;
pub mod arms;
pub mod chosen;
pub mod exposition;
pub mod histogram;
pub mod log_writer;
pub mod mirror;
pub mod resilience;
pub mod rollout;
pub mod series;
pub mod stats;
pub mod window;

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::config::model::AccessLogConfig;
pub use chosen::Chosen;
pub use series::{GroupSeries, RuleGroupSeries, RuleMetrics, Series};

/// Process-wide metrics: the series by name, the connection gauges, and the
/// scrape encoder.
#[derive(Debug)]
pub struct Metrics {
    enabled: bool,
    /// Every series by config name.
    pub series: Arc<Series>,
    registry: Registry,
    downstream: Gauge,
    /// Client connections parked (idle HTTP/1.1 without hyper).
    parked: Gauge,
    upstream: Gauge,
    /// By `listener` (config name) and `reason` (a fixed set): bounded.
    tls_failures: Family<Vec<(String, String)>, Counter>,
    /// Rollout steps, verdicts, rollbacks and promotions.
    pub rollout: rollout::RolloutSeries,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(true)
    }
}

/// What a compiled table carries for measuring its requests.
#[derive(Debug)]
pub struct TableMetrics {
    /// Off with `cutover run --no-metrics`: requests record nothing (the
    /// access log still follows its own setting).
    pub enabled: bool,
    /// Where requests no rule matched are counted.
    pub unmatched: Arc<RuleGroupSeries>,
    /// The access log setting of this table's config.
    pub access_log: AccessLogConfig,
}

/// Keeps a connection gauge raised while held.
#[derive(Debug)]
pub struct ConnectionGuard(Gauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The scrape formats `/metrics` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/openmetrics-text` (what Prometheus asks for).
    OpenMetrics,
    /// `text/plain; version=0.0.4` (anything else: curl, promtool).
    Prometheus,
}

impl Format {
    /// Chosen from the request's `Accept` header.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// The response `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

impl Metrics {
    /// Metrics for a process; `enabled: false` makes requests record nothing.
    pub fn new(enabled: bool) -> Metrics {
        crate::clock::uptime();
        let series = Arc::new(Series::default());
        let (downstream, upstream) = (Gauge::default(), Gauge::default());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(exposition::SeriesCollector(Arc::clone(&series))));
        registry.register(
            "cutover_downstream_connections_active",
            "Open client connections",
            downstream.clone(),
        );
        let parked = Gauge::default();
        registry.register(
            "cutover_downstream_connections_parked",
            "Idle client connections parked: the socket only, no HTTP state or buffers",
            parked.clone(),
        );
        registry.register(
            "cutover_upstream_connections_active",
            "Open upstream connections",
            upstream.clone(),
        );
        let tls_failures = Family::default();
        registry.register(
            "cutover_tls_handshake_failures",
            "Client TLS handshakes that failed, by listener and reason",
            tls_failures.clone(),
        );
        let rollout = rollout::RolloutSeries::default();
        rollout.register(&mut registry);
        Metrics {
            enabled,
            series,
            registry,
            downstream,
            parked,
            upstream,
            tls_failures,
            rollout,
        }
    }

    /// What a table compiled now should carry.
    pub fn for_table(&self, access_log: AccessLogConfig) -> TableMetrics {
        TableMetrics {
            enabled: self.enabled,
            unmatched: Arc::clone(&self.series.unmatched),
            access_log,
        }
    }

    /// Counts a client connection until the guard drops.
    pub fn downstream_connection(&self) -> ConnectionGuard {
        self.downstream.inc();
        ConnectionGuard(self.downstream.clone())
    }

    /// Counts a parked client connection until the guard drops.
    pub fn parked_connection(&self) -> ConnectionGuard {
        self.parked.inc();
        ConnectionGuard(self.parked.clone())
    }

    /// Client connections parked now (see [`Metrics::parked_connection`]):
    /// open, but holding no buffers.
    pub fn downstream_parked(&self) -> i64 {
        self.parked.get()
    }

    /// Client connections open now (the gauge of [`Metrics::downstream_connection`]),
    /// e.g. to notice that a burst of connections ended.
    pub fn downstream_open(&self) -> i64 {
        self.downstream.get()
    }

    /// Counts a failed client TLS handshake; `reason` is one of a fixed set
    /// (see `listener::tls`), so the series stay few.
    pub fn tls_handshake_failed(&self, listener: &str, reason: &'static str) {
        self.tls_failures
            .get_or_create(&vec![
                ("listener".to_string(), listener.to_string()),
                ("reason".to_string(), reason.to_string()),
            ])
            .inc();
    }

    /// Counts an upstream connection until the guard drops.
    pub fn upstream_connection(&self) -> ConnectionGuard {
        self.upstream.inc();
        ConnectionGuard(self.upstream.clone())
    }

    /// The scrape: every series plus the live table's figures.
    pub fn encode(&self, table: TableFigures, format: Format) -> String {
        let mut text = String::new();
        let mut per_scrape = Registry::default();
        per_scrape.register_collector(Box::new(table));
        let written = encode_registry(&mut text, &self.registry)
            .and_then(|()| encode_registry(&mut text, &per_scrape))
            .and_then(|()| encode_eof(&mut text));
        if let Err(e) = written {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        match format {
            Format::OpenMetrics => text,
            Format::Prometheus => exposition::to_prometheus_text(&text),
        }
    }
}

/// The families read from the live table at scrape time (owned: a
/// registry's collectors must be `'static`); the table fills them in.
#[derive(Debug)]
pub struct TableFigures {
    /// The table's generation.
    pub generation: u64,
    /// Config file reloads rejected so far.
    pub reload_errors: u64,
    /// `(route, rule, group, weight)`.
    pub weights: Vec<(String, String, String, u32)>,
}

impl Collector for TableFigures {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        exposition::gauge_value(
            &mut enc,
            "cutover_config_generation",
            "Generation of the routing table in service.",
            i64::try_from(self.generation).unwrap_or(i64::MAX),
        )?;
        exposition::counter_value(
            &mut enc,
            "cutover_config_reload_errors",
            "Config file reloads rejected as invalid.",
            self.reload_errors,
        )?;
        let rows = self.weights.iter().map(|(route, rule, group, w)| {
            let labels = [
                ("route", route.as_str()),
                ("rule", rule.as_str()),
                ("group", group.as_str()),
            ];
            (labels, i64::from(*w))
        });
        exposition::gauge(
            &mut enc,
            "cutover_backend_weight",
            "Effective weight of each group in each rule (share = weight / sum of the rule's weights).",
            rows,
        )
    }
}
