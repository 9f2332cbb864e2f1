//! Config model -> validated, immutable [`RouteTable`]. The whole table is
//! built and checked before anything is published; any error rejects it all.
//! Above `config` (the model), `route`, `upstream` and `tls` (what it
//! builds); `reload` and `app` call it.

mod cors;
mod fault;
mod filters;
mod grpc;
mod mirror;
mod policy;
#[cfg(test)]
mod prop_tests;
mod rules;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use http::uri::Authority;

use crate::config::error::ConfigErrors;
use crate::config::model::{Config, GroupConfig, ListenerConfig};
use crate::route::matcher::Conditions;
use crate::route::{
    ConnSettings, Entry, HostPattern, Inherited, ListenerRoutes, RouteTable, Rule, VirtualHost,
};
use crate::upstream::dns::{self, Discovery};
use crate::upstream::{Endpoint, Group, UpstreamState};
use rules::{compile_rule, CompiledRule};

/// A rule's match alternative before it is placed in virtual hosts.
struct PendingEntry {
    conditions: Conditions,
    rule: u32,
    order: usize,
}

/// Compiles and validates `cfg`. Endpoint state is taken from `inherited` so
/// it carries over from the previous table by address.
pub fn compile(
    cfg: &Config,
    inherited: &Inherited,
    generation: u64,
) -> Result<RouteTable, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let (groups, group_index) = compile_groups(&cfg.groups, &inherited.upstream, &mut errors);
    let (rules, pending, route_hosts) = compile_routes(cfg, &group_index, inherited, &mut errors);
    let listeners = compile_listeners(cfg, &rules, &pending, &route_hosts, &mut errors);
    let rate = cfg.access_log.sample_rate;
    if !(0.0..=1.0).contains(&rate) {
        errors.push(
            "access_log.sample_rate",
            format!("{rate} is out of range 0..=1"),
        );
    }
    errors.into_result(RouteTable {
        generation,
        listeners: listeners.into(),
        groups: groups.into(),
        rules: rules.into(),
        observe: inherited.metrics().for_table(cfg.access_log.clone()),
    })
}

fn compile_groups<'a>(
    cfg: &'a BTreeMap<String, GroupConfig>,
    registry: &UpstreamState,
    errors: &mut ConfigErrors,
) -> (Vec<Arc<Group>>, HashMap<&'a str, u32>) {
    let mut groups = Vec::with_capacity(cfg.len());
    let mut index = HashMap::with_capacity(cfg.len());
    for (name, g) in cfg {
        index.insert(name.as_str(), groups.len() as u32);
        groups.push(Arc::new(compile_group(name, g, registry, errors)));
    }
    (groups, index)
}

fn compile_group(
    name: &str,
    g: &GroupConfig,
    registry: &UpstreamState,
    errors: &mut ConfigErrors,
) -> Group {
    let path = format!("groups.{name}");
    if !valid_name(name) {
        errors.push(&path, "group names use letters, digits, '-', '_' and '.'");
    }
    // An empty group is valid (a canary scaled to zero); requests that
    // pick it get 503 "no endpoints".
    let (endpoints, discovery) = group_endpoints(g, &path, registry, errors);
    let policy = policy::group_policy(g, &path, errors);
    let mut group = Group::with_policy(
        name.into(),
        endpoints,
        g.balance,
        g.protocol,
        policy,
        registry,
    );
    group.discovery = discovery;
    group
}

/// `prev` with the groups named in `changed` compiled from their new config
/// and everything else (listeners, rules, the other groups) shared: the
/// cheap publish of an endpoint-only change (controller mode, where pods
/// come and go many times a second). Endpoint state and pools carry over by
/// address as in [`compile`]. Every name in `changed` must be a group of
/// `prev` (rules refer to groups by index, so the set cannot change here).
pub fn regroup(
    prev: &RouteTable,
    changed: &BTreeMap<String, GroupConfig>,
    inherited: &Inherited,
    generation: u64,
) -> Result<RouteTable, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    // The unchanged groups are the live ones, shared: a round over a few of
    // 5,000 groups copies 5,000 pointers, not 5,000 groups.
    let mut groups: Vec<Arc<Group>> = prev.groups.to_vec();
    for (name, g) in changed {
        // Groups are compiled in name order, so `prev.groups` is sorted.
        match prev
            .groups
            .binary_search_by(|x| (*x.name).cmp(name.as_str()))
        {
            Ok(i) => groups[i] = Arc::new(compile_group(name, g, &inherited.upstream, &mut errors)),
            Err(_) => errors.push(
                format!("groups.{name}"),
                "is not a group of the live table; a new group needs a full compile",
            ),
        }
    }
    errors.into_result(RouteTable {
        generation,
        listeners: std::sync::Arc::clone(&prev.listeners),
        groups: groups.into(),
        rules: std::sync::Arc::clone(&prev.rules),
        observe: inherited
            .metrics()
            .for_table(prev.observe.access_log.clone()),
    })
}

