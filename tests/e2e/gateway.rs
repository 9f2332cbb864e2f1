//! Gateway API input: HTTPRoutes in the style of the Gateway API docs,
//! loaded from a config directory next to a cutover base file, driving real
//! traffic; edited the way Flagger and Argo Rollouts edit them (weights
//! rewritten in place, or a ConfigMap `..data` swap) and hot-reloaded; and
//! `cutover check` on directories and unsupported fields.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cutover::reload::Tables;
use http::{Method, Request};
use http_body_util::Full;

use crate::support::*;

mod backend_filters;
mod cors;
mod gateways;
pub(crate) mod grpc;
mod mirror;

/// Replaces a file the way controllers and `kubectl cp` do: write aside
/// (a name the loader skips), then rename over.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The cutover part: where to listen, and which real endpoints the Service
/// names of the HTTPRoutes stand for (here test upstreams on 127.0.0.1).
fn base(groups: &[(&str, &Upstream)]) -> String {
    let mut y =
        String::from("listeners:\n  - name: public\n    address: \"127.0.0.1:0\"\ngroups:\n");
    for (name, up) in groups {
        y.push_str(&format!("  {name}:\n    endpoints: [\"{}\"]\n", up.addr));
    }
    y
}

/// The canary example of the Gateway API docs (traffic splitting), with the
/// header override of its "x-canary: always" example, and a status block
/// as a controller leaves it.
fn reviews_route(primary: u32, canary: u32, extra_filter: &str) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: reviews
  namespace: bookinfo
  annotations:
    flagger.app/managed-by: flagger
spec:
  parentRefs:
  - name: example-gateway
    namespace: infra
  hostnames:
  - reviews.example.com
  rules:
  - matches:
    - headers:
      - name: x-canary
        value: always
    backendRefs:
    - name: reviews-canary
      port: 9080
  - matches:
    - path:
        type: PathPrefix
        value: /
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        add:
        - name: x-route
          value: reviews{extra_filter}
    backendRefs:
    - name: reviews-primary
      port: 9080
      weight: {primary}
    - name: reviews-canary
      port: 9080
      weight: {canary}
status:
  parents:
  - parentRef: {{name: example-gateway}}
    controllerName: example.com/gateway-controller
    conditions: []
"#
    )
}

/// The proxy started as `cutover run -c DIR` starts it.
struct Running {
    public: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    shared: Arc<Tables>,
    proxy: crate::support::Proxy,
}

impl Running {
    async fn start(config: &Path) -> Running {
        let loaded = cutover::config::load_path(config).unwrap_or_else(|e| panic!("{e}"));
        let proxy = crate::support::Launch::config(loaded.config)
            .admin(None)
            .with(|o| {
                o.config_file = Some(config.to_path_buf());
                o.config_hash = Some(loaded.hash);
            })
            .start()
            .await;
        Running {
            public: proxy.addr,
            admin: proxy.admin.unwrap(),
            shared: Arc::clone(&proxy.app),
            proxy,
        }
    }

    fn generation(&self) -> u64 {
        self.shared.routes.load().generation
    }

    /// Waits (at most `limit`) for a table newer than `after`.
    async fn published_after(&self, after: u64, limit: Duration) -> Duration {
        let start = Instant::now();
        while self.generation() <= after {
            assert!(
                start.elapsed() < limit,
                "no new table within {limit:?} (still generation {after})"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        start.elapsed()
    }

    /// Sends `n` requests for `host` (with `headers`); counts answers by
    /// upstream name.
    async fn spread(&self, n: usize, headers: &[(&str, &str)]) -> Vec<(String, usize)> {
        let c = http1_client();
        let url = format!("http://{}/reviews/1", self.public);
        let mut all = vec![("host", "reviews.example.com")];
        all.extend_from_slice(headers);
        let mut counts: Vec<(String, usize)> = Vec::new();
        for _ in 0..n {
            let got = get(&c, &url, &all).await;
            assert_eq!(got.status, 200, "{}", got.body);
            match counts.iter_mut().find(|(name, _)| *name == got.body) {
                Some((_, k)) => *k += 1,
                None => counts.push((got.body, 1)),
            }
        }
        counts
    }

    async fn stop(mut self) {
        self.proxy.stop();
        let _ = (&mut self.proxy.done).await;
    }
}

fn count(counts: &[(String, usize)], name: &str) -> usize {
    counts
        .iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, k)| *k)
}

/// Binomial bounds: `n * p` within 5 standard deviations (a false failure
/// about once in 1.7 million runs).
fn assert_share(got: usize, n: usize, p: f64, what: &str) {
    assert_share_within(got, n, p, 5.0, what);
}

