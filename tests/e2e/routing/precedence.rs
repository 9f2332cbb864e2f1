//! Gateway API precedence and hostnames: the most specific match wins, not list order.

use super::*;

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
