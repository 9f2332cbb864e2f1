//! GRPCRoute end to end: a gRPC-shaped h2c client (POST, `content-type:
//! application/grpc`, a length-prefixed message, the status read from the
//! trailers) through the proxy to h2 upstreams that answer with trailers,
//! as GRPCRoute and its conformance tests describe: service, method and
//! header matches with the spec's precedence, weights, header filters,
//! trailers passed through, UNIMPLEMENTED for no match and UNAVAILABLE
//! for a backend that cannot be resolved.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use super::{check, Running};
use crate::support::*;

/// What a gRPC echo upstream saw of one call.
#[derive(Debug, Clone)]
pub struct Call {
    pub path: String,
    pub headers: HeaderMap,
    pub message: Bytes,
}

/// An h2 gRPC echo server: answers every call with the message `<name>`,
/// response header `x-upstream: <name>` and trailers `grpc-status: 0`,
/// `x-served-by: <name>`; records each call.
#[derive(Clone)]
pub struct GrpcEcho {
    pub addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl GrpcEcho {
    pub async fn start(name: &'static str) -> GrpcEcho {
        Self::start_at(name, "127.0.0.1:0".parse().unwrap()).await
    }

    /// On `addr` (a pod's `127.0.0.x:port`).
    pub async fn start_at(name: &'static str, addr: SocketAddr) -> GrpcEcho {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&calls);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                // Head, message and trailers are separate writes.
                let _ = stream.set_nodelay(true);
                let seen = Arc::clone(&seen);
                let service = service_fn(move |req: Request<Incoming>| {
                    let seen = Arc::clone(&seen);
                    async move { Ok::<_, Infallible>(answer(name, req, &seen).await) }
                });
                tokio::spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .http2_only()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        GrpcEcho { addr, calls }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

type EchoBody =
    StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

async fn answer(
    name: &'static str,
    req: Request<Incoming>,
    seen: &Mutex<Vec<Call>>,
) -> Response<EchoBody> {
    let (parts, body) = req.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    seen.lock().unwrap().push(Call {
        path: parts.uri.path().to_string(),
        headers: parts.headers,
        message: unframe(&bytes),
    });
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    trailers.insert("x-served-by", HeaderValue::from_static(name));
    let frames = vec![
        Ok(Frame::data(frame(name.as_bytes()))),
        Ok(Frame::trailers(trailers)),
    ];
    let mut resp = Response::new(StreamBody::new(futures::stream::iter(frames)));
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/grpc"));
    h.insert("x-upstream", HeaderValue::from_static(name));
    resp
}

/// A gRPC message: compressed flag 0, 4-byte big-endian length, bytes.
fn frame(message: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + message.len());
    b.put_u8(0);
    b.put_u32(message.len() as u32);
    b.put_slice(message);
    b.freeze()
}

/// The message of one length-prefixed frame (empty when malformed).
fn unframe(b: &[u8]) -> Bytes {
    if b.len() < 5 {
        return Bytes::new();
    }
    let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
    Bytes::copy_from_slice(b.get(5..5 + len).unwrap_or_default())
}

/// The outcome of one call as a gRPC client sees it.
#[derive(Debug)]
pub struct Reply {
    pub http: u16,
    pub headers: HeaderMap,
    /// `grpc-status` from the trailers, or from the headers of a
    /// trailers-only answer.
    pub status: Option<String>,
    pub trailers: HeaderMap,
    pub message: String,
}

/// Calls `/<path>` (`service/method`) with `headers`, over h2c.
pub async fn call(
    client: &Client<HttpConnector, Full<Bytes>>,
    proxy: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let req = grpc_request(&format!("http://{proxy}/{path}"), headers);
    read_reply(client.request(req).await.expect("call failed")).await
}

/// A unary call's request: POST, gRPC content type, one message `ping`.
fn grpc_request(url: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::post(url)
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(frame(b"ping"))).unwrap()
}

/// The reply as a gRPC client reads it.
async fn read_reply(resp: Response<Incoming>) -> Reply {
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.expect("body failed");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let bytes = collected.to_bytes();
    let status = trailers
        .get("grpc-status")
        .or_else(|| parts.headers.get("grpc-status"))
        .map(|v| v.to_str().unwrap().to_string());
    Reply {
        http: parts.status.as_u16(),
        headers: parts.headers,
        status,
        trailers,
        message: String::from_utf8_lossy(&unframe(&bytes)).into_owned(),
    }
}

/// An h2c client that sends at once (a call is several small writes).
pub fn grpc_client() -> Client<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(connector)
}

