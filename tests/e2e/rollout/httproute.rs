//! The top-level `rollouts:` list: a rollout for a rule of a Gateway API
//! HTTPRoute, addressed by route and rule name, without copying the rule
//! into a cutover document; a wrong name is an error naming its field.

use super::*;

/// A cutover document (listener, the two groups, `rollouts`) and an
/// HTTPRoute `web` whose rule `split` sends everything to stable.
fn write_config(dir: &TempDir, stable: &Version, canary: &Version, rollouts: &str) -> PathBuf {
    dir.write(
        "cutover.yaml",
        &format!(
            r#"listeners: [{{ name: public, address: "127.0.0.1:0" }}]
groups:
  stable: {{ endpoints: ["{}"] }}
  canary: {{ endpoints: ["{}"] }}
rollouts:
{rollouts}"#,
            stable.addr, canary.addr
        ),
    );
    dir.write(
        "web.yaml",
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: web, namespace: shop }
spec:
  rules:
  - name: split
    backendRefs:
    - { name: stable, weight: 100 }
    - { name: canary, weight: 0 }
"#,
    );
    dir.0.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_httproute_rule_gets_a_rollout_from_the_rollouts_list_and_a_bad_canary_is_rolled_back() {
    let stable = version("stable", 0, 0).await;
    let canary = version("canary", 4, 0).await; // 25% errors
    let dir = TempDir::new("rollouts-list");
    let rollouts = "  - route: web\n    rule: split\n    rollout: { canary: canary, steps: [10, 50], hold: 200ms, metrics: { errors: {} } }\n";
    let path = write_config(&dir, &stable, &canary, rollouts);
    let loaded = cutover::config::load_path(&path).unwrap_or_else(|e| panic!("{e}"));
    let p = Proxy::start_with(loaded.config, None).await;

    let listed = p.admin(Method::GET, "/v1/analysis", "").await.1;
    assert!(listed.to_string().contains(r#""rule":"split""#), "{listed}");
    let (status, started) = p.act("start").await;
    assert_eq!(status, StatusCode::OK, "{started}");
    assert_eq!(weight(&started, "canary"), 10, "{started}");
    let (v, seen) = p.under_load(4, 15, |v| v["phase"] == "rolled_back").await;
    assert_eq!(v["phase"], "rolled_back", "{v}");
    assert_eq!(v["verdict"], "fail", "{v}");
    assert_eq!(weight(&v, "canary"), 0, "{v}");
    assert!(seen.canary_errors.load(Ordering::Relaxed) > 0);
    assert_eq!(seen.lost.load(Ordering::Relaxed), 0);
    p.shut_down().await;
}

#[tokio::test]
async fn a_rollouts_entry_naming_an_unknown_route_or_rule_is_rejected_with_its_path() {
    let stable = version("stable", 0, 0).await;
    let canary = version("canary", 0, 0).await;
    let dir = TempDir::new("rollouts-list-bad");
    let plan = "rollout: { canary: canary, steps: [10] }";
    let rollouts = format!(
        "  - {{ route: shop, rule: split, {plan} }}\n  - {{ route: web, rule: main, {plan} }}\n  - {{ route: web, rule: split, rollout: {{ canary: canry, steps: [10] }} }}\n  - {{ route: web, rule: split, {plan} }}\n"
    );
    let path = write_config(&dir, &stable, &canary, &rollouts);
    let loaded = cutover::config::load_path(&path).unwrap_or_else(|e| panic!("{e}"));
    let registry = cutover::route::Inherited::default();
    let errors = match cutover::compile::compile(&loaded.config, &registry, 1) {
        Ok(_) => panic!("unknown names were accepted"),
        Err(e) => loaded.origins.annotate(e).to_string(),
    };
    for want in [
        r#"cutover.yaml: rollouts[0].route: no route is named "shop" (routes: web)"#,
        r#"cutover.yaml: rollouts[1].rule: route "web" has no rule "main" (rules: split)"#,
        r#"cutover.yaml: rollouts[2].rollout.canary: "canry" is not a backend of this rule"#,
        "cutover.yaml: rollouts[3]: web/split already has a rollout at rollouts[2]",
    ] {
        assert!(errors.contains(want), "missing {want:?} in:\n{errors}");
    }
}
