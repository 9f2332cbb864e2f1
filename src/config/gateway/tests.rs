//! HTTPRoute conversion: the examples of the Gateway API docs, every mapped
//! field, and the error of every unsupported one.

mod grpc;
mod mirror;
mod retry;

use crate::compile::compile;
use crate::config::load::parse_text;
use crate::config::model::{PathMatchType, RetryOn, ValueMatchType};
use crate::config::resilience::Dur;
use crate::config::{Config, ConfigErrors};
use crate::route::Inherited;

const BASE: &str = "listeners: [{name: public, address: \"127.0.0.1:0\"}]\n";

/// Loads and compiles, with compile errors annotated as `check` shows them.
fn compiled(routes: &str) -> Result<Config, ConfigErrors> {
    let (config, origins) = parse_text(&format!("{BASE}---\n{routes}"))?;
    compile(&config, &Inherited::default(), 1).map_err(|e| origins.annotate(e))?;
    Ok(config)
}

fn errors(routes: &str) -> Vec<String> {
    match compiled(routes) {
        Ok(_) => panic!("expected errors for:\n{routes}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

fn assert_error(routes: &str, want: &str) {
    let got = errors(routes);
    assert!(
        got.iter().any(|e| e.contains(want)),
        "want an error containing {want:?}, got {got:#?}"
    );
}

/// The traffic-splitting example of the Gateway API docs.
const CANARY: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: foo-route
  namespace: shop
  labels: {app: foo}
  annotations: {flagger.app/managed: "true"}
  resourceVersion: "42"
spec:
  parentRefs:
  - name: example-gateway
    sectionName: http
  hostnames:
  - "foo.example.com"
  rules:
  - backendRefs:
    - name: foo-v1
      port: 8080
      weight: 90
    - name: foo-v2
      port: 8080
      weight: 10
status:
  parents: []
"#;

#[test]
fn canary_split_becomes_groups_and_weights() {
    let cfg = compiled(CANARY).unwrap();
    let route = &cfg.routes[0];
    assert_eq!(route.name, "foo-route");
    assert_eq!(route.hostnames, ["foo.example.com"]);
    let rule = &route.rules[0];
    assert_eq!(rule.name, "rule-0");
    assert!(rule.matches.is_empty(), "no matches: every request");
    let backends: Vec<(&str, u32)> = rule
        .backends
        .iter()
        .map(|b| (b.group.as_str(), b.weight))
        .collect();
    assert_eq!(backends, [("foo-v1", 90), ("foo-v2", 10)]);
    assert_eq!(
        cfg.groups["foo-v1"].endpoints,
        ["foo-v1.shop.svc.cluster.local:8080"]
    );
    assert_eq!(
        cfg.groups["foo-v2"].endpoints,
        ["foo-v2.shop.svc.cluster.local:8080"]
    );
}

#[test]
fn matches_map_field_by_field() {
    let cfg = compiled(
        r#"apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata: {name: web}
spec:
  rules:
  - name: canary-header
    matches:
    - headers: [{name: x-canary, value: always}]
    - path: {type: Exact, value: /login}
      method: POST
      queryParams:
      - {name: v, value: "2"}
      - {type: RegularExpression, name: id, value: "[0-9]+"}
    - path: {type: RegularExpression, value: "/users/[0-9]+"}
      headers: [{type: RegularExpression, name: x-user, value: "a.*"}]
    - path: {type: PathPrefix}
    backendRefs: [{name: web-canary, port: 80}]
  - matches: [{path: {value: /old}}]
    backendRefs: [{name: web-stable, port: 80, weight: 0}]
"#,
    )
    .unwrap();
    let rule = &cfg.routes[0].rules[0];
    assert_eq!(rule.name, "canary-header");
    let m = &rule.matches;
    assert!(m[0].path.is_none());
    assert_eq!(m[0].headers[0].name, "x-canary");
    assert_eq!(m[0].headers[0].kind, ValueMatchType::Exact);
    assert_eq!(m[0].headers[0].value.as_deref(), Some("always"));
    let login = m[1].path.as_ref().unwrap();
    assert_eq!(
        (login.kind, login.value.as_str()),
        (PathMatchType::Exact, "/login")
    );
    assert_eq!(m[1].method.as_deref(), Some("POST"));
    assert_eq!(m[1].query_params[0].kind, ValueMatchType::Exact);
    assert_eq!(m[1].query_params[1].kind, ValueMatchType::RegularExpression);
    assert_eq!(m[1].query_params[1].value.as_deref(), Some("[0-9]+"));
    let users = m[2].path.as_ref().unwrap();
    assert_eq!(users.kind, PathMatchType::RegularExpression);
    assert_eq!(m[2].headers[0].kind, ValueMatchType::RegularExpression);
    let prefix = m[3].path.as_ref().unwrap();
    assert_eq!(
        (prefix.kind, prefix.value.as_str()),
        (PathMatchType::PathPrefix, "/")
    );
    // Default weight 1; weight 0 keeps the group at 0%.
    assert_eq!(rule.backends[0].weight, 1);
    let second = &cfg.routes[0].rules[1];
    assert_eq!(second.name, "rule-1");
    assert_eq!(second.backends[0].weight, 0);
    assert_eq!(
        cfg.groups["web-stable"].endpoints,
        ["web-stable.default.svc.cluster.local:80"]
    );
}

#[test]
fn header_modifiers_timeouts_and_retry_map() {
    let cfg = compiled(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  rules:
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: x-env, value: prod}]
        add: [{name: x-trace, value: "1"}]
        remove: [x-debug]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        add: [{name: x-served-by, value: cutover}]
    timeouts: {request: 1m30s, backendRequest: 500ms}
    retry: {attempts: 3, codes: [500, 503]}
    backendRefs: [{name: web, port: 80}]
  - matches: [{path: {value: /slow}}]
    timeouts: {backendRequest: 1m}
    backendRefs: [{name: web, port: 80}]
"#,
    )
    .unwrap();
    let rule = &cfg.routes[0].rules[0];
    let req = rule.request_header_modifier.as_ref().unwrap();
    assert_eq!(
        (req.set[0].name.as_str(), req.set[0].value.as_str()),
        ("x-env", "prod")
    );
    assert_eq!(req.add[0].name, "x-trace");
    assert_eq!(req.remove, ["x-debug"]);
    let resp = rule.response_header_modifier.as_ref().unwrap();
    assert_eq!(resp.add[0].value, "cutover");
    assert_eq!(rule.timeouts.request, Dur::secs(90));
    assert_eq!(rule.timeouts.per_try, Some(Dur::ms(500)));
    assert_eq!(rule.retry.attempts, 3);
    assert!(rule.retry.on.contains(&RetryOn::RetriableStatusCodes));
    assert!(rule.retry.on.contains(&RetryOn::ConnectFailure));
    assert_eq!(rule.retry.retriable_status_codes, [500, 503]);
    // A retry stanza retries connection errors too (the retry GEP).
    assert!(rule.retry.on.contains(&RetryOn::Reset));
    // Only backendRequest, longer than the default request timeout: the
    // request timeout grows so one attempt can use its time.
    let slow = &cfg.routes[0].rules[1];
    assert_eq!(slow.timeouts.per_try, Some(Dur::secs(60)));
    assert_eq!(slow.timeouts.request, Dur::secs(60));
    // Untouched defaults.
    assert_eq!(slow.retry, Default::default());
}

#[test]
fn a_defined_group_wins_over_the_service() {
    let cfg = parse_text(&format!(
        "{BASE}groups:\n  reviews-canary: {{endpoints: [\"10.0.0.9:9080\"], balance: least_request}}\n---\n{}",
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews}
spec:
  rules:
  - backendRefs:
    - {name: reviews-canary, port: 9080, weight: 5}
    - {name: reviews, port: 9080, weight: 95}
"#
    ))
    .unwrap()
    .0;
    assert_eq!(cfg.groups["reviews-canary"].endpoints, ["10.0.0.9:9080"]);
    assert_eq!(
        cfg.groups["reviews"].endpoints,
        ["reviews.default.svc.cluster.local:9080"]
    );
}

