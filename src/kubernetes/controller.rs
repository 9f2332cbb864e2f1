//! The controller loop: reflectors keep a copy of every watched kind; after
//! a change (debounced) the index rebuilds the routes and groups, they are
//! published through `reload::change` (skipped when nothing changed), and
//! then, by the Lease holder only, the statuses of that table are applied.
//! A round where only EndpointSlices changed recomputes just the groups of
//! their Services and publishes them through `reload::change_endpoints`,
//! sharing the rest of the table (pods come and go many times a second in
//! a large cluster; routes and statuses do not depend on them). Rounds run
//! on the blocking pool, off the request-serving workers.
//! An HTTPRoute the compile refuses is left out and rebuilt without, so one
//! bad object never keeps a good table from being published. The
//! certificates of HTTPS Gateway listeners' Secrets go straight to the
//! listeners ([`Supplied`]), without a new table.

mod changes;
pub mod profile;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{watch, Notify};
use tokio::task::JoinError;
use tokio::task::JoinSet;

use super::digest;
use super::index::{self, FileListener, ListenerKey, ObjectKey, Objects, Output, Settings};
use super::lease::{self, LeaseOptions};
use super::resources::{
    EndpointSlice, Gateway, GatewayClass, GrpcRoute, HttpRoute, ReferenceGrant,
};
use super::secrets::{self, Secrets};
use super::writer::Writer;
use crate::config::gateway::Generated;
use crate::reload::Tables;
use crate::reload::{self, ChangeError};
use crate::tls::server::Supplied;
use changes::{Changes, Pending};
use profile::{Profile, RoundKind, Stopwatch};

/// The `controllerName` a GatewayClass names to be served by cutover.
pub const CONTROLLER_NAME: &str = "cutover.dev/gateway-controller";

/// The annotation `kubectl apply` leaves: a copy of the whole object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

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
    /// Where the HTTPS Gateway listeners' certificates are served from: the
    /// serving side's (`Serving::certificates`).
    pub certificates: Arc<Supplied>,
    /// The cutover listener that is the sidecar's outbound one
    /// (`--mesh-listener`): it serves HTTPRoutes whose parent is a Service.
    pub mesh_listener: Option<String>,
    /// Where clients reach this cutover (`--gateway-address`), written to
    /// each Gateway's `status.addresses`.
    pub addresses: Vec<String>,
    /// Where each round's phase timings go (the scale benchmark); they are
    /// logged at debug level either way.
    pub profile: Option<Arc<Profile>>,
    /// Called after each full round's publish, off the serving runtime, to
    /// give the memory the round freed back to the system: the binary passes
    /// glibc's `malloc_trim` (the library has no unsafe code). The first
    /// table's round frees tens of MiB (the index's and the compile's
    /// working copies) that glibc would otherwise keep.
    pub release_memory: Option<fn()>,
    /// Called first on each of the controller's threads (its runtime and
    /// the blocking threads its rounds run on): the binary lowers their
    /// scheduling priority there, so that a round under EndpointSlice churn
    /// never stands between a request and its core (the library has no
    /// unsafe code).
    pub thread_start: Option<fn()>,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            controller_name: CONTROLLER_NAME.into(),
            debounce: Duration::from_millis(100),
            lease: None,
            bound_ports: BTreeMap::new(),
            synced: None,
            certificates: Arc::default(),
            mesh_listener: None,
            addresses: Vec::new(),
            profile: None,
            release_memory: None,
            thread_start: None,
        }
    }
}

/// The reflectors' stores.
struct Stores {
    classes: Store<GatewayClass>,
    gateways: Store<Gateway>,
    routes: Store<HttpRoute>,
    grpc_routes: Store<GrpcRoute>,
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
            grpc_routes: self.grpc_routes.state(),
            grants: self.grants.state(),
            services: self.services.state(),
            slices: self.slices.state(),
            namespaces: self.namespaces.state(),
            secrets: BTreeMap::new(),
        }
    }

    /// Just `services` and their EndpointSlices (`slices`, by key: looked
    /// up one by one, so a round costs what changed, not what the cluster
    /// holds).
    fn endpoints_of(&self, services: &BTreeSet<ObjectKey>, slices: &[ObjectKey]) -> Objects {
        let slices = slices.iter().filter_map(|k| self.slices.get(&at(k)));
        Objects {
            services: services
                .iter()
                .filter_map(|s| self.services.get(&at(s)))
                .collect(),
            // A slice that moved since is left to its new Service's round.
            slices: slices
                .filter(|s| changes::service_of(s).is_some_and(|o| services.contains(&o)))
                .collect(),
            ..Objects::default()
        }
    }
}

