//! The dashboard page: one HTML file, its script and its style, written by
//! hand and embedded in the binary (no build step, nothing fetched at run
//! time). The page holds no data and is served without a token; everything
//! it shows comes from the token-protected API (`/v1/events`, `/v1/*`).
//!
//! Strict headers: scripts and styles only from these files (no inline code,
//! no inline handlers), no framing, no sniffing, no referrer. Every URL in
//! the page is relative, so it works behind `kubectl port-forward` or a path
//! prefix.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

/// The page's `Content-Security-Policy`.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The file at `path`, or `None` when the path is not the dashboard's.
pub fn file(path: &str) -> Option<Response<Full<Bytes>>> {
    let (body, content_type) = match path {
        "/" | "/ui" => (INDEX, "text/html; charset=utf-8"),
        "/ui/app.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "/ui/app.css" => (STYLE, "text/css; charset=utf-8"),
        // Browsers ask for it; an empty answer keeps the token prompt away.
        "/favicon.ico" => ("", "image/x-icon"),
        _ => return None,
    };
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    if body.is_empty() {
        *resp.status_mut() = StatusCode::NO_CONTENT;
    }
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(resp)
}
