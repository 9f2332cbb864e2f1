//! The pure index: the watched objects in, the routes and groups to publish
//! and the status of every object out. No I/O and no clock, so every rule of
//! attachment, reference and endpoint selection is tested with tables of
//! objects (`tests.rs`).
//!
//! - GatewayClasses whose `controllerName` is cutover's are accepted; their
//!   Gateways' listeners are served by cutover's own (file) listener of the
//!   same port.
//! - An HTTPRoute attaches through `parentRefs` (name, `sectionName`,
//!   `port`) to the listeners that allow its namespace, with the hostnames
//!   both accept; it is converted as in file mode. A GRPCRoute likewise
//!   (route `<namespace>.<name>_grpc`, groups speaking h2).
//! - An HTTPS listener's `certificateRefs` name Secrets; their certificates
//!   are served on the cutover listener by SNI (the Gateway listener's
//!   hostname), a wrong Secret keeps the last good certificate and says so.
//! - With a mesh listener (the sidecar's outbound one), an HTTPRoute whose
//!   parentRef is a Service of its namespace (GAMMA) is served there for
//!   requests addressed to that Service (its DNS names and ClusterIP).
//! - A backendRef to a Service becomes a group of the ready, not terminating
//!   pod addresses of its EndpointSlices (Service port -> the slice port of
//!   the same name, which carries the resolved targetPort). A backendRef that
//!   cannot be resolved (no Service, no ReferenceGrant across namespaces,
//!   another kind) keeps its weight and answers 500 (gRPC: UNAVAILABLE).

mod attach;
mod backends;
mod certs;
mod gateways;
mod mesh;
use crate::config::gateway::hosts;
mod selector;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Service};
use rustls::sign::CertifiedKey;

use super::resources::{
    EndpointSlice, Gateway, GatewayClass, GrpcRoute, HttpRoute, ReferenceGrant,
};
use crate::config::gateway::grpc::RouteKind;
use crate::config::gateway::Generated;
pub use attach::ParentKey;
use backends::Backends;
pub use backends::{pods_of, ServiceGroups, UNRESOLVED_GROUP};
pub use certs::referenced as referenced_secrets;

/// A namespaced object's identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// Namespace (empty for cluster objects).
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// The key of `meta`.
    pub fn of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Self {
        ObjectKey {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Everything the watches hold, as the reflectors' stores give it.
#[derive(Debug, Clone, Default)]
pub struct Objects {
    /// GatewayClasses (all; the index picks cutover's).
    pub classes: Vec<Arc<GatewayClass>>,
    /// Gateways (all; the index picks those of cutover's classes).
    pub gateways: Vec<Arc<Gateway>>,
    /// HTTPRoutes.
    pub routes: Vec<Arc<HttpRoute>>,
    /// GRPCRoutes.
    pub grpc_routes: Vec<Arc<GrpcRoute>>,
    /// ReferenceGrants.
    pub grants: Vec<Arc<ReferenceGrant>>,
    /// Services.
    pub services: Vec<Arc<Service>>,
    /// EndpointSlices.
    pub slices: Vec<Arc<EndpointSlice>>,
    /// Namespaces (their labels, for `allowedRoutes` selectors).
    pub namespaces: Vec<Arc<Namespace>>,
    /// The Secrets HTTPS listeners reference (see [`referenced_secrets`]),
    /// as the controller read them: the certificate, or why it is unusable
    /// (wrong type, bad PEM, key not matching). An absent one does not
    /// exist.
    pub secrets: BTreeMap<ObjectKey, SecretCertificate>,
}

/// A TLS Secret's certificate and key, or why it cannot serve.
pub type SecretCertificate = Result<Arc<CertifiedKey>, String>;

/// Per cutover listener, certificates by SNI name (`None`: every name).
pub type Certificates = BTreeMap<String, Vec<(Option<String>, Arc<CertifiedKey>)>>;

/// A Gateway listener: its Gateway and its name.
pub type ListenerKey = (ObjectKey, String);

/// One of cutover's own listeners, from the file config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileListener {
    /// Its name.
    pub name: String,
    /// The port it binds.
    pub port: u16,
    /// Whether it terminates TLS (an `HTTPS` Gateway listener needs it).
    pub tls: bool,
}

/// What the index needs besides the objects.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// cutover's `controllerName`.
    pub controller_name: String,
    /// cutover's listeners.
    pub listeners: Vec<FileListener>,
    /// HTTPRoutes the last compile refused, with the reason: reported, and
    /// served from their fallback spec if they have one.
    pub refused: BTreeMap<ObjectKey, String>,
    /// The last spec of each HTTPRoute that was accepted and published: a
    /// route whose new generation is refused keeps serving it, so an
    /// invalid edit never takes traffic away.
    pub fallback: BTreeMap<ObjectKey, Arc<serde_json::Value>>,
    /// The certificate each HTTPS Gateway listener served last: kept while
    /// its Secret is missing or wrong.
    pub certificate_fallback: BTreeMap<ListenerKey, Arc<CertifiedKey>>,
    /// The cutover listener that is the sidecar's outbound one: it serves
    /// HTTPRoutes whose parent is a Service. `None`: such routes belong to
    /// another mesh.
    pub mesh_listener: Option<String>,
    /// Where clients reach cutover (IP addresses or host names), written to
    /// every Gateway's `status.addresses`.
    pub addresses: Vec<String>,
}

