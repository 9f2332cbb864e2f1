//! `k8s/controller/`: the RBAC grants exactly what controller mode uses,
//! the status Lease named on the command line is the one the Role covers,
//! and the example Gateway and HTTPRoute are accepted by the controller's
//! own index against the GatewayClass and the ConfigMap's listeners.

use std::sync::Arc;

use cutover::kubernetes::index::{self, FileListener, ObjectKey, Objects, Settings};
use k8s_openapi::api::rbac::v1::PolicyRule;

use super::*;

fn rules(m: &Manifests) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    let mut add = |rules: &Option<Vec<PolicyRule>>| {
        for r in rules.iter().flatten() {
            for g in r.api_groups.iter().flatten() {
                for res in r.resources.iter().flatten() {
                    for v in &r.verbs {
                        out.insert((g.clone(), res.clone(), v.clone()));
                    }
                }
            }
        }
    };
    for o in &m.objects {
        match &o.kind {
            Kind::ClusterRole(r) => add(&r.rules),
            Kind::Role(r) => add(&r.rules),
            _ => {}
        }
    }
    out
}

fn controller_args(m: &Manifests) -> (String, Vec<String>, String) {
    let (o, d) = m
        .deployments()
        .find(|(o, _)| o.file.to_string_lossy().contains("k8s/controller/"))
        .expect("the controller Deployment");
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let c = &pod.containers[0];
    let account = pod
        .service_account_name
        .clone()
        .expect("serviceAccountName");
    (
        o.namespace.clone(),
        c.args.clone().unwrap_or_default(),
        account,
    )
}

#[test]
fn controller_rbac_grants_exactly_what_the_controller_uses() {
    let m = load();
    let granted = rules(&m);
    let mut used = BTreeSet::new();
    for (group, resource, verbs) in cutover::kubernetes::PERMISSIONS {
        for v in *verbs {
            used.insert((group.to_string(), resource.to_string(), v.to_string()));
        }
    }
    assert_eq!(
        granted, used,
        "k8s/controller/rbac.yaml vs kubernetes::PERMISSIONS"
    );

    // The Lease is in the Role's namespace, and both bindings name the
    // Deployment's account.
    let (namespace, args, account) = controller_args(&m);
    let lease = args
        .iter()
        .position(|a| a == "--status-lease")
        .map(|i| args[i + 1].clone())
        .expect("--status-lease");
    assert!(lease.starts_with(&format!("{namespace}/")), "{lease}");
    assert!(args.iter().any(|a| a == "--kubernetes"));
    let mut bound = 0;
    for o in &m.objects {
        let subjects = match &o.kind {
            Kind::ClusterRoleBinding(b) => &b.subjects,
            Kind::RoleBinding(b) => {
                assert_eq!(
                    o.namespace, namespace,
                    "the Lease Role is in the controller's namespace"
                );
                &b.subjects
            }
            _ => continue,
        };
        assert!(
            subjects.iter().flatten().any(|s| s.kind == "ServiceAccount"
                && s.name == account
                && s.namespace.as_deref() == Some(namespace.as_str())),
            "{}: binds {account}",
            o.name
        );
        bound += 1;
    }
    assert_eq!(bound, 2, "a ClusterRoleBinding and a RoleBinding");
}

#[test]
fn the_example_gateway_and_route_are_accepted_by_the_controller() {
    let m = load();
    let mut objects = Objects::default();
    for o in &m.objects {
        match &o.kind {
            Kind::GatewayApi("GatewayClass", v) => objects
                .classes
                .push(Arc::new(serde_json::from_value(v.clone()).unwrap())),
            Kind::GatewayApi("Gateway", v) => objects
                .gateways
                .push(Arc::new(serde_json::from_value(v.clone()).unwrap())),
            Kind::GatewayApi("HTTPRoute", v) => objects
                .routes
                .push(Arc::new(serde_json::from_value(v.clone()).unwrap())),
            Kind::Service(s) => objects.services.push(Arc::new((**s).clone())),
            _ => {}
        }
    }
    let config = m
        .config_map("cutover-system", "cutover-controller")
        .expect("the controller's ConfigMap");
    let text = &config.data.as_ref().unwrap()["cutover.yaml"];
    let cfg = cutover::config::parse_yaml(text).unwrap_or_else(|e| panic!("{e}"));
    let listeners = cfg
        .listeners
        .iter()
        .map(|l| FileListener {
            name: l.name.clone(),
            port: l.address.rsplit_once(':').unwrap().1.parse().unwrap(),
            tls: l.tls.is_some(),
        })
        .collect();
    let (_, args, _) = controller_args(&m);
    let controller_name = args
        .iter()
        .position(|a| a == "--controller-name")
        .map_or(cutover::kubernetes::CONTROLLER_NAME.to_string(), |i| {
            args[i + 1].clone()
        });
    let settings = Settings {
        controller_name,
        listeners,
        ..Settings::default()
    };
    let out = index::build(&objects, &settings);
    assert!(
        !out.statuses.classes.is_empty(),
        "gatewayclass.yaml names the controller"
    );
    let key = ObjectKey {
        namespace: "shop".into(),
        name: "storefront".into(),
    };
    let status = &out.statuses.routes[&key].status;
    for c in &status[0].1 {
        assert!(c.status, "{c:?}");
    }
    assert_eq!(out.generated.listener_routes["http"], ["shop.storefront"]);
    let gateway = out.statuses.gateways.values().next().unwrap();
    assert!(
        gateway.status.conditions.iter().all(|c| c.status),
        "{gateway:?}"
    );
    // The ConfigMap's group policy applies to a group the route makes.
    for name in cfg.groups.keys() {
        assert!(
            out.generated.groups.contains_key(name),
            "group {name} is not made by the example"
        );
    }
    // And the file config with the generated part compiles.
    let combined = out.generated.apply(&cfg).unwrap();
    let registry = cutover::route::Inherited::default();
    cutover::compile::compile(&combined, &registry, 1).unwrap_or_else(|e| panic!("{e}"));
}
