//! Controller mode against the API server test double (`kubernetes/api.rs`):
//! the real `kube` client lists and watches it, the real proxy serves, and
//! pods are real upstreams on 127.0.0.x addresses sharing one port, as the
//! pods of an EndpointSlice do.

mod api;
mod cli;
mod gateway_tls;
mod grpc;
mod mesh;
mod scale;
mod scale_rss;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cutover::kubernetes::{self, ControllerOptions};
use serde_json::{json, Value};

use crate::support::*;
use api::*;

const CONTROLLER: &str = "cutover.dev/gateway-controller";

/// The proxy, its controller, and the double it watches.
struct Cluster {
    api: Arc<ApiServer>,
    proxy: Proxy,
    controller: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.controller.abort();
    }
}

/// A proxy with one listener `public` in controller mode against `api`.
async fn cutover(
    api: &Arc<ApiServer>,
    lease: Option<kubernetes::lease::LeaseOptions>,
) -> (Proxy, tokio::task::JoinHandle<()>) {
    let p = proxy("listeners: [{name: public, address: \"127.0.0.1:0\"}]\n").await;
    let options = ControllerOptions {
        debounce: Duration::from_millis(20),
        lease,
        bound_ports: BTreeMap::from([("public".to_string(), p.addr.port())]),
        ..ControllerOptions::default()
    };
    let controller = tokio::spawn(kubernetes::run(Arc::clone(&p.app), api.client(), options));
    (p, controller)
}

/// The double holding cutover's GatewayClass and Gateway `shop/web` (its
/// listener on the proxy's port), and a proxy watching it.
async fn cluster() -> Cluster {
    let api = ApiServer::start().await;
    let (proxy, controller) = cutover(&api, None).await;
    api.apply(
        GATEWAY_CLASS,
        json!({"metadata": {"name": "cutover"}, "spec": {"controllerName": CONTROLLER}}),
    );
    api.apply(NAMESPACE, json!({"metadata": {"name": "shop"}}));
    api.apply(NAMESPACE, json!({"metadata": {"name": "books"}}));
    api.apply(GATEWAY, gateway_object(proxy.addr.port()));
    Cluster {
        api,
        proxy,
        controller,
    }
}

fn gateway_object(port: u16) -> Value {
    json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"gatewayClassName": "cutover", "listeners": [
            {"name": "http", "port": port, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}}
        ]}
    })
}

/// Pods of one Deployment: upstreams answering `name` on 127.0.0.x, one port.
struct Pods {
    name: &'static str,
    port: u16,
    servers: Vec<(SocketAddr, Upstream, tokio::task::JoinHandle<()>)>,
}

impl Pods {
    async fn start(name: &'static str, first_ip: u8, count: u8) -> Pods {
        let (up, task) = upstream_at(name, format!("127.0.0.{first_ip}:0").parse().unwrap()).await;
        let mut pods = Pods {
            name,
            port: up.addr.port(),
            servers: vec![(up.addr, up, task)],
        };
        for i in 1..count {
            pods.add(first_ip + i).await;
        }
        pods
    }

    async fn add(&mut self, ip: u8) {
        let addr: SocketAddr = format!("127.0.0.{ip}:{}", self.port).parse().unwrap();
        let (up, task) = upstream_at(self.name, addr).await;
        self.servers.push((addr, up, task));
    }

    fn count(&self) -> usize {
        self.servers.iter().map(|(_, u, _)| u.count()).sum()
    }
}

/// Service `ns/name` (port 80 `http` -> targetPort `web`) and its slice.
fn service(api: &ApiServer, ns: &str, name: &str) {
    api.apply(
        SERVICE,
        json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "web"}]}
        }),
    );
}

