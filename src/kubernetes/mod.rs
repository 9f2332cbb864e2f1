//! Controller mode (`cutover run --kubernetes`): cutover as a Gateway API
//! implementation. It watches GatewayClasses, Gateways, HTTPRoutes,
//! GRPCRoutes, ReferenceGrants, Services, EndpointSlices, Namespaces and (metadata
//! only, data of the referenced ones) Secrets; the pure
//! [`index`] turns them into routes and groups of ready pod addresses, which
//! are layered on the file's config and published through
//! `reload::change` (endpoint state carries over by address, as with DNS);
//! then the [`status`] of each object is applied ([`writer`]) by the replica
//! holding the [`lease`]. Nothing here is on the request path.

pub mod controller;
mod digest;
pub mod index;
pub mod lease;
pub mod resources;
pub mod secrets;
pub mod status;
pub mod writer;

pub use controller::{run, ControllerOptions, CONTROLLER_NAME};
pub use writer::FIELD_MANAGER;

/// Every API permission controller mode uses, as `(API group, resource,
/// verbs)`: the reflectors list and watch, referenced TLS Secrets are read
/// with `get`, statuses are patched (server-side apply), the status writer
/// Lease is read, created and updated.
/// `k8s/controller/rbac.yaml` grants exactly these (the manifest tests
/// compare them).
pub const PERMISSIONS: &[(&str, &str, &[&str])] = &[
    (
        crate::config::gateway::API_GROUP,
        "gatewayclasses",
        &["list", "watch"],
    ),
    (
        crate::config::gateway::API_GROUP,
        "gateways",
        &["list", "watch"],
    ),
    (
        crate::config::gateway::API_GROUP,
        "httproutes",
        &["list", "watch"],
    ),
    (
        crate::config::gateway::API_GROUP,
        "grpcroutes",
        &["list", "watch"],
    ),
    (
        crate::config::gateway::API_GROUP,
        "referencegrants",
        &["list", "watch"],
    ),
    (
        crate::config::gateway::API_GROUP,
        "gatewayclasses/status",
        &["patch"],
    ),
    (
        crate::config::gateway::API_GROUP,
        "gateways/status",
        &["patch"],
    ),
    (
        crate::config::gateway::API_GROUP,
        "httproutes/status",
        &["patch"],
    ),
    (
        crate::config::gateway::API_GROUP,
        "grpcroutes/status",
        &["patch"],
    ),
    ("", "services", &["list", "watch"]),
    ("", "secrets", &["get", "list", "watch"]),
    ("", "namespaces", &["list", "watch"]),
    ("discovery.k8s.io", "endpointslices", &["list", "watch"]),
    (
        "coordination.k8s.io",
        "leases",
        &["get", "create", "update"],
    ),
];