/// `got` of `n` within `sigmas` standard deviations of `n * p`.
fn assert_share_within(got: usize, n: usize, p: f64, sigmas: f64, what: &str) {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (got as f64 - mean).abs() <= sigmas * sd,
        "{what}: {got} of {n}, expected {mean:.0} +- {:.0}",
        sigmas * sd
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_canary_split_header_override_and_flagger_style_edits() {
    let (primary, canary) = (upstream("stable").await, upstream("canary").await);
    let dir = TempDir::new("canary");
    std::fs::write(
        dir.path("00-cutover.yaml"),
        base(&[("reviews-primary", &primary), ("reviews-canary", &canary)]),
    )
    .unwrap();
    let route_file = dir.path("httproute-reviews.yaml");
    std::fs::write(&route_file, reviews_route(90, 10, "")).unwrap();
    // Files the loader must skip: hidden, and not YAML.
    std::fs::write(dir.path(".httproute-reviews.yaml.swp"), "not: [yaml").unwrap();
    std::fs::write(dir.path("README.md"), "# notes").unwrap();
    let p = Running::start(&dir.0).await;

    // 90/10 by weight.
    let n = 2000;
    let counts = p.spread(n, &[]).await;
    assert_eq!(count(&counts, "stable") + count(&counts, "canary"), n);
    assert_share(
        count(&counts, "canary"),
        n,
        0.1,
        "canary at weight 10 of 100",
    );
    // The header match sends testers to the canary, every time.
    let counts = p.spread(100, &[("x-canary", "always")]).await;
    assert_eq!(count(&counts, "canary"), 100, "{counts:?}");
    // The response header modifier applies.
    let got = get(
        &http1_client(),
        &format!("http://{}/", p.public),
        &[("host", "reviews.example.com")],
    )
    .await;
    assert_eq!(got.headers["x-route"], "reviews");
    // Another host: the route's hostnames do not match.
    let got = get(
        &http1_client(),
        &format!("http://{}/", p.public),
        &[("host", "other.example.com")],
    )
    .await;
    assert_eq!(got.status, 404);

    // Flagger's step: the controller rewrites the weights.
    let g = p.generation();
    write_atomically(&route_file, &reviews_route(50, 50, ""));
    let took = p.published_after(g, Duration::from_secs(1)).await;
    let counts = p.spread(400, &[]).await;
    assert_share(
        count(&counts, "canary"),
        400,
        0.5,
        "canary at weight 50 of 100",
    );
    eprintln!("50/50 published {took:?} after the rename");

    // Promotion: all traffic to the canary.
    let g = p.generation();
    write_atomically(&route_file, &reviews_route(0, 100, ""));
    p.published_after(g, Duration::from_secs(1)).await;
    let counts = p.spread(100, &[]).await;
    assert_eq!(count(&counts, "canary"), 100, "{counts:?}");

    // An edit cutover cannot honour (an extension filter) is rejected once,
    // and traffic stays where it was.
    let g = p.generation();
    let extension = "\n    - type: ExtensionRef\n      extensionRef:\n        group: example.com\n        kind: Shadow\n        name: reviews-shadow";
    write_atomically(&route_file, &reviews_route(100, 0, extension));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(p.generation(), g, "an unsupported filter must not publish");
    assert_eq!(p.shared.reload_errors.load(Ordering::Relaxed), 1);
    let counts = p.spread(100, &[]).await;
    assert_eq!(count(&counts, "canary"), 100, "{counts:?}");

    // Fixed: accepted again.
    write_atomically(&route_file, &reviews_route(100, 0, ""));
    p.published_after(g, Duration::from_secs(1)).await;
    let counts = p.spread(50, &[]).await;
    assert_eq!(count(&counts, "stable"), 50, "{counts:?}");
    p.stop().await;
}

/// The blue/green example: one backendRef at weight 1, the other at 0.
fn blue_green_route(blue: u32, green: u32) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: reviews
spec:
  parentRefs:
  - name: example-gateway
  rules:
  - backendRefs:
    - name: reviews-blue
      port: 9080
      weight: {blue}
    - name: reviews-green
      port: 9080
      weight: {green}
"#
    )
}

