//! `cutover inject`: adds the cutover native sidecar of `k8s/sidecar/` to
//! the pod templates of Kubernetes manifests, or takes it out again.
//!
//! Documents are read into an order-keeping tree ([`yaml::Node`]), so every
//! field inject does not own passes through untouched; kinds without a pod
//! template pass through whole. Inject is idempotent: an injected pod is
//! first restored, then injected again with the current flags. What inject
//! created (keys that were absent, probe ports it moved to `inbound`) is
//! written in the annotation [`ANNOTATION`], so `--uninject` restores the
//! input exactly.

pub mod sidecar;
pub mod yaml;

use serde_json::{json, Value};

use yaml::Node;

/// Pod annotation that marks an injected pod and records what to undo.
pub const ANNOTATION: &str = "cutover.dev/injected";
/// Kubernetes' default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE_SECS: i64 = 30;
const PROBES: [&str; 3] = ["readinessProbe", "livenessProbe", "startupProbe"];

/// What to inject.
#[derive(Debug, Clone)]
pub struct Options {
    /// The cutover image.
    pub image: String,
    /// The ConfigMap with cutover's config; `None`: `<workload>-cutover`.
    pub config_map: Option<String>,
    /// The key of the ConfigMap that holds the config.
    pub config_key: String,
    /// The Secret holding the admin token under key `token`.
    pub token_secret: String,
    /// cutover's inbound listener port (a containerPort named `inbound`).
    pub inbound_port: u16,
    /// cutover's outbound listener port (loopback; no containerPort, but
    /// no app container may use it).
    pub outbound_port: u16,
    /// cutover's admin port (probes, metrics; named `admin`).
    pub admin_port: u16,
    /// The port the app listens on behind cutover: the app's HTTP probes on
    /// it go through `inbound` instead (the kubelet cannot reach an app
    /// listening on loopback).
    pub app_port: u16,
    /// cutover's `--drain-timeout` in seconds.
    pub drain_timeout_secs: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            image: format!("cutover:{}", env!("CARGO_PKG_VERSION")),
            config_map: None,
            config_key: "cutover.yaml".into(),
            token_secret: "cutover-admin-token".into(),
            inbound_port: 8080,
            outbound_port: 15001,
            admin_port: 9901,
            app_port: 8081,
            drain_timeout_secs: 5,
        }
    }
}

/// Why a document could not be injected: the object, the field, the reason.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// The input is not YAML.
    #[error("input is not YAML: {0}")]
    Parse(String),
    /// The flags contradict each other.
    #[error("{0}")]
    Flags(String),
    /// An object cannot take the sidecar.
    #[error("{object}: {field}: {reason}")]
    Object {
        /// `Kind name`, e.g. `Deployment web`.
        object: String,
        /// The field path in the object.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The output could not be written as YAML.
    #[error("cannot write YAML: {0}")]
    Write(String),
}

/// Injects the sidecar into every pod template of the YAML stream `input`.
pub fn inject(input: &str, o: &Options) -> Result<String, InjectError> {
    o.check()?;
    transform(input, &|w: &mut Workload<'_>| {
        w.uninject()?;
        w.inject(o)
    })
}

