//! The controller loop: reflectors keep a copy of every watched kind; after
//! a change (debounced) the index rebuilds the routes and groups, they are
//! published through `reload::change` (skipped when nothing changed), and
//! then, by the Lease holder only, the statuses of that table are applied.
//! An HTTPRoute the compile refuses is left out and rebuilt without, so one
//! bad object never keeps a good table from being published.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use super::index::{self, FileListener, ObjectKey, Objects, Output, Settings};
use super::lease::{self, LeaseOptions};
use super::resources::{Gateway, GatewayClass, HttpRoute, ReferenceGrant};
use super::status;
use crate::app::Shared;
use crate::config::gateway::Generated;
use crate::reload::{self, ChangeError};

/// The field manager of every status cutover applies.
pub const FIELD_MANAGER: &str = "cutover";

/// The `controllerName` a GatewayClass names to be served by cutover.
pub const CONTROLLER_NAME: &str = "cutover.dev/gateway-controller";

/// Most rebuilds in a row that leave out refused HTTPRoutes before giving up.
const MAX_REFUSALS: usize = 8;

/// Controller settings.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// The GatewayClass `controllerName` served.
    pub controller_name: String,
    /// Changes arriving within this time are applied together.
    pub debounce: Duration,
    /// The status writer Lease; `None` writes status from this replica.
    pub lease: Option<LeaseOptions>,
    /// Listener name -> the port it is bound to, where the config says
    /// port 0 (tests); otherwise the config's port is used.
    pub bound_ports: BTreeMap<String, u16>,
    /// Notified once the first table from the API server is published:
    /// `cutover run` serves (and turns ready) only then, so a new replica
    /// never answers 404 for routes it has not read yet.
    pub synced: Option<Arc<Notify>>,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            controller_name: CONTROLLER_NAME.into(),
            debounce: Duration::from_millis(100),
            lease: None,
            bound_ports: BTreeMap::new(),
            synced: None,
        }
    }
}

/// The reflectors' stores.
struct Stores {
    classes: Store<GatewayClass>,
    gateways: Store<Gateway>,
    routes: Store<HttpRoute>,
    grants: Store<ReferenceGrant>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    namespaces: Store<Namespace>,
}

impl Stores {
    fn snapshot(&self) -> Objects {
        Objects {
            classes: self.classes.state(),
            gateways: self.gateways.state(),
            routes: self.routes.state(),
            grants: self.grants.state(),
            services: self.services.state(),
            slices: self.slices.state(),
            namespaces: self.namespaces.state(),
        }
    }
}

/// Watches the API server and keeps the table and the statuses in step with
/// it, until the task is dropped.
pub async fn run(shared: Arc<Shared>, client: kube::Client, options: ControllerOptions) {
    let changed = Arc::new(Notify::new());
    let mut tasks = JoinSet::new();
    let stores = Stores {
        classes: watch_all(Api::all(client.clone()), &changed, &mut tasks),
        gateways: watch_all(Api::all(client.clone()), &changed, &mut tasks),
        routes: watch_all(Api::all(client.clone()), &changed, &mut tasks),
        grants: watch_all(Api::all(client.clone()), &changed, &mut tasks),
        services: watch_all(Api::all(client.clone()), &changed, &mut tasks),
        slices: watch_all(Api::all(client.clone()), &changed, &mut tasks),
        namespaces: watch_all(Api::all(client.clone()), &changed, &mut tasks),
    };
    let (leader_tx, mut leader) = watch::channel(options.lease.is_none());
    if let Some(lease) = options.lease.clone() {
        tasks.spawn(lease::hold(client.clone(), lease, leader_tx));
    }
    if !wait_ready(&stores).await {
        return;
    }
    tracing::info!("kubernetes: initial lists done; building the table");
    let mut state = Loop {
        shared,
        client,
        options,
        published: None,
        fallback: BTreeMap::new(),
        written: HashMap::new(),
    };
    loop {
        let objects = stores.snapshot();
        if let Some(out) = state.publish(&objects) {
            if let Some(synced) = state.options.synced.take() {
                synced.notify_one();
            }
            if *leader.borrow_and_update() {
                state.write_statuses(&out, &objects).await;
            }
        }
        tokio::select! {
            () = changed.notified() => {}
            r = leader.changed() => {
                if r.is_err() { return; }
                // A new writer starts from what the objects say.
                state.written.clear();
            }
        }
        tokio::time::sleep(state.options.debounce).await;
    }
}

