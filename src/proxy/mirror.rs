//! Request mirroring (Gateway API `RequestMirror`): a copy of the request,
//! as it is forwarded, sent to one endpoint of each mirror group that
//! samples it; fire-and-forget. The copy is spawned, so the primary never
//! waits for it; its answer is read and discarded; it never touches the
//! primary's metrics, outlier state or retry budget. Copies are bounded in
//! body size and in number in flight, each over-bound case counted.

use std::sync::Arc;

use http::request::Parts;
use http::Request;
use http_body_util::BodyExt;

use crate::body::PreparedBody;
use crate::clock::{now_ms, with_rng};
use crate::metrics::mirror::MirrorOutcome;
use crate::metrics::GroupSeries;
use crate::retry::aim_at;
use crate::route::mirror::Mirror;
use crate::route::{RouteTable, Rule};
use crate::upstream::pool::{self, EndpointPool};
use crate::upstream::{balance, Group};

/// Sends the copies `rule`'s mirrors ask for: `head` and `body` as the
/// primary forwards them, `host` its routed host. Returns at once.
#[inline(never)] // off the request path's hot code: see proxy::forward_request
pub fn launch(table: &RouteTable, rule: &Rule, head: &Parts, host: &str, body: &PreparedBody) {
    for m in rule.mirrors.iter() {
        if !with_rng(|rng| m.samples(rng)) {
            continue;
        }
        let Some(group) = table.groups.get(m.group as usize) else {
            continue;
        };
        if let Err(outcome) = copy(m, group, head, host, body) {
            m.metrics.count(outcome);
        }
    }
}

/// Builds and spawns one copy, or says why it is not sent.
fn copy(
    m: &Mirror,
    group: &Group,
    head: &Parts,
    host: &str,
    body: &PreparedBody,
) -> Result<(), MirrorOutcome> {
    let body = body
        .copy_within(m.max_body)
        .ok_or(MirrorOutcome::BodyTooLarge)?;
    let place = m
        .metrics
        .try_start(m.max_in_flight)
        .ok_or(MirrorOutcome::Dropped)?;
    let now = now_ms();
    let endpoint =
        with_rng(|rng| balance::pick_where(group, None, rng, |e| e.state.available(now)))
            .ok_or(MirrorOutcome::NoEndpoint)?;
    let index = group
        .endpoints
        .iter()
        .position(|e| std::ptr::eq(e, endpoint))
        .ok_or(MirrorOutcome::NoEndpoint)?;
    let pool = Arc::clone(&group.pools[index]);
    let series = Arc::clone(&group.metrics);
    let mut parts = Request::new(()).into_parts().0;
    parts.method = head.method.clone();
    parts.version = head.version;
    parts.uri = head.uri.clone();
    parts.headers = head.headers.clone();
    let tls = group.policy.tls.is_some();
    aim_at(&mut parts, endpoint, group.protocol, tls, host).map_err(|_| MirrorOutcome::Failed)?;
    let req = Request::from_parts(parts, body);
    let timeout = m.timeout;
    tokio::spawn(async move {
        let outcome = tokio::time::timeout(timeout, exchange(&pool, req, &series))
            .await
            .unwrap_or(MirrorOutcome::Timeout);
        place.finish(outcome);
    });
    Ok(())
}

/// Sends the copy and reads its answer to the end (the connection then
/// goes back to the mirror endpoint's pool), discarding it. The request is
/// counted on the mirror group's own series, never the primary's.
async fn exchange(
    pool: &Arc<EndpointPool>,
    req: Request<crate::body::UpstreamBody>,
    series: &GroupSeries,
) -> MirrorOutcome {
    let Ok(sent) = pool::send(pool, req, series).await else {
        return MirrorOutcome::Failed;
    };
    let (mut lease, mut body) = (sent.lease, sent.response.into_body());
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            return MirrorOutcome::Failed;
        }
    }
    lease.end();
    MirrorOutcome::Answered
}
