//! The deployment files. Every manifest under `k8s/` is parsed into typed
//! Kubernetes objects (`k8s-openapi`) and cross-checked: names that are
//! referenced exist, ports line up from the Service to the container to the
//! cutover config, probes hit paths the admin API serves, the shutdown
//! timeline fits the grace period, the mounted config passes `cutover
//! check`, containers are locked down, the admin port stays private. The
//! `Dockerfile` is checked against the rules it promises (no Docker engine
//! here, so nothing is built).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, PodTemplateSpec, Probe, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

/// The image name the manifests use; kustomize's `images:` maps it.
const IMAGE: &str = "cutover";
/// The uid the Dockerfile runs as (distroless `nonroot`).
const NONROOT: i64 = 65532;
/// Probe paths the manifests may use on the admin port, by probe kind.
const READY: &str = "/ready";
const LIVE: &str = "/live";
/// Endpoints the configs may name that are not defined under `k8s/` (another
/// team's Services).
const EXTERNAL: &[&str] = &[
    "reviews-stable.bookinfo.svc.cluster.local:9080",
    "reviews-canary.bookinfo.svc.cluster.local:9080",
];
/// Least time between the endpoint leaving and the listeners closing, for
/// kube-proxy and load balancers to notice.
const MIN_PROPAGATION_SECS: i64 = 5;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// === Loading ===

/// One object of a known kind.
enum Kind {
    Namespace,
    Deployment(Box<Deployment>),
    Service(Box<Service>),
    ConfigMap(Box<ConfigMap>),
    Secret(Box<Secret>),
    Pdb(Box<PodDisruptionBudget>),
    Hpa(Box<HorizontalPodAutoscaler>),
    NetworkPolicy(Box<NetworkPolicy>),
    ServiceAccount,
}

struct Object {
    file: PathBuf,
    namespace: String,
    name: String,
    kind: Kind,
}

