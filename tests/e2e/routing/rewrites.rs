//! `request_redirect` and `url_rewrite`, written from Gateway API's
//! `HTTPRequestRedirectFilter` and `HTTPURLRewriteFilter` text: what the
//! client is told (status, `Location`) and what the upstream receives.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_answer_with_status_and_location() {
    let app = upstream("app").await;
    let rules = "      - name: to-https
        matches: [{path: {value: /secure}}]
        request_redirect: {scheme: https, status_code: 301}
      - name: elsewhere
        matches: [{path: {value: /old}}]
        request_redirect:
          hostname: new.example
          path: {type: ReplacePrefixMatch, replace_prefix_match: /new}
      - name: full
        matches: [{path: {type: Exact, value: /login}}]
        request_redirect:
          port: 8443
          scheme: https
          path: {type: ReplaceFullPath, replace_full_path: /auth/sign-in}
          status_code: 308
      - name: see-other
        matches: [{path: {value: /form}}]
        request_redirect: {status_code: 303, hostname: other.example, port: 80}
      - name: app
        backends: [{group: app}]
";
    let p = proxy(&config(&[("app", &app)], rules)).await;
    let c = http1_client();
    let port = p.addr.port();
    let location = |got: &Got| {
        got.headers
            .get("location")
            .map(|v| v.to_str().unwrap().to_string())
    };
    let host = [("host", "shop.example:1234")];

    // An explicit scheme brings its well-known port, left out of Location.
    let got = get(&c, &p.url("/secure/cart?item=1"), &host).await;
    assert_eq!(got.status, 301);
    assert_eq!(
        location(&got).as_deref(),
        Some("https://shop.example/secure/cart?item=1")
    );
    assert_eq!(got.body, "", "a redirect has no body");

    // No scheme and no port: the listener's port; the default status is 302;
    // the matched prefix is replaced segment-wise, the trailing `/` kept.
    let got = get(&c, &p.url("/old/"), &host).await;
    assert_eq!(got.status, 302);
    assert_eq!(
        location(&got),
        Some(format!("http://new.example:{port}/new/"))
    );
    let got = get(&c, &p.url("/old"), &host).await;
    assert_eq!(
        location(&got),
        Some(format!("http://new.example:{port}/new"))
    );
    // `/oldish` is not under the prefix `/old`: served by the catch-all.
    let got = get(&c, &p.url("/oldish"), &host).await;
    assert_eq!((got.status.as_u16(), got.body.as_str()), (200, "app"));

    let got = get(&c, &p.url("/login"), &host).await;
    assert_eq!(got.status, 308);
    assert_eq!(
        location(&got).as_deref(),
        Some("https://shop.example:8443/auth/sign-in")
    );

    // Port 80 with http is left out.
    let got = get(&c, &p.url("/form"), &host).await;
    assert_eq!(got.status, 303);
    assert_eq!(location(&got).as_deref(), Some("http://other.example/form"));

    assert!(
        app.requests().iter().all(|s| s.uri.path() == "/oldish"),
        "redirected requests never reach an upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_rewrite_changes_what_the_upstream_receives() {
    let app = upstream("app").await;
    let rules = "      - name: prefix
        matches: [{path: {value: /api/v1/}}, {path: {value: /legacy}}]
        backends: [{group: app}]
        url_rewrite:
          hostname: internal.example
          path: {type: ReplacePrefixMatch, replace_prefix_match: /v2}
      - name: full
        matches: [{path: {value: /status}}]
        backends: [{group: app}]
        url_rewrite:
          path: {type: ReplaceFullPath, replace_full_path: /healthz}
      - name: strip
        matches: [{path: {value: /shop}}]
        backends: [{group: app}]
        url_rewrite:
          path: {type: ReplacePrefixMatch, replace_prefix_match: \"\"}
";
    let p = proxy(&config(&[("app", &app)], rules)).await;
    let c = http1_client();
    let host = [("host", "public.example")];
    let cases = [
        ("/api/v1/users?id=7", "/v2/users?id=7", "internal.example"),
        ("/api/v1", "/v2", "internal.example"),
        ("/legacy/x/y", "/v2/x/y", "internal.example"),
        ("/status/deep?verbose", "/healthz?verbose", "public.example"),
        ("/shop/cart", "/cart", "public.example"),
        ("/shop", "/", "public.example"),
    ];
    for (sent, want_target, want_host) in cases {
        let before = app.count();
        let got = get(&c, &p.url(sent), &host).await;
        assert_eq!(got.status, 200, "{sent}");
        let seen = app.requests();
        assert_eq!(seen.len(), before + 1);
        let s = &seen[before];
        let target = s.uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("");
        assert_eq!(target, want_target, "{sent}");
        assert_eq!(s.headers["host"], want_host, "{sent}");
        assert_eq!(
            s.headers["x-forwarded-host"], "public.example",
            "the client's host stays in X-Forwarded-Host"
        );
    }
}

#[test]
fn filter_mistakes_are_named_by_field() {
    let head = "listeners:\n  - name: public\n    address: \"127.0.0.1:0\"\ngroups:\n  app:\n    endpoints: [\"127.0.0.1:1\"]\nroutes:\n  - name: web\n    rules:\n";
    let cases = [
        (
            "      - name: r\n        matches: [{path: {type: Exact, value: /a}}]\n        request_redirect: {path: {type: ReplacePrefixMatch, replace_prefix_match: /b}}\n",
            "routes[0].rules[0].request_redirect.path.type: ReplacePrefixMatch needs PathPrefix matches",
        ),
        (
            "      - name: r\n        request_redirect: {status_code: 200}\n",
            "routes[0].rules[0].request_redirect.status_code: 200 is not a redirect status",
        ),
        (
            "      - name: r\n        request_redirect: {scheme: ftp}\n",
            "routes[0].rules[0].request_redirect.scheme: \"ftp\" is not http or https",
        ),
        (
            "      - name: r\n        backends: [{group: app}]\n        request_redirect: {hostname: a.example}\n",
            "routes[0].rules[0].backends: must be empty in a rule with request_redirect",
        ),
        (
            "      - name: r\n        request_redirect: {hostname: a.example}\n        url_rewrite: {hostname: b.example}\n",
            "routes[0].rules[0].url_rewrite: cannot be used together with request_redirect",
        ),
        (
            "      - name: r\n        backends: [{group: app}]\n        url_rewrite: {hostname: \"b.example:80\"}\n",
            "routes[0].rules[0].url_rewrite.hostname: \"b.example:80\" is not a host name",
        ),
        (
            "      - name: r\n        backends: [{group: app}]\n        url_rewrite: {path: {type: ReplaceFullPath}}\n",
            "routes[0].rules[0].url_rewrite.path.replace_full_path: required with type ReplaceFullPath",
        ),
        (
            "      - name: r\n        backends: [{group: app}]\n        url_rewrite: {path: {type: ReplaceFullPath, replace_full_path: x}}\n",
            "routes[0].rules[0].url_rewrite.path.replace_full_path: \"x\" must start with '/'",
        ),
        (
            "      - name: r\n        backends: []\n",
            "routes[0].rules[0].backends: needs at least one backend",
        ),
    ];
    for (rules, want) in cases {
        let errors = compile_errors(&format!("{head}{rules}"));
        assert!(
            errors.iter().any(|e| e.starts_with(want)),
            "want {want:?}, got {errors:#?}"
        );
    }
}
