//! The compiled, immutable routing table and `find()`: host -> virtual host ->
//! the highest-precedence rule whose conditions hold.
//!
//! A table is built once by `compile` and published whole; requests
//! read it through one `ArcSwap` load and never mutate it.

pub mod budget;
pub mod cors;
pub mod fault;
pub mod inherited;
pub mod matcher;
pub mod mirror;
pub mod observed;
pub mod rewrite;
pub mod split;

use std::collections::HashMap;
use std::net::SocketAddr;

use http::{HeaderMap, HeaderName, HeaderValue};
use regex::{RegexSet, RegexSetBuilder};

use crate::upstream::Group;
pub use inherited::{Inherited, RuleState};
use matcher::{Conditions, PathMatch, RequestView};
use split::{Split, StickyKey};

/// Everything a request needs to be routed, at one generation.
#[derive(Debug)]
pub struct RouteTable {
    /// Increases by one with every publish.
    pub generation: u64,
    /// Per listener, in config order (a connection knows its index);
    /// shared with the next table when only endpoints change.
    pub listeners: std::sync::Arc<[ListenerRoutes]>,
    /// Upstream groups; rules refer to them by index. Each is shared with
    /// the next table unless its endpoints or policy change.
    pub groups: Box<[std::sync::Arc<Group>]>,
    /// Every rule of every route; entries refer to them by index (shared
    /// like `listeners`).
    pub rules: std::sync::Arc<[Rule]>,
    /// Metrics switch, unmatched-request series and access log setting.
    pub observe: crate::metrics::TableMetrics,
}

/// The routes one listener serves, indexed by host.
#[derive(Debug)]
pub struct ListenerRoutes {
    /// Listener name from the config.
    pub name: Box<str>,
    /// Address from the config.
    pub address: SocketAddr,
    /// Largest request body (413 above).
    pub max_request_body: u64,
    /// Longest wait for the next piece of a request body (408 / abort).
    pub request_body_timeout: std::time::Duration,
    /// Most open client connections.
    pub max_connections: usize,
    /// TLS for new connections (certificates of this table); `None` = plain.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// Per-connection timeouts and header limits.
    pub conn: ConnSettings,
    exact_hosts: HashMap<Box<str>, u32>,
    /// `(".example.com", vhost)`, longest suffix first.
    wildcard_hosts: Box<[(Box<str>, u32)]>,
    any_host: Option<u32>,
    vhosts: Box<[VirtualHost]>,
}

/// A listener's connection settings (`listeners[].timeouts`,
/// `max_request_target`, `max_header_bytes`), compiled: the listener reads
/// them when it starts, so that idle or hostile clients cannot hold slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnSettings {
    /// No request in flight for this long: close.
    pub idle: std::time::Duration,
    /// No complete first request head for this long: close.
    pub first_request: std::time::Duration,
    /// A write without progress for this long: close.
    pub send_idle: std::time::Duration,
    /// Longest request target, in bytes (414 above).
    pub max_request_target: usize,
    /// Largest request header block, in bytes (431 above).
    pub max_header_bytes: usize,
}

impl Default for ConnSettings {
    fn default() -> Self {
        use std::time::Duration;
        ConnSettings {
            idle: Duration::from_secs(60),
            first_request: Duration::from_secs(10),
            send_idle: Duration::from_secs(30),
            max_request_target: 8 << 10,
            max_header_bytes: 60 << 10,
        }
    }
}

/// The match entries of every route attached to one hostname pattern, indexed
/// by path so a lookup checks only the entries whose path can match.
#[derive(Debug, Default)]
pub struct VirtualHost {
    entries: Box<[Entry]>,
    exact: HashMap<Box<str>, Box<[u32]>>,
    prefix: HashMap<Box<str>, Box<[u32]>>,
    regex: Box<[u32]>,
    /// Every regex path of `regex`, in the same order, as one automaton: a
    /// path that matches none (most requests) costs one scan, however many
    /// regex rules there are. `None` without regex paths, or if the set
    /// would exceed its size limit (then each is tried in turn).
    regex_set: Option<RegexSet>,
    /// Holds gRPC entries: their rank is not the path kind's, so the
    /// entries are tried in order instead of through the path index.
    in_order: bool,
}