/// The cutover part: a listener, and the h2 groups the backendRefs name.
fn base(groups: &[(&str, &GrpcEcho)]) -> String {
    let mut y =
        String::from("listeners:\n  - name: public\n    address: \"127.0.0.1:0\"\ngroups:\n");
    for (name, up) in groups {
        y.push_str(&format!(
            "  {name}:\n    endpoints: [\"{}\"]\n    protocol: h2\n",
            up.addr
        ));
    }
    y
}

/// Request headers of a call.
type Headers<'a> = &'a [(&'a str, &'a str)];

/// Service, method and header matches of the spec's kinds, each rule with
/// its own backend, so which one served says which rule matched.
const MATCHES: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata:
  name: echo
  namespace: default
spec:
  rules:
  - matches:
    - method: {service: echo.Echo, method: Two}
    backendRefs: [{name: exact, port: 9000}]
  - matches:
    - method: {service: echo.Echo}
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        add: [{name: x-rule, value: service}]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set: [{name: x-answered, value: service-rule}]
    backendRefs: [{name: service, port: 9000}]
  - matches:
    - method: {method: Three}
    backendRefs: [{name: method, port: 9000}]
  - matches:
    - method: {service: echo.Echo}
      headers:
      - {name: x-version, value: canary}
    backendRefs: [{name: header, port: 9000}]
  - matches:
    - method: {type: RegularExpression, service: "echo\\.v[0-9]+\\.Echo", method: "Get.*"}
    backendRefs: [{name: regex, port: 9000}]
"#;

async fn start_route(route: &str, groups: &[(&str, &GrpcEcho)]) -> (Running, TempDir) {
    let dir = TempDir::new("grpcroute");
    dir.write("00-cutover.yaml", &base(groups));
    dir.write("grpcroute.yaml", route);
    let run = check(&[&dir.0]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    (Running::start(&dir.0).await, dir)
}

/// Each call lands on the rule the GRPCRoute precedence picks (an exact
/// service+method beats the service alone, the service beats a method
/// alone, a header match beats the same service without one), trailers
/// come through, the filters apply, and no match is UNIMPLEMENTED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_route_matches_service_method_and_headers_by_precedence() {
    let names = ["exact", "service", "method", "header", "regex"];
    let mut ups = Vec::new();
    for n in names {
        ups.push(GrpcEcho::start(n).await);
    }
    let groups: Vec<(&str, &GrpcEcho)> = names.iter().copied().zip(ups.iter()).collect();
    let (p, _dir) = start_route(MATCHES, &groups).await;
    let c = grpc_client();
    let cases: [(&str, Headers, &str); 8] = [
        ("echo.Echo/Two", &[], "exact"),
        ("echo.Echo/One", &[], "service"),
        ("echo.Echo/Three", &[], "service"),
        ("other.Svc/Three", &[], "method"),
        ("echo.Echo/One", &[("x-version", "canary")], "header"),
        ("echo.Echo/Two", &[("x-version", "canary")], "exact"),
        ("echo.v2.Echo/GetThing", &[], "regex"),
        ("echo.EchoMore/One", &[], ""),
    ];
    for (path, headers, want) in cases {
        let r = call(&c, p.public, path, headers).await;
        assert_eq!(r.http, 200, "{path}: {r:?}");
        if want.is_empty() {
            assert_eq!(
                r.status.as_deref(),
                Some("12"),
                "{path}: UNIMPLEMENTED {r:?}"
            );
            assert_eq!(r.headers["content-type"], "application/grpc");
            continue;
        }
        assert_eq!(r.message, want, "{path} {headers:?}");
        assert_eq!(r.status.as_deref(), Some("0"), "{path}: {r:?}");
        assert_eq!(
            r.trailers["x-served-by"], want,
            "{path}: trailers pass through"
        );
    }
    let service = &ups[1].calls();
    assert!(service.iter().all(|c| c.headers["x-rule"] == "service"));
    assert!(
        service.iter().all(|c| c.message == "ping"),
        "message intact"
    );
    assert!(service.iter().all(|c| c.headers["te"] == "trailers"));
    assert_eq!(service[0].path, "/echo.Echo/One");
    let r = call(&c, p.public, "echo.Echo/One", &[]).await;
    assert_eq!(r.headers["x-answered"], "service-rule");
    assert!(!ups[0].calls()[0].headers.contains_key("x-rule"));
}

