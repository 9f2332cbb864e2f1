//! `cutover run --kubernetes` as a user starts it: the binary reads
//! `$KUBECONFIG` (here pointing at the double over plain HTTP), serves the
//! HTTPRoutes of its GatewayClass, and writes their status.

use std::process::{Command, Stdio};

use super::*;

/// A kubeconfig in `dir` for the double (plain HTTP, no credentials).
/// A config of one listener, `http`, on a free port (the Gateway names it):
/// the port and the file.
fn one_listener(dir: &TempDir) -> (u16, std::path::PathBuf) {
    let port = free_port();
    let config = dir.write(
        "cutover.yaml",
        &format!("listeners: [{{name: http, address: \"127.0.0.1:{port}\"}}]\n"),
    );
    (port, config)
}

pub(super) fn kubeconfig(dir: &TempDir, api: &ApiServer) -> std::path::PathBuf {
    dir.write(
        "config",
        &format!(
            "apiVersion: v1\nkind: Config\n\
             clusters: [{{name: double, cluster: {{server: \"http://{}\"}}}}]\n\
             users: [{{name: test, user: {{}}}}]\n\
             contexts: [{{name: test, context: {{cluster: double, user: test}}}}]\n\
             current-context: test\n",
            api.addr
        ),
    )
}

/// `cutover run --no-admin --kubernetes` with `flags`, the config file
/// `config` and `$KUBECONFIG` `kubeconfig`.
pub(super) fn run_kubernetes(
    config: &std::path::Path,
    kubeconfig: &std::path::Path,
    flags: &[&str],
) -> Child {
    Child(
        Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args(["run", "--no-admin", "--kubernetes"])
            .args(flags)
            .arg("-c")
            .arg(config)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("cutover runs"),
    )
}

/// Stops the child process when the test ends, however it ends.
pub(super) struct Child(pub(super) std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_run_kubernetes_follows_the_cluster_of_its_kubeconfig() {
    let api = ApiServer::start().await;
    let dir = TempDir::new("kubeconfig");
    let kubeconfig = kubeconfig(&dir, &api);
    // A free port for the listener (the Gateway names it).
    let (port, config) = one_listener(&dir);
    api.apply(
        GATEWAY_CLASS,
        json!({"metadata": {"name": "cutover"}, "spec": {"controllerName": CONTROLLER}}),
    );
    api.apply(NAMESPACE, json!({"metadata": {"name": "shop"}}));
    api.apply(GATEWAY, gateway_object(port));
    let pods = Pods::start("stable", 70, 1).await;
    service(&api, "shop", "reviews");
    slice(&api, "shop", "reviews", pods.port, &ready(&pods));
    reviews(&api, &[("shop", "reviews", 1)]);

    let flags = ["--gateway-address", "192.0.2.10", "--mesh-listener", "http"];
    let _child = run_kubernetes(&config, &kubeconfig, &flags);
    eventually("route accepted", Duration::from_secs(10), || {
        accepted_at(&api, "reviews", 1)
    })
    .await;
    let c = http1_client();
    let url = format!("http://127.0.0.1:{port}/");
    let start = Instant::now();
    loop {
        let req = http::Request::get(&url).body(Default::default()).unwrap();
        if let Ok(r) = c.request(req).await {
            let body = http_body_util::BodyExt::collect(r.into_body()).await;
            if body.is_ok_and(|b| b.to_bytes() == "stable") {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the binary does not serve the pod"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eventually("Gateway status.addresses", Duration::from_secs(2), || {
        api.get(GATEWAY, "shop", "web").is_some_and(|g| {
            g["status"]["addresses"] == json!([{"type": "IPAddress", "value": "192.0.2.10"}])
        })
    })
    .await;
}

#[test]
fn a_mesh_listener_the_config_lacks_or_a_bad_gateway_address_is_refused_at_start() {
    let dir = TempDir::new("kube-flags");
    let config = dir.write(
        "cutover.yaml",
        "listeners: [{name: http, address: \"127.0.0.1:0\"}]\n",
    );
    for (flag, value) in [
        ("--mesh-listener", "outbound"),
        ("--gateway-address", "not an address"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args(["run", "--no-admin", "--kubernetes", flag, value, "-c"])
            .arg(&config)
            .env("KUBECONFIG", dir.0.join("absent"))
            .output()
            .expect("cutover runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
    }
}

/// A free loopback port (bound, then released).
pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_turns_ready_only_after_its_first_table_from_the_api_server() {
    let api = ApiServer::start().await;
    let dir = TempDir::new("kube-ready");
    let kubeconfig = kubeconfig(&dir, &api);
    let (_, config) = one_listener(&dir);
    let admin = free_port();
    // The API server is away while the replica starts.
    let down = {
        let api = Arc::clone(&api);
        tokio::spawn(async move { api.restart(Duration::from_millis(1500)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _child = Child(
        Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args([
                "run",
                "--kubernetes",
                "--admin",
                &format!("127.0.0.1:{admin}"),
                "-c",
            ])
            .arg(&config)
            .env("KUBECONFIG", &kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cutover runs"),
    );
    let ready = || async {
        let c = http1_client();
        let req = http::Request::get(format!("http://127.0.0.1:{admin}/ready"))
            .body(Default::default())
            .unwrap();
        let answer = tokio::time::timeout(Duration::from_millis(200), c.request(req)).await;
        matches!(answer, Ok(Ok(r)) if r.status() == 200)
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!ready().await, "ready before the first table");
    down.await.unwrap();
    let start = Instant::now();
    while !ready().await {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "not ready after the API server came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The controller's threads yield to the request workers: they run at nice
/// 10 (a round under EndpointSlice churn must not delay a request), the
/// workers at the default 0.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_threads_run_at_a_lower_priority_than_the_workers() {
    let api = ApiServer::start().await;
    let dir = TempDir::new("kube-nice");
    let kubeconfig = kubeconfig(&dir, &api);
    let (_, config) = one_listener(&dir);
    let child = run_kubernetes(&config, &kubeconfig, &[]);
    let pid = child.0.id();
    let start = Instant::now();
    loop {
        let threads = nice_by_thread(pid);
        let of = |name: &str| -> Vec<i64> {
            let named = threads.iter().filter(|(n, _)| n == name);
            named.map(|(_, nice)| *nice).collect()
        };
        let (controller, workers) = (of("cutover-kube"), of("tokio-rt-worker"));
        if !controller.is_empty() && !workers.is_empty() {
            assert!(controller.iter().all(|n| *n == 10), "{threads:?}");
            assert!(workers.iter().all(|n| *n == 0), "{threads:?}");
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no controller or worker thread: {threads:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// (name, nice value) of each thread of process `pid`, from `/proc`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn nice_by_thread(pid: u32) -> Vec<(String, i64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| {
            let path = task.ok()?.path();
            let name = std::fs::read_to_string(path.join("comm")).ok()?;
            let stat = std::fs::read_to_string(path.join("stat")).ok()?;
            // After the parenthesised name come field 3 (state) onwards;
            // nice is field 19.
            let fields = &stat[stat.rfind(')')? + 2..];
            let nice = fields.split(' ').nth(16)?.parse().ok()?;
            Some((name.trim().to_string(), nice))
        })
        .collect()
}
