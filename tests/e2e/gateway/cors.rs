//! The CORS filter from the Gateway API text (`HTTPCORSFilter`): the proxy
//! answers a preflight from an allowed origin itself (allowed methods and
//! headers, max age, credentials), gives a disallowed origin no CORS
//! headers, and adds `Access-Control-Allow-Origin` and the exposed headers
//! to an allowed origin's answers.

use http::{Method, Request};
use http_body_util::Full;

use super::{base, Running};
use crate::support::*;

const ROUTE: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api, namespace: web}
spec:
  hostnames: [api.example.com]
  rules:
  - filters:
    - type: CORS
      cors:
        allowOrigins: ["https://app.example.com", "https://*.partner.example"]
        allowMethods: [GET, PUT]
        allowHeaders: [x-client]
        exposeHeaders: [x-upstream]
        allowCredentials: true
        maxAge: 600
    backendRefs: [{name: api}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflights_are_answered_and_allowed_origins_get_the_headers() {
    let api = upstream("api").await;
    let dir = TempDir::new("cors");
    std::fs::write(dir.path("00-cutover.yaml"), base(&[("api", &api)])).unwrap();
    std::fs::write(dir.path("httproute.yaml"), ROUTE).unwrap();
    let p = Running::start(&dir.0).await;
    let c = http1_client();
    let send_with = |method: Method, headers: &[(&str, &str)]| {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("http://{}/items", p.public))
            .header("host", "api.example.com");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::default()).unwrap();
        let c = c.clone();
        async move { send(&c, req).await }
    };

    let got = send_with(
        Method::OPTIONS,
        &[
            ("origin", "https://shop.partner.example"),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "x-client"),
        ],
    )
    .await;
    assert_eq!(got.status, 200);
    let h = &got.headers;
    assert_eq!(
        h["access-control-allow-origin"],
        "https://shop.partner.example"
    );
    assert_eq!(h["access-control-allow-methods"], "GET, PUT");
    assert_eq!(h["access-control-allow-headers"], "x-client");
    assert_eq!(h["access-control-max-age"], "600");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(api.count(), 0, "the proxy answered the preflight");

    let got = send_with(
        Method::OPTIONS,
        &[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "PUT"),
        ],
    )
    .await;
    assert_eq!(got.status, 200);
    assert!(!got.headers.contains_key("access-control-allow-origin"));
    assert_eq!(api.count(), 0);

    let got = send_with(Method::GET, &[("origin", "https://app.example.com")]).await;
    assert_eq!((got.status.as_u16(), got.body.as_str()), (200, "api"));
    assert_eq!(
        got.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(got.headers["access-control-expose-headers"], "x-upstream");
    assert_eq!(got.headers["access-control-allow-credentials"], "true");
    assert_eq!(got.headers["vary"], "Origin");

    let got = send_with(Method::GET, &[("origin", "https://evil.example")]).await;
    assert_eq!(got.body, "api");
    assert!(!got.headers.contains_key("access-control-allow-origin"));
    // An OPTIONS that is not a preflight goes to the upstream.
    let got = send_with(Method::OPTIONS, &[]).await;
    assert_eq!(got.body, "api");
    assert_eq!(api.count(), 3);
    p.stop().await;
}
