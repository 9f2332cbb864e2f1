//! The upstream request head for one endpoint: URI, version and Host in the
//! form the group's protocol wants.

use http::request::Parts;
use http::uri::{PathAndQuery, Scheme};
use http::{header, HeaderValue, Uri, Version};

use crate::config::model::UpstreamProtocol;
use crate::error::ProxyError;
use crate::upstream::Endpoint;

/// Points the request at the endpoint in the form the upstream protocol
/// wants. HTTP/1.1 upstreams get an origin-form target (`/path?query`: the
/// connection is already the endpoint's) and the routed host as Host (the
/// client's Host, or the target's authority that replaced it, see
/// `proxy::host::ClientHost`; the endpoint when there is none). h2
/// upstreams get `:scheme` and `:authority` = the endpoint and no Host
/// header (two differing authorities are invalid in HTTP/2); the client's
/// host is still in `X-Forwarded-Host`.
pub fn aim_at(
    parts: &mut Parts,
    endpoint: &Endpoint,
    protocol: UpstreamProtocol,
    tls: bool,
    raw_host: &str,
) -> Result<(), ProxyError> {
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut uri = http::uri::Parts::default();
    uri.path_and_query = Some(path);
    match protocol {
        UpstreamProtocol::Http1 => {
            parts.version = Version::HTTP_11;
            if !parts.headers.contains_key(header::HOST) {
                let host = match raw_host {
                    "" => endpoint.authority.as_str(),
                    h => h,
                };
                let host = HeaderValue::from_str(host)
                    .map_err(|_| ProxyError::BadRequest("invalid host"))?;
                parts.headers.insert(header::HOST, host);
            }
        }
        UpstreamProtocol::H2 => {
            parts.version = Version::HTTP_2;
            parts.headers.remove(header::HOST);
            uri.scheme = Some(if tls { Scheme::HTTPS } else { Scheme::HTTP });
            uri.authority = Some(endpoint.authority.clone());
        }
    }
    parts.uri =
        Uri::from_parts(uri).map_err(|_| ProxyError::BadRequest("invalid request target"))?;
    Ok(())
}
