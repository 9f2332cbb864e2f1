//! The controller loop: reflectors keep a copy of every watched kind; after
//! a change (debounced) the index rebuilds the routes and groups, they are
//! published through `reload::change` (skipped when nothing changed), and
//! then, by the Lease holder only, the statuses of that table are applied.
//! An HTTPRoute the compile refuses is left out and rebuilt without, so one
//! bad object never keeps a good table from being published. The
//! certificates of HTTPS Gateway listeners' Secrets go straight to the
//! listeners ([`Supplied`]), without a new table.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use super::index::{self, FileListener, ListenerKey, ObjectKey, Objects, Output, Settings};
use super::lease::{self, LeaseOptions};
use super::resources::{Gateway, GatewayClass, GrpcRoute, HttpRoute, ReferenceGrant};
use super::secrets::{self, Secrets};
use super::writer::Writer;
use crate::config::gateway::Generated;
use crate::reload::Tables;
use crate::reload::{self, ChangeError};
use crate::tls::server::Supplied;

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
}

/// Watches the API server and keeps the table and the statuses in step with
/// it, until the task is dropped.
pub async fn run(shared: Arc<Tables>, client: kube::Client, options: ControllerOptions) {
    let changed = Arc::new(Notify::new());
    let mut tasks = JoinSet::new();
    let stores = Stores {
        classes: watch_all(Api::all(client.clone()), &changed, &mut tasks),
        gateways: watch_all(Api::all(client.clone()), &changed, &mut tasks),
        routes: watch_all(Api::all(client.clone()), &changed, &mut tasks),
        grpc_routes: watch_all(Api::all(client.clone()), &changed, &mut tasks),
        grants: watch_all(Api::all(client.clone()), &changed, &mut tasks),
        services: watch_all(Api::all(client.clone()), &changed, &mut tasks),
        slices: watch_all(Api::all(client.clone()), &changed, &mut tasks),
        namespaces: watch_all(Api::all(client.clone()), &changed, &mut tasks),
    };
    // Secrets: names and versions only (metadata requests), no data.
    let secrets_meta = watch_all(
        Api::<PartialObjectMeta<Secret>>::all(client.clone()),
        &changed,
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
    let mut state = Loop {
        writer: Writer::new(client, options.controller_name.clone()),
        shared,
        options,
        published: None,
        fallback: BTreeMap::new(),
        certificate_fallback: BTreeMap::new(),
        served: None,
    };
    loop {
        let mut objects = stores.snapshot();
        let wanted = index::referenced_secrets(&objects, &state.options.controller_name);
        objects.secrets = secrets.certificates(&wanted).await;
        if let Some(out) = state.publish(&objects) {
            if let Some(synced) = state.options.synced.take() {
                synced.notify_one();
            }
            if *leader.borrow_and_update() {
                state.writer.write(&out, &objects).await;
            }
        }
        tokio::select! {
            () = changed.notified() => {}
            r = leader.changed() => {
                if r.is_err() { return; }
                // A new writer starts from what the objects say.
                state.writer.forget();
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
    // The stores hold every Service and EndpointSlice of the cluster: drop
    // what the index never reads (often the larger part of an object).
    let slim = watcher(api, watcher::Config::default()).modify(|o: &mut K| {
        o.managed_fields_mut().clear();
        o.annotations_mut().remove(LAST_APPLIED);
    });
    let stream = reflector::reflector(writer, slim).default_backoff();
    follow(stream, K::kind(&()).to_string(), changed, tasks);
    reader
}

/// Drives a reflector's `stream`, waking the loop at each event and
/// logging when the watch fails and resumes.
fn follow<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    stream: impl futures::Stream<Item = Result<T, E>> + Send + 'static,
    kind: String,
    changed: &Arc<Notify>,
    tasks: &mut JoinSet<()>,
) {
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
    /// The generated part last published (serialised), to skip no-ops.
    published: Option<Vec<u8>>,
    /// The spec each published route came from (see `Settings::fallback`).
    fallback: BTreeMap<ObjectKey, Arc<Value>>,
    /// Applies the statuses (when this replica holds the Lease).
    writer: Writer,
    /// The certificate each HTTPS Gateway listener served last.
    certificate_fallback: BTreeMap<ListenerKey, Arc<rustls::sign::CertifiedKey>>,
    /// The Secrets' certificates handed to the listeners last.
    served: Option<index::Certificates>,
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
            certificate_fallback: self.certificate_fallback.clone(),
            mesh_listener: self.options.mesh_listener.clone(),
            addresses: self.options.addresses.clone(),
        };
        for _ in 0..MAX_REFUSALS {
            let out = index::build(objects, &settings);
            // Certificates do not depend on which routes compile.
            self.serve_certificates(&out);
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
