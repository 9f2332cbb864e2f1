//! Retries: which failures, statuses and methods are retried, where a retry
//! goes, and bodies that cannot be replayed.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::Method;

use super::kit::{self, Backend, Mode, ID};
use crate::support::proxy;

const QUICK_RETRY: &str = "backoff: {base: 1ms, max: 1ms}";

#[tokio::test]
async fn a_retry_never_returns_to_an_endpoint_that_already_failed() {
    for balance in ["round_robin", "least_request", "hash"] {
        let a = Backend::start("a").await;
        let b = Backend::start("b").await;
        let ok = Backend::start("ok").await;
        a.set_status(503);
        b.set_status(503);
        let balance_line = format!("balance: {balance}");
        let p = proxy(&kit::config(
            &[],
            &[kit::group(
                "app",
                &[a.addr, b.addr, ok.addr],
                &[&balance_line, "outlier: {enabled: false}"],
            )],
            &[kit::rule(
                "all",
                "[{group: app}]",
                &[
                    "sticky: {header: x-user}",
                    "retry: {attempts: 2, on: [gateway-error], backoff: {base: 1ms, max: 1ms}, \
                     budget: {ratio: 5.0, min_per_sec: 1000}}",
                ],
            )],
        ))
        .await;
        let c = kit::client();
        for i in 0..30 {
            let (id, user) = (format!("{balance}-{i}"), format!("user-{i}"));
            let got = kit::call(
                &c,
                Method::GET,
                &p.url("/"),
                &[(ID, &id), ("x-user", &user)],
                kit::empty(),
            )
            .await;
            // Two failing endpoints, two retries: only a retry that skips
            // both reaches the healthy one every time.
            assert_eq!((got.status, got.text()), (200, "ok"), "{balance} {id}");
        }
        for backend in [&a, &b, &ok] {
            let ids = backend.ids();
            let distinct: HashSet<_> = ids.iter().collect();
            assert_eq!(
                ids.len(),
                distinct.len(),
                "{balance}: {} twice",
                backend.name
            );
        }
        assert_eq!(ok.count(), 30);
        assert!(
            a.count() + b.count() >= 10,
            "{balance}: failing ones were tried"
        );
    }
}

#[tokio::test]
async fn post_is_not_retried_unless_the_rule_opts_in() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    a.set_status(503);
    let retry = format!("retry: {{attempts: 1, on: [gateway-error, reset], {QUICK_RETRY}}}");
    let p = proxy(&kit::config(
        &[],
        &[kit::group(
            "app",
            &[a.addr, b.addr],
            &["outlier: {enabled: false}"],
        )],
        &[
            kit::rule(
                "opt-in",
                "[{group: app}]",
                &[
                    "matches: [{path: {value: /opt-in}}]",
                    &format!(
                        "retry: {{attempts: 1, on: [gateway-error, reset], non_idempotent: true, {QUICK_RETRY}}}"
                    ),
                ],
            ),
            kit::rule("all", "[{group: app}]", &[&retry]),
        ],
    ))
    .await;
    let c = kit::client();
    let send = |method: Method, path: &'static str, id: String| {
        let (c, url) = (c.clone(), p.url(path));
        async move { kit::call(&c, method, &url, &[(ID, &id)], kit::sized(100)).await }
    };

    for (mode, local) in [(Mode::Normal, None), (Mode::Reset, Some(502))] {
        a.set_mode(mode);
        for i in 0..10 {
            let got = send(Method::GET, "/", format!("{mode:?}-get-{i}")).await;
            assert_eq!((got.status, got.text()), (200, "b"), "GET is retried");
            let got = send(Method::PUT, "/", format!("{mode:?}-put-{i}")).await;
            assert_eq!((got.status, got.text()), (200, "b"), "PUT is idempotent");
            let got = send(Method::POST, "/opt-in", format!("{mode:?}-opt-{i}")).await;
            assert_eq!((got.status, got.text()), (200, "b"), "opted in");
        }
        let mut failed = 0;
        for i in 0..10 {
            let got = send(Method::POST, "/", format!("{mode:?}-post-{i}")).await;
            match (got.status, local) {
                (200, _) => assert_eq!(got.text(), "b"),
                // The upstream's own 503 goes back as it is.
                (503, None) => {
                    assert_eq!(got.text(), "a");
                    failed += 1
                }
                (502, Some(502)) => {
                    assert!(got.text().contains("upstream connection failed"));
                    failed += 1
                }
                other => panic!("{mode:?}: unexpected {other:?} {got:?}"),
            }
        }
        let posts_on_a = a
            .ids()
            .iter()
            .filter(|id| id.starts_with(&format!("{mode:?}-post")))
            .count();
        assert!(failed >= 1, "{mode:?}: no POST reached a");
        assert_eq!(failed, posts_on_a, "{mode:?}: a failed POST was retried");
    }

    // An upstream that dies mid-body: the head is already on its way to the
    // client, so nothing can be retried; the client sees a broken body, not
    // a clean short one.
    a.set_mode(Mode::Truncate);
    let before = a.count();
    let mut broken = 0;
    for i in 0..6 {
        let got = send(Method::GET, "/", format!("cut-{i}")).await;
        assert_eq!(got.status, 200);
        match &got.body {
            Ok(body) => assert_eq!(body, "b"),
            Err(_) => broken += 1,
        }
    }
    assert!(broken >= 1);
    assert_eq!(a.count() - before, broken);
}

