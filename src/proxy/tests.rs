//! Properties of the head cutover sends upstream: whatever the client wrote,
//! the request that passes [`clean_head`], the forwarding headers and
//! [`aim_at`] carries no hop-by-hop header and exactly one Host, the routed
//! one, when serialised and read back by another parser (`httparse`).

use std::sync::LazyLock;

use http::{HeaderName, HeaderValue, Method, Request, Version};
use proptest::prelude::*;
use rand::{rngs::SmallRng, SeedableRng};

use super::{clean_head, forward, host};
use crate::config::model::UpstreamProtocol;
use crate::retry::aim_at;
use crate::upstream::{Endpoint, UpstreamState};

/// One of `fixed`, or any string matching `pattern`.
fn fixed_or(
    fixed: &'static [&'static str],
    pattern: &'static str,
) -> impl Strategy<Value = String> {
    prop_oneof![prop::sample::select(fixed).prop_map(str::to_owned), pattern]
}

/// Names a client may send: every hop-by-hop one, the ones cutover sets,
/// and arbitrary ones.
fn name() -> impl Strategy<Value = String> {
    const NAMES: &[&str] = &[
        "host",
        "Host",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
        "x-request-id",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-a",
    ];
    fixed_or(NAMES, "[a-z][a-z0-9-]{0,8}")
}

/// Values: hosts (valid and hostile), `Connection` token lists naming other
/// headers, and arbitrary visible text.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        host_text(),
        prop::collection::vec(name(), 1..4).prop_map(|v| v.join(", ")),
        Just("trailers".to_owned()),
        Just("upgrade".to_owned()),
        "[!-~][ -~]{0,14}[!-~]",
    ]
}

fn host_text() -> impl Strategy<Value = String> {
    const HOSTS: &[&str] = &[
        "a.example",
        "A.Example:8080",
        "[::1]:80",
        "evil@a.example",
        "a.example x",
        "a.example, b.example",
        "a.example:",
        ":80",
        "",
    ];
    fixed_or(HOSTS, "[a-zA-Z0-9.:@_-]{1,12}")
}

fn version() -> impl Strategy<Value = Version> {
    prop::sample::select(vec![Version::HTTP_10, Version::HTTP_11, Version::HTTP_2])
}

#[derive(Debug)]
struct Case {
    version: Version,
    target: String,
    headers: Vec<(String, String)>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        version(),
        prop::option::of(host_text()),
        prop::collection::vec((name(), value()), 0..10),
    )
        .prop_map(|(version, authority, headers)| Case {
            version,
            target: match authority {
                Some(a) => format!("http://{a}/p?q"),
                None => "/p?q".to_owned(),
            },
            headers,
        })
}

/// One endpoint for every case: a registry builds a metrics registry, which
/// costs more than the code under test.
static ENDPOINT: LazyLock<Endpoint> = LazyLock::new(|| {
    let registry = UpstreamState::default();
    Endpoint {
        authority: "127.0.0.1:9".parse().unwrap(),
        state: registry.get_or_create("127.0.0.1:9"),
    }
});

/// The head as an HTTP/1.1 upstream receives it.
fn serialise(parts: &http::request::Parts) -> Vec<u8> {
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = format!("{} {target} HTTP/1.1\r\n", parts.method).into_bytes();
    for (k, v) in &parts.headers {
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn check(case: &Case, rng: &mut SmallRng) -> Result<(), TestCaseError> {
    let Ok(req) = Request::builder()
        .method(Method::GET)
        .uri(case.target.as_str())
        .version(case.version)
        .body(())
    else {
        return Ok(()); // hyper would not have parsed this target either
    };
    let (mut parts, ()) = req.into_parts();
    for (k, v) in &case.headers {
        let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) else {
            continue;
        };
        parts.headers.append(k, v);
    }
    let upgrade = forward::requested_upgrade(&parts.headers);
    let Ok(routed) = clean_head(&mut parts, upgrade.clone()) else {
        return Ok(());
    };
    let routed = routed.as_str().to_owned();
    prop_assert!(host::is_valid_host(routed.as_bytes()), "{routed:?}");
    let client = forward::client_ip_value("10.0.0.1".parse().unwrap());
    let host_value = HeaderValue::from_str(&routed)
        .ok()
        .filter(|v| !v.is_empty());
    forward::add_forwarded(&mut parts.headers, &client, "http", host_value);
    let id = forward::ensure_request_id(&mut parts.headers, rng);
    aim_at(
        &mut parts,
        &ENDPOINT,
        UpstreamProtocol::Http1,
        false,
        &routed,
    )
    .map_err(|e| TestCaseError::fail(format!("aim_at: {e:?}")))?;

    let wire = serialise(&parts);
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut slots);
    let status = parsed.parse(&wire);
    prop_assert!(
        matches!(status, Ok(httparse::Status::Complete(n)) if n == wire.len()),
        "{status:?}: {}",
        String::from_utf8_lossy(&wire)
    );
    let mut hosts = Vec::new();
    let mut ids = Vec::new();
    for h in parsed.headers.iter() {
        let lower = h.name.to_ascii_lowercase();
        let upgrading = upgrade.is_some() && (lower == "upgrade" || lower == "connection");
        let trailers = lower == "te" && h.value == b"trailers";
        let hop =
            HeaderName::from_bytes(h.name.as_bytes()).is_ok_and(|n| forward::is_hop_by_hop(&n));
        prop_assert!(
            !hop || upgrading || trailers,
            "{} reached the upstream: {}",
            h.name,
            String::from_utf8_lossy(&wire)
        );
        if lower == "host" {
            hosts.push(h.value.to_vec());
        }
        if lower == "x-request-id" {
            ids.push(h.value.to_vec());
        }
    }
    if routed.is_empty() {
        // No host to route by: the client's empty Host passes, or else the
        // endpoint names itself, as HTTP/1.1 needs a Host.
        let endpoint = ENDPOINT.authority.as_str().as_bytes();
        prop_assert!(
            hosts.len() == 1 && (hosts[0].is_empty() || hosts[0] == endpoint),
            "{hosts:?}"
        );
    } else {
        prop_assert_eq!(hosts, vec![routed.clone().into_bytes()]);
    }
    prop_assert_eq!(
        ids,
        vec![id.as_bytes().to_vec()],
        "the logged id is the forwarded one"
    );
    Ok(())
}

proptest! {
    #![proptest_config(crate::prop_config(20_000))]

    #[test]
    fn the_upstream_sees_one_host_and_no_hop_by_hop_header(case in case(), seed: u64) {
        check(&case, &mut SmallRng::seed_from_u64(seed))?;
    }
}

#[test]
fn absolute_form_authority_replaces_the_host_header() {
    let req = Request::builder()
        .uri("http://a.example/x")
        .header("host", "127.0.0.1")
        .body(())
        .unwrap();
    let (mut parts, ()) = req.into_parts();
    let routed = clean_head(&mut parts, None).unwrap();
    assert_eq!(routed.as_str(), "a.example");
    assert!(!parts.headers.contains_key("host"));
}

#[test]
fn connection_cannot_remove_the_request_id() {
    let req = Request::builder()
        .uri("/x")
        .header("host", "a")
        .header("connection", "x-request-id")
        .header("x-request-id", "client-id")
        .body(())
        .unwrap();
    let (mut parts, ()) = req.into_parts();
    clean_head(&mut parts, None).unwrap();
    let id = forward::ensure_request_id(&mut parts.headers, &mut SmallRng::seed_from_u64(1));
    assert_ne!(id, "client-id", "the stripped id is not the one logged");
    assert_eq!(parts.headers["x-request-id"], id);
}
