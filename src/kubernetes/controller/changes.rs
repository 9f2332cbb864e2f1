//! What changed since the controller's last round: only EndpointSlices
//! (then only the groups of their Services are recomputed and published,
//! sharing the rest of the table), or anything else (a full rebuild).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use kube::runtime::watcher::Event;
use kube::Resource;
use tokio::sync::Notify;

use crate::carry::lock;
use crate::kubernetes::index::ObjectKey;
use crate::kubernetes::resources::EndpointSlice;

/// The label EndpointSlices carry with their Service's name.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Most resource versions of our own status patches remembered; past it
/// they are forgotten (an echo then costs one full round, as before).
const MAX_ECHOES: usize = 100_000;

/// The watches' events, folded into what the next round must do; each
/// event also wakes the loop.
#[derive(Debug)]
pub(super) struct Changes {
    wake: Notify,
    dirty: Mutex<Dirty>,
    /// The resourceVersions our own status patches produced: the watch
    /// event of each (its echo) changes only a status the index does not
    /// read, so it asks for no round. Without this every status write was
    /// followed by a full rebuild that found nothing to publish.
    echoes: Mutex<HashSet<String>>,
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
    /// The other way: each Service's EndpointSlices (a few: a Vec, not a
    /// set, which would cost ~200 bytes for one), so a round reads just the
    /// slices of the Services it recomputes, not every slice.
    members: HashMap<ObjectKey, Vec<ObjectKey>>,
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
            echoes: Mutex::default(),
        }
    }

    /// A status patch of ours made the object's `version`.
    pub fn produced(&self, version: &str) {
        let mut echoes = lock(&self.echoes);
        if echoes.len() >= MAX_ECHOES {
            echoes.clear();
        }
        echoes.insert(version.to_string());
    }

    /// An event of a kind whose status cutover writes: a full round,
    /// unless it is the echo of our own status patch.
    pub fn status_kind<K: Resource>(&self, event: &Event<K>) {
        if let Event::Apply(o) = event {
            let version = o.meta().resource_version.as_ref();
            if version.is_some_and(|v| lock(&self.echoes).remove(v)) {
                return;
            }
        }
        self.everything();
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
                    let gone = d.own(ObjectKey::of(&s.metadata), None);
                    d.services.extend(gone);
                    d.services.extend(service_of(s));
                }
                Event::Init => {
                    d.owners.clear();
                    d.members.clear();
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

    /// The EndpointSlices of `services`, as the events so far told.
    pub fn slices_of(&self, services: &BTreeSet<ObjectKey>) -> Vec<ObjectKey> {
        let d = lock(&self.dirty);
        services
            .iter()
            .filter_map(|s| d.members.get(s))
            .flatten()
            .cloned()
            .collect()
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
        let service = service_of(s);
        self.services.extend(service.clone());
        let before = self.own(ObjectKey::of(&s.metadata), service);
        self.services.extend(before);
    }

    /// Records that `slice` belongs to `service` (`None`: to none, or it is
    /// gone); returns the Service it belonged to before.
    fn own(&mut self, slice: ObjectKey, service: Option<ObjectKey>) -> Option<ObjectKey> {
        let before = match &service {
            Some(s) => self.owners.insert(slice.clone(), s.clone()),
            None => self.owners.remove(&slice),
        };
        if let Some(b) = before.as_ref().filter(|b| Some(*b) != service.as_ref()) {
            if let Some(m) = self.members.get_mut(b) {
                m.retain(|x| *x != slice);
                if m.is_empty() {
                    self.members.remove(b);
                }
            }
        }
        if let Some(s) = service {
            let m = self.members.entry(s).or_default();
            if !m.contains(&slice) {
                m.push(slice);
            }
        }
        before
    }
}

/// Drops what the index never reads from an EndpointSlice's metadata
/// before the store keeps it: its owner and every label but the Service's
/// name (per endpoint, [`EndpointSlice`] decodes only what is read).
pub(super) fn slim_slice(s: &mut EndpointSlice) {
    if let Some(labels) = s.metadata.labels.as_mut() {
        labels.retain(|k, _| k == SERVICE_NAME_LABEL);
    }
    s.metadata.owner_references = None;
}

/// The Service an EndpointSlice belongs to.
pub(super) fn service_of(s: &EndpointSlice) -> Option<ObjectKey> {
    Some(ObjectKey {
        namespace: s.metadata.namespace.clone()?,
        name: service_name(s)?.to_string(),
    })
}

/// The name of the Service of an EndpointSlice (its `service-name` label).
fn service_name(s: &EndpointSlice) -> Option<&str> {
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

    fn key(name: &str) -> ObjectKey {
        ObjectKey {
            namespace: "shop".into(),
            name: name.into(),
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
        let a_and_b = [key("a"), key("b")].into();
        assert_eq!(c.slices_of(&a_and_b), [key("a-1")], "moved, not copied");
        c.slice(&Event::Delete(slice("a-1", "b")));
        assert_eq!(names(&c.take()), ["b"]);
        assert!(c.slices_of(&a_and_b).is_empty(), "deleted");
        assert!(c.take().services.is_empty(), "taken once");
        c.everything();
        assert!(c.take().full);
    }

    #[test]
    fn the_echo_of_our_own_status_patch_asks_for_no_round() {
        use crate::kubernetes::resources::HttpRoute;
        let route = |version: &str| -> HttpRoute {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "r", "namespace": "shop", "resourceVersion": version},
                "spec": {}
            }))
            .expect("an HTTPRoute")
        };
        let c = Changes::new();
        c.take();
        c.produced("7");
        c.status_kind(&Event::Apply(route("7")));
        assert!(!c.take().full, "our own patch came back");
        c.status_kind(&Event::Apply(route("7")));
        assert!(c.take().full, "seen once; the same version again is news");
        c.status_kind(&Event::Apply(route("8")));
        assert!(c.take().full, "someone else's change");
    }

    #[test]
    fn a_slimmed_slice_keeps_what_the_index_reads() {
        // As the EndpointSlice controller writes it.
        let mut s: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a-1", "namespace": "shop",
                         "labels": {SERVICE_NAME_LABEL: "a", "app": "shop"},
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "a", "uid": "u"}]},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": true, "serving": true},
                           "nodeName": "node-1", "zone": "z",
                           "targetRef": {"kind": "Pod", "name": "pod-1", "namespace": "shop"}}]
        }))
        .expect("an EndpointSlice");
        slim_slice(&mut s);
        assert_eq!(service_of(&s).map(|k| k.name), Some("a".to_string()));
        assert_eq!(s.metadata.labels.as_ref().map(|l| l.len()), Some(1));
        assert!(s.metadata.owner_references.is_none());
        let e = &s.endpoints[0];
        assert_eq!(e.addresses, ["10.0.0.1"]);
        assert_eq!(e.conditions.as_ref().and_then(|c| c.ready), Some(true));
        let port = s.ports.iter().flatten().next().and_then(|p| p.port);
        assert_eq!(port, Some(8080));
    }
}
