//! Tables of objects in, routes, groups and statuses out (the way Linkerd's
//! policy controller tests its index). Objects are written as the API
//! server sends them (JSON), so the serde shapes are tested too.

use std::sync::Arc;

use serde_json::{json, Value};

use super::*;

const CONTROLLER: &str = "cutover.dev/gateway-controller";

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> Arc<T> {
    Arc::new(serde_json::from_value(v).expect("test object"))
}

fn class(name: &str, controller: &str) -> Arc<GatewayClass> {
    obj(
        json!({"metadata": {"name": name, "generation": 1}, "spec": {"controllerName": controller}}),
    )
}

/// Gateway `ns/web` of class `cutover`: listener `http` on 8080 allowing
/// `allowed`, listener `admin-only` on 9090 with hostname `admin.example.com`.
fn gateway(allowed: Value) -> Arc<Gateway> {
    obj(json!({
        "metadata": {"name": "web", "namespace": "shop", "generation": 3},
        "spec": {"gatewayClassName": "cutover", "listeners": [
            {"name": "http", "port": 8080, "protocol": "HTTP", "allowedRoutes": allowed},
            {"name": "admin-only", "port": 9090, "protocol": "HTTP", "hostname": "admin.example.com"},
        ]}
    }))
}

fn service(ns: &str, name: &str) -> Arc<Service> {
    obj(json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "web"}]}
    }))
}

/// A slice of `svc` whose port `http` is 8081: one ready pod, one not
/// ready, one terminating, one with no conditions (ready).
fn slice(ns: &str, svc: &str, first: u8) -> Arc<EndpointSlice> {
    obj(json!({
        "metadata": {"name": format!("{svc}-{first}"), "namespace": ns,
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8081, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [format!("10.0.0.{first}")], "conditions": {"ready": true}},
            {"addresses": [format!("10.0.0.{}", first + 1)], "conditions": {"ready": false}},
            {"addresses": [format!("10.0.0.{}", first + 2)], "conditions": {"ready": true, "terminating": true}},
            {"addresses": [format!("10.0.0.{}", first + 3)]},
        ]
    }))
}

fn route(ns: &str, name: &str, spec: Value) -> Arc<HttpRoute> {
    obj(json!({"metadata": {"name": name, "namespace": ns, "generation": 7}, "spec": spec}))
}

fn backend_route(ns: &str, backend: Value) -> Arc<HttpRoute> {
    route(
        ns,
        "reviews",
        json!({
            "parentRefs": [{"name": "web", "namespace": "shop"}],
            "rules": [{"backendRefs": [backend]}]
        }),
    )
}

fn objects(routes: Vec<Arc<HttpRoute>>) -> Objects {
    Objects {
        classes: vec![
            class("cutover", CONTROLLER),
            class("other", "example.com/other"),
        ],
        gateways: vec![gateway(json!({"namespaces": {"from": "All"}}))],
        routes,
        grpc_routes: vec![],
        grants: vec![],
        services: vec![service("shop", "reviews"), service("books", "reviews")],
        slices: vec![slice("shop", "reviews", 1), slice("books", "reviews", 20)],
        namespaces: vec![
            obj(json!({"metadata": {"name": "shop", "labels": {"team": "shop"}}})),
            obj(json!({"metadata": {"name": "books", "labels": {"team": "books"}}})),
        ],
        secrets: BTreeMap::new(),
    }
}

fn settings() -> Settings {
    Settings {
        controller_name: CONTROLLER.into(),
        listeners: vec![FileListener {
            name: "public".into(),
            port: 8080,
            tls: false,
        }],
        refused: BTreeMap::new(),
        fallback: BTreeMap::new(),
        certificate_fallback: BTreeMap::new(),
        mesh_listener: None,
        addresses: Vec::new(),
    }
}

fn key(ns: &str, name: &str) -> ObjectKey {
    ObjectKey {
        namespace: ns.into(),
        name: name.into(),
    }
}

