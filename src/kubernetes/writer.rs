//! The status writer: applies what the index decided (server-side apply,
//! field manager [`FIELD_MANAGER`]) unless the object already says it, or
//! this writer just wrote it and the watch has not caught up; routes that
//! left cutover's Gateways lose cutover's entries.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use kube::api::{Api, Patch, PatchParams};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::digest;
use super::index::{self, ObjectKey, Objects, Output};
use super::resources::{Gateway, GatewayClass, GrpcRoute, HttpRoute};
use super::status;

/// The field manager of every status cutover applies.
pub const FIELD_MANAGER: &str = "cutover";

/// Writes statuses; remembers what it wrote.
pub struct Writer {
    client: kube::Client,
    controller_name: String,
    /// Per object: the digest of the status last applied (not a copy: one
    /// per route of the cluster), the object's resourceVersion before and
    /// after; equal status and either version means done.
    written: HashMap<(&'static str, ObjectKey), (Option<u128>, String, String)>,
    /// Told the resourceVersion each applied status made (its watch event
    /// is our own echo).
    on_written: Box<dyn Fn(&str) + Send + Sync>,
}

impl Writer {
    /// A writer for `controller_name`'s statuses; `on_written` is told
    /// the resourceVersion each status it applies makes.
    pub fn new(
        client: kube::Client,
        controller_name: String,
        on_written: impl Fn(&str) + Send + Sync + 'static,
    ) -> Self {
        Writer {
            client,
            controller_name,
            written: HashMap::new(),
            on_written: Box::new(on_written),
        }
    }

    /// Forgets what was written: a new Lease holder starts from what the
    /// objects say.
    pub fn forget(&mut self) {
        self.written.clear();
    }

    /// Applies the statuses of `out` that the objects do not show yet.
    pub async fn write(&mut self, out: &Output, objects: &Objects) {
        let now = status::now();
        let versions = Versions::of(objects);
        for (name, wanted) in &out.statuses.classes {
            let key = ObjectKey {
                namespace: String::new(),
                name: name.clone(),
            };
            let current = versions.classes.get(&key);
            let patch = status::gateway_class(name, wanted, current.and_then(|c| c.1), &now);
            let same = patch.unchanged(&status::gateway_class_current(current.and_then(|c| c.1)));
            let api: Api<GatewayClass> = Api::all(self.client.clone());
            self.apply(api, "GatewayClass", key, patch, same, current.map(|c| c.0))
                .await;
        }
        for (key, wanted) in &out.statuses.gateways {
            let current = versions.gateways.get(key);
            let patch = status::gateway(
                &key.namespace,
                &key.name,
                wanted,
                current.and_then(|c| c.1),
                &now,
            );
            let same = patch.unchanged(&status::gateway_current(current.and_then(|c| c.1)));
            let api: Api<Gateway> = Api::namespaced(self.client.clone(), &key.namespace);
            self.apply(
                api,
                "Gateway",
                key.clone(),
                patch,
                same,
                current.map(|c| c.0),
            )
            .await;
        }
        let routes = (&out.statuses.routes, &versions.routes);
        self.routes::<HttpRoute>("HTTPRoute", routes, generations(&objects.routes), &now)
            .await;
        let grpc = (&out.statuses.grpc_routes, &versions.grpc_routes);
        self.routes::<GrpcRoute>("GRPCRoute", grpc, generations(&objects.grpc_routes), &now)
            .await;
    }

