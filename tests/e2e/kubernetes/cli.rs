//! `cutover run --kubernetes` as a user starts it: the binary reads
//! `$KUBECONFIG` (here pointing at the double over plain HTTP), serves the
//! HTTPRoutes of its GatewayClass, and writes their status.

use std::process::{Command, Stdio};

use super::*;

/// Stops the child process when the test ends, however it ends.
struct Child(std::process::Child);

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
    let kubeconfig = dir.write(
        "config",
        &format!(
            "apiVersion: v1\nkind: Config\n\
             clusters: [{{name: double, cluster: {{server: \"http://{}\"}}}}]\n\
             users: [{{name: test, user: {{}}}}]\n\
             contexts: [{{name: test, context: {{cluster: double, user: test}}}}]\n\
             current-context: test\n",
            api.addr
        ),
    );
    // A free port for the listener (the Gateway names it).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.write(
        "cutover.yaml",
        &format!("listeners: [{{name: http, address: \"127.0.0.1:{port}\"}}]\n"),
    );
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

    let _child = Child(
        Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args(["run", "--no-admin", "--kubernetes", "-c"])
            .arg(&config)
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("cutover runs"),
    );
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
}