/// Starts a reflector over `api`; each event wakes the loop.
fn watch_all<K>(api: Api<K>, changed: &Arc<Notify>, tasks: &mut JoinSet<()>) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let kind = K::kind(&()).to_string();
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    let changed = Arc::clone(changed);
    tasks.spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut failing = false;
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!(%kind, "kubernetes watch resumed");
                    }
                    changed.notify_one();
                }
                Err(e) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(%kind, error = %e, "kubernetes watch failed; retrying with backoff");
                    }
                }
            }
        }
    });
    reader
}

async fn wait_ready(s: &Stores) -> bool {
    let ready = tokio::join!(
        s.classes.wait_until_ready(),
        s.gateways.wait_until_ready(),
        s.routes.wait_until_ready(),
        s.grants.wait_until_ready(),
        s.services.wait_until_ready(),
        s.slices.wait_until_ready(),
        s.namespaces.wait_until_ready(),
    );
    let all = [
        ready.0, ready.1, ready.2, ready.3, ready.4, ready.5, ready.6,
    ];
    all.iter().all(Result::is_ok)
}

/// The loop's memory between rounds.
struct Loop {
    shared: Arc<Shared>,
    client: kube::Client,
    options: ControllerOptions,
    /// The generated part last published (serialised), to skip no-ops.
    published: Option<Vec<u8>>,
    /// The spec each published route came from (see `Settings::fallback`).
    fallback: BTreeMap<ObjectKey, Arc<Value>>,
    /// Per object: the status last applied, the object's resourceVersion
    /// before and after; equal status and either version means done.
    written: HashMap<(&'static str, ObjectKey), (Value, String, String)>,
}

impl Loop {
    /// Builds and publishes; `None` when no table holds these objects.
    fn publish(&mut self, objects: &Objects) -> Option<Output> {
        let (_, desired, _) = reload::snapshot(&self.shared);
        let base = &desired.base;
        let mut settings = Settings {
            controller_name: self.options.controller_name.clone(),
            listeners: file_listeners(base, &self.options.bound_ports),
            refused: BTreeMap::new(),
            fallback: self.fallback.clone(),
        };
        for _ in 0..MAX_REFUSALS {
            let out = index::build(objects, &settings);
            let bytes = serde_json::to_vec(&out.generated).unwrap_or_default();
            if self.published.as_ref() == Some(&bytes) {
                self.fallback = out.specs.clone();
                return Some(out);
            }
            let generated = Arc::new(out.generated.clone());
            match publish(&self.shared, generated) {
                Ok(generation) => {
                    tracing::info!(
                        generation,
                        routes = out.generated.routes.len(),
                        groups = out.generated.groups.len(),
                        "kubernetes: table published"
                    );
                    self.published = Some(bytes);
                    self.fallback = out.specs.clone();
                    return Some(out);
                }
                Err(ChangeError::Invalid(errors)) => {
                    let refused = refused_routes(&errors, base.routes.len(), &out);
                    if refused.is_empty() {
                        tracing::error!("kubernetes: the table does not compile, and no HTTPRoute is to blame; keeping the last one:\n{errors}");
                        return None;
                    }
                    for (key, why) in refused {
                        tracing::warn!(route = %key, "HTTPRoute refused: {why}");
                        if settings.refused.contains_key(&key) {
                            // Its last accepted spec no longer fits either.
                            settings.fallback.remove(&key);
                        }
                        settings.refused.entry(key).or_insert(why);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "kubernetes: cannot publish the table");
                    return None;
                }
            }
        }
        tracing::error!("kubernetes: too many HTTPRoutes refused in a row; keeping the last table");
        None
    }

