//! Resilience settings are validated with errors that name the field.

use cutover::route::Inherited;

fn errors_of(yaml: &str) -> Vec<String> {
    let config = match cutover::config::parse_yaml(yaml) {
        Ok(c) => c,
        Err(e) => return e.to_string().lines().map(str::to_owned).collect(),
    };
    match cutover::compile::compile(&config, &Inherited::default(), 1) {
        Ok(_) => Vec::new(),
        Err(e) => e.to_string().lines().map(str::to_owned).collect(),
    }
}

fn yaml(group: &str, rule: &str) -> String {
    format!(
        "listeners:\n  - name: public\n    address: \"127.0.0.1:0\"\n\
         groups:\n  app:\n    endpoints: [\"127.0.0.1:9\"]\n{group}\
         routes:\n  - name: web\n    rules:\n      - name: all\n        backends: [{{group: app}}]\n{rule}"
    )
}

#[test]
fn every_bad_value_is_reported_with_its_field_path() {
    let rule = "        timeouts: {request: 0ms, per_try: 1s}\n\
                \x20       retry:\n\
                \x20         attempts: 11\n\
                \x20         backoff: {base: 2s, max: 1s}\n\
                \x20         replay_buffer: 32MiB\n\
                \x20         budget: {ratio: 11.0}\n\
                \x20         retriable_status_codes: [503, 700]\n";
    let group = "    connect_timeout: 0ms\n\
                 \x20   body_idle_timeout: 0s\n\
                 \x20   outlier: {max_ejection_percent: 101, failure_percentage: 0, \
                 base_ejection_time: 10s, max_ejection_time: 5s, interval: 0s}\n\
                 \x20   limits: {max_requests: 0, max_connections: 0}\n\
                 \x20   health_check: {path: healthz, interval: 1s, timeout: 2s, \
                 healthy_threshold: 0}\n";
    let got = errors_of(&yaml(group, rule));
    let want = [
        "routes[0].rules[0].timeouts.request: must be more than 0",
        "routes[0].rules[0].timeouts.per_try: 1s must be more than 0 and at most \
         timeouts.request (0ms)",
        "routes[0].rules[0].retry.attempts: 11 must be 0..=10",
        "routes[0].rules[0].retry.backoff.base: must be at most backoff.max",
        "routes[0].rules[0].retry.replay_buffer: 32MiB is over the 16MiB limit",
        "routes[0].rules[0].retry.budget.ratio: must be 0.0..=10.0",
        "routes[0].rules[0].retry.retriable_status_codes[1]: 700 is not an HTTP status",
        "routes[0].rules[0].retry.retriable_status_codes: has no effect unless retry.on \
         lists retriable-status-codes",
        "groups.app.connect_timeout: must be more than 0",
        "groups.app.body_idle_timeout: must be more than 0",
        "groups.app.outlier.max_ejection_percent: must be 0..=100",
        "groups.app.outlier.failure_percentage: must be 1..=100",
        "groups.app.outlier.base_ejection_time: must be more than 0 and at most \
         max_ejection_time",
        "groups.app.outlier.interval: must be more than 0",
        "groups.app.limits.max_connections: must be at least 1",
        "groups.app.limits.max_requests: must be at least 1",
        "groups.app.health_check.path: \"healthz\" must be a path starting with '/'",
        "groups.app.health_check.timeout: interval and timeout must be more than 0, \
         timeout at most interval",
        "groups.app.health_check.healthy_threshold: thresholds must be at least 1",
    ];
    for w in want {
        assert!(got.iter().any(|g| g == w), "missing {w:?} in {got:#?}");
    }
    assert_eq!(got.len(), want.len(), "{got:#?}");
}

#[test]
fn bad_names_and_units_are_reported_with_their_field_path() {
    let cases = [
        (
            "",
            "        retry: {attempts: 11}\n",
            "routes[0].rules[0].retry.attempts: 11 must be 0..=10",
        ),
        (
            "",
            "        retry: {on: [5xxx]}\n",
            "routes[0].rules[0].retry.on[0]",
        ),
        (
            "",
            "        retry: {fallback: other_group}\n",
            "routes[0].rules[0].retry.fallback",
        ),
        (
            "",
            "        retry: {attemps: 2}\n",
            "routes[0].rules[0].retry",
        ),
        (
            "",
            "        timeouts: {per_try: 2}\n",
            "routes[0].rules[0].timeouts.per_try",
        ),
        (
            "",
            "        on_group_unavailable: drop\n",
            "routes[0].rules[0].on_group_unavailable",
        ),
        (
            "    outlier: {base_ejection_time: 30}\n",
            "",
            "groups.app.outlier.base_ejection_time",
        ),
        (
            "    limits: {max_pending: -1}\n",
            "",
            "groups.app.limits.max_pending",
        ),
        (
            "    health_check: {interval: 1s}\n",
            "",
            "groups.app.health_check",
        ),
    ];
    for (group, rule, want) in cases {
        let got = errors_of(&yaml(group, rule));
        assert_eq!(got.len(), 1, "{group}{rule}: {got:#?}");
        assert!(
            got[0].starts_with(want),
            "{group}{rule}: {got:?} should name {want}"
        );
    }
    let bad_body = "listeners:\n  - name: public\n    address: \"127.0.0.1:0\"\n    \
                    max_request_body: 10GB\nroutes: []\n";
    let got = errors_of(bad_body);
    assert!(
        got[0].starts_with("listeners[0].max_request_body"),
        "{got:?}"
    );
}