fn route_with_rule(rule: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: reviews}}\nspec:\n  rules:\n{rule}"
    )
}

#[test]
fn every_unsupported_filter_is_an_error_naming_its_field() {
    let cases = [
        (
            "- type: ExternalAuth\n      externalAuth: {protocol: HTTP}",
            "HTTPRoute reviews: spec.rules[0].filters[1].type: ExternalAuth is not supported by cutover (no external authorization)",
        ),
        (
            "- type: ExtensionRef\n      extensionRef: {group: example.com, kind: Foo, name: bar}",
            "spec.rules[0].filters[1].type: ExtensionRef is not supported by cutover",
        ),
    ];
    for (filter, want) in cases {
        let rule = format!(
            "  - filters:\n    - type: RequestHeaderModifier\n      requestHeaderModifier: {{set: [{{name: a, value: b}}]}}\n    {filter}\n    backendRefs: [{{name: reviews, port: 80}}]\n"
        );
        assert_error(&route_with_rule(&rule), want);
    }
}

#[test]
fn unsupported_fields_and_bad_backend_refs_are_errors() {
    let cases = [
        (
            "  - backendRefs: [{name: reviews, port: 80, filters: [{type: RequestHeaderModifier}]}]\n",
            "HTTPRoute reviews: spec.rules[0].backendRefs[0].filters[0].requestHeaderModifier: required with type RequestHeaderModifier",
        ),
        (
            "  - backendRefs: [{name: reviews}]\n",
            "spec.rules[0].backendRefs[0].port: required: no cutover group is named \"reviews\"",
        ),
        (
            "  - backendRefs: [{name: reviews, port: 80}, {name: reviews, port: 81}]\n",
            "spec.rules[0].backendRefs[1]: Service \"reviews\" resolves to reviews.default.svc.cluster.local:81",
        ),
        (
            "  - backendRefs: [{name: Reviews_v1, port: 80}]\n",
            "spec.rules[0].backendRefs[0].name: \"Reviews_v1\" is not a Kubernetes name",
        ),
        (
            "  - sessionPersistence: {sessionName: s, type: Cookie}\n    backendRefs: [{name: reviews, port: 80}]\n",
            "spec.rules[0].sessionPersistence: is not supported by cutover",
        ),
        (
            "  - retry: {attempts: 2, codes: [503, 302]}\n    backendRefs: [{name: reviews, port: 80}]\n",
            "spec.rules[0].retry.codes[1]: 302 is not a status code Gateway API retries (400-599)",
        ),
        (
            "  - timeouts: {backendRequest: 1.5s}\n    backendRefs: [{name: reviews, port: 80}]\n",
            "spec.rules[0].timeouts.backendRequest: \"1.5s\" is not a Gateway API duration",
        ),
        (
            "  - filters: [{type: RequestHeaderModifier}]\n    backendRefs: [{name: reviews, port: 80}]\n",
            "spec.rules[0].filters[0].requestHeaderModifier: required with type RequestHeaderModifier",
        ),
        (
            "  - filters: [{type: RequestHeaderModifier, requestHeaderModifier: {}}, {type: RequestHeaderModifier, requestHeaderModifier: {}}]\n    backendRefs: [{name: reviews, port: 80}]\n",
            "spec.rules[0].filters[1].type: RequestHeaderModifier is given twice",
        ),
    ];
    for (rule, want) in cases {
        assert_error(&route_with_rule(rule), want);
    }
    assert_error(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {}\n",
        "HTTPRoute r: spec.rules: needs at least one rule",
    );
    assert_error(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {namespace: x}\nspec: {rules: [{backendRefs: [{name: a, port: 1}]}]}\n",
        "metadata.name: required",
    );
}

