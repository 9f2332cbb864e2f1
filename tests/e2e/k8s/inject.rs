//! `cutover inject`: real workload YAML in, typed objects out. An app-only
//! productpage injected with the binary passes every check the committed
//! sidecar manifest passes, and gets the same cutover container.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;

use super::container::check_cutover_containers;
use super::*;

/// `k8s/sidecar/deployment.yaml` before cutover: the app alone, listening
/// on 127.0.0.1:8081, probed on its own port.
const PRODUCTPAGE: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: productpage
  namespace: bookinfo
  labels:
    app.kubernetes.io/name: productpage
spec:
  replicas: 2
  selector:
    matchLabels:
      app.kubernetes.io/name: productpage
  template:
    metadata:
      labels:
        app.kubernetes.io/name: productpage
    spec:
      terminationGracePeriodSeconds: 30
      automountServiceAccountToken: false
      containers:
        - name: productpage
          image: registry.example.com/bookinfo/productpage:1.4.2
          env:
            - { name: LISTEN_ADDR, value: "127.0.0.1:8081" }
            - { name: REVIEWS_URL, value: "http://127.0.0.1:15001" }
          ports:
            - { name: http, containerPort: 8081 }
          readinessProbe:
            httpGet: { path: /health, port: http }
            periodSeconds: 5
          lifecycle:
            preStop:
              sleep: { seconds: 5 }
          resources:
            requests: { cpu: 100m, memory: 128Mi }
            limits: { cpu: "1", memory: 256Mi }
          securityContext:
            runAsNonRoot: true
            runAsUser: 10001
            readOnlyRootFilesystem: true
            allowPrivilegeEscalation: false
            capabilities: { drop: [ALL] }
"#;

/// Runs the binary: `cutover inject ARGS` with `input` on stdin.
fn cli(args: &[&str], input: &str) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
    let out = crate::support::run_with_stdin(cmd.arg("inject").args(args), input);
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

fn values(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(yaml).unwrap()
}

fn cutover_container(d: &Deployment) -> Container {
    let t = &d.spec.as_ref().unwrap().template;
    all_containers(t)
        .into_iter()
        .find(|c| is_cutover(c))
        .unwrap()
        .clone()
}

#[test]
fn an_injected_app_passes_the_sidecar_manifest_checks() {
    let args = ["--image", IMAGE, "--config-map", "productpage-cutover"];
    let (ok, injected, err) = cli(&args, PRODUCTPAGE);
    assert!(ok, "{err}");
    let sidecar = repo().join("k8s/sidecar/deployment.yaml");
    let m = load_with(&|file, text| {
        if file == sidecar {
            injected.clone()
        } else {
            text
        }
    });
    // Typed and without unknown fields (load), then the container checks:
    // config mounted and `cutover check`ed, ports, token, probes served by
    // a real admin listener, shutdown timeline, user, NetworkPolicy.
    assert_eq!(check_cutover_containers(&m), 3);
    let committed = load();
    let find = |m: &Manifests| {
        let (_, d) = m
            .deployments()
            .find(|(o, _)| o.name == "productpage")
            .unwrap();
        d.clone()
    };
    let (ours, theirs) = (find(&m), find(&committed));
    assert_eq!(cutover_container(&ours), cutover_container(&theirs));
    // The app's probe now reaches it through cutover, as in the manifest.
    let app = |d: &Deployment| {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .clone()
    };
    assert_eq!(
        app(&ours).readiness_probe.unwrap().http_get,
        app(&theirs).readiness_probe.unwrap().http_get
    );
}

const MIXED: &str = r#"apiVersion: apps/v1
kind: StatefulSet
metadata: { name: db, namespace: data }
spec:
  serviceName: db
  selector: { matchLabels: { app: db } }
  template:
    metadata: { labels: { app: db } }
    spec:
      initContainers:
        - { name: migrate, image: "db:2", args: [migrate] }
      containers:
        - name: db
          image: "db:2"
          ports: [{ containerPort: 8081 }]
          livenessProbe: { httpGet: { path: /live, port: 8081 }, periodSeconds: 10 }
          volumeMounts: [{ name: data, mountPath: /var/lib/db }]
  volumeClaimTemplates:
    - metadata: { name: data }
      spec: { accessModes: [ReadWriteOnce], resources: { requests: { storage: 1Gi } } }
---
apiVersion: v1
kind: Pod
metadata: { name: debug, namespace: data }
spec:
  containers: [{ name: shell, image: "busybox:1.36", args: [sleep, "3600"] }]
---
apiVersion: v1
kind: ConfigMap
metadata: { name: db-cutover, namespace: data }
data:
  cutover.yaml: |
    listeners: [{ name: inbound, address: "0.0.0.0:8080", routes: [db] }]
  port: "8081"
"#;

#[test]
fn statefulsets_and_pods_round_trip_and_inject_is_idempotent() {
    let once = cutover::inject::inject(MIXED, &cutover::inject::Options::default()).unwrap();
    let out = values(&once);
    let file = Path::new("inject output");
    let sts: StatefulSet = typed(file, &out[0]);
    let spec = sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let init = spec.init_containers.as_ref().unwrap();
    assert_eq!(init.len(), 2);
    assert_eq!(
        (init[0].name.as_str(), init[0].restart_policy.as_deref()),
        ("cutover", Some("Always"))
    );
    assert_eq!(
        init[1].name, "migrate",
        "the app's own init containers run after cutover starts"
    );
    let port = spec.containers[0]
        .liveness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap()
        .port
        .clone();
    assert_eq!(port, IntOrString::String("inbound".into()));
    let volumes = spec.volumes.as_ref().unwrap();
    assert_eq!(volumes[0].config_map.as_ref().unwrap().name, "db-cutover");
    let pod: Pod = typed(file, &out[1]);
    let init = pod.spec.as_ref().unwrap().init_containers.clone().unwrap();
    assert_eq!(init[0].name, "cutover");
    let original = values(MIXED);
    assert_eq!(out[2], original[2], "a ConfigMap passes through unchanged");

    // Twice is once; uninject(inject(x)) is x, field by field.
    let twice = cutover::inject::inject(&once, &cutover::inject::Options::default()).unwrap();
    assert_eq!(twice, once);
    let back = values(&cutover::inject::uninject(&once).unwrap());
    assert_eq!(back, original);
    let typed_back: StatefulSet = typed(file, &back[0]);
    assert_eq!(typed_back, typed::<StatefulSet>(file, &original[0]));
    // And through the binary.
    let (ok, cli_back, err) = cli(&["--uninject", "-"], &once);
    assert!(ok, "{err}");
    assert_eq!(values(&cli_back), original);
}

#[test]
fn errors_name_the_object_and_field_and_write_nothing() {
    let clash = MIXED.replace("containerPort: 8081", "containerPort: 15001");
    let (ok, out, err) = cli(&[], &clash);
    assert!(!ok);
    assert!(out.is_empty(), "{out}");
    assert_eq!(
        err.trim(),
        "cutover inject: StatefulSet data/db: spec.template.spec.containers[0].ports[0].containerPort: 15001 is cutover's outbound port (--outbound-port); move the app to --app-port 8081 or pick another --outbound-port"
    );
    let (ok, _, err) = cli(&["--drain-timeout", "31s"], PRODUCTPAGE);
    assert!(!ok);
    assert!(
        err.contains("Deployment bookinfo/productpage: spec.template.spec.terminationGracePeriodSeconds: 30 s is too short for the drain: the app's preStop sleep (5 s) and then cutover's --drain-timeout (31 s) need 36 s"),
        "{err}"
    );
}
