//! A rule's CORS policy (Gateway API `HTTPCORSFilter`), pure: which origins
//! are allowed, the preflight answer's headers, and the headers added to an
//! allowed origin's answers.

use http::header::{self, HeaderMap, HeaderValue};
use http::Method;

/// Compiled `cors`.
#[derive(Debug)]
pub struct Cors {
    /// `*`: any origin.
    pub any_origin: bool,
    /// Exact origins, lowercased (`https://app.example.com`).
    pub origins: Box<[String]>,
    /// Wildcard origins as (scheme `://` prefix, `.suffix[:port]`), from
    /// `https://*.example.com`.
    pub wildcards: Box<[(String, String)]>,
    /// Credentials allowed.
    pub credentials: bool,
    /// `Access-Control-Allow-Methods`; `None`: `*` (echo the one asked).
    pub methods: Option<HeaderValue>,
    /// `Access-Control-Allow-Headers`, if listed.
    pub headers: Option<HeaderValue>,
    /// `*`: allow (echo) the headers a preflight asks for.
    pub echo_headers: bool,
    /// `Access-Control-Expose-Headers`, if any.
    pub expose: Option<HeaderValue>,
    /// `Access-Control-Max-Age`.
    pub max_age: HeaderValue,
}

impl Cors {
    /// Whether `origin` may read the answers.
    pub fn allows(&self, origin: &str) -> bool {
        if self.any_origin {
            return true;
        }
        let origin = origin.to_ascii_lowercase();
        self.origins.contains(&origin)
            || self.wildcards.iter().any(|(scheme, suffix)| {
                origin
                    .strip_prefix(scheme.as_str())
                    .and_then(|host| host.strip_suffix(suffix.as_str()))
                    .is_some_and(|label| !label.is_empty())
            })
    }

    /// For a preflight (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`): the answer's headers, empty when the
    /// origin is not allowed. `None` for any other request.
    #[inline(never)] // off the request path's hot code: see proxy::forward_request
    pub fn preflight(&self, method: &Method, req: &HeaderMap) -> Option<HeaderMap> {
        let asked = req.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
        let origin = req.get(header::ORIGIN)?;
        if method != Method::OPTIONS {
            return None;
        }
        let mut out = HeaderMap::new();
        if !origin.to_str().is_ok_and(|o| self.allows(o)) {
            return Some(out);
        }
        self.allow_origin(origin, &mut out);
        let methods = self.methods.clone().unwrap_or_else(|| asked.clone());
        out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
        let headers = match self.echo_headers {
            true => req.get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned(),
            false => self.headers.clone(),
        };
        if let Some(h) = headers {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, h);
        }
        out.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        Some(out)
    }

    /// Adds the CORS headers to an answer for `origin`, if it is allowed.
    #[inline(never)] // off the request path's hot code: see proxy::forward_request
    pub fn decorate(&self, origin: &HeaderValue, resp: &mut HeaderMap) {
        if !origin.to_str().is_ok_and(|o| self.allows(o)) {
            return;
        }
        self.allow_origin(origin, resp);
        if let Some(e) = &self.expose {
            resp.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, e.clone());
        }
    }

    /// `Access-Control-Allow-Origin` (the origin itself, or `*` for any
    /// origin without credentials), `-Credentials`, and `Vary: Origin`.
    fn allow_origin(&self, origin: &HeaderValue, out: &mut HeaderMap) {
        let value = if self.any_origin && !self.credentials {
            HeaderValue::from_static("*")
        } else {
            out.append(header::VARY, HeaderValue::from_static("Origin"));
            origin.clone()
        };
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        if self.credentials {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(any: bool, exact: &[&str], wild: &[(&str, &str)]) -> Cors {
        Cors {
            any_origin: any,
            origins: exact.iter().map(|s| s.to_string()).collect(),
            wildcards: wild
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            credentials: false,
            methods: None,
            headers: None,
            echo_headers: true,
            expose: None,
            max_age: HeaderValue::from_static("5"),
        }
    }

    #[test]
    fn origins_match_exactly_or_by_a_whole_first_label() {
        let c = cors(
            false,
            &["https://app.example.com"],
            &[("https://", ".example.org")],
        );
        assert!(c.allows("https://app.example.com"));
        assert!(c.allows("HTTPS://APP.example.com"));
        assert!(!c.allows("http://app.example.com"));
        assert!(c.allows("https://a.b.example.org"));
        assert!(!c.allows("https://example.org"));
        assert!(!c.allows("https://.example.org"));
        assert!(!c.allows("https://evil.com/.example.org.x"));
        assert!(cors(true, &[], &[]).allows("null"));
    }

    #[test]
    fn a_star_echoes_what_the_preflight_asks_and_others_get_nothing() {
        let c = cors(true, &[], &[]);
        let mut req = HeaderMap::new();
        req.insert(header::ORIGIN, HeaderValue::from_static("https://x.test"));
        req.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("PATCH"),
        );
        req.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("x-a"),
        );
        let out = c.preflight(&Method::OPTIONS, &req).unwrap();
        assert_eq!(out[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(out[header::ACCESS_CONTROL_ALLOW_METHODS], "PATCH");
        assert_eq!(out[header::ACCESS_CONTROL_ALLOW_HEADERS], "x-a");
        assert!(c.preflight(&Method::GET, &req).is_none());
        let strict = cors(false, &["https://y.test"], &[]);
        assert!(strict.preflight(&Method::OPTIONS, &req).unwrap().is_empty());
    }
}
