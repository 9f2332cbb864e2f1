//! backendRef-level filters (Gateway API `HTTPBackendRef.filters`): header
//! edits that apply only to the requests sent to that backend and the
//! responses it gave, as Flagger's session affinity uses them.

use std::path::Path;

use super::{base, check, Running};
use crate::support::*;

/// Flagger's session affinity, as its HTTPRoute reads: the canary's
/// backendRef sets the session cookie on canary responses; a first rule
/// sends requests carrying the cookie to the canary. Each backend also
/// adds a request header of its own.
const ROUTE: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: podinfo
  namespace: test
spec:
  hostnames: [app.example.com]
  rules:
  - matches:
    - headers:
      - name: Cookie
        type: RegularExpression
        value: ".*flagger-cookie=CgXqHbFPhB.*"
    backendRefs:
    - name: podinfo-canary
      port: 9898
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        add: [{name: x-rule, value: split}]
    backendRefs:
    - name: podinfo-primary
      port: 9898
      weight: 50
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier:
          add: [{name: x-backend, value: primary}]
    - name: podinfo-canary
      port: 9898
      weight: 50
      filters:
      - type: ResponseHeaderModifier
        responseHeaderModifier:
          add:
          - name: Set-Cookie
            value: "flagger-cookie=CgXqHbFPhB; Max-Age=21600"
      - type: RequestHeaderModifier
        requestHeaderModifier:
          set: [{name: x-backend, value: canary}]
          remove: [x-drop-for-canary]
"#;

/// The cookie is set on canary responses only; each backend receives only
/// its own request header (and the rule's); a request with the cookie then
/// sticks to the canary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_ref_filters_set_the_session_cookie_on_canary_responses_only() {
    let primary = upstream("primary").await;
    let canary = upstream("canary").await;
    let dir = TempDir::new("backend-filters");
    std::fs::write(
        dir.path("00-cutover.yaml"),
        base(&[("podinfo-primary", &primary), ("podinfo-canary", &canary)]),
    )
    .unwrap();
    std::fs::write(dir.path("httproute.yaml"), ROUTE).unwrap();
    let run = check(&[&dir.0]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);

    let p = Running::start(&dir.0).await;
    let c = http1_client();
    let url = format!("http://{}/", p.public);
    let host = ("host", "app.example.com");
    let (mut to_primary, mut to_canary) = (0, 0);
    for _ in 0..200 {
        let got = get(&c, &url, &[host, ("x-drop-for-canary", "1")]).await;
        assert_eq!(got.status, 200, "{}", got.body);
        let cookie = got.headers.get("set-cookie");
        match got.body.as_str() {
            "canary" => {
                to_canary += 1;
                assert_eq!(
                    cookie.map(|v| v.to_str().unwrap()),
                    Some("flagger-cookie=CgXqHbFPhB; Max-Age=21600")
                );
            }
            "primary" => {
                to_primary += 1;
                assert!(cookie.is_none(), "primary response with {cookie:?}");
            }
            other => panic!("unexpected body {other}"),
        }
    }
    assert!(
        to_primary > 50 && to_canary > 50,
        "{to_primary}/{to_canary}"
    );
    for seen in primary.requests() {
        let backend: Vec<_> = seen.headers.get_all("x-backend").iter().collect();
        assert_eq!(backend, ["primary"]);
        assert_eq!(seen.headers["x-rule"], "split");
        assert_eq!(seen.headers["x-drop-for-canary"], "1");
    }
    for seen in canary.requests() {
        let backend: Vec<_> = seen.headers.get_all("x-backend").iter().collect();
        assert_eq!(backend, ["canary"]);
        assert_eq!(seen.headers["x-rule"], "split");
        assert!(!seen.headers.contains_key("x-drop-for-canary"));
    }

    // The browser sends the cookie back: the first rule keeps it on the canary.
    let before = canary.count();
    let cookie = ("cookie", "theme=dark; flagger-cookie=CgXqHbFPhB");
    for _ in 0..20 {
        let got = get(&c, &url, &[host, cookie]).await;
        assert_eq!(got.body, "canary");
        assert!(!got.headers.contains_key("set-cookie"));
    }
    assert_eq!(canary.count(), before + 20);
    p.stop().await;
}

/// A redirect belongs to the rule: on a backendRef it is an error naming
/// the filter.
#[test]
fn a_redirect_on_a_backend_ref_is_refused_naming_the_filter() {
    let dir = TempDir::new("backend-redirect");
    let up = "127.0.0.1:9";
    std::fs::write(
        dir.path("00-cutover.yaml"),
        format!(
            "listeners: [{{name: public, address: \"127.0.0.1:0\"}}]\n\
             groups: {{podinfo-primary: {{endpoints: [\"{up}\"]}}}}\n"
        ),
    )
    .unwrap();
    let route = ROUTE.replacen(
        "      filters:\n      - type: RequestHeaderModifier\n        requestHeaderModifier:\n          add: [{name: x-backend, value: primary}]",
        "      filters:\n      - type: RequestRedirect\n        requestRedirect: {scheme: https}",
        1,
    );
    assert_ne!(route, ROUTE);
    std::fs::write(dir.path("httproute.yaml"), route).unwrap();
    let run = check(&[Path::new(&dir.0)]);
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("spec.rules[1].backendRefs[0].filters[0].type: RequestRedirect is not supported on a backendRef"),
        "{}",
        run.stderr
    );
}