/// Weights split calls within three standard deviations; a backendRef of
/// an unsupported kind takes its share and answers UNAVAILABLE, and a rule
/// without backendRefs answers UNAVAILABLE to every call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_route_weights_split_and_unresolved_backends_are_unavailable() {
    let primary = GrpcEcho::start("primary").await;
    let canary = GrpcEcho::start("canary").await;
    let route = r#"apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: split, namespace: default}
spec:
  rules:
  - matches: [{method: {service: split.Split}}]
    backendRefs:
    - {name: primary, port: 9000, weight: 3}
    - name: canary
      port: 9000
      weight: 1
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier:
          set: [{name: x-backend, value: canary}]
  - matches: [{method: {service: half.Half}}]
    backendRefs:
    - {name: primary, port: 9000}
    - {name: elsewhere, kind: ServiceImport, group: multicluster.x-k8s.io, port: 9000}
  - matches: [{method: {service: none.None}}]
"#;
    let (p, dir) = start_route(route, &[("primary", &primary), ("canary", &canary)]).await;
    let run = check(&[&dir.0]);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(
        out.contains("spec.rules[1].backendRefs[1].group") && out.contains("UNAVAILABLE"),
        "check warns naming the field: {out}"
    );
    let c = grpc_client();
    let n = 800;
    let mut to_canary = 0;
    for _ in 0..n {
        let r = call(&c, p.public, "split.Split/Go", &[]).await;
        assert_eq!(r.status.as_deref(), Some("0"), "{r:?}");
        to_canary += usize::from(r.message == "canary");
    }
    let (mean, sd) = (n as f64 / 4.0, (n as f64 * 0.25 * 0.75).sqrt());
    assert!(
        (to_canary as f64 - mean).abs() <= 3.0 * sd,
        "canary got {to_canary} of {n}, expected {mean} ± {}",
        3.0 * sd
    );
    let canary_calls = canary.calls();
    assert!(canary_calls
        .iter()
        .all(|c| c.headers["x-backend"] == "canary"));
    assert!(primary
        .calls()
        .iter()
        .all(|c| !c.headers.contains_key("x-backend")));

    let mut unavailable = 0;
    for _ in 0..n {
        let r = call(&c, p.public, "half.Half/Go", &[]).await;
        match r.status.as_deref() {
            Some("0") => assert_eq!(r.message, "primary"),
            Some("14") => unavailable += 1,
            other => panic!("unexpected status {other:?}: {r:?}"),
        }
    }
    let (mean, sd) = (n as f64 / 2.0, (n as f64 * 0.25).sqrt());
    assert!(
        (unavailable as f64 - mean).abs() <= 3.0 * sd,
        "{unavailable} of {n} UNAVAILABLE, expected {mean} ± {}",
        3.0 * sd
    );
    for _ in 0..20 {
        let r = call(&c, p.public, "none.None/Go", &[]).await;
        assert_eq!((r.http, r.status.as_deref()), (200, Some("14")), "{r:?}");
        assert!(r.headers.contains_key("grpc-message"));
    }
    // Sent as HTTP 200, counted as the 500 they stand for: error rates see them.
    let metrics = get(&http1_client(), &format!("http://{}/metrics", p.admin), &[]).await;
    let counted = metrics.body.lines().any(|l| {
        l.starts_with("cutover_requests_total")
            && l.contains("code_class=\"5xx\"")
            && l.contains("reason=\"unresolved_backend\"")
    });
    assert!(counted, "{}", metrics.body);
}