/// (type, status, reason) of each condition of the route's first parent.
fn route_conditions(out: &Output, k: &ObjectKey) -> Vec<(&'static str, bool, &'static str)> {
    let s = &out.statuses.routes[k];
    s.status[0]
        .1
        .iter()
        .map(|c| (c.kind, c.status, c.reason))
        .collect()
}

#[test]
fn an_attached_route_gets_ready_pods_and_accepted_statuses() {
    let r = backend_route("shop", json!({"name": "reviews", "port": 80, "weight": 90}));
    let out = build(&objects(vec![r]), &settings());
    let group = &out.generated.groups["shop.reviews.80"];
    assert_eq!(
        group.endpoints,
        ["10.0.0.1:8081", "10.0.0.4:8081"],
        "ready and unset-ready pods on the slice port named like the Service port; not the not-ready or terminating ones"
    );
    let route = &out.generated.routes[0];
    assert_eq!(route.name, "shop.reviews");
    assert_eq!(route.rules[0].backends[0].weight, 90);
    assert_eq!(out.generated.listener_routes["public"], ["shop.reviews"]);
    assert_eq!(
        route_conditions(&out, &key("shop", "reviews")),
        [
            ("Accepted", true, "Accepted"),
            ("ResolvedRefs", true, "ResolvedRefs")
        ]
    );
    assert_eq!(out.statuses.routes[&key("shop", "reviews")].generation, 7);
    let gw = &out.statuses.gateways[&key("shop", "web")];
    assert_eq!(gw.generation, 3);
    assert_eq!(gw.status.listeners[0].attached_routes, 1);
    assert_eq!(
        gw.status.listeners[1].attached_routes, 1,
        "no sectionName: every listener that allows it, admin-only too"
    );
    assert!(
        route.hostnames.is_empty(),
        "listener http has no hostname: every host"
    );
    assert!(out.statuses.classes.contains_key("cutover"));
    assert!(
        !out.statuses.classes.contains_key("other"),
        "another controller's class"
    );
}

