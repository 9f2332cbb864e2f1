//! Routing through the real proxy: weighted splits, header routing, Gateway API
//! precedence, hostnames, header modifiers, local replies, load-time
//! validation and publishing a new table.
//!
//! Rules that must be told apart tag their responses with
//! `response_header_modifier: {set: [{name: x-rule, value: <rule>}]}`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::support::*;

/// The support clients' type.
pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Requests in flight at once in the load-style tests.
pub(crate) const CONCURRENCY: usize = 50;

/// Runs `f` on every item, at most `limit` at a time, each on its own task;
/// results come back in item order.
pub(crate) async fn fan_out<T, F, Fut>(items: Vec<T>, limit: usize, f: F) -> Vec<Fut::Output>
where
    T: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limit));
    let mut set = JoinSet::new();
    let n = items.len();
    for (i, item) in items.into_iter().enumerate() {
        let slots = Arc::clone(&slots);
        let fut = f(item);
        set.spawn(async move {
            let _slot = slots.acquire_owned().await.expect("semaphore open");
            (i, fut.await)
        });
    }
    let mut out: Vec<Option<Fut::Output>> = (0..n).map(|_| None).collect();
    while let Some(done) = set.join_next().await {
        let (i, v) = done.expect("request task panicked");
        out[i] = Some(v);
    }
    out.into_iter()
        .map(|v| v.expect("every task reported"))
        .collect()
}

