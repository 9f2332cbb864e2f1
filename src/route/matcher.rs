//! Request conditions of one rule match, their Gateway API precedence, and the
//! "covers" relation used to reject rules that can never match. Pure code.

use std::cmp::Reverse;

use http::{HeaderMap, HeaderName, Method};
use regex::Regex;

/// The parts of a request that routing looks at, borrowed from it so that
/// matching allocates nothing.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Request method.
    pub method: &'a Method,
    /// Host without port, lower case.
    pub host: &'a str,
    /// Path without the query.
    pub path: &'a str,
    /// Raw query string, if any.
    pub query: Option<&'a str>,
    /// Request headers.
    pub headers: &'a HeaderMap,
}

/// Path condition, compiled.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// Equal to the whole path.
    Exact(Box<str>),
    /// Whole-segment prefix, stored without a trailing `/` (except `/` itself).
    Prefix(Box<str>),
    /// Anchored regular expression; `source` is what the user wrote.
    Regex {
        /// Compiled, anchored at both ends.
        re: Regex,
        /// The pattern as written, for equality and messages.
        source: Box<str>,
    },
}

/// Header or query value condition, compiled.
#[derive(Debug, Clone)]
pub enum ValueMatch {
    /// Equal, case-sensitive.
    Exact(Box<str>),
    /// Anchored regular expression.
    Regex {
        /// Compiled, anchored at both ends.
        re: Regex,
        /// The pattern as written, for equality and messages.
        source: Box<str>,
    },
    /// Present with any value.
    Present,
}

/// A header condition.
#[derive(Debug, Clone)]
pub struct HeaderMatch {
    /// Header name.
    pub name: HeaderName,
    /// Value condition.
    pub value: ValueMatch,
}

/// A query parameter condition.
#[derive(Debug, Clone)]
pub struct QueryMatch {
    /// Parameter name.
    pub name: Box<str>,
    /// Value condition, applied to the percent-decoded value.
    pub value: ValueMatch,
}

/// One `matches` entry of a rule: all conditions must hold.
#[derive(Debug, Clone)]
pub struct Conditions {
    /// Path condition.
    pub path: PathMatch,
    /// Method condition.
    pub method: Option<Method>,
    /// Header conditions.
    pub headers: Box<[HeaderMatch]>,
    /// Query conditions.
    pub query: Box<[QueryMatch]>,
    /// For a gRPC service/method condition (the path above): the characters
    /// of its service and method, which rank it (GRPCRoute precedence).
    pub grpc: Option<(usize, usize)>,
}

/// Sort key: smaller sorts first and wins. Gateway API order: exact path, then
/// (cutover's choice for the implementation-specific case) regex, then the
/// longest prefix; then method, most headers, most query params, config order.
/// gRPC conditions rank after every HTTP one (Gateway API does not merge
/// GRPCRoutes with HTTPRoutes), among themselves by the characters of the
/// service, then of the method, then most headers.
pub type PrecedenceKey = (
    u8,
    Reverse<usize>,
    u8,
    Reverse<usize>,
    Reverse<usize>,
    usize,
);

impl ValueMatch {
    /// Whether `value` satisfies the condition.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            ValueMatch::Exact(v) => **v == *value,
            ValueMatch::Regex { re, .. } => re.is_match(value),
            ValueMatch::Present => true,
        }
    }

    fn same_as(&self, other: &ValueMatch) -> bool {
        match (self, other) {
            (ValueMatch::Exact(a), ValueMatch::Exact(b)) => a == b,
            (ValueMatch::Regex { source: a, .. }, ValueMatch::Regex { source: b, .. }) => a == b,
            (ValueMatch::Present, ValueMatch::Present) => true,
            _ => false,
        }
    }

    /// Whether every value accepted by `other` is accepted by `self`.
    fn covers(&self, other: &ValueMatch) -> bool {
        matches!(self, ValueMatch::Present) || self.same_as(other)
    }
}

impl HeaderMatch {
    fn matches(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(&self.name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| self.value.matches(v))
    }
}

impl QueryMatch {
    fn matches(&self, query: Option<&str>) -> bool {
        let Some(query) = query else { return false };
        query_pairs(query)
            .any(|(name, value)| name == &*self.name && self.value.matches(&percent_decode(value)))
    }
}

