//! `HTTPRoute` -> cutover [`RouteConfig`]: rules map one to one (so later
//! compile errors can be pointed back at `spec.rules[i]`), backendRefs become
//! groups, and every field cutover cannot honour is an error with its path.

use std::collections::BTreeMap;

use super::grpc::{MethodField, RouteKind};
use super::{duration, FilterType, HttpBackendRef, HttpRoute, HttpRouteFilter, HttpRouteRule};
use super::{GatewayValueMatchType, HttpHeaderFilter, HttpValueMatch};
use crate::config::error::ConfigErrors;
use crate::config::model::{
    BackendConfig, Dur, GroupConfig, HeaderMatchConfig, HeaderModifierConfig, MatchConfig,
    PathMatchConfig, QueryMatchConfig, RetryOn, RouteConfig, RuleConfig, TimeoutsConfig,
    ValueMatchType,
};
use crate::config::resilience::RetryConfig;

/// DNS suffix of a Service name inside the cluster; clusters with another
/// domain define the group in a cutover document instead.
pub const SERVICE_DOMAIN: &str = "svc.cluster.local";

/// A converted route, plus where its header modifiers came from so that
/// errors found later (at compile) can name the HTTPRoute field.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The cutover route.
    pub route: RouteConfig,
    /// Per rule: the `filters[]` index of its RequestHeaderModifier and
    /// ResponseHeaderModifier.
    pub filters: Vec<(Option<usize>, Option<usize>)>,
}

/// Resolves backendRef names to groups: a group the cutover documents define
/// wins; otherwise one is made for the Service's cluster DNS name.
pub struct Groups<'a> {
    defined: &'a BTreeMap<String, GroupConfig>,
    /// Made from Services: name -> (endpoint, where it was first referenced).
    pub generated: BTreeMap<String, (String, String)>,
    /// Groups without endpoints standing for unresolved backendRefs (see
    /// `refs`): name -> where first referenced.
    pub unresolved: BTreeMap<String, String>,
    /// What the conversion accepted but `cutover check` should point out
    /// (unresolved backendRefs).
    pub warnings: ConfigErrors,
    /// The ReferenceGrant documents, for cross-namespace backendRefs.
    pub grants: Vec<super::grant::ReferenceGrant>,
    /// Generated groups a GRPCRoute refers to: they speak h2.
    pub h2: std::collections::BTreeSet<String>,
    /// The kind of the route being converted.
    kind: RouteKind,
}

impl<'a> Groups<'a> {
    /// The kind of the route being converted.
    pub fn kind(&self) -> RouteKind {
        self.kind
    }

    /// Resolution against the groups of the cutover documents.
    pub fn new(defined: &'a BTreeMap<String, GroupConfig>) -> Self {
        Groups {
            defined,
            generated: BTreeMap::new(),
            unresolved: BTreeMap::new(),
            warnings: ConfigErrors::default(),
            grants: Vec::new(),
            h2: Default::default(),
            kind: RouteKind::Http,
        }
    }
}

/// How a backendRef becomes a backend: from files, a cutover group or a
/// Service's cluster DNS name ([`Groups`]); in controller mode, the Service's
/// ready pods (`kubernetes::index`).
pub trait ResolveBackend {
    /// The backend `b` (at field path `at`, in a route of `namespace`)
    /// names; `None` with an error pushed when the route must be refused.
    fn resolve(
        &mut self,
        b: &HttpBackendRef,
        at: &str,
        namespace: &str,
        errors: &mut ConfigErrors,
    ) -> Option<BackendConfig>;

    /// What stands for a rule without backendRefs (at `at`): Gateway API
    /// answers its requests 500. `None`: the rule is left without backends
    /// (and refused when compiled).
    fn no_backend_refs(&mut self, at: &str) -> Option<BackendConfig> {
        let _ = at;
        None
    }

    /// Called before the backendRefs of a route of `kind` are resolved
    /// (ReferenceGrants name the referring kind; gRPC backends speak h2).
    fn route_kind(&mut self, kind: RouteKind) {
        let _ = kind;
    }

    /// The group a RequestMirror's backendRef names; `None` when it cannot
    /// be resolved (the mirror is then left out, as Gateway API asks).
    fn resolve_mirror(
        &mut self,
        b: &HttpBackendRef,
        at: &str,
        namespace: &str,
        errors: &mut ConfigErrors,
    ) -> Option<String> {
        self.resolve(b, at, namespace, errors)
            .filter(|c| !c.unresolved && c.fault.is_none())
            .map(|c| c.group)
    }
}

