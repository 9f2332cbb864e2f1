//! Load-time validation: shadowed rules and unknown groups, named by field path.

use super::*;

#[test]
fn shadowed_rule_is_rejected_naming_both_rules() {
    let head = "listeners:\n  - name: public\n    address: \"127.0.0.1:0\"\ngroups:\n  app:\n    endpoints: [\"127.0.0.1:1\"]\nroutes:\n";
    let rule = |name: &str, header: &str| {
        format!("      - name: {name}\n        matches: [{{path: {{value: /beta}}, headers: [{header}]}}]\n        backends: [{{group: app}}]\n")
    };
    let present = "{name: x-beta, type: Present}";
    let exact = "{name: x-beta, value: \"1\"}";

    // `any-beta` takes every request `beta-one` would: same precedence, and
    // listed first.
    let yaml = format!(
        "{head}  - name: web\n    rules:\n{}{}",
        rule("any-beta", present),
        rule("beta-one", exact)
    );
    let errors = compile_errors(&yaml);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let e = &errors[0];
    assert!(e.starts_with("routes[0].rules[1]:"), "{e}");
    assert!(
        e.contains("\"beta-one\"") && e.contains("\"any-beta\""),
        "{e}"
    );
    assert!(e.contains("never match"), "{e}");

    // The other way round both are reachable.
    let yaml = format!(
        "{head}  - name: web\n    rules:\n{}{}",
        rule("beta-one", exact),
        rule("any-beta", present)
    );
    assert_eq!(compile_errors(&yaml), Vec::<String>::new());

    // An exact path listed twice, and a catch-all route hidden by an
    // earlier one on the same (any) host: both reported, with the route.
    let yaml = format!(
        "{head}  - name: first\n    rules:\n      - name: all\n        backends: [{{group: app}}]\n      - name: docs\n        matches: [{{path: {{type: Exact, value: /docs}}}}]\n        backends: [{{group: app}}]\n      - name: docs-again\n        matches: [{{path: {{type: Exact, value: /docs}}}}]\n        backends: [{{group: app}}]\n  - name: second\n    rules:\n      - name: everything\n        backends: [{{group: app}}]\n"
    );
    let errors = compile_errors(&yaml);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    let joined = errors.join("\n");
    assert!(
        joined.contains("routes[0].rules[2]: rule \"docs-again\" can never match")
            && joined.contains("rule \"docs\" of route \"first\""),
        "{joined}"
    );
    assert!(
        joined.contains("routes[1].rules[0]: rule \"everything\" can never match")
            && joined.contains("rule \"all\" of route \"first\""),
        "{joined}"
    );

    // Different hostnames do not shadow each other.
    let yaml = format!(
        "{head}  - name: first\n    hostnames: [a.example.com]\n    rules:\n      - name: all\n        backends: [{{group: app}}]\n  - name: second\n    hostnames: [b.example.com]\n    rules:\n      - name: all\n        backends: [{{group: app}}]\n"
    );
    assert_eq!(compile_errors(&yaml), Vec::<String>::new());
}

#[test]
fn unknown_group_error_names_field_path_and_suggests() {
    let yaml = "listeners:
  - name: public
    address: \"127.0.0.1:0\"
groups:
  stable: {endpoints: [\"127.0.0.1:1\"]}
  canary: {endpoints: [\"127.0.0.1:2\"]}
routes:
  - name: web
    rules:
      - name: first
        matches: [{path: {value: /a}}]
        backends: [{group: stable}]
      - name: second
        backends: [{group: stable, weight: 90}, {group: canary, weight: 5}, {group: canry, weight: 5}]
      - name: third
        matches: [{path: {value: /b}}]
        backends: [{group: zzzzzzzz}]
";
    let errors = compile_errors(yaml);
    assert_eq!(
        errors,
        [
            "routes[0].rules[1].backends[2].group: unknown group \"canry\"; did you mean \"canary\"?",
            "routes[0].rules[2].backends[0].group: unknown group \"zzzzzzzz\"",
        ]
    );
}
