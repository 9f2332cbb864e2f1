//! Rule filters that change where a request goes or what it asks for:
//! `request_redirect`, `url_rewrite` and `mirror`, Gateway API's
//! `RequestRedirect`, `URLRewrite` and `RequestMirror` in cutover's
//! snake_case spelling.

use serde::{Deserialize, Serialize};

use super::resilience::{Dur, Size};

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

/// Copy requests to another group, fire-and-forget (Gateway API
/// `HTTPRequestMirrorFilter`): its answers are discarded and it never slows
/// or fails the request it copies.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// The group that receives the copies (one endpoint of it per copy).
    pub group: String,
    /// Share of requests copied, 0..=100; default (and without `fraction`) 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u32>,
    /// The share as `numerator / denominator` (instead of `percent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<FractionConfig>,
    /// Largest request body copied; a larger request is not mirrored
    /// (counted as `body_too_large`). A rule with mirrors keeps bodies up to
    /// this size (like the retry replay buffer). Default 64KiB.
    #[serde(default = "default_mirror_body")]
    pub max_body: Size,
    /// Copies in flight at once, per route and mirror group; over it a copy
    /// is dropped (counted as `dropped`). Default 64.
    #[serde(default = "default_mirror_in_flight")]
    pub max_in_flight: u32,
    /// Longest a copy may take until the mirror's response head; then it is
    /// abandoned (counted as `timeout`). Default 5s.
    #[serde(default = "default_mirror_timeout")]
    pub timeout: Dur,
}

impl MirrorConfig {
    /// A mirror copying every request to `group`, with the default bounds.
    pub fn to(group: String) -> MirrorConfig {
        MirrorConfig {
            group,
            percent: None,
            fraction: None,
            max_body: default_mirror_body(),
            max_in_flight: default_mirror_in_flight(),
            timeout: default_mirror_timeout(),
        }
    }
}

/// Gateway API `Fraction`: `numerator / denominator`, denominator default 100.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FractionConfig {
    /// At most `denominator`.
    pub numerator: u32,
    /// At least 1; default 100.
    #[serde(default = "default_denominator")]
    pub denominator: u32,
}

fn default_mirror_body() -> Size {
    Size(64 * 1024)
}

fn default_mirror_in_flight() -> u32 {
    64
}

fn default_mirror_timeout() -> Dur {
    Dur::secs(5)
}

fn default_denominator() -> u32 {
    100
}

/// Cross-origin resource sharing (Gateway API `HTTPCORSFilter`): the proxy
/// answers preflight requests itself and adds the CORS headers to answers
/// for allowed origins.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins allowed: `scheme://host[:port]`, a host may start with `*.`;
    /// `*` alone allows any origin.
    #[serde(default)]
    pub allow_origins: Vec<String>,
    /// Whether credentials (cookies, authorization) may be sent.
    #[serde(default)]
    pub allow_credentials: bool,
    /// Methods a preflight allows (`*`: the one asked for).
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// Request headers a preflight allows (`*`: those asked for).
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Response headers the browser may show to scripts.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Seconds a browser may cache a preflight answer; default 5.
    #[serde(default = "default_cors_max_age")]
    pub max_age: u32,
}

fn default_cors_max_age() -> u32 {
    5
}
