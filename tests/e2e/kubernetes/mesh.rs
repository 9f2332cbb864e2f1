//! The mesh profile (GAMMA): an HTTPRoute whose parent is a Service is
//! served on the sidecar's outbound listener (`mesh_listener`) for requests
//! addressed to that Service, by any of its names or its ClusterIP, with or
//! without the port; other hosts are not affected.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_with_a_service_parent_serves_requests_addressed_to_that_service() {
    let api = ApiServer::start().await;
    let p = proxy("listeners: [{name: public, address: \"127.0.0.1:0\"}]\n").await;
    let options = ControllerOptions {
        debounce: Duration::from_millis(20),
        mesh_listener: Some("public".into()),
        ..ControllerOptions::default()
    };
    let controller = tokio::spawn(kubernetes::run(Arc::clone(&p.app), api.client(), options));
    api.apply(NAMESPACE, json!({"metadata": {"name": "shop"}}));
    // Service reviews (the parent, its ClusterIP 10.96.0.12), and the
    // Services of its two versions, whose pods answer "v1" and "v2".
    api.apply(
        SERVICE,
        json!({
            "metadata": {"name": "reviews", "namespace": "shop"},
            "spec": {"clusterIP": "10.96.0.12", "ports": [{"name": "http", "port": 80, "targetPort": "web"}]}
        }),
    );
    let v1 = Pods::start("v1", 80, 1).await;
    let v2 = Pods::start("v2", 81, 1).await;
    for (name, pods) in [("reviews-v1", &v1), ("reviews-v2", &v2)] {
        service(&api, "shop", name);
        slice(&api, "shop", name, pods.port, &ready(pods));
    }
    api.apply(
        HTTP_ROUTE,
        json!({
            "metadata": {"name": "reviews", "namespace": "shop"},
            "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "reviews", "port": 80}],
                     "rules": [{"backendRefs": [{"name": "reviews-v2", "port": 80}]}]}
        }),
    );
    eventually("route accepted", Duration::from_secs(5), || {
        accepted_at(&api, "reviews", 1)
    })
    .await;
    let route = api.get(HTTP_ROUTE, "shop", "reviews").unwrap();
    assert_eq!(
        route["status"]["parents"][0]["parentRef"],
        json!({"group": "", "kind": "Service", "namespace": "shop", "name": "reviews", "port": 80}),
        "the status entry names the Service parent"
    );

    let c = http1_client();
    let url = p.url("/");
    for host in [
        "reviews",
        "reviews:80",
        "reviews.shop",
        "reviews.shop.svc",
        "reviews.shop.svc.cluster.local",
        "reviews.shop.svc.cluster.local:80",
        "10.96.0.12",
        "10.96.0.12:80",
    ] {
        let got = get(&c, &url, &[("host", host)]).await;
        assert_eq!(
            (got.status.as_u16(), got.body.as_str()),
            (200, "v2"),
            "Host: {host}"
        );
    }
    for host in ["ratings", "reviews.books", "10.96.0.13"] {
        let got = get(&c, &url, &[("host", host)]).await;
        assert_eq!(got.status, 404, "Host: {host} is another Service");
    }
    assert_eq!(v1.count(), 0);
    controller.abort();
}
