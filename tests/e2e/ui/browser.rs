//! The dashboard in a real browser: headless Chromium driven through
//! WebDriver against the real proxy and real upstreams, one session for
//! every scenario (a browser start is the slow part).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};

use super::kit::{config, version, Board, Load, TOKEN};
use super::webdriver::Browser;
use crate::support::{tool_or_skip, TempDir};

const SPLIT: &str = r#"[data-rule="web/split"]"#;

fn in_split(css: &str) -> String {
    format!("{SPLIT} {css}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_and_moves_a_live_release_in_chromium() {
    const TEST: &str = "the_dashboard_shows_and_moves_a_live_release_in_chromium";
    let install = "apt-get install -y chromium chromium-driver";
    if !tool_or_skip(TEST, "chromium", install) || !tool_or_skip(TEST, "chromedriver", install) {
        return;
    }
    let (stable, canary) = (version("stable").await, version("canary").await);
    let board = Board::start(&config(&stable, &canary)).await;
    let browser = Browser::start().await;

    // A wrong token shows the login again, saying why; the right one shows
    // the configured routes.
    browser.goto(&board.page()).await;
    let token = browser.wait_for("#token", 10.0).await;
    assert!(browser.shown("#login").await && !browser.shown("#board").await);
    browser
        .type_into(&token, "a-wrong-token-of-some-length")
        .await;
    browser
        .click(&browser.wait_for("#login-submit", 1.0).await)
        .await;
    wait_text(&browser, "#login-error", "Wrong token", 5.0).await;
    assert!(browser.shown("#login").await && !browser.shown("#board").await);
    browser.type_into(&token, TOKEN).await;
    browser
        .click(&browser.wait_for("#login-submit", 1.0).await)
        .await;
    browser.wait_for(SPLIT, 5.0).await;
    assert!(browser.shown(r#"[data-rule="web/testers"]"#).await);
    assert!(!browser.shown("#login").await);
    let stored = browser
        .script(
            "return [sessionStorage.getItem('cutover.token'), document.cookie, location.href]",
            serde_json::json!([]),
        )
        .await;
    assert_eq!(stored[0], TOKEN, "kept in sessionStorage");
    assert_eq!(stored[1], "", "never in a cookie");
    assert!(
        !stored[2].as_str().unwrap_or("").contains(TOKEN),
        "never in a URL"
    );

    // Moving 80% of the traffic asks first; cancelling changes nothing,
    // confirming changes the proxy's real split.
    set_weights(&browser, 10, 90).await;
    browser
        .click(
            &browser
                .wait_for(&in_split(r#"[data-action="apply"]"#), 1.0)
                .await,
        )
        .await;
    browser.wait_for("dialog#confirm[open]", 2.0).await;
    browser
        .click(&browser.wait_for("#confirm-cancel", 1.0).await)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(board.weights().await, (90, 10), "cancelled: nothing moved");
    set_weights(&browser, 10, 90).await;
    browser
        .click(
            &browser
                .wait_for(&in_split(r#"[data-action="apply"]"#), 1.0)
                .await,
        )
        .await;
    browser
        .click(
            &browser
                .wait_for("dialog#confirm[open] #confirm-ok", 2.0)
                .await,
        )
        .await;
    wait_text(&browser, "#notice", "Applied", 5.0).await;
    assert_eq!(board.weights().await, (10, 90));
    let canary_hits = board.canary_share(200).await;
    assert!(
        (160..=198).contains(&canary_hits),
        "real split 10/90: {canary_hits} of 200 on the canary"
    );

    // A small move needs no confirmation.
    set_weights(&browser, 60, 40).await;
    browser
        .click(
            &browser
                .wait_for(&in_split(r#"[data-action="apply"]"#), 1.0)
                .await,
        )
        .await;
    wait_until(&board, (60, 40)).await;
    assert!(!browser.shown("dialog#confirm[open]").await);

    // A stale edit: the form was started at one generation, someone else
    // changed the rule since; the page says who and what, and reloads.
    let seen = board.generation().await;
    wait_text(&browser, "#generation", &seen.to_string(), 2.0).await;
    set_weights(&browser, 20, 80).await;
    let (status, _) = board
        .call(
            Method::PATCH,
            "/v1/routes/web/rules/split/weights",
            r#"{"stable": 70, "canary": 30}"#,
            Some(seen),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    browser
        .click(
            &browser
                .wait_for(&in_split(r#"[data-action="apply"]"#), 1.0)
                .await,
        )
        .await;
    if let Some(ok) = browser.find("dialog#confirm[open] #confirm-ok").await {
        browser.click(&ok).await;
    }
    wait_text(
        &browser,
        "#conflict-text",
        &format!("generation {}", seen + 1),
        5.0,
    )
    .await;
    let conflict = browser.text("#conflict-text").await;
    assert!(
        conflict.contains("canary=30") && conflict.contains("by patch"),
        "{conflict}"
    );
    assert_eq!(
        board.weights().await,
        (70, 30),
        "the stale edit was not applied"
    );
    let shown = browser
        .script(
            "return document.querySelector(arguments[0]).value",
            serde_json::json!([in_split(r#"input[type=number][data-group="canary"]"#)]),
        )
        .await;
    assert_eq!(shown, "30", "the form shows the live weights again");

    // A canary that starts answering 503 turns red within 2 s.
    let load = Load::start(board.public);
    let err_cell = in_split(r#"tr[data-group="canary"] td.err .v"#);
    wait_text(
        &browser,
        &in_split(r#"tr[data-group="stable"] td.rps .v"#),
        "",
        5.0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        browser.find(&format!("{err_cell}.bad")).await.is_none(),
        "healthy first"
    );
    canary.failing.store(true, Ordering::Relaxed);
    let failing = Instant::now();
    browser.wait_for(&format!("{err_cell}.bad"), 2.0).await;
    let red = failing.elapsed();
    assert!(red <= Duration::from_secs(2), "red after {red:?}");
    eprintln!("canary error rate red {red:?} after it started failing");

    // Healthy again; a rollout started from the page shows its verdict and
    // evidence. The screenshot is taken during that canary (with
    // CUTOVER_DASHBOARD_PNG, for the README: after a longer failure and a
    // minute of history, so the sparklines tell the story).
    let readme = std::env::var_os("CUTOVER_DASHBOARD_PNG");
    if readme.is_some() {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    canary.failing.store(false, Ordering::Relaxed);
    browser
        .click(
            &browser
                .wait_for(&in_split(r#"[data-action="rollout-start"]"#), 1.0)
                .await,
        )
        .await;
    browser
        .wait_for(&in_split(".verdict [data-verdict]"), 5.0)
        .await;
    wait_text(
        &browser,
        &in_split(".verdict"),
        "more canary requests",
        10.0,
    )
    .await;
    let verdict = browser.text(&in_split(".verdict")).await;
    assert!(verdict.contains("step 1 of 3"), "{verdict}");
    assert!(verdict.contains("Bayes factor"), "{verdict}");
    assert!(browser
        .find(&in_split(r#"[data-action="rollout-start"]:disabled"#))
        .await
        .is_some());
    assert!(browser
        .find(&in_split(r#"[data-action="rollout-pause"]:enabled"#))
        .await
        .is_some());
    let history = if readme.is_some() { 60 } else { 2 };
    tokio::time::sleep(Duration::from_secs(history)).await;
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let dir = TempDir::new("dashboard");
    std::fs::write(dir.path("dashboard.png"), &png).unwrap();
    if let Some(path) = readme {
        std::fs::write(path, &png).unwrap();
    }
    drop(load);
    browser.quit().await;
    board.shut_down().await;
}

/// Types weights for `web/split` into the page's number fields.
async fn set_weights(browser: &Browser, stable: u32, canary: u32) {
    for (group, w) in [("stable", stable), ("canary", canary)] {
        let css = in_split(&format!(r#"input[type=number][data-group="{group}"]"#));
        let input = browser.wait_for(&css, 2.0).await;
        browser.type_into(&input, &w.to_string()).await;
    }
}

/// Waits until the text of `css` contains `want`.
async fn wait_text(browser: &Browser, css: &str, want: &str, secs: f64) {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    loop {
        let text = browser.text(css).await;
        if text.contains(want) && !text.trim().is_empty() && text.trim() != "–" {
            return;
        }
        assert!(Instant::now() < deadline, "{css}: {text:?} has no {want:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn wait_until(board: &Board, weights: (u64, u64)) {
    for _ in 0..200 {
        if board.weights().await == weights {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "weights never became {weights:?}: {:?}",
        board.weights().await
    );
}
