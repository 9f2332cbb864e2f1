//! Weighted and header splits: shares within binomial bounds, weight 0 gets nothing.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_90_10_split_is_within_binomial_bound() {
    let stable = upstream("stable").await;
    let canary = upstream("canary").await;
    let yaml = config(
        &[("stable", &stable), ("canary", &canary)],
        &split_rules(&[("stable", 90), ("canary", 10)]),
    );
    let p = proxy(&yaml).await;
    let c = http1_client();
    const N: usize = 10_000;
    let counts = tally(&c, &p.url("/"), N, &[], by_body).await;
    assert_eq!(
        count(&counts, "stable") + count(&counts, "canary"),
        N,
        "{counts:?}"
    );
    assert_binomial("canary share of 90/10", count(&counts, "canary"), N, 0.10);
    // What the client saw is what the upstreams served.
    assert_eq!(stable.count(), count(&counts, "stable"));
    assert_eq!(canary.count(), count(&counts, "canary"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_group_split_60_30_10_and_weight_zero_groups_get_nothing() {
    let g60 = upstream("g60").await;
    let g30 = upstream("g30").await;
    let g10 = upstream("g10").await;
    let zero_first = upstream("zero-first").await;
    let zero_mid = upstream("zero-mid").await;
    let zero_last = upstream("zero-last").await;
    let yaml = config(
        &[
            ("g60", &g60),
            ("g30", &g30),
            ("g10", &g10),
            ("zero-first", &zero_first),
            ("zero-mid", &zero_mid),
            ("zero-last", &zero_last),
        ],
        &split_rules(&[
            ("zero-first", 0),
            ("g60", 60),
            ("g30", 30),
            ("zero-mid", 0),
            ("g10", 10),
            ("zero-last", 0),
        ]),
    );
    let p = proxy(&yaml).await;
    let c = http1_client();
    const N: usize = 10_000;
    let counts = tally(&c, &p.url("/"), N, &[], by_body).await;
    assert_binomial("g60", count(&counts, "g60"), N, 0.6);
    assert_binomial("g30", count(&counts, "g30"), N, 0.3);
    assert_binomial("g10", count(&counts, "g10"), N, 0.1);
    assert_eq!(
        count(&counts, "g60") + count(&counts, "g30") + count(&counts, "g10"),
        N,
        "weight-0 groups answered: {counts:?}"
    );
    for zero in [&zero_first, &zero_mid, &zero_last] {
        assert_eq!(zero.count(), 0, "{} has weight 0", zero.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_rule_takes_only_requests_with_the_header() {
    let stable = upstream("stable").await;
    let canary = upstream("canary").await;
    // The weighted rule is listed first and also matches prefix `/`: the
    // header rule wins by precedence (more header matches), not by order.
    let rules = "      - name: split
        matches: [{path: {type: PathPrefix, value: /}}]
        backends: [{group: stable, weight: 90}, {group: canary, weight: 10}]
        response_header_modifier: {set: [{name: x-rule, value: split}]}
      - name: canary-header
        matches: [{path: {type: PathPrefix, value: /}, headers: [{name: x-canary, value: always}]}]
        backends: [{group: canary}]
        response_header_modifier: {set: [{name: x-rule, value: canary-header}]}
";
    let p = proxy(&config(&[("stable", &stable), ("canary", &canary)], rules)).await;
    let c = http1_client();

    let with = tally(
        &c,
        &p.url("/any/path"),
        500,
        &[("x-canary", "always")],
        by_rule_and_body,
    )
    .await;
    assert_eq!(with.len(), 1, "{with:?}");
    assert_eq!(count(&with, "canary-header/canary"), 500, "{with:?}");

    const N: usize = 2_000;
    let without = tally(&c, &p.url("/any/path"), N, &[], by_rule_and_body).await;
    let (s, k) = (
        count(&without, "split/stable"),
        count(&without, "split/canary"),
    );
    assert_eq!(
        s + k,
        N,
        "requests without the header must take the weighted rule: {without:?}"
    );
    assert_binomial("canary share without the header", k, N, 0.10);

    // Header names are case-insensitive, values are exact and case-sensitive.
    for (hdr, expected) in [
        (("X-Canary", "always"), "canary-header"),
        (("x-canary", "Always"), "split"),
        (("x-canary", "never"), "split"),
        (("x-canaryx", "always"), "split"),
    ] {
        let got = get(&c, &p.url("/"), &[hdr]).await;
        assert_eq!(header_of(&got, "x-rule"), expected, "header {hdr:?}");
    }
}