/// Takes out what [`inject`] added, restoring each object as it was.
pub fn uninject(input: &str) -> Result<String, InjectError> {
    transform(input, &|w: &mut Workload<'_>| w.uninject())
}

type Step<'a> = &'a dyn Fn(&mut Workload<'_>) -> Result<(), InjectError>;

fn transform(input: &str, step: Step<'_>) -> Result<String, InjectError> {
    let docs: Vec<Node> =
        serde_saphyr::from_multiple(input).map_err(|e| InjectError::Parse(e.to_string()))?;
    let mut out = Vec::with_capacity(docs.len());
    for mut doc in docs.into_iter().filter(|d| *d != Node::Null) {
        visit(&mut doc, step)?;
        out.push(doc);
    }
    serde_saphyr::to_string_multiple(&out).map_err(|e| InjectError::Write(e.to_string()))
}

/// Applies `step` to the pod of `doc`, or of each item of a `List` (what
/// `kubectl get deploy -o yaml` prints without a name).
fn visit(doc: &mut Node, step: Step<'_>) -> Result<(), InjectError> {
    let kind = doc
        .get("kind")
        .and_then(Node::as_str)
        .unwrap_or("")
        .to_string();
    let object = describe(doc, &kind);
    let path: &[&str] = match kind.as_str() {
        "List" => {
            if let Some(Node::Seq(items)) = doc.get_mut("items") {
                for item in items {
                    visit(item, step)?;
                }
            }
            return Ok(());
        }
        "Pod" => &[],
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => &["spec", "template"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template"],
        _ => return Ok(()),
    };
    let name = doc
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Node::as_str)
        .map(str::to_string);
    let mut pod = &mut *doc;
    for key in path {
        pod = match pod.get_mut(key) {
            Some(next) => next,
            None => return Err(missing(&object, &path.join("."))),
        };
    }
    let prefix = path.iter().map(|k| format!("{k}.")).collect::<String>();
    if pod.get("spec").is_none() {
        return Err(missing(&object, &format!("{prefix}spec")));
    }
    step(&mut Workload {
        pod,
        object,
        prefix,
        name,
    })
}

fn describe(doc: &Node, kind: &str) -> String {
    let meta = doc.get("metadata");
    let field = |k| meta.and_then(|m| m.get(k)).and_then(Node::as_str);
    match (field("namespace"), field("name")) {
        (Some(ns), Some(n)) => format!("{kind} {ns}/{n}"),
        (None, Some(n)) => format!("{kind} {n}"),
        _ => format!("{kind} (no metadata.name)"),
    }
}

fn missing(object: &str, field: &str) -> InjectError {
    InjectError::Object {
        object: object.to_string(),
        field: field.to_string(),
        reason: "missing".into(),
    }
}

impl Options {
    fn check(&self) -> Result<(), InjectError> {
        let ports = self.ports();
        for (i, (a, pa)) in ports.iter().enumerate() {
            if let Some((b, _)) = ports[i + 1..].iter().find(|(_, pb)| pb == pa) {
                return Err(InjectError::Flags(format!(
                    "--{a}-port and --{b}-port are both {pa}"
                )));
            }
        }
        Ok(())
    }

    /// Every port flag with its name; no two may be equal.
    fn ports(&self) -> [(&'static str, u16); 4] {
        let [a, b, c] = self.cutover_ports();
        [a, b, c, ("app", self.app_port)]
    }

    /// cutover's own ports with their flag names; no app container may
    /// declare them.
    fn cutover_ports(&self) -> [(&'static str, u16); 3] {
        [
            ("inbound", self.inbound_port),
            ("admin", self.admin_port),
            ("outbound", self.outbound_port),
        ]
    }
}

/// One pod template (or Pod) being changed: `pod` holds `metadata` and
/// `spec`.
struct Workload<'a> {
    pod: &'a mut Node,
    object: String,
    /// The path to `pod` in the object, with a trailing dot (or empty).
    prefix: String,
    name: Option<String>,
}

impl Workload<'_> {
    fn error(&self, field: impl std::fmt::Display, reason: impl Into<String>) -> InjectError {
        InjectError::Object {
            object: self.object.clone(),
            field: format!("{}{field}", self.prefix),
            reason: reason.into(),
        }
    }

    fn spec(&mut self) -> &mut Node {
        // visit() returned early unless `spec` exists.
        self.pod.get_mut("spec").expect("checked in visit") // ok: see above
    }

    fn inject(&mut self, o: &Options) -> Result<(), InjectError> {
        let config_map = match (&o.config_map, &self.name) {
            (Some(c), _) => c.clone(),
            (None, Some(n)) => format!("{n}-cutover"),
            (None, None) => {
                return Err(InjectError::Object {
                    object: self.object.clone(),
                    field: "metadata.name".into(),
                    reason: "no name to derive the ConfigMap from; pass --config-map".into(),
                })
            }
        };
        self.check_ports(o)?;
        self.check_names()?;
        self.check_grace(o)?;
        let mut created = Vec::new();
        let probes = self.move_app_probes(o);
        let container = sidecar::container(o, &o.config_key);
        let volumes = sidecar::volumes(o, &config_map);
        let spec = self.spec();
        if spec.get("initContainers").is_none() {
            spec.set("initContainers", Node::Seq(Vec::new()));
            created.push("initContainers");
        }
        if let Some(Node::Seq(init)) = spec.get_mut("initContainers") {
            init.insert(0, container);
        }
        if spec.get("volumes").is_none() {
            spec.set("volumes", Node::Seq(Vec::new()));
            created.push("volumes");
        }
        if let Some(Node::Seq(v)) = spec.get_mut("volumes") {
            v.extend(volumes);
        }
        if self.pod.get("metadata").is_none() {
            self.pod.set("metadata", Node::Map(Vec::new()));
            created.push("metadata");
        }
        let meta = self.pod.get_mut("metadata");
        let meta = meta.ok_or_else(|| missing(&self.object, "metadata"))?;
        if meta.get("annotations").is_none() {
            meta.set("annotations", Node::Map(Vec::new()));
            created.push("metadata.annotations");
        }
        let record = json!({ "created": created, "probes": probes }).to_string();
        if let Some(a) = meta.get_mut("annotations") {
            a.set(ANNOTATION, Node::Str(record));
        }
        Ok(())
    }

    /// No container of the pod may use cutover's ports or port names.
    fn check_ports(&mut self, o: &Options) -> Result<(), InjectError> {
        let spec = self.spec().clone();
        for list in ["initContainers", "containers"] {
            for (i, c) in spec
                .get(list)
                .and_then(Node::as_seq)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let ports = c.get("ports").and_then(Node::as_seq).unwrap_or_default();
                for (j, p) in ports.iter().enumerate() {
                    let at = format!("spec.{list}[{i}].ports[{j}]");
                    let number = p.get("containerPort").and_then(Node::as_i64);
                    let clash = o.cutover_ports().into_iter();
                    if let Some((flag, n)) =
                        clash.clone().find(|(_, n)| Some(i64::from(*n)) == number)
                    {
                        let reason = format!("{n} is cutover's {flag} port (--{flag}-port); move the app to --app-port {} or pick another --{flag}-port", o.app_port);
                        return Err(self.error(format!("{at}.containerPort"), reason));
                    }
                    if let Some(name @ ("inbound" | "admin")) = p.get("name").and_then(Node::as_str)
                    {
                        return Err(self.error(
                            format!("{at}.name"),
                            format!("the port name {name} is cutover's"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The sidecar's container and volume names are free.
    fn check_names(&mut self) -> Result<(), InjectError> {
        let spec = self.spec().clone();
        let taken = [
            ("initContainers", sidecar::CONTAINER),
            ("containers", sidecar::CONTAINER),
            ("volumes", sidecar::CONFIG_VOLUME),
            ("volumes", sidecar::TOKEN_VOLUME),
        ];
        for (list, name) in taken {
            let items = spec.get(list).and_then(Node::as_seq).unwrap_or_default();
            if let Some(i) = items
                .iter()
                .position(|c| c.get("name").and_then(Node::as_str) == Some(name))
            {
                return Err(self.error(
                    format!("spec.{list}[{i}].name"),
                    format!("{name} is the name of cutover's sidecar"),
                ));
            }
        }
        Ok(())
    }

    /// The app's `preStop` sleep, then cutover's drain, fit the grace
    /// period (cutover is stopped after the app has exited).
    fn check_grace(&mut self, o: &Options) -> Result<(), InjectError> {
        let spec = self.spec();
        let grace = spec
            .get("terminationGracePeriodSeconds")
            .and_then(Node::as_i64);
        let containers = spec
            .get("containers")
            .and_then(Node::as_seq)
            .unwrap_or_default();
        let pre_stop = containers
            .iter()
            .filter_map(|c| {
                let sleep = c.get("lifecycle")?.get("preStop")?.get("sleep")?;
                sleep.get("seconds")?.as_i64()
            })
            .max()
            .unwrap_or(0);
        let drain = i64::try_from(o.drain_timeout_secs).unwrap_or(i64::MAX);
        let need = pre_stop.saturating_add(drain);
        let have = grace.unwrap_or(DEFAULT_GRACE_SECS);
        if need > have {
            let shown = if grace.is_some() {
                format!("{have}")
            } else {
                format!("{have} (the default)")
            };
            return Err(self.error(
                "spec.terminationGracePeriodSeconds",
                format!("{shown} s is too short for the drain: the app's preStop sleep ({pre_stop} s) and then cutover's --drain-timeout ({drain} s) need {need} s plus the app's own shutdown"),
            ));
        }
        Ok(())
    }

    /// The app's HTTP probes on `--app-port` go through cutover's
    /// `inbound` port; returns the original ports by container and probe.
    fn move_app_probes(&mut self, o: &Options) -> Value {
        let mut moved = serde_json::Map::new();
        let Some(Node::Seq(containers)) = self.spec().get_mut("containers") else {
            return Value::Object(moved);
        };
        for c in containers {
            let name = name_of(c);
            let app_port_names: Vec<String> = c
                .get("ports")
                .and_then(Node::as_seq)
                .unwrap_or_default()
                .iter()
                .filter(|p| {
                    p.get("containerPort").and_then(Node::as_i64) == Some(i64::from(o.app_port))
                })
                .filter_map(|p| p.get("name").and_then(Node::as_str).map(str::to_string))
                .collect();
            let mut probes = serde_json::Map::new();
            for probe in PROBES {
                let Some(port) = c
                    .get_mut(probe)
                    .and_then(|p| p.get_mut("httpGet"))
                    .and_then(|h| h.get_mut("port"))
                else {
                    continue;
                };
                let on_app = match &*port {
                    Node::Str(s) => app_port_names.contains(s),
                    n => n.as_i64() == Some(i64::from(o.app_port)),
                };
                if on_app {
                    let was = std::mem::replace(port, Node::Str("inbound".into()));
                    probes.insert(probe.into(), to_json(&was));
                }
            }
            if !probes.is_empty() {
                moved.insert(name, Value::Object(probes));
            }
        }
        Value::Object(moved)
    }

    fn uninject(&mut self) -> Result<(), InjectError> {
        let field = format!("metadata.annotations.{ANNOTATION}");
        let record = self
            .pod
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(ANNOTATION));
        let Some(record) = record else { return Ok(()) };
        let record: Value = record
            .as_str()
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| self.error(&field, "not the record inject wrote"))?;
        let created: Vec<&str> = record["created"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let spec = self.spec();
        remove_named(
            spec,
            "initContainers",
            &[sidecar::CONTAINER],
            created.contains(&"initContainers"),
        );
        let volumes = [sidecar::CONFIG_VOLUME, sidecar::TOKEN_VOLUME];
        remove_named(spec, "volumes", &volumes, created.contains(&"volumes"));
        if let (Some(Node::Seq(containers)), Some(moved)) =
            (spec.get_mut("containers"), record["probes"].as_object())
        {
            for c in containers {
                let name = name_of(c);
                for (probe, port) in moved
                    .get(&name)
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    if let Some(h) = c.get_mut(probe).and_then(|p| p.get_mut("httpGet")) {
                        h.set("port", from_json(port));
                    }
                }
            }
        }
        if let Some(meta) = self.pod.get_mut("metadata") {
            if let Some(a) = meta.get_mut("annotations") {
                a.remove(ANNOTATION);
            }
            remove_if_created(
                meta,
                "annotations",
                created.contains(&"metadata.annotations"),
            );
        }
        remove_if_created(self.pod, "metadata", created.contains(&"metadata"));
        Ok(())
    }
}

/// Removes the items named `names` from the list `key`, and the key itself
/// if inject created it and it is empty again.
fn remove_named(spec: &mut Node, key: &str, names: &[&str], created: bool) {
    if let Some(Node::Seq(items)) = spec.get_mut(key) {
        items.retain(|i| {
            !names
                .iter()
                .any(|n| i.get("name").and_then(Node::as_str) == Some(n))
        });
    }
    remove_if_created(spec, key, created);
}

fn remove_if_created(parent: &mut Node, key: &str, created: bool) {
    if created && parent.get(key).is_some_and(Node::is_empty_collection) {
        parent.remove(key);
    }
}

/// A container's `name` ("" without one).
fn name_of(c: &Node) -> String {
    c.get("name")
        .and_then(Node::as_str)
        .unwrap_or("")
        .to_string()
}

fn to_json(n: &Node) -> Value {
    match n {
        Node::Str(s) => Value::String(s.clone()),
        n => n.as_i64().map_or(Value::Null, Value::from),
    }
}

fn from_json(v: &Value) -> Node {
    match v {
        Value::String(s) => Node::Str(s.clone()),
        v => v.as_u64().map_or(Node::Null, Node::UInt),
    }
}

#[cfg(test)]
mod tests;
