//! Controller mode (`cutover run --kubernetes`): cutover as a Gateway API
//! implementation. It watches GatewayClasses, Gateways, HTTPRoutes,
//! ReferenceGrants, Services, EndpointSlices and Namespaces; the pure
//! [`index`] turns them into routes and groups of ready pod addresses, which
//! are layered on the file's config and published through
//! `reload::change` (endpoint state carries over by address, as with DNS);
//! then the [`status`] of each object is applied by the replica holding the
//! [`lease`]. Nothing here is on the request path.

pub mod controller;
pub mod index;
pub mod lease;
pub mod resources;
pub mod status;

pub use controller::{run, ControllerOptions, CONTROLLER_NAME, FIELD_MANAGER};
