//! The YAML configuration as the user writes it: plain serde types, no logic.
//!
//! Shapes follow Kubernetes Gateway API `HTTPRoute` (matches, backends, header
//! modifiers) so that people and controllers who know Gateway API know this.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::resilience::{
    BackoffConfig, BudgetConfig, Dur, Fallback, HealthCheckConfig, Limit, LimitsConfig,
    OnGroupUnavailable, OutlierConfig, RetryConfig, RetryOn, Size, TimeoutsConfig,
};
pub use super::tls::{
    CertificateConfig, ClientAuthConfig, GroupTlsConfig, ListenerTlsConfig, TlsVersion,
};

/// The whole file. Unknown fields are errors so that a typo never silently
/// changes routing.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where traffic enters: each listener serves a set of routes.
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
    /// Upstream groups (versions) by name: `stable`, `canary`, `blue`, ...
    #[serde(default)]
    pub groups: BTreeMap<String, GroupConfig>,
    /// Routes: hostnames plus ordered rules.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// One JSON line per request on stdout: off (default), on or sampled.
    #[serde(default)]
    pub access_log: AccessLogConfig,
    /// Rollout plans for rules named by route and rule, such as the rules
    /// of an HTTPRoute, which have no `rollout:` field of their own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollouts: Vec<super::rollout::RolloutBinding>,
}

/// Access log settings. Off by default: a busy proxy's log is the largest
/// thing it writes.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// `off`, `on`, or `sampled` (a random `sample_rate` share of requests).
    #[serde(default)]
    pub mode: AccessLogMode,
    /// Share of requests logged in `sampled` mode, 0..=1; default 0.01.
    #[serde(default = "default_sample_rate")]
    pub sample_rate: f64,
    /// Log the query string too (it may carry tokens or personal data).
    #[serde(default)]
    pub include_query: bool,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        AccessLogConfig {
            mode: AccessLogMode::Off,
            sample_rate: default_sample_rate(),
            include_query: false,
        }
    }
}

fn default_sample_rate() -> f64 {
    0.01
}

/// Which requests the access log shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogMode {
    /// None.
    #[default]
    Off,
    /// Every request.
    On,
    /// A random `sample_rate` share.
    Sampled,
}

/// One listening socket (HTTP/1.1 and h2c on the same port, or HTTPS with `tls`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Name used in logs and errors.
    pub name: String,
    /// `ip:port` to bind, e.g. `0.0.0.0:8080` or `[::1]:8080`.
    pub address: String,
    /// Names of the routes this listener serves; empty means every route.
    #[serde(default)]
    pub routes: Vec<String>,
    /// Most open client connections; more wait in the kernel backlog. Default 10000.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Largest request body; larger gets 413. Default 1GiB.
    #[serde(default = "default_max_body")]
    pub max_request_body: Size,
    /// Longest wait for the next piece of a request body: 408 if none of it
    /// was forwarded yet, else the upstream request is aborted. Default 30s.
    #[serde(default = "default_request_body_timeout")]
    pub request_body_timeout: Dur,
    /// HTTPS on this port (certificates by SNI, ALPN, mTLS); off unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTlsConfig>,
    /// Connection timeouts: keep-alive idle, first request, send idle.
    #[serde(default)]
    pub timeouts: ListenerTimeouts,
    /// Longest request target (path and query, or absolute URI); longer
    /// gets 414. Default 8KiB.
    #[serde(default = "default_max_request_target")]
    pub max_request_target: Size,
    /// Largest request header block (HTTP/1.1 head, HTTP/2 header list);
    /// larger gets 431. Default 60KiB.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: Size,
}

/// How long a client connection may sit without doing anything useful
/// before the listener closes it, so idle or stuck clients cannot hold
/// connection slots.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerTimeouts {
    /// No request in flight (HTTP/1.1 between requests, HTTP/2 with no open
    /// stream): close (HTTP/2 with GOAWAY). Default 60s.
    pub idle: Dur,
    /// A new connection that has not sent a complete request head yet,
    /// counted from the accept (a TLS handshake included). Default 10s.
    pub first_request: Dur,
    /// A response write that makes no progress (the client stopped reading):
    /// close. Default 30s.
    pub send_idle: Dur,
}

