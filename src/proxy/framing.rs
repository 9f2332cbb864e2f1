//! Rejects requests whose framing two parsers could read differently (the root
//! of request smuggling) before anything reaches an upstream.

use http::{header, Request, Version};

use super::error::ProxyError;

/// Checks the body framing of an HTTP/1.x request (HTTP/2 framing is
/// checked by the h2 codec; the Host header by [`super::host`]).
pub fn check<B>(req: &Request<B>) -> Result<(), ProxyError> {
    if req.version() != Version::HTTP_11 && req.version() != Version::HTTP_10 {
        return Ok(());
    }
    let h = req.headers();
    if !h.contains_key(header::TRANSFER_ENCODING) {
        return Ok(());
    }
    if h.contains_key(header::CONTENT_LENGTH) {
        return Err(ProxyError::BadRequest(
            "both Content-Length and Transfer-Encoding are set",
        ));
    }
    let mut codings = h
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty());
    match (codings.next(), codings.next()) {
        (Some(only), None) if only.eq_ignore_ascii_case(b"chunked") => Ok(()),
        _ => Err(ProxyError::BadRequest(
            "Transfer-Encoding must be exactly \"chunked\"",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri("/");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn ambiguous_framing_is_rejected() {
        assert!(check(&req(&[("host", "a")])).is_ok());
        assert!(check(&req(&[("host", "a"), ("transfer-encoding", "chunked")])).is_ok());
        let both = [
            ("host", "a"),
            ("transfer-encoding", "chunked"),
            ("content-length", "3"),
        ];
        assert!(check(&req(&both)).is_err());
        let twice = [("host", "a"), ("transfer-encoding", "chunked, chunked")];
        assert!(check(&req(&twice)).is_err());
        let gzip = [("host", "a"), ("transfer-encoding", "gzip, chunked")];
        assert!(check(&req(&gzip)).is_err());
    }
}
