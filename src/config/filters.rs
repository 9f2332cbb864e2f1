//! Rule filters that change where a request goes or what it asks for:
//! `request_redirect` and `url_rewrite`, Gateway API's `RequestRedirect`
//! and `URLRewrite` in cutover's snake_case spelling.

use serde::{Deserialize, Serialize};

/// Answer with a redirect instead of forwarding: every field left out keeps
/// the request's own value (Gateway API `HTTPRequestRedirectFilter`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectConfig {
    /// `http` or `https`; default the scheme the request came with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Host of the `Location`; default the request's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Port of the `Location`; default the scheme's well-known port when
    /// `scheme` is given, else the listener's port. 80 for http and 443 for
    /// https are left out of the `Location`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// New path; default the request's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifierConfig>,
    /// 301, 302 (default), 303, 307 or 308.
    #[serde(default = "default_redirect_status")]
    pub status_code: u16,
}

fn default_redirect_status() -> u16 {
    302
}

/// Rewrite the request before it is forwarded (Gateway API
/// `HTTPURLRewriteFilter`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UrlRewriteConfig {
    /// The `Host` sent upstream (the client's stays in `X-Forwarded-Host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The path sent upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifierConfig>,
}

/// How a path is changed (Gateway API `HTTPPathModifier`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum PathModifierType {
    /// The whole path becomes `replace_full_path`.
    ReplaceFullPath,
    /// The part the rule's `PathPrefix` match matched becomes
    /// `replace_prefix_match`; the rest of the path is kept.
    ReplacePrefixMatch,
}

/// A path change: the `type` and the one field of that type.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PathModifierConfig {
    /// Which change.
    #[serde(rename = "type")]
    pub kind: PathModifierType,
    /// With `ReplaceFullPath`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_full_path: Option<String>,
    /// With `ReplacePrefixMatch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_prefix_match: Option<String>,
}
