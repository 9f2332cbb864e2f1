//! The page's headers and the event feed, through real sockets (no
//! browser needed): the page carries no data and a strict policy; the feed
//! needs the token, sends the history then the state, sends a published
//! change at once rather than at the next tick, is capped, and ends when
//! the admin listener drains.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};

use super::kit::{config, version, Board, TOKEN};
use crate::support::{get, http1_client};

#[tokio::test]
async fn the_page_needs_no_token_carries_no_data_and_a_strict_policy() {
    let (stable, canary) = (version("stable").await, version("canary").await);
    let board = Board::start(&config(&stable, &canary)).await;
    let c = http1_client();
    for path in ["/", "/ui"] {
        let page = get(&c, &format!("http://{}{path}", board.admin), &[]).await;
        assert_eq!(page.status, 200, "{path}");
        let h = |name: &str| {
            page.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        assert_eq!(h("content-security-policy"), cutover::admin::CSP);
        assert!(h("content-security-policy").contains("script-src 'self'"));
        assert!(!h("content-security-policy").contains("unsafe-inline"));
        assert_eq!(h("x-frame-options"), "DENY");
        assert_eq!(h("x-content-type-options"), "nosniff");
        assert!(page.body.contains(r#"<script src="ui/app.js""#));
        // No inline script, style or handler: the policy would block them.
        assert_eq!(page.body.matches("<script").count(), 1);
        assert!(!page.body.contains("<style") && !page.body.contains("style="));
        assert!(!page.body.contains(" onclick") && !page.body.contains(" onload"));
        assert!(!page.body.contains("web"), "the page itself holds no data");
    }
    let script = get(&c, &format!("http://{}/ui/app.js", board.admin), &[]).await;
    assert_eq!(script.status, 200);
    assert!(script.body.contains("v1/events"));
    assert!(
        !script.body.contains("\"/v1") && !script.body.contains("'/v1"),
        "relative URLs only, for port-forwards and path prefixes"
    );
    let (status, _) = board.events(None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = board.events(Some("not-the-token-at-all")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    board.shut_down().await;
}

#[tokio::test]
async fn the_feed_sends_history_state_and_a_published_change_at_once() {
    let (stable, canary) = (version("stable").await, version("canary").await);
    let board = Board::start(&config(&stable, &canary)).await;
    let (status, mut feed) = board.events(Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    let (name, history) = feed.next().await.expect("history");
    assert_eq!(name, "history");
    assert_eq!(history["depth"], 300);
    let (name, state) = feed.next().await.expect("state");
    assert_eq!(name, "state");
    let rules: Vec<&str> = state["routes"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["rule"].as_str())
        .collect();
    assert_eq!(rules, ["testers", "split"]);
    let split = &state["routes"][0]["rules"][1];
    assert_eq!(split["groups"][0]["desired"], 90);
    assert_eq!(split["groups"][1]["effective"], 10.0);
    assert_eq!(state["analysis"][0]["phase"], "not_started");
    let before = state["generation"].as_u64().unwrap();

    // Right after a tick's frame, so the next tick is about a second away.
    let (_, tick) = feed.next().await.expect("a tick's frame");
    assert_eq!(tick["generation"].as_u64(), Some(before));
    let (status, _) = board
        .call(
            Method::PATCH,
            "/v1/routes/web/rules/split/weights",
            r#"{"stable": 50, "canary": 50}"#,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let changed = Instant::now();
    loop {
        let (_, state) = feed.next().await.expect("a frame");
        if state["generation"].as_u64() > Some(before + 1) {
            continue;
        }
        if state["generation"].as_u64() == Some(before + 1) {
            let g = &state["routes"][0]["rules"][1]["groups"];
            assert_eq!(
                (g[0]["desired"].clone(), g[1]["desired"].clone()),
                (50.into(), 50.into())
            );
            break;
        }
    }
    let took = changed.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "a publish shows at once, not at the next tick: {took:?}"
    );
    board.shut_down().await;
}

#[tokio::test]
async fn event_streams_are_capped_and_end_when_the_admin_listener_drains() {
    let (stable, canary) = (version("stable").await, version("canary").await);
    let board = Board::start(&config(&stable, &canary)).await;
    let mut open = Vec::new();
    for _ in 0..cutover::admin::MAX_STREAMS {
        let (status, mut feed) = board.events(Some(TOKEN)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(feed.next().await.is_some());
        open.push(feed);
    }
    let (status, _) = board.events(Some(TOKEN)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "past the cap");
    // A closed stream frees its place.
    drop(open.pop());
    let mut freed = None;
    for _ in 0..100 {
        let (status, feed) = board.events(Some(TOKEN)).await;
        if status == StatusCode::OK {
            freed = Some(feed);
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    open.push(freed.expect("a place frees when a stream closes"));
    let stopping = tokio::spawn(board.shut_down());
    for feed in &mut open {
        assert!(feed.ends_within(5).await, "the stream ends on drain");
    }
    stopping.await.unwrap();
}

#[tokio::test]
async fn a_rollout_action_from_a_stale_page_is_refused() {
    let (stable, canary) = (version("stable").await, version("canary").await);
    let board = Board::start(&config(&stable, &canary)).await;
    let live = board.generation().await;
    let start = "/v1/routes/web/rules/split/rollout/start";
    let (status, v) = board.call(Method::POST, start, "", Some(live + 7)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(
        v["generation"], live,
        "the answer names the live generation"
    );
    let (_, a) = board
        .call(Method::GET, "/v1/analysis/web/split", "", None)
        .await;
    assert_eq!(a["phase"], "not_started", "nothing started");
    let (status, v) = board.call(Method::POST, start, "", Some(live)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    board.shut_down().await;
}
