//! Where each part of a merged config came from, so that compile errors
//! about the merged table name the file and HTTPRoute field the user wrote.

use std::collections::BTreeMap;

use crate::config::error::{ConfigErrors, FieldError};

/// Where the listeners, routes and groups of a merged config came from, so
/// that compile errors (`routes[3].rules[0]...`) name the file and, for an
/// HTTPRoute, its own field (`HTTPRoute reviews: spec.rules[0]...`).
#[derive(Debug, Clone, Default)]
pub struct Origins {
    pub(super) listeners: Vec<String>,
    pub(super) routes: Vec<RouteOrigin>,
    pub(super) groups: BTreeMap<String, String>,
    pub(super) rollouts: Vec<String>,
    /// What loaded but deserves a look (unresolved HTTPRoute backendRefs),
    /// with the field paths the user wrote; `cutover check` prints them.
    pub warnings: ConfigErrors,
}

#[derive(Debug, Clone)]
pub(super) enum RouteOrigin {
    /// A route of a cutover document: its path there.
    Own(String),
    /// A converted HTTPRoute: its label and per-rule modifier filter indexes.
    Gateway {
        label: String,
        filters: Vec<(Option<usize>, Option<usize>)>,
    },
}

impl Origins {
    /// Rewrites the paths of `errors` (about the merged config) to the
    /// places the user wrote.
    pub fn annotate(&self, errors: ConfigErrors) -> ConfigErrors {
        ConfigErrors(
            errors
                .0
                .into_iter()
                .map(|e| FieldError {
                    path: self.rewrite(&e.path),
                    message: e.message,
                })
                .collect(),
        )
    }

    fn rewrite(&self, path: &str) -> String {
        if let Some((i, rest)) = indexed(path, "listeners[") {
            if let Some(origin) = self.listeners.get(i) {
                return format!("{origin}{rest}");
            }
        }
        if let Some((i, rest)) = indexed(path, "routes[") {
            match self.routes.get(i) {
                Some(RouteOrigin::Own(origin)) => return format!("{origin}{rest}"),
                Some(RouteOrigin::Gateway { label, filters }) => {
                    return format!("{label}{}", gateway_field(rest, filters))
                }
                None => {}
            }
        }
        if let Some((i, rest)) = indexed(path, "rollouts[") {
            if let Some(origin) = self.rollouts.get(i) {
                return format!("{origin}{rest}");
            }
        }
        if let Some(rest) = path.strip_prefix("groups.") {
            let name = rest.split('.').next().unwrap_or(rest);
            if let Some(origin) = self.groups.get(name) {
                let tail = &rest[name.len()..];
                if origin.ends_with(&format!("groups.{name}")) {
                    return format!("{origin}{tail}");
                }
                return format!("{origin} (group {name}){tail}");
            }
        }
        path.to_string()
    }
}

/// `prefix<N>]rest` -> (N, rest).
fn indexed<'a>(path: &'a str, prefix: &str) -> Option<(usize, &'a str)> {
    let rest = path.strip_prefix(prefix)?;
    let close = rest.find(']')?;
    Some((rest[..close].parse().ok()?, &rest[close + 1..]))
}

/// A path inside a converted route (`.rules[0].backends[1].group`) as the
/// HTTPRoute field it came from (`spec.rules[0].backendRefs[1].name`).
fn gateway_field(rest: &str, filters: &[(Option<usize>, Option<usize>)]) -> String {
    if rest.is_empty() {
        return "spec".into();
    }
    if rest == ".name" {
        return "metadata.name".into();
    }
    let Some((rule, tail)) = indexed(rest.trim_start_matches('.'), "rules[") else {
        return format!("spec{rest}");
    };
    // A backend's own modifiers are not the rule's filters.
    let (req, resp) = match tail.starts_with(".backends[") {
        true => (None, None),
        false => filters.get(rule).copied().unwrap_or((None, None)),
    };
    let filter = |i: Option<usize>, field: &str| match i {
        Some(i) => format!(".filters[{i}].{field}"),
        None => format!(".filters[].{field}"),
    };
    let mut tail = tail
        .replace(".query_params[", ".queryParams[")
        .replace(".grpc", ".method")
        .replace(
            ".request_header_modifier",
            &filter(req, "requestHeaderModifier"),
        )
        .replace(
            ".response_header_modifier",
            &filter(resp, "responseHeaderModifier"),
        )
        .replace(".request_redirect", ".filters[].requestRedirect")
        .replace(".url_rewrite", ".filters[].urlRewrite")
        .replace(".status_code", ".statusCode")
        .replace(".replace_full_path", ".replaceFullPath")
        .replace(".replace_prefix_match", ".replacePrefixMatch")
        .replace(".timeouts.per_try", ".timeouts.backendRequest")
        .replace(".retry.retriable_status_codes", ".retry.codes");
    if let Some((_, rest)) = indexed(tail.trim_start_matches('.'), "mirror[") {
        tail = format!(".filters[].requestMirror{rest}");
    }
    if tail.starts_with(".backends[") {
        tail = tail.replacen(".backends[", ".backendRefs[", 1);
        if tail.ends_with("].group") {
            tail.truncate(tail.len() - ".group".len());
            tail.push_str(".name");
        }
    }
    format!("spec.rules[{rule}]{tail}")
}
