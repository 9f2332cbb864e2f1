//! The attempt loop: endpoint pick (skipping ejected, unhealthy and already
//! failed endpoints), circuit breaking, per-try timeout, outcome
//! classification, outlier accounting, retry budget, full-jitter backoff and
//! version fallback. Reads top to bottom in [`send`].

mod aim;

pub use aim::aim_at;

use std::future::Future;
use std::time::Duration;

use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use rand::Rng;

use crate::body::Lease;
use crate::body::{PreparedBody, UpstreamBody};
use crate::clock::{now_ms, now_secs, with_rng};
use crate::config::model::Limit;
use crate::config::model::{RetryConfig, RetryOn};
use crate::error::ProxyError;
use crate::metrics::Chosen;
use crate::route::{RouteTable, Rule};
use crate::upstream::outlier::{self, Outcome};
use crate::upstream::pool::{self, SendError, Sent};
use crate::upstream::{balance, limits, Endpoint, Group};

/// A request on its way out: everything its attempts need.
pub struct Outbound<'t> {
    /// The table the request started on.
    pub table: &'t RouteTable,
    /// The matched rule.
    pub rule: &'t Rule,
    /// Sticky-key hash, if the request carries the key.
    pub key: Option<u64>,
    /// The group slot picked by the split (after redistribution).
    pub first_slot: usize,
    /// Request head, already cleaned; cloned per attempt.
    pub parts: Parts,
    /// The client's host, for the upstream `Host`.
    pub raw_host: &'t str,
    /// The body, replayable or not.
    pub body: PreparedBody,
    /// An upgrade request (never retried).
    pub upgrade: bool,
    /// Where each attempt went, for metrics and the access log.
    pub chosen: &'t mut Chosen,
}

/// The upstream's response, with what the client side needs to stream it.
pub struct Answer {
    /// Response head and streaming body.
    pub response: Response<Incoming>,
    /// The answering group's `body_idle_timeout`: the longest gap between
    /// body frames before the response is aborted.
    pub body_idle_timeout: Option<Duration>,
    /// The connection the body arrives on: give it to the response body,
    /// which hands it back to the pool at its end.
    pub lease: Lease,
}

impl Answer {
    fn from(sent: Sent, group: &Group) -> Answer {
        Answer {
            response: sent.response,
            body_idle_timeout: group.policy.body_idle_timeout.map(|d| d.0),
            lease: sent.lease,
        }
    }
}

/// How an attempt ended.
enum Attempt {
    Done(Sent),
    Failed(Failure),
}

/// A failed attempt: what happened, and the response to return if it is
/// not retried.
struct Failure {
    kind: Kind,
    status_response: Option<Sent>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Connect,
    Refused,
    Reset,
    /// Closed or reset before any response byte, after the request was
    /// written; `true` on a connection that had carried requests before.
    Closed(bool),
    /// Lost before the request was written.
    Unsent,
    /// A response head with a transfer coding other than `chunked`.
    Framing,
    PerTryTimeout,
    Status(StatusCode),
    /// A circuit-breaking limit turned the attempt away.
    Overflow(Limit),
    /// The proxy could not build the attempt (e.g. an invalid host).
    Local(ProxyError),
    /// The client's body failed; the upstream is not to blame.
    ClientBody,
}

/// Sends the request, retrying per the rule's policy, within the rule's
/// request timeout.
pub async fn send(x: Outbound<'_>) -> Result<Answer, ProxyError> {
    let limit = x.rule.policy.timeouts.request.0;
    match tokio::time::timeout(limit, attempts(x)).await {
        Ok(result) => result,
        Err(_) => Err(ProxyError::RequestTimeout),
    }
}

