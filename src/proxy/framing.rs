//! Rejects requests whose framing two parsers could read differently (the root
//! of request smuggling) before anything reaches an upstream.

use http::{header, Request, Version};

use crate::error::ProxyError;

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
    // hyper 1.x drops a Content-Length that comes with Transfer-Encoding
    // while parsing (and closes the connection after the response), so on
    // its HTTP/1.1 server this never sees both; kept for any other source.
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
    use proptest::prelude::*;

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

    /// What RFC 9112 6.1 and 6.3 ask of a request, written independently of
    /// `check`: no Transfer-Encoding, or exactly `chunked` and no
    /// Content-Length.
    fn acceptable(version: Version, headers: &[(&str, &str)]) -> bool {
        if version == Version::HTTP_2 {
            return true;
        }
        let te: Vec<String> = headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding"))
            .flat_map(|(_, v)| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
        let has_te = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding"));
        let has_cl = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
        !has_te || (!has_cl && te == ["chunked"])
    }

    fn framing_headers() -> impl Strategy<Value = Vec<(&'static str, &'static str)>> {
        let name = prop::sample::select(vec![
            "transfer-encoding",
            "Transfer-Encoding",
            "content-length",
            "host",
            "x-a",
        ]);
        let value = prop::sample::select(vec![
            "chunked",
            "Chunked",
            "chunked, chunked",
            "gzip, chunked",
            "chunked, gzip",
            " chunked ",
            ",chunked,",
            "",
            "identity",
            "5",
        ]);
        prop::collection::vec((name, value), 0..6)
    }

    proptest! {
        #![proptest_config(crate::prop_config(40_000))]

        #[test]
        fn check_agrees_with_the_rfc(
            version in prop::sample::select(vec![Version::HTTP_10, Version::HTTP_11, Version::HTTP_2]),
            headers in framing_headers(),
        ) {
            let mut b = Request::builder().version(version).uri("/");
            for (k, v) in &headers {
                b = b.header(*k, *v);
            }
            let req = b.body(()).unwrap();
            prop_assert_eq!(check(&req).is_ok(), acceptable(version, &headers), "{:?}", headers);
        }
    }
}
