use super::*;

const WEB: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  selector:
    matchLabels: { app: web }
  template:
    metadata:
      labels: { app: web }
    spec:
      containers:
        - name: web
          image: web:1
          ports:
            - { name: http, containerPort: 8081 }
          readinessProbe:
            httpGet: { path: /health, port: http }
          livenessProbe:
            httpGet: { path: /live, port: 8081 }
          lifecycle:
            preStop:
              sleep: { seconds: 5 }
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports: [{ port: 80, targetPort: inbound }]
"#;

fn docs(yaml: &str) -> Vec<Node> {
    serde_saphyr::from_multiple(yaml).unwrap()
}

fn pod_spec(doc: &Node) -> &Node {
    doc.get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("spec"))
        .unwrap()
}

#[test]
fn injects_the_sidecar_and_moves_app_probes_to_inbound() {
    let out = inject(WEB, &Options::default()).unwrap();
    let d = docs(&out);
    let spec = pod_spec(&d[0]);
    let init = spec.get("initContainers").and_then(Node::as_seq).unwrap();
    assert_eq!(init[0].get("name").and_then(Node::as_str), Some("cutover"));
    let app = &spec.get("containers").and_then(Node::as_seq).unwrap()[0];
    for probe in ["readinessProbe", "livenessProbe"] {
        let port = app
            .get(probe)
            .and_then(|p| p.get("httpGet"))
            .and_then(|h| h.get("port"));
        assert_eq!(port.and_then(Node::as_str), Some("inbound"), "{probe}");
    }
    let volumes = spec.get("volumes").and_then(Node::as_seq).unwrap();
    let cm = volumes[0].get("configMap").and_then(|c| c.get("name"));
    assert_eq!(cm.and_then(Node::as_str), Some("web-cutover"));
    // Other kinds are untouched.
    assert_eq!(d[1], docs(WEB)[1]);
}

#[test]
fn inject_is_idempotent_and_uninject_restores_the_input() {
    let once = inject(WEB, &Options::default()).unwrap();
    assert_eq!(inject(&once, &Options::default()).unwrap(), once);
    assert_eq!(docs(&uninject(&once).unwrap()), docs(WEB));
    // A second inject with other flags replaces the first one's sidecar.
    let other = Options {
        image: "cutover:9".into(),
        ..Options::default()
    };
    let again = inject(&once, &other).unwrap();
    assert_eq!(again, inject(WEB, &other).unwrap());
}

#[test]
fn uninject_removes_only_keys_inject_created() {
    let bare = "kind: Pod\nmetadata: { name: p }\nspec:\n  containers: [{ name: a, image: a }]\n";
    let with_lists = "kind: Pod\nmetadata:\n  name: p\n  annotations: {}\nspec:\n  initContainers: []\n  volumes: []\n  containers: [{ name: a, image: a }]\n";
    for input in [bare, with_lists] {
        let out = inject(input, &Options::default()).unwrap();
        assert_ne!(docs(&out), docs(input));
        assert_eq!(docs(&uninject(&out).unwrap()), docs(input), "{input}");
    }
}

#[test]
fn a_list_from_kubectl_get_is_injected_item_by_item() {
    let list = "apiVersion: v1\nkind: List\nitems:\n  - kind: Pod\n    metadata: { name: p }\n    spec: { containers: [{ name: a, image: a }] }\n";
    let out = inject(list, &Options::default()).unwrap();
    let d = docs(&out);
    let item = &d[0].get("items").and_then(Node::as_seq).unwrap()[0];
    let init = item.get("spec").and_then(|s| s.get("initContainers"));
    assert_eq!(init.and_then(Node::as_seq).map(<[Node]>::len), Some(1));
}

fn error(input: &str, o: &Options) -> String {
    inject(input, o).unwrap_err().to_string()
}

#[test]
fn errors_name_the_object_and_the_field() {
    let clash = WEB.replace("containerPort: 8081", "containerPort: 9901");
    assert_eq!(
        error(&clash, &Options::default()),
        "Deployment shop/web: spec.template.spec.containers[0].ports[0].containerPort: 9901 is cutover's admin port (--admin-port); move the app to --app-port 8081 or pick another --admin-port"
    );
    let short = WEB.replace(
        "    spec:\n      containers:",
        "    spec:\n      terminationGracePeriodSeconds: 8\n      containers:",
    );
    let e = error(&short, &Options::default());
    assert!(
        e.starts_with("Deployment shop/web: spec.template.spec.terminationGracePeriodSeconds: 8 s is too short for the drain"),
        "{e}"
    );
    let named = WEB.replace("name: http", "name: admin");
    assert!(error(&named, &Options::default())
        .contains("ports[0].name: the port name admin is cutover's"));
    let same = Options {
        outbound_port: 8080,
        ..Options::default()
    };
    assert_eq!(
        error(WEB, &same),
        "--inbound-port and --outbound-port are both 8080"
    );
    assert!(error("a: [", &Options::default()).starts_with("input is not YAML"));
}

#[test]
fn strings_that_look_like_numbers_stay_strings() {
    let input = "kind: ConfigMap\nmetadata: { name: c }\ndata:\n  version: \"1.10\"\n  on: \"true\"\n  text: |\n    line one\n    line two\n";
    let out = inject(input, &Options::default()).unwrap();
    assert_eq!(docs(&out), docs(input), "{out}");
}