/// One `matches` alternative of one rule.
#[derive(Debug)]
pub struct Entry {
    /// Its conditions.
    pub conditions: Conditions,
    /// Index into [`RouteTable::rules`].
    pub rule: u32,
}

/// Where matching requests go and what is done to them on the way.
#[derive(Debug)]
pub struct Rule {
    /// Route name.
    pub route: Box<str>,
    /// Rule name.
    pub name: Box<str>,
    /// Weighted groups.
    pub split: Split,
    /// Sticky key source, if the rule is sticky.
    pub sticky: Option<StickyKey>,
    /// Header edits towards the upstream.
    pub request_headers: HeaderModifier,
    /// Header edits towards the client.
    pub response_headers: HeaderModifier,
    /// Requests sent per backend (same order as the split), last minute.
    pub observed: Box<[std::sync::Arc<observed::SplitCounter>]>,
    /// Timeouts, retries, group-unavailability handling.
    pub policy: RulePolicy,
    /// Retry budget shared by the route's rules.
    pub budget: std::sync::Arc<budget::RetryBudget>,
    /// Metric handles: per backend (split order), per route.
    pub metrics: crate::metrics::RuleMetrics,
    /// The rule's rollout plan, read by the rollout controller (never on the
    /// request path).
    pub rollout: Option<Box<crate::config::rollout::RolloutConfig>>,
    /// Injected faults: the rule's own, then per backend (split order).
    pub faults: Faults,
    /// Answer with this redirect instead of forwarding.
    pub redirect: Option<Box<rewrite::Redirect>>,
    /// Host and path changes before forwarding.
    pub rewrite: Option<Box<rewrite::UrlRewrite>>,
    /// CORS: preflights answered here, headers added for allowed origins.
    pub cors: Option<Box<cors::Cors>>,
    /// Copies of its requests to other groups (Gateway API RequestMirror);
    /// empty for most rules.
    pub mirrors: Box<[mirror::Mirror]>,
    /// Per backend (split order): its own header edits. Empty when no
    /// backend has any (most rules).
    pub backend_headers: Box<[BackendHeaders]>,
    /// Per backend (split order): an unresolved HTTPRoute backendRef, whose
    /// share answers 500. Empty when every backend resolved (most rules).
    pub unresolved: Box<[bool]>,
}

/// One backend's header edits (Gateway API backendRef filters).
#[derive(Debug, Default)]
pub struct BackendHeaders {
    /// Towards the upstream, after the rule's.
    pub request: HeaderModifier,
    /// Towards the client, after the rule's.
    pub response: HeaderModifier,
}

/// A rule's faults; empty for most rules, so the request path checks one
/// `Option` and one empty slice.
#[derive(Debug, Default)]
pub struct Faults {
    /// For every request of the rule.
    pub rule: Option<std::sync::Arc<fault::Fault>>,
    /// For requests whose split picked that backend.
    pub backends: Box<[Option<std::sync::Arc<fault::Fault>>]>,
}

impl Faults {
    /// The fault for a request that picked `slot`: the backend's, else the
    /// rule's.
    pub fn for_slot(&self, slot: usize) -> Option<&fault::Fault> {
        self.backends
            .get(slot)
            .and_then(Option::as_deref)
            .or(self.rule.as_deref())
    }
}

/// A rule's resilience settings (validated config values).
#[derive(Debug, Clone, Default)]
pub struct RulePolicy {
    /// Request and per-try timeouts.
    pub timeouts: crate::config::model::TimeoutsConfig,
    /// Retry policy.
    pub retry: crate::config::model::RetryConfig,
    /// What to do when a chosen group has no healthy endpoint.
    pub on_unavailable: crate::config::model::OnGroupUnavailable,
}

/// Compiled Gateway API header filter.
#[derive(Debug, Default)]
pub struct HeaderModifier {
    /// Replace.
    pub set: Box<[(HeaderName, HeaderValue)]>,
    /// Append.
    pub add: Box<[(HeaderName, HeaderValue)]>,
    /// Delete.
    pub remove: Box<[HeaderName]>,
}

impl HeaderModifier {
    /// Applies remove, then set, then add.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in self.remove.iter() {
            headers.remove(name);
        }
        for (name, value) in self.set.iter() {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in self.add.iter() {
            headers.append(name.clone(), value.clone());
        }
    }

    /// True when there is nothing to do (skips the call on the hot path).
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

