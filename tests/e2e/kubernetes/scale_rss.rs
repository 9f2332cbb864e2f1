//! cutover's own memory in controller mode: the real binary as a child
//! process (`run --kubernetes`, KUBECONFIG pointing at the double on
//! loopback), its VmRSS and VmHWM from /proc after the first table and
//! after a stream of EndpointSlice changes, so the figure excludes the
//! double. At the issue's size (a quiet machine):
//!
//! ```sh
//! CUTOVER_KUBE_SCALE=2000,5000,50000 cargo test --release --test e2e \
//!     kubernetes::scale_rss -- --nocapture
//! ```

use super::cli::{free_port, kubeconfig, run_kubernetes};
use super::scale::{churn, filled, latency, rss_mib, samples};
use super::*;

/// How long the churn runs (at least the 2 s of latency measured under
/// it), from `CUTOVER_KUBE_CHURN_SECS` (default 3 s).
fn churn_for() -> Duration {
    let secs = std::env::var("CUTOVER_KUBE_CHURN_SECS").ok();
    Duration::from_secs(secs.and_then(|s| s.parse().ok()).unwrap_or(3))
}

/// Whether `r0.example.com` on `port` answers from the real pod.
async fn serves(port: u16) -> bool {
    let c = http1_client();
    let req = http::Request::get(format!("http://127.0.0.1:{port}/"))
        .header("host", "r0.example.com")
        .body(Default::default())
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_millis(500), c.request(req)).await;
    matches!(answer, Ok(Ok(r)) if r.status() == 200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_rss_of_the_cutover_binary() {
    let (api, _pod, (routes, services, per)) = filled(91).await;
    let dir = TempDir::new("kube-rss");
    let kubeconfig = kubeconfig(&dir, &api);
    let port = free_port();
    api.apply(GATEWAY, gateway_object(port));
    let config = dir.write(
        "cutover.yaml",
        &format!("listeners: [{{name: http, address: \"127.0.0.1:{port}\"}}]\n"),
    );
    let started = Instant::now();
    let child = run_kubernetes(&config, &kubeconfig, &[]);
    let pid = child.0.id().to_string();
    while !serves(port).await {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no first table within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = started.elapsed();
    // Let the status writes and their echo settle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_first, hwm_first) = rss_mib(&pid);
    // Latency at 250 req/s, quiet and under the churn: here the proxy has
    // its own process, so the double's work does not count.
    let url = format!("http://127.0.0.1:{port}/");
    let (_, quiet_p99) = latency(&url, samples(), Duration::from_millis(4)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let churning = churn(&api, (services, per), &stop);
    let (_, busy_p99) = latency(&url, samples(), Duration::from_millis(4)).await;
    tokio::time::sleep(churn_for().saturating_sub(Duration::from_secs(2))).await;
    stop.store(true, Ordering::Relaxed);
    let rate = churning.await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(serves(port).await, "cutover stopped serving under churn");
    let (rss, hwm) = rss_mib(&pid);
    eprintln!(
        "kubernetes scale, the cutover binary: {routes} HTTPRoutes, {services} Services, {} endpoints\n  \
         first table served after {first:?}: VmRSS {rss_first:.1} MiB, VmHWM {hwm_first:.1} MiB\n  \
         after {:?} of {rate:.0} EndpointSlice changes/s: VmRSS {rss:.1} MiB, VmHWM {hwm:.1} MiB (the issue asks < 150)\n  \
         p99 at 250 req/s: quiet {quiet_p99:?}, under churn {busy_p99:?}: p99 RATIO {:.2} (the issue asks <= 1.05)",
        services * per,
        churn_for().max(Duration::from_secs(2)),
        busy_p99.as_secs_f64() / quiet_p99.as_secs_f64().max(1e-9),
    );
    assert!(rss_first > 0.0, "no /proc/{pid}/status");
    assert!(hwm < 150.0, "cutover's peak RSS {hwm:.1} MiB");
}