/// The attempt loop. A plain `fn` returning an `async` block: an `async fn`
/// would keep its argument twice in its future (the argument and the local
/// it is moved into, 424 bytes each), and every move of the request's
/// future copies both.
#[allow(clippy::manual_async_fn)] // see above: one copy of the request
fn attempts<'t>(mut x: Outbound<'t>) -> impl Future<Output = Result<Answer, ProxyError>> + 't {
    async move {
        let policy = &x.rule.policy.retry;
        let retries = if x.upgrade { 0 } else { policy.attempts };
        x.rule.budget.request(now_secs());
        let mut failed: Vec<usize> = Vec::new();
        let mut slot = x.first_slot;
        let mut attempt = 0u32;
        loop {
            let group = x.rule.group(&x.table.groups, slot);
            let endpoint =
                pick_endpoint(group, x.key, &failed).ok_or(ProxyError::NoHealthyEndpoints)?;
            let index = group
                .endpoints
                .iter()
                .position(|e| std::ptr::eq(e, endpoint))
                .unwrap_or(0);
            x.chosen.attempt(&x.rule.metrics, slot, index);
            // No retry can follow: this attempt may have the head itself.
            let last = attempt >= retries || !x.body.is_replayable();
            let result = send_once(&mut x, (slot, group), index, last).await;
            let failure = match result {
                Attempt::Done(response) => return Ok(Answer::from(response, group)),
                Attempt::Failed(f) => f,
            };
            let wants_retry = attempt < retries
                && x.body.is_replayable()
                && retryable(policy, failure.kind, &x.parts.method);
            if !wants_retry {
                return give_up(failure, group);
            }
            if !x.rule.budget.try_retry(&policy.budget, now_secs()) {
                x.rule.metrics.route.budget_exhausted();
                return give_up(failure, group);
            }
            x.rule.metrics.route.retry();
            tracing::debug!(
                route = &*x.rule.route,
                rule = &*x.rule.name,
                group = &*group.name,
                endpoint = &*endpoint.state.address,
                attempt,
                "retrying"
            );
            failed.push(endpoint_id(endpoint));
            let previous = slot;
            let point = x.key.unwrap_or_else(|| with_rng(|rng| rng.random()));
            slot = x
                .rule
                .next_slot(&x.table.groups, slot, point, policy.fallback, now_ms());
            if slot != previous {
                x.rule.metrics.route.fallback();
            }
            backoff(policy, attempt).await;
            attempt += 1;
        }
    }
}

/// One attempt: admission, per-try timeout, send, classify, outlier.
/// `last`: no retry follows, so the request head is moved, not copied.
async fn send_once(
    x: &mut Outbound<'_>,
    (slot, group): (usize, &Group),
    index: usize,
    last: bool,
) -> Attempt {
    let (endpoint, pool) = (&group.endpoints[index], &group.pools[index]);
    let admitted = match limits::endpoint_has_room(group, endpoint) {
        Ok(()) => group.admission.admit().await,
        Err(full) => Err(full),
    };
    let _slot = match admitted {
        Ok(slot) => slot,
        Err(limit) => {
            group.metrics.overflow(limit);
            return failed(Kind::Overflow(limit));
        }
    };
    let req = match request_for(x, (slot, group), endpoint, last) {
        Ok(r) => r,
        Err(e) => return failed(Kind::Local(e)),
    };
    let in_flight = endpoint.state.start();
    let sending = pool::send(pool, req, &group.metrics);
    let sent = match x.rule.policy.timeouts.per_try {
        Some(per_try) => tokio::time::timeout(per_try.0, sending)
            .await
            .unwrap_or(Err(SendError::TimedOut)),
        None => sending.await,
    };
    drop(in_flight);
    if matches!(sent, Err(SendError::Framing)) {
        tracing::warn!(
            group = &*group.name,
            endpoint = &*endpoint.state.address,
            "upstream response with a transfer coding other than chunked: 502, connection dropped"
        );
    }
    let (attempt, outcome) = classify(sent, &x.rule.policy.retry);
    if let (Some(cfg), Some(outcome)) = (&group.policy.outlier, outcome) {
        outlier::record(group, endpoint, cfg, outcome, now_ms());
    }
    attempt
}

fn failed(kind: Kind) -> Attempt {
    Attempt::Failed(Failure {
        kind,
        status_response: None,
    })
}