/// The group's endpoints: each literal address, and for each host name its
/// last resolved addresses (each an endpoint with its own state, carried
/// over by address), or the name itself until a lookup has succeeded.
fn group_endpoints(
    g: &GroupConfig,
    path: &str,
    registry: &UpstreamState,
    errors: &mut ConfigErrors,
) -> (Vec<Endpoint>, Discovery) {
    let (min, max) = (g.dns.min_ttl.0, g.dns.max_ttl.0);
    if min.is_zero() {
        errors.push(format!("{path}.dns.min_ttl"), "must be more than 0s");
    }
    if max < min {
        errors.push(format!("{path}.dns.max_ttl"), "must be at least min_ttl");
    }
    // Without `tls.server_name`, TLS names each endpoint's host in SNI and
    // checks the certificate against it: resolving would put an IP there.
    let resolve = g.tls.as_ref().is_none_or(|t| t.server_name.is_some());
    let mut seen = HashSet::new();
    let mut added = HashSet::new();
    let mut endpoints = Vec::with_capacity(g.endpoints.len());
    let mut names = Vec::new();
    let mut push = |address: &str, authority: Authority, endpoints: &mut Vec<Endpoint>| {
        if added.insert(address.to_string()) {
            endpoints.push(Endpoint {
                authority,
                state: registry.get_or_create(address),
            });
        }
    };
    for (i, addr) in g.endpoints.iter().enumerate() {
        let at = format!("{path}.endpoints[{i}]");
        if !seen.insert(addr.as_str()) {
            errors.push(&at, format!("{addr} is listed twice"));
        }
        let Some(authority) = parse_endpoint(addr, &at, errors) else {
            continue;
        };
        if !(resolve && dns::is_name(&authority)) {
            push(addr, authority, &mut endpoints);
            continue;
        }
        names.push(addr.as_str().into());
        match registry.dns.addresses(addr).filter(|a| !a.is_empty()) {
            Some(addresses) => {
                for a in addresses {
                    let text = a.to_string();
                    if let Ok(authority) = text.parse::<Authority>() {
                        push(&text, authority, &mut endpoints);
                    }
                }
            }
            None => push(addr, authority, &mut endpoints),
        }
    }
    let discovery = Discovery {
        names: names.into(),
        min_ttl: min,
        max_ttl: max.max(min),
    };
    (endpoints, discovery)
}

