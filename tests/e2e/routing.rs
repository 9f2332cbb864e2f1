//! Routing through the real proxy: weighted splits, header routing, Gateway API
//! precedence, hostnames, header modifiers, local replies, load-time
//! validation and publishing a new table.
//!
//! Rules that must be told apart tag their responses with
//! `response_header_modifier: {set: [{name: x-rule, value: <rule>}]}`.

mod explain;
mod filters;
mod precedence;
mod publish;
mod rewrites;
mod splits;
mod validation;

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
    match cutover::compile::compile(&cfg, &registry, 1) {
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