/// The store key of `key`.
fn at<K: Resource<DynamicType = ()>>(key: &ObjectKey) -> ObjectRef<K> {
    ObjectRef::new(&key.name).within(&key.namespace)
}

/// Watches the API server and keeps the table and the statuses in step with
/// it, until the task is dropped. The controller runs on a thread of its
/// own (`cutover-kube`, a single-threaded runtime, and its blocking pool
/// for the rounds): decoding watch events, keeping the stores and building
/// tables never delays a request queued on the serving runtime's workers,
/// where a task runs until it yields; the OS schedules the two apart (and
/// with [`ControllerOptions::thread_start`] favours the workers).
pub async fn run(shared: Arc<Tables>, client: kube::Client, options: ControllerOptions) {
    // Dropping `_stop` (this future dropped or done) ends the thread.
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("cutover-kube".into())
        .spawn(move || {
            let start = options.thread_start.unwrap_or(|| {});
            start();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name("cutover-kube")
                .on_thread_start(start)
                .build();
            match runtime {
                Ok(rt) => rt.block_on(async {
                    tokio::select! {
                        () = watch_and_publish(shared, client, options) => {}
                        _ = stopped => {}
                    }
                }),
                Err(e) => {
                    tracing::error!(error = %e, "kubernetes: cannot start the controller's runtime")
                }
            }
            let _ = done.send(());
        });
    match thread {
        Ok(_) => {
            let _ = finished.await;
        }
        Err(e) => tracing::error!(error = %e, "kubernetes: cannot start the controller's thread"),
    }
}

/// The controller itself (see [`run`]).
async fn watch_and_publish(shared: Arc<Tables>, client: kube::Client, options: ControllerOptions) {
    let changes = Arc::new(Changes::new());
    let mut tasks = JoinSet::new();
    let stores = Stores {
        classes: watch_all(Api::all(client.clone()), statused(&changes), &mut tasks),
        gateways: watch_all(Api::all(client.clone()), statused(&changes), &mut tasks),
        routes: watch_all(Api::all(client.clone()), statused(&changes), &mut tasks),
        grpc_routes: if serves_grpc_routes(&client).await {
            watch_all(Api::all(client.clone()), statused(&changes), &mut tasks)
        } else {
            tracing::warn!("kubernetes: the API server has no GRPCRoute kind (Gateway API CRDs before v1.1); HTTPRoutes are served, GRPCRoutes are not watched until cutover restarts");
            empty_store()
        },
        grants: watch_all(Api::all(client.clone()), everything(&changes), &mut tasks),
        services: watch_all(Api::all(client.clone()), everything(&changes), &mut tasks),
        slices: watch_slim(
            Api::all(client.clone()),
            slice_events(&changes),
            changes::slim_slice,
            &mut tasks,
        ),
        namespaces: watch_all(Api::all(client.clone()), everything(&changes), &mut tasks),
    };
    // Secrets: names and versions only (metadata requests), no data.
    let secrets_meta = watch_all(
        Api::<PartialObjectMeta<Secret>>::all(client.clone()),
        everything(&changes),
        &mut tasks,
    );
    let (leader_tx, mut leader) = watch::channel(options.lease.is_none());
    if let Some(lease) = options.lease.clone() {
        tasks.spawn(lease::hold(client.clone(), lease, leader_tx));
    }
    if !wait_ready(&stores).await || secrets_meta.wait_until_ready().await.is_err() {
        return;
    }
    tracing::info!("kubernetes: initial lists done; building the table");
    let mut secrets = Secrets::new(client.clone(), secrets_meta);
    let mut state = Box::new(Loop {
        writer: Writer::new(client, options.controller_name.clone(), {
            let changes = Arc::clone(&changes);
            move |version: &str| changes.produced(version)
        }),
        shared,
        options,
        published: None,
        fallback: BTreeMap::new(),
        certificate_fallback: BTreeMap::new(),
        served: None,
        service_groups: BTreeMap::new(),
    });
    loop {
        let pending = changes.take();
        let round = match pending {
            Pending { full: true, .. } => {
                full_round(state, &stores, &mut secrets, &mut leader).await
            }
            Pending { services, .. } if !services.is_empty() => {
                endpoints_round(state, &stores, services, &changes).await
            }
            _ => Ok(state),
        };
        let Ok(next) = round else {
            tracing::error!("kubernetes: a controller round panicked; the controller stops");
            return;
        };
        state = next;
        tokio::select! {
            () = changes.wait() => {}
            r = leader.changed() => {
                if r.is_err() { return; }
                // A new writer starts from what the objects say.
                state.writer.forget();
                changes.everything();
            }
        }
        tokio::time::sleep(state.options.debounce).await;
    }
}