/// The EndpointSlice of `ns/name`: `(address, ready, terminating)` pods.
fn slice(api: &ApiServer, ns: &str, name: &str, port: u16, pods: &[(SocketAddr, bool, bool)]) {
    let endpoints: Vec<Value> = pods
        .iter()
        .map(|(a, ready, terminating)| {
            json!({
                "addresses": [a.ip().to_string()],
                "conditions": {"ready": ready, "serving": true, "terminating": terminating}
            })
        })
        .collect();
    api.apply(
        ENDPOINT_SLICE,
        json!({
            "metadata": {"name": format!("{name}-abc"), "namespace": ns,
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": endpoints,
        }),
    );
}

/// Service `shop/reviews` with `pods` ready, and route `reviews` to it,
/// accepted.
async fn route_to(api: &ApiServer, pods: &Pods) {
    service(api, "shop", "reviews");
    slice(api, "shop", "reviews", pods.port, &ready(pods));
    reviews(api, &[("shop", "reviews", 1)]);
    eventually("route accepted", Duration::from_secs(5), || {
        accepted_at(api, "reviews", 1)
    })
    .await;
}

/// The live table's state of the endpoint at `addr`.
fn endpoint_state(p: &Proxy, addr: SocketAddr) -> Arc<cutover::upstream::EndpointState> {
    let table = p.app.routes.load();
    let wanted = addr.to_string();
    table
        .groups
        .iter()
        .flat_map(|g| g.endpoints.iter())
        .find(|e| e.authority.as_str() == wanted)
        .map(|e| Arc::clone(&e.state))
        .unwrap_or_else(|| panic!("no endpoint {addr} in the table"))
}

fn ready(pods: &Pods) -> Vec<(SocketAddr, bool, bool)> {
    pods.servers
        .iter()
        .map(|(a, _, _)| (*a, true, false))
        .collect()
}

/// HTTPRoute `shop/reviews` on Gateway `web`: `backends` are (ns, Service, weight).
fn reviews(api: &ApiServer, backends: &[(&str, &str, u32)]) -> Value {
    let refs: Vec<Value> = backends
        .iter()
        .map(|(ns, name, w)| json!({"name": name, "namespace": ns, "port": 80, "weight": w}))
        .collect();
    api.apply(
        HTTP_ROUTE,
        json!({
            "metadata": {"name": "reviews", "namespace": "shop"},
            "spec": {"parentRefs": [{"name": "web"}], "rules": [{"backendRefs": refs}]}
        }),
    )
}

async fn eventually(what: &str, within: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

/// The conditions cutover wrote for `(kind, ns, name)`'s first parent (or
/// the object's own for a Gateway), as (type, status, reason, observedGeneration).
fn route_conditions(api: &ApiServer, name: &str) -> Vec<(String, String, String, i64)> {
    conditions_of(api, HTTP_ROUTE, name)
}

/// [`route_conditions`] of a route of `kind` (HTTPRoute, GRPCRoute).
fn conditions_of(api: &ApiServer, kind: Kind, name: &str) -> Vec<(String, String, String, i64)> {
    let Some(r) = api.get(kind, "shop", name) else {
        return vec![];
    };
    let parents = r["status"]["parents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let Some(ours) = parents.iter().find(|p| p["controllerName"] == CONTROLLER) else {
        return vec![];
    };
    ours["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
                c["reason"].as_str().unwrap().to_string(),
                c["observedGeneration"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn generation(api: &ApiServer, name: &str) -> i64 {
    api.get(HTTP_ROUTE, "shop", name).unwrap()["metadata"]["generation"]
        .as_i64()
        .unwrap()
}

fn accepted_at(api: &ApiServer, name: &str, generation: i64) -> bool {
    let c = route_conditions(api, name);
    !c.is_empty() && c.iter().all(|c| c.1 == "True" && c.3 == generation)
}

/// Sends requests from `tasks` loops until `stop`; counts failures.
struct Load {
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicUsize>,
    sent: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: String, tasks: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicUsize::new(0));
        let sent = Arc::new(AtomicUsize::new(0));
        let tasks = (0..tasks)
            .map(|_| {
                let (stop, failed, sent, url) = (
                    Arc::clone(&stop),
                    Arc::clone(&failed),
                    Arc::clone(&sent),
                    url.clone(),
                );
                tokio::spawn(async move {
                    let c = http1_client();
                    while !stop.load(Ordering::Relaxed) {
                        let req = http::Request::get(&url).body(Default::default()).unwrap();
                        let ok = match c.request(req).await {
                            Ok(r) => {
                                let status = r.status();
                                let body = http_body_util::BodyExt::collect(r.into_body()).await;
                                if status != 200 {
                                    eprintln!("load: {status} {:?}", body.map(|b| b.to_bytes()));
                                    false
                                } else {
                                    body.is_ok()
                                }
                            }
                            Err(e) => {
                                eprintln!("load: {e}");
                                false
                            }
                        };
                        sent.fetch_add(1, Ordering::Relaxed);
                        if !ok {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            failed,
            sent,
            tasks,
        }
    }

    /// Stops once at least `LOAD_MIN` requests were sent (at most 10 s
    /// more), so a scenario that ends quickly still proves the load ran
    /// through it on a slow machine; (sent, failed).
    async fn finish(self) -> (usize, usize) {
        const LOAD_MIN: usize = 120;
        let sent = Arc::clone(&self.sent);
        eventually("the load's minimum", Duration::from_secs(10), || {
            sent.load(Ordering::Relaxed) >= LOAD_MIN
        })
        .await;
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// Bodies of `n` requests, counted.
async fn spread(url: &str, n: usize) -> BTreeMap<String, usize> {
    let c = http1_client();
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let got = get(&c, url, &[]).await;
        let key = if got.status == 200 {
            got.body.clone()
        } else {
            got.status.as_u16().to_string()
        };
        *out.entry(key).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flagger_weight_edit_moves_traffic_within_a_second_and_the_status_follows() {
    let k = cluster().await;
    let stable = Pods::start("stable", 2, 2).await;
    let canary = Pods::start("canary", 10, 1).await;
    service(&k.api, "shop", "reviews-stable");
    service(&k.api, "shop", "reviews-canary");
    slice(
        &k.api,
        "shop",
        "reviews-stable",
        stable.port,
        &ready(&stable),
    );
    slice(
        &k.api,
        "shop",
        "reviews-canary",
        canary.port,
        &ready(&canary),
    );
    reviews(
        &k.api,
        &[
            ("shop", "reviews-stable", 100),
            ("shop", "reviews-canary", 0),
        ],
    );
    // Another controller's entry, which cutover must keep.
    let mut r = k.api.get(HTTP_ROUTE, "shop", "reviews").unwrap();
    r["status"] = json!({"parents": [{"controllerName": "example.com/mesh",
        "parentRef": {"name": "mesh", "kind": "Service", "group": ""},
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                        "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}]});
    k.api.apply(HTTP_ROUTE, r);
    let url = k.proxy.url("/");
    eventually(
        "route accepted at generation 1",
        Duration::from_secs(5),
        || accepted_at(&k.api, "reviews", 1),
    )
    .await;
    let before = spread(&url, 40).await;
    assert_eq!(before.get("stable"), Some(&40), "{before:?}");
    assert_eq!(
        stable
            .servers
            .iter()
            .filter(|(_, u, _)| u.count() > 0)
            .count(),
        2,
        "both stable pods get requests"
    );

    // Flagger's step: the same route, new weights.
    reviews(
        &k.api,
        &[
            ("shop", "reviews-stable", 50),
            ("shop", "reviews-canary", 50),
        ],
    );
    let edited = Instant::now();
    let c = http1_client();
    loop {
        let got = get(&c, &url, &[]).await;
        if got.body == "canary" {
            break;
        }
        assert!(
            edited.elapsed() < Duration::from_secs(1),
            "traffic did not move within 1 s"
        );
    }
    let moved = edited.elapsed();
    let after = spread(&url, 200).await;
    let share = *after.get("canary").unwrap_or(&0) as f64 / 200.0;
    assert!((0.35..=0.65).contains(&share), "50/50 split: {after:?}");
    eventually("status at generation 2", Duration::from_secs(1), || {
        accepted_at(&k.api, "reviews", 2)
    })
    .await;

    let patches = k.api.patches();
    let ours: Vec<_> = patches.iter().filter(|p| p.kind == "HTTPRoute").collect();
    assert!(!ours.is_empty());
    for p in &ours {
        assert_eq!(
            (p.content_type.as_str(), p.field_manager.as_str()),
            ("application/apply-patch+yaml", "cutover"),
            "server-side apply as cutover"
        );
        assert_eq!(
            (p.name.as_str(), &p.body["kind"]),
            ("reviews", &json!("HTTPRoute")),
            "an apply document names its object"
        );
    }
    let status = &k.api.get(HTTP_ROUTE, "shop", "reviews").unwrap()["status"];
    assert!(
        status["parents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["controllerName"] == "example.com/mesh"),
        "the other controller's entry stays: {status}"
    );
    let gw = k.api.get(GATEWAY, "shop", "web").unwrap();
    assert_eq!(gw["status"]["listeners"][0]["attachedRoutes"], 1, "{gw}");
    let class = k.api.get(GATEWAY_CLASS, "", "cutover").unwrap();
    assert_eq!(class["status"]["conditions"][0]["status"], "True");

    // No patch storm: nothing changes, nothing is written.
    let settled = k.api.patches().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        k.api.patches().len(),
        settled,
        "unchanged statuses are not re-written"
    );
    eprintln!("weight edit reached traffic in {moved:?}");

    // The route moves to another controller's Gateway: it leaves the table,
    // and cutover's status entry goes while the other controller's stays.
    let mut r = k.api.get(HTTP_ROUTE, "shop", "reviews").unwrap();
    r["spec"]["parentRefs"] = json!([{"name": "elsewhere"}]);
    k.api.apply(HTTP_ROUTE, r);
    eventually("cutover's entry removed", Duration::from_secs(1), || {
        route_conditions(&k.api, "reviews").is_empty()
    })
    .await;
    let status = &k.api.get(HTTP_ROUTE, "shop", "reviews").unwrap()["status"];
    assert_eq!(
        status["parents"].as_array().map(Vec::len),
        Some(1),
        "{status}"
    );
    assert_eq!(status["parents"][0]["controllerName"], "example.com/mesh");
    assert_eq!(get(&c, &url, &[]).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_slice_scale_up_down_and_terminating_pods_lose_no_request() {
    let k = cluster().await;
    let mut pods = Pods::start("stable", 20, 1).await;
    route_to(&k.api, &pods).await;
    let load = Load::start(k.proxy.url("/"), 4);

    // Scale up: two more pods become ready and get requests.
    let first_state = endpoint_state(&k.proxy, pods.servers[0].0);
    pods.add(21).await;
    pods.add(22).await;
    slice(&k.api, "shop", "reviews", pods.port, &ready(&pods));
    eventually("new pods serve", Duration::from_secs(1), || {
        pods.servers.iter().all(|(_, u, _)| u.count() > 0)
    })
    .await;

    assert!(
        Arc::ptr_eq(&first_state, &endpoint_state(&k.proxy, pods.servers[0].0)),
        "the first pod's endpoint state (outlier, in-flight) carried over by address"
    );

    // Scale down: the first pod is terminating (no new requests), then
    // gone from the slice, then its server stops.
    let first = pods.servers[0].0;
    let mut states = ready(&pods);
    states[0] = (first, false, true);
    slice(&k.api, "shop", "reviews", pods.port, &states);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at_terminating = pods.servers[0].1.count();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        pods.servers[0].1.count(),
        at_terminating,
        "a terminating pod gets no new requests"
    );
    slice(&k.api, "shop", "reviews", pods.port, &states[1..]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, _, gone) = pods.servers.remove(0);
    gone.abort();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (sent, failed) = load.finish().await;
    assert!(sent > 100, "the load ran: {sent}");
    assert_eq!(failed, 0, "{failed} of {sent} requests failed");
    assert!(pods.count() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_route_is_refused_with_its_reason_while_traffic_stays() {
    let k = cluster().await;
    let pods = Pods::start("stable", 30, 1).await;
    route_to(&k.api, &pods).await;
    let load = Load::start(k.proxy.url("/"), 2);

    // An edit the compiler refuses (an invalid regular expression): the
    // route says why, and the last accepted spec keeps serving.
    let mut r = k.api.get(HTTP_ROUTE, "shop", "reviews").unwrap();
    r["spec"]["rules"][0]["matches"] =
        json!([{"path": {"type": "RegularExpression", "value": "/(unclosed"}}]);
    k.api.apply(HTTP_ROUTE, r);
    eventually("refused at generation 2", Duration::from_secs(2), || {
        route_conditions(&k.api, "reviews")
            .first()
            .is_some_and(|c| c.1 == "False" && c.2 == "UnsupportedValue" && c.3 == 2)
    })
    .await;
    // A second route with a field cutover does not support.
    k.api.apply(HTTP_ROUTE, json!({
        "metadata": {"name": "mirror", "namespace": "shop"},
        "spec": {"parentRefs": [{"name": "web"}], "hostnames": ["mirror.example.com"],
                 "rules": [{"backendRefs": [{"name": "reviews", "port": 80}],
                            "filters": [{"type": "ExtensionRef", "extensionRef": {"group": "example.com", "kind": "Shadow", "name": "reviews"}}]}]}
    }));
    eventually("extension filter refused", Duration::from_secs(2), || {
        route_conditions(&k.api, "mirror")
            .first()
            .is_some_and(|c| c.1 == "False" && c.2 == "UnsupportedValue")
    })
    .await;
    let message = k.api.get(HTTP_ROUTE, "shop", "reviews").unwrap()["status"]["parents"][0]
        ["conditions"][0]["message"]
        .clone();
    assert!(
        message.as_str().unwrap().contains("unclosed")
            || message.as_str().unwrap().contains("regular"),
        "{message}"
    );
    let (sent, failed) = load.finish().await;
    assert!(sent > 20);
    assert_eq!(
        failed, 0,
        "the good table kept serving: {failed} of {sent} failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_namespace_backend_needs_a_reference_grant() {
    let k = cluster().await;
    let pods = Pods::start("books", 40, 1).await;
    service(&k.api, "books", "catalog");
    slice(&k.api, "books", "catalog", pods.port, &ready(&pods));
    reviews(&k.api, &[("books", "catalog", 1)]);
    eventually("RefNotPermitted", Duration::from_secs(5), || {
        route_conditions(&k.api, "reviews")
            .get(1)
            .is_some_and(|c| c.1 == "False" && c.2 == "RefNotPermitted")
    })
    .await;
    let got = spread(&k.proxy.url("/"), 10).await;
    assert_eq!(got.get("500"), Some(&10), "{got:?}");
    k.api.apply(REFERENCE_GRANT, json!({
        "metadata": {"name": "shop-routes", "namespace": "books"},
        "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "shop"}],
                 "to": [{"group": "", "kind": "Service"}]}
    }));
    eventually("resolved with the grant", Duration::from_secs(1), || {
        accepted_at(&k.api, "reviews", 1)
    })
    .await;
    let got = spread(&k.proxy.url("/"), 10).await;
    assert_eq!(got.get("books"), Some(&10), "{got:?}");
    // A deleted route leaves the table.
    k.api.delete(HTTP_ROUTE, "shop", "reviews");
    let c = http1_client();
    let url = k.proxy.url("/");
    let start = Instant::now();
    while get(&c, &url, &[]).await.status != 404 {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "the deleted route still serves"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_watches_gone_versions_and_an_api_server_restart_resync_without_losing_traffic() {
    let k = cluster().await;
    let mut pods = Pods::start("stable", 50, 1).await;
    route_to(&k.api, &pods).await;
    let load = Load::start(k.proxy.url("/"), 2);

    // A dropped watch resumes from its resourceVersion: a change made
    // while it was down still arrives.
    k.api.drop_watches();
    pods.add(51).await;
    slice(&k.api, "shop", "reviews", pods.port, &ready(&pods));
    eventually(
        "pod added after a dropped watch",
        Duration::from_secs(3),
        || pods.servers[1].1.count() > 0,
    )
    .await;

    // 410 Gone: the watchers list again and see what changed meanwhile.
    let (lists, _) = k.api.requests();
    k.api.compact_and_drop_watches();
    pods.add(52).await;
    slice(&k.api, "shop", "reviews", pods.port, &ready(&pods));
    eventually("pod added after 410 Gone", Duration::from_secs(5), || {
        pods.servers[2].1.count() > 0
    })
    .await;
    assert!(k.api.requests().0 > lists, "410 forced a re-list");

    // The API server goes away for a moment: traffic goes on from the
    // last table, and changes flow again once it is back.
    k.api.restart(Duration::from_millis(300)).await;
    pods.add(53).await;
    slice(&k.api, "shop", "reviews", pods.port, &ready(&pods));
    eventually("pod added after a restart", Duration::from_secs(10), || {
        pods.servers[3].1.count() > 0
    })
    .await;
    let (sent, failed) = load.finish().await;
    assert_eq!(failed, 0, "{failed} of {sent} requests failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_replicas_one_writes_status() {
    let api = ApiServer::start().await;
    let lease = |who: &str| kubernetes::lease::LeaseOptions {
        namespace: "cutover".into(),
        name: "cutover-status".into(),
        identity: who.into(),
        duration: Duration::from_secs(2),
    };
    let (a, a_task) = cutover(&api, Some(lease("a"))).await;
    let (b, b_task) = cutover(&api, Some(lease("b"))).await;
    api.apply(
        GATEWAY_CLASS,
        json!({"metadata": {"name": "cutover"}, "spec": {"controllerName": CONTROLLER}}),
    );
    api.apply(NAMESPACE, json!({"metadata": {"name": "shop"}}));
    // Each replica's Gateway listener is its own port: one Gateway, two.
    let mut gw = gateway_object(a.addr.port());
    gw["spec"]["listeners"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "b", "port": b.addr.port(), "protocol": "HTTP"}));
    api.apply(GATEWAY, gw);
    let pods = Pods::start("stable", 60, 1).await;
    route_to(&api, &pods).await;
    // Each replica follows its own watches (the status says what the
    // writer's table holds): both come to serve the pods.
    let c = http1_client();
    for p in [&a, &b] {
        let start = Instant::now();
        while get(&c, &p.url("/"), &[]).await.body != "stable" {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "{} does not serve",
                p.addr
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let holder =
        api.get(LEASE, "cutover", "cutover-status").unwrap()["spec"]["holderIdentity"].clone();
    assert!(holder == "a" || holder == "b", "{holder}");
    // Edits: every status write comes from one replica; count the writes
    // per generation to see that the other did not write too.
    for w in [2, 3] {
        reviews(&api, &[("shop", "reviews", w)]);
        let g = generation(&api, "reviews");
        eventually("status follows", Duration::from_secs(2), || {
            accepted_at(&api, "reviews", g)
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A second writer would repeat a status: every write must differ from
    // the others, and each edit's generation is written once. (Generation
    // 1 may be written twice by the one writer on a loaded machine: its
    // HTTPRoute can arrive before its Service, BackendNotFound, then not.)
    let writes: Vec<Value> = api
        .patches()
        .into_iter()
        .filter(|p| p.kind == "HTTPRoute")
        .map(|p| p.body)
        .collect();
    let observed =
        |w: &Value| w["status"]["parents"][0]["conditions"][0]["observedGeneration"].as_i64();
    for (i, w) in writes.iter().enumerate() {
        assert!(
            !writes[..i].contains(w),
            "a status written twice (two writers?): {writes:#?}"
        );
    }
    for g in [2, 3] {
        let at_g = writes.iter().filter(|w| observed(w) == Some(g)).count();
        assert_eq!(at_g, 1, "generation {g} written once: {writes:#?}");
    }

    // The holder goes away: the other takes over once the lease expires.
    let (gone, stays) = if holder == "a" {
        (a_task, b_task)
    } else {
        (b_task, a_task)
    };
    gone.abort();
    let other = if holder == "a" { "b" } else { "a" };
    eventually("lease taken over", Duration::from_secs(6), || {
        api.get(LEASE, "cutover", "cutover-status").unwrap()["spec"]["holderIdentity"] == other
    })
    .await;
    reviews(&api, &[("shop", "reviews", 9)]);
    let g = generation(&api, "reviews");
    eventually("the new holder writes", Duration::from_secs(3), || {
        accepted_at(&api, "reviews", g)
    })
    .await;
    stays.abort();
}
