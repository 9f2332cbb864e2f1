//! Compiles a rule's `request_redirect` and `url_rewrite`, with the checks
//! Gateway API makes: one of the two per rule, `ReplacePrefixMatch` only
//! under `PathPrefix` matches, a redirect status from the allowed set.

use http::{HeaderValue, StatusCode};

use crate::config::error::ConfigErrors;
use crate::config::filters::{
    PathModifierConfig, PathModifierType, RedirectConfig, UrlRewriteConfig,
};
use crate::config::model::{PathMatchType, RuleConfig};
use crate::route::rewrite::{PathModifier, Redirect, UrlRewrite};

/// The rule's redirect and rewrite; errors name the field under `path`.
pub fn compile_filters(
    rule: &RuleConfig,
    path: &str,
    errors: &mut ConfigErrors,
) -> (Option<Box<Redirect>>, Option<Box<UrlRewrite>>) {
    if rule.request_redirect.is_some() && rule.url_rewrite.is_some() {
        errors.push(
            format!("{path}.url_rewrite"),
            "cannot be used together with request_redirect (a redirected request is not forwarded)",
        );
    }
    if rule.request_redirect.is_some() && !rule.backends.is_empty() {
        errors.push(
            format!("{path}.backends"),
            "must be empty in a rule with request_redirect (the proxy answers it)",
        );
    }
    let redirect = rule
        .request_redirect
        .as_ref()
        .and_then(|r| compile_redirect(r, rule, &format!("{path}.request_redirect"), errors));
    let rewrite = rule
        .url_rewrite
        .as_ref()
        .and_then(|r| compile_rewrite(r, rule, &format!("{path}.url_rewrite"), errors));
    (redirect.map(Box::new), rewrite.map(Box::new))
}

fn compile_redirect(
    r: &RedirectConfig,
    rule: &RuleConfig,
    path: &str,
    errors: &mut ConfigErrors,
) -> Option<Redirect> {
    let before = errors.0.len();
    let scheme = match r.scheme.as_deref() {
        None => None,
        Some("http") => Some("http"),
        Some("https") => Some("https"),
        Some(other) => {
            errors.push(
                format!("{path}.scheme"),
                format!("{other:?} is not http or https"),
            );
            None
        }
    };
    let hostname = r.hostname.as_deref().and_then(|h| {
        hostname(h, &format!("{path}.hostname"), errors).map(|_| h.to_ascii_lowercase().into())
    });
    if r.port == Some(0) {
        errors.push(format!("{path}.port"), "0 is not a port");
    }
    let status = match r.status_code {
        301 | 302 | 303 | 307 | 308 => StatusCode::from_u16(r.status_code).ok(),
        other => {
            errors.push(
                format!("{path}.status_code"),
                format!("{other} is not a redirect status (use 301, 302, 303, 307 or 308)"),
            );
            None
        }
    };
    let modifier = r
        .path
        .as_ref()
        .and_then(|p| compile_path(p, rule, &format!("{path}.path"), errors));
    if errors.0.len() > before {
        return None;
    }
    Some(Redirect {
        scheme,
        hostname,
        port: r.port,
        path: modifier,
        status: status?,
    })
}

fn compile_rewrite(
    r: &UrlRewriteConfig,
    rule: &RuleConfig,
    path: &str,
    errors: &mut ConfigErrors,
) -> Option<UrlRewrite> {
    let before = errors.0.len();
    let host = r
        .hostname
        .as_deref()
        .and_then(|h| hostname(h, &format!("{path}.hostname"), errors));
    let modifier = r
        .path
        .as_ref()
        .and_then(|p| compile_path(p, rule, &format!("{path}.path"), errors));
    (errors.0.len() == before).then_some(UrlRewrite {
        hostname: host,
        path: modifier,
    })
}

/// A DNS name (no port, no wildcard), as Gateway API's `PreciseHostname`.
fn hostname(h: &str, path: &str, errors: &mut ConfigErrors) -> Option<HeaderValue> {
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    match HeaderValue::from_str(h) {
        Ok(v) if ok => Some(v),
        _ => {
            errors.push(
                path,
                format!("{h:?} is not a host name (letters, digits, '-' and '.', no port)"),
            );
            None
        }
    }
}

fn compile_path(
    p: &PathModifierConfig,
    rule: &RuleConfig,
    path: &str,
    errors: &mut ConfigErrors,
) -> Option<PathModifier> {
    let (given, field, other) = match p.kind {
        PathModifierType::ReplaceFullPath => (
            &p.replace_full_path,
            "replace_full_path",
            p.replace_prefix_match
                .is_some()
                .then_some("replace_prefix_match"),
        ),
        PathModifierType::ReplacePrefixMatch => (
            &p.replace_prefix_match,
            "replace_prefix_match",
            p.replace_full_path.is_some().then_some("replace_full_path"),
        ),
    };
    if let Some(other) = other {
        errors.push(
            format!("{path}.{other}"),
            format!("must not be set with type {:?}", p.kind),
        );
    }
    let Some(value) = given else {
        errors.push(
            format!("{path}.{field}"),
            format!("required with type {:?}", p.kind),
        );
        return None;
    };
    let at = format!("{path}.{field}");
    let empty_prefix = p.kind == PathModifierType::ReplacePrefixMatch && value.is_empty();
    if !empty_prefix && !value.starts_with('/') {
        errors.push(&at, format!("{value:?} must start with '/'"));
        return None;
    }
    if value.contains(['?', '#']) || value.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        errors.push(
            &at,
            format!("{value:?} is not a path (no query, fragment, spaces)"),
        );
        return None;
    }
    match p.kind {
        PathModifierType::ReplaceFullPath => Some(PathModifier::Full(value.as_str().into())),
        PathModifierType::ReplacePrefixMatch => {
            let not_prefix = rule.matches.iter().position(|m| {
                m.path
                    .as_ref()
                    .is_some_and(|p| p.kind != PathMatchType::PathPrefix)
            });
            if let Some(i) = not_prefix {
                errors.push(
                    format!("{path}.type"),
                    format!("ReplacePrefixMatch needs PathPrefix matches, but matches[{i}].path is not one"),
                );
                return None;
            }
            Some(PathModifier::Prefix(value.trim_end_matches('/').into()))
        }
    }
}