/// Rebuilds everything, publishes, and (as the status writer) applies the
/// statuses.
async fn full_round(
    mut state: Box<Loop>,
    stores: &Stores,
    secrets: &mut Secrets,
    leader: &mut watch::Receiver<bool>,
) -> Result<Box<Loop>, JoinError> {
    let mut watch = Stopwatch::start(RoundKind::Full);
    let mut objects = stores.snapshot();
    let wanted = index::referenced_secrets(&objects, &state.options.controller_name);
    watch.lap("snapshot");
    objects.secrets = secrets.certificates(&wanted).await;
    watch.lap("secrets");
    let (mut state, objects, out, mut watch) = tokio::task::spawn_blocking(move || {
        let out = state.publish(&objects, &mut watch);
        // The index's and the compile's working copies are freed now.
        if let Some(release) = state.options.release_memory {
            release();
            watch.lap("release");
        }
        (state, objects, out, watch)
    })
    .await?;
    if let Some(out) = &out {
        if let Some(synced) = state.options.synced.take() {
            synced.notify_one();
        }
        if *leader.borrow_and_update() {
            state.writer.write(out, &objects).await;
            watch.lap("status");
        }
    }
    watch.finish(state.options.profile.as_deref());
    Ok(state)
}

/// Recomputes the groups of `services` (their EndpointSlices changed) and
/// publishes them alone; asks for a full round when they no longer fit the
/// table (a Service or port gone, a group it does not have).
async fn endpoints_round(
    mut state: Box<Loop>,
    stores: &Stores,
    services: BTreeSet<ObjectKey>,
    changes: &Changes,
) -> Result<Box<Loop>, JoinError> {
    let mut watch = Stopwatch::start(RoundKind::Endpoints);
    let objects = stores.endpoints_of(&services, &changes.slices_of(&services));
    watch.lap("snapshot");
    let (state, fits, watch) = tokio::task::spawn_blocking(move || {
        let fits = state.publish_endpoints(&objects, &services, &mut watch);
        (state, fits, watch)
    })
    .await?;
    watch.finish(state.options.profile.as_deref());
    if !fits {
        changes.everything();
    }
    Ok(state)
}

/// An event handler that asks for a full round.
fn everything<T>(changes: &Arc<Changes>) -> impl Fn(&T) + Send + 'static {
    let changes = Arc::clone(changes);
    move |_| changes.everything()
}

/// The event handler of a kind whose status cutover writes: a full round,
/// but for the echo of our own status patch.
fn statused<K: Resource>(changes: &Arc<Changes>) -> impl Fn(&watcher::Event<K>) + Send + 'static {
    let changes = Arc::clone(changes);
    move |e| changes.status_kind(e)
}

/// The EndpointSlice event handler: names the Services to recompute.
fn slice_events(
    changes: &Arc<Changes>,
) -> impl Fn(&watcher::Event<EndpointSlice>) + Send + 'static {
    let changes = Arc::clone(changes);
    move |e| changes.slice(e)
}