#[test]
fn document_level_errors_name_kind_version_and_field() {
    let one = |text: &str| -> String {
        match parse_text(text) {
            Ok(_) => panic!("expected an error for {text}"),
            Err(e) => e.to_string(),
        }
    };
    let got = one("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: []}\n");
    assert!(got.starts_with("kind: "), "{got}");
    assert!(got.contains("kind: \"Service\" is not supported"), "{got}");
    let got = one("apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: HTTPRoute\nmetadata: {name: web}\nspec: {}\n");
    assert!(
        got.contains("apiVersion: \"gateway.networking.k8s.io/v1alpha2\" is not supported"),
        "{got}"
    );
    // Unknown fields keep their path and line.
    let got = one(&format!(
        "{BASE}---\n{}",
        route_with_rule("  - backendRefs: [{name: a, port: 1}]\n    filter: []\n")
    ));
    assert!(
        got.contains("spec.rules[0].filter: unknown field `filter`"),
        "{got}"
    );
    assert!(got.contains("line 9"), "{got}");
    // Present is cutover's, not Gateway API's.
    let got = one(&route_with_rule(
        "  - matches: [{headers: [{type: Present, name: x, value: y}]}]\n    backendRefs: [{name: a, port: 1}]\n",
    ));
    assert!(
        got.contains("spec.rules[0].matches[0].headers[0].type: unknown variant `Present`"),
        "{got}"
    );
    let got = one("- listeners\n");
    assert!(got.contains("expected mapping start at line 1"), "{got}");
    // Mixing the two kinds in one document.
    let got = one("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: web}\nspec: {}\nlisteners: []\n");
    assert!(
        got.contains("listeners: a cutover config field in a Kubernetes document"),
        "{got}"
    );
    assert!(
        parse_text("kind: HTTPRoute\nmetadata: {name: w}\nspec: {}\n")
            .unwrap_err()
            .to_string()
            .contains("apiVersion: required")
    );
}

