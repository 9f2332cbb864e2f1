//! Structure and references: kinds, kustomizations, names, selectors,
//! ports; every container locked down.

use super::*;

#[test]
fn every_manifest_parses_and_kustomizations_list_them() {
    let m = load();
    let mut kinds = BTreeSet::new();
    for o in &m.objects {
        kinds.insert(match o.kind {
            Kind::Namespace => "Namespace",
            Kind::Deployment(_) => "Deployment",
            Kind::Service(_) => "Service",
            Kind::ConfigMap(_) => "ConfigMap",
            Kind::Secret(_) => "Secret",
            Kind::Pdb(_) => "PodDisruptionBudget",
            Kind::Hpa(_) => "HorizontalPodAutoscaler",
            Kind::NetworkPolicy(_) => "NetworkPolicy",
            Kind::ServiceAccount => "ServiceAccount",
            Kind::ClusterRole(_) => "ClusterRole",
            Kind::ClusterRoleBinding(_) => "ClusterRoleBinding",
            Kind::Role(_) => "Role",
            Kind::RoleBinding(_) => "RoleBinding",
            Kind::GatewayApi(kind, _) => kind,
        });
    }
    for k in [
        "Deployment",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "ClusterRole",
        "GatewayClass",
        "Gateway",
        "HTTPRoute",
    ] {
        assert!(kinds.contains(k), "no {k} under k8s/");
    }
    let ignored = std::fs::read_to_string(repo().join("k8s/.gitignore")).unwrap_or_default();
    for (dir, k) in &m.kustomizations {
        let mut listed: Vec<_> = k.resources.clone();
        listed.sort();
        let mut present: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
            .collect();
        present.sort();
        assert_eq!(listed, present, "{}: resources vs files", dir.display());
        for f in k.secret_generator.iter().flat_map(|g| &g.files) {
            let file = f.split_once('=').map_or(f.as_str(), |(_, p)| p);
            assert!(
                ignored.lines().any(|l| l.trim() == file),
                "{}: secret source {file} is not in k8s/.gitignore",
                dir.display()
            );
        }
        let namespaced = m
            .objects
            .iter()
            .filter(|o| !o.kind.cluster_scoped() || matches!(o.kind, Kind::Namespace));
        for ns in namespaced.filter(|o| o.file.parent() == Some(dir)) {
            assert_eq!(ns.namespace, k.namespace);
        }
        assert!(
            m.objects
                .iter()
                .any(|o| matches!(o.kind, Kind::Namespace) && o.name == k.namespace),
            "{}: namespace {} is not created",
            dir.display(),
            k.namespace
        );
        // The image is the version this repository builds.
        let image = k.images.iter().find(|i| i.name == IMAGE);
        let image =
            image.unwrap_or_else(|| panic!("{}: no images: entry for {IMAGE}", dir.display()));
        assert_eq!(
            image.new_tag,
            env!("CARGO_PKG_VERSION"),
            "{}",
            dir.display()
        );
    }
}

/// Volumes, env and probes of every pod name things that exist.
#[test]
fn pods_reference_what_exists() {
    let m = load();
    for (o, d) in m.deployments() {
        let spec = d.spec.as_ref().unwrap();
        let template = &spec.template;
        let labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        for (k, v) in match_labels(&spec.selector) {
            assert_eq!(
                labels.get(&k),
                Some(&v),
                "{}: selector vs template labels",
                o.name
            );
        }
        let pod = template.spec.as_ref().unwrap();
        for v in pod.volumes.iter().flatten() {
            if let Some(cm) = &v.config_map {
                let found = m.config_map(&o.namespace, &cm.name);
                let found = found.unwrap_or_else(|| panic!("{}: no ConfigMap {}", o.name, cm.name));
                for item in cm.items.iter().flatten() {
                    assert!(found
                        .data
                        .as_ref()
                        .is_some_and(|d| d.contains_key(&item.key)));
                }
            }
            if let Some(s) = &v.secret {
                let name = s.secret_name.as_deref().unwrap_or("");
                let found = m.secret(&o.namespace, name);
                let found = found.unwrap_or_else(|| panic!("{}: no Secret {name}", o.name));
                for item in s.items.iter().flatten() {
                    assert!(
                        found.keys.contains(&item.key),
                        "{}: {name} has no {}",
                        o.name,
                        item.key
                    );
                }
            }
            assert!(
                v.projected.is_none() && v.host_path.is_none(),
                "{}: volume {} of an unchecked kind",
                o.name,
                v.name
            );
        }
        for c in all_containers(template) {
            for mount in c.volume_mounts.iter().flatten() {
                assert!(
                    pod.volumes.iter().flatten().any(|v| v.name == mount.name),
                    "{}/{}: mounts unknown volume {}",
                    o.name,
                    c.name,
                    mount.name
                );
            }
            for from in c.env_from.iter().flatten() {
                if let Some(cm) = &from.config_map_ref {
                    assert!(m.config_map(&o.namespace, &cm.name).is_some());
                }
                if let Some(s) = &from.secret_ref {
                    assert!(m.secret(&o.namespace, &s.name).is_some());
                }
            }
            for env in c.env.iter().flatten() {
                let Some(from) = &env.value_from else {
                    continue;
                };
                if let Some(r) = &from.config_map_key_ref {
                    let cm = m
                        .config_map(&o.namespace, &r.name)
                        .expect("ConfigMap of env");
                    assert!(cm.data.as_ref().is_some_and(|d| d.contains_key(&r.key)));
                }
                if let Some(r) = &from.secret_key_ref {
                    let s = m.secret(&o.namespace, &r.name).expect("Secret of env");
                    assert!(
                        s.keys.contains(&r.key),
                        "{}: {} has no {}",
                        o.name,
                        r.name,
                        r.key
                    );
                }
            }
            // Probes on named ports must name a port of the pod.
            for probe in [&c.readiness_probe, &c.liveness_probe, &c.startup_probe]
                .into_iter()
                .flatten()
            {
                if let Some(get) = &probe.http_get {
                    assert!(
                        pod_port(template, &get.port).is_some(),
                        "{}/{}: probe port",
                        o.name,
                        c.name
                    );
                }
            }
        }
    }
}

