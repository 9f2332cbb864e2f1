//! The one host a request is routed by and forwarded with: the target's
//! authority when it has one (RFC 9112 3.2.2, RFC 9113 8.3.1), else the Host
//! header; invalid or ambiguous hosts are a 400.

use std::borrow::Cow;

use http::request::Parts;
use http::uri::Authority;
use http::{header, HeaderValue, Version};

use crate::error::ProxyError;

/// The authority the client asked for: the absolute URI's (HTTP/2, or
/// absolute-form HTTP/1.1), else the Host header. Held as a
/// reference-counted clone, not a copy: the head it comes from is changed and
/// moved on while the host is still needed.
pub enum ClientHost {
    /// From the request target (`:authority` on HTTP/2).
    Authority(Authority),
    /// From the Host header (origin-form HTTP/1.1, HTTP/2 without `:authority`).
    Header(HeaderValue),
    /// Neither (HTTP/1.0 without Host, or an empty Host).
    Missing,
}

impl ClientHost {
    /// Finds the request's host and makes the head agree with it. A target
    /// authority wins over the Host header and the header is removed (the
    /// upstream step writes the routed host back for HTTP/1.1 upstreams); on
    /// HTTP/2 a `host` that differs from `:authority` is an error instead, as
    /// in nginx. Several Host headers, a missing one on HTTP/1.1, and a value
    /// that is not `host[:port]` (userinfo, spaces, lists) are errors too.
    pub fn resolve(parts: &mut Parts) -> Result<ClientHost, ProxyError> {
        let mut values = parts.headers.get_all(header::HOST).iter();
        let header = values.next();
        if values.next().is_some() {
            return Err(ProxyError::BadRequest("more than one Host header"));
        }
        if header.is_some_and(|h| !is_valid_host(h.as_bytes())) {
            return Err(ProxyError::BadRequest("invalid Host header"));
        }
        let Some(authority) = parts.uri.authority() else {
            return match header {
                Some(h) if !h.is_empty() => Ok(ClientHost::Header(h.clone())),
                Some(_) => Ok(ClientHost::Missing),
                None if parts.version == Version::HTTP_11 => {
                    Err(ProxyError::BadRequest("missing Host header"))
                }
                None => Ok(ClientHost::Missing),
            };
        };
        if !is_valid_host(authority.as_str().as_bytes()) {
            return Err(ProxyError::BadRequest(
                "invalid authority in the request target",
            ));
        }
        let authority = authority.clone();
        if let Some(h) = header {
            let same = h
                .as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes());
            if parts.version == Version::HTTP_2 && !same {
                return Err(ProxyError::BadRequest(
                    "Host header differs from :authority",
                ));
            }
            parts.headers.remove(header::HOST);
        }
        Ok(ClientHost::Authority(authority))
    }

    /// The host as the client wrote it; empty when there is none.
    pub fn as_str(&self) -> &str {
        match self {
            ClientHost::Authority(a) => a.as_str(),
            // Checked in `resolve`: visible ASCII, never the empty fallback.
            ClientHost::Header(v) => v.to_str().unwrap_or_default(),
            ClientHost::Missing => "",
        }
    }

    /// The `X-Forwarded-Host` value, if the host is not empty.
    pub fn header_value(&self) -> Option<HeaderValue> {
        match self {
            ClientHost::Header(v) => Some(v.clone()),
            ClientHost::Authority(a) => HeaderValue::from_str(a.as_str()).ok(),
            ClientHost::Missing => None,
        }
    }
}

/// Whether `value` is `host[:port]` (RFC 3986 3.2.2): a bracketed IPv6
/// literal or a name of letters, digits, `-`, `.`, `_`, `~`, then an optional
/// port of digits. Stricter than reg-name (no sub-delimiters or `%`): nothing
/// a virtual host needs, and each is a way to make two parsers disagree. An
/// empty value is allowed (RFC 9112 3.2 lets a client send `Host:` empty).
pub fn is_valid_host(value: &[u8]) -> bool {
    let rest = if let Some(literal) = value.strip_prefix(b"[") {
        let Some(end) = literal.iter().position(|&b| b == b']') else {
            return false;
        };
        let ip = &literal[..end];
        if ip.is_empty()
            || !ip
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        &literal[end + 1..]
    } else {
        let end = value.iter().position(|&b| b == b':').unwrap_or(value.len());
        let name = &value[..end];
        if !name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
        {
            return false;
        }
        if name.is_empty() && end < value.len() {
            return false;
        }
        &value[end..]
    };
    match rest.split_first() {
        None => true,
        Some((b':', port)) => port.len() <= 5 && port.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    }
}

/// Lower case, without port or trailing dot, for hostname matching.
/// Borrows unless the host has upper-case letters.
pub fn normalize(raw: &str) -> Cow<'_, str> {
    let without_port = if let Some(rest) = raw.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        // A byte search: `rsplit_once(':')` costs more than the rest of the
        // function on a short host.
        match raw.bytes().rposition(|b| b == b':') {
            Some(i) => &raw[..i],
            None => raw,
        }
    };
    let host = without_port.strip_suffix('.').unwrap_or(without_port);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests;
