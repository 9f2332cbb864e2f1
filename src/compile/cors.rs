//! Compiles a rule's `cors` (Gateway API `HTTPCORSFilter`): origins as
//! `scheme://host[:port]` (a host may start with `*.`) or `*` alone; `*`
//! in methods or headers alone; header values that HTTP can carry.

use http::HeaderValue;

use crate::config::error::ConfigErrors;
use crate::config::filters::CorsConfig;
use crate::route::cors::Cors;

/// The rule's CORS policy; errors name the field under `path`.
pub fn compile_cors(c: &CorsConfig, path: &str, errors: &mut ConfigErrors) -> Option<Box<Cors>> {
    let before = errors.0.len();
    let any_origin = c.allow_origins.iter().any(|o| o == "*");
    let (mut origins, mut wildcards) = (Vec::new(), Vec::new());
    for (i, o) in c.allow_origins.iter().enumerate() {
        let at = format!("{path}.allow_origins[{i}]");
        if o == "*" {
            continue;
        }
        let lower = o.to_ascii_lowercase();
        let Some((scheme, host)) = lower.split_once("://") else {
            errors.push(at, format!("{o:?} is not scheme://host[:port] or *"));
            continue;
        };
        match host.strip_prefix('*') {
            Some(suffix) if suffix.starts_with('.') && !suffix.contains('*') => {
                wildcards.push((format!("{scheme}://"), suffix.to_string()));
            }
            Some(_) => errors.push(
                at,
                format!("{o:?}: a wildcard is a whole first label (*.example.com)"),
            ),
            None if host.is_empty() || host.contains(['*', '/']) => {
                errors.push(at, format!("{o:?} is not scheme://host[:port] or *"));
            }
            None => origins.push(lower.clone()),
        }
    }
    let methods = match header_list(&c.allow_methods, &format!("{path}.allow_methods"), errors) {
        List::Star => None,
        List::Empty => Some(HeaderValue::from_static("GET, HEAD, POST")),
        List::Value(v) => Some(v),
    };
    let (headers, echo_headers) =
        match header_list(&c.allow_headers, &format!("{path}.allow_headers"), errors) {
            List::Star => (None, true),
            List::Empty => (None, false),
            List::Value(v) => (Some(v), false),
        };
    let expose = match header_list(&c.expose_headers, &format!("{path}.expose_headers"), errors) {
        List::Value(v) => Some(v),
        List::Star => Some(HeaderValue::from_static("*")),
        List::Empty => None,
    };
    if errors.0.len() > before {
        return None;
    }
    Some(Box::new(Cors {
        any_origin,
        origins: origins.into(),
        wildcards: wildcards.into(),
        credentials: c.allow_credentials,
        methods,
        headers,
        echo_headers,
        expose,
        max_age: HeaderValue::from(c.max_age),
    }))
}

/// A list field: empty, `*` alone, or the items joined.
enum List {
    Empty,
    Star,
    Value(HeaderValue),
}

fn header_list(items: &[String], path: &str, errors: &mut ConfigErrors) -> List {
    if items.is_empty() {
        return List::Empty;
    }
    if items.iter().any(|m| m == "*") {
        if items.len() > 1 {
            errors.push(path, "`*` must be alone");
        }
        return List::Star;
    }
    match HeaderValue::from_str(&items.join(", ")) {
        Ok(v) => List::Value(v),
        Err(_) => {
            errors.push(path, "not a valid header value");
            List::Empty
        }
    }
}