/// Services, budgets, autoscalers and policies select pods defined here and
/// their ports.
#[test]
fn selectors_and_ports_resolve() {
    let m = load();
    for o in &m.objects {
        match &o.kind {
            Kind::Service(s) => {
                let spec = s.spec.as_ref().unwrap();
                let selector = spec.selector.clone().unwrap_or_default();
                let pods = m.pods_selected(&o.namespace, &selector);
                assert!(!pods.is_empty(), "Service {} selects no pods", o.name);
                for port in spec.ports.iter().flatten() {
                    let target = port
                        .target_port
                        .clone()
                        .unwrap_or(IntOrString::Int(port.port));
                    for (d, t) in &pods {
                        assert!(
                            pod_port(t, &target).is_some(),
                            "Service {} port {}: {target:?} is not a port of {d}",
                            o.name,
                            port.port
                        );
                    }
                }
            }
            Kind::Pdb(p) => {
                let selector = p.spec.as_ref().and_then(|s| s.selector.as_ref()).unwrap();
                assert!(!m
                    .pods_selected(&o.namespace, &match_labels(selector))
                    .is_empty());
            }
            Kind::Hpa(h) => {
                let spec = h.spec.as_ref().unwrap();
                assert_eq!(spec.scale_target_ref.kind, "Deployment");
                let (_, d) = m
                    .deployments()
                    .find(|(d, _)| {
                        d.namespace == o.namespace && d.name == spec.scale_target_ref.name
                    })
                    .unwrap_or_else(|| panic!("HPA {}: no target", o.name));
                assert!(
                    d.spec.as_ref().unwrap().replicas.is_none(),
                    "HPA {}: the Deployment sets replicas, which fights the autoscaler",
                    o.name
                );
                // Utilization is relative to requests, so every container needs one.
                for c in all_containers(&d.spec.as_ref().unwrap().template) {
                    assert!(c
                        .resources
                        .as_ref()
                        .and_then(|r| r.requests.as_ref())
                        .is_some_and(|r| r.contains_key("cpu")));
                }
                // With one replica, a PodDisruptionBudget blocks every drain.
                assert!(
                    spec.min_replicas.unwrap_or(1) >= 2,
                    "HPA {}: minReplicas < 2",
                    o.name
                );
            }
            Kind::NetworkPolicy(p) => {
                let spec = p.spec.as_ref().unwrap();
                let pods = m.pods_selected(
                    &o.namespace,
                    &spec
                        .pod_selector
                        .as_ref()
                        .map(match_labels)
                        .unwrap_or_default(),
                );
                assert!(!pods.is_empty(), "NetworkPolicy {} selects no pods", o.name);
                for rule in spec.ingress.iter().flatten() {
                    for port in rule.ports.iter().flatten() {
                        let port = port.port.clone().expect("a port");
                        for (d, t) in &pods {
                            assert!(
                                pod_port(t, &port).is_some(),
                                "NetworkPolicy {}: {port:?} not on {d}",
                                o.name
                            );
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Every container in k8s/, cutover's and the apps', runs locked down with
/// resource requests and limits.
#[test]
fn every_container_is_locked_down() {
    let m = load();
    for (o, d) in m.deployments() {
        let template = &d.spec.as_ref().unwrap().template;
        let pod = template.spec.as_ref().unwrap();
        // Only the controller talks to the API server (its account's
        // permissions are checked in `controller.rs`).
        let controller = all_containers(template)
            .iter()
            .any(|c| c.args.iter().flatten().any(|a| a == "--kubernetes"));
        assert_eq!(
            pod.automount_service_account_token,
            Some(controller),
            "{}: API access only for controller mode",
            o.name
        );
        for c in all_containers(template) {
            let at = format!("{}/{}", o.name, c.name);
            let sc = c
                .security_context
                .as_ref()
                .unwrap_or_else(|| panic!("{at}: no securityContext"));
            assert_eq!(sc.run_as_non_root, Some(true), "{at}: runAsNonRoot");
            assert!(sc.run_as_user.is_some_and(|u| u > 0), "{at}: runAsUser");
            assert_eq!(
                sc.read_only_root_filesystem,
                Some(true),
                "{at}: readOnlyRootFilesystem"
            );
            assert_eq!(
                sc.allow_privilege_escalation,
                Some(false),
                "{at}: allowPrivilegeEscalation"
            );
            assert_ne!(sc.privileged, Some(true), "{at}: privileged");
            let drop = sc
                .capabilities
                .as_ref()
                .and_then(|c| c.drop.clone())
                .unwrap_or_default();
            assert!(
                drop.iter().any(|d| d == "ALL"),
                "{at}: capabilities.drop ALL"
            );
            assert!(
                sc.capabilities
                    .as_ref()
                    .and_then(|c| c.add.as_ref())
                    .is_none(),
                "{at}: capabilities.add"
            );
            let r = c
                .resources
                .as_ref()
                .unwrap_or_else(|| panic!("{at}: no resources"));
            for (what, set) in [("requests", &r.requests), ("limits", &r.limits)] {
                let set = set.as_ref().unwrap_or_else(|| panic!("{at}: no {what}"));
                assert!(
                    set.contains_key("cpu") && set.contains_key("memory"),
                    "{at}: {what} cpu and memory"
                );
            }
        }
    }
}