/// Whether the API server serves GRPCRoutes. They came with Gateway API
/// v1.1; on a cluster with older CRDs their watch would never list, and the
/// first table waits for every watch. When discovery itself fails the watch
/// starts anyway and its backoff says what is wrong.
async fn serves_grpc_routes(client: &kube::Client) -> bool {
    match client
        .list_api_group_resources("gateway.networking.k8s.io/v1")
        .await
    {
        Ok(list) => list.resources.iter().any(|r| r.name == "grpcroutes"),
        Err(e) => {
            tracing::debug!(error = %e, "kubernetes: discovery of gateway.networking.k8s.io/v1 failed");
            true
        }
    }
}

/// A store that is listed and stays empty: the kind is not served.
fn empty_store<K>() -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let (reader, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitDone);
    reader
}

/// Starts a reflector over `api`; each event goes to `on_event`.
fn watch_all<K>(
    api: Api<K>,
    on_event: impl Fn(&watcher::Event<K>) + Send + 'static,
    tasks: &mut JoinSet<()>,
) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    watch_slim(api, on_event, |_| (), tasks)
}

/// [`watch_all`], `slim` dropping kind-specific fields the index never
/// reads before the store keeps an object.
fn watch_slim<K>(
    api: Api<K>,
    on_event: impl Fn(&watcher::Event<K>) + Send + 'static,
    slim: fn(&mut K),
    tasks: &mut JoinSet<()>,
) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    // The stores hold every Service and EndpointSlice of the cluster: drop
    // what the index never reads (often the larger part of an object).
    let slimmed = watcher(api, watcher::Config::default()).modify(move |o: &mut K| {
        o.managed_fields_mut().clear();
        o.annotations_mut().remove(LAST_APPLIED);
        slim(o);
    });
    let stream = reflector::reflector(writer, slimmed).default_backoff();
    follow(stream, K::kind(&()).to_string(), on_event, tasks);
    reader
}

/// Drives a reflector's `stream`, handing each event to `on_event` (after
/// the store has it) and logging when the watch fails and resumes.
fn follow<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    stream: impl futures::Stream<Item = Result<T, E>> + Send + 'static,
    kind: String,
    on_event: impl Fn(&T) + Send + 'static,
    tasks: &mut JoinSet<()>,
) {
    tasks.spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut failing = false;
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!(%kind, "kubernetes watch resumed");
                    }
                    on_event(&event);
                }
                Err(e) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(%kind, error = %e, "kubernetes watch failed; retrying with backoff");
                    }
                }
            }
        }
    });
}

async fn wait_ready(s: &Stores) -> bool {
    let ready = tokio::join!(
        s.classes.wait_until_ready(),
        s.gateways.wait_until_ready(),
        s.routes.wait_until_ready(),
        s.grpc_routes.wait_until_ready(),
        s.grants.wait_until_ready(),
        s.services.wait_until_ready(),
        s.slices.wait_until_ready(),
        s.namespaces.wait_until_ready(),
    );
    let all = [
        ready.0, ready.1, ready.2, ready.3, ready.4, ready.5, ready.6, ready.7,
    ];
    all.iter().all(Result::is_ok)
}

/// The loop's memory between rounds.
struct Loop {
    shared: Arc<Tables>,
    options: ControllerOptions,
    /// The digest of the generated part last published, to skip no-ops;
    /// `None` after an endpoint-only round changed it.
    published: Option<u128>,
    /// The spec each published route came from (see `Settings::fallback`).
    fallback: BTreeMap<ObjectKey, Arc<Value>>,
    /// Applies the statuses (when this replica holds the Lease).
    writer: Writer,
    /// The certificate each HTTPS Gateway listener served last.
    certificate_fallback: BTreeMap<ListenerKey, Arc<rustls::sign::CertifiedKey>>,
    /// The Secrets' certificates handed to the listeners last.
    served: Option<index::Certificates>,
    /// Which groups of the live table are made of which Service's pods.
    service_groups: index::ServiceGroups,
}

