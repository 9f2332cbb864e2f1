//! Header hygiene for both directions: hop-by-hop stripping (RFC 9110 7.6.1,
//! including every header the `Connection` header names) and the
//! `X-Forwarded-*` / `x-request-id` headers a proxy adds.

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};
use rand::Rng;

/// `x-request-id`, generated when the client sent none.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one connection, never forwarded as they are.
const HOP_BY_HOP: [&HeaderName; 6] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::TE,
    &header::TRANSFER_ENCODING,
    &header::UPGRADE,
];

/// Bits of [`present_hop_by_hop`]'s answer: positions in [`HOP_BY_HOP`].
const CONNECTION_BIT: u8 = 1 << 0;
const TE_BIT: u8 = 1 << 3;

/// Whether `name` is a fixed hop-by-hop header.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name)
}

/// Removes hop-by-hop headers and every header listed in `Connection`.
/// `TE: trailers` survives on requests (gRPC needs it); `Upgrade` survives when
/// `upgrade` is set (the exchange is an upgrade the proxy will tunnel).
/// `Trailer` is an end-to-end declaration in RFC 9110 and is kept too.
///
/// Runs on every request and response, so it first finds which fixed
/// hop-by-hop headers are present in one pass over the names (standard names
/// compare as integers) and removes only those: most requests carry none, and
/// a keep-alive response only `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: Option<HeaderValue>) {
    let present = present_hop_by_hop(headers);
    if present != 0 {
        strip_present(headers, present);
    }
    if let Some(protocol) = upgrade {
        headers.insert(header::UPGRADE, protocol);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// A bit per [`HOP_BY_HOP`] entry found among the names in `headers`.
fn present_hop_by_hop(headers: &HeaderMap) -> u8 {
    let mut present = 0u8;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| *h == name) {
            present |= 1 << i;
        }
    }
    present
}

/// Whether `token` names a fixed hop-by-hop header other than `TE`.
fn is_fixed_except_te(token: &str) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| **h != header::TE && token.eq_ignore_ascii_case(h.as_str()))
}