#[test]
fn parent_refs_attach_by_section_port_namespace_and_hostname() {
    let same = json!({"namespaces": {"from": "Same"}});
    let selector =
        json!({"namespaces": {"from": "Selector", "selector": {"matchLabels": {"team": "books"}}}});
    let expression = json!({"namespaces": {"from": "Selector", "selector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["shop"]}]}}});
    let kinds = json!({"kinds": [{"kind": "GRPCRoute"}], "namespaces": {"from": "All"}});
    let parent = |extra: Value| {
        let mut p = json!({"name": "web", "namespace": "shop"});
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    };
    // (allowedRoutes of listener http, route namespace, parentRef extras,
    //  route hostnames, expected Accepted reason)
    let table = [
        (
            same.clone(),
            "shop",
            json!({"sectionName": "http"}),
            json!([]),
            "Accepted",
        ),
        (
            same.clone(),
            "books",
            json!({"sectionName": "http"}),
            json!([]),
            "NotAllowedByListeners",
        ),
        (
            same.clone(),
            "shop",
            json!({"sectionName": "nope"}),
            json!([]),
            "NoMatchingParent",
        ),
        (
            same.clone(),
            "shop",
            json!({"port": 8080}),
            json!([]),
            "Accepted",
        ),
        (
            same.clone(),
            "shop",
            json!({"port": 1234}),
            json!([]),
            "NoMatchingParent",
        ),
        (
            selector.clone(),
            "books",
            json!({"sectionName": "http"}),
            json!([]),
            "Accepted",
        ),
        (
            selector,
            "shop",
            json!({"sectionName": "http"}),
            json!([]),
            "NotAllowedByListeners",
        ),
        (
            expression,
            "shop",
            json!({"sectionName": "http"}),
            json!([]),
            "Accepted",
        ),
        (
            kinds,
            "shop",
            json!({"sectionName": "http"}),
            json!([]),
            "NotAllowedByListeners",
        ),
        (
            same.clone(),
            "shop",
            json!({"sectionName": "admin-only"}),
            json!(["shop.example.com"]),
            "NoMatchingListenerHostname",
        ),
        (
            same,
            "shop",
            json!({"sectionName": "admin-only"}),
            json!(["*.example.com"]),
            "Accepted",
        ),
    ];
    for (i, (allowed, ns, extra, hostnames, reason)) in table.into_iter().enumerate() {
        let mut o = objects(vec![route(
            ns,
            "r",
            json!({
                "parentRefs": [parent(extra)],
                "hostnames": hostnames,
                "rules": [{"backendRefs": [{"name": "reviews", "port": 80}]}]
            }),
        )]);
        o.gateways = vec![gateway(allowed)];
        let out = build(&o, &settings());
        let conditions = route_conditions(&out, &key(ns, "r"));
        assert_eq!(conditions[0].2, reason, "case {i}");
        assert_eq!(conditions[0].1, reason == "Accepted", "case {i}");
        assert_eq!(
            out.generated.routes.len(),
            usize::from(reason == "Accepted"),
            "case {i}"
        );
    }
}

#[test]
fn listener_hostnames_narrow_the_route() {
    let mut o = objects(vec![route(
        "shop",
        "r",
        json!({
            "parentRefs": [{"name": "web", "sectionName": "admin-only"}],
            "rules": [{"backendRefs": [{"name": "reviews", "port": 80}]}]
        }),
    )]);
    o.gateways = vec![gateway(json!({}))];
    let mut s = settings();
    s.listeners.push(FileListener {
        name: "admin".into(),
        port: 9090,
        tls: false,
    });
    let out = build(&o, &s);
    assert_eq!(out.generated.routes[0].hostnames, ["admin.example.com"]);
    assert_eq!(out.generated.listener_routes["admin"], ["shop.r"]);
    assert!(!out.generated.listener_routes.contains_key("public"));
    let h = |l: Option<&str>, r: &[&str]| {
        let r: Vec<String> = r.iter().map(|s| s.to_string()).collect();
        hosts::intersect(l, &r)
    };
    let some = |v: &[&str]| Some(Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>()));
    assert_eq!(h(None, &[]), Some(None));
    assert_eq!(
        h(Some("*.example.com"), &["a.example.com", "b.other.com"]),
        some(&["a.example.com"])
    );
    assert_eq!(
        h(Some("a.example.com"), &["*.example.com"]),
        some(&["a.example.com"])
    );
    assert_eq!(
        h(Some("*.example.com"), &["*.a.example.com"]),
        some(&["*.a.example.com"])
    );
    assert_eq!(h(Some("*.example.com"), &["example.com"]), None);
}

#[test]
fn backend_refs_resolve_to_pods_or_are_marked_unresolved_with_a_reason() {
    let grant: Arc<ReferenceGrant> = obj(json!({
        "metadata": {"name": "shop-to-books", "namespace": "books"},
        "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "shop"}],
                 "to": [{"group": "", "kind": "Service", "name": "reviews"}]}
    }));
    // (backendRef, with the grant, expected ResolvedRefs reason, group)
    let table = [
        (
            json!({"name": "reviews", "port": 80}),
            false,
            "ResolvedRefs",
            "shop.reviews.80",
        ),
        (
            json!({"name": "nope", "port": 80}),
            false,
            "BackendNotFound",
            UNRESOLVED_GROUP,
        ),
        (
            json!({"name": "reviews", "port": 81}),
            false,
            "BackendNotFound",
            UNRESOLVED_GROUP,
        ),
        (
            json!({"name": "reviews", "namespace": "books", "port": 80}),
            false,
            "RefNotPermitted",
            UNRESOLVED_GROUP,
        ),
        (
            json!({"name": "reviews", "namespace": "books", "port": 80}),
            true,
            "ResolvedRefs",
            "books.reviews.80",
        ),
        (
            json!({"name": "reviews", "kind": "ServiceImport", "port": 80}),
            false,
            "InvalidKind",
            UNRESOLVED_GROUP,
        ),
    ];
    for (i, (backend, granted, reason, group)) in table.into_iter().enumerate() {
        let mut o = objects(vec![backend_route("shop", backend)]);
        if granted {
            o.grants.push(Arc::clone(&grant));
        }
        let out = build(&o, &settings());
        let conditions = route_conditions(&out, &key("shop", "reviews"));
        assert_eq!(
            conditions[0],
            ("Accepted", true, "Accepted"),
            "case {i}: still accepted"
        );
        assert_eq!(conditions[1].2, reason, "case {i}");
        let b = &out.generated.routes[0].rules[0].backends[0];
        assert_eq!(b.group, group, "case {i}");
        assert_eq!(b.unresolved, group == UNRESOLVED_GROUP, "case {i}");
        assert!(b.fault.is_none(), "case {i}: no placeholder fault");
        assert!(out.generated.groups.contains_key(group), "case {i}");
    }
}

#[test]
fn unsupported_or_refused_routes_are_left_out_with_the_reason() {
    let bad = route(
        "shop",
        "bad",
        json!({
            "parentRefs": [{"name": "web"}],
            "rules": [{"backendRefs": [{"name": "reviews", "port": 80}], "sessionPersistence": {}}]
        }),
    );
    let typo = route(
        "shop",
        "typo",
        json!({"parentRefs": [{"name": "web"}], "rulez": []}),
    );
    let good = backend_route("shop", json!({"name": "reviews", "port": 80}));
    let mut s = settings();
    let out = build(&objects(vec![bad, typo, Arc::clone(&good)]), &s);
    for (name, words) in [("bad", "sessionPersistence"), ("typo", "rulez")] {
        let k = key("shop", name);
        let c = &out.statuses.routes[&k].status[0].1[0];
        assert_eq!(
            (c.kind, c.status, c.reason),
            ("Accepted", false, "UnsupportedValue")
        );
        assert!(c.message.contains(words), "{name}: {}", c.message);
    }
    assert_eq!(out.generated.routes.len(), 1);
    s.refused
        .insert(key("shop", "reviews"), "spec.rules[0]: shadowed".into());
    let out = build(&objects(vec![good]), &s);
    assert!(out.generated.routes.is_empty());
    let c = &out.statuses.routes[&key("shop", "reviews")].status[0].1[0];
    assert_eq!(
        (c.status, c.message.as_str()),
        (false, "spec.rules[0]: shadowed")
    );
}

#[test]
fn other_controllers_objects_get_nothing() {
    let mut o = objects(vec![route(
        "shop",
        "theirs",
        json!({"parentRefs": [{"name": "elsewhere"}], "rules": [{"backendRefs": [{"name": "reviews", "port": 80}]}]}),
    )]);
    o.gateways.push(obj(json!({
        "metadata": {"name": "elsewhere", "namespace": "shop"},
        "spec": {"gatewayClassName": "other", "listeners": []}
    })));
    let out = build(&o, &settings());
    assert!(out.statuses.routes.is_empty());
    assert_eq!(out.statuses.gateways.len(), 1, "only cutover's Gateway");
    assert!(out.generated.routes.is_empty());
}

#[test]
fn listeners_without_a_cutover_listener_or_protocol_are_not_programmed() {
    let mut o = objects(vec![]);
    o.gateways = vec![obj(json!({
        "metadata": {"name": "web", "namespace": "shop", "generation": 1},
        "spec": {"gatewayClassName": "cutover", "listeners": [
            {"name": "http", "port": 8080, "protocol": "HTTP"},
            {"name": "tls", "port": 8080, "protocol": "HTTPS"},
            {"name": "tcp", "port": 7000, "protocol": "TCP"},
        ]}
    }))];
    let out = build(&o, &settings());
    let gw = &out.statuses.gateways[&key("shop", "web")].status;
    let programmed = |i: usize| {
        let c = &gw.listeners[i].conditions;
        (c[0].reason, c[1].status, c[1].reason)
    };
    assert_eq!(programmed(0), ("Accepted", true, "Programmed"));
    assert_eq!(
        programmed(1),
        ("Accepted", false, "Invalid"),
        "HTTPS needs a tls listener"
    );
    assert_eq!(programmed(2), ("UnsupportedProtocol", false, "Invalid"));
    assert_eq!(
        (gw.conditions[1].kind, gw.conditions[1].status),
        ("Programmed", false)
    );
}

/// A self-signed certificate for `name`, as the controller reads a Secret.
fn certificate(name: &str) -> Arc<CertifiedKey> {
    let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("rcgen");
    let cert = c.cert.pem();
    let key = c.signing_key.serialize_pem();
    crate::tls::certified_from_pem(cert.as_bytes(), key.as_bytes(), "test").expect("pem")
}

/// Gateway `shop/tls` with HTTPS listener `https` on 8443 for
/// `shop.example.com`, its certificate from `refs`.
fn https_gateway(refs: Value) -> Arc<Gateway> {
    obj(json!({
        "metadata": {"name": "tls", "namespace": "shop", "generation": 2},
        "spec": {"gatewayClassName": "cutover", "listeners": [
            {"name": "https", "port": 8443, "protocol": "HTTPS", "hostname": "shop.example.com",
             "tls": {"mode": "Terminate", "certificateRefs": refs}},
        ]}
    }))
}

fn tls_settings() -> Settings {
    let mut s = settings();
    s.listeners.push(FileListener {
        name: "secure".into(),
        port: 8443,
        tls: true,
    });
    s
}

/// (type, status, reason) of the HTTPS listener's conditions.
fn listener_conditions(out: &Output) -> Vec<(&'static str, bool, &'static str)> {
    out.statuses.gateways[&key("shop", "tls")].status.listeners[0]
        .conditions
        .iter()
        .map(|c| (c.kind, c.status, c.reason))
        .collect()
}

#[test]
fn an_https_listener_serves_its_secret_by_sni_and_keeps_the_last_good_one() {
    let cert = certificate("shop.example.com");
    let mut o = objects(vec![]);
    o.gateways
        .push(https_gateway(json!([{"name": "shop-tls"}])));
    o.secrets
        .insert(key("shop", "shop-tls"), Ok(Arc::clone(&cert)));
    let mut settings = tls_settings();
    settings.addresses = vec!["203.0.113.7".into()];
    let out = build(&o, &settings);
    let served = &out.certificates["secure"];
    assert_eq!(served.len(), 1);
    assert_eq!(served[0].0.as_deref(), Some("shop.example.com"));
    assert!(Arc::ptr_eq(&served[0].1, &cert));
    assert!(
        listener_conditions(&out).iter().all(|c| c.1),
        "{:?}",
        listener_conditions(&out)
    );
    assert_eq!(
        out.statuses.gateways[&key("shop", "tls")].status.addresses,
        ["203.0.113.7"]
    );
    assert_eq!(
        referenced_secrets(&o, CONTROLLER)
            .into_iter()
            .collect::<Vec<_>>(),
        [key("shop", "shop-tls")]
    );

    // The Secret goes bad: the listener says why, the last good one stays.
    o.secrets.insert(
        key("shop", "shop-tls"),
        Err("Secret shop/shop-tls has no tls.key".into()),
    );
    settings.certificate_fallback = out.served_certificates.clone();
    let bad = build(&o, &settings);
    assert!(listener_conditions(&bad).contains(&("ResolvedRefs", false, "InvalidCertificateRef")));
    assert!(
        Arc::ptr_eq(&bad.certificates["secure"][0].1, &cert),
        "the last good certificate stays"
    );
    let gateway = &bad.statuses.gateways[&key("shop", "tls")].status;
    assert!(
        !gateway.conditions[1].status,
        "Programmed=False while a ref is wrong"
    );

    // Missing, with no earlier certificate: nothing supplied.
    o.secrets.clear();
    let missing = build(&o, &tls_settings());
    assert!(listener_conditions(&missing).contains(&(
        "ResolvedRefs",
        false,
        "InvalidCertificateRef"
    )));
    assert!(missing.certificates.is_empty());
}

#[test]
fn a_secret_in_another_namespace_needs_a_reference_grant() {
    let mut o = objects(vec![]);
    o.gateways.push(https_gateway(
        json!([{"name": "wild", "namespace": "certs"}]),
    ));
    o.secrets
        .insert(key("certs", "wild"), Ok(certificate("shop.example.com")));
    let out = build(&o, &tls_settings());
    assert!(listener_conditions(&out).contains(&("ResolvedRefs", false, "RefNotPermitted")));
    assert!(
        referenced_secrets(&o, CONTROLLER).is_empty(),
        "not read without a grant"
    );
    o.grants.push(obj(json!({
        "metadata": {"name": "gateways", "namespace": "certs"},
        "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "shop"}],
                 "to": [{"group": "", "kind": "Secret", "name": "wild"}]}
    })));
    let out = build(&o, &tls_settings());
    assert!(listener_conditions(&out).iter().all(|c| c.1));
    assert_eq!(out.certificates["secure"].len(), 1);
    // A grant for HTTPRoutes (not Gateways) does not count.
    o.grants[0] = obj(json!({
        "metadata": {"name": "routes", "namespace": "certs"},
        "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "shop"}],
                 "to": [{"group": "", "kind": "Secret"}]}
    }));
    let out = build(&o, &tls_settings());
    assert!(listener_conditions(&out).contains(&("ResolvedRefs", false, "RefNotPermitted")));
}