impl Loop {
    /// Builds and publishes; `None` when no table holds these objects.
    fn publish(&mut self, objects: &Objects, watch: &mut Stopwatch) -> Option<Output> {
        let (_, desired, _) = reload::snapshot(&self.shared);
        let base = &desired.base;
        let mut settings = Settings {
            controller_name: self.options.controller_name.clone(),
            listeners: file_listeners(base, &self.options.bound_ports),
            refused: BTreeMap::new(),
            fallback: self.fallback.clone(),
            certificate_fallback: self.certificate_fallback.clone(),
            mesh_listener: self.options.mesh_listener.clone(),
            addresses: self.options.addresses.clone(),
        };
        watch.skip();
        for _ in 0..MAX_REFUSALS {
            let mut out = index::build(objects, &settings);
            // Certificates do not depend on which routes compile.
            self.serve_certificates(&out);
            watch.lap("index");
            let digest = digest::digest(&out.generated);
            // After endpoint-only rounds the live part is the desired one.
            let live = self
                .published
                .take()
                .or_else(|| digest::digest(desired.generated.as_deref()?));
            let same = digest.is_some() && live == digest;
            self.published = live;
            watch.lap("compare");
            if same {
                self.accepted(&mut out);
                return Some(out);
            }
            // Moved, not copied: the index's copy is not needed again.
            let generated = Arc::new(std::mem::take(&mut out.generated));
            let result = publish(&self.shared, Arc::clone(&generated));
            watch.lap("change");
            match result {
                Ok(generation) => {
                    tracing::info!(
                        generation,
                        routes = generated.routes.len(),
                        groups = generated.groups.len(),
                        "kubernetes: table published"
                    );
                    watch.published();
                    self.published = digest;
                    self.accepted(&mut out);
                    return Some(out);
                }
                Err(ChangeError::Invalid(errors)) => {
                    let at = &generated.routes;
                    let refused = refused_routes(&errors, base.routes.len(), at, &out);
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

    /// Remembers what the live table was built from.
    /// (Taken from `out`: the status writer does not read them.)
    fn accepted(&mut self, out: &mut Output) {
        self.fallback = std::mem::take(&mut out.specs);
        self.service_groups = std::mem::take(&mut out.service_groups);
    }

    /// Publishes the new pods of the groups of `services` (`objects` holds
    /// them and their EndpointSlices). `false`: they no longer fit the live
    /// table, a full round must decide.
    fn publish_endpoints(
        &mut self,
        objects: &Objects,
        services: &BTreeSet<ObjectKey>,
        watch: &mut Stopwatch,
    ) -> bool {
        let groups: Vec<(String, ObjectKey, u16)> = services
            .iter()
            .filter_map(|s| Some((s, self.service_groups.get(s)?)))
            .flat_map(|(s, groups)| groups.iter().map(|(g, port)| (g.clone(), s.clone(), *port)))
            .collect();
        if groups.is_empty() {
            return true;
        }
        let Some(pods) = index::pods_of(objects, &groups) else {
            return false;
        };
        watch.lap("pods");
        let result = reload::change_endpoints(&self.shared, "kubernetes endpoints", pods);
        watch.lap("change");
        match result {
            Ok(Some(_)) => {
                watch.published();
                // The next full round serialises the live part anew.
                self.published = None;
                true
            }
            Ok(None) => true,
            Err(e) => {
                tracing::info!(error = %e, "kubernetes: endpoint change needs a full rebuild");
                false
            }
        }
    }

    /// Hands the Secrets' certificates to the listeners when they changed.
    fn serve_certificates(&mut self, out: &Output) {
        self.certificate_fallback = out.served_certificates.clone();
        secrets::serve(
            &self.options.certificates,
            &mut self.served,
            &out.certificates,
        );
    }
}

/// Layers `generated` on the file's config and publishes the result.
fn publish(shared: &Tables, generated: Arc<Generated>) -> Result<u64, ChangeError> {
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
    generated: &[crate::config::model::RouteConfig],
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
            .and_then(|i| generated.get(i))
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
