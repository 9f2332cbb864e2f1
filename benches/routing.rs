//! Routing micro-benchmarks: the pure decisions `proxy::choose_target` takes
//! for every request, on tables built through the real config path
//! (`parse_yaml` -> `compile::compile` with a fresh `Inherited`).
//!
//! Groups:
//! - `route_find/<case>/<rules>`: `RouteTable::find` over tables of 10, 100,
//!   1,000 and 10,000 rules. Rule `i` of a table has its own path prefix
//!   `/svc{i}/api`; every 10th rule is an exact path `/svc{i}/api/health`,
//!   every 10th (offset 5) also needs a header `x-tenant: t{i}`. Cases: a
//!   prefix hit on an early rule (i = 1) and on a late one (i = N-1), a late
//!   header rule, a late exact path, and a miss (no rule; 404).
//! - `route_find_regex/<case>/<rules>` and `route_find_regex10/...`: the same
//!   tables with every 100th (every 10th) rule a `RegularExpression` path
//!   instead, plus a `hit_late_regex` case. Regex entries are tried before
//!   any prefix, so they cost on every request; one `RegexSet` per virtual
//!   host makes that one scan.
//! - `group_pick/*`: `Split::pick` with a random point (weighted) and with
//!   `StickyKey::hash` of a header or a cookie (sticky); `endpoint_pick/*`:
//!   `upstream::balance::pick` round robin, least request and hash.
//!
//! Run: `cargo bench --bench routing` (add `-- --quick` for a fast pass, or a
//! filter such as `-- route_find/hit_late`).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use cutover::compile::compile;
use cutover::config::parse_yaml;
use cutover::route::matcher::RequestView;
use cutover::route::Inherited;
use cutover::route::RouteTable;
use cutover::upstream::balance;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];
const HOST: &str = "api.example.com";
/// Rules per route: a table is many routes on one hostname, as a controller
/// would generate them, merged by the compiler into one virtual host.
const RULES_PER_ROUTE: usize = 50;

/// What rule `i` matches on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Prefix,
    Exact,
    PrefixAndHeader,
    Regex,
}

fn kind(i: usize, regex_every: usize) -> Kind {
    // Offset 3: never an exact (0) or header (5) rule's slot.
    if regex_every > 0 && i % regex_every == (regex_every / 2 + 3) % regex_every {
        return Kind::Regex;
    }
    match i % 10 {
        0 => Kind::Exact,
        5 => Kind::PrefixAndHeader,
        _ => Kind::Prefix,
    }
}

/// YAML for `n` rules; every `regex_every`th rule (none for 0) has a regex path.
fn table_yaml(n: usize, regex_every: usize) -> String {
    let mut y = String::with_capacity(n * 200);
    y.push_str(
        "listeners:\n  - name: public\n    address: \"127.0.0.1:0\"\n\
         groups:\n  stable:\n    endpoints: [\"10.0.0.1:8080\", \"10.0.0.2:8080\"]\n\
         \x20 canary:\n    endpoints: [\"10.0.1.1:8080\"]\n\
         routes:\n",
    );
    for i in 0..n {
        if i % RULES_PER_ROUTE == 0 {
            let r = i / RULES_PER_ROUTE;
            y.push_str(&format!(
                "  - name: route{r}\n    hostnames: [\"{HOST}\"]\n    rules:\n"
            ));
        }
        let m = match kind(i, regex_every) {
            Kind::Prefix => format!("{{ path: {{ type: PathPrefix, value: /svc{i}/api }} }}"),
            Kind::Exact => format!("{{ path: {{ type: Exact, value: /svc{i}/api/health }} }}"),
            Kind::PrefixAndHeader => format!(
                "{{ path: {{ type: PathPrefix, value: /svc{i}/api }}, \
                 headers: [{{ name: x-tenant, value: t{i} }}] }}"
            ),
            Kind::Regex => {
                format!("{{ path: {{ type: RegularExpression, value: \"/svc{i}/v[0-9]+/.*\" }} }}")
            }
        };
        y.push_str(&format!(
            "      - name: r{i}\n        matches: [{m}]\n        backends:\n\
             \x20         - {{ group: stable, weight: 90 }}\n\
             \x20         - {{ group: canary, weight: 10 }}\n"
        ));
    }
    y
}