/// `cutover check` names the fields a GRPCRoute cannot have and the gRPC
/// names that are not valid, with their paths.
#[test]
fn check_names_what_a_grpc_route_cannot_hold() {
    let dir = TempDir::new("grpc-check");
    dir.write(
        "00-cutover.yaml",
        "listeners:\n  - name: public\n    address: \"127.0.0.1:8080\"\n",
    );
    let bad_name = r#"apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: bad, namespace: default}
spec:
  rules:
  - matches:
    - method: {service: "bad/name", method: Do}
    backendRefs: [{name: svc, port: 9000}]
"#;
    let http_fields = r#"apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: bad, namespace: default}
spec:
  rules:
  - matches:
    - path: {type: Exact, value: /x}
    timeouts: {request: 1s}
    filters:
    - type: URLRewrite
      urlRewrite: {hostname: a.example.com}
    backendRefs: [{name: svc, port: 9000}]
"#;
    let cases: [(&str, &[&str]); 2] = [
        (
            bad_name,
            &["GRPCRoute bad: spec.rules[0].matches[0].method.service"],
        ),
        (
            http_fields,
            &[
                "GRPCRoute bad: spec.rules[0].matches[0].path",
                "GRPCRoute bad: spec.rules[0].timeouts",
                "GRPCRoute bad: spec.rules[0].filters[0].type",
            ],
        ),
    ];
    for (route, fields) in cases {
        dir.write("grpcroute.yaml", route);
        let run = check(&[&dir.0]);
        assert_ne!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
        let out = format!("{}{}", run.stdout, run.stderr);
        for field in fields {
            assert!(out.contains(field), "{field} not named in: {out}");
        }
    }
}

/// gRPC over TLS: the client negotiates h2 by ALPN with an HTTPS listener,
/// the call is routed by its method and its trailers come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_route_serves_h2_over_tls() {
    use rustls::pki_types::ServerName;

    let up = GrpcEcho::start("secure").await;
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["grpc.example.com".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let dir = TempDir::new("grpc-tls");
    let crt = dir.write("tls.crt", &cert.pem());
    let key_file = dir.write("tls.key", &key.serialize_pem());
    let base = format!(
        "listeners:\n  - name: public\n    address: \"127.0.0.1:0\"\n    tls:\n      certificates: [{{cert: {}, key: {}}}]\ngroups:\n  secure: {{endpoints: [\"{}\"], protocol: h2}}\n",
        crt.display(),
        key_file.display(),
        up.addr
    );
    dir.write("00-cutover.yaml", &base);
    dir.write(
        "grpcroute.yaml",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: secure}\nspec:\n  hostnames: [grpc.example.com]\n  rules:\n  - matches: [{method: {service: echo.Echo, method: One}}]\n    backendRefs: [{name: secure, port: 9000}]\n",
    );
    let p = Running::start(&dir.0).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(p.public).await.unwrap();
    let name = ServerName::try_from("grpc.example.com").unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for (path, want) in [("echo.Echo/One", Some("0")), ("echo.Echo/Two", Some("12"))] {
        let req = grpc_request(&format!("https://grpc.example.com/{path}"), &[]);
        let r = read_reply(send.send_request(req).await.unwrap()).await;
        assert_eq!(r.status.as_deref(), want, "{path}: {r:?}");
        if want == Some("0") {
            assert_eq!(r.message, "secure");
            assert_eq!(r.trailers["x-served-by"], "secure");
        }
    }
    assert_eq!(up.calls().len(), 1);
}
