//! Gateway documents in file mode, from the Gateway API text: a route
//! attaches through its parentRefs (`sectionName`, `port`), a listener's
//! `allowedRoutes` admits namespaces (`Same` by default), the listener's
//! hostname narrows the route's (a host no attached route accepts gets
//! 404), and the shadowed-rule check only compares rules one listener
//! serves. cutover's own listeners serve the Gateway listeners of their port.

use super::{check, Running};
use crate::support::*;

fn base(ports: [u16; 2], groups: &[(&str, &Upstream)]) -> String {
    let mut y = format!(
        "listeners:\n  - {{name: public, address: \"127.0.0.1:{}\"}}\n  - {{name: internal, address: \"127.0.0.1:{}\"}}\ngroups:\n",
        ports[0], ports[1]
    );
    for (name, up) in groups {
        y.push_str(&format!("  {name}: {{endpoints: [\"{}\"]}}\n", up.addr));
    }
    y
}

fn gateway(ports: [u16; 2]) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: infra}}
spec:
  gatewayClassName: cutover
  listeners:
  - name: www
    port: {}
    protocol: HTTP
    hostname: "*.example.com"
    allowedRoutes:
      namespaces: {{from: All}}
  - name: admin
    port: {}
    protocol: HTTP
    hostname: admin.internal
"#,
        ports[0], ports[1]
    )
}

/// An HTTPRoute of `ns` with `parents` (flow YAML) and `hostnames`, all
/// requests to `group`.
fn route(name: &str, ns: &str, parents: &str, hostnames: &str, group: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  parentRefs: {parents}\n  hostnames: {hostnames}\n  rules:\n  - backendRefs: [{{name: {group}}}]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_attach_by_parent_refs_with_hostname_intersection() {
    let shop = upstream("shop").await;
    let blog = upstream("blog").await;
    let ops = upstream("ops").await;
    let ports = [free_port(), free_port()];
    let dir = TempDir::new("gateways");
    let groups = [("shop", &shop), ("blog", &blog), ("ops", &ops)];
    std::fs::write(dir.path("00-cutover.yaml"), base(ports, &groups)).unwrap();
    std::fs::write(dir.path("10-gateway.yaml"), gateway(ports)).unwrap();
    let routes = [
        route(
            "shop",
            "shop",
            "[{name: edge, namespace: infra, sectionName: www}]",
            "[shop.example.com, shop.other.org]",
            "shop",
        ),
        // No sectionName: every listener that admits it (www: All; admin:
        // Same namespace only).
        route(
            "blog",
            "blog",
            "[{name: edge, namespace: infra}]",
            "[]",
            "blog",
        ),
        route(
            "ops",
            "infra",
            &format!("[{{name: edge, port: {}}}]", ports[1]),
            "[]",
            "ops",
        ),
        // admin admits only routes of the Gateway's namespace.
        route(
            "stray",
            "shop",
            "[{name: edge, namespace: infra, sectionName: admin}]",
            "[]",
            "shop",
        ),
    ];
    std::fs::write(dir.path("20-routes.yaml"), routes.join("---\n")).unwrap();

    let run = check(&[&dir.0]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("20-routes.yaml: HTTPRoute stray: spec.parentRefs[0]: not attached to Gateway infra/edge: no selected listener allows HTTPRoutes from the route's namespace"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("HTTPRoute stray: spec.parentRefs: attaches to no listener of the Gateway documents: the route is not served"),
        "{}",
        run.stderr
    );

    let p = Running::start(&dir.0).await;
    let c = http1_client();
    let ask = |port: u16, host: &'static str| {
        let c = c.clone();
        async move {
            let got = get(&c, &format!("http://127.0.0.1:{port}/x"), &[("host", host)]).await;
            (got.status.as_u16(), got.body)
        }
    };
    let ok = |name: &str| (200, name.to_string());
    assert_eq!(ask(ports[0], "shop.example.com").await, ok("shop"));
    // shop.other.org is outside the listener's *.example.com.
    assert_eq!(ask(ports[0], "shop.other.org").await.0, 404);
    // blog has no hostnames: it serves the listener's *.example.com.
    assert_eq!(ask(ports[0], "news.example.com").await, ok("blog"));
    assert_eq!(ask(ports[0], "example.com").await.0, 404);
    assert_eq!(ask(ports[0], "admin.internal").await.0, 404);
    assert_eq!(ask(ports[1], "admin.internal").await, ok("ops"));
    assert_eq!(ask(ports[1], "shop.example.com").await.0, 404);
    assert_eq!(ask(ports[1], "news.example.com").await.0, 404);
    assert_eq!(shop.count(), 1);
    p.stop().await;
}

/// Two catch-all routes on different Gateways' listeners never see the
/// same request: they load. When every listener of the second also serves
/// the first, the second can never match, and that is still an error.
#[test]
fn the_shadow_check_compares_only_rules_of_one_listener() {
    let ports = [free_port(), free_port()];
    let dir = TempDir::new("gateway-shadow");
    let base = format!(
        "listeners:\n  - {{name: a, address: \"127.0.0.1:{}\"}}\n  - {{name: b, address: \"127.0.0.1:{}\"}}\ngroups:\n  blue: {{endpoints: [\"127.0.0.1:9\"]}}\n  green: {{endpoints: [\"127.0.0.1:9\"]}}\n",
        ports[0], ports[1]
    );
    std::fs::write(dir.path("00-cutover.yaml"), base).unwrap();
    let gateways = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: one}}\nspec:\n  gatewayClassName: cutover\n  listeners: [{{name: http, port: {}, protocol: HTTP}}]\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: two}}\nspec:\n  gatewayClassName: cutover\n  listeners: [{{name: http, port: {}, protocol: HTTP}}]\n",
        ports[0], ports[1]
    );
    std::fs::write(dir.path("10-gateways.yaml"), gateways).unwrap();
    let write = |blue_parents: &str| {
        let routes = [
            route("blue", "default", blue_parents, "[]", "blue"),
            route("green", "default", "[{name: two}]", "[]", "green"),
        ];
        std::fs::write(dir.path("20-routes.yaml"), routes.join("---\n")).unwrap();
    };
    write("[{name: one}]");
    let run = check(&[&dir.0]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    write("[{name: one}, {name: two}]");
    let run = check(&[&dir.0]);
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("can never match"), "{}", run.stderr);
}