impl crate::upstream::health::LiveGroups for RouteTable {
    fn groups(&self) -> &[std::sync::Arc<Group>] {
        &self.groups
    }
}

impl RouteTable {
    /// Generation and weights for the scrape, with the reload error count.
    pub fn figures(&self, reload_errors: u64) -> crate::metrics::TableFigures {
        let weights = self
            .rules
            .iter()
            .flat_map(|rule| {
                rule.split.backends().filter_map(|(g, w)| {
                    let group = self.groups.get(g as usize)?;
                    Some((
                        rule.route.to_string(),
                        rule.name.to_string(),
                        group.name.to_string(),
                        w,
                    ))
                })
            })
            .collect();
        crate::metrics::TableFigures {
            generation: self.generation,
            reload_errors,
            weights,
        }
    }

    /// The rule for a request arriving on listener `listener`, with the entry
    /// that matched; `None` means 404.
    pub fn find(&self, listener: usize, req: &RequestView<'_>) -> Option<(&Rule, &Entry)> {
        let vhost = self.listeners.get(listener)?.vhost_for(req.host)?;
        let entry = vhost.find(req)?;
        Some((&self.rules[entry.rule as usize], entry))
    }
}

impl ListenerRoutes {
    /// Assembles a listener's index; used by the compiler.
    pub fn new(
        name: Box<str>,
        address: SocketAddr,
        hosts: Vec<(HostPattern, u32)>,
        vhosts: Vec<VirtualHost>,
    ) -> Self {
        let mut exact_hosts = HashMap::new();
        let mut wildcard_hosts = Vec::new();
        let mut any_host = None;
        for (pattern, idx) in hosts {
            match pattern {
                HostPattern::Exact(h) => {
                    exact_hosts.insert(h, idx);
                }
                HostPattern::Wildcard(suffix) => wildcard_hosts.push((suffix, idx)),
                HostPattern::Any => any_host = Some(idx),
            }
        }
        wildcard_hosts.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        ListenerRoutes {
            name,
            address,
            max_request_body: u64::MAX,
            request_body_timeout: std::time::Duration::from_secs(30),
            max_connections: 10_000,
            tls: None,
            conn: ConnSettings::default(),
            exact_hosts,
            wildcard_hosts: wildcard_hosts.into(),
            any_host,
            vhosts: vhosts.into(),
        }
    }

    /// Most specific hostname first: exact, longest wildcard, then routes
    /// without hostnames. Like Envoy virtual hosts, there is no fallback to a
    /// less specific host when the chosen one has no matching rule.
    fn vhost_for(&self, host: &str) -> Option<&VirtualHost> {
        let idx = self.exact_hosts.get(host).copied().or_else(|| {
            self.wildcard_hosts
                .iter()
                .find(|(suffix, _)| host.len() > suffix.len() && host.ends_with(&**suffix))
                .map(|&(_, i)| i)
                .or(self.any_host)
        })?;
        self.vhosts.get(idx as usize)
    }

    /// Sets the listener's limits; used by the compiler.
    pub fn with_limits(mut self, max_request_body: u64, max_connections: usize) -> Self {
        self.max_request_body = max_request_body;
        self.max_connections = max_connections;
        self
    }

    /// Sets the per-connection settings; used by the compiler.
    pub fn with_conn(mut self, conn: ConnSettings) -> Self {
        self.conn = conn;
        self
    }

    /// Sets the request body idle timeout; used by the compiler.
    pub fn with_body_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.request_body_timeout = timeout;
        self
    }

    /// Serves HTTPS with `tls` (from `tls::server::build`).
    pub fn with_tls(mut self, tls: Option<std::sync::Arc<rustls::ServerConfig>>) -> Self {
        self.tls = tls;
        self
    }

    /// The virtual host for `host`, for `explain` and tests.
    pub fn virtual_host(&self, host: &str) -> Option<&VirtualHost> {
        self.vhost_for(host)
    }
}

/// A parsed `hostnames` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// `example.com`.
    Exact(Box<str>),
    /// `*.example.com`, stored as `.example.com`.
    Wildcard(Box<str>),
    /// A route without hostnames.
    Any,
}