#[test]
fn a_route_with_a_service_parent_is_served_on_the_mesh_listener_for_the_service_names() {
    let mut svc = (*service("shop", "reviews")).clone();
    if let Some(spec) = svc.spec.as_mut() {
        spec.cluster_ip = Some("10.96.0.12".into());
    }
    let mut o = objects(vec![route(
        "shop",
        "reviews-split",
        json!({
            "parentRefs": [{"group": "", "kind": "Service", "name": "reviews", "port": 80},
                           {"group": "", "kind": "Service", "name": "ratings"}],
            "rules": [{"backendRefs": [{"name": "reviews", "port": 80}]}]
        }),
    )]);
    o.services[0] = Arc::new(svc);
    // Without a mesh listener, Service parents belong to another mesh.
    let out = build(&o, &settings());
    assert!(out.generated.routes.is_empty());
    assert!(out.statuses.routes.is_empty());

    let mut settings = settings();
    settings.mesh_listener = Some("outbound".into());
    let out = build(&o, &settings);
    let r = &out.generated.routes[0];
    assert_eq!(r.name, "shop.reviews-split_mesh");
    assert_eq!(
        r.hostnames,
        [
            "10.96.0.12",
            "reviews",
            "reviews.shop",
            "reviews.shop.svc",
            "reviews.shop.svc.cluster.local"
        ]
    );
    assert_eq!(
        out.generated.listener_routes["outbound"],
        ["shop.reviews-split_mesh"]
    );
    let status = &out.statuses.routes[&key("shop", "reviews-split")].status;
    assert_eq!(
        (status[0].0.kind.as_str(), status[0].0.group.as_str()),
        ("Service", "")
    );
    assert!(status[0].1[0].status, "{:?}", status[0].1);
    assert_eq!(
        (status[1].1[0].status, status[1].1[0].reason),
        (false, "NoMatchingParent"),
        "Service ratings does not exist"
    );
}

