//! The deployment files. Every manifest under `k8s/` is parsed into typed
//! Kubernetes objects (`k8s-openapi`) and cross-checked: names that are
//! referenced exist, ports line up from the Service to the container to the
//! cutover config, probes hit paths the admin API serves, the shutdown
//! timeline fits the grace period, the mounted config passes `cutover
//! check`, containers are locked down, the admin port stays private. The
//! `Dockerfile` is checked against the rules it promises (no Docker engine
//! here, so nothing is built).

mod container;
mod controller;
mod dockerfile;
mod inject;
mod refs;

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
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
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
    ClusterRole(Box<ClusterRole>),
    ClusterRoleBinding(Box<ClusterRoleBinding>),
    Role(Box<Role>),
    RoleBinding(Box<RoleBinding>),
    /// GatewayClass, Gateway, HTTPRoute: checked by reading them with the
    /// controller's own types; kept as written.
    GatewayApi(&'static str, Value),
}

impl Kind {
    /// Objects without a namespace.
    fn cluster_scoped(&self) -> bool {
        matches!(
            self,
            Kind::Namespace
                | Kind::ClusterRole(_)
                | Kind::ClusterRoleBinding(_)
                | Kind::GatewayApi("GatewayClass", _)
        )
    }
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

/// `doc` without `apiVersion` and `kind`, which the controller's own
/// Gateway API types leave to `kube::Resource`.
fn untyped(doc: &Value) -> Value {
    let mut d = doc.clone();
    if let Some(o) = d.as_object_mut() {
        o.remove("apiVersion");
        o.remove("kind");
    }
    d
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
    load_with(&|_, text| text)
}

/// [`load`], with each manifest's text passed through `edit` first.
fn load_with(edit: &dyn Fn(&Path, String) -> String) -> Manifests {
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
        let text = edit(file, std::fs::read_to_string(file).unwrap());
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
                ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
                    Kind::ClusterRole(typed(file, &doc))
                }
                ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                    Kind::ClusterRoleBinding(typed(file, &doc))
                }
                ("rbac.authorization.k8s.io/v1", "Role") => Kind::Role(typed(file, &doc)),
                ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
                    Kind::RoleBinding(typed(file, &doc))
                }
                ("gateway.networking.k8s.io/v1", "GatewayClass") => {
                    typed::<cutover::kubernetes::resources::GatewayClass>(file, &untyped(&doc));
                    Kind::GatewayApi("GatewayClass", doc.clone())
                }
                ("gateway.networking.k8s.io/v1", "Gateway") => {
                    typed::<cutover::kubernetes::resources::Gateway>(file, &untyped(&doc));
                    Kind::GatewayApi("Gateway", doc.clone())
                }
                ("gateway.networking.k8s.io/v1", "HTTPRoute") => {
                    Kind::GatewayApi("HTTPRoute", doc.clone())
                }
                (api, kind) => panic!("{}: unknown kind {api} {kind}", file.display()),
            };
            let name = doc["metadata"]["name"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: a {kind_name} without a name", file.display()))
                .to_string();
            let namespace = match &kind {
                Kind::Namespace => name.clone(),
                k if k.cluster_scoped() => String::new(),
                _ => doc["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{}: {name} has no namespace", file.display()))
                    .to_string(),
            };
            if let (Some(ns), false) = (
                &dir_ns,
                kind.cluster_scoped() && !matches!(kind, Kind::Namespace),
            ) {
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