#[tokio::test]
async fn connect_failures_are_retried_for_any_method_by_default() {
    let ok = Backend::start("ok").await;
    let p = proxy(&kit::config(
        &[],
        &[kit::group(
            "app",
            &[kit::dead_addr(), ok.addr],
            // Keep the dead one in rotation so every method meets it.
            &["outlier: {enabled: false}"],
        )],
        &[kit::rule("all", "[{group: app}]", &[])],
    ))
    .await;
    let c = kit::client();
    for method in [Method::GET, Method::POST, Method::PATCH, Method::DELETE] {
        for _ in 0..4 {
            let got = kit::call(&c, method.clone(), &p.url("/"), &[], kit::sized(50)).await;
            assert_eq!((got.status, got.text()), (200, "ok"), "{method}");
        }
    }
    assert_eq!(ok.count(), 16);
    assert!(ok.hits().iter().all(|h| h.body_len == 50));
}

/// An h2 upstream that refuses every stream (REFUSED_STREAM: it did not
/// process the request); counts the streams it refused.
async fn refusing_h2() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let refused = Arc::new(AtomicUsize::new(0));
    let count = refused.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(stream).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    count.fetch_add(1, Ordering::Relaxed);
                    respond.send_reset(h2::Reason::REFUSED_STREAM);
                }
            });
        }
    });
    (addr, refused)
}

#[tokio::test]
async fn refused_streams_are_retried_for_any_method_by_default() {
    let (refuser, refused) = refusing_h2().await;
    let ok = Backend::start("ok").await;
    let p = proxy(&kit::config(
        &[],
        &[kit::group(
            "app",
            &[refuser, ok.addr],
            &["protocol: h2", "outlier: {enabled: false}"],
        )],
        &[kit::rule("all", "[{group: app}]", &[])],
    ))
    .await;
    let c = kit::client();
    for method in [Method::GET, Method::POST, Method::PATCH] {
        for _ in 0..4 {
            let got = kit::call(&c, method.clone(), &p.url("/"), &[], kit::sized(20)).await;
            assert_eq!((got.status, got.text()), (200, "ok"), "{method}");
        }
    }
    assert!(
        refused.load(Ordering::Relaxed) >= 4,
        "the refuser was tried"
    );
    assert_eq!(ok.count(), 12);
    assert!(ok.hits().iter().all(|h| h.body_len == 20));
}

