//! RequestMirror conversion: shares carried over, several per rule, an
//! unresolvable mirror left out with a warning, bad shares named by field.

use super::{assert_error, route_with_rule, BASE};
use crate::compile::compile;
use crate::config::load::parse_text;
use crate::route::Inherited;

#[test]
fn mirrors_map_with_their_shares() {
    let yaml = route_with_rule(
        "  - filters:\n    - type: RequestMirror\n      requestMirror: {backendRef: {name: shadow, port: 80}, percent: 25}\n    - type: RequestMirror\n      requestMirror: {backendRef: {name: audit, port: 81}, fraction: {numerator: 1}}\n    - type: RequestMirror\n      requestMirror: {backendRef: {name: far, kind: ServiceImport, group: multicluster.x-k8s.io}}\n    backendRefs: [{name: reviews, port: 80}]\n",
    );
    let (config, origins) =
        parse_text(&format!("{BASE}---\n{yaml}")).unwrap_or_else(|e| panic!("{e}"));
    let table = compile(&config, &Inherited::default(), 1).unwrap_or_else(|e| panic!("{e}"));
    let mirrors = &config.routes[0].rules[0].mirror;
    let got: Vec<_> = mirrors
        .iter()
        .map(|m| {
            (
                m.group.as_str(),
                m.percent,
                m.fraction.map(|f| (f.numerator, f.denominator)),
            )
        })
        .collect();
    assert_eq!(
        got,
        [("shadow", Some(25), None), ("audit", None, Some((1, 100)))]
    );
    assert_eq!(
        config.groups["audit"].endpoints,
        ["audit.default.svc.cluster.local:81"]
    );
    let warnings: Vec<String> = origins.warnings.0.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].starts_with(
            "HTTPRoute reviews: spec.rules[0].filters[2].requestMirror.backendRef.group:"
        ) && warnings[0].ends_with("this mirror is left out"),
        "{}",
        warnings[0]
    );
    let rule = &table.rules[0];
    assert_eq!(rule.mirrors.len(), 2);
    assert_eq!(
        (rule.mirrors[0].numerator, rule.mirrors[0].denominator),
        (25, 100)
    );
    assert_eq!(rule.mirrors[1].max_body, 64 * 1024);
}

#[test]
fn bad_shares_and_misplaced_mirrors_are_errors_naming_the_field() {
    let rule = |filter: &str| {
        route_with_rule(&format!(
            "  - filters:\n    - type: RequestMirror\n      requestMirror: {filter}\n    backendRefs: [{{name: reviews, port: 80}}]\n"
        ))
    };
    assert_error(
        &rule("{backendRef: {name: shadow, port: 80}, percent: 101}"),
        "HTTPRoute reviews: spec.rules[0].filters[].requestMirror.percent: 101 is over 100",
    );
    assert_error(
        &rule("{backendRef: {name: shadow, port: 80}, fraction: {numerator: 3, denominator: 2}}"),
        "spec.rules[0].filters[].requestMirror.fraction.numerator: 3 is over the denominator 2",
    );
    assert_error(
        &rule("{backendRef: {name: shadow, port: 80}, percent: 5, fraction: {numerator: 1}}"),
        "requestMirror.fraction: give percent or fraction, not both",
    );
    assert_error(
        &rule("{backendRef: {name: shadow}}"),
        "spec.rules[0].filters[0].requestMirror.backendRef.port: required",
    );
    assert_error(
        &route_with_rule(
            "  - backendRefs:\n    - name: reviews\n      port: 80\n      filters:\n      - type: RequestMirror\n        requestMirror: {backendRef: {name: shadow, port: 80}}\n",
        ),
        "spec.rules[0].backendRefs[0].filters[0].type: RequestMirror is not supported on a backendRef",
    );
}

#[test]
fn cutover_mirror_fields_are_checked() {
    let yaml = |mirror: &str| {
        format!(
            "{BASE}groups: {{a: {{endpoints: [\"127.0.0.1:1\"]}}, shadow: {{endpoints: [\"127.0.0.1:2\"]}}}}\n\
             routes: [{{name: web, rules: [{{name: all, backends: [{{group: a}}], mirror: [{mirror}]}}]}}]\n"
        )
    };
    let err = |mirror: &str| {
        let config = crate::config::parse_yaml(&yaml(mirror)).unwrap_or_else(|e| panic!("{e}"));
        match compile(&config, &Inherited::default(), 1) {
            Ok(_) => panic!("expected an error for {mirror}"),
            Err(e) => e.to_string(),
        }
    };
    assert!(err("{group: shadw}").contains(
        "routes[0].rules[0].mirror[0].group: unknown group \"shadw\"; did you mean \"shadow\"?"
    ));
    assert!(err("{group: shadow, max_in_flight: 0}")
        .contains("routes[0].rules[0].mirror[0].max_in_flight: must be at least 1"));
    assert!(err("{group: shadow, timeout: 0s}")
        .contains("routes[0].rules[0].mirror[0].timeout: must be more than 0"));
    let ok = crate::config::parse_yaml(&yaml("{group: shadow, percent: 0}")).unwrap(); // ok: a test of a literal config
    let table = compile(&ok, &Inherited::default(), 1).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(table.rules[0].mirrors[0].numerator, 0);
}
