//! Controller mode at scale, against the double: the first table after
//! start, one EndpointSlice change reaching the table, request latency
//! while 100 endpoint changes a second stream in, and RSS. The test suite
//! runs it at a smoke size (asserting the time bounds); the issue's size is a
//! benchmark for a quiet machine:
//!
//! ```sh
//! CUTOVER_KUBE_SCALE=2000,5000,50000 cargo test --release --test e2e \
//!     kubernetes::scale -- --nocapture
//! ```
//!
//! (HTTPRoutes, Services, endpoints). RSS is the test process's: the proxy,
//! its controller and the double (which holds every object as JSON too), so
//! it is an upper bound for cutover's.

use super::*;

/// (routes, services, endpoints) from `CUTOVER_KUBE_SCALE`, else a smoke size.
fn sizes() -> (usize, usize, usize) {
    let given = std::env::var("CUTOVER_KUBE_SCALE").ok();
    let parsed = given.as_deref().and_then(|v| {
        let n: Vec<usize> = v.split(',').filter_map(|x| x.trim().parse().ok()).collect();
        (n.len() == 3).then(|| (n[0], n[1], n[2]))
    });
    parsed.unwrap_or((40, 100, 1000))
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// Slice of Service `svc-<i>`: `per` pods, plus `extra`, port 8080, at
/// loopback addresses where nothing listens (no request is sent to them;
/// were one sent, it would stay on this machine).
fn fake_slice(api: &ApiServer, i: usize, per: usize, extra: usize) {
    let endpoints: Vec<Value> = (0..per + extra)
        .map(|e| {
            json!({"addresses": [format!("127.{}.{}.{}", 1 + i / 250, i % 250, e + 1)],
                   "conditions": {"ready": true}})
        })
        .collect();
    api.apply(
        ENDPOINT_SLICE,
        json!({
            "metadata": {"name": format!("svc-{i}-abc"), "namespace": "shop",
                         "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": endpoints,
        }),
    );
}

/// Latency quantile (0..1) of `n` GETs at a fixed rate.
async fn latency(url: &str, n: usize, every: Duration) -> (Duration, Duration) {
    let c = http1_client();
    let mut tick = tokio::time::interval(every);
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        tick.tick().await;
        let start = Instant::now();
        let got = get(&c, url, &[("host", "r0.example.com")]).await;
        assert_eq!(got.status, 200, "{}", got.body);
        took.push(start.elapsed());
    }
    took.sort();
    (took[n / 2], took[n * 99 / 100])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_first_table_change_latency_and_rss() {
    let (routes, services, endpoints) = sizes();
    let per = (endpoints / services).max(1);
    let api = ApiServer::start().await;
    api.apply(
        GATEWAY_CLASS,
        json!({"metadata": {"name": "cutover"}, "spec": {"controllerName": CONTROLLER}}),
    );
    api.apply(NAMESPACE, json!({"metadata": {"name": "shop"}}));
    for i in 0..services {
        service(&api, "shop", &format!("svc-{i}"));
        fake_slice(&api, i, per, 0);
    }
    // Route 0 (the one requested) goes to a real pod; the others to
    // addresses that are never requested.
    let pod = Pods::start("real", 90, 1).await;
    service(&api, "shop", "real");
    slice(&api, "shop", "real", pod.port, &ready(&pod));
    for r in 0..routes {
        let backend = |k: usize| format!("svc-{}", (r * 3 + k) % services);
        let (first, second) = match r {
            0 => ("real".to_string(), 0),
            _ => (backend(0), 10),
        };
        api.apply(
            HTTP_ROUTE,
            json!({
                "metadata": {"name": format!("r{r}"), "namespace": "shop"},
                "spec": {"parentRefs": [{"name": "web"}], "hostnames": [format!("r{r}.example.com")],
                         "rules": [{"backendRefs": [
                             {"name": first, "port": 80, "weight": 90},
                             {"name": backend(1), "port": 80, "weight": second}]}]}
            }),
        );
    }
    let p = proxy("listeners: [{name: public, address: \"127.0.0.1:0\"}]\n").await;
    api.apply(GATEWAY, gateway_object(p.addr.port()));
    let options = ControllerOptions {
        bound_ports: BTreeMap::from([("public".to_string(), p.addr.port())]),
        ..ControllerOptions::default()
    };
    let started = Instant::now();
    let controller = tokio::spawn(kubernetes::run(Arc::clone(&p.app), api.client(), options));
    let rules = |p: &Proxy| p.app.routes.load().rules.len();
    eventually("first table", Duration::from_secs(30), || {
        rules(&p) >= routes
    })
    .await;
    let first = started.elapsed();

    // One slice change: a new endpoint in the table.
    let target = format!("127.1.1.{}:8080", per + 1);
    fake_slice(&api, 1, per, 1);
    let has = |p: &Proxy| {
        let t = p.app.routes.load();
        t.groups
            .iter()
            .any(|g| g.endpoints.iter().any(|e| e.authority.as_str() == target))
    };
    let change = eventually("one slice change", Duration::from_secs(5), || has(&p)).await;

    // Latency at a fixed rate, quiet and under 100 slice changes a second.
    let url = p.url("/");
    let (quiet_p50, quiet_p99) = latency(&url, 500, Duration::from_millis(4)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (api, stop) = (Arc::clone(&api), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                fake_slice(&api, 2 + n % services.saturating_sub(2).max(1), per, n % 2);
                n += 1;
            }
        })
    };
    let (busy_p50, busy_p99) = latency(&url, 500, Duration::from_millis(4)).await;
    stop.store(true, Ordering::Relaxed);
    churn.await.unwrap();
    let rss = rss_mib();
    eprintln!(
        "kubernetes scale: {routes} HTTPRoutes, {services} Services, {} endpoints\n  \
         first table {first:?}, one EndpointSlice change {change:?}\n  \
         latency quiet p50 {quiet_p50:?} p99 {quiet_p99:?}; under 100 changes/s p50 {busy_p50:?} p99 {busy_p99:?}\n  \
         RSS (proxy + controller + double) {rss:.1} MiB",
        services * per
    );
    assert!(first < Duration::from_secs(5), "first table in {first:?}");
    assert!(change < Duration::from_secs(1), "one change in {change:?}");
    controller.abort();
}
