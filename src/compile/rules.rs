//! Compiles one route rule: matches, backends, sticky key, header modifiers.
//! Every problem is recorded with its field path; nothing is half-built.

use std::collections::{HashMap, HashSet};

use http::{HeaderName, HeaderValue, Method};
use regex::{Regex, RegexBuilder};

use crate::config::error::ConfigErrors;
use crate::config::model::{
    HeaderMatchConfig, HeaderModifierConfig, MatchConfig, PathMatchType, QueryMatchConfig,
    RuleConfig, StickyConfig, ValueMatchType,
};
use crate::proxy::forward::is_hop_by_hop;
use crate::route::matcher::{Conditions, HeaderMatch, PathMatch, QueryMatch, ValueMatch};
use crate::route::split::{Split, StickyKey};
use crate::route::{BackendHeaders, Faults, HeaderModifier, Inherited, Rule};

/// Largest weight; Gateway API's limit.
pub const MAX_WEIGHT: u32 = 1_000_000;
/// Compiled size limit per regular expression (guards memory and CPU).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A compiled rule and its match alternatives.
pub struct CompiledRule {
    /// The rule.
    pub rule: Rule,
    /// One entry per `matches` item (at least one).
    pub conditions: Vec<Conditions>,
}

/// Compiles `rule` at `path` (e.g. `routes[0].rules[1]`); `None` when any
/// field is wrong, with every problem in `errors`.
pub fn compile_rule(
    route: &str,
    rule: &RuleConfig,
    path: &str,
    groups: &HashMap<&str, u32>,
    inherited: &Inherited,
    errors: &mut ConfigErrors,
) -> Option<CompiledRule> {
    let before = errors.0.len();
    if rule.name.is_empty() {
        errors.push(format!("{path}.name"), "must not be empty");
    }
    let split = compile_backends(rule, path, groups, errors);
    let sticky = rule
        .sticky
        .as_ref()
        .and_then(|s| compile_sticky(s, &format!("{path}.sticky"), errors));
    let conditions: Vec<Conditions> = if rule.matches.is_empty() {
        vec![catch_all()]
    } else {
        rule.matches
            .iter()
            .enumerate()
            .filter_map(|(i, m)| compile_match(m, &format!("{path}.matches[{i}]"), errors))
            .collect()
    };
    let request_headers = compile_modifier(
        rule.request_header_modifier.as_ref(),
        &format!("{path}.request_header_modifier"),
        errors,
    );
    let response_headers = compile_modifier(
        rule.response_header_modifier.as_ref(),
        &format!("{path}.response_header_modifier"),
        errors,
    );
    let policy = super::policy::rule_policy(rule, path, errors);
    if let Some(rollout) = &rule.rollout {
        crate::config::rollout::check(rollout, rule, path, errors);
    }
    let faults = compile_faults(rule, path, errors);
    let (redirect, rewrite) = super::filters::compile_filters(rule, path, errors);
    let backend_headers = compile_backend_headers(rule, path, errors);
    let mirrors = super::mirror::compile_mirrors(route, rule, path, groups, inherited, errors);
    let cors = rule
        .cors
        .as_ref()
        .and_then(|c| super::cors::compile_cors(c, &format!("{path}.cors"), errors));
    if errors.0.len() > before {
        return None;
    }
    Some(CompiledRule {
        rule: Rule {
            route: route.into(),
            name: rule.name.as_str().into(),
            split: split?,
            sticky,
            request_headers,
            response_headers,
            observed: rule
                .backends
                .iter()
                .map(|b| inherited.rules.split_counter(route, &rule.name, &b.group))
                .collect(),
            policy,
            budget: inherited.rules.budget(route),
            metrics: inherited.metrics().series.rule(
                route,
                &rule.name,
                rule.backends.iter().map(|b| b.group.as_str()),
            ),
            rollout: rule.rollout.clone().map(Box::new),
            faults,
            redirect,
            rewrite,
            cors,
            mirrors,
            backend_headers,
            unresolved: if rule.backends.iter().any(|b| b.unresolved) {
                rule.backends.iter().map(|b| b.unresolved).collect()
            } else {
                Box::new([])
            },
        },
        conditions,
    })
}

fn compile_faults(rule: &RuleConfig, path: &str, errors: &mut ConfigErrors) -> Faults {
    use super::fault::compile;
    let backends: Box<[_]> = rule
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            b.fault
                .as_ref()
                .and_then(|f| compile(f, &format!("{path}.backends[{i}].fault"), errors))
        })
        .collect();
    Faults {
        rule: rule
            .fault
            .as_ref()
            .and_then(|f| compile(f, &format!("{path}.fault"), errors)),
        // No backend faults: an empty slice, nothing to look up per request.
        backends: if backends.iter().all(Option::is_none) {
            Box::new([])
        } else {
            backends
        },
    }
}