#[test]
fn compile_errors_point_at_the_httproute_field() {
    assert_error(
        &route_with_rule("  - matches: [{path: {type: RegularExpression, value: \"/a/(\"}}]\n    backendRefs: [{name: a, port: 1}]\n"),
        "HTTPRoute reviews: spec.rules[0].matches[0].path.value: invalid regular expression",
    );
    assert_error(
        &route_with_rule(
            "  - backendRefs: [{name: a, port: 1}, {name: b, port: 1, weight: 2000000}]\n",
        ),
        "HTTPRoute reviews: spec.rules[0].backendRefs[1].weight: 2000000 is out of range",
    );
    assert_error(
        &route_with_rule("  - filters:\n    - type: ResponseHeaderModifier\n      responseHeaderModifier: {set: [{name: x-a, value: b}]}\n    - type: RequestHeaderModifier\n      requestHeaderModifier: {set: [{name: connection, value: close}]}\n    backendRefs: [{name: a, port: 1}]\n"),
        "HTTPRoute reviews: spec.rules[0].filters[1].requestHeaderModifier.set[0].name",
    );
    assert_error(
        &route_with_rule("  - matches: [{queryParams: [{type: RegularExpression, name: q, value: \"(\"}]}]\n    backendRefs: [{name: a, port: 1}]\n"),
        "HTTPRoute reviews: spec.rules[0].matches[0].queryParams[0].value",
    );
    // Two HTTPRoutes with one name (e.g. from two namespaces).
    let twice = format!(
        "{}---\n{}",
        route_with_rule("  - backendRefs: [{name: a, port: 1}]\n"),
        route_with_rule(
            "  - matches: [{path: {value: /b}}]\n    backendRefs: [{name: a, port: 1}]\n"
        )
    );
    assert_error(
        &twice,
        "HTTPRoute reviews: metadata.name: route \"reviews\" is defined twice",
    );
}

#[test]
fn cutover_documents_merge_and_duplicates_are_errors() {
    let text = format!(
        "{BASE}groups: {{stable: {{endpoints: [\"127.0.0.1:1\"]}}}}\n---\nlisteners: [{{name: second, address: \"127.0.0.1:0\"}}]\nroutes: [{{name: web, rules: [{{name: all, backends: [{{group: stable}}]}}]}}]\n"
    );
    let (cfg, _) = parse_text(&text).unwrap();
    assert_eq!(cfg.listeners.len(), 2);
    assert_eq!(cfg.routes[0].name, "web");
    let dup = format!("{text}---\ngroups: {{stable: {{endpoints: []}}}}\n");
    let got = parse_text(&dup).unwrap_err().to_string();
    assert!(
        got.contains("groups.stable: group \"stable\" is defined twice (first at groups.stable)"),
        "{got}"
    );
    // A plain single file keeps its paths exactly.
    let (cfg, origins) = parse_text("listeners: [{name: a, address: nope}]\nroutes: []\n").unwrap();
    let e = compile(&cfg, &Inherited::default(), 1).unwrap_err();
    assert_eq!(origins.annotate(e.clone()), e);
}

/// What `kubectl get httproute -o yaml` prints: server-written metadata,
/// defaulted fields, and a status.
#[test]
fn kubectl_output_is_accepted() {
    let cfg = compiled(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: |
      {"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute"}
  creationTimestamp: "2026-11-22T03:00:00Z"
  generation: 3
  name: reviews
  namespace: bookinfo
  ownerReferences:
  - apiVersion: flagger.app/v1beta1
    kind: Canary
    name: reviews
    uid: 0b4f2a4e-0000-0000-0000-000000000000
    controller: true
  resourceVersion: "123456"
  uid: 5d0c8b7e-0000-0000-0000-000000000000
spec:
  parentRefs:
  - group: gateway.networking.k8s.io
    kind: Gateway
    name: example-gateway
    namespace: infra
    sectionName: http
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /
    backendRefs:
    - group: ""
      kind: Service
      name: reviews-primary
      port: 9080
      weight: 75
    - group: ""
      kind: Service
      name: reviews-canary
      port: 9080
      weight: 25
status:
  parents:
  - conditions:
    - lastTransitionTime: "2026-11-22T03:00:00Z"
      message: Accepted
      observedGeneration: 3
      reason: Accepted
      status: "True"
      type: Accepted
    controllerName: example.com/gateway-controller
    parentRef:
      group: gateway.networking.k8s.io
      kind: Gateway
      name: example-gateway
"#,
    )
    .unwrap();
    let weights: Vec<u32> = cfg.routes[0].rules[0]
        .backends
        .iter()
        .map(|b| b.weight)
        .collect();
    assert_eq!(weights, [75, 25]);
}