/// The request for one attempt: the head aimed at the endpoint. A copy
/// while a retry may still need the head; on the `last` attempt the head
/// itself (its method stays, for the retry decision). The backend's own
/// header edits (Gateway API backendRef filters) apply to this attempt only:
/// a fallback to another backend gets that backend's.
fn request_for(
    x: &mut Outbound<'_>,
    (slot, group): (usize, &Group),
    endpoint: &Endpoint,
    last: bool,
) -> Result<Request<UpstreamBody>, ProxyError> {
    let mut parts = Request::new(()).into_parts().0;
    parts.method = x.parts.method.clone();
    parts.version = x.parts.version;
    if last {
        parts.uri = std::mem::take(&mut x.parts.uri);
        parts.headers = std::mem::take(&mut x.parts.headers);
    } else {
        parts.uri = x.parts.uri.clone();
        parts.headers = x.parts.headers.clone();
    }
    if let Some(b) = x.rule.backend_headers.get(slot) {
        b.request.apply(&mut parts.headers);
    }
    let tls = group.policy.tls.is_some();
    aim_at(&mut parts, endpoint, group.protocol, tls, x.raw_host)?;
    Ok(Request::from_parts(parts, x.body.attempt()))
}

/// Success, or a failure with its kind; plus the outcome for outlier ejection.
fn classify(sent: Result<Sent, SendError>, policy: &RetryConfig) -> (Attempt, Option<Outcome>) {
    let failure = failed;
    match sent {
        Ok(resp) => {
            let status = resp.response.status();
            let outcome = match status.as_u16() {
                502..=504 => Outcome::GatewayFailure,
                500..=599 => Outcome::ServerError,
                _ => Outcome::Success,
            };
            if status_retryable(policy, status) {
                let f = Failure {
                    kind: Kind::Status(status),
                    status_response: Some(resp),
                };
                (Attempt::Failed(f), Some(outcome))
            } else {
                (Attempt::Done(resp), Some(outcome))
            }
        }
        Err(SendError::Connect(_)) => (failure(Kind::Connect), Some(Outcome::GatewayFailure)),
        Err(SendError::Refused(_)) => (failure(Kind::Refused), Some(Outcome::GatewayFailure)),
        Err(SendError::Broken(_)) => (failure(Kind::Reset), Some(Outcome::GatewayFailure)),
        // A reused connection closed under the request is the keep-alive
        // race (the upstream timed it out as the request went out), not a
        // sign of a failing endpoint: the outlier detector is not told. If
        // the endpoint did die, its next connect fails and counts.
        Err(SendError::Closed { reused, .. }) => (
            failure(Kind::Closed(reused)),
            (!reused).then_some(Outcome::GatewayFailure),
        ),
        Err(SendError::Unsent(_)) => (failure(Kind::Unsent), Some(Outcome::GatewayFailure)),
        Err(SendError::Framing) => (failure(Kind::Framing), Some(Outcome::GatewayFailure)),
        Err(SendError::ClientBody(_)) => (failure(Kind::ClientBody), None),
        Err(SendError::TimedOut) => (failure(Kind::PerTryTimeout), Some(Outcome::GatewayFailure)),
    }
}

fn status_retryable(policy: &RetryConfig, status: StatusCode) -> bool {
    let code = status.as_u16();
    policy.on.iter().any(|on| match on {
        RetryOn::GatewayError => (502..=504).contains(&code),
        RetryOn::ServerError => status.is_server_error(),
        RetryOn::RetriableStatusCodes => policy.retriable_status_codes.contains(&code),
        _ => false,
    })
}