fn compile_backend_headers(
    rule: &RuleConfig,
    path: &str,
    errors: &mut ConfigErrors,
) -> Box<[BackendHeaders]> {
    let any = rule
        .backends
        .iter()
        .any(|b| b.request_header_modifier.is_some() || b.response_header_modifier.is_some());
    if !any {
        return Box::new([]);
    }
    rule.backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let at = format!("{path}.backends[{i}]");
            BackendHeaders {
                request: compile_modifier(
                    b.request_header_modifier.as_ref(),
                    &format!("{at}.request_header_modifier"),
                    errors,
                ),
                response: compile_modifier(
                    b.response_header_modifier.as_ref(),
                    &format!("{at}.response_header_modifier"),
                    errors,
                ),
            }
        })
        .collect()
}

fn catch_all() -> Conditions {
    Conditions {
        path: PathMatch::Prefix("/".into()),
        method: None,
        headers: Box::new([]),
        query: Box::new([]),
        grpc: None,
    }
}

fn compile_backends(
    rule: &RuleConfig,
    path: &str,
    groups: &HashMap<&str, u32>,
    errors: &mut ConfigErrors,
) -> Option<Split> {
    if rule.backends.is_empty() {
        if rule.request_redirect.is_none() {
            errors.push(format!("{path}.backends"), "needs at least one backend");
            return None;
        }
        return Some(Split::new(&[]));
    }
    let mut seen = HashSet::new();
    let mut pairs = Vec::with_capacity(rule.backends.len());
    for (i, b) in rule.backends.iter().enumerate() {
        let at = format!("{path}.backends[{i}]");
        if b.weight > MAX_WEIGHT {
            errors.push(
                format!("{at}.weight"),
                format!("{} is out of range 0..={MAX_WEIGHT}", b.weight),
            );
        }
        if !seen.insert(b.group.as_str()) {
            errors.push(
                format!("{at}.group"),
                format!("group \"{}\" is listed twice in this rule", b.group),
            );
        }
        match groups.get(b.group.as_str()) {
            Some(&g) => pairs.push((g, b.weight)),
            None => errors.push(
                format!("{at}.group"),
                format!("unknown group \"{}\"{}", b.group, suggest(&b.group, groups)),
            ),
        }
    }
    (pairs.len() == rule.backends.len()).then(|| Split::new(&pairs))
}

/// `; did you mean "canary"?` when a known name is one or two edits away.
pub(super) fn suggest(name: &str, groups: &HashMap<&str, u32>) -> String {
    let mut known: Vec<&str> = groups.keys().copied().collect();
    known.sort_unstable();
    known
        .into_iter()
        .find(|k| edit_distance(k, name) <= 2)
        .map(|k| format!("; did you mean \"{k}\"?"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn compile_sticky(s: &StickyConfig, path: &str, errors: &mut ConfigErrors) -> Option<StickyKey> {
    let given = usize::from(s.header.is_some())
        + usize::from(s.cookie.is_some())
        + usize::from(s.source_ip);
    if given != 1 {
        errors.push(path, "set exactly one of header, cookie or source_ip: true");
        return None;
    }
    if let Some(h) = &s.header {
        return header_name(h, &format!("{path}.header"), errors).map(StickyKey::Header);
    }
    if let Some(c) = &s.cookie {
        if c.is_empty() || c.contains([';', '=', ' ']) {
            errors.push(
                format!("{path}.cookie"),
                format!("invalid cookie name {c:?}"),
            );
            return None;
        }
        return Some(StickyKey::Cookie(c.as_str().into()));
    }
    Some(StickyKey::SourceIp)
}

fn compile_match(m: &MatchConfig, path: &str, errors: &mut ConfigErrors) -> Option<Conditions> {
    let before = errors.0.len();
    let (path_match, grpc) = match (&m.path, &m.grpc) {
        (None, None) => (PathMatch::Prefix("/".into()), None),
        (Some(p), None) => (
            compile_path(p.kind, &p.value, &format!("{path}.path.value"), errors)?,
            None,
        ),
        (None, Some(g)) => {
            let at = format!("{path}.grpc");
            let (p, rank) = super::grpc::compile(g, &at, errors, |kind, value, errors| {
                compile_path(kind, value, &at, errors)
            })?;
            (p, Some(rank))
        }
        (Some(_), Some(_)) => {
            errors.push(
                format!("{path}.grpc"),
                "`grpc` and `path` are exclusive (a gRPC method is a path)",
            );
            return None;
        }
    };
    let method = m.method.as_deref().and_then(|s| {
        let ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase());
        match Method::from_bytes(s.as_bytes()) {
            Ok(m) if ok => Some(m),
            _ => {
                errors.push(
                    format!("{path}.method"),
                    format!("invalid method {s:?} (use e.g. GET)"),
                );
                None
            }
        }
    });
    let mut names = HashSet::new();
    let headers: Vec<HeaderMatch> = m
        .headers
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let at = format!("{path}.headers[{i}]");
            let hm = compile_header_match(h, &at, errors)?;
            if !names.insert(hm.name.clone()) {
                errors.push(
                    format!("{at}.name"),
                    format!("header {} is matched twice", hm.name),
                );
            }
            Some(hm)
        })
        .collect();
    let query: Vec<QueryMatch> = m
        .query_params
        .iter()
        .enumerate()
        .filter_map(|(i, q)| compile_query_match(q, &format!("{path}.query_params[{i}]"), errors))
        .collect();
    (errors.0.len() == before).then(|| Conditions {
        path: path_match,
        method,
        headers: headers.into(),
        query: query.into(),
        grpc,
    })
}

