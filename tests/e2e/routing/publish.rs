//! Publishing a new table: the split changes, an invalid config changes nothing.

use super::*;

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