/// Splits `a=1&b=2` into pairs; a name without `=` has an empty value.
fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// Decodes `%XX` and `+`; borrows when there is nothing to decode.
pub fn percent_decode(raw: &str) -> std::borrow::Cow<'_, str> {
    if !raw.contains(['%', '+']) {
        return std::borrow::Cow::Borrowed(raw);
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    std::borrow::Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

impl PathMatch {
    /// Whether `path` satisfies the condition.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => **p == *path,
            PathMatch::Prefix(p) => prefix_matches(p, path),
            PathMatch::Regex { re, .. } => re.is_match(path),
        }
    }

    /// Whether every path accepted by `other` is accepted by `self`.
    fn covers(&self, other: &PathMatch) -> bool {
        match (self, other) {
            (PathMatch::Exact(a), PathMatch::Exact(b)) => a == b,
            (PathMatch::Prefix(a), PathMatch::Exact(b)) => prefix_matches(a, b),
            (PathMatch::Prefix(a), PathMatch::Prefix(b)) => prefix_matches(a, b),
            (PathMatch::Regex { source: a, .. }, PathMatch::Regex { source: b, .. }) => a == b,
            (PathMatch::Regex { re, .. }, PathMatch::Exact(b)) => re.is_match(b),
            _ => false,
        }
    }
}

/// Whole-segment prefix test: `/api` matches `/api`, `/api/`, `/api/x`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return path.starts_with('/');
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

impl Conditions {
    /// Full match, path included (used by `explain` and tests; the table
    /// lookup checks the path through its index and calls [`Self::matches_rest`]).
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        self.path.matches(req.path) && self.matches_rest(req)
    }

    /// Method, header and query conditions.
    pub fn matches_rest(&self, req: &RequestView<'_>) -> bool {
        if let Some(m) = &self.method {
            if m != req.method {
                return false;
            }
        }
        self.headers.iter().all(|h| h.matches(req.headers))
            && self.query.iter().all(|q| q.matches(req.query))
    }

    /// Gateway API precedence; `order` breaks ties by position in the config.
    pub fn precedence(&self, order: usize) -> PrecedenceKey {
        let (class, len) = match (&self.path, self.grpc) {
            (_, Some((service, method))) => (3, grpc_rank(service, method)),
            (PathMatch::Exact(p), None) => (0, p.len()),
            (PathMatch::Regex { source, .. }, None) => (1, source.len()),
            (PathMatch::Prefix(p), None) => (2, p.len()),
        };
        (
            class,
            Reverse(len),
            u8::from(self.method.is_none()),
            Reverse(self.headers.len()),
            Reverse(self.query.len()),
            order,
        )
    }

    /// Whether every request these conditions accept is also accepted by
    /// `self`: then a lower-precedence `other` can never be reached.
    pub fn covers(&self, other: &Conditions) -> bool {
        let method_ok = match (&self.method, &other.method) {
            (None, _) => true,
            (Some(a), Some(b)) => a == b,
            (Some(_), None) => false,
        };
        method_ok
            && self.path.covers(&other.path)
            && self.headers.iter().all(|h| {
                other
                    .headers
                    .iter()
                    .any(|o| o.name == h.name && h.value.covers(&o.value))
            })
            && self.query.iter().all(|q| {
                other
                    .query
                    .iter()
                    .any(|o| o.name == q.name && q.value.covers(&o.value))
            })
    }

    /// A short human description, for errors and `explain`.
    pub fn describe(&self) -> String {
        let mut s = match &self.path {
            PathMatch::Exact(p) => format!("path Exact {p}"),
            PathMatch::Prefix(p) => format!("path PathPrefix {p}"),
            PathMatch::Regex { source, .. } => format!("path RegularExpression {source}"),
        };
        if let Some(m) = &self.method {
            s.push_str(&format!(", method {m}"));
        }
        for h in self.headers.iter() {
            s.push_str(&format!(", header {}", h.name));
        }
        for q in self.query.iter() {
            s.push_str(&format!(", query {}", q.name));
        }
        s
    }
}

/// One number ordering gRPC conditions by service characters, then method
/// characters (each capped at 2^20; Gateway API allows 1,024).
fn grpc_rank(service: usize, method: usize) -> usize {
    const CAP: usize = 1 << 20;
    service.min(CAP - 1) * CAP + method.min(CAP - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_segment_wise() {
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/"));
        assert!(prefix_matches("/api", "/api/v1"));
        assert!(!prefix_matches("/api", "/apiv1"));
        assert!(prefix_matches("/", "/anything"));
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let q = QueryMatch {
            name: "q".into(),
            value: ValueMatch::Exact("a b/c".into()),
        };
        assert!(q.matches(Some("x=1&q=a%20b%2Fc")));
        assert!(q.matches(Some("q=a+b/c")));
        assert!(!q.matches(Some("q=ab")));
        assert!(!q.matches(None));
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