impl Default for ListenerTimeouts {
    fn default() -> Self {
        ListenerTimeouts {
            idle: Dur::secs(60),
            first_request: Dur::secs(10),
            send_idle: Dur::secs(30),
        }
    }
}

fn default_max_connections() -> u32 {
    10_000
}

fn default_max_request_target() -> Size {
    Size(8 << 10)
}

fn default_max_header_bytes() -> Size {
    Size(60 << 10)
}

fn default_request_body_timeout() -> Dur {
    Dur::secs(30)
}

fn default_max_body() -> Size {
    Size(1 << 30)
}

/// A set of interchangeable endpoints running one version of a service.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// `host:port` of each endpoint. A host name is resolved by DNS to all
    /// its A/AAAA addresses, each an endpoint of the group (see `dns`).
    pub endpoints: Vec<String>,
    /// How an endpoint is chosen inside the group.
    #[serde(default)]
    pub balance: Balance,
    /// Protocol spoken to the endpoints.
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// Time to establish a connection. Default 1s.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Dur,
    /// Longest wait for the next frame of a response body once the head came;
    /// then the response is aborted. Default 60s.
    #[serde(default = "default_body_idle_timeout")]
    pub body_idle_timeout: Dur,
    /// Passive outlier ejection (on by default).
    #[serde(default)]
    pub outlier: OutlierConfig,
    /// Circuit breaking.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Active health checking (off unless set).
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
    /// TLS to the endpoints (CA, SNI, client certificate); plaintext unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<GroupTlsConfig>,
    /// How often host-name endpoints are resolved again.
    #[serde(default, skip_serializing_if = "DnsConfig::is_default")]
    pub dns: DnsConfig,
    /// Idle keep-alive connections kept per endpoint.
    #[serde(default, skip_serializing_if = "PoolConfig::is_default")]
    pub pool: PoolConfig,
}

/// Idle upstream connections per endpoint: reused before any new one is
/// opened, closed after `idle_timeout`, at most `max_idle` kept (more are
/// closed as they come back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// An idle connection is closed after this long. Default 60s.
    #[serde(default = "default_pool_idle_timeout")]
    pub idle_timeout: Dur,
    /// Most idle connections kept per endpoint. Default 128.
    #[serde(default = "default_pool_max_idle")]
    pub max_idle: u32,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            idle_timeout: default_pool_idle_timeout(),
            max_idle: default_pool_max_idle(),
        }
    }
}

impl PoolConfig {
    fn is_default(&self) -> bool {
        *self == PoolConfig::default()
    }
}

fn default_pool_idle_timeout() -> Dur {
    Dur::secs(60)
}

fn default_pool_max_idle() -> u32 {
    128
}

/// DNS discovery bounds: a name is resolved again when its record's TTL
/// runs out, but never sooner than `min_ttl` (a TTL of 0 must not turn into
/// a query loop) nor later than `max_ttl` (a day-long TTL must not hide a
/// scale-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// Shortest time between two lookups of a name. Default 1s.
    #[serde(default = "default_dns_min_ttl")]
    pub min_ttl: Dur,
    /// Longest time between two lookups of a name. Default 30s.
    #[serde(default = "default_dns_max_ttl")]
    pub max_ttl: Dur,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            min_ttl: default_dns_min_ttl(),
            max_ttl: default_dns_max_ttl(),
        }
    }
}

impl DnsConfig {
    fn is_default(&self) -> bool {
        *self == DnsConfig::default()
    }
}

fn default_dns_min_ttl() -> Dur {
    Dur::secs(1)
}

fn default_dns_max_ttl() -> Dur {
    Dur::secs(30)
}