impl VirtualHost {
    /// Builds the path index; `entries` must be sorted by precedence.
    pub fn new(entries: Vec<Entry>) -> Self {
        let mut exact: HashMap<Box<str>, Vec<u32>> = HashMap::new();
        let mut prefix: HashMap<Box<str>, Vec<u32>> = HashMap::new();
        let mut regex = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let i = i as u32;
            match &e.conditions.path {
                PathMatch::Exact(p) => exact.entry(p.clone()).or_default().push(i),
                PathMatch::Prefix(p) => prefix.entry(p.clone()).or_default().push(i),
                PathMatch::Regex { .. } => regex.push(i),
            }
        }
        let boxed = |m: HashMap<Box<str>, Vec<u32>>| {
            m.into_iter()
                .map(|(k, v)| (k, v.into_boxed_slice()))
                .collect()
        };
        let regex_set = regex_set(&entries, &regex);
        let in_order = entries.iter().any(|e| e.conditions.grpc.is_some());
        VirtualHost {
            entries: entries.into(),
            exact: boxed(exact),
            prefix: boxed(prefix),
            regex: regex.into(),
            regex_set,
            in_order,
        }
    }

    /// Entries in precedence order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The first higher-precedence entry that accepts every request entry `i`
    /// accepts, if any: then entry `i` can never match. Uses the path index,
    /// so checking a large table stays near-linear.
    pub fn shadowed_by(&self, i: usize) -> Option<usize> {
        let me = &self.entries.get(i)?.conditions;
        let earlier = |ids: &[u32]| -> Option<usize> {
            ids.iter()
                .map(|&j| j as usize)
                .filter(|&j| j < i)
                .find(|&j| self.entries[j].conditions.covers(me))
        };
        let path = match &me.path {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => &**p,
            PathMatch::Regex { .. } => return earlier(&self.regex),
        };
        let exact = match &me.path {
            PathMatch::Exact(p) => self.exact.get(p).and_then(|ids| earlier(ids)),
            _ => None,
        };
        exact.or_else(|| earlier(&self.regex)).or_else(|| {
            segment_prefixes(path)
                .filter_map(|p| self.prefix.get(p))
                .find_map(|ids| earlier(ids))
        })
    }

    /// Walks candidates in precedence order: exact path, regex, then each
    /// whole-segment prefix of the path from longest to `/`.
    fn find(&self, req: &RequestView<'_>) -> Option<&Entry> {
        if self.in_order {
            return self.entries.iter().find(|e| e.conditions.matches(req));
        }
        let hit = |ids: &[u32]| {
            ids.iter()
                .map(|&i| &self.entries[i as usize])
                .find(|e| e.conditions.matches_rest(req))
        };
        if let Some(e) = self.exact.get(req.path).and_then(|ids| hit(ids)) {
            return Some(e);
        }
        if let Some(e) = self.find_regex(req) {
            return Some(e);
        }
        if self.prefix.is_empty() {
            return None;
        }
        segment_prefixes(req.path).find_map(|p| self.prefix.get(p).and_then(|ids| hit(ids)))
    }
}

impl VirtualHost {
    /// The first regex-path entry (in precedence order) that matches.
    fn find_regex(&self, req: &RequestView<'_>) -> Option<&Entry> {
        let entry = |i: usize| &self.entries[self.regex[i] as usize];
        let Some(set) = &self.regex_set else {
            return self.find_regex_one_by_one(req);
        };
        if !set.is_match(req.path) {
            return None;
        }
        // `matches` yields the set's indices in ascending order: precedence.
        set.matches(req.path)
            .into_iter()
            .map(entry)
            .find(|e| e.conditions.matches_rest(req))
    }
}

impl VirtualHost {
    /// Each regex path tried in turn (without a set, and as the reference).
    fn find_regex_one_by_one(&self, req: &RequestView<'_>) -> Option<&Entry> {
        self.regex
            .iter()
            .map(|&i| &self.entries[i as usize])
            .find(|e| e.conditions.path.matches(req.path) && e.conditions.matches_rest(req))
    }
}

/// One set of the regex paths of `entries` at `ids`, in that order; `None`
/// when there are none or the set would be too large.
fn regex_set(entries: &[Entry], ids: &[u32]) -> Option<RegexSet> {
    let patterns: Vec<&str> = ids
        .iter()
        .filter_map(|&i| match &entries[i as usize].conditions.path {
            PathMatch::Regex { re, .. } => Some(re.as_str()),
            _ => None,
        })
        .collect();
    if patterns.is_empty() || patterns.len() != ids.len() {
        return None;
    }
    // Generous, as the set holds every regex of the host; past it each
    // regex is tried on its own, as before.
    RegexSetBuilder::new(patterns)
        .size_limit(256 << 20)
        .build()
        .inspect_err(|e| tracing::warn!(error = %e, "regex paths tried one by one"))
        .ok()
}