#[test]
fn passthrough_is_not_served_and_a_listener_without_hostname_covers_every_name() {
    let cert = certificate("any.example.com");
    let mut o = objects(vec![]);
    o.gateways.push(obj(json!({
        "metadata": {"name": "tls", "namespace": "shop", "generation": 1},
        "spec": {"gatewayClassName": "cutover", "listeners": [
            {"name": "any", "port": 8443, "protocol": "HTTPS",
             "tls": {"certificateRefs": [{"name": "any-tls"}]}},
            {"name": "raw", "port": 8443, "protocol": "HTTPS", "hostname": "raw.example.com",
             "tls": {"mode": "Passthrough"}},
        ]}
    })));
    o.secrets
        .insert(key("shop", "any-tls"), Ok(Arc::clone(&cert)));
    let out = build(&o, &tls_settings());
    let served = &out.certificates["secure"];
    assert_eq!(served.len(), 1);
    assert_eq!(
        served[0].0, None,
        "no hostname: every name the file's do not cover"
    );
    let listeners = &out.statuses.gateways[&key("shop", "tls")].status.listeners;
    assert_eq!(
        (
            listeners[1].conditions[0].status,
            listeners[1].conditions[0].reason
        ),
        (false, "UnsupportedValue"),
        "Passthrough"
    );
}

