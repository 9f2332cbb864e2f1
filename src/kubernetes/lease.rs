//! One status writer among replicas: a `coordination.k8s.io` Lease. Every
//! replica serves traffic from its own watches; only the Lease holder writes
//! status, so replicas never fight over it. The holder renews every third of
//! the lease; another replica takes over once a lease has not been renewed
//! for its whole duration. Updates carry the `resourceVersion` read, so two
//! replicas racing for one lease cannot both win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use tokio::sync::watch;

/// Which Lease, and who this replica is.
#[derive(Debug, Clone)]
pub struct LeaseOptions {
    /// The Lease's namespace (the controller's own).
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// This replica (its pod name).
    pub identity: String,
    /// How long a lease holds without renewal.
    pub duration: Duration,
}

/// Keeps trying to hold the Lease; `leader` says whether this replica does.
pub async fn hold(client: kube::Client, options: LeaseOptions, leader: watch::Sender<bool>) {
    let api: Api<Lease> = Api::namespaced(client, &options.namespace);
    let mut tick = tokio::time::interval((options.duration / 3).max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let held = match try_hold(&api, &options).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(lease = %options.name, error = %e, "cannot read or renew the status writer lease");
                // Unsure whether it still holds: stop writing, to be safe.
                false
            }
        };
        leader.send_if_modified(|was| {
            if *was != held {
                tracing::info!(identity = %options.identity, writer = held, "status writer lease changed hands");
            }
            std::mem::replace(was, held) != held
        });
    }
}

/// One round: create, renew or take over the Lease. `Ok(true)` when held.
async fn try_hold(api: &Api<Lease>, options: &LeaseOptions) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let seconds = i32::try_from(options.duration.as_secs().max(1)).unwrap_or(i32::MAX);
    let Some(mut lease) = api.get_opt(&options.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(options.name.clone()),
                namespace: Some(options.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(options.identity.clone()),
                lease_duration_seconds: Some(seconds),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return conflict_is_false(api.create(&PostParams::default(), &lease).await);
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let mine = spec.holder_identity.as_deref() == Some(options.identity.as_str());
    let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
        (Some(MicroTime(renewed)), Some(d)) => {
            *renewed + SignedDuration::from_secs(i64::from(d)) < now
        }
        _ => true,
    };
    if !mine && !expired {
        return Ok(false);
    }
    if !mine {
        spec.holder_identity = Some(options.identity.clone());
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(seconds);
    conflict_is_false(
        api.replace(&options.name, &PostParams::default(), &lease)
            .await,
    )
}

/// A 409 (another replica wrote first) means not held, not an error.
fn conflict_is_false(result: Result<Lease, kube::Error>) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}