impl ResolveBackend for Groups<'_> {
    /// An unresolvable backendRef (kind, group, a cross-namespace ref
    /// without ReferenceGrant) keeps its weight and answers 500, with a
    /// warning; otherwise the cutover group or the Service's group.
    fn resolve(
        &mut self,
        b: &HttpBackendRef,
        at: &str,
        namespace: &str,
        errors: &mut ConfigErrors,
    ) -> Option<BackendConfig> {
        if let Some(backend) = super::refs::unresolved_backend(b, at, namespace, self) {
            return Some(backend);
        }
        let group = resolve_backend(b, at, namespace, self, errors)?;
        Some(BackendConfig {
            group,
            weight: b.weight.unwrap_or(1),
            fault: None,
            request_header_modifier: None,
            response_header_modifier: None,
            unresolved: false,
        })
    }

    fn no_backend_refs(&mut self, at: &str) -> Option<BackendConfig> {
        Some(super::refs::no_backend_refs(at, self))
    }

    fn route_kind(&mut self, kind: RouteKind) {
        self.kind = kind;
    }

    fn resolve_mirror(
        &mut self,
        b: &HttpBackendRef,
        at: &str,
        namespace: &str,
        errors: &mut ConfigErrors,
    ) -> Option<String> {
        if let Some((field, why)) = super::refs::unresolvable(b, namespace, self.kind, &self.grants)
        {
            self.warnings.push(
                format!("{at}.{field}"),
                format!("{why}; this mirror is left out"),
            );
            return None;
        }
        resolve_backend(b, at, namespace, self, errors)
    }
}

/// Converts `route`. `label` prefixes every error path (e.g.
/// `routes.yaml: HTTPRoute reviews: `). `None` when anything is wrong.
pub fn convert(
    route: &HttpRoute,
    label: &str,
    groups: &mut dyn ResolveBackend,
    errors: &mut ConfigErrors,
) -> Option<Converted> {
    let before = errors.0.len();
    groups.route_kind(route.kind);
    let name = match route.metadata.name.as_deref() {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => {
            errors.push(format!("{label}metadata.name"), "required");
            String::new()
        }
    };
    let namespace = route.metadata.namespace.as_deref().unwrap_or("default");
    if route.spec.rules.is_empty() {
        errors.push(
            format!("{label}spec.rules"),
            "needs at least one rule with backendRefs",
        );
    }
    let mut rules = Vec::with_capacity(route.spec.rules.len());
    let mut filters = Vec::with_capacity(route.spec.rules.len());
    for (i, rule) in route.spec.rules.iter().enumerate() {
        let at = format!("{label}spec.rules[{i}]");
        let (r, f) = convert_rule(route.kind, rule, i, &at, namespace, groups, errors);
        rules.push(r);
        filters.push(f);
    }
    if errors.0.len() > before {
        return None;
    }
    Some(Converted {
        route: RouteConfig {
            name,
            hostnames: route.spec.hostnames.clone(),
            rules,
        },
        filters,
    })
}