/// A condition as the index decides it; the status writer adds the
/// generation and the transition time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// `Accepted`, `Programmed`, `ResolvedRefs`.
    pub kind: &'static str,
    /// True or False.
    pub status: bool,
    /// Gateway API reason, e.g. `NotAllowedByListeners`.
    pub reason: &'static str,
    /// For people.
    pub message: String,
}

impl Condition {
    /// A condition.
    pub fn new(
        kind: &'static str,
        status: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Condition {
            kind,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// The status of one object, at the generation it describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectStatus<T> {
    /// `metadata.generation` of the object this was computed from.
    pub generation: i64,
    /// The status.
    pub status: T,
}

/// A Gateway's status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GatewayStatus {
    /// `Accepted`, `Programmed`.
    pub conditions: Vec<Condition>,
    /// Per listener, in spec order.
    pub listeners: Vec<ListenerStatus>,
    /// `status.addresses`: IP addresses or host names.
    pub addresses: Vec<String>,
}

/// One Gateway listener's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerStatus {
    /// The listener's name.
    pub name: String,
    /// Routes attached (accepted) to it.
    pub attached_routes: i32,
    /// `Accepted`, `Programmed`, `ResolvedRefs`.
    pub conditions: Vec<Condition>,
}

/// An HTTPRoute's status for the parents cutover serves.
pub type RouteStatus = Vec<(ParentKey, Vec<Condition>)>;

/// Everything the index decided about status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Statuses {
    /// cutover's GatewayClasses.
    pub classes: BTreeMap<String, ObjectStatus<Vec<Condition>>>,
    /// Gateways of those classes.
    pub gateways: BTreeMap<ObjectKey, ObjectStatus<GatewayStatus>>,
    /// HTTPRoutes with at least one parent of cutover's.
    pub routes: BTreeMap<ObjectKey, ObjectStatus<RouteStatus>>,
    /// GRPCRoutes with at least one parent of cutover's.
    pub grpc_routes: BTreeMap<ObjectKey, ObjectStatus<RouteStatus>>,
}

/// The index's answer.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Routes and groups for the table.
    pub generated: Generated,
    /// cutover route name -> the HTTPRoute it came from, to point compile
    /// errors back at it.
    pub route_keys: BTreeMap<String, ObjectKey>,
    /// Statuses to write once the table is published.
    pub statuses: Statuses,
    /// The spec each route in the table was converted from (the fallback
    /// for a later refused generation).
    pub specs: BTreeMap<ObjectKey, Arc<serde_json::Value>>,
    /// Per cutover listener, the Secrets' certificates to serve, by SNI
    /// name (`None`: every name its own certificates do not cover).
    pub certificates: Certificates,
    /// The certificate each HTTPS Gateway listener serves (the next
    /// [`Settings::certificate_fallback`]).
    pub served_certificates: BTreeMap<ListenerKey, Arc<CertifiedKey>>,
    /// The groups made of each Service's pods: an EndpointSlice change
    /// recomputes only those ([`pods_of`]).
    pub service_groups: ServiceGroups,
}