/// `host:port` with an explicit port and nothing else (no scheme or path).
fn parse_endpoint(addr: &str, path: &str, errors: &mut ConfigErrors) -> Option<Authority> {
    match addr.parse::<Authority>() {
        Ok(a) if a.port_u16().is_some() && !a.host().is_empty() && !addr.contains('@') => Some(a),
        _ => {
            errors.push(
                path,
                format!("{addr:?} is not host:port (e.g. 10.0.0.5:8080)"),
            );
            None
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

type RouteHosts = Vec<Vec<HostPattern>>;

fn compile_routes(
    cfg: &Config,
    groups: &HashMap<&str, u32>,
    inherited: &Inherited,
    errors: &mut ConfigErrors,
) -> (Vec<Rule>, Vec<Vec<PendingEntry>>, RouteHosts) {
    let mut rules = Vec::new();
    let mut pending = Vec::with_capacity(cfg.routes.len());
    let mut hosts = Vec::with_capacity(cfg.routes.len());
    let mut names = HashSet::new();
    let mut order = 0;
    let bound = crate::config::rollout::check_bindings(cfg, errors);
    for (ri, route) in cfg.routes.iter().enumerate() {
        let path = format!("routes[{ri}]");
        if !valid_name(&route.name) {
            errors.push(
                format!("{path}.name"),
                "route names use letters, digits, '-', '_' and '.'",
            );
        } else if !names.insert(route.name.as_str()) {
            errors.push(
                format!("{path}.name"),
                format!("route \"{}\" is defined twice", route.name),
            );
        }
        if route.rules.is_empty() {
            errors.push(format!("{path}.rules"), "needs at least one rule");
        }
        hosts.push(compile_hostnames(&route.hostnames, &path, errors));
        let mut entries = Vec::new();
        let mut rule_names = HashSet::new();
        for (i, rule) in route.rules.iter().enumerate() {
            let at = format!("{path}.rules[{i}]");
            if !rule_names.insert(rule.name.as_str()) {
                errors.push(
                    format!("{at}.name"),
                    format!("rule \"{}\" is defined twice", rule.name),
                );
            }
            let listed = bound.get(&(route.name.as_str(), rule.name.as_str()));
            let Some(CompiledRule {
                mut rule,
                conditions,
            }) = compile_rule(&route.name, rule, &at, groups, inherited, errors)
            else {
                continue;
            };
            if let Some(plan) = listed {
                rule.rollout = Some(Box::new((*plan).clone()));
            }
            let idx = rules.len() as u32;
            rules.push(rule);
            for conditions in conditions {
                entries.push(PendingEntry {
                    conditions,
                    rule: idx,
                    order,
                });
                order += 1;
            }
        }
        pending.push(entries);
    }
    (rules, pending, hosts)
}

fn compile_hostnames(names: &[String], path: &str, errors: &mut ConfigErrors) -> Vec<HostPattern> {
    if names.is_empty() {
        return vec![HostPattern::Any];
    }
    names
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let lower = h.to_ascii_lowercase();
            let (wild, rest) = match lower.strip_prefix("*.") {
                Some(rest) => (true, rest),
                None => (false, lower.as_str()),
            };
            let ok = !rest.is_empty()
                && rest.split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !ok {
                errors.push(
                    format!("{path}.hostnames[{i}]"),
                    format!(
                        "{h:?} is not a host name (a leading \"*.\" is the only wildcard; no port)"
                    ),
                );
                return None;
            }
            Some(if wild {
                HostPattern::Wildcard(format!(".{rest}").into())
            } else {
                HostPattern::Exact(rest.into())
            })
        })
        .collect()
}

fn compile_listeners(
    cfg: &Config,
    rules: &[Rule],
    pending: &[Vec<PendingEntry>],
    route_hosts: &RouteHosts,
    errors: &mut ConfigErrors,
) -> Vec<ListenerRoutes> {
    if cfg.listeners.is_empty() {
        errors.push("listeners", "needs at least one listener");
    }
    let route_index: HashMap<&str, usize> = cfg
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| (r.name.as_str(), i))
        .collect();
    let mut names = HashSet::new();
    let mut addresses = HashSet::new();
    let mut shadowing = Shadowing::default();
    let mut out = Vec::with_capacity(cfg.listeners.len());
    for (li, l) in cfg.listeners.iter().enumerate() {
        let path = format!("listeners[{li}]");
        if !names.insert(l.name.as_str()) || !valid_name(&l.name) {
            errors.push(
                format!("{path}.name"),
                format!("{:?} is empty, invalid or used twice", l.name),
            );
        }
        let Some(address) = parse_listen_address(l, &path, &mut addresses, errors) else {
            continue;
        };
        let routes = served_routes(l, &route_index, &path, errors);
        let (hosts, vhosts) = build_vhosts(&routes, pending, route_hosts);
        for vhost in &vhosts {
            shadowing.record(vhost);
        }
        if l.max_connections == 0 {
            errors.push(format!("{path}.max_connections"), "must be at least 1");
        }
        if l.request_body_timeout.0.is_zero() {
            errors.push(
                format!("{path}.request_body_timeout"),
                "must be more than 0",
            );
        }
        let tls = l
            .tls
            .as_ref()
            .and_then(|t| crate::tls::server::build(t, &format!("{path}.tls"), errors));
        out.push(
            ListenerRoutes::new(l.name.as_str().into(), address, hosts, vhosts)
                .with_limits(l.max_request_body.0, l.max_connections as usize)
                .with_conn(conn_settings(l, &path, errors))
                .with_body_timeout(l.request_body_timeout.0)
                .with_tls(tls),
        );
    }
    shadowing.report(rules, cfg, errors);
    out
}