#[test]
fn zero_timeouts_mean_no_timeout() {
    use super::convert::NO_TIMEOUT;
    let timeouts = |t: &str| {
        let yaml = route_with_rule(&format!(
            "  - timeouts: {t}\n    backendRefs: [{{name: reviews, port: 80}}]\n"
        ));
        let config = compiled(&yaml).unwrap_or_else(|e| panic!("{e}"));
        config.routes[0].rules[0].timeouts.clone()
    };
    let t = timeouts("{request: 0s, backendRequest: 0s}");
    assert_eq!((t.request, t.per_try), (NO_TIMEOUT, None));
    let t = timeouts("{request: 0s, backendRequest: 2s}");
    assert_eq!((t.request, t.per_try), (NO_TIMEOUT, Some(Dur::secs(2))));
    // backendRequest 0s alone: no per-try limit, the default request bound.
    let t = timeouts("{backendRequest: 0s}");
    assert_eq!((t.request, t.per_try), (Dur::secs(15), None));
}

/// Gateway API's partial validity: unresolvable backendRefs and rules
/// without any load, as empty groups marked unresolved, with a warning
/// naming the field.
#[test]
fn unresolvable_backend_refs_load_with_warnings() {
    let yaml = route_with_rule(
        "  - backendRefs:\n    - {name: reviews, port: 80, weight: 3}\n    - {name: reviews, port: 80, kind: ServiceImport, group: multicluster.x-k8s.io, weight: 1}\n  - matches: [{path: {value: /empty}}]\n",
    );
    let (config, origins) =
        parse_text(&format!("{BASE}---\n{yaml}")).unwrap_or_else(|e| panic!("{e}"));
    compile(&config, &Inherited::default(), 1).unwrap_or_else(|e| panic!("{e}"));
    let warnings: Vec<String> = origins.warnings.0.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].starts_with("HTTPRoute reviews: spec.rules[0].backendRefs[1].group: \"multicluster.x-k8s.io\" is not supported")
            && warnings[0].ends_with("its share of the requests (weight 1) answers 500"),
        "{}",
        warnings[0]
    );
    let rules = &config.routes[0].rules;
    let marks: Vec<(&str, u32, bool)> = rules[0]
        .backends
        .iter()
        .map(|b| (b.group.as_str(), b.weight, b.unresolved))
        .collect();
    assert_eq!(
        marks,
        [
            ("reviews", 3, false),
            ("unresolved.serviceimport.default.reviews", 1, true)
        ]
    );
    assert!(
        rules[1].backends[0].unresolved,
        "a rule without backendRefs"
    );
    assert!(config.groups["unresolved.serviceimport.default.reviews"]
        .endpoints
        .is_empty());
}

/// A backendRef into another namespace resolves only with a ReferenceGrant
/// of that namespace; without one its share answers 500, with a warning.
#[test]
fn cross_namespace_backend_refs_need_a_reference_grant() {
    let route = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: web, namespace: web}\nspec:\n  rules:\n  - backendRefs: [{name: api, namespace: backends, port: 80}]\n";
    let grant = "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: web-to-api, namespace: backends}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: web}]\n  to: [{group: \"\", kind: Service, name: api}]\n";
    let load = |text: String| parse_text(&text).unwrap_or_else(|e| panic!("{e}"));

    let (config, origins) = load(format!("{BASE}---\n{route}"));
    let b = &config.routes[0].rules[0].backends[0];
    assert!(b.unresolved, "{b:?}");
    let w = origins.warnings.0[0].to_string();
    assert!(
        w.starts_with("HTTPRoute web: spec.rules[0].backendRefs[0].namespace: \"backends\" is another namespace, and no ReferenceGrant"),
        "{w}"
    );

    let (config, origins) = load(format!("{BASE}---\n{route}---\n{grant}"));
    let b = &config.routes[0].rules[0].backends[0];
    assert!(!b.unresolved && b.group == "api", "{b:?}");
    assert!(origins.warnings.0.is_empty());
    assert_eq!(
        config.groups["api"].endpoints,
        ["api.backends.svc.cluster.local:80"]
    );

    // A grant's fields in an HTTPRoute, and a grant without `to`: errors.
    let mixed = route.replace("  rules:", "  to: [{group: \"\", kind: Service}]\n  rules:");
    assert_error(&mixed, "spec: `from` and `to` belong to a ReferenceGrant");
    let half = grant.replace("  to: [{group: \"\", kind: Service, name: api}]\n", "");
    assert_error(&half, "spec: a ReferenceGrant needs `from` and `to`");
}