/// A Secret as the pods see it: from a manifest or a kustomize generator.
#[derive(Debug)]
struct SecretDef {
    namespace: String,
    name: String,
    type_: String,
    keys: BTreeSet<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Kustomization {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    namespace: String,
    resources: Vec<String>,
    #[serde(default)]
    secret_generator: Vec<Generator>,
    #[serde(default)]
    images: Vec<ImageOverride>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Generator {
    name: String,
    #[serde(default, rename = "type")]
    type_: Option<String>,
    #[serde(default)]
    files: Vec<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ImageOverride {
    name: String,
    #[allow(dead_code)]
    new_name: String,
    new_tag: String,
}

struct Manifests {
    objects: Vec<Object>,
    secrets: Vec<SecretDef>,
    kustomizations: Vec<(PathBuf, Kustomization)>,
}

/// Parses a typed object and fails on any field the type does not know
/// (k8s-openapi ignores them; a typo like `readinesProbe` must not pass).
fn typed<T>(file: &Path, doc: &Value) -> T
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let object: T =
        serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let back = serde_json::to_value(&object).unwrap();
    let mut unknown = Vec::new();
    unknown_fields(doc, &back, String::new(), &mut unknown);
    assert!(
        unknown.is_empty(),
        "{}: fields the schema does not have: {unknown:?}",
        file.display()
    );
    object
}

fn unknown_fields(written: &Value, parsed: &Value, path: String, out: &mut Vec<String>) {
    match (written, parsed) {
        (Value::Object(w), Value::Object(p)) => {
            for (k, v) in w {
                match p.get(k) {
                    Some(pv) => unknown_fields(v, pv, format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}")),
                }
            }
        }
        (Value::Array(w), Value::Array(p)) => {
            for (i, (wv, pv)) in w.iter().zip(p).enumerate() {
                unknown_fields(wv, pv, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            yaml_files(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
}

fn load() -> Manifests {
    let mut files = Vec::new();
    yaml_files(&repo().join("k8s"), &mut files);
    assert!(!files.is_empty(), "no manifests under k8s/");
    let mut kustomizations = Vec::new();
    for file in files.iter().filter(|f| f.ends_with("kustomization.yaml")) {
        let text = std::fs::read_to_string(file).unwrap();
        let k: Kustomization =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        kustomizations.push((file.parent().unwrap().to_path_buf(), k));
    }
    let mut objects = Vec::new();
    let mut secrets = Vec::new();
    for file in files.iter().filter(|f| !f.ends_with("kustomization.yaml")) {
        let text = std::fs::read_to_string(file).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let dir_ns = kustomizations
            .iter()
            .find(|(dir, _)| file.parent() == Some(dir.as_path()))
            .map(|(_, k)| k.namespace.clone());
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            let kind_name = doc["kind"].as_str().unwrap_or("").to_string();
            let kind = match (doc["apiVersion"].as_str().unwrap_or(""), &*kind_name) {
                ("v1", "Namespace") => {
                    typed::<Namespace>(file, &doc);
                    Kind::Namespace
                }
                ("apps/v1", "Deployment") => Kind::Deployment(typed(file, &doc)),
                ("v1", "Service") => Kind::Service(typed(file, &doc)),
                ("v1", "ConfigMap") => Kind::ConfigMap(typed(file, &doc)),
                ("v1", "Secret") => Kind::Secret(typed(file, &doc)),
                ("policy/v1", "PodDisruptionBudget") => Kind::Pdb(typed(file, &doc)),
                ("autoscaling/v2", "HorizontalPodAutoscaler") => Kind::Hpa(typed(file, &doc)),
                ("networking.k8s.io/v1", "NetworkPolicy") => Kind::NetworkPolicy(typed(file, &doc)),
                ("v1", "ServiceAccount") => {
                    typed::<ServiceAccount>(file, &doc);
                    Kind::ServiceAccount
                }
                (api, kind) => panic!("{}: unknown kind {api} {kind}", file.display()),
            };
            let name = doc["metadata"]["name"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: a {kind_name} without a name", file.display()))
                .to_string();
            let namespace = match &kind {
                Kind::Namespace => name.clone(),
                _ => doc["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{}: {name} has no namespace", file.display()))
                    .to_string(),
            };
            if let Some(ns) = &dir_ns {
                assert_eq!(
                    &namespace,
                    ns,
                    "{}: {name} is not in the kustomization's namespace",
                    file.display()
                );
            }
            if let Kind::Secret(s) = &kind {
                let mut keys: BTreeSet<String> =
                    s.data.iter().flatten().map(|(k, _)| k.clone()).collect();
                keys.extend(s.string_data.iter().flatten().map(|(k, _)| k.clone()));
                secrets.push(SecretDef {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    type_: s.type_.clone().unwrap_or_else(|| "Opaque".into()),
                    keys,
                });
            }
            objects.push(Object {
                file: file.clone(),
                namespace,
                name,
                kind,
            });
        }
    }
    for (_, k) in &kustomizations {
        for g in &k.secret_generator {
            let keys = g
                .files
                .iter()
                .map(|f| match f.split_once('=') {
                    Some((key, _)) => key.to_string(),
                    None => f.rsplit('/').next().unwrap_or(f).to_string(),
                })
                .collect();
            secrets.push(SecretDef {
                namespace: k.namespace.clone(),
                name: g.name.clone(),
                type_: g.type_.clone().unwrap_or_else(|| "Opaque".into()),
                keys,
            });
        }
    }
    Manifests {
        objects,
        secrets,
        kustomizations,
    }
}

impl Manifests {
    fn deployments(&self) -> impl Iterator<Item = (&Object, &Deployment)> {
        self.objects.iter().filter_map(|o| match &o.kind {
            Kind::Deployment(d) => Some((o, &**d)),
            _ => None,
        })
    }

    fn config_map(&self, namespace: &str, name: &str) -> Option<&ConfigMap> {
        self.objects.iter().find_map(|o| match &o.kind {
            Kind::ConfigMap(c) if o.namespace == namespace && o.name == name => Some(&**c),
            _ => None,
        })
    }

    fn secret(&self, namespace: &str, name: &str) -> Option<&SecretDef> {
        self.secrets
            .iter()
            .find(|s| s.namespace == namespace && s.name == name)
    }

    /// Pod templates (with their namespace) whose labels `selector` selects.
    fn pods_selected(
        &self,
        namespace: &str,
        selector: &BTreeMap<String, String>,
    ) -> Vec<(&str, &PodTemplateSpec)> {
        self.deployments()
            .filter(|(o, _)| o.namespace == namespace)
            .filter_map(|(o, d)| {
                let t = d.spec.as_ref()?.template.clone();
                let labels = t.metadata.as_ref()?.labels.clone().unwrap_or_default();
                selector
                    .iter()
                    .all(|(k, v)| labels.get(k) == Some(v))
                    .then_some((o.name.as_str(), &d.spec.as_ref()?.template))
            })
            .collect()
    }
}

fn match_labels(s: &LabelSelector) -> BTreeMap<String, String> {
    assert!(
        s.match_expressions.is_none(),
        "matchExpressions are not checked here"
    );
    s.match_labels.clone().unwrap_or_default()
}

fn all_containers(t: &PodTemplateSpec) -> Vec<&Container> {
    let spec = t.spec.as_ref().expect("a pod spec");
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect()
}

/// The port `port` (a name or a number) of any container of the pod.
fn pod_port(t: &PodTemplateSpec, port: &IntOrString) -> Option<i32> {
    all_containers(t)
        .into_iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| match port {
            IntOrString::Int(n) => p.container_port == *n,
            IntOrString::String(s) => p.name.as_deref() == Some(s.as_str()),
        })
        .map(|p| p.container_port)
}

fn is_cutover(c: &Container) -> bool {
    c.image.as_deref() == Some(IMAGE)
}

// === Structure and references ===

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
        });
    }
    for k in [
        "Deployment",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
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
        for ns in m.objects.iter().filter(|o| o.file.parent() == Some(dir)) {
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

#[test]
fn references_resolve() {
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

// === The cutover containers ===

/// `cutover run`'s flags, from the binary's own help.
fn run_flags() -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
        .filter(|w| w.starts_with("--"))
        .map(|w| w.split('=').next().unwrap_or(w).to_string())
        .collect()
}

/// `run --flag value ...` -> flags and their values (a flag without value
/// maps to "").
fn parse_args(args: &[String], known: &BTreeSet<String>) -> BTreeMap<String, String> {
    assert_eq!(
        args.first().map(String::as_str),
        Some("run"),
        "args: {args:?}"
    );
    const SWITCHES: &[&str] = &["--no-admin", "--no-metrics"];
    let mut out = BTreeMap::new();
    let mut it = args[1..].iter();
    while let Some(flag) = it.next() {
        assert!(
            known.contains(flag),
            "unknown flag {flag} (cutover run --help)"
        );
        let value = if SWITCHES.contains(&flag.as_str()) {
            String::new()
        } else {
            it.next()
                .unwrap_or_else(|| panic!("{flag} without a value"))
                .clone()
        };
        assert!(out.insert(flag.clone(), value).is_none(), "{flag} twice");
    }
    out
}

fn duration_secs(args: &BTreeMap<String, String>, flag: &str, default: &str) -> f64 {
    let v = args.get(flag).map_or(default, String::as_str);
    let d: cutover::config::resilience::Dur = v.parse().unwrap_or_else(|e| panic!("{flag}: {e}"));
    d.0.as_secs_f64()
}

fn pre_stop_sleep(c: &Container) -> i64 {
    let handler = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref());
    match handler {
        None => 0,
        Some(h) => {
            assert!(
                h.exec.is_none(),
                "{}: preStop exec needs a shell; use sleep",
                c.name
            );
            h.sleep.as_ref().map_or(0, |s| s.seconds)
        }
    }
}

/// A file a container sees through a ConfigMap or Secret volume.
#[derive(Debug, Clone)]
struct Mount {
    path: String,
    sub_path: bool,
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    ConfigMap(String),
    Secret(String),
}

fn mounts(t: &PodTemplateSpec, c: &Container) -> Vec<Mount> {
    let volumes = t.spec.as_ref().unwrap().volumes.clone().unwrap_or_default();
    c.volume_mounts
        .iter()
        .flatten()
        .filter_map(|vm| {
            let v = volumes.iter().find(|v| v.name == vm.name)?;
            let source = match (&v.config_map, &v.secret) {
                (Some(cm), _) => Source::ConfigMap(cm.name.clone()),
                (_, Some(s)) => Source::Secret(s.secret_name.clone().unwrap_or_default()),
                _ => return None,
            };
            Some(Mount {
                path: vm.mount_path.trim_end_matches('/').to_string(),
                sub_path: vm.sub_path.is_some(),
                source,
            })
        })
        .collect()
}

/// The mount and key that hold `path`.
fn mounted<'a>(mounts: &'a [Mount], path: &str) -> Option<(&'a Mount, String)> {
    mounts.iter().find_map(|m| {
        let key = path.strip_prefix(&m.path)?.strip_prefix('/')?;
        Some((m, key.to_string()))
    })
}

/// Every string in the config that names a file under one of the mounts
/// (none yet; certificates once TLS lands).
fn mounted_files(config: &str, mounts: &[Mount]) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            Value::Object(o) => o.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let value: Value = serde_saphyr::from_str(config).unwrap();
    let mut strings = Vec::new();
    walk(&value, &mut strings);
    strings
        .into_iter()
        .filter(|s| mounted(mounts, s).is_some())
        .collect()
}

/// Content for a Secret key the repository does not hold (generated from a
/// file the operator provides). When TLS lands: generate a self-signed pair
/// for `tls.crt`/`tls.key` here (e.g. with rcgen).
fn fixture(secret: &str, key: &str) -> Vec<u8> {
    panic!("no test fixture for key {key} of Secret {secret}: add one in fixture()")
}

/// Writes the config for `cutover check`, with every mounted file it names
/// moved into `dir` (holding the ConfigMap's data or a [`fixture`]).
fn materialize(
    m: &Manifests,
    namespace: &str,
    config: &str,
    mounts: &[Mount],
    dir: &Path,
) -> PathBuf {
    let mut text = config.to_string();
    for file in mounted_files(config, mounts) {
        let (mount, key) = mounted(mounts, &file).unwrap();
        let content = match &mount.source {
            Source::ConfigMap(name) => m
                .config_map(namespace, name)
                .and_then(|c| c.data.as_ref()?.get(&key).cloned())
                .unwrap_or_else(|| panic!("{file}: ConfigMap {name} has no key {key}"))
                .into_bytes(),
            Source::Secret(name) => fixture(name, &key),
        };
        let local = dir.join(file.trim_start_matches('/'));
        std::fs::create_dir_all(local.parent().unwrap()).unwrap();
        std::fs::write(&local, content).unwrap();
        text = text.replace(&file, &local.display().to_string());
    }
    let path = dir.join("cutover.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn probe_path(p: &Option<Probe>) -> Option<(String, IntOrString)> {
    let get = p.as_ref()?.http_get.as_ref()?;
    Some((get.path.clone().unwrap_or_default(), get.port.clone()))
}

/// Every cutover container in k8s/ with its pod and the checks that tie the
/// container, its config and the rest of the pod together.
#[test]
fn cutover_containers_match_their_config() {
    let m = load();
    let known = run_flags();
    let dockerfile_uid = dockerfile().user_uid();
    let mut seen = 0;
    for (o, d) in m.deployments() {
        let template = &d.spec.as_ref().unwrap().template;
        let pod = template.spec.as_ref().unwrap();
        for c in all_containers(template)
            .into_iter()
            .filter(|c| is_cutover(c))
        {
            seen += 1;
            let at = format!("{}/{}", o.name, c.name);
            let args = parse_args(c.args.as_deref().unwrap_or_default(), &known);
            assert!(
                c.command.is_none(),
                "{at}: command overrides the image's entrypoint"
            );
            let mounts = mounts(template, c);

            // The config: a ConfigMap key, mounted as a directory so edits
            // arrive (subPath mounts never update).
            let config_path = args
                .get("--config")
                .or(args.get("-c"))
                .unwrap_or_else(|| panic!("{at}: no --config"));
            let (mount, key) = mounted(&mounts, config_path)
                .unwrap_or_else(|| panic!("{at}: {config_path} is not mounted"));
            assert!(
                !mount.sub_path,
                "{at}: a subPath mount never sees ConfigMap updates"
            );
            let Source::ConfigMap(cm_name) = &mount.source else {
                panic!("{at}: the config is not from a ConfigMap")
            };
            let config = m
                .config_map(&o.namespace, cm_name)
                .and_then(|cm| cm.data.as_ref()?.get(&key).cloned())
                .unwrap_or_else(|| panic!("{at}: ConfigMap {cm_name} has no key {key}"));

            // `cutover check` passes on it.
            let dir = tempdir(&o.name);
            let file = materialize(&m, &o.namespace, &config, &mounts, &dir);
            let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
                .arg("check")
                .arg(&file)
                .output()
                .unwrap();
            let _ = std::fs::remove_dir_all(&dir);
            assert!(
                out.status.success(),
                "{at}: cutover check: {}",
                String::from_utf8_lossy(&out.stderr)
            );

            // Files the config names under a mount come from a Secret that
            // has that key (the TLS certificates, once TLS lands).
            for file in mounted_files(&config, &mounts) {
                let (mount, key) = mounted(&mounts, &file).unwrap();
                if let Source::Secret(name) = &mount.source {
                    let s = m
                        .secret(&o.namespace, name)
                        .unwrap_or_else(|| panic!("{at}: no Secret {name}"));
                    assert!(
                        s.keys.contains(&key),
                        "{at}: {file}: Secret {name} has no key {key}"
                    );
                    if key == "tls.crt" || key == "tls.key" {
                        assert_eq!(s.type_, "kubernetes.io/tls", "{at}: {name}");
                    }
                }
            }

            // Ports: every listener reachable from outside the pod is a
            // containerPort; a loopback one (the sidecar's outbound) is not;
            // the admin listener is the port named admin.
            let parsed = cutover::config::parse_yaml(&config).unwrap();
            let declared: BTreeMap<i32, String> = c
                .ports
                .iter()
                .flatten()
                .map(|p| (p.container_port, p.name.clone().unwrap_or_default()))
                .collect();
            let admin: SocketAddr = args
                .get("--admin")
                .map_or("127.0.0.1:9901", String::as_str)
                .parse()
                .unwrap();
            let mut expected: BTreeSet<i32> = BTreeSet::new();
            let mut data_ports = Vec::new();
            for l in &parsed.listeners {
                let addr: SocketAddr = l.address.parse().unwrap();
                if !addr.ip().is_loopback() {
                    expected.insert(i32::from(addr.port()));
                    data_ports.push(i32::from(addr.port()));
                }
            }
            assert!(
                !args.contains_key("--no-admin"),
                "{at}: probes need the admin listener"
            );
            assert!(
                !admin.ip().is_loopback(),
                "{at}: the kubelet cannot probe a loopback admin listener"
            );
            expected.insert(i32::from(admin.port()));
            assert_eq!(
                declared.keys().copied().collect::<BTreeSet<_>>(),
                expected,
                "{at}: containerPorts vs config"
            );
            assert_eq!(
                declared.get(&i32::from(admin.port())).map(String::as_str),
                Some("admin"),
                "{at}"
            );

            // An exposed admin listener needs its token, from a Secret key.
            let token = args
                .get("--admin-token-file")
                .unwrap_or_else(|| panic!("{at}: exposed admin without a token"));
            let (mount, key) =
                mounted(&mounts, token).unwrap_or_else(|| panic!("{at}: {token} is not mounted"));
            let Source::Secret(name) = &mount.source else {
                panic!("{at}: token not from a Secret")
            };
            let s = m
                .secret(&o.namespace, name)
                .unwrap_or_else(|| panic!("{at}: no Secret {name}"));
            assert!(
                s.keys.contains(&key),
                "{at}: Secret {name} has no key {key}"
            );

            // Probes: readiness /ready, liveness /live, on the admin port.
            let admin_port = IntOrString::Int(i32::from(admin.port()));
            for (probe, want) in [
                (&c.readiness_probe, Some(READY)),
                (&c.liveness_probe, Some(LIVE)),
                (&c.startup_probe, None),
            ] {
                let Some((path, port)) = probe_path(probe) else {
                    assert!(want.is_none(), "{at}: no {want:?} probe");
                    continue;
                };
                if let Some(w) = want {
                    assert_eq!(path, w, "{at}");
                }
                assert!(
                    [READY, LIVE].contains(&path.as_str()),
                    "{at}: probe path {path}"
                );
                assert_eq!(
                    pod_port(template, &port),
                    pod_port(template, &admin_port),
                    "{at}: probe port"
                );
            }

            // Shutdown fits the grace period, and the endpoint has time to
            // leave before the listeners close.
            let grace = pod.termination_grace_period_seconds.unwrap_or(30);
            let delay = duration_secs(&args, "--drain-delay", "5s");
            let timeout = duration_secs(&args, "--drain-timeout", "20s");
            let native_sidecar = c.restart_policy.as_deref() == Some("Always");
            let (before, propagation) = if native_sidecar {
                // Stopped after the app: the app's preStop covers propagation.
                let app = pod.containers.iter().map(pre_stop_sleep).max().unwrap_or(0);
                (app + pre_stop_sleep(c), app as f64 + delay)
            } else {
                (pre_stop_sleep(c), pre_stop_sleep(c) as f64 + delay)
            };
            assert!(
                before as f64 + delay + timeout <= grace as f64,
                "{at}: preStop {before}s + delay {delay}s + timeout {timeout}s > grace {grace}s"
            );
            assert!(
                propagation >= MIN_PROPAGATION_SECS as f64,
                "{at}: {propagation}s for the endpoint to leave"
            );

            // Locked down, and the uid is the image's.
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(
                sc.run_as_user,
                Some(dockerfile_uid),
                "{at}: runAsUser vs Dockerfile USER"
            );

            // Workers fit the CPU limit.
            let workers: f64 = args.get("--workers").map_or(1.0, |w| w.parse().unwrap());
            let cpu = c
                .resources
                .as_ref()
                .and_then(|r| r.limits.as_ref())
                .and_then(|l| l.get("cpu"))
                .unwrap();
            assert!(
                workers <= cpu_cores(&cpu.0),
                "{at}: --workers {workers} > cpu limit {}",
                cpu.0
            );

            // Endpoints naming a Service of k8s/ use one of its ports.
            for g in parsed.groups.values() {
                for e in &g.endpoints {
                    check_endpoint(&m, e, &at);
                }
            }

            // The admin port is private; data ports are open.
            check_network_policy(
                &m,
                &o.namespace,
                template,
                &data_ports,
                i32::from(admin.port()),
                &at,
            );
        }
    }
    assert_eq!(seen, 2, "the sidecar and the ingress");
}

fn cpu_cores(q: &str) -> f64 {
    match q.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().unwrap() / 1000.0,
        None => q.parse().unwrap(),
    }
}

fn check_endpoint(m: &Manifests, endpoint: &str, at: &str) {
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        panic!("{at}: endpoint {endpoint}")
    };
    let Some(rest) = host.strip_suffix(".svc.cluster.local") else {
        return;
    };
    if EXTERNAL.contains(&endpoint) {
        return;
    }
    let (name, namespace) = rest
        .split_once('.')
        .unwrap_or_else(|| panic!("{at}: {endpoint}"));
    let service = m.objects.iter().find_map(|o| match &o.kind {
        Kind::Service(s) if o.name == name && o.namespace == namespace => Some(s),
        _ => None,
    });
    let service = service
        .unwrap_or_else(|| panic!("{at}: {endpoint}: no Service {namespace}/{name} in k8s/"));
    let port: i32 = port.parse().unwrap();
    assert!(
        service
            .spec
            .as_ref()
            .unwrap()
            .ports
            .iter()
            .flatten()
            .any(|p| p.port == port),
        "{at}: {endpoint}: Service {name} has no port {port}"
    );
}

