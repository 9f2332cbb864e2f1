//! GRPCRoutes from the API server: watched like HTTPRoutes, attached to the
//! Gateway, served to a gRPC client over h2c with the pods as h2
//! upstreams, and given `status.parents` (Accepted, ResolvedRefs with the
//! reason) at the route's generation.

use super::*;
use crate::gateway::grpc::{call, grpc_client, GrpcEcho};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_route_from_the_api_server_serves_calls_and_gets_its_status() {
    let c = cluster().await;
    let pod = GrpcEcho::start_at("greeter-pod", "127.0.0.90:0".parse().unwrap()).await;
    service(&c.api, "shop", "greeter");
    slice(
        &c.api,
        "shop",
        "greeter",
        pod.addr.port(),
        &[(pod.addr, true, false)],
    );
    c.api.apply(
        GRPC_ROUTE,
        json!({
            "metadata": {"name": "greeter", "namespace": "shop"},
            "spec": {
                "parentRefs": [{"name": "web"}],
                "rules": [
                    {"matches": [{"method": {"service": "helloworld.Greeter"}}],
                     "backendRefs": [{"name": "greeter", "port": 80}]},
                    {"matches": [{"method": {"service": "helloworld.Gone"}}],
                     "backendRefs": [{"name": "no-such-service", "port": 80}]},
                ]
            }
        }),
    );
    eventually("GRPCRoute status written", Duration::from_secs(5), || {
        !conditions_of(&c.api, GRPC_ROUTE, "greeter").is_empty()
    })
    .await;
    let conditions = conditions_of(&c.api, GRPC_ROUTE, "greeter");
    assert_eq!(
        conditions,
        [
            ("Accepted".into(), "True".into(), "Accepted".into(), 1),
            (
                "ResolvedRefs".into(),
                "False".into(),
                "BackendNotFound".into(),
                1
            ),
        ]
    );
    let h2 = grpc_client();
    // The status may be written from a table built before the Service was
    // seen; the pods serve within a second.
    let start = Instant::now();
    let r = loop {
        let r = call(&h2, c.proxy.addr, "helloworld.Greeter/SayHello", &[]).await;
        if r.status.as_deref() == Some("0") || start.elapsed() > Duration::from_secs(2) {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (r.status.as_deref(), r.message.as_str()),
        (Some("0"), "greeter-pod"),
        "{r:?}"
    );
    assert_eq!(r.trailers["x-served-by"], "greeter-pod");
    assert_eq!(pod.calls()[0].path, "/helloworld.Greeter/SayHello");
    let r = call(&h2, c.proxy.addr, "helloworld.Gone/SayHello", &[]).await;
    assert_eq!(
        r.status.as_deref(),
        Some("14"),
        "unresolved: UNAVAILABLE {r:?}"
    );
    let r = call(&h2, c.proxy.addr, "other.Service/Do", &[]).await;
    assert_eq!(
        r.status.as_deref(),
        Some("12"),
        "no match: UNIMPLEMENTED {r:?}"
    );
    let gateway = c.api.get(GATEWAY, "shop", "web").unwrap();
    let kinds = &gateway["status"]["listeners"][0]["supportedKinds"];
    assert!(
        kinds
            .as_array()
            .into_iter()
            .flatten()
            .any(|k| k["kind"] == "GRPCRoute"),
        "{kinds}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_the_grpc_route_kind_still_gets_its_http_routes_served() {
    let api = ApiServer::start().await;
    api.uninstall(GRPC_ROUTE);
    let (proxy, _controller) = cutover(&api, None).await;
    api.apply(
        GATEWAY_CLASS,
        json!({"metadata": {"name": "cutover"}, "spec": {"controllerName": CONTROLLER}}),
    );
    api.apply(NAMESPACE, json!({"metadata": {"name": "shop"}}));
    api.apply(GATEWAY, gateway_object(proxy.addr.port()));
    let pods = Pods::start("stable", 91, 1).await;
    route_to(&api, &pods).await;
    let c = http1_client();
    let start = Instant::now();
    while get(&c, &proxy.url("/"), &[]).await.body != "stable" {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "the HTTPRoute is not served without the GRPCRoute kind"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
