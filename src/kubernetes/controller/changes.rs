//! What changed since the controller's last round: only EndpointSlices
//! (then only the groups of their Services are recomputed and published,
//! sharing the rest of the table), or anything else (a full rebuild).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;
use tokio::sync::Notify;

use crate::carry::lock;
use crate::kubernetes::index::ObjectKey;

/// The label EndpointSlices carry with their Service's name.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The watches' events, folded into what the next round must do; each
/// event also wakes the loop.
#[derive(Debug)]
pub(super) struct Changes {
    wake: Notify,
    dirty: Mutex<Dirty>,
}

#[derive(Debug, Default)]
struct Dirty {
    /// Something besides EndpointSlices changed (or a watch re-listed).
    full: bool,
    /// Services whose EndpointSlices changed.
    services: BTreeSet<ObjectKey>,
    /// Each EndpointSlice's Service, to find the old one when a slice is
    /// deleted or moves.
    owners: HashMap<ObjectKey, ObjectKey>,
}

/// The work of one round.
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// Rebuild everything.
    pub full: bool,
    /// Else: recompute the groups of these Services.
    pub services: BTreeSet<ObjectKey>,
}

impl Changes {
    /// The first round is a full one.
    pub fn new() -> Self {
        Changes {
            wake: Notify::new(),
            dirty: Mutex::new(Dirty {
                full: true,
                ..Dirty::default()
            }),
        }
    }

    /// Anything but an EndpointSlice changed: the next round rebuilds all.
    pub fn everything(&self) {
        lock(&self.dirty).full = true;
        self.wake.notify_one();
    }

    /// An EndpointSlice event: its Service (and the one it belonged to
    /// before) needs new pods; a re-list rebuilds all.
    pub fn slice(&self, event: &Event<EndpointSlice>) {
        {
            let mut d = lock(&self.dirty);
            match event {
                Event::Apply(s) => d.applied(s),
                Event::Delete(s) => {
                    let gone = d.owners.remove(&ObjectKey::of(&s.metadata));
                    d.services.extend(gone);
                    d.services.extend(service_of(s));
                }
                Event::Init => {
                    d.owners.clear();
                    d.full = true;
                }
                Event::InitApply(s) => {
                    d.applied(s);
                    d.full = true;
                }
                Event::InitDone => d.full = true,
            }
        }
        self.wake.notify_one();
    }

    /// Waits for the next event (at once if one came since the last wait).
    pub async fn wait(&self) {
        self.wake.notified().await;
    }

    /// What changed since the last call.
    pub fn take(&self) -> Pending {
        let mut d = lock(&self.dirty);
        Pending {
            full: std::mem::take(&mut d.full),
            services: std::mem::take(&mut d.services),
        }
    }
}

impl Dirty {
    fn applied(&mut self, s: &EndpointSlice) {
        let key = ObjectKey::of(&s.metadata);
        let before = match service_of(s) {
            Some(service) => {
                self.services.insert(service.clone());
                self.owners.insert(key, service)
            }
            None => self.owners.remove(&key),
        };
        self.services.extend(before);
    }
}

/// Drops what the index never reads from an EndpointSlice before the store
/// keeps it: per endpoint the pod reference, node, zone, host name and
/// hints (five strings or more each, for every pod of the cluster), and
/// every label but the Service's name.
pub(super) fn slim_slice(s: &mut EndpointSlice) {
    if let Some(labels) = s.metadata.labels.as_mut() {
        labels.retain(|k, _| k == SERVICE_NAME_LABEL);
    }
    s.metadata.owner_references = None;
    for e in &mut s.endpoints {
        e.target_ref = None;
        e.node_name = None;
        e.zone = None;
        e.hostname = None;
        e.hints = None;
        e.deprecated_topology = None;
    }
}

/// The Service an EndpointSlice belongs to.
pub(super) fn service_of(s: &EndpointSlice) -> Option<ObjectKey> {
    Some(ObjectKey {
        namespace: s.metadata.namespace.clone()?,
        name: service_name(s)?.to_string(),
    })
}

/// The name of the Service of an EndpointSlice (its `service-name` label).
pub(super) fn service_name(s: &EndpointSlice) -> Option<&str> {
    let labels = s.metadata.labels.as_ref()?;
    labels.get(SERVICE_NAME_LABEL).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn slice(name: &str, service: &str) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("shop".into()),
                labels: Some([(SERVICE_NAME_LABEL.to_string(), service.to_string())].into()),
                ..ObjectMeta::default()
            },
            ..EndpointSlice::default()
        }
    }

    fn names(p: &Pending) -> Vec<&str> {
        p.services.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn slice_events_name_their_services_and_anything_else_rebuilds_all() {
        let c = Changes::new();
        c.slice(&Event::Init);
        c.slice(&Event::InitApply(slice("a-1", "a")));
        c.slice(&Event::InitDone);
        assert!(c.take().full, "the first round and a re-list rebuild all");
        c.slice(&Event::Apply(slice("a-1", "a")));
        let p = c.take();
        assert!(!p.full);
        assert_eq!(names(&p), ["a"]);
        // A slice moving to another Service changes both.
        c.slice(&Event::Apply(slice("a-1", "b")));
        assert_eq!(names(&c.take()), ["a", "b"]);
        c.slice(&Event::Delete(slice("a-1", "b")));
        assert_eq!(names(&c.take()), ["b"]);
        assert!(c.take().services.is_empty(), "taken once");
        c.everything();
        assert!(c.take().full);
    }

    #[test]
    fn a_slimmed_slice_keeps_what_the_index_reads() {
        use k8s_openapi::api::core::v1::ObjectReference;
        use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};
        let mut s = slice("a-1", "a");
        if let Some(labels) = s.metadata.labels.as_mut() {
            labels.insert("app".into(), "shop".into());
        }
        s.endpoints = vec![Endpoint {
            addresses: vec!["10.0.0.1".into()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                ..EndpointConditions::default()
            }),
            node_name: Some("node-1".into()),
            target_ref: Some(ObjectReference {
                name: Some("pod-1".into()),
                ..ObjectReference::default()
            }),
            zone: Some("z".into()),
            ..Endpoint::default()
        }];
        slim_slice(&mut s);
        assert_eq!(service_of(&s).map(|k| k.name), Some("a".to_string()));
        assert_eq!(s.metadata.labels.as_ref().map(|l| l.len()), Some(1));
        let e = &s.endpoints[0];
        assert_eq!(e.addresses, ["10.0.0.1"]);
        assert_eq!(e.conditions.as_ref().and_then(|c| c.ready), Some(true));
        assert!(e.target_ref.is_none() && e.node_name.is_none() && e.zone.is_none());
    }
}
