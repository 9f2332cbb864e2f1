//! `/v1/explain` runs the proxy's own decision code: over a table of hosts
//! (ports, case, a trailing dot, IPv6 literals), paths, headers and queries,
//! it names the rule and group a real request through the listener gets.

use super::*;

/// Five upstreams `a`..`e`; every rule tags its responses with `x-rule`.
fn explain_config(ups: &[&Upstream]) -> String {
    let mut y =
        String::from("listeners:\n  - name: public\n    address: \"127.0.0.1:0\"\ngroups:\n");
    for u in ups {
        y.push_str(&format!("  {}:\n    endpoints: [\"{}\"]\n", u.name, u.addr));
    }
    let rule = |name: &str, matches: &str, backends: &str, extra: &str| {
        let mut r = format!("      - name: {name}\n");
        if !matches.is_empty() {
            r.push_str(&format!("        matches: [{matches}]\n"));
        }
        r.push_str(&format!("        backends: [{backends}]\n{extra}"));
        r.push_str(&format!(
            "        response_header_modifier: {{set: [{{name: x-rule, value: {name}}}]}}\n"
        ));
        r
    };
    y.push_str("routes:\n");
    y.push_str(&route(
        "site",
        &["a.example"],
        &[
            rule("api", "{path: {value: /api}}", "{group: a}", ""),
            rule(
                "beta",
                "{headers: [{name: x-beta, value: \"1\"}]}",
                "{group: b}",
                "",
            ),
            rule(
                "v2",
                "{query_params: [{name: v, value: \"2\"}]}",
                "{group: b}",
                "",
            ),
            rule("rest", "", "{group: c}", ""),
        ],
    ));
    y.push_str(&route(
        "wild",
        &["*.wild.example"],
        &[rule("wild", "", "{group: d}", "")],
    ));
    y.push_str(&route(
        "cohorts",
        &["sticky.example"],
        &[rule(
            "cohort",
            "",
            "{group: d, weight: 50}, {group: e, weight: 50}",
            "        sticky: {header: x-user}\n",
        )],
    ));
    y.push_str(&route(
        "any",
        &[],
        &[rule("fallback", "", "{group: e}", "")],
    ));
    y
}

/// Percent-encodes a query value.
fn encoded(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `(rule, group)` of a real request, sent byte by byte with exactly this
/// Host header.
async fn real(p: &Proxy, host: &str, path: &str, headers: &[(&str, &str)]) -> (String, String) {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    let resp = raw(p.addr, req.as_bytes()).await;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    assert!(head.starts_with("HTTP/1.1 200"), "{host} {path}: {resp}");
    let rule = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-rule: ")
                .map(str::to_string)
        })
        .unwrap_or_else(|| panic!("{host} {path}: no x-rule in {head}"));
    (rule, body.to_string())
}

/// `(rule, group)` as `/v1/explain` names them.
async fn explained(
    p: &Proxy,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (String, String) {
    let mut q = format!("/v1/explain?host={}&path={}", encoded(host), encoded(path));
    for (k, v) in headers {
        q.push_str(&format!("&header={}", encoded(&format!("{k}:{v}"))));
    }
    let (status, v) = p.api(Method::GET, &q, "").await;
    assert_eq!(status, 200, "{q}: {v}");
    assert_eq!(v["matched"], true, "{q}: {v}");
    let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    (text("rule"), text("group"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_and_a_real_request_choose_the_same_rule_and_group() {
    let ups = [
        upstream("a").await,
        upstream("b").await,
        upstream("c").await,
        upstream("d").await,
        upstream("e").await,
    ];
    let refs: Vec<&Upstream> = ups.iter().collect();
    let p = launch(&explain_config(&refs)).admin(None).start().await;
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let cases: &[Case] = &[
        ("a.example", "/api/v1/users", &[]),
        ("A.Example.", "/api", &[]),
        ("a.example:8080", "/other", &[]),
        ("a.example.", "/other", &[("x-beta", "1")]),
        ("a.example", "/other?v=2", &[]),
        ("a.example", "/other?v=3", &[]),
        ("x.wild.example", "/", &[]),
        ("Deep.X.Wild.Example.:80", "/z", &[]),
        ("wild.example", "/", &[]),
        ("sticky.example", "/", &[("x-user", "alice")]),
        ("sticky.example", "/", &[("x-user", "bob")]),
        ("sticky.example:443", "/", &[("x-user", "carol")]),
        ("sticky.example", "/", &[("x-user", "dave")]),
        ("[::1]:80", "/", &[]),
        ("[::1]", "/api", &[]),
        ("127.0.0.1:8080", "/", &[]),
        ("localhost.", "/", &[]),
    ];
    for (host, path, headers) in cases {
        let got = real(&p, host, path, headers).await;
        let said = explained(&p, host, path, headers).await;
        assert_eq!(said, got, "{host} {path} {headers:?}: explain vs the proxy");
    }
    // The table covers every rule and group.
    let mut seen = std::collections::BTreeSet::new();
    for (host, path, headers) in cases {
        seen.insert(real(&p, host, path, headers).await);
    }
    let rules: std::collections::BTreeSet<_> = seen.iter().map(|(r, _)| r.as_str()).collect();
    let groups: std::collections::BTreeSet<_> = seen.iter().map(|(_, g)| g.as_str()).collect();
    assert_eq!(rules.len(), 7, "{seen:?}");
    assert_eq!(groups.len(), 5, "{seen:?}");
}