/// `/a/b/c` -> `/a/b/c`, `/a/b`, `/a`, `/` (a trailing `/` is ignored, as in
/// Gateway API's PathPrefix). Nothing for a path that is not origin-form.
fn segment_prefixes(path: &str) -> impl Iterator<Item = &str> {
    let trimmed = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let origin_form = path.starts_with('/');
    let mut next = (origin_form && trimmed != "/").then_some(trimmed);
    let mut root_done = !origin_form;
    std::iter::from_fn(move || {
        if let Some(p) = next {
            next = match p.rfind('/') {
                Some(pos) if pos > 0 => Some(&p[..pos]),
                _ => None,
            };
            return Some(p);
        }
        if root_done {
            return None;
        }
        root_done = true;
        Some("/")
    })
}

#[cfg(test)]
mod tests {
    use super::segment_prefixes;
    use crate::route::matcher::RequestView;

    /// The regex set picks what trying each regex in precedence order picks
    /// (longer patterns first), and still checks each candidate's other
    /// conditions.
    #[test]
    fn regex_paths_match_through_one_set_in_precedence_order() {
        let yaml = "listeners: [{name: public, address: \"127.0.0.1:0\"}]\n\
            groups: {app: {endpoints: [\"127.0.0.1:9\"]}}\n\
            routes: [{name: web, rules: [\n\
              {name: tenant, matches: [{path: {type: RegularExpression, value: \"/a.*\"}, headers: [{name: x-t, value: \"1\"}]}], backends: [{group: app}]},\n\
              {name: ab, matches: [{path: {type: RegularExpression, value: \"/a/b.*\"}}], backends: [{group: app}]},\n\
              {name: any, matches: [{path: {type: RegularExpression, value: \"/[a-z]+\"}}], backends: [{group: app}]},\n\
              {name: root, matches: [{path: {type: PathPrefix, value: /}}], backends: [{group: app}]}]}]\n";
        let config = crate::config::parse_yaml(yaml).unwrap();
        let table =
            crate::compile::compile(&config, &crate::route::Inherited::default(), 1).unwrap();
        let tenant: http::HeaderMap = [(
            http::HeaderName::from_static("x-t"),
            http::HeaderValue::from_static("1"),
        )]
        .into_iter()
        .collect();
        let none = http::HeaderMap::new();
        let vhost = table.listeners[0].virtual_host("h").unwrap();
        assert!(vhost.regex_set.is_some());
        for (path, headers, want) in [
            ("/a/b", &tenant, "ab"),
            ("/a/bc/d", &none, "ab"),
            ("/a/c", &tenant, "tenant"),
            ("/a/c", &none, "root"),
            ("/a9", &tenant, "tenant"),
            ("/zz", &none, "any"),
            ("/Z9", &none, "root"),
        ] {
            let view = RequestView {
                method: &http::Method::GET,
                host: "h",
                path,
                query: None,
                headers,
            };
            let got = table.find(0, &view).map(|(rule, _)| rule.name.to_string());
            assert_eq!(got.as_deref(), Some(want), "{path}");
            let one_by_one = vhost.find_regex_one_by_one(&view).map(|e| e.rule);
            assert_eq!(
                vhost.find_regex(&view).map(|e| e.rule),
                one_by_one,
                "{path}"
            );
        }
    }

    #[test]
    fn prefixes_walk_segments_longest_first() {
        let v: Vec<_> = segment_prefixes("/a/b/c").collect();
        assert_eq!(v, ["/a/b/c", "/a/b", "/a", "/"]);
        let v: Vec<_> = segment_prefixes("/a/").collect();
        assert_eq!(v, ["/a", "/"]);
        let v: Vec<_> = segment_prefixes("/").collect();
        assert_eq!(v, ["/"]);
        let v: Vec<_> = segment_prefixes("*").collect();
        assert!(v.is_empty(), "asterisk-form has no path prefixes");
    }
}
