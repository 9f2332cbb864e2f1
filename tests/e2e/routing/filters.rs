//! Header modifiers and the proxy's own replies (404 no route, 503 no backend or endpoint).

use super::*;

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
