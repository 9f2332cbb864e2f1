//! HTTPRoute `retry` per the retry GEP: connection errors retried with any
//! stanza, `attempts: 0` disables retries, `backoff` is the jitter's base.

use super::{compiled, route_with_rule};
use crate::config::model::RetryOn;
use crate::config::resilience::Dur;

#[test]
fn a_retry_stanza_retries_connection_errors_and_backoff_is_the_base() {
    let cfg = compiled(&route_with_rule(
        "  - retry: {backoff: 100ms}\n    backendRefs: [{name: reviews, port: 80}]\n  - matches: [{path: {value: /none}}]\n    retry: {attempts: 0}\n    backendRefs: [{name: reviews, port: 80}]\n  - matches: [{path: {value: /plain}}]\n    backendRefs: [{name: reviews, port: 80}]\n",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let rules = &cfg.routes[0].rules;
    let with = &rules[0].retry;
    for on in [
        RetryOn::ConnectFailure,
        RetryOn::RefusedStream,
        RetryOn::ResetBeforeResponse,
        RetryOn::Reset,
    ] {
        assert!(with.on.contains(&on), "{on:?}");
    }
    assert!(!with.on.contains(&RetryOn::RetriableStatusCodes));
    assert_eq!(with.attempts, 1);
    assert_eq!(
        (with.backoff.base, with.backoff.max),
        (Dur::ms(100), Dur::secs(1))
    );
    assert_eq!(rules[1].retry.attempts, 0, "an explicit 0 disables retries");
    assert!(
        !rules[2].retry.on.contains(&RetryOn::Reset),
        "no stanza: cutover's defaults"
    );
}