/// The removals of [`strip_hop_by_hop`], for the fixed headers in `present`.
fn strip_present(headers: &mut HeaderMap, present: u8) {
    if present & CONNECTION_BIT != 0 {
        // Only names that are present and not removed below anyway:
        // `Connection: keep-alive` or `close` allocates nothing. `TE` named
        // here goes now, `trailers` included, so it is not skipped.
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !is_fixed_except_te(t))
            .filter(|t| headers.contains_key(*t))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    // Without TE there is nothing to look up.
    let keeps_trailers = present & TE_BIT != 0
        && headers
            .get_all(header::TE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    for (i, name) in HOP_BY_HOP.into_iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if keeps_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// The `Upgrade` value when the request asks for a protocol upgrade
/// (`Connection: upgrade` plus `Upgrade: x`), so it can be preserved.
pub fn requested_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if asks {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// The client's IP as a header value, built once per connection so each
/// request only clones it (a reference count) into `X-Forwarded-For`.
pub fn client_ip_value(ip: IpAddr) -> HeaderValue {
    let text = ip.to_string();
    // An IP address is always a valid header value.
    HeaderValue::from_maybe_shared(Bytes::from(text))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Appends the client (see [`client_ip_value`]) to `X-Forwarded-For`, sets
/// `X-Forwarded-Proto` and `X-Forwarded-Host` (the host the client asked for,
/// `None` when it asked for none).
pub fn add_forwarded(
    headers: &mut HeaderMap,
    client: &HeaderValue,
    proto: &'static str,
    host: Option<HeaderValue>,
) {
    match headers.entry(&X_FORWARDED_FOR) {
        Entry::Vacant(e) => {
            e.insert(client.clone());
        }
        Entry::Occupied(mut e) => {
            // Every earlier hop, from every X-Forwarded-For line, then this
            // client.
            let mut list = Vec::with_capacity(64);
            for v in e.iter() {
                let v = v.as_bytes().trim_ascii();
                if !v.is_empty() {
                    list.extend_from_slice(v);
                    list.extend_from_slice(b", ");
                }
            }
            list.extend_from_slice(client.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&list) {
                e.insert(v);
            }
        }
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    if let Some(v) = host {
        headers.insert(X_FORWARDED_HOST.clone(), v);
    }
}

/// The request's `x-request-id`, generating a random UUIDv4-formatted one
/// when it is absent or empty. Of several, the first is kept and the others
/// go, so the upstream and the access log name the same id. Call it after
/// [`strip_hop_by_hop`]: a `Connection` header may name the id for removal.
pub fn ensure_request_id<R: Rng>(headers: &mut HeaderMap, rng: &mut R) -> HeaderValue {
    let mut ids = headers.get_all(&X_REQUEST_ID).iter();
    if let Some(v) = ids.next().filter(|v| !v.is_empty()).cloned() {
        if ids.next().is_some() {
            headers.insert(X_REQUEST_ID.clone(), v.clone());
        }
        return v;
    }
    let id = new_request_id(rng);
    headers.insert(X_REQUEST_ID.clone(), id.clone());
    id
}

fn new_request_id<R: Rng>(rng: &mut R) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes: [u8; 16] = rng.random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut out = [0u8; 36];
    let mut o = 0;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[o] = b'-';
            o += 1;
        }
        out[o] = HEX[usize::from(b >> 4)];
        out[o + 1] = HEX[usize::from(b & 0xf)];
        o += 2;
    }
    // Owned by a reference-counted buffer from the start: the id is cloned
    // for the access log, and a copied (promotable) buffer would allocate
    // again on that first clone.
    HeaderValue::from_maybe_shared(Bytes::from_owner(out))
        .unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::SmallRng, SeedableRng};

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn strips_fixed_and_connection_named_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("connection", "x-other"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("x-other", "1"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers, deflate"),
            ("upgrade", "websocket"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut h, None);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept", "te"]);
        assert_eq!(h["te"], "trailers");
    }

    #[test]
    fn bits_match_the_table() {
        assert_eq!(
            present_hop_by_hop(&map(&[("connection", "x")])),
            CONNECTION_BIT
        );
        assert_eq!(present_hop_by_hop(&map(&[("te", "trailers")])), TE_BIT);
    }

    #[test]
    fn te_named_by_connection_goes_with_its_trailers() {
        let mut h = map(&[
            ("connection", "TE, close"),
            ("te", "trailers"),
            ("close", "1"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut h, None);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn no_hop_by_hop_leaves_the_map_alone() {
        let mut h = map(&[("host", "a"), ("x-kept", "1")]);
        strip_hop_by_hop(&mut h, None);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["host", "x-kept"]);
    }

    #[test]
    fn xff_is_the_client_alone_without_earlier_hops() {
        let mut h = HeaderMap::new();
        let client = client_ip_value("2001:db8::1".parse().unwrap());
        add_forwarded(&mut h, &client, "https", None);
        assert_eq!(h["x-forwarded-for"], "2001:db8::1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert!(!h.contains_key("x-forwarded-host"));
    }

    #[test]
    fn keeps_upgrade_for_upgrades() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        let up = requested_upgrade(&h);
        assert!(up.is_some());
        strip_hop_by_hop(&mut h, up);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn xff_appends_and_request_id_is_uuid_shaped() {
        let mut h = map(&[("x-forwarded-for", "1.2.3.4")]);
        let client = client_ip_value("10.0.0.1".parse().unwrap());
        let host = Some(HeaderValue::from_static("example.com"));
        add_forwarded(&mut h, &client, "http", host);
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.0.0.1");
        assert_eq!(h["x-forwarded-host"], "example.com");
        let id = ensure_request_id(&mut h, &mut SmallRng::seed_from_u64(7));
        assert_eq!(id.len(), 36);
        assert_eq!(id.to_str().unwrap().as_bytes()[14], b'4');
        assert_eq!(
            ensure_request_id(&mut h, &mut SmallRng::seed_from_u64(8)),
            id
        );
    }
}
