//! HTTPRoute `RequestRedirect` and `URLRewrite` filters -> cutover's
//! `request_redirect` and `url_rewrite` (same fields, camelCase here).

use serde::Deserialize;

use super::{FilterType, HttpRouteFilter};
use crate::config::error::ConfigErrors;
use crate::config::filters::{
    PathModifierConfig, PathModifierType, RedirectConfig, UrlRewriteConfig,
};
use crate::config::model::HeaderModifierConfig;

/// `HTTPRequestRedirectFilter`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRequestRedirect {
    /// `http` or `https`.
    #[serde(default)]
    pub scheme: Option<String>,
    /// Host of the `Location`.
    #[serde(default)]
    pub hostname: Option<String>,
    /// New path.
    #[serde(default)]
    pub path: Option<HttpPathModifier>,
    /// Port of the `Location`.
    #[serde(default)]
    pub port: Option<u16>,
    /// Default 302.
    #[serde(default)]
    pub status_code: Option<u16>,
}

/// `HTTPURLRewriteFilter`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpUrlRewrite {
    /// The `Host` sent upstream.
    #[serde(default)]
    pub hostname: Option<String>,
    /// The path sent upstream.
    #[serde(default)]
    pub path: Option<HttpPathModifier>,
}

/// `HTTPPathModifier`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpPathModifier {
    /// `ReplaceFullPath` or `ReplacePrefixMatch`.
    #[serde(rename = "type")]
    pub kind: PathModifierType,
    /// With `ReplaceFullPath`.
    #[serde(default)]
    pub replace_full_path: Option<String>,
    /// With `ReplacePrefixMatch`.
    #[serde(default)]
    pub replace_prefix_match: Option<String>,
}

/// A rule's redirect and rewrite, from its `filters[]`; each at most once,
/// its field required. `compile` checks the values.
pub fn convert_path_filters(
    list: &[HttpRouteFilter],
    at: &str,
    errors: &mut ConfigErrors,
) -> (Option<RedirectConfig>, Option<UrlRewriteConfig>) {
    let (mut redirect, mut rewrite) = (None, None);
    for (f, filter) in list.iter().enumerate() {
        let here = format!("{at}.filters[{f}]");
        let (field, twice) = match filter.kind {
            FilterType::RequestRedirect => ("requestRedirect", redirect.is_some()),
            FilterType::URLRewrite => ("urlRewrite", rewrite.is_some()),
            _ => continue,
        };
        if twice {
            given_twice(filter.kind, &here, errors);
            continue;
        }
        match (&filter.request_redirect, &filter.url_rewrite, filter.kind) {
            (Some(r), _, FilterType::RequestRedirect) => redirect = Some(to_redirect(r)),
            (_, Some(r), FilterType::URLRewrite) => rewrite = Some(to_rewrite(r)),
            _ => errors.push(
                format!("{here}.{field}"),
                format!("required with type {:?}", filter.kind),
            ),
        }
    }
    (redirect, rewrite)
}

fn to_redirect(r: &HttpRequestRedirect) -> RedirectConfig {
    RedirectConfig {
        scheme: r.scheme.clone(),
        hostname: r.hostname.clone(),
        port: r.port,
        path: r.path.as_ref().map(to_path),
        status_code: r.status_code.unwrap_or(302),
    }
}

fn to_rewrite(r: &HttpUrlRewrite) -> UrlRewriteConfig {
    UrlRewriteConfig {
        hostname: r.hostname.clone(),
        path: r.path.as_ref().map(to_path),
    }
}

fn to_path(p: &HttpPathModifier) -> PathModifierConfig {
    PathModifierConfig {
        kind: p.kind,
        replace_full_path: p.replace_full_path.clone(),
        replace_prefix_match: p.replace_prefix_match.clone(),
    }
}

/// A filter type a rule may hold once appears again at `here`.
pub(super) fn given_twice(kind: FilterType, here: &str, errors: &mut ConfigErrors) {
    errors.push(
        format!("{here}.type"),
        format!("{kind:?} is given twice in this rule (Gateway API allows it once)"),
    );
}

/// A backendRef's `filters[]`: its header modifiers (applied after the
/// rule's, only to requests that backend was picked for). A redirect or
/// rewrite belongs to the rule.
pub fn backend_filters(
    list: &[HttpRouteFilter],
    at: &str,
    errors: &mut ConfigErrors,
) -> (Option<HeaderModifierConfig>, Option<HeaderModifierConfig>) {
    for (f, filter) in list.iter().enumerate() {
        if matches!(
            filter.kind,
            FilterType::RequestRedirect
                | FilterType::URLRewrite
                | FilterType::RequestMirror
                | FilterType::CORS
        ) {
            errors.push(
                format!("{at}.filters[{f}].type"),
                format!(
                    "{:?} is not supported on a backendRef; put it in the rule's filters",
                    filter.kind
                ),
            );
        }
    }
    let (request, response, _) = super::convert::convert_filters(list, at, errors);
    (request, response)
}

/// `HTTPCORSFilter`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct HttpCors {
    #[serde(default)]
    pub allow_origins: Vec<String>,
    #[serde(default)]
    pub allow_credentials: Option<bool>,
    #[serde(default)]
    pub allow_methods: Vec<String>,
    #[serde(default)]
    pub allow_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub max_age: Option<u32>,
}

/// The rule's `CORS` filter (once per rule) as cutover's `cors`.
pub fn convert_cors(
    list: &[HttpRouteFilter],
    at: &str,
    errors: &mut ConfigErrors,
) -> Option<crate::config::filters::CorsConfig> {
    let mut out = None;
    for (f, filter) in list.iter().enumerate() {
        if filter.kind != FilterType::CORS {
            continue;
        }
        let here = format!("{at}.filters[{f}]");
        if out.is_some() {
            given_twice(filter.kind, &here, errors);
            continue;
        }
        let Some(c) = &filter.cors else {
            errors.push(format!("{here}.cors"), "required with type CORS");
            continue;
        };
        out = Some(crate::config::filters::CorsConfig {
            allow_origins: c.allow_origins.clone(),
            allow_credentials: c.allow_credentials.unwrap_or(false),
            allow_methods: c.allow_methods.clone(),
            allow_headers: c.allow_headers.clone(),
            expose_headers: c.expose_headers.clone(),
            max_age: c.max_age.unwrap_or(5),
        });
    }
    out
}
