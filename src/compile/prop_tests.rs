//! The config compiler on arbitrary YAML-ish input: built from the real
//! fields with good, bad and odd values, then sometimes cut short or salted
//! with a stray line. Every input either compiles or gives errors; none
//! panics.

use proptest::prelude::*;

use super::compile;
use crate::config::parse_yaml;
use crate::route::Inherited;

fn pick(values: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    prop::sample::select(values)
}

fn listener() -> impl Strategy<Value = String> {
    (
        pick(&["public", "admin-2", "bad name", "", "x.y"]),
        pick(&[
            "127.0.0.1:0",
            "[::1]:0",
            "0.0.0.0:99999",
            "nowhere",
            "127.0.0.1",
        ]),
        pick(&["", "    max_connections: 0\n", "    max_connections: 5\n"]),
        pick(&[
            "",
            "    max_request_body: 1KiB\n",
            "    max_request_body: 0\n",
        ]),
        pick(&[
            "",
            "    request_body_timeout: 300ms\n",
            "    request_body_timeout: 0s\n",
            "    request_body_timeout: 99999999h\n",
        ]),
        pick(&["", "    routes: [web]\n", "    routes: [nope]\n"]),
    )
        .prop_map(|(name, address, a, b, c, d)| {
            format!("  - name: \"{name}\"\n    address: \"{address}\"\n{a}{b}{c}{d}")
        })
}

fn group() -> impl Strategy<Value = String> {
    (
        pick(&["app", "canary", "bad group", "stable"]),
        pick(&[
            "[\"127.0.0.1:9\"]",
            "[]",
            "[\"nohost\"]",
            "[\"a.example:80\", \"[::1]:1\"]",
        ]),
        pick(&["", "    protocol: h2\n", "    protocol: http1\n"]),
        pick(&[
            "",
            "    balance: least_request\n",
            "    balance: random_walk\n",
        ]),
        pick(&["", "    connect_timeout: 0s\n", "    connect_timeout: 1s\n"]),
    )
        .prop_map(|(name, endpoints, p, b, t)| {
            format!("  \"{name}\":\n    endpoints: {endpoints}\n{p}{b}{t}")
        })
}

fn rule() -> impl Strategy<Value = String> {
    (
        pick(&["all", "canary", "", "all"]),
        pick(&[
            "",
            "        matches:\n          - path: { type: PathPrefix, value: /app }\n",
            "        matches:\n          - path: { type: Exact, value: \"no-slash\" }\n",
            "        matches:\n          - path: { type: RegularExpression, value: \"([\" }\n",
            "        matches:\n          - headers:\n              - { name: x-canary, type: Exact, value: always }\n",
            "        matches:\n          - headers:\n              - { name: \"bad header\", type: Exact, value: v }\n",
        ]),
        pick(&[
            "{group: app}",
            "{group: app, weight: 0}",
            "{group: app, weight: 95}, {group: canary, weight: 5}",
            "{group: missing}",
        ]),
        pick(&[
            "",
            "        sticky: { cookie: session }\n",
            "        timeouts: { request: 0s }\n",
            "        timeouts: { request: 1s, per_try: 2s }\n",
            "        retry: { replay_buffer: 1GiB }\n",
            "        response_header_modifier:\n          remove: [server]\n",
        ]),
    )
        .prop_map(|(name, matches, backends, extra)| {
            format!("      - name: \"{name}\"\n{matches}        backends: [{backends}]\n{extra}")
        })
}

fn route() -> impl Strategy<Value = String> {
    (
        pick(&["web", "api", "web", "bad route"]),
        pick(&[
            "",
            "    hostnames: [a.example]\n",
            "    hostnames: [\"*.example\"]\n",
            "    hostnames: [\"bad host\"]\n",
        ]),
        prop::collection::vec(rule(), 0..3),
    )
        .prop_map(|(name, hosts, rules)| {
            format!(
                "  - name: \"{name}\"\n{hosts}    rules:\n{}",
                rules.concat()
            )
        })
}

fn config_text() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(listener(), 0..3),
        prop::collection::vec(group(), 0..3),
        prop::collection::vec(route(), 0..3),
        pick(&[
            "",
            "access_log: { sample_rate: 2.0 }\n",
            "unknown_field: 1\n",
        ]),
    )
        .prop_map(|(l, g, r, extra)| {
            let or_empty = |v: Vec<String>, empty: &str| {
                if v.is_empty() {
                    format!(" {empty}\n")
                } else {
                    format!("\n{}", v.concat())
                }
            };
            format!(
                "listeners:{}groups:{}routes:{}{extra}",
                or_empty(l, "[]"),
                or_empty(g, "{}"),
                or_empty(r, "[]")
            )
        })
}

/// The generated text, cut at a random point or with a stray line spliced in.
fn mangled() -> impl Strategy<Value = String> {
    (
        config_text(),
        any::<prop::sample::Index>(),
        0u8..8,
        "[ -~]{0,20}",
    )
        .prop_map(|(text, at, how, stray)| {
            let mut cut = at.index(text.len() + 1);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            match how {
                0 => text[..cut].to_owned(),
                1 => format!("{}\n{stray}\n{}", &text[..cut], &text[cut..]),
                _ => text,
            }
        })
}

/// One registry for every case: a fresh one builds a metrics registry, which
/// costs more than the compile under test.
static REGISTRY: std::sync::LazyLock<Inherited> = std::sync::LazyLock::new(Inherited::default);

proptest! {
    #![proptest_config(crate::prop_config(2_000))]

    #[test]
    fn any_config_compiles_or_is_rejected_without_panic(text in mangled()) {
        if let Ok(cfg) = parse_yaml(&text) {
            if let Err(e) = compile(&cfg, &REGISTRY, 1) {
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }
}
