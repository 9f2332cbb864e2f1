//! The cutover containers: args, mounted config, ports, probes, shutdown
//! timeline, token, NetworkPolicy; the probe paths on a real admin listener.

use super::dockerfile::dockerfile;
use super::*;

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
    const SWITCHES: &[&str] = &["--no-admin", "--no-metrics", "--kubernetes"];
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
/// (the TLS certificates and keys).
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

/// Every certificate, key and CA file the config names (listener and
/// upstream TLS).
fn tls_files(config: &cutover::config::Config) -> Vec<String> {
    let mut files = Vec::new();
    for tls in config.listeners.iter().filter_map(|l| l.tls.as_ref()) {
        for c in &tls.certificates {
            files.extend([c.cert.clone(), c.key.clone()]);
        }
        files.extend(tls.client_auth.iter().map(|c| c.ca.clone()));
    }
    for tls in config.groups.values().filter_map(|g| g.tls.as_ref()) {
        files.extend(tls.ca.iter().chain(&tls.cert).chain(&tls.key).cloned());
    }
    files
}

/// Content for the Secret keys the repository does not hold (generated from
/// files the operator provides): for `tls.crt`/`tls.key`, one self-signed
/// certificate per Secret, made with rcgen for the routes' hostnames, and
/// its matching key, so `cutover check` reads a real pair.
struct Fixtures {
    hostnames: Vec<String>,
    /// Secret name -> (certificate PEM, key PEM).
    tls: BTreeMap<String, (String, String)>,
}

impl Fixtures {
    fn new(config: &str) -> Fixtures {
        let parsed = cutover::config::parse_yaml(config).unwrap();
        let mut hostnames: Vec<String> = Vec::new();
        for h in parsed.routes.iter().flat_map(|r| &r.hostnames) {
            if !hostnames.contains(h) {
                hostnames.push(h.clone());
            }
        }
        if hostnames.is_empty() {
            hostnames.push("localhost".into());
        }
        Fixtures {
            hostnames,
            tls: BTreeMap::new(),
        }
    }

    fn get(&mut self, secret: &str, key: &str) -> Vec<u8> {
        let hostnames = &self.hostnames;
        let (cert, private) = self.tls.entry(secret.to_string()).or_insert_with(|| {
            let mut params = rcgen::CertificateParams::new(hostnames.clone()).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, hostnames[0].clone());
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            (cert.pem(), key.serialize_pem())
        });
        match key {
            "tls.crt" => cert.clone().into_bytes(),
            "tls.key" => private.clone().into_bytes(),
            _ => panic!("no test fixture for key {key} of Secret {secret}: add one in Fixtures"),
        }
    }
}