/// Sends `n` GETs to `url` (keep-alive, `CONCURRENCY` at a time) and counts
/// the responses by `key`. Every response must be 200.
pub(crate) async fn tally(
    client: &HttpClient,
    url: &str,
    n: usize,
    headers: &[(&str, &str)],
    key: fn(&Got) -> String,
) -> BTreeMap<String, usize> {
    let headers: Arc<Vec<(String, String)>> = Arc::new(
        headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let results = fan_out((0..n).collect(), CONCURRENCY, |_| {
        let (client, url, headers) = (client.clone(), url.to_string(), Arc::clone(&headers));
        async move {
            let h: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let got = get(&client, &url, &h).await;
            assert_eq!(got.status, 200, "{url}: {}", got.body);
            key(&got)
        }
    })
    .await;
    let mut counts = BTreeMap::new();
    for k in results {
        *counts.entry(k).or_insert(0) += 1;
    }
    counts
}

/// Request headers as name/value pairs.
type Headers<'a> = &'a [(&'a str, &'a str)];

/// Tally key: which upstream answered.
pub(crate) fn by_body(got: &Got) -> String {
    got.body.clone()
}

/// Tally key: `<rule>/<upstream>`, the rule from the `x-rule` tag.
pub(crate) fn by_rule_and_body(got: &Got) -> String {
    format!("{}/{}", header_of(got, "x-rule"), got.body)
}

/// A response header as text, `-` when absent.
pub(crate) fn header_of(got: &Got, name: &str) -> String {
    got.headers
        .get(name)
        .map_or("-".to_string(), |v| v.to_str().unwrap().to_string())
}

/// Asserts that `observed` successes out of `n` trials are within 4.5 sigma of
/// a binomial(n, p) mean (false-failure odds about 7 in a million).
pub(crate) fn assert_binomial(label: &str, observed: usize, n: usize, p: f64) {
    let mean = n as f64 * p;
    let sigma = (n as f64 * p * (1.0 - p)).sqrt();
    let bound = 4.5 * sigma;
    assert!(
        (observed as f64 - mean).abs() <= bound,
        "{label}: {observed} of {n}, expected {mean:.0} +- {bound:.1} (p = {p})"
    );
}

fn count(counts: &BTreeMap<String, usize>, key: &str) -> usize {
    counts.get(key).copied().unwrap_or(0)
}

/// `listeners` (one, `public` on 127.0.0.1:0) and `groups`, one endpoint per
/// upstream; append `routes:` YAML to it.
pub(crate) fn head(groups: &[(&str, &[&Upstream])]) -> String {
    let mut y =
        String::from("listeners:\n  - name: public\n    address: \"127.0.0.1:0\"\ngroups:\n");
    for (name, ups) in groups {
        let eps: Vec<String> = ups.iter().map(|u| format!("\"{}\"", u.addr)).collect();
        y.push_str(&format!("  {name}:\n    endpoints: [{}]\n", eps.join(", ")));
    }
    y
}

/// A rule sending to group `app` whose responses carry `x-rule: <name>`.
/// `matches` is a YAML flow list of match objects, `""` for none.
fn tagged(name: &str, matches: &str) -> String {
    let mut r = format!("      - name: {name}\n");
    if !matches.is_empty() {
        r.push_str(&format!("        matches: [{matches}]\n"));
    }
    r.push_str("        backends: [{group: app}]\n");
    r.push_str(&format!(
        "        response_header_modifier: {{set: [{{name: x-rule, value: {name}}}]}}\n"
    ));
    r
}

/// A route named `name` with `hostnames` and the given rule YAML.
fn route(name: &str, hostnames: &[&str], rules: &[String]) -> String {
    let mut r = format!("  - name: {name}\n");
    if !hostnames.is_empty() {
        let h: Vec<String> = hostnames.iter().map(|h| format!("\"{h}\"")).collect();
        r.push_str(&format!("    hostnames: [{}]\n", h.join(", ")));
    }
    r.push_str("    rules:\n");
    for rule in rules {
        r.push_str(rule);
    }
    r
}

/// Sends `method path` with headers and returns the `x-rule` tag, insisting
/// on a 200 from upstream `app`.
async fn rule_for(
    p: &Proxy,
    c: &HttpClient,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> String {
    let mut b = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(p.url(path));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let got = send(c, b.body(Full::new(Bytes::new())).unwrap()).await;
    assert_eq!(got.status, 200, "{method} {path} {headers:?}: {}", got.body);
    assert_eq!(got.body, "app");
    header_of(&got, "x-rule")
}

/// Compiles `yaml` the way the proxy does on load; the errors as displayed.
pub(crate) fn compile_errors(yaml: &str) -> Vec<String> {
    let cfg = cutover::config::parse_yaml(yaml).unwrap_or_else(|e| panic!("parse: {e}"));
    let registry = cutover::route::Inherited::default();
    match cutover::config::compile::compile(&cfg, &registry, 1) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(|f| f.to_string()).collect(),
    }
}

fn split_rules(weights: &[(&str, u32)]) -> String {
    let b: Vec<String> = weights
        .iter()
        .map(|(g, w)| format!("{{group: {g}, weight: {w}}}"))
        .collect();
    format!(
        "      - name: split\n        backends: [{}]\n",
        b.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_90_10_split_is_within_binomial_bound() {
    let stable = upstream("stable").await;
    let canary = upstream("canary").await;
    let yaml = config(
        &[("stable", &stable), ("canary", &canary)],
        &split_rules(&[("stable", 90), ("canary", 10)]),
    );
    let p = proxy(&yaml).await;
    let c = http1_client();
    const N: usize = 10_000;
    let counts = tally(&c, &p.url("/"), N, &[], by_body).await;
    assert_eq!(
        count(&counts, "stable") + count(&counts, "canary"),
        N,
        "{counts:?}"
    );
    assert_binomial("canary share of 90/10", count(&counts, "canary"), N, 0.10);
    // What the client saw is what the upstreams served.
    assert_eq!(stable.count(), count(&counts, "stable"));
    assert_eq!(canary.count(), count(&counts, "canary"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_group_split_60_30_10_and_weight_zero_groups_get_nothing() {
    let g60 = upstream("g60").await;
    let g30 = upstream("g30").await;
    let g10 = upstream("g10").await;
    let zero_first = upstream("zero-first").await;
    let zero_mid = upstream("zero-mid").await;
    let zero_last = upstream("zero-last").await;
    let yaml = config(
        &[
            ("g60", &g60),
            ("g30", &g30),
            ("g10", &g10),
            ("zero-first", &zero_first),
            ("zero-mid", &zero_mid),
            ("zero-last", &zero_last),
        ],
        &split_rules(&[
            ("zero-first", 0),
            ("g60", 60),
            ("g30", 30),
            ("zero-mid", 0),
            ("g10", 10),
            ("zero-last", 0),
        ]),
    );
    let p = proxy(&yaml).await;
    let c = http1_client();
    const N: usize = 10_000;
    let counts = tally(&c, &p.url("/"), N, &[], by_body).await;
    assert_binomial("g60", count(&counts, "g60"), N, 0.6);
    assert_binomial("g30", count(&counts, "g30"), N, 0.3);
    assert_binomial("g10", count(&counts, "g10"), N, 0.1);
    assert_eq!(
        count(&counts, "g60") + count(&counts, "g30") + count(&counts, "g10"),
        N,
        "weight-0 groups answered: {counts:?}"
    );
    for zero in [&zero_first, &zero_mid, &zero_last] {
        assert_eq!(zero.count(), 0, "{} has weight 0", zero.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_rule_takes_only_requests_with_the_header() {
    let stable = upstream("stable").await;
    let canary = upstream("canary").await;
    // The weighted rule is listed first and also matches prefix `/`: the
    // header rule wins by precedence (more header matches), not by order.
    let rules = "      - name: split
        matches: [{path: {type: PathPrefix, value: /}}]
        backends: [{group: stable, weight: 90}, {group: canary, weight: 10}]
        response_header_modifier: {set: [{name: x-rule, value: split}]}
      - name: canary-header
        matches: [{path: {type: PathPrefix, value: /}, headers: [{name: x-canary, value: always}]}]
        backends: [{group: canary}]
        response_header_modifier: {set: [{name: x-rule, value: canary-header}]}
";
    let p = proxy(&config(&[("stable", &stable), ("canary", &canary)], rules)).await;
    let c = http1_client();

    let with = tally(
        &c,
        &p.url("/any/path"),
        500,
        &[("x-canary", "always")],
        by_rule_and_body,
    )
    .await;
    assert_eq!(with.len(), 1, "{with:?}");
    assert_eq!(count(&with, "canary-header/canary"), 500, "{with:?}");

    const N: usize = 2_000;
    let without = tally(&c, &p.url("/any/path"), N, &[], by_rule_and_body).await;
    let (s, k) = (
        count(&without, "split/stable"),
        count(&without, "split/canary"),
    );
    assert_eq!(
        s + k,
        N,
        "requests without the header must take the weighted rule: {without:?}"
    );
    assert_binomial("canary share without the header", k, N, 0.10);

    // Header names are case-insensitive, values are exact and case-sensitive.
    for (hdr, expected) in [
        (("X-Canary", "always"), "canary-header"),
        (("x-canary", "Always"), "split"),
        (("x-canary", "never"), "split"),
        (("x-canaryx", "always"), "split"),
    ] {
        let got = get(&c, &p.url("/"), &[hdr]).await;
        assert_eq!(header_of(&got, "x-rule"), expected, "header {hdr:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_precedence_not_list_order() {
    let app = upstream("app").await;
    // Listed least specific first, so that list order would give the wrong
    // answer everywhere.
    let web = [
        tagged("root", ""),
        tagged("api", "{path: {type: PathPrefix, value: /api}}"),
        tagged("api-post", "{path: {type: PathPrefix, value: /api}, method: POST}"),
        tagged("api-v1", "{path: {type: PathPrefix, value: /api/v1/}}"),
        tagged("users-exact", "{path: {type: Exact, value: /api/v1/users}}"),
        tagged("rx", "{path: {type: RegularExpression, value: \"/r/[0-9]+\"}}"),
        tagged("r-prefix", "{path: {type: PathPrefix, value: /r}}"),
        tagged("r-exact", "{path: {type: Exact, value: /r/7}}"),
        tagged("h-none", "{path: {value: /h}}"),
        tagged("h-one", "{path: {value: /h}, headers: [{name: x-a, value: \"1\"}]}"),
        tagged(
            "h-two",
            "{path: {value: /h}, headers: [{name: x-a, value: \"1\"}, {name: x-b, value: \"2\"}]}",
        ),
        tagged("q-one", "{path: {value: /q}, query_params: [{name: a, value: \"1\"}]}"),
        tagged(
            "q-two",
            "{path: {value: /q}, query_params: [{name: a, value: \"1\"}, {name: b, value: \"2\"}]}",
        ),
        tagged(
            "mix-query",
            "{path: {value: /mix}, query_params: [{name: a, value: \"1\"}, {name: b, value: \"2\"}]}",
        ),
        tagged("mix-header", "{path: {value: /mix}, headers: [{name: x-m, value: \"1\"}]}"),
        tagged("mix-method", "{path: {value: /mix}, method: PUT}"),
        // Equal precedence: config order decides, not the names.
        tagged("z-first", "{path: {value: /t}, headers: [{name: x-t, type: Present}]}"),
        tagged("a-second", "{path: {value: /t}, headers: [{name: x-u, type: Present}]}"),
    ];
    // Equal precedence across routes: the route listed first wins.
    let early = [tagged(
        "zz-early",
        "{path: {value: /tie}, headers: [{name: x-v, type: Present}]}",
    )];
    let late = [tagged(
        "aa-late",
        "{path: {value: /tie}, headers: [{name: x-w, type: Present}]}",
    )];
    let yaml = format!(
        "{}routes:\n{}{}{}",
        head(&[("app", &[&app])]),
        route("web", &[], &web),
        route("zz", &[], &early),
        route("aa", &[], &late),
    );
    let p = proxy(&yaml).await;
    let c = http1_client();
    let cases: &[(&str, &str, Headers, &str)] = &[
        ("GET", "/", &[], "root"),
        ("GET", "/other", &[], "root"),
        // Prefixes are whole segments; the longest wins.
        ("GET", "/api", &[], "api"),
        ("GET", "/api/", &[], "api"),
        ("GET", "/api/x", &[], "api"),
        ("GET", "/apix", &[], "root"),
        ("GET", "/api/v1", &[], "api-v1"),
        ("GET", "/api/v1/x/y", &[], "api-v1"),
        ("GET", "/api/v1x", &[], "api"),
        // Exact beats any prefix, and only the exact path.
        ("GET", "/api/v1/users", &[], "users-exact"),
        ("GET", "/api/v1/users/", &[], "api-v1"),
        ("GET", "/api/v1/users/7", &[], "api-v1"),
        ("GET", "/api/v1/users?page=2", &[], "users-exact"),
        // Method beats no method on the same prefix; a longer prefix beats
        // both; exact beats everything.
        ("POST", "/api/x", &[], "api-post"),
        ("GET", "/api/x", &[], "api"),
        ("POST", "/api/v1/x", &[], "api-v1"),
        ("POST", "/api/v1/users", &[], "users-exact"),
        // Regular expressions match the whole path.
        ("GET", "/r/123", &[], "rx"),
        ("GET", "/r/7", &[], "r-exact"),
        ("GET", "/r/12a", &[], "r-prefix"),
        ("GET", "/r/123/x", &[], "r-prefix"),
        ("GET", "/x/r/123", &[], "root"),
        // More header matches beat fewer.
        ("GET", "/h", &[], "h-none"),
        ("GET", "/h", &[("x-a", "1")], "h-one"),
        ("GET", "/h", &[("x-a", "1"), ("x-b", "2")], "h-two"),
        ("GET", "/h", &[("x-b", "2")], "h-none"),
        ("GET", "/h", &[("x-a", "2"), ("x-b", "2")], "h-none"),
        // More query matches beat fewer; values are percent-decoded.
        ("GET", "/q?a=1", &[], "q-one"),
        ("GET", "/q?a=1&b=2", &[], "q-two"),
        ("GET", "/q?b=2&x=0&a=1", &[], "q-two"),
        ("GET", "/q?a=%31", &[], "q-one"),
        ("GET", "/q?b=2", &[], "root"),
        ("GET", "/q?a=11", &[], "root"),
        // Gateway API order: method, then headers, then query params.
        ("GET", "/mix?a=1&b=2", &[], "mix-query"),
        ("GET", "/mix?a=1&b=2", &[("x-m", "1")], "mix-header"),
        ("PUT", "/mix?a=1&b=2", &[("x-m", "1")], "mix-method"),
        // Ties: config order, within a route and across routes.
        ("GET", "/t", &[("x-t", "1"), ("x-u", "1")], "z-first"),
        ("GET", "/t", &[("x-u", "1")], "a-second"),
        ("GET", "/t", &[("x-t", "")], "z-first"),
        ("GET", "/tie", &[("x-v", "1"), ("x-w", "1")], "zz-early"),
        ("GET", "/tie", &[("x-w", "1")], "aa-late"),
    ];
    let mut wrong = Vec::new();
    for &(method, path, headers, expected) in cases {
        let got = rule_for(&p, &c, method, path, headers).await;
        if got != expected {
            wrong.push(format!(
                "{method} {path} {headers:?}: got {got}, expected {expected}"
            ));
        }
    }
    assert!(wrong.is_empty(), "wrong rule chosen:\n{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostnames_most_specific_wins_and_unserved_host_is_404() {
    let app = upstream("app").await;
    // Least specific listed first.
    let yaml = format!(
        "{}routes:\n{}{}{}{}",
        head(&[("app", &[&app])]),
        route("any", &[], &[tagged("any", "")]),
        route("wild", &["*.example.com"], &[tagged("wild", "")]),
        route("deep", &["*.eu.example.com"], &[tagged("deep-wild", "")]),
        route(
            "exact",
            &["api.example.com", "Shop.Example.com"],
            &[tagged("exact", "")]
        ),
    );
    let p = proxy(&yaml).await;
    let c = http1_client();
    let own = p.addr.to_string();
    let cases = [
        ("api.example.com", "exact"),
        ("API.Example.COM:8080", "exact"),
        ("api.example.com.", "exact"),
        ("shop.example.com", "exact"),
        ("www.example.com", "wild"),
        ("WWW.EXAMPLE.COM:443", "wild"),
        ("a.b.example.com", "wild"),
        ("x.eu.example.com", "deep-wild"),
        ("eu.example.com", "wild"),
        ("example.com", "any"),
        ("badexample.com", "any"),
        ("other.org:9000", "any"),
        (own.as_str(), "any"),
    ];
    let mut wrong = Vec::new();
    for (host, expected) in cases {
        let got = rule_for(&p, &c, "GET", "/", &[("host", host)]).await;
        if got != expected {
            wrong.push(format!("Host {host}: got {got}, expected {expected}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "wrong route chosen:\n{}",
        wrong.join("\n")
    );

    // Without a hostname-less route, an unknown host has nowhere to go.
    let yaml = format!(
        "{}routes:\n{}{}",
        head(&[("app", &[&app])]),
        route("shop", &["shop.example.com"], &[tagged("shop", "")]),
        route("wild", &["*.shop.example.com"], &[tagged("shop-wild", "")]),
    );
    let p = proxy(&yaml).await;
    assert_eq!(
        rule_for(&p, &c, "GET", "/", &[("host", "Shop.Example.com:80")]).await,
        "shop"
    );
    assert_eq!(
        rule_for(&p, &c, "GET", "/", &[("host", "eu.shop.example.com")]).await,
        "shop-wild"
    );
    let before = app.count();
    for host in [
        "other.org",
        "example.com",
        "shop.example.com.evil.org",
        "xshop.example.com",
    ] {
        let got = get(&c, &p.url("/"), &[("host", host)]).await;
        assert_eq!(got.status, 404, "Host {host}: {}", got.body);
        assert!(
            got.body.contains("no route"),
            "Host {host}: body {:?}",
            got.body
        );
        assert_eq!(header_of(&got, "x-rule"), "-");
    }
    assert_eq!(app.count(), before, "404s must not reach the upstream");
}

/// Gateway API core conformance `HTTPRouteMatchingAcrossRoutes`: the rules of
/// every route whose hostnames match the request compete on match
/// precedence, so `example.com/v2` reaches the `*.com` route's `/v2` rule even
/// though the `example.com` route has a matching `/` rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_of_matching_wildcard_routes_compete_gateway_api_conformance() {
    let v1 = upstream("infra-backend-v1").await;
    let v2 = upstream("infra-backend-v2").await;
    let yaml = format!(
        "{}routes:
  - name: matching-part1
    hostnames: [example.com, example.net]
    rules:
      - name: r
        matches: [{{path: {{type: PathPrefix, value: /}}}}, {{headers: [{{name: version, value: one}}]}}]
        backends: [{{group: v1}}]
  - name: matching-part2
    hostnames: [\"*.com\"]
    rules:
      - name: r
        matches: [{{path: {{type: PathPrefix, value: /v2}}}}, {{headers: [{{name: version, value: two}}]}}]
        backends: [{{group: v2}}]
",
        head(&[("v1", &[&v1]), ("v2", &[&v2])]),
    );
    let p = proxy(&yaml).await;
    let c = http1_client();
    // The conformance test's cases, in its order.
    let cases: &[(&str, &str, Headers, &str)] = &[
        ("example.com", "/", &[], "infra-backend-v1"),
        ("example.com", "/example", &[], "infra-backend-v1"),
        ("example.net", "/example", &[], "infra-backend-v1"),
        (
            "example.com",
            "/example",
            &[("version", "one")],
            "infra-backend-v1",
        ),
        ("example.com", "/v2", &[], "infra-backend-v2"),
        ("example.net", "/v2", &[], "infra-backend-v1"),
        ("example.com", "/v2/example", &[], "infra-backend-v2"),
        (
            "example.com",
            "/",
            &[("version", "two")],
            "infra-backend-v2",
        ),
    ];
    let mut wrong = Vec::new();
    for &(host, path, headers, expected) in cases {
        let mut h = vec![("host", host)];
        h.extend_from_slice(headers);
        let got = get(&c, &p.url(path), &h).await;
        if got.status != 200 || got.body != expected {
            wrong.push(format!(
                "Host {host} {path} {headers:?}: got {} {}, expected {expected}",
                got.status, got.body
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_modifiers_edit_requests_and_responses() {
    let app = upstream("app").await;
    let rules = "      - name: edit
        matches: [{path: {value: /edit}}]
        backends: [{group: app}]
        request_header_modifier:
          set: [{name: X-Env, value: canary}, {name: x-new, value: fresh}]
          add: [{name: x-added, value: proxy}]
          remove: [x-secret, X-Also-Secret]
        response_header_modifier:
          set: [{name: x-upstream, value: hidden}]
          add: [{name: x-extra, value: a}, {name: x-extra, value: b}]
      - name: strip
        matches: [{path: {value: /strip}}]
        backends: [{group: app}]
        response_header_modifier:
          remove: [x-upstream]
";
    let p = proxy(&config(&[("app", &app)], rules)).await;
    let c = http1_client();
    let sent: &[(&str, &str)] = &[
        ("x-env", "prod"),
        ("x-added", "client"),
        ("x-secret", "s3cret"),
        ("x-also-secret", "1"),
        ("x-untouched", "yes"),
    ];

    let got = get(&c, &p.url("/edit"), sent).await;
    assert_eq!(got.status, 200);
    let values = |h: &http::HeaderMap, name: &str| -> Vec<String> {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        values(&got.headers, "x-upstream"),
        ["hidden"],
        "set replaces"
    );
    assert_eq!(values(&got.headers, "x-extra"), ["a", "b"], "add appends");

    let seen = app.requests();
    let edit = seen
        .iter()
        .find(|s| s.uri.path() == "/edit")
        .expect("upstream saw /edit");
    assert_eq!(
        values(&edit.headers, "x-env"),
        ["canary"],
        "set replaces the client's value"
    );
    assert_eq!(
        values(&edit.headers, "x-new"),
        ["fresh"],
        "set adds a missing header"
    );
    assert_eq!(
        values(&edit.headers, "x-added"),
        ["client", "proxy"],
        "add appends"
    );
    assert!(!edit.headers.contains_key("x-secret"), "remove");
    assert!(
        !edit.headers.contains_key("x-also-secret"),
        "remove is case-insensitive"
    );
    assert_eq!(values(&edit.headers, "x-untouched"), ["yes"]);

    // Modifiers belong to their rule: /strip forwards the client's headers
    // as sent and only removes x-upstream from the response.
    let got = get(&c, &p.url("/strip"), sent).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, "app");
    assert!(!got.headers.contains_key("x-upstream"), "response remove");
    assert!(!got.headers.contains_key("x-extra"));
    let seen = app.requests();
    let strip = seen
        .iter()
        .find(|s| s.uri.path() == "/strip")
        .expect("upstream saw /strip");
    assert_eq!(values(&strip.headers, "x-env"), ["prod"]);
    assert_eq!(values(&strip.headers, "x-added"), ["client"]);
    assert_eq!(values(&strip.headers, "x-secret"), ["s3cret"]);
    assert!(!strip.headers.contains_key("x-new"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_replies_404_no_route_and_503_no_backend_or_endpoint() {
    let app = upstream("app").await;
    let yaml = format!(
        "{}  empty:\n    endpoints: []\nroutes:\n  - name: web\n    rules:\n{}",
        head(&[("app", &[&app])]),
        "      - name: api
        matches: [{path: {value: /api}}]
        backends: [{group: app}]
      - name: off
        matches: [{path: {value: /off}}]
        backends: [{group: app, weight: 0}, {group: empty, weight: 0}]
      - name: scaled-to-zero
        matches: [{path: {value: /empty}}]
        backends: [{group: app, weight: 0}, {group: empty, weight: 5}]
",
    );
    let p = proxy(&yaml).await;
    let c = http1_client();
    let got = get(&c, &p.url("/api/x"), &[]).await;
    assert_eq!((got.status.as_u16(), got.body.as_str()), (200, "app"));
    let before = app.count();

    let cases = [
        ("/", 404, "no route"),
        ("/apix", 404, "no route"),
        ("/off", 503, "weight 0"),
        ("/off/deeper", 503, "weight 0"),
        ("/empty", 503, "no endpoint"),
    ];
    for (path, status, reason) in cases {
        // Several times: the answer is not a matter of chance.
        for _ in 0..20 {
            let got = get(&c, &p.url(path), &[]).await;
            assert_eq!(got.status, status, "{path}: {}", got.body);
            assert!(
                got.body.contains(reason),
                "{path}: body {:?} should name {reason:?}",
                got.body
            );
            assert!(
                header_of(&got, "content-type").starts_with("text/plain"),
                "{path}: {:?}",
                got.headers
            );
        }
    }
    assert_eq!(
        app.count(),
        before,
        "local replies must not reach the upstream"
    );
    // The connection survives local replies.
    let got = get(&c, &p.url("/api"), &[]).await;
    assert_eq!(got.status, 200);
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_changes_split_and_invalid_config_changes_nothing() {
    let stable = upstream("stable").await;
    let canary = upstream("canary").await;
    let groups = [("stable", &stable), ("canary", &canary)];
    let cfg = |s: u32, k: u32| {
        cutover::config::parse_yaml(&config(
            &groups,
            &split_rules(&[("stable", s), ("canary", k)]),
        ))
        .unwrap()
    };
    let p = proxy(&config(
        &groups,
        &split_rules(&[("stable", 100), ("canary", 0)]),
    ))
    .await;
    let c = http1_client();
    let generation = || p.app.routes.load().generation;
    assert_eq!(generation(), 1);
    let counts = tally(&c, &p.url("/"), 300, &[], by_body).await;
    assert_eq!(count(&counts, "stable"), 300, "{counts:?}");

    // Same keep-alive connections, new table: every new request sees it.
    assert_eq!(cutover::reload::replace_base(&p.app, &cfg(0, 100)), Ok(2));
    assert_eq!(generation(), 2);
    let counts = tally(&c, &p.url("/"), 300, &[], by_body).await;
    assert_eq!(count(&counts, "canary"), 300, "{counts:?}");

    // Invalid: out-of-range weight. Rejected whole, nothing changes.
    let bad = cfg(2_000_000, 0);
    let err = cutover::reload::replace_base(&p.app, &bad).expect_err("weight out of range");
    assert!(
        err.to_string()
            .contains("routes[0].rules[0].backends[0].weight"),
        "{err}"
    );
    // Invalid: an unknown group next to a valid-looking split.
    let mut bad = cfg(100, 0);
    bad.routes[0].rules[0].backends[1].group = "canry".into();
    let err = cutover::reload::replace_base(&p.app, &bad).expect_err("unknown group");
    assert!(err.to_string().contains("unknown group \"canry\""), "{err}");
    // Invalid: listeners cannot change without a restart.
    let mut bad = cfg(100, 0);
    bad.listeners[0].name = "renamed".into();
    let err = cutover::reload::replace_base(&p.app, &bad).expect_err("listener change");
    assert!(err.to_string().contains("listeners"), "{err}");
    assert_eq!(
        generation(),
        2,
        "a rejected config must not bump the generation"
    );
    let counts = tally(&c, &p.url("/"), 300, &[], by_body).await;
    assert_eq!(
        count(&counts, "canary"),
        300,
        "traffic after a rejected publish: {counts:?}"
    );

    assert_eq!(cutover::reload::replace_base(&p.app, &cfg(90, 10)), Ok(3));
    const N: usize = 4_000;
    let counts = tally(&c, &p.url("/"), N, &[], by_body).await;
    assert_eq!(count(&counts, "stable") + count(&counts, "canary"), N);
    assert_binomial(
        "canary share after publishing 90/10",
        count(&counts, "canary"),
        N,
        0.10,
    );
}