fn convert_rule(
    kind: RouteKind,
    rule: &HttpRouteRule,
    index: usize,
    at: &str,
    namespace: &str,
    groups: &mut dyn ResolveBackend,
    errors: &mut ConfigErrors,
) -> (RuleConfig, (Option<usize>, Option<usize>)) {
    let matches = match kind {
        RouteKind::Http => rule
            .matches
            .iter()
            .enumerate()
            .map(|(j, m)| convert_match(m, &format!("{at}.matches[{j}]"), errors))
            .collect(),
        RouteKind::Grpc => {
            super::grpc::check_rule(rule, at, errors);
            super::grpc::convert_matches(&rule.matches, at, errors)
        }
    };
    let (request_header_modifier, response_header_modifier, filter_index) =
        convert_filters(&rule.filters, at, errors);
    let (request_redirect, url_rewrite) =
        super::filters::convert_path_filters(&rule.filters, at, errors);
    let mirror = super::mirror::convert_mirrors(&rule.filters, at, namespace, groups, errors);
    let mut backends: Vec<_> = rule
        .backend_refs
        .iter()
        .enumerate()
        .filter_map(|(k, b)| {
            let here = format!("{at}.backendRefs[{k}]");
            let (request_header_modifier, response_header_modifier) =
                super::filters::backend_filters(&b.filters, &here, errors);
            let mut backend = groups.resolve(b, &here, namespace, errors)?;
            backend.request_header_modifier = request_header_modifier;
            backend.response_header_modifier = response_header_modifier;
            Some(backend)
        })
        .collect();
    if rule.backend_refs.is_empty() && request_redirect.is_none() {
        backends.extend(groups.no_backend_refs(&format!("{at}.backendRefs")));
    }
    if rule.session_persistence.is_some() {
        errors.push(
            format!("{at}.sessionPersistence"),
            "is not supported by cutover (it does not issue session cookies or headers); remove it, or use a cutover config with `sticky` on a cookie or header the application already sets",
        );
    }
    let rule_config = RuleConfig {
        name: rule.name.clone().unwrap_or_else(|| format!("rule-{index}")),
        matches,
        backends,
        sticky: None,
        request_header_modifier,
        response_header_modifier,
        request_redirect,
        url_rewrite,
        mirror,
        cors: super::filters::convert_cors(&rule.filters, at, errors),
        timeouts: convert_timeouts(rule, at, errors),
        retry: convert_retry(rule, at, errors),
        on_group_unavailable: Default::default(),
        fault: None,
        rollout: None,
    };
    (rule_config, filter_index)
}

fn kind(k: GatewayValueMatchType) -> ValueMatchType {
    match k {
        GatewayValueMatchType::Exact => ValueMatchType::Exact,
        GatewayValueMatchType::RegularExpression => ValueMatchType::RegularExpression,
    }
}

fn convert_match(m: &super::HttpRouteMatch, at: &str, errors: &mut ConfigErrors) -> MatchConfig {
    let method = match &m.method {
        None => None,
        Some(MethodField::Http(name)) => Some(name.clone()),
        Some(MethodField::Grpc(_)) => {
            errors.push(
                format!("{at}.method"),
                "an HTTPRoute method is an HTTP method name such as GET ({service, method} belongs to a GRPCRoute)",
            );
            None
        }
    };
    MatchConfig {
        path: m.path.as_ref().map(|p| PathMatchConfig {
            kind: p.kind,
            value: p.value.clone(),
        }),
        headers: header_matches(m),
        query_params: m
            .query_params
            .iter()
            .map(|q| QueryMatchConfig {
                kind: kind(q.kind),
                name: q.name.clone(),
                value: Some(q.value.clone()),
            })
            .collect(),
        method,
        grpc: None,
    }
}

/// A match's header conditions (HTTPRoute and GRPCRoute alike).
pub(super) fn header_matches(m: &super::HttpRouteMatch) -> Vec<HeaderMatchConfig> {
    m.headers
        .iter()
        .map(|h: &HttpValueMatch| HeaderMatchConfig {
            kind: kind(h.kind),
            name: h.name.clone(),
            value: Some(h.value.clone()),
        })
        .collect()
}

/// A rule's request and response header modifiers and their `filters[]` indexes.
pub(super) type Modifiers = (
    Option<HeaderModifierConfig>,
    Option<HeaderModifierConfig>,
    (Option<usize>, Option<usize>),
);

pub(super) fn convert_filters(
    list: &[HttpRouteFilter],
    at: &str,
    errors: &mut ConfigErrors,
) -> Modifiers {
    let (mut request, mut response) = (None, None);
    let (mut request_at, mut response_at) = (None, None);
    for (f, filter) in list.iter().enumerate() {
        let here = format!("{at}.filters[{f}]");
        check_filter_fields(filter, &here, errors);
        let (slot, index, given) = match filter.kind {
            FilterType::RequestHeaderModifier => (
                &mut request,
                &mut request_at,
                &filter.request_header_modifier,
            ),
            FilterType::ResponseHeaderModifier => (
                &mut response,
                &mut response_at,
                &filter.response_header_modifier,
            ),
            FilterType::RequestRedirect
            | FilterType::URLRewrite
            | FilterType::RequestMirror
            | FilterType::CORS => continue,
            other => {
                errors.push(format!("{here}.type"), unsupported_filter(other));
                continue;
            }
        };
        if index.is_some() {
            super::filters::given_twice(filter.kind, &here, errors);
            continue;
        }
        *index = Some(f);
        *slot = given.as_ref().map(to_modifier);
    }
    (request, response, (request_at, response_at))
}