fn check_network_policy(
    m: &Manifests,
    namespace: &str,
    template: &PodTemplateSpec,
    data_ports: &[i32],
    admin: i32,
    at: &str,
) {
    let labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let policies: Vec<&NetworkPolicy> = m
        .objects
        .iter()
        .filter_map(|o| match &o.kind {
            Kind::NetworkPolicy(p) if o.namespace == namespace => Some(&**p),
            _ => None,
        })
        .filter(|p| {
            let sel = p
                .spec
                .as_ref()
                .unwrap()
                .pod_selector
                .as_ref()
                .map(match_labels)
                .unwrap_or_default();
            sel.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .collect();
    assert!(
        !policies.is_empty(),
        "{at}: no NetworkPolicy selects the pod"
    );
    let mut open = BTreeSet::new();
    for p in &policies {
        let spec = p.spec.as_ref().unwrap();
        assert!(
            spec.policy_types.iter().flatten().any(|t| t == "Ingress"),
            "{at}"
        );
        for rule in spec.ingress.iter().flatten() {
            let from_anywhere = rule.from.as_ref().is_none_or(|f| f.is_empty());
            let ports = rule.ports.as_ref().filter(|p| !p.is_empty());
            let ports =
                ports.unwrap_or_else(|| panic!("{at}: a rule without ports opens every port"));
            for port in ports {
                let n = pod_port(template, port.port.as_ref().unwrap()).unwrap();
                if n == admin {
                    let peers = rule.from.as_deref().unwrap_or_default();
                    assert!(!peers.is_empty(), "{at}: the admin port is open to anyone");
                    for peer in peers {
                        assert!(
                            peer.ip_block.is_none(),
                            "{at}: admin port open to an ipBlock"
                        );
                        assert!(
                            peer.namespace_selector
                                .as_ref()
                                .is_some_and(|s| !match_labels(s).is_empty())
                                && peer
                                    .pod_selector
                                    .as_ref()
                                    .is_some_and(|s| !match_labels(s).is_empty()),
                            "{at}: admin port peers must name a namespace and pods"
                        );
                    }
                } else if from_anywhere {
                    open.insert(n);
                }
            }
        }
    }
    for port in data_ports {
        assert!(
            open.contains(port),
            "{at}: data port {port} is not open to clients"
        );
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
        assert_eq!(
            pod.automount_service_account_token,
            Some(false),
            "{}: no API access needed",
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

/// The probe paths the manifests use are served by a real admin listener.
#[tokio::test]
async fn probe_paths_are_served_by_the_admin_api() {
    let m = load();
    let mut paths = BTreeSet::new();
    for (_, d) in m.deployments() {
        for c in all_containers(&d.spec.as_ref().unwrap().template)
            .into_iter()
            .filter(|c| is_cutover(c))
        {
            for p in [&c.readiness_probe, &c.liveness_probe, &c.startup_probe] {
                if let Some((path, _)) = probe_path(p) {
                    paths.insert(path);
                }
            }
        }
    }
    assert!(paths.contains(READY) && paths.contains(LIVE), "{paths:?}");
    let config = cutover::config::parse_yaml(
        "listeners: [{name: public, address: \"127.0.0.1:0\"}]\ngroups: {app: {endpoints: [\"127.0.0.1:9\"]}}\nroutes: [{name: web, rules: [{name: all, backends: [{group: app}]}]}]\n",
    )
    .unwrap();
    let options = cutover::app::Options {
        admin: Some(cutover::admin::AdminOptions {
            address: "127.0.0.1:0".parse().unwrap(),
            token: Some("a-token-of-sixteen-chars".into()),
        }),
        ..Default::default()
    };
    let app = cutover::app::App::start(&config, options).await.unwrap();
    let admin = app.local_addr("admin").unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(app.serve(async {
        let _ = rx.await;
    }));
    let client = crate::support::http1_client();
    for path in &paths {
        // No token: the kubelet sends none.
        let got = crate::support::get(&client, &format!("http://{admin}{path}"), &[]).await;
        assert_eq!(got.status, 200, "{path}: {}", got.body);
    }
    let _ = tx.send(());
    let _ = done.await;
}

fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cutover-k8s-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// === Dockerfile ===

/// One instruction: keyword and the rest, continuation lines joined.
struct Instruction {
    keyword: String,
    rest: String,
}

struct Dockerfile {
    /// Stages, each starting with its FROM.
    stages: Vec<Vec<Instruction>>,
}

fn dockerfile() -> Dockerfile {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    for line in logical.into_iter().filter(|l| !l.is_empty()) {
        let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let i = Instruction {
            keyword: keyword.to_ascii_uppercase(),
            rest: rest.trim().to_string(),
        };
        if i.keyword == "FROM" {
            stages.push(vec![i]);
        } else {
            stages
                .last_mut()
                .expect("an instruction before FROM")
                .push(i);
        }
    }
    Dockerfile { stages }
}

impl Dockerfile {
    fn last(&self) -> &[Instruction] {
        self.stages.last().unwrap()
    }

    fn get<'a>(stage: &'a [Instruction], keyword: &str) -> Vec<&'a str> {
        stage
            .iter()
            .filter(|i| i.keyword == keyword)
            .map(|i| i.rest.as_str())
            .collect()
    }

    fn user_uid(&self) -> i64 {
        let users = Self::get(self.last(), "USER");
        let user = users.last().expect("a USER in the final stage");
        user.split(':')
            .next()
            .unwrap()
            .parse()
            .expect("a numeric USER (runAsNonRoot needs one)")
    }

    fn exec_form(&self, keyword: &str) -> Vec<String> {
        let v = Self::get(self.last(), keyword);
        let v = v.last().unwrap_or_else(|| panic!("no {keyword}"));
        serde_json::from_str(v).unwrap_or_else(|e| panic!("{keyword} is not in exec form: {e}"))
    }
}

#[test]
fn dockerfile_follows_its_rules() {
    let d = dockerfile();
    assert!(d.stages.len() >= 2, "multi-stage");
    let build = &d.stages[0];
    let runs = Dockerfile::get(build, "RUN").join(" ");
    assert!(runs.contains("cargo build --release --locked"), "{runs}");
    // --locked needs the lock file in the repository and in the context.
    let tracked = Command::new("git")
        .args(["ls-files", "--error-unmatch", "Cargo.lock"])
        .current_dir(repo())
        .output();
    if let Ok(out) = tracked {
        assert!(out.status.success(), "Cargo.lock is not committed");
    }
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    for needed in ["Cargo.lock", "Cargo.toml", "src", "config"] {
        assert!(
            !ignore
                .lines()
                .any(|l| l.trim().trim_end_matches('/') == needed),
            ".dockerignore drops {needed}"
        );
    }
    assert!(Dockerfile::get(build, "COPY")
        .iter()
        .any(|c| c.contains("Cargo.lock")));

    let last = d.last();
    let from = &last[0].rest;
    assert!(
        from.contains(':') && !from.ends_with(":latest"),
        "pinned final base: {from}"
    );
    for banned in ["RUN", "SHELL", "ADD"] {
        assert!(
            Dockerfile::get(last, banned).is_empty(),
            "{banned} in the final stage (no shell there)"
        );
    }
    assert!(d.user_uid() > 0, "non-root USER");
    assert_eq!(d.user_uid(), NONROOT);

    let entrypoint = d.exec_form("ENTRYPOINT");
    let cmd = d.exec_form("CMD");
    let copies = Dockerfile::get(last, "COPY");
    assert!(
        copies
            .iter()
            .any(|c| c.starts_with("--from=") && c.ends_with(&format!(" {}", entrypoint[0]))),
        "the binary is copied to the ENTRYPOINT path"
    );
    // The default command runs a config that the image holds and that passes.
    let config = cmd
        .iter()
        .position(|a| a == "--config" || a == "-c")
        .and_then(|i| cmd.get(i + 1))
        .expect("CMD names a config");
    let source = copies
        .iter()
        .find_map(|c| c.strip_suffix(&format!(" {config}")))
        .unwrap_or_else(|| panic!("{config} is not copied into the image"));
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .arg("check")
        .arg(repo().join(source.trim()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(cmd[0], "run");

    // EXPOSE: the default config's listeners and the admin port.
    let exposed: BTreeSet<u16> = Dockerfile::get(last, "EXPOSE")
        .iter()
        .flat_map(|e| e.split_whitespace())
        .map(|p| p.split('/').next().unwrap().parse().unwrap())
        .collect();
    let text = std::fs::read_to_string(repo().join(source.trim())).unwrap();
    let mut expected: BTreeSet<u16> = cutover::config::parse_yaml(&text)
        .unwrap()
        .listeners
        .iter()
        .map(|l| l.address.parse::<SocketAddr>().unwrap().port())
        .collect();
    expected.insert(9901);
    assert_eq!(exposed, expected);
}
