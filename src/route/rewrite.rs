//! Compiled `request_redirect` and `url_rewrite` filters and the path rules
//! they share (Gateway API `HTTPPathModifier`): pure functions of the
//! request's scheme, host, path and the rule's matched prefix.

use http::{HeaderValue, StatusCode};

/// A path change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathModifier {
    /// The whole path becomes this.
    Full(Box<str>),
    /// The matched prefix becomes this (kept without a trailing `/`).
    Prefix(Box<str>),
}

impl PathModifier {
    /// The new path for `path`, which matched the prefix `matched` (the
    /// compiled prefix, never with a trailing `/` except `/` itself).
    pub fn apply(&self, path: &str, matched: &str) -> String {
        match self {
            PathModifier::Full(p) => p.to_string(),
            PathModifier::Prefix(r) => replace_prefix(path, matched, r),
        }
    }
}

/// Gateway API's `ReplacePrefixMatch`: the whole path segments `prefix`
/// matched are replaced by `replacement`; a trailing `/` on either is
/// ignored and the rest of the path is kept as it was, so `/foo/` with
/// prefix `/foo` and replacement `/xyz` becomes `/xyz/`, and an empty
/// result is `/`.
pub fn replace_prefix(path: &str, prefix: &str, replacement: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    let rest = path.get(prefix.len()..).unwrap_or("");
    let head = replacement.trim_end_matches('/');
    let mut out = String::with_capacity(head.len() + rest.len() + 1);
    out.push_str(head);
    out.push_str(rest);
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    out
}

/// A compiled `request_redirect`.
#[derive(Debug, Clone)]
pub struct Redirect {
    /// `http` or `https`; `None` keeps the request's.
    pub scheme: Option<&'static str>,
    /// `None` keeps the request's host.
    pub hostname: Option<Box<str>>,
    /// `None` follows the spec's defaulting (see [`Redirect::location`]).
    pub port: Option<u16>,
    /// `None` keeps the request's path.
    pub path: Option<PathModifier>,
    /// 301, 302, 303, 307 or 308.
    pub status: StatusCode,
}

/// What a redirect needs to know about the request it answers.
pub struct RedirectFrom<'a> {
    /// `http` or `https`: how the request arrived.
    pub scheme: &'static str,
    /// The request's host, port already removed.
    pub host: &'a str,
    /// The port of the listener the request arrived on.
    pub listener_port: u16,
    /// The request's path.
    pub path: &'a str,
    /// The request's query, kept in the `Location`.
    pub query: Option<&'a str>,
    /// The prefix the rule matched (`/` for a catch-all).
    pub matched_prefix: &'a str,
}

impl Redirect {
    /// The `Location` value. Port defaulting follows Gateway API: an
    /// explicit `port` wins; else an explicit `scheme` brings its
    /// well-known port (80, 443); else the listener's port. Port 80 with
    /// http and 443 with https are left out.
    pub fn location(&self, from: &RedirectFrom<'_>) -> Result<HeaderValue, http::Error> {
        let scheme = self.scheme.unwrap_or(from.scheme);
        let port = match (self.port, self.scheme) {
            (Some(p), _) => p,
            (None, Some("https")) => 443,
            (None, Some(_)) => 80,
            (None, None) => from.listener_port,
        };
        let host = self.hostname.as_deref().unwrap_or(from.host);
        let path = match &self.path {
            Some(m) => m.apply(from.path, from.matched_prefix),
            None => from.path.to_string(),
        };
        let default_port = matches!((scheme, port), ("http", 80) | ("https", 443));
        let mut out = format!("{scheme}://");
        if host.contains(':') {
            out.push('[');
            out.push_str(host);
            out.push(']');
        } else {
            out.push_str(host);
        }
        if !default_port {
            out.push(':');
            out.push_str(&port.to_string());
        }
        out.push_str(&path);
        if let Some(q) = from.query {
            out.push('?');
            out.push_str(q);
        }
        Ok(HeaderValue::try_from(out)?)
    }
}