/// The field named by `type` must be set and no other.
fn check_filter_fields(filter: &HttpRouteFilter, at: &str, errors: &mut ConfigErrors) {
    let fields = [
        (
            FilterType::RequestHeaderModifier,
            "requestHeaderModifier",
            filter.request_header_modifier.is_some(),
        ),
        (
            FilterType::ResponseHeaderModifier,
            "responseHeaderModifier",
            filter.response_header_modifier.is_some(),
        ),
        (
            FilterType::RequestMirror,
            "requestMirror",
            filter.request_mirror.is_some(),
        ),
        (
            FilterType::RequestRedirect,
            "requestRedirect",
            filter.request_redirect.is_some(),
        ),
        (
            FilterType::URLRewrite,
            "urlRewrite",
            filter.url_rewrite.is_some(),
        ),
        (
            FilterType::ExtensionRef,
            "extensionRef",
            filter.extension_ref.is_some(),
        ),
        (FilterType::CORS, "cors", filter.cors.is_some()),
        (
            FilterType::ExternalAuth,
            "externalAuth",
            filter.external_auth.is_some(),
        ),
    ];
    for (kind, field, set) in fields {
        if kind == filter.kind
            && !set
            && matches!(
                kind,
                FilterType::RequestHeaderModifier | FilterType::ResponseHeaderModifier
            )
        {
            errors.push(
                format!("{at}.{field}"),
                format!("required with type {kind:?}"),
            );
        }
        if kind != filter.kind && set {
            errors.push(
                format!("{at}.{field}"),
                format!("must not be set with type {:?}", filter.kind),
            );
        }
    }
}

fn unsupported_filter(kind: FilterType) -> String {
    let why = match kind {
        FilterType::ExtensionRef => "(no extension filters); remove the filter",
        FilterType::ExternalAuth => {
            "(no external authorization); remove the filter and authorize in front of cutover or in the application"
        }
        FilterType::RequestHeaderModifier
        | FilterType::ResponseHeaderModifier
        | FilterType::RequestRedirect
        | FilterType::URLRewrite
        | FilterType::RequestMirror
        | FilterType::CORS => "",
    };
    format!("{kind:?} is not supported by cutover {why}")
}

fn to_modifier(h: &HttpHeaderFilter) -> HeaderModifierConfig {
    HeaderModifierConfig {
        set: h.set.clone(),
        add: h.add.clone(),
        remove: h.remove.clone(),
    }
}

/// The checks every backendRef passes whatever resolves it: core group,
/// kind `Service`. False (with errors) otherwise.
pub fn supported_backend(b: &HttpBackendRef, at: &str, errors: &mut ConfigErrors) -> bool {
    let before = errors.0.len();
    if let Some(g) = b.group.as_deref().filter(|g| !g.is_empty()) {
        errors.push(
            format!("{at}.group"),
            format!("{g:?} is not supported; cutover routes to core Services (group \"\")"),
        );
    }
    if let Some(k) = b.kind.as_deref().filter(|k| *k != "Service") {
        errors.push(
            format!("{at}.kind"),
            format!("{k:?} is not supported; cutover routes to Services"),
        );
    }
    errors.0.len() == before
}