/// Builds the table part and statuses from `objects`.
pub fn build(objects: &Objects, settings: &Settings) -> Output {
    let mut out = Output::default();
    let classes = gateways::classes(objects, settings, &mut out.statuses);
    let mut gateways = gateways::gateways(objects, &classes, settings);
    let mut backends = Backends::new(objects);
    let namespaces: attach::NamespaceLabels = objects
        .namespaces
        .iter()
        .filter_map(|n| {
            Some((
                n.metadata.name.clone()?,
                n.metadata.labels.clone().unwrap_or_default(),
            ))
        })
        .collect();
    // GRPCRoutes are read as HTTPRoutes of another kind (`config::gateway::grpc`).
    let grpc: Vec<HttpRoute> = objects
        .grpc_routes
        .iter()
        .map(|g| HttpRoute {
            metadata: g.metadata.clone(),
            spec: g.spec.clone(),
            status: None,
        })
        .collect();
    let mut routes: Vec<(RouteKind, &HttpRoute)> = objects
        .routes
        .iter()
        .map(|r| (RouteKind::Http, &**r))
        .chain(grpc.iter().map(|r| (RouteKind::Grpc, r)))
        .collect();
    // Oldest first, then by name: the order the spec gives conflicting routes.
    routes.sort_by(|(ka, a), (kb, b)| {
        let key = |r: &HttpRoute, k: &RouteKind| {
            (
                r.metadata.creation_timestamp.as_ref().map(|t| t.0),
                ObjectKey::of(&r.metadata),
                *k == RouteKind::Grpc,
            )
        };
        key(a, ka).cmp(&key(b, kb))
    });
    let context = attach::Context {
        namespaces: &namespaces,
        services: &objects.services,
        settings,
    };
    for (kind, route) in routes {
        attach::route(
            route,
            kind,
            &mut gateways,
            &mut backends,
            &context,
            &mut out,
        );
    }
    out.service_groups = backends.take_service_groups();
    out.generated.groups = backends.into_groups();
    for g in gateways.values() {
        if let Some(status) = g.status(&settings.addresses) {
            out.statuses.gateways.insert(g.key.clone(), status);
        }
        let specs = &g.gateway.spec.listeners;
        for (spec, l) in specs.iter().zip(&g.listeners) {
            let Some(cert) = &l.certificate else { continue };
            out.served_certificates
                .insert((g.key.clone(), spec.name.clone()), Arc::clone(cert));
            if let Some(file) = &l.file {
                out.certificates
                    .entry(file.clone())
                    .or_default()
                    .push((spec.hostname.clone(), Arc::clone(cert)));
            }
        }
    }
    out
}

/// The cutover route name of an HTTPRoute: `<namespace>.<name>` (a
/// namespace has no dots, so it cannot collide).
pub fn route_name(key: &ObjectKey) -> String {
    format!("{}.{}", key.namespace, key.name)
}

/// A route's key in the maps shared by both kinds (refused, fallback,
/// specs, route names): a GRPCRoute's name gets `_grpc` (no Kubernetes name
/// holds `_`), so it never collides with an HTTPRoute of the same name.
pub fn route_key(kind: RouteKind, key: &ObjectKey) -> ObjectKey {
    match kind {
        RouteKind::Http => key.clone(),
        RouteKind::Grpc => ObjectKey {
            namespace: key.namespace.clone(),
            name: format!("{}_grpc", key.name),
        },
    }
}

/// The cutover route name of an HTTPRoute's mesh part (its Service
/// parents): `<namespace>.<name>_mesh` (no Kubernetes name holds `_`).
pub fn mesh_route_name(key: &ObjectKey) -> String {
    format!("{}.{}_mesh", key.namespace, key.name)
}