#[tokio::test]
async fn which_statuses_are_retried_follows_retry_on() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let p = proxy(&kit::config(
        &[],
        &[kit::group(
            "app",
            &[a.addr, b.addr],
            &["outlier: {enabled: false}"],
        )],
        &[
            kit::rule(
                "gateway",
                "[{group: app}]",
                &[
                    "matches: [{path: {value: /gateway-error}}]",
                    &format!("retry: {{on: [gateway-error], {QUICK_RETRY}}}"),
                ],
            ),
            kit::rule(
                "5xx",
                "[{group: app}]",
                &[
                    "matches: [{path: {value: /5xx}}]",
                    &format!("retry: {{on: [5xx], {QUICK_RETRY}}}"),
                ],
            ),
            kit::rule(
                "codes",
                "[{group: app}]",
                &[
                    "matches: [{path: {value: /codes}}]",
                    &format!(
                        "retry: {{on: [retriable-status-codes], retriable_status_codes: [429], {QUICK_RETRY}}}"
                    ),
                ],
            ),
            kit::rule("default", "[{group: app}]", &[]),
        ],
    ))
    .await;
    let c = kit::client();
    // (path, status of a, retried?)
    let cases = [
        ("/gateway-error", 502, true),
        ("/gateway-error", 504, true),
        ("/gateway-error", 500, false),
        ("/5xx", 500, true),
        ("/5xx", 429, false),
        ("/codes", 429, true),
        ("/codes", 503, false),
        ("/default", 503, false),
    ];
    for (path, status, retried) in cases {
        a.set_status(status);
        let mut seen_a = 0;
        for _ in 0..4 {
            let before = a.count();
            let got = kit::get(&c, &p.url(path)).await;
            if a.count() == before {
                assert_eq!((got.status, got.text()), (200, "b"));
                continue;
            }
            seen_a += 1;
            let want = if retried { (200, "b") } else { (status, "a") };
            assert_eq!((got.status, got.text()), want, "{path} {status}");
        }
        assert!(seen_a >= 1, "{path} {status}: a was never tried");
    }
}

#[tokio::test]
async fn a_body_over_the_replay_buffer_is_never_retried() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let b2 = Backend::start("b2").await;
    a.set_status(503);
    let retry = format!(
        "retry: {{attempts: 1, on: [connect-failure, reset, gateway-error], {QUICK_RETRY}}}"
    );
    let p = proxy(&kit::config(
        &[],
        &[
            kit::group("app", &[a.addr, b.addr], &["outlier: {enabled: false}"]),
            kit::group(
                "dead-first",
                &[kit::dead_addr(), b2.addr],
                &["outlier: {enabled: false}"],
            ),
        ],
        &[
            kit::rule(
                "dead",
                "[{group: dead-first}]",
                &["matches: [{path: {value: /dead}}]", &retry],
            ),
            kit::rule("all", "[{group: app}]", &[&retry]),
        ],
    ))
    .await;
    let c = kit::client();
    const BUFFER: usize = 64 * 1024;

    // Up to the buffer (default 64 KiB) a body is replayed, whole.
    for (i, len) in [1024, BUFFER].into_iter().enumerate() {
        for j in 0..4 {
            let id = format!("small-{i}-{j}");
            for body in [kit::sized(len), kit::chunked(len)] {
                let got = kit::call(&c, Method::PUT, &p.url("/"), &[(ID, &id)], body).await;
                assert_eq!((got.status, got.text()), (200, "b"), "{len} bytes");
            }
        }
    }
    assert!(b
        .hits()
        .iter()
        .all(|h| h.body_len <= BUFFER && h.body_len > 0));

    // One byte more, with a length or chunked: the one attempt's answer.
    let mut not_retried = 0;
    for (name, len) in [("sized", BUFFER + 1), ("chunked", 100 * 1024)] {
        for j in 0..6 {
            let id = format!("{name}-{j}");
            let body = match name {
                "sized" => kit::sized(len),
                _ => kit::chunked(len),
            };
            let got = kit::call(&c, Method::PUT, &p.url("/"), &[(ID, &id)], body).await;
            match got.status {
                200 => assert_eq!(got.text(), "b"),
                503 => {
                    assert_eq!(got.text(), "a");
                    not_retried += 1;
                }
                s => panic!("{name}: {s} {got:?}"),
            }
        }
    }
    assert!(not_retried >= 2);
    let attempts = kit::attempts_by_id(&[&a, &b]);
    for (id, n) in &attempts {
        if id.starts_with("sized") || id.starts_with("chunked") {
            assert_eq!(*n, 1, "{id} was retried");
        }
    }
    for h in b.hits() {
        assert!(h.body_len > 0, "a retry went out with an empty body: {h:?}");
    }

    // Even a connect failure is not retried: the body cannot be sent twice.
    let mut refused = 0;
    for _ in 0..4 {
        let got = kit::call(
            &kit::client(),
            Method::PUT,
            &p.url("/dead"),
            &[],
            kit::sized(BUFFER + 1),
        )
        .await;
        match got.status {
            200 => assert_eq!(got.text(), "b2"),
            502 => {
                assert!(got.text().contains("could not connect"), "{got:?}");
                refused += 1;
            }
            s => panic!("{s} {got:?}"),
        }
    }
    assert!(refused >= 1);
    assert_eq!(b2.count(), 4 - refused);
}