impl GroupConfig {
    /// A group with these endpoints and every other field at its default
    /// (for groups made from Gateway API Service references).
    pub fn new(endpoints: Vec<String>) -> Self {
        GroupConfig {
            endpoints,
            balance: Balance::default(),
            protocol: UpstreamProtocol::default(),
            connect_timeout: default_connect_timeout(),
            body_idle_timeout: default_body_idle_timeout(),
            outlier: OutlierConfig::default(),
            limits: LimitsConfig::default(),
            health_check: None,
            tls: None,
            dns: DnsConfig::default(),
            pool: PoolConfig::default(),
        }
    }
}

fn default_connect_timeout() -> Dur {
    Dur::secs(1)
}

fn default_body_idle_timeout() -> Dur {
    Dur::secs(60)
}

/// Endpoint load-balancing policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each endpoint in turn.
    #[default]
    RoundRobin,
    /// Power of two random choices on in-flight requests.
    LeastRequest,
    /// Rendezvous hash of the rule's sticky key: one user stays on one pod.
    Hash,
}

/// Upstream protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with pooled keep-alive connections.
    #[default]
    Http1,
    /// HTTP/2 over cleartext (prior knowledge), multiplexed.
    H2,
}

/// A named set of rules for some hostnames.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique route name, used by logs, metrics and the control API.
    pub name: String,
    /// Host names (`example.com`, `*.example.com`); empty matches any host.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// The rules; precedence between them is Gateway API's, not list order.
    pub rules: Vec<RuleConfig>,
}

/// Conditions plus where matching requests go.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique name within the route.
    pub name: String,
    /// Alternatives (OR); a request matching any of them takes this rule.
    /// None means "every request" (path prefix `/`).
    #[serde(default)]
    pub matches: Vec<MatchConfig>,
    /// Groups with proportional weights; may be empty only in a rule
    /// that redirects.
    #[serde(default)]
    pub backends: Vec<BackendConfig>,
    /// Keep one user on one group (and, with `balance: hash`, on one pod).
    #[serde(default)]
    pub sticky: Option<StickyConfig>,
    /// Header edits on the way to the upstream.
    #[serde(default)]
    pub request_header_modifier: Option<HeaderModifierConfig>,
    /// Header edits on the way back to the client.
    #[serde(default)]
    pub response_header_modifier: Option<HeaderModifierConfig>,
    /// Answer with a redirect instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_redirect: Option<super::filters::RedirectConfig>,
    /// Rewrite host and path before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_rewrite: Option<super::filters::UrlRewriteConfig>,
    /// Copies of the requests sent to other groups, responses discarded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirror: Vec<super::filters::MirrorConfig>,
    /// CORS: preflights answered by the proxy, headers added for allowed
    /// origins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<super::filters::CorsConfig>,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// Retries, fallback to other groups, retry budget.
    #[serde(default)]
    pub retry: RetryConfig,
    /// When a chosen group has no healthy endpoint.
    #[serde(default)]
    pub on_group_unavailable: OnGroupUnavailable,
    /// Faults injected into every request of the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<super::fault::FaultConfig>,
    /// A progressive rollout the proxy judges itself (started through the
    /// control API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<super::rollout::RolloutConfig>,
}

/// One alternative: every condition given must hold (AND).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Path condition; absent means prefix `/`.
    #[serde(default)]
    pub path: Option<PathMatchConfig>,
    /// Header conditions.
    #[serde(default)]
    pub headers: Vec<HeaderMatchConfig>,
    /// Query parameter conditions.
    #[serde(default)]
    pub query_params: Vec<QueryMatchConfig>,
    /// HTTP method, e.g. `GET`.
    #[serde(default)]
    pub method: Option<String>,
    /// gRPC service and method (a GRPCRoute `method` match): becomes the
    /// path condition, and ranks by GRPCRoute precedence. Exclusive with
    /// `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcMatchConfig>,
}