/// Smallest `max_header_bytes`: hyper's HTTP/1 read buffer cannot be smaller.
const MIN_HEADER_BYTES: u64 = 8 << 10;
/// Largest `max_header_bytes` and `max_request_target`: far above any real
/// client, and within HTTP/2's 32-bit header list size.
const MAX_HEADER_BYTES: u64 = 16 << 20;

fn conn_settings(l: &ListenerConfig, path: &str, errors: &mut ConfigErrors) -> ConnSettings {
    let t = &l.timeouts;
    for (field, value) in [
        ("idle", t.idle),
        ("first_request", t.first_request),
        ("send_idle", t.send_idle),
    ] {
        if value.0.is_zero() {
            errors.push(format!("{path}.timeouts.{field}"), "must be more than 0");
        }
    }
    let header = l.max_header_bytes.0;
    if !(MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&header) {
        errors.push(
            format!("{path}.max_header_bytes"),
            format!("{} is outside 8KiB..16MiB", l.max_header_bytes),
        );
    }
    let target = l.max_request_target.0;
    if !(1..=MAX_HEADER_BYTES).contains(&target) {
        errors.push(
            format!("{path}.max_request_target"),
            format!("{} is outside 1..16MiB", l.max_request_target),
        );
    }
    ConnSettings {
        idle: t.idle.0,
        first_request: t.first_request.0,
        send_idle: t.send_idle.0,
        max_request_target: usize::try_from(target).unwrap_or(usize::MAX),
        max_header_bytes: usize::try_from(header).unwrap_or(usize::MAX),
    }
}

fn parse_listen_address(
    l: &ListenerConfig,
    path: &str,
    seen: &mut HashSet<SocketAddr>,
    errors: &mut ConfigErrors,
) -> Option<SocketAddr> {
    match l.address.parse::<SocketAddr>() {
        Ok(a) => {
            if a.port() != 0 && !seen.insert(a) {
                errors.push(
                    format!("{path}.address"),
                    format!("{a} is used by another listener"),
                );
            }
            Some(a)
        }
        Err(_) => {
            errors.push(
                format!("{path}.address"),
                format!(
                    "{:?} is not ip:port (e.g. 0.0.0.0:8080 or [::]:8080)",
                    l.address
                ),
            );
            None
        }
    }
}

fn served_routes(
    l: &ListenerConfig,
    index: &HashMap<&str, usize>,
    path: &str,
    errors: &mut ConfigErrors,
) -> Vec<usize> {
    if l.routes.is_empty() {
        let mut all: Vec<usize> = index.values().copied().collect();
        all.sort_unstable();
        return all;
    }
    l.routes
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let found = index.get(name.as_str()).copied();
            if found.is_none() {
                errors.push(
                    format!("{path}.routes[{i}]"),
                    format!("unknown route \"{name}\""),
                );
            }
            found
        })
        .collect()
}

