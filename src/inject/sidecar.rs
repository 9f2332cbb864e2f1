//! The cutover native sidecar that `inject` adds: the container and volumes
//! of `k8s/sidecar/deployment.yaml`, with the ports and names from the flags.

use super::yaml::Node;
use super::Options;

/// The sidecar's container name; also how `inject` recognises its own.
pub const CONTAINER: &str = "cutover";
/// The volume holding the config (a ConfigMap, mounted as a directory).
pub const CONFIG_VOLUME: &str = "cutover-config";
/// The volume holding the admin token (a Secret).
pub const TOKEN_VOLUME: &str = "cutover-admin-token";
const CONFIG_DIR: &str = "/etc/cutover/config";
const TOKEN_DIR: &str = "/etc/cutover/admin";

fn quoted(s: &str) -> String {
    // A JSON string is a YAML double-quoted scalar.
    serde_json::Value::String(s.to_string()).to_string()
}

fn parse(yaml: &str) -> Node {
    // The text is built here from JSON-quoted strings and integers only, and
    // the unit test `template_parses` covers every branch of it.
    serde_saphyr::from_str(yaml).expect("the sidecar template is valid YAML") // ok: see above
}

/// The init container (`restartPolicy: Always`): started before the app,
/// stopped after it, so the app's outbound calls work through its shutdown.
pub fn container(o: &Options, config_map_key: &str) -> Node {
    let config = quoted(&format!("{CONFIG_DIR}/{config_map_key}"));
    let image = quoted(&o.image);
    let (inbound, admin) = (o.inbound_port, o.admin_port);
    let drain = quoted(&format!("{}s", o.drain_timeout_secs));
    parse(&format!(
        r#"name: {CONTAINER}
image: {image}
restartPolicy: Always
args:
  - run
  - --config
  - {config}
  - --admin
  - "0.0.0.0:{admin}"
  - --admin-token-file
  - "{TOKEN_DIR}/token"
  - --workers
  - "1"
  - --drain-delay
  - 0s
  - --drain-timeout
  - {drain}
ports:
  - {{ name: inbound, containerPort: {inbound}, protocol: TCP }}
  - {{ name: admin, containerPort: {admin}, protocol: TCP }}
startupProbe:
  httpGet: {{ path: /ready, port: admin }}
  periodSeconds: 1
  failureThreshold: 30
readinessProbe:
  httpGet: {{ path: /ready, port: admin }}
  periodSeconds: 5
  failureThreshold: 1
livenessProbe:
  httpGet: {{ path: /live, port: admin }}
  periodSeconds: 10
  failureThreshold: 3
resources:
  requests: {{ cpu: 50m, memory: 32Mi }}
  limits: {{ cpu: "1", memory: 128Mi }}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  readOnlyRootFilesystem: true
  allowPrivilegeEscalation: false
  capabilities: {{ drop: [ALL] }}
volumeMounts:
  - {{ name: {CONFIG_VOLUME}, mountPath: {CONFIG_DIR}, readOnly: true }}
  - {{ name: {TOKEN_VOLUME}, mountPath: {TOKEN_DIR}, readOnly: true }}
"#
    ))
}

/// The config volume (ConfigMap `o.config_map`, as a directory so edits
/// are hot-reloaded) and the token volume (Secret `o.token_secret`, key
/// `token`). The token is mode 0444: only cutover's container mounts the
/// volume, and no pod-level `fsGroup` has to be added for uid 65532.
pub fn volumes(o: &Options, config_map: &str) -> [Node; 2] {
    let config_map = quoted(config_map);
    let secret = quoted(&o.token_secret);
    [
        parse(&format!(
            "name: {CONFIG_VOLUME}\nconfigMap: {{ name: {config_map} }}\n"
        )),
        parse(&format!(
            "name: {TOKEN_VOLUME}\nsecret: {{ secretName: {secret}, defaultMode: 292 }}\n"
        )),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses() {
        let o = Options::default();
        let c = container(&o, "cutover.yaml");
        assert_eq!(c.get("name").and_then(Node::as_str), Some(CONTAINER));
        assert_eq!(
            c.get("restartPolicy").and_then(Node::as_str),
            Some("Always")
        );
        let v = volumes(&o, "web-cutover");
        assert_eq!(v[1].get("name").and_then(Node::as_str), Some(TOKEN_VOLUME));
    }
}