/// Writes the config for `cutover check`, with every mounted file it names
/// moved into `dir` (holding the ConfigMap's data or a [`Fixtures`] one).
fn materialize(
    m: &Manifests,
    namespace: &str,
    config: &str,
    mounts: &[Mount],
    dir: &Path,
) -> PathBuf {
    let mut text = config.to_string();
    let mut fixtures = Fixtures::new(config);
    for file in mounted_files(config, mounts) {
        let (mount, key) = mounted(mounts, &file).unwrap();
        let content = match &mount.source {
            Source::ConfigMap(name) => m
                .config_map(namespace, name)
                .and_then(|c| c.data.as_ref()?.get(&key).cloned())
                .unwrap_or_else(|| panic!("{file}: ConfigMap {name} has no key {key}"))
                .into_bytes(),
            Source::Secret(name) => fixtures.get(name, &key),
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
    assert_eq!(
        check_cutover_containers(&load()),
        3,
        "the sidecar, the ingress and the controller"
    );
}

/// Runs the checks on every cutover container of `m`; returns how many.
pub(super) fn check_cutover_containers(m: &Manifests) -> usize {
    let known = run_flags();
    let mut seen = 0;
    for (o, d) in m.deployments() {
        let template = &d.spec.as_ref().unwrap().template;
        for c in all_containers(template)
            .into_iter()
            .filter(|c| is_cutover(c))
        {
            seen += 1;
            let at = format!("{}/{}", o.name, c.name);
            assert!(
                c.command.is_none(),
                "{at}: command overrides the image's entrypoint"
            );
            let cx = Cx {
                m,
                namespace: &o.namespace,
                template,
                c,
                args: parse_args(c.args.as_deref().unwrap_or_default(), &known),
                mounts: mounts(template, c),
                at,
            };
            let config = cx.config();
            cx.mounted_secret_files(&config);
            let parsed = cutover::config::parse_yaml(&config).unwrap();
            let (data_ports, admin) = cx.ports(&parsed);
            cx.token();
            cx.probes(admin);
            cx.shutdown();
            cx.runs_as_the_image_user_within_its_cpu();
            for g in parsed.groups.values() {
                for e in &g.endpoints {
                    check_endpoint(m, e, &cx.at);
                }
            }
            check_network_policy(m, &o.namespace, template, &data_ports, admin, &cx.at);
        }
    }
    seen
}

/// One cutover container, its pod and its parsed args.
struct Cx<'a> {
    m: &'a Manifests,
    namespace: &'a str,
    template: &'a PodTemplateSpec,
    c: &'a Container,
    args: BTreeMap<String, String>,
    mounts: Vec<Mount>,
    at: String,
}

impl Cx<'_> {
    fn pod(&self) -> &k8s_openapi::api::core::v1::PodSpec {
        self.template.spec.as_ref().unwrap()
    }

    /// The config: a ConfigMap key, mounted as a directory so edits arrive
    /// (subPath mounts never update); `cutover check` passes on it.
    fn config(&self) -> String {
        let at = &self.at;
        let path = self.args.get("--config").or(self.args.get("-c"));
        let path = path.unwrap_or_else(|| panic!("{at}: no --config"));
        let (mount, key) =
            mounted(&self.mounts, path).unwrap_or_else(|| panic!("{at}: {path} is not mounted"));
        assert!(
            !mount.sub_path,
            "{at}: a subPath mount never sees ConfigMap updates"
        );
        let Source::ConfigMap(name) = &mount.source else {
            panic!("{at}: the config is not from a ConfigMap")
        };
        let config = self
            .m
            .config_map(self.namespace, name)
            .and_then(|cm| cm.data.as_ref()?.get(&key).cloned())
            .unwrap_or_else(|| panic!("{at}: ConfigMap {name} has no key {key}"));
        let parsed = cutover::config::parse_yaml(&config)
            .unwrap_or_else(|e| panic!("{at}: ConfigMap {name}: {e}"));
        for file in tls_files(&parsed) {
            assert!(
                mounted(&self.mounts, &file).is_some(),
                "{at}: {file} is not under a volume mount (mount the Secret that holds it)"
            );
        }
        let dir = crate::support::TempDir::new(&format!("k8s-{}", self.at.replace('/', "-")));
        let file = materialize(self.m, self.namespace, &config, &self.mounts, &dir.0);
        let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
            .arg("check")
            .arg(&file)
            .output()
            .unwrap();
        drop(dir);
        assert!(
            out.status.success(),
            "{at}: cutover check: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        config
    }

    /// Files the config names under a mount come from a Secret that has that
    /// key (the TLS certificates: from a `kubernetes.io/tls` Secret).
    fn mounted_secret_files(&self, config: &str) {
        let at = &self.at;
        for file in mounted_files(config, &self.mounts) {
            let (mount, key) = mounted(&self.mounts, &file).unwrap();
            if let Source::Secret(name) = &mount.source {
                let s = self.m.secret(self.namespace, name);
                let s = s.unwrap_or_else(|| panic!("{at}: no Secret {name}"));
                assert!(
                    s.keys.contains(&key),
                    "{at}: {file}: Secret {name} has no key {key}"
                );
                if key == "tls.crt" || key == "tls.key" {
                    assert_eq!(s.type_, "kubernetes.io/tls", "{at}: {name}");
                }
            }
        }
    }

    /// Every listener reachable from outside the pod is a containerPort; a
    /// loopback one (the sidecar's outbound) is not; the admin listener is
    /// the port named admin and not on loopback (the kubelet probes the pod
    /// IP). Returns the data ports and the admin port.
    fn ports(&self, config: &cutover::config::Config) -> (Vec<i32>, i32) {
        let at = &self.at;
        let declared: BTreeMap<i32, String> = self
            .c
            .ports
            .iter()
            .flatten()
            .map(|p| (p.container_port, p.name.clone().unwrap_or_default()))
            .collect();
        let data: Vec<i32> = config
            .listeners
            .iter()
            .map(|l| l.address.parse::<SocketAddr>().unwrap())
            .filter(|a| !a.ip().is_loopback())
            .map(|a| i32::from(a.port()))
            .collect();
        assert!(
            !self.args.contains_key("--no-admin"),
            "{at}: probes need the admin listener"
        );
        let admin: SocketAddr = self
            .args
            .get("--admin")
            .map_or("127.0.0.1:9901", String::as_str)
            .parse()
            .unwrap();
        assert!(
            !admin.ip().is_loopback(),
            "{at}: the kubelet cannot probe a loopback admin listener"
        );
        let admin = i32::from(admin.port());
        let mut expected: BTreeSet<i32> = data.iter().copied().collect();
        expected.insert(admin);
        assert_eq!(
            declared.keys().copied().collect::<BTreeSet<_>>(),
            expected,
            "{at}: containerPorts vs config"
        );
        assert_eq!(
            declared.get(&admin).map(String::as_str),
            Some("admin"),
            "{at}"
        );
        (data, admin)
    }

    /// An exposed admin listener needs its token, from a Secret key.
    fn token(&self) {
        let at = &self.at;
        let token = self.args.get("--admin-token-file");
        let token = token.unwrap_or_else(|| panic!("{at}: exposed admin without a token"));
        let (mount, key) =
            mounted(&self.mounts, token).unwrap_or_else(|| panic!("{at}: {token} is not mounted"));
        let Source::Secret(name) = &mount.source else {
            panic!("{at}: token not from a Secret")
        };
        let s = self.m.secret(self.namespace, name);
        let s = s.unwrap_or_else(|| panic!("{at}: no Secret {name}"));
        assert!(
            s.keys.contains(&key),
            "{at}: Secret {name} has no key {key}"
        );
    }

    /// Readiness `/ready`, liveness `/live`, startup either, on the admin port.
    fn probes(&self, admin: i32) {
        let at = &self.at;
        for (probe, want) in [
            (&self.c.readiness_probe, Some(READY)),
            (&self.c.liveness_probe, Some(LIVE)),
            (&self.c.startup_probe, None),
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
                pod_port(self.template, &port),
                Some(admin),
                "{at}: probe port"
            );
        }
    }

    /// Shutdown fits the grace period, and the endpoint has time to leave
    /// before the listeners close.
    fn shutdown(&self) {
        let at = &self.at;
        let grace = self.pod().termination_grace_period_seconds.unwrap_or(30);
        let delay = duration_secs(&self.args, "--drain-delay", "5s");
        let timeout = duration_secs(&self.args, "--drain-timeout", "20s");
        let own = pre_stop_sleep(self.c);
        let (before, propagation) = if self.c.restart_policy.as_deref() == Some("Always") {
            // A native sidecar is stopped after the app: the app's preStop
            // covers the propagation.
            let app = self.pod().containers.iter().map(pre_stop_sleep).max();
            let app = app.unwrap_or(0);
            (app + own, app as f64 + delay)
        } else {
            (own, own as f64 + delay)
        };
        assert!(
            before as f64 + delay + timeout <= grace as f64,
            "{at}: preStop {before}s + delay {delay}s + timeout {timeout}s > grace {grace}s"
        );
        assert!(
            propagation >= MIN_PROPAGATION_SECS as f64,
            "{at}: {propagation}s for the endpoint to leave"
        );
    }

    /// The uid is the image's, and the workers fit the CPU limit.
    fn runs_as_the_image_user_within_its_cpu(&self) {
        let at = &self.at;
        let sc = self.c.security_context.as_ref().unwrap();
        assert_eq!(
            sc.run_as_user,
            Some(dockerfile().user_uid()),
            "{at}: runAsUser vs Dockerfile USER"
        );
        let workers: f64 = self
            .args
            .get("--workers")
            .map_or(1.0, |w| w.parse().unwrap());
        let cpu = self.c.resources.as_ref().and_then(|r| r.limits.as_ref());
        let cpu = cpu.and_then(|l| l.get("cpu")).unwrap();
        assert!(
            workers <= cpu_cores(&cpu.0),
            "{at}: --workers {workers} > cpu limit {}",
            cpu.0
        );
    }
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
    let proxy = crate::support::launch(
        "listeners: [{name: public, address: \"127.0.0.1:0\"}]\ngroups: {app: {endpoints: [\"127.0.0.1:9\"]}}\nroutes: [{name: web, rules: [{name: all, backends: [{group: app}]}]}]\n",
    )
    .admin(Some("a-token-of-sixteen-chars"))
    .start()
    .await;
    let admin = proxy.admin.unwrap();
    let client = crate::support::http1_client();
    for path in &paths {
        // No token: the kubelet sends none.
        let got = crate::support::get(&client, &format!("http://{admin}{path}"), &[]).await;
        assert_eq!(got.status, 200, "{path}: {}", got.body);
    }
    proxy.shut_down().await;
}