/// The group a backendRef names; `None` (with an error) when it cannot be
/// resolved.
fn resolve_backend(
    b: &HttpBackendRef,
    at: &str,
    namespace: &str,
    groups: &mut Groups<'_>,
    errors: &mut ConfigErrors,
) -> Option<String> {
    let before = errors.0.len();
    if !supported_backend(b, at, errors) {
        return None;
    }
    if groups.defined.contains_key(&b.name) {
        // A group of that name in a cutover document: its endpoints are the
        // backend; the port is the endpoints' business.
        return Some(b.name.clone());
    }
    let ns = b.namespace.as_deref().unwrap_or(namespace);
    for (field, value) in [("name", b.name.as_str()), ("namespace", ns)] {
        if !dns_label(value) {
            errors.push(
                format!("{at}.{field}"),
                format!("{value:?} is not a Kubernetes name (lowercase letters, digits, '-', at most 63)"),
            );
        }
    }
    let Some(port) = b.port else {
        errors.push(
            format!("{at}.port"),
            format!(
                "required: no cutover group is named {:?}, so it is the Service {}.{ns}.{SERVICE_DOMAIN}, which needs a port",
                b.name, b.name
            ),
        );
        return None;
    };
    if errors.0.len() > before {
        return None;
    }
    let endpoint = format!("{}.{ns}.{SERVICE_DOMAIN}:{port}", b.name);
    if groups.kind == RouteKind::Grpc {
        groups.h2.insert(b.name.clone());
    }
    match groups.generated.get(&b.name) {
        Some((existing, first)) if *existing != endpoint => {
            errors.push(
                at.to_string(),
                format!(
                    "Service {:?} resolves to {endpoint}, but group {:?} is already {existing} (from {first}); define group {:?} in a cutover document to choose",
                    b.name, b.name, b.name
                ),
            );
            None
        }
        Some(_) => Some(b.name.clone()),
        None => {
            groups
                .generated
                .insert(b.name.clone(), (endpoint, at.to_string()));
            Some(b.name.clone())
        }
    }
}

/// RFC 1123 label, as Kubernetes names Services and namespaces.
pub fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// What HTTPRoute's `"0s"` (no timeout) becomes for `timeouts.request`:
/// a bound no request reaches (about a century), which still reads back as
/// a duration.
pub const NO_TIMEOUT: Dur = Dur(std::time::Duration::from_secs(100 * 365 * 24 * 3600));

fn convert_timeouts(rule: &HttpRouteRule, at: &str, errors: &mut ConfigErrors) -> TimeoutsConfig {
    let mut out = TimeoutsConfig::default();
    let Some(t) = &rule.timeouts else {
        return out;
    };
    let mut parse = |value: &Option<String>, field: &str| {
        let v = value.as_deref()?;
        match duration::parse(v) {
            Ok(d) => Some(d),
            Err(e) => {
                errors.push(format!("{at}.timeouts.{field}"), e);
                None
            }
        }
    };
    let request = parse(&t.request, "request");
    // "0s" is no timeout: no per-try limit, and a request bound never reached.
    let backend = parse(&t.backend_request, "backendRequest").filter(|d| !d.0.is_zero());
    match request {
        Some(r) if r.0.is_zero() => out.request = NO_TIMEOUT,
        Some(r) => out.request = r,
        // Without a request timeout, one attempt may use its whole time.
        None => out.request = backend.map_or(out.request, |b| out.request.max(b)),
    }
    out.per_try = backend;
    out
}

/// HTTPRoute `retry` (the retry GEP): with a `retry` stanza, connection
/// errors are retried as well as the listed `codes`: a failed connect or a
/// refused stream for any method (the backend never processed it); a reset
/// or disconnect, and a `backendRequest` timeout (its 504), for idempotent
/// methods only, since the backend may have acted on the request. `attempts`
/// counts retries (0 disables them); `backoff` is the base of cutover's
/// jittered exponential backoff.
fn convert_retry(rule: &HttpRouteRule, at: &str, errors: &mut ConfigErrors) -> RetryConfig {
    let mut out = RetryConfig::default();
    let Some(r) = &rule.retry else {
        return out;
    };
    out.on.push(RetryOn::Reset);
    if let Some(n) = r.attempts {
        out.attempts = n;
    }
    if !r.codes.is_empty() {
        out.on.push(RetryOn::RetriableStatusCodes);
        out.retriable_status_codes = r.codes.clone();
    }
    for (i, code) in r.codes.iter().enumerate() {
        if !(400..=599).contains(code) {
            errors.push(
                format!("{at}.retry.codes[{i}]"),
                format!("{code} is not a status code Gateway API retries (400-599)"),
            );
        }
    }
    if let Some(b) = &r.backoff {
        match duration::parse(b) {
            Ok(base) if !base.0.is_zero() => {
                out.backoff.base = base;
                // Envoy's cap: ten times the base, and never under cutover's.
                out.backoff.max = Dur(base.0.saturating_mul(10)).max(out.backoff.max);
            }
            Ok(_) => out.backoff.base = Dur::ms(0),
            Err(e) => errors.push(format!("{at}.retry.backoff"), e),
        }
    }
    out
}