fn build(yaml: &str) -> RouteTable {
    let cfg = parse_yaml(yaml).unwrap_or_else(|e| panic!("bench config does not parse:\n{e}"));
    let registry = Inherited::default();
    compile(&cfg, &registry, 1).unwrap_or_else(|e| panic!("bench config does not compile:\n{e}"))
}

/// Headers of a typical browser/API request (what a header rule scans).
fn request_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", HOST),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
        ),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate, br"),
        ("accept-language", "en-US,en;q=0.9"),
        ("x-user-id", "user-48151623"),
        ("cookie", "theme=dark; session=3f2a9c1e7b; lang=en"),
        ("x-forwarded-for", "203.0.113.7"),
    ] {
        h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    h
}

/// One lookup case: a path, extra headers, and the rule it must land on.
struct Case {
    name: &'static str,
    path: String,
    headers: HeaderMap,
    expect: Option<String>,
}

fn cases(n: usize, regex_every: usize) -> Vec<Case> {
    let base = request_headers();
    // Rule indices of each kind, late in the table.
    let late_exact = (0..n).rev().find(|&i| kind(i, regex_every) == Kind::Exact);
    let late_header = (0..n)
        .rev()
        .find(|&i| kind(i, regex_every) == Kind::PrefixAndHeader);
    let (late_exact, late_header) = (late_exact.unwrap_or(0), late_header.unwrap_or(5));
    let mut with_tenant = base.clone();
    with_tenant.insert(
        HeaderName::from_static("x-tenant"),
        HeaderValue::from_str(&format!("t{late_header}")).unwrap_or(HeaderValue::from_static("t")),
    );
    let last = n - 1;
    let late_regex = (0..n).rev().find(|&i| kind(i, regex_every) == Kind::Regex);
    let regex_hit = late_regex.map(|i| Case {
        name: "hit_late_regex",
        path: format!("/svc{i}/v2/items/42"),
        headers: request_headers(),
        expect: Some(format!("r{i}")),
    });
    let mut cases = vec![
        Case {
            name: "hit_early",
            path: "/svc1/api/v1/items/42".into(),
            headers: base.clone(),
            expect: Some("r1".into()),
        },
        Case {
            name: "hit_late",
            path: format!("/svc{last}/api/v1/items/42"),
            headers: base.clone(),
            expect: Some(format!("r{last}")),
        },
        Case {
            name: "hit_late_header",
            path: format!("/svc{late_header}/api/v1/items/42"),
            headers: with_tenant,
            expect: Some(format!("r{late_header}")),
        },
        Case {
            name: "hit_late_exact",
            path: format!("/svc{late_exact}/api/health"),
            headers: base.clone(),
            expect: Some(format!("r{late_exact}")),
        },
        Case {
            name: "miss",
            path: "/nosuch/api/v1/items/42".into(),
            headers: base,
            expect: None,
        },
    ];
    cases.extend(regex_hit);
    cases
}

fn bench_find_group(c: &mut Criterion, group: &str, regex_every: usize) {
    let mut g = c.benchmark_group(group);
    for &n in &SIZES {
        let table = build(&table_yaml(n, regex_every));
        assert_eq!(table.rules.len(), n);
        for case in cases(n, regex_every) {
            let view = RequestView {
                method: &Method::GET,
                host: HOST,
                path: &case.path,
                query: Some("page=2&limit=50"),
                headers: &case.headers,
            };
            let got = table.find(0, &view).map(|(rule, _)| rule.name.to_string());
            assert_eq!(got, case.expect, "{group}/{}/{n}: wrong rule", case.name);
            g.bench_with_input(BenchmarkId::new(case.name, n), &view, |b, view| {
                b.iter(|| table.find(0, black_box(view)))
            });
        }
    }
    g.finish();
}

