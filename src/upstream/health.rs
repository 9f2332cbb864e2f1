//! Active health checks: one task per checked endpoint GETs the group's
//! `health_check.path` every `interval`; after `unhealthy_threshold` failures
//! in a row the endpoint is not picked, after `healthy_threshold` successes it
//! is again. Tasks follow the live table: an endpoint whose group no longer
//! has a health check (or that left the table) stops being checked.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;

use crate::config::model::HealthCheckConfig;
use crate::tls::client::UpstreamTls;
use crate::upstream::counted::CountingConnector;
use crate::upstream::{EndpointState, Group};

/// The live table as health checks see it: its groups. (The table type
/// lives above `upstream`; this keeps the dependency pointing down.)
pub trait LiveGroups: Send + Sync + 'static {
    /// The groups of the table.
    fn groups(&self) -> &[Arc<Group>];
}

/// The published table, loaded once per look.
pub type Live<T> = Arc<arc_swap::ArcSwap<T>>;

/// Speaks the group's TLS (if any); its connections are not counted as
/// upstream traffic.
type ProbeClient = Client<CountingConnector, Empty<Bytes>>;

fn probe_client(tls: Option<Arc<UpstreamTls>>) -> ProbeClient {
    let connector = CountingConnector::new(super::pool::tcp_connector(None), None).with_tls(tls);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Starts a checker for every endpoint of the live table whose group has a
/// health check and that has none running yet. Called after each publish.
pub fn ensure_checkers<T: LiveGroups>(live: &Live<T>) {
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    let table = live.load();
    for group in table.groups() {
        if group.policy.health_check.is_none() {
            continue;
        }
        for endpoint in group.endpoints.iter() {
            if !endpoint.state.checked.swap(true, Ordering::AcqRel) {
                let (live, state) = (Arc::clone(live), Arc::clone(&endpoint.state));
                let group = group.name.to_string();
                tokio::spawn(check_loop(live, state, group));
            }
        }
    }
}

/// Keeps checkers in step with the live table until the process ends.
pub async fn supervise<T: LiveGroups>(live: Live<T>, mut published: watch::Receiver<u64>) {
    loop {
        ensure_checkers(&live);
        if published.changed().await.is_err() {
            return;
        }
    }
}

/// The live health-check config for `address` in group `group`, if any,
/// with the group's TLS settings.
fn current_config<T: LiveGroups>(
    live: &Live<T>,
    group: &str,
    address: &str,
) -> Option<(HealthCheckConfig, Option<Arc<UpstreamTls>>)> {
    let table = live.load();
    let g = table.groups().iter().find(|g| &*g.name == group)?;
    g.endpoints.iter().find(|e| &*e.state.address == address)?;
    Some((g.policy.health_check.clone()?, g.policy.tls.clone()))
}

async fn check_loop<T: LiveGroups>(live: Live<T>, state: Arc<EndpointState>, group: String) {
    // Rebuilt when the group's TLS settings or files change.
    let mut client: Option<(Option<u64>, ProbeClient)> = None;
    let (mut ok_streak, mut bad_streak) = (0u32, 0u32);
    while let Some((cfg, tls)) = current_config(&live, &group, &state.address) {
        let fingerprint = tls.as_ref().map(|t| t.fingerprint);
        let (_, probe_with) = match client.take() {
            Some((f, c)) if f == fingerprint => client.insert((f, c)),
            _ => client.insert((fingerprint, probe_client(tls))),
        };
        let healthy = probe(probe_with, fingerprint.is_some(), &state.address, &cfg).await;
        (ok_streak, bad_streak) = if healthy {
            (ok_streak + 1, 0)
        } else {
            (0, bad_streak + 1)
        };
        let was = state.healthy.load(Ordering::Relaxed);
        if was && bad_streak >= cfg.unhealthy_threshold {
            state.healthy.store(false, Ordering::Relaxed);
            tracing::warn!(
                group,
                endpoint = &*state.address,
                path = cfg.path,
                "health check failing: endpoint out of rotation"
            );
        } else if !was && ok_streak >= cfg.healthy_threshold {
            state.healthy.store(true, Ordering::Relaxed);
            tracing::info!(
                group,
                endpoint = &*state.address,
                "health check passing: endpoint back in rotation"
            );
        }
        tokio::time::sleep(cfg.interval.0).await;
    }
    state.healthy.store(true, Ordering::Relaxed);
    state.checked.store(false, Ordering::Release);
}

async fn probe(client: &ProbeClient, tls: bool, address: &str, cfg: &HealthCheckConfig) -> bool {
    let scheme = if tls { "https" } else { "http" };
    let Ok(req) = Request::get(format!("{scheme}://{address}{}", cfg.path))
        .header(header::USER_AGENT, "cutover-health-check")
        .body(Empty::new())
    else {
        return false;
    };
    let exchange = async {
        let resp = client.request(req).await.ok()?;
        let ok = resp.status().is_success();
        resp.into_body().collect().await.ok()?;
        Some(ok)
    };
    matches!(
        tokio::time::timeout(cfg.timeout.0, exchange).await,
        Ok(Some(true))
    )
}