/// Groups the entries of the served routes by hostname pattern, each group
/// sorted by precedence.
fn build_vhosts(
    routes: &[usize],
    pending: &[Vec<PendingEntry>],
    route_hosts: &RouteHosts,
) -> (Vec<(HostPattern, u32)>, Vec<VirtualHost>) {
    let mut by_host: Vec<(HostPattern, Vec<&PendingEntry>)> = Vec::new();
    for &r in routes {
        let (Some(hosts), Some(entries)) = (route_hosts.get(r), pending.get(r)) else {
            continue;
        };
        for host in hosts {
            let slot = match by_host.iter().position(|(h, _)| h == host) {
                Some(i) => i,
                None => {
                    by_host.push((host.clone(), Vec::new()));
                    by_host.len() - 1
                }
            };
            by_host[slot].1.extend(entries.iter());
        }
    }
    // Gateway API: every route whose hostnames match the request competes on
    // match precedence; hostname specificity only breaks ties (before config
    // order). So each pattern's vhost also gets the entries of the less
    // specific patterns that cover it.
    let specificity = |h: &HostPattern| -> (u8, std::cmp::Reverse<usize>) {
        match h {
            HostPattern::Exact(_) => (0, std::cmp::Reverse(0)),
            HostPattern::Wildcard(s) => (1, std::cmp::Reverse(s.len())),
            HostPattern::Any => (2, std::cmp::Reverse(0)),
        }
    };
    let covers = |wide: &HostPattern, narrow: &HostPattern| -> bool {
        match (wide, narrow) {
            (HostPattern::Any, HostPattern::Any) => false,
            (HostPattern::Any, _) => true,
            (HostPattern::Wildcard(w), HostPattern::Exact(h)) => {
                h.len() > w.len() && h.ends_with(&**w)
            }
            (HostPattern::Wildcard(w), HostPattern::Wildcard(n)) => {
                n.len() > w.len() && n.ends_with(&**w)
            }
            _ => false,
        }
    };
    let mut hosts = Vec::with_capacity(by_host.len());
    let mut vhosts = Vec::with_capacity(by_host.len());
    for (i, (host, own)) in by_host.iter().enumerate() {
        let mut entries: Vec<(&PendingEntry, (u8, std::cmp::Reverse<usize>))> =
            own.iter().map(|&e| (e, specificity(host))).collect();
        for (other, theirs) in &by_host {
            if covers(other, host) {
                entries.extend(theirs.iter().map(|&e| (e, specificity(other))));
            }
        }
        entries.sort_by_key(|(e, spec)| {
            let k = e.conditions.precedence(e.order);
            (k.0, k.1, k.2, k.3, k.4, *spec, k.5)
        });
        let entries = entries
            .into_iter()
            .map(|(e, _)| Entry {
                conditions: e.conditions.clone(),
                rule: e.rule,
            })
            .collect();
        hosts.push((host.clone(), i as u32));
        vhosts.push(VirtualHost::new(entries));
    }
    (hosts, vhosts)
}

/// Tracks, per rule, whether each of its appearances is reachable. A rule
/// every appearance of which is covered by a higher-precedence entry can never
/// match and is rejected, naming the rule that hides it.
#[derive(Default)]
struct Shadowing {
    /// rule -> (appearances, shadowed appearances, first shadowing rule)
    seen: HashMap<u32, (usize, usize, Option<u32>)>,
}

impl Shadowing {
    fn record(&mut self, vhost: &VirtualHost) {
        let mut per_rule: HashMap<u32, (bool, Option<u32>)> = HashMap::new();
        for (i, e) in vhost.entries().iter().enumerate() {
            let by = vhost.shadowed_by(i).map(|s| vhost.entries()[s].rule);
            let slot = per_rule.entry(e.rule).or_insert((true, None));
            match by {
                Some(r) if r != e.rule => slot.1 = slot.1.or(Some(r)),
                Some(_) => {}
                None => slot.0 = false,
            }
        }
        for (rule, (all_shadowed, by)) in per_rule {
            let slot = self.seen.entry(rule).or_insert((0, 0, None));
            slot.0 += 1;
            if all_shadowed && by.is_some() {
                slot.1 += 1;
                slot.2 = slot.2.or(by);
            }
        }
    }

    fn report(&self, rules: &[Rule], cfg: &Config, errors: &mut ConfigErrors) {
        let mut hidden: Vec<(u32, u32)> = self
            .seen
            .iter()
            .filter(|(_, &(n, shadowed, _))| n > 0 && n == shadowed)
            .filter_map(|(&rule, &(_, _, by))| Some((rule, by?)))
            .collect();
        hidden.sort_unstable();
        for (rule, by) in hidden {
            let (r, b) = (&rules[rule as usize], &rules[by as usize]);
            errors.push(
                rule_path(cfg, &r.route, &r.name),
                format!(
                    "rule \"{}\" can never match: every request it matches is taken first by rule \"{}\" of route \"{}\" (higher Gateway API precedence)",
                    r.name, b.name, b.route
                ),
            );
        }
    }
}

fn rule_path(cfg: &Config, route: &str, rule: &str) -> String {
    cfg.routes
        .iter()
        .enumerate()
        .find(|(_, r)| r.name == route)
        .and_then(|(ri, r)| {
            let i = r.rules.iter().position(|x| x.name == rule)?;
            Some(format!("routes[{ri}].rules[{i}]"))
        })
        .unwrap_or_else(|| format!("routes.{route}.rules.{rule}"))
}