fn route_find(c: &mut Criterion) {
    bench_find_group(c, "route_find", 0);
    bench_find_group(c, "route_find_regex", 100);
    // 10% regex rules: one `RegexSet` per virtual host keeps these within
    // 1 us at 10,000 rules.
    bench_find_group(c, "route_find_regex10", 10);
}

/// A small table whose rules and groups exercise every pick policy.
const PICK_YAML: &str = r#"
listeners:
  - name: public
    address: "127.0.0.1:0"
groups:
  stable:
    endpoints: ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"]
  stable-lr:
    balance: least_request
    endpoints: ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"]
  stable-hash:
    balance: hash
    endpoints: ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"]
  canary:
    endpoints: ["10.0.1.1:8080"]
routes:
  - name: web
    rules:
      - name: weighted
        backends:
          - { group: stable, weight: 90 }
          - { group: canary, weight: 10 }
      - name: sticky-header
        matches: [{ path: { type: PathPrefix, value: /app } }]
        sticky: { header: x-user-id }
        backends:
          - { group: stable, weight: 90 }
          - { group: canary, weight: 10 }
      - name: sticky-cookie
        matches: [{ path: { type: PathPrefix, value: /web } }]
        sticky: { cookie: session }
        backends:
          - { group: stable, weight: 90 }
          - { group: canary, weight: 10 }
"#;

fn picks(c: &mut Criterion) {
    let table = build(PICK_YAML);
    let rule = |name: &str| {
        table
            .rules
            .iter()
            .find(|r| &*r.name == name)
            .unwrap_or_else(|| panic!("no rule {name}"))
    };
    let group = |name: &str| {
        table
            .groups
            .iter()
            .find(|g| &*g.name == name)
            .unwrap_or_else(|| panic!("no group {name}"))
    };
    let headers = request_headers();
    let client = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    let mut rng = SmallRng::seed_from_u64(42);

    let mut g = c.benchmark_group("group_pick");
    let weighted = &rule("weighted").split;
    g.bench_function("weighted_random_point", |b| {
        b.iter(|| weighted.pick(black_box(rng.random())))
    });
    for name in ["sticky-header", "sticky-cookie"] {
        let r = rule(name);
        let key = r.sticky.as_ref().expect("sticky rule");
        assert!(
            key.hash(&headers, client).is_some(),
            "{name}: no key in the request"
        );
        g.bench_function(name, |b| {
            b.iter(|| {
                let point = key
                    .hash(black_box(&headers), client)
                    .unwrap_or_else(|| rng.random());
                r.split.pick(point)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("endpoint_pick");
    let key = rule("sticky-header")
        .sticky
        .as_ref()
        .and_then(|k| k.hash(&headers, client));
    for (bench, name, key) in [
        ("round_robin", "stable", None),
        ("least_request", "stable-lr", None),
        ("hash", "stable-hash", key),
    ] {
        let grp = group(name);
        assert!(balance::pick(grp, key, &mut rng).is_some());
        g.bench_function(bench, |b| {
            b.iter(|| balance::pick(black_box(grp), key, &mut rng).map(|e| e.authority.port_u16()))
        });
    }
    g.finish();
}

/// Compile time of a whole table (what a reload costs), at each size.
fn compile_table(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    for &n in &SIZES {
        let yaml = table_yaml(n, 0);
        let cfg = parse_yaml(&yaml).unwrap_or_else(|e| panic!("{e}"));
        g.bench_with_input(BenchmarkId::new("compile", n), &cfg, |b, cfg| {
            b.iter(|| compile(cfg, &Inherited::default(), 1).map(|t| t.rules.len()))
        });
    }
    g.finish();
}

criterion_group!(benches, route_find, picks, compile_table);
criterion_main!(benches);