    /// The statuses of one route kind `K`: as the index decided, and
    /// routes that left cutover's Gateways lose cutover's entries.
    async fn routes<K>(
        &mut self,
        kind: &'static str,
        (wanted, versions): (&RouteStatuses, &VersionMap<'_>),
        generations: HashMap<ObjectKey, i64>,
        now: &str,
    ) where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let controller = self.controller_name.clone();
        let detached: Vec<(ObjectKey, index::ObjectStatus<index::RouteStatus>)> = versions
            .iter()
            .filter(|(key, (_, current))| {
                !wanted.contains_key(*key)
                    && status::route_current(*current, &controller)
                        .as_array()
                        .is_some_and(|a| !a.is_empty())
            })
            .map(|(key, _)| {
                let empty = index::ObjectStatus {
                    generation: generations.get(key).copied().unwrap_or(0),
                    status: Vec::new(),
                };
                (key.clone(), empty)
            })
            .collect();
        for (key, wanted) in wanted.iter().chain(detached.iter().map(|(k, w)| (k, w))) {
            let current = versions.get(key);
            let patch = status::route(
                kind,
                &key.namespace,
                &key.name,
                &controller,
                wanted,
                current.and_then(|c| c.1),
                now,
            );
            let same = patch.unchanged(&status::route_current(
                current.and_then(|c| c.1),
                &controller,
            ));
            let api: Api<K> = Api::namespaced(self.client.clone(), &key.namespace);
            self.apply(api, kind, key.clone(), patch, same, current.map(|c| c.0))
                .await;
        }
    }

    /// Applies one status unless it is already there (or was just written
    /// and the watch has not caught up).
    async fn apply<K>(
        &mut self,
        api: Api<K>,
        kind: &'static str,
        key: ObjectKey,
        patch: status::Patch,
        unchanged: bool,
        version: Option<&str>,
    ) where
        K: Resource + Clone + DeserializeOwned + Debug,
    {
        if unchanged {
            return;
        }
        let version = version.unwrap_or_default();
        let ours = digest::digest(&patch.ours);
        if let Some((written, before, after)) = self.written.get(&(kind, key.clone())) {
            if ours.is_some() && *written == ours && (version == before || version == after) {
                return;
            }
        }
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match api
            .patch_status(&key.name, &params, &Patch::Apply(&patch.body))
            .await
        {
            Ok(o) => {
                let after = o.meta().resource_version.clone().unwrap_or_default();
                (self.on_written)(&after);
                self.written
                    .insert((kind, key), (ours, version.to_string(), after));
            }
            Err(e) => {
                tracing::warn!(%kind, object = %key, error = %e, "cannot write status");
            }
        }
    }
}

/// Statuses of one route kind, as the index decided them.
type RouteStatuses = std::collections::BTreeMap<ObjectKey, index::ObjectStatus<index::RouteStatus>>;

/// Per object: its resourceVersion and raw status.
type VersionMap<'a> = HashMap<ObjectKey, (&'a str, Option<&'a Value>)>;

/// Each object's `metadata.generation`.
fn generations<K: Resource>(list: &[Arc<K>]) -> HashMap<ObjectKey, i64> {
    list.iter()
        .map(|k| (ObjectKey::of(k.meta()), k.meta().generation.unwrap_or(0)))
        .collect()
}

/// Each object's resourceVersion and raw status, by kind.
struct Versions<'a> {
    classes: VersionMap<'a>,
    gateways: VersionMap<'a>,
    routes: VersionMap<'a>,
    grpc_routes: VersionMap<'a>,
}

impl<'a> Versions<'a> {
    fn of(o: &'a Objects) -> Self {
        fn index<'a, K: Resource>(
            list: &'a [Arc<K>],
            status: impl Fn(&'a K) -> Option<&'a Value>,
        ) -> HashMap<ObjectKey, (&'a str, Option<&'a Value>)> {
            list.iter()
                .map(|k| {
                    let meta = k.meta();
                    let version = meta.resource_version.as_deref().unwrap_or("");
                    (ObjectKey::of(meta), (version, status(k)))
                })
                .collect()
        }
        Versions {
            classes: index(&o.classes, |c| c.status.as_ref()),
            gateways: index(&o.gateways, |g| g.status.as_ref()),
            routes: index(&o.routes, |r| r.status.as_ref()),
            grpc_routes: index(&o.grpc_routes, |r| r.status.as_ref()),
        }
    }
}