    async fn write_statuses(&mut self, out: &Output, objects: &Objects) {
        let now = status::now();
        let controller = self.options.controller_name.clone();
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
        // Routes that left cutover's Gateways lose cutover's entries.
        let detached: Vec<(ObjectKey, index::ObjectStatus<index::RouteStatus>)> = versions
            .routes
            .iter()
            .filter(|(key, (_, current))| {
                !out.statuses.routes.contains_key(*key)
                    && status::route_current(*current, &controller)
                        .as_array()
                        .is_some_and(|a| !a.is_empty())
            })
            .map(|(key, _)| {
                let generation = objects
                    .routes
                    .iter()
                    .find(|r| ObjectKey::of(&r.metadata) == *key)
                    .and_then(|r| r.metadata.generation)
                    .unwrap_or(0);
                let empty = index::ObjectStatus {
                    generation,
                    status: Vec::new(),
                };
                (key.clone(), empty)
            })
            .collect();
        for (key, wanted) in out
            .statuses
            .routes
            .iter()
            .chain(detached.iter().map(|(k, w)| (k, w)))
        {
            let current = versions.routes.get(key);
            let patch = status::route(
                &key.namespace,
                &key.name,
                &controller,
                wanted,
                current.and_then(|c| c.1),
                &now,
            );
            let same = patch.unchanged(&status::route_current(
                current.and_then(|c| c.1),
                &controller,
            ));
            let api: Api<HttpRoute> = Api::namespaced(self.client.clone(), &key.namespace);
            self.apply(
                api,
                "HTTPRoute",
                key.clone(),
                patch,
                same,
                current.map(|c| c.0),
            )
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
        if let Some((ours, before, after)) = self.written.get(&(kind, key.clone())) {
            if *ours == patch.ours && (version == before || version == after) {
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
                self.written
                    .insert((kind, key), (patch.ours, version.to_string(), after));
            }
            Err(e) => {
                tracing::warn!(%kind, object = %key, error = %e, "cannot write status");
            }
        }
    }
}

/// Each object's resourceVersion and raw status, by kind.
struct Versions<'a> {
    classes: HashMap<ObjectKey, (&'a str, Option<&'a Value>)>,
    gateways: HashMap<ObjectKey, (&'a str, Option<&'a Value>)>,
    routes: HashMap<ObjectKey, (&'a str, Option<&'a Value>)>,
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
        }
    }
}

/// Layers `generated` on the file's config and publishes the result.
fn publish(shared: &Shared, generated: Arc<Generated>) -> Result<u64, ChangeError> {
    reload::change(shared, None, "kubernetes", move |d| {
        d.generated = Some(generated);
        Ok(())
    })
}

/// cutover's listeners, by port, from the file config.
fn file_listeners(
    base: &crate::config::Config,
    bound: &BTreeMap<String, u16>,
) -> Vec<FileListener> {
    base.listeners
        .iter()
        .filter_map(|l| {
            let configured = l.address.rsplit_once(':')?.1.parse().ok()?;
            let port = match bound.get(&l.name) {
                Some(p) if configured == 0 => *p,
                _ => configured,
            };
            Some(FileListener {
                name: l.name.clone(),
                port,
                tls: l.tls.is_some(),
            })
        })
        .collect()
}

/// The HTTPRoutes that compile errors point at (`routes[i]` past the file's
/// own routes), with the errors about each.
fn refused_routes(
    errors: &crate::config::ConfigErrors,
    file_routes: usize,
    out: &Output,
) -> BTreeMap<ObjectKey, String> {
    let mut refused: BTreeMap<ObjectKey, String> = BTreeMap::new();
    for e in &errors.0 {
        let index = e
            .path
            .strip_prefix("routes[")
            .and_then(|rest| rest.split_once(']'))
            .and_then(|(i, _)| i.parse::<usize>().ok());
        let Some(route) = index
            .and_then(|i| i.checked_sub(file_routes))
            .and_then(|i| out.generated.routes.get(i))
        else {
            continue;
        };
        if let Some(key) = out.route_keys.get(&route.name) {
            let why = refused.entry(key.clone()).or_default();
            if !why.is_empty() {
                why.push_str("; ");
            }
            let field = e.path.split_once(']').map_or("", |(_, rest)| rest);
            why.push_str(&format!("spec{field}: {}", e.message));
        }
    }
    refused
}