/// Whether the policy retries this kind of failure for this method. A
/// connect failure, refused stream or unwritten request never reached the
/// application, so any method may be retried; anything else only for
/// idempotent methods unless the rule opts in (RFC 9110 §9.2.2), whether
/// or not the connection was a reused one.
fn retryable(policy: &RetryConfig, kind: Kind, method: &Method) -> bool {
    let safe_method = policy.non_idempotent || is_idempotent(method);
    let on = |o| policy.on.contains(&o);
    let before_response = on(RetryOn::ResetBeforeResponse) || on(RetryOn::Reset);
    match kind {
        Kind::Connect => on(RetryOn::ConnectFailure),
        Kind::Refused => on(RetryOn::RefusedStream),
        Kind::Unsent => before_response,
        Kind::Closed(_) => safe_method && before_response,
        Kind::Reset => safe_method && on(RetryOn::Reset),
        // As if the upstream had answered 502.
        Kind::Framing => safe_method && on(RetryOn::GatewayError),
        Kind::PerTryTimeout => {
            safe_method
                && (on(RetryOn::Reset) || on(RetryOn::GatewayError) || on(RetryOn::ServerError))
        }
        Kind::Status(_) => safe_method,
        Kind::Overflow(_) | Kind::Local(_) | Kind::ClientBody => false,
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The error (or the upstream's own failing response) when no retry follows.
fn give_up(f: Failure, group: &Group) -> Result<Answer, ProxyError> {
    if let Some(response) = f.status_response {
        return Ok(Answer::from(response, group));
    }
    Err(match f.kind {
        Kind::Connect => ProxyError::ConnectFailed,
        Kind::Refused | Kind::Reset | Kind::Closed(_) | Kind::Unsent | Kind::Status(_) => {
            ProxyError::UpstreamFailed
        }
        Kind::Framing => ProxyError::UpstreamFraming,
        Kind::PerTryTimeout => ProxyError::PerTryTimeout,
        Kind::Overflow(limit) => ProxyError::Overflow(limit),
        Kind::Local(e) => e,
        Kind::ClientBody => ProxyError::ClientBodyFailed,
    })
}

fn endpoint_id(e: &Endpoint) -> usize {
    std::sync::Arc::as_ptr(&e.state) as usize
}

/// An available endpoint that has not failed this request; if every
/// available one has, any available one.
fn pick_endpoint<'g>(group: &'g Group, key: Option<u64>, failed: &[usize]) -> Option<&'g Endpoint> {
    let now = now_ms();
    with_rng(|rng| {
        balance::pick_where(group, key, rng, |e| {
            e.state.available(now) && !failed.contains(&endpoint_id(e))
        })
        .or_else(|| balance::pick_where(group, key, rng, |e| e.state.available(now)))
    })
}

/// Full jitter: a random wait in [0, min(max, base * 2^attempt)].
async fn backoff(policy: &RetryConfig, attempt: u32) {
    let base = policy.backoff.base.0;
    let cap = base
        .saturating_mul(1u32 << attempt.min(16))
        .min(policy.backoff.max.0);
    if cap.is_zero() {
        return;
    }
    let wait = with_rng(|rng| rng.random_range(0..=cap.as_micros() as u64));
    tokio::time::sleep(Duration::from_micros(wait)).await;
}

#[cfg(test)]
mod tests {
    use super::{retryable, Kind, Method, RetryConfig, RetryOn};

    #[test]
    fn a_connection_lost_before_the_response_is_retried_by_default_when_safe() {
        let default = RetryConfig::default();
        assert!(retryable(&default, Kind::Closed(true), &Method::GET));
        assert!(retryable(&default, Kind::Closed(true), &Method::DELETE));
        assert!(!retryable(&default, Kind::Closed(true), &Method::POST));
        assert!(retryable(&default, Kind::Closed(false), &Method::GET));
        // Never written: nothing to repeat, whatever the method.
        assert!(retryable(&default, Kind::Unsent, &Method::POST));
        // A reset after the upstream may have acted stays opt-in.
        assert!(!retryable(&default, Kind::Reset, &Method::GET));
        assert!(!retryable(&default, Kind::Framing, &Method::GET));

        let only_connect = RetryConfig {
            on: vec![RetryOn::ConnectFailure],
            ..RetryConfig::default()
        };
        assert!(!retryable(&only_connect, Kind::Closed(true), &Method::GET));
        assert!(!retryable(&only_connect, Kind::Unsent, &Method::GET));

        let gateway = RetryConfig {
            on: vec![RetryOn::GatewayError, RetryOn::Reset],
            ..RetryConfig::default()
        };
        assert!(retryable(&gateway, Kind::Framing, &Method::GET));
        assert!(!retryable(&gateway, Kind::Framing, &Method::POST));
        assert!(retryable(&gateway, Kind::Closed(true), &Method::GET));
        assert!(retryable(&gateway, Kind::Closed(false), &Method::GET));
    }
}