/// A compiled `url_rewrite`.
#[derive(Debug, Clone)]
pub struct UrlRewrite {
    /// The `Host` sent upstream.
    pub hostname: Option<HeaderValue>,
    /// The path sent upstream.
    pub path: Option<PathModifier>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table in Gateway API's `HTTPPathModifier.replacePrefixMatch`
    /// documentation, row for row; prefixes are given as written there and
    /// compiled the way `compile` does (trailing `/` trimmed).
    #[test]
    fn replace_prefix_follows_the_spec_table() {
        let rows = [
            ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
            ("/foo", "/foo", "/xyz", "/xyz"),
            ("/foo/", "/foo", "/xyz", "/xyz/"),
            ("/foo/bar", "/foo", "", "/bar"),
            ("/foo/", "/foo", "", "/"),
            ("/foo", "/foo", "", "/"),
            ("/foo/", "/foo", "/", "/"),
            ("/foo", "/foo", "/", "/"),
        ];
        for (path, prefix, replacement, want) in rows {
            let compiled = prefix.trim_end_matches('/');
            assert_eq!(
                replace_prefix(path, compiled, replacement),
                want,
                "{path} with prefix {prefix} replaced by {replacement:?}"
            );
        }
    }

    #[test]
    fn replace_prefix_under_the_root_prefix_keeps_the_path() {
        assert_eq!(replace_prefix("/foo/bar", "/", "/xyz"), "/xyz/foo/bar");
        assert_eq!(replace_prefix("/foo", "/", ""), "/foo");
        assert_eq!(replace_prefix("/", "/", ""), "/");
    }

    fn from<'a>(scheme: &'static str, path: &'a str, query: Option<&'a str>) -> RedirectFrom<'a> {
        RedirectFrom {
            scheme,
            host: "example.com",
            listener_port: 8080,
            path,
            query,
            matched_prefix: "/",
        }
    }

    fn redirect(scheme: Option<&'static str>, port: Option<u16>) -> Redirect {
        Redirect {
            scheme,
            hostname: None,
            port,
            path: None,
            status: StatusCode::FOUND,
        }
    }

    #[test]
    fn redirect_port_defaults_follow_the_spec() {
        let cases = [
            // No scheme, no port: the listener's port.
            (None, None, "http", "http://example.com:8080/a"),
            // A scheme brings its well-known port, left out of Location.
            (Some("https"), None, "http", "https://example.com/a"),
            (Some("http"), None, "https", "http://example.com/a"),
            // An explicit port wins, and is shown unless well-known.
            (
                Some("https"),
                Some(8443),
                "http",
                "https://example.com:8443/a",
            ),
            (None, Some(80), "http", "http://example.com/a"),
            (None, Some(443), "http", "http://example.com:443/a"),
            (None, Some(443), "https", "https://example.com/a"),
        ];
        for (scheme, port, came, want) in cases {
            let got = redirect(scheme, port)
                .location(&from(came, "/a", None))
                .unwrap();
            assert_eq!(got, want, "scheme {scheme:?} port {port:?} from {came}");
        }
    }

    #[test]
    fn redirect_keeps_the_query_and_rewrites_host_and_path() {
        let r = Redirect {
            scheme: Some("https"),
            hostname: Some("new.example".into()),
            port: None,
            path: Some(PathModifier::Prefix("/v2".into())),
            status: StatusCode::MOVED_PERMANENTLY,
        };
        let mut f = from("http", "/v1/items", Some("page=2"));
        f.matched_prefix = "/v1";
        assert_eq!(
            r.location(&f).unwrap(),
            "https://new.example/v2/items?page=2"
        );
    }

    #[test]
    fn redirect_brackets_an_ipv6_host() {
        let mut f = from("http", "/", None);
        f.host = "::1";
        assert_eq!(
            redirect(None, None).location(&f).unwrap(),
            "http://[::1]:8080/"
        );
    }
}