#[test]
fn a_grpc_route_is_served_beside_an_http_route_of_the_same_name() {
    let http = backend_route("shop", json!({"name": "reviews", "port": 80}));
    let grpc: Arc<crate::kubernetes::resources::GrpcRoute> = obj(json!({
        "metadata": {"name": "reviews", "namespace": "shop", "generation": 2},
        "spec": {
            "parentRefs": [{"name": "web", "namespace": "shop"}],
            "hostnames": ["grpc.example.com"],
            "rules": [
                {"matches": [{"method": {"service": "shop.Reviews", "method": "Get"}}],
                 "backendRefs": [{"name": "reviews", "port": 80}]},
                {"backendRefs": [{"name": "reviews", "namespace": "books", "port": 80}]},
            ]
        }
    }));
    let mut o = objects(vec![http]);
    o.grpc_routes.push(grpc);
    // Granted to HTTPRoutes only: the GRPCRoute's cross-namespace ref is not.
    o.grants.push(obj(json!({
        "metadata": {"name": "g", "namespace": "books"},
        "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "shop"}],
                 "to": [{"group": "", "kind": "Service"}]}
    })));
    let out = build(&o, &settings());
    let names: Vec<&str> = out
        .generated
        .routes
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["shop.reviews", "shop.reviews_grpc"]);
    let g = &out.generated.routes[1];
    let grpc_match = g.rules[0].matches[0].grpc.as_ref().expect("a gRPC match");
    assert_eq!(grpc_match.service.as_deref(), Some("shop.Reviews"));
    assert_eq!(g.hostnames, ["grpc.example.com"]);
    assert_eq!(
        out.generated.groups["shop.reviews.80"].protocol,
        crate::config::model::UpstreamProtocol::H2,
        "a Service a GRPCRoute names speaks h2"
    );
    assert!(
        g.rules[1].backends[0].unresolved,
        "RefNotPermitted for GRPCRoutes"
    );
    let s = &out.statuses.grpc_routes[&key("shop", "reviews")];
    let reasons: Vec<_> = s.status[0].1.iter().map(|c| (c.kind, c.reason)).collect();
    assert_eq!(
        reasons,
        [
            ("Accepted", "Accepted"),
            ("ResolvedRefs", "RefNotPermitted")
        ]
    );
    assert_eq!(s.generation, 2);
    assert_eq!(
        route_conditions(&out, &key("shop", "reviews"))[1],
        ("ResolvedRefs", true, "ResolvedRefs"),
        "the HTTPRoute's own status is apart"
    );
    assert_eq!(
        out.generated.listener_routes["public"],
        ["shop.reviews", "shop.reviews_grpc"]
    );
}