fn compile_path(
    kind: PathMatchType,
    value: &str,
    path: &str,
    errors: &mut ConfigErrors,
) -> Option<PathMatch> {
    if kind != PathMatchType::RegularExpression && !value.starts_with('/') {
        errors.push(path, format!("{value:?} must start with '/'"));
        return None;
    }
    Some(match kind {
        PathMatchType::Exact => PathMatch::Exact(value.into()),
        PathMatchType::PathPrefix => {
            let trimmed = value.trim_end_matches('/');
            PathMatch::Prefix(if trimmed.is_empty() { "/" } else { trimmed }.into())
        }
        PathMatchType::RegularExpression => PathMatch::Regex {
            re: anchored_regex(value, path, errors)?,
            source: value.into(),
        },
    })
}

fn anchored_regex(pattern: &str, path: &str, errors: &mut ConfigErrors) -> Option<Regex> {
    match RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
    {
        Ok(re) => Some(re),
        Err(e) => {
            let reason = e
                .to_string()
                .lines()
                .last()
                .unwrap_or("invalid")
                .to_string();
            errors.push(
                path,
                format!("invalid regular expression {pattern:?}: {reason}"),
            );
            None
        }
    }
}

fn compile_value(
    kind: ValueMatchType,
    value: Option<&str>,
    path: &str,
    errors: &mut ConfigErrors,
) -> Option<ValueMatch> {
    match (kind, value) {
        (ValueMatchType::Present, None) => Some(ValueMatch::Present),
        (ValueMatchType::Present, Some(_)) => {
            errors.push(path, "type Present takes no value");
            None
        }
        (_, None) => {
            errors.push(path, "is required for Exact and RegularExpression");
            None
        }
        (ValueMatchType::Exact, Some(v)) => Some(ValueMatch::Exact(v.into())),
        (ValueMatchType::RegularExpression, Some(v)) => Some(ValueMatch::Regex {
            re: anchored_regex(v, path, errors)?,
            source: v.into(),
        }),
    }
}

fn compile_header_match(
    h: &HeaderMatchConfig,
    path: &str,
    errors: &mut ConfigErrors,
) -> Option<HeaderMatch> {
    let name = header_name(&h.name, &format!("{path}.name"), errors);
    let value = compile_value(h.kind, h.value.as_deref(), &format!("{path}.value"), errors);
    Some(HeaderMatch {
        name: name?,
        value: value?,
    })
}

fn compile_query_match(
    q: &QueryMatchConfig,
    path: &str,
    errors: &mut ConfigErrors,
) -> Option<QueryMatch> {
    if q.name.is_empty() {
        errors.push(format!("{path}.name"), "must not be empty");
    }
    let value = compile_value(q.kind, q.value.as_deref(), &format!("{path}.value"), errors)?;
    (!q.name.is_empty()).then(|| QueryMatch {
        name: q.name.as_str().into(),
        value,
    })
}

fn header_name(name: &str, path: &str, errors: &mut ConfigErrors) -> Option<HeaderName> {
    match HeaderName::from_bytes(name.as_bytes()) {
        Ok(n) => Some(n),
        Err(_) => {
            errors.push(path, format!("invalid header name {name:?}"));
            None
        }
    }
}

fn compile_modifier(
    m: Option<&HeaderModifierConfig>,
    path: &str,
    errors: &mut ConfigErrors,
) -> HeaderModifier {
    let Some(m) = m else {
        return HeaderModifier::default();
    };
    let mut pairs = |list: &[crate::config::model::HeaderValueConfig], field: &str| {
        list.iter()
            .enumerate()
            .filter_map(|(i, hv)| {
                let at = format!("{path}.{field}[{i}]");
                let name = modifiable_name(&hv.name, &format!("{at}.name"), errors)?;
                match HeaderValue::from_str(&hv.value) {
                    Ok(v) => Some((name, v)),
                    Err(_) => {
                        errors.push(format!("{at}.value"), "invalid header value");
                        None
                    }
                }
            })
            .collect::<Box<[_]>>()
    };
    let set = pairs(&m.set, "set");
    let add = pairs(&m.add, "add");
    let remove = m
        .remove
        .iter()
        .enumerate()
        .filter_map(|(i, n)| modifiable_name(n, &format!("{path}.remove[{i}]"), errors))
        .collect();
    HeaderModifier { set, add, remove }
}

/// Hop-by-hop headers are the proxy's business, not a rule's.
fn modifiable_name(name: &str, path: &str, errors: &mut ConfigErrors) -> Option<HeaderName> {
    let n = header_name(name, path, errors)?;
    if is_hop_by_hop(&n) {
        errors.push(
            path,
            format!("{n} is a hop-by-hop header and cannot be modified"),
        );
        return None;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::edit_distance;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("canary", "canry"), 1);
        assert_eq!(edit_distance("stable", "stable"), 0);
        assert_eq!(edit_distance("blue", "green"), 4);
    }
}