/// Writes one ConfigMap version the way kubelet does: a timestamped
/// directory, then `..data` swapped to it atomically.
fn configmap_version(dir: &Path, version: u32, files: &[(&str, String)]) {
    let stamp = format!("..2026_11_22_03_00_0{version}.{version}");
    std::fs::create_dir(dir.join(&stamp)).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(&stamp).join(name), text).unwrap();
    }
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(&stamp, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for (name, _) in files {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_directory_blue_green_switch() {
    let (blue, green) = (upstream("blue").await, upstream("green").await);
    let dir = TempDir::new("configmap");
    let cutover = base(&[("reviews-blue", &blue), ("reviews-green", &green)]);
    configmap_version(
        &dir.0,
        1,
        &[
            ("cutover.yaml", cutover.clone()),
            ("httproute.yaml", blue_green_route(1, 0)),
        ],
    );
    let p = Running::start(&dir.0).await;
    let counts = p.spread(50, &[]).await;
    assert_eq!(count(&counts, "blue"), 50, "{counts:?}");

    let g = p.generation();
    configmap_version(
        &dir.0,
        2,
        &[
            ("cutover.yaml", cutover),
            ("httproute.yaml", blue_green_route(0, 1)),
        ],
    );
    let took = p.published_after(g, Duration::from_secs(1)).await;
    let counts = p.spread(50, &[]).await;
    assert_eq!(count(&counts, "green"), 50, "{counts:?}");
    eprintln!("ConfigMap swap published {took:?} after the ..data rename");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_config_takes_cutover_and_httproute_documents() {
    let (primary, canary) = (upstream("stable").await, upstream("canary").await);
    let dir = TempDir::new("put");
    let cutover = base(&[("reviews-primary", &primary), ("reviews-canary", &canary)]);
    std::fs::write(dir.path("cutover.yaml"), &cutover).unwrap();
    std::fs::write(dir.path("route.yaml"), reviews_route(100, 0, "")).unwrap();
    let p = Running::start(&dir.0).await;
    let api = |method: Method, path: &str, body: String| {
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", p.admin))
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        async move { send(&http1_client(), req).await }
    };

    let extension = "\n    - type: ExtensionRef\n      extensionRef:\n        group: example.com\n        kind: Shadow\n        name: reviews-shadow";
    let bad = format!("{cutover}---\n{}", reviews_route(0, 100, extension));
    let got = api(Method::POST, "/v1/config/validate", bad.clone()).await;
    assert_eq!(got.status, 400, "{}", got.body);
    assert!(
        got.body
            .contains("HTTPRoute reviews: spec.rules[1].filters[1].type"),
        "{}",
        got.body
    );
    let g = p.generation();
    assert_eq!(api(Method::PUT, "/v1/config", bad).await.status, 400);
    assert_eq!(p.generation(), g);

    let good = format!("{cutover}---\n{}", reviews_route(0, 100, ""));
    let got = api(Method::PUT, "/v1/config", good).await;
    assert_eq!(got.status, 200, "{}", got.body);
    let counts = p.spread(50, &[]).await;
    assert_eq!(count(&counts, "canary"), 50, "{counts:?}");
    // The live config shows the HTTPRoute converted to cutover's model.
    let got = api(Method::GET, "/v1/config", String::new()).await;
    let v: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    let rule = &v["config"]["routes"][0]["rules"][1];
    assert_eq!(rule["name"], "rule-1", "{v}");
    assert_eq!(rule["backends"][1]["group"], "reviews-canary", "{v}");
    assert_eq!(rule["backends"][1]["weight"], 100, "{v}");
    p.stop().await;
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn check(paths: &[&Path]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .arg("check")
        .args(paths)
        .env_remove("RUST_LOG")
        .output()
        .expect("run the cutover binary");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn check_accepts_a_directory_and_names_unsupported_fields() {
    let dir = TempDir::new("check");
    let base = "listeners:\n  - name: public\n    address: \"127.0.0.1:8080\"\ngroups:\n  reviews-primary: {endpoints: [\"10.0.0.5:9080\"]}\n";
    std::fs::write(dir.path("cutover.yaml"), base).unwrap();
    std::fs::write(dir.path("route.yml"), reviews_route(90, 10, "")).unwrap();
    let run = check(&[&dir.0]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    // reviews-canary is not in the base: a group for its Service is made.
    assert!(
        run.stdout.contains(&format!(
            "{}: ok (1 listeners, 1 routes, 2 rules, 2 groups)",
            dir.0.display()
        )),
        "{}",
        run.stdout
    );

    let extension = "\n    - type: ExtensionRef\n      extensionRef:\n        group: example.com\n        kind: Shadow\n        name: reviews-shadow";
    let bad = dir.path("extension.yaml");
    std::fs::write(&bad, reviews_route(90, 10, extension)).unwrap();
    let run = check(&[&bad]);
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(
            "HTTPRoute reviews: spec.rules[1].filters[1].type: ExtensionRef is not supported by cutover (no extension filters)"
        ),
        "{}",
        run.stderr
    );
    // In a directory, errors also name the file.
    let run = check(&[&dir.0]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .contains("extension.yaml: HTTPRoute reviews: spec.rules[1].filters[1].type"),
        "{}",
        run.stderr
    );
    std::fs::remove_file(&bad).unwrap();

    // A typo inside an HTTPRoute: its path and line.
    let typo = dir.path("typo.yaml");
    std::fs::write(
        &typo,
        reviews_route(90, 10, "").replace(
            "backendRefs:\n    - name: reviews-primary",
            "backendRef:\n    - name: reviews-primary",
        ),
    )
    .unwrap();
    let run = check(&[&typo]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .contains("spec.rules[1].backendRef: unknown field `backendRef`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("line 32"), "{}", run.stderr);
}

#[test]
fn every_example_passes_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut paths = vec![root.join("cutover.yaml"), root.join("examples/gateway")];
    for entry in std::fs::read_dir(root.join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            paths.push(path);
        }
    }
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let run = check(&refs);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout.lines().count(), paths.len(), "{}", run.stdout);
}

/// RequestRedirect and URLRewrite in an HTTPRoute as the Gateway API docs
/// write them (a rule without backendRefs that only redirects; a prefix
/// rewrite with a new Host), served from a config directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_redirect_and_rewrite_filters() {
    let shop = upstream("shop").await;
    let dir = TempDir::new("redirects");
    std::fs::write(dir.path("00-cutover.yaml"), base(&[("shop-blue", &shop)])).unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/examples/gateway/httproute-redirects.yaml");
    std::fs::copy(example, dir.path("httproute.yaml")).unwrap();
    let p = Running::start(&dir.0).await;
    let c = http1_client();
    let host = [("host", "www.example.com")];

    let got = get(
        &c,
        &format!("http://{}/account/orders?page=2", p.public),
        &host,
    )
    .await;
    assert_eq!(got.status, 301);
    assert_eq!(
        got.headers["location"],
        "https://www.example.com/account/orders?page=2"
    );

    let got = get(&c, &format!("http://{}/catalog/42", p.public), &host).await;
    assert_eq!((got.status.as_u16(), got.body.as_str()), (200, "shop"));
    let seen = shop.requests();
    assert_eq!(seen.len(), 1, "only the rewritten request reached the shop");
    assert_eq!(seen[0].uri.path(), "/products/42");
    assert_eq!(seen[0].headers["host"], "shop.internal");
    assert_eq!(seen[0].headers["x-forwarded-host"], "www.example.com");
    p.stop().await;

    // A value compile refuses is named by its HTTPRoute field.
    let bad = dir.path("httproute.yaml");
    let text = std::fs::read_to_string(&bad)
        .unwrap()
        .replace("statusCode: 301", "statusCode: 200");
    std::fs::write(&bad, text).unwrap();
    let run = check(&[&dir.0]);
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(
            "HTTPRoute www: spec.rules[0].filters[].requestRedirect.statusCode: 200 is not a redirect status"
        ),
        "{}",
        run.stderr
    );
}

/// Gateway API's partial validity: a backendRef cutover cannot resolve (a
/// `ServiceImport`) takes its share of the weight as 500s while the other
/// backend serves; a rule without backendRefs answers 500; `cutover check`
/// accepts the directory and warns naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresolvable_backend_refs_answer_500_for_their_share() {
    let app = upstream("reviews").await;
    let dir = TempDir::new("unresolved");
    std::fs::write(dir.path("00-cutover.yaml"), base(&[("reviews-v1", &app)])).unwrap();
    let route = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: reviews
  namespace: bookinfo
spec:
  rules:
  - matches:
    - path: {type: PathPrefix, value: /nothing}
  - backendRefs:
    - name: reviews-v1
      port: 9080
      weight: 3
    - group: multicluster.x-k8s.io
      kind: ServiceImport
      name: reviews-v2
      port: 9080
      weight: 1
"#;
    std::fs::write(dir.path("httproute.yaml"), route).unwrap();

    let run = check(&[&dir.0]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(
            "warning: httproute.yaml: HTTPRoute reviews: spec.rules[1].backendRefs[1].group: \"multicluster.x-k8s.io\" is not supported"
        ),
        "{}",
        run.stderr
    );

    let p = Running::start(&dir.0).await;
    let c = http1_client();
    let got = get(&c, &format!("http://{}/nothing/here", p.public), &[]).await;
    assert_eq!(got.status, 500, "a rule without backendRefs: {}", got.body);

    let n = 600;
    let url = format!("http://{}/reviews", p.public);
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..n {
        let got = get(&c, &url, &[]).await;
        match got.status.as_u16() {
            200 => ok += 1,
            500 => failed += 1,
            other => panic!("unexpected {other}: {}", got.body),
        }
    }
    assert_eq!(ok + failed, n);
    assert_share(
        failed,
        n,
        0.25,
        "the unresolved backendRef's share (weight 1 of 4)",
    );
    assert_eq!(app.count(), ok, "every 200 came from the resolved backend");
    p.stop().await;
}
