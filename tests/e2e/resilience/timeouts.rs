//! Timeouts and backoff, on paused tokio time: a 15 s timeout costs no real
//! time and every duration is exact.

use std::time::Duration;

use http::Method;
use tokio::time::Instant;

use super::kit::{self, Backend};
use crate::support::proxy;

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn request_timeout_is_a_504_naming_it_after_15s_by_default() {
    let slow = Backend::start("slow").await;
    slow.set_delay(HOUR);
    let p = proxy(&kit::config(
        &[],
        &[kit::group("app", &[slow.addr], &[])],
        &[kit::rule("all", "[{group: app}]", &[])],
    ))
    .await;
    let c = kit::client();
    let t = Instant::now();
    let got = kit::get(&c, &p.url("/")).await;
    let took = t.elapsed();
    assert_eq!(got.status, 504);
    assert!(got.text().contains("timeouts.request"), "{got:?}");
    assert!(
        took >= Duration::from_secs(15) && took < Duration::from_millis(15_100),
        "{took:?}"
    );
    assert_eq!(slow.count(), 1, "a slow answer is not retried by default");
}

#[tokio::test(start_paused = true)]
async fn per_try_timeout_retries_a_slow_endpoint_and_succeeds_on_a_fast_one() {
    let slow = Backend::start("slow").await;
    let fast = Backend::start("fast").await;
    slow.set_delay(HOUR);
    let p = proxy(&kit::config(
        &[],
        &[kit::group(
            "app",
            &[slow.addr, fast.addr],
            &["outlier: {enabled: false}"],
        )],
        &[kit::rule(
            "all",
            "[{group: app}]",
            &[
                "timeouts: {request: 10s, per_try: 1s}",
                "retry: {attempts: 1, on: [reset]}",
            ],
        )],
    ))
    .await;
    let c = kit::client();
    let mut slow_first = 0;
    for _ in 0..6 {
        let t = Instant::now();
        let got = kit::get(&c, &p.url("/")).await;
        let took = t.elapsed();
        assert_eq!((got.status, got.text()), (200, "fast"));
        if took >= Duration::from_secs(1) {
            // per-try timeout, then at most the first backoff (25ms).
            assert!(took <= Duration::from_millis(1_030), "{took:?}");
            slow_first += 1;
        }
    }
    assert!(slow_first >= 1, "the slow endpoint was never tried");
    assert_eq!(slow.count(), slow_first);
    assert_eq!(fast.count(), 6);

    // POST is not retried after a per-try timeout: the upstream may have
    // acted on it. The reply names the timeout that fired.
    let (mut timed_out, before) = (0, slow.count());
    for _ in 0..4 {
        let t = Instant::now();
        let got = kit::call(&c, Method::POST, &p.url("/"), &[], kit::sized(10)).await;
        if got.status == 504 {
            assert!(got.text().contains("timeouts.per_try"), "{got:?}");
            let took = t.elapsed();
            assert!(took >= Duration::from_secs(1) && took < Duration::from_millis(1_010));
            timed_out += 1;
        } else {
            assert_eq!((got.status, got.text()), (200, "fast"));
        }
    }
    assert!(timed_out >= 1);
    assert_eq!(slow.count() - before, timed_out, "one attempt per POST");
}

#[tokio::test(start_paused = true)]
async fn per_try_and_request_timeouts_name_themselves() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    a.set_delay(HOUR);
    b.set_delay(HOUR);
    let retry = "retry: {attempts: 3, on: [reset], backoff: {base: 10ms, max: 10ms}}";
    let p = proxy(&kit::config(
        &[],
        &[kit::group(
            "app",
            &[a.addr, b.addr],
            &["outlier: {enabled: false}"],
        )],
        &[
            kit::rule(
                "per-try",
                "[{group: app}]",
                &[
                    "matches: [{path: {value: /per-try}}]",
                    "timeouts: {request: 10s, per_try: 1s}",
                    retry,
                ],
            ),
            kit::rule(
                "whole",
                "[{group: app}]",
                &[
                    "matches: [{path: {value: /whole}}]",
                    "timeouts: {request: 2500ms, per_try: 1s}",
                    retry,
                ],
            ),
        ],
    ))
    .await;
    let c = kit::client();

    // Every attempt times out: four tries, the reply names per_try.
    let t = Instant::now();
    let got = kit::get(&c, &p.url("/per-try")).await;
    let took = t.elapsed();
    assert_eq!(got.status, 504);
    assert!(got.text().contains("timeouts.per_try"), "{got:?}");
    assert!(
        took >= Duration::from_secs(4) && took <= Duration::from_millis(4_030),
        "{took:?}"
    );
    assert_eq!(a.count() + b.count(), 4);
    assert!(
        a.count() >= 1 && b.count() >= 1,
        "the retry left the failed one"
    );

    // The request timeout cuts the third try short and names itself.
    let t = Instant::now();
    let got = kit::get(&c, &p.url("/whole")).await;
    assert_eq!(got.status, 504);
    assert!(got.text().contains("timeouts.request"), "{got:?}");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(2_500) && took < Duration::from_millis(2_510),
        "{took:?}"
    );
    assert_eq!(a.count() + b.count(), 7);
}

#[tokio::test(start_paused = true)]
async fn backoff_is_full_jitter_capped_at_max() {
    let down = Backend::start("down").await;
    down.set_status(503);
    let p = proxy(&kit::config(
        &[],
        &[kit::group(
            "app",
            &[down.addr],
            &["outlier: {enabled: false}"],
        )],
        &[kit::rule(
            "all",
            "[{group: app}]",
            &["retry: {attempts: 3, on: [gateway-error], backoff: {base: 1s, max: 2s}}"],
        )],
    ))
    .await;
    let c = kit::client();
    let mut waits = Vec::new();
    for _ in 0..12 {
        let t = Instant::now();
        let got = kit::get(&c, &p.url("/")).await;
        waits.push(t.elapsed());
        // When the retries are spent the client gets the upstream's answer.
        assert_eq!((got.status, got.text()), (503, "down"));
    }
    assert_eq!(down.count(), 48, "1 try + 3 retries each");
    // Waits are random in [0, 1s] + [0, 2s] + [0, 2s] (capped at max).
    let max = Duration::from_secs(5);
    assert!(waits.iter().all(|w| *w <= max), "{waits:?}");
    let mean = waits.iter().sum::<Duration>() / waits.len() as u32;
    assert!(
        mean > Duration::from_millis(1_250) && mean < Duration::from_millis(3_750),
        "mean {mean:?} of {waits:?}"
    );
    let mut distinct = waits.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() >= 10, "jitter: {waits:?}");
}