/// A gRPC service/method condition: the request path `/<service>/<method>`.
/// Neither given matches every gRPC request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcMatchConfig {
    /// `Exact` (default) or `RegularExpression` (both names).
    #[serde(rename = "type", default = "default_grpc_type")]
    pub kind: GrpcMatchType,
    /// e.g. `helloworld.Greeter`; absent: any service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// e.g. `SayHello`; absent: any method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// How a gRPC service and method are compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum GrpcMatchType {
    /// Equal, case-sensitive.
    #[default]
    Exact,
    /// Whole-name regular expressions.
    RegularExpression,
}

fn default_grpc_type() -> GrpcMatchType {
    GrpcMatchType::Exact
}

/// Path condition kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum PathMatchType {
    /// The whole path, byte for byte.
    Exact,
    /// Whole path segments: `/api` matches `/api` and `/api/x`, not `/apix`.
    PathPrefix,
    /// A regular expression matched against the whole path.
    RegularExpression,
}

/// A path condition.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PathMatchConfig {
    /// Kind of match; default `PathPrefix`.
    #[serde(rename = "type", default = "default_path_type")]
    pub kind: PathMatchType,
    /// Path or pattern.
    pub value: String,
}

fn default_path_type() -> PathMatchType {
    PathMatchType::PathPrefix
}

/// Header and query value condition kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum ValueMatchType {
    /// Equal, case-sensitive.
    Exact,
    /// A regular expression matched against the whole value.
    RegularExpression,
    /// The header is present, whatever its value (cutover extension).
    Present,
}

/// A header condition, e.g. `x-canary: always`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatchConfig {
    /// Kind of match; default `Exact`.
    #[serde(rename = "type", default = "default_value_type")]
    pub kind: ValueMatchType,
    /// Header name (case-insensitive).
    pub name: String,
    /// Expected value or pattern; not used by `Present`.
    #[serde(default)]
    pub value: Option<String>,
}

/// A query parameter condition.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueryMatchConfig {
    /// Kind of match; default `Exact`.
    #[serde(rename = "type", default = "default_value_type")]
    pub kind: ValueMatchType,
    /// Parameter name (case-sensitive).
    pub name: String,
    /// Expected value or pattern; not used by `Present`.
    #[serde(default)]
    pub value: Option<String>,
}

fn default_value_type() -> ValueMatchType {
    ValueMatchType::Exact
}

/// A group and its share of the rule's traffic.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Name of a group from `groups`.
    pub group: String,
    /// Proportional weight, 0..=1,000,000; default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Faults injected into requests this backend was picked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<super::fault::FaultConfig>,
    /// Header edits towards the upstream, for requests this backend was
    /// picked for (after the rule's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HeaderModifierConfig>,
    /// Header edits towards the client, for responses this backend gave
    /// (after the rule's): e.g. a session cookie set on canary responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HeaderModifierConfig>,
    /// Set only by the HTTPRoute conversion, for a backendRef that cannot be
    /// resolved (or a rule without any): Gateway API wants its share of the
    /// requests answered 500 while the other backends serve. Never read
    /// from YAML: cutover's own format rejects an unknown group instead.
    #[serde(skip)]
    pub unresolved: bool,
}

fn default_weight() -> u32 {
    1
}

/// Where the sticky key comes from (exactly one field).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StickyConfig {
    /// A request header, e.g. `x-user-id`.
    #[serde(default)]
    pub header: Option<String>,
    /// A cookie, e.g. `session`.
    #[serde(default)]
    pub cookie: Option<String>,
    /// The client's IP address (the TCP peer): `source_ip: true`.
    #[serde(default)]
    pub source_ip: bool,
}

/// Gateway API `HTTPHeaderFilter`: set replaces, add appends, remove deletes.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderModifierConfig {
    /// Headers to set, replacing any existing value.
    #[serde(default)]
    pub set: Vec<HeaderValueConfig>,
    /// Headers to append.
    #[serde(default)]
    pub add: Vec<HeaderValueConfig>,
    /// Header names to remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// A header name and value.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderValueConfig {
    /// Header name.
    pub name: String,
    /// Header value.
    pub value: String,
}
