//! Gateway API's partial validity for backendRefs: a backendRef cutover
//! cannot resolve (a kind or API group other than core `Service`) does not
//! refuse the route; its share of the weight answers 500 while the other
//! backends serve, and `cutover check` warns naming the field. A rule
//! without backendRefs is valid too and answers 500. (For gRPC requests the
//! 500 is the gRPC status UNAVAILABLE, as GRPCRoute asks: `error`.)

use super::convert::Groups;
use super::grant::{service_allowed, ReferenceGrant};
use super::grpc::RouteKind;
use super::HttpBackendRef;
use crate::config::model::BackendConfig;

/// The group standing for a rule without backendRefs: no endpoints, and
/// marked unresolved, so its requests answer 500.
pub const NO_BACKEND_REFS: &str = "no-backend-refs";

/// Why `b` cannot be resolved, naming the field; `None` when it can.
pub(super) fn unresolvable(
    b: &HttpBackendRef,
    namespace: &str,
    kind: RouteKind,
    grants: &[ReferenceGrant],
) -> Option<(&'static str, String)> {
    if let Some(g) = b.group.as_deref().filter(|g| !g.is_empty()) {
        return Some((
            "group",
            format!("{g:?} is not supported (cutover routes to core Services, group \"\")"),
        ));
    }
    if let Some(k) = b.kind.as_deref().filter(|k| *k != "Service") {
        return Some((
            "kind",
            format!("{k:?} is not supported (cutover routes to Services)"),
        ));
    }
    let target = b.namespace.as_deref().unwrap_or(namespace);
    if !service_allowed(grants, kind.name(), namespace, target, &b.name) {
        return Some((
            "namespace",
            format!("{target:?} is another namespace, and no ReferenceGrant there lets {}s of {namespace:?} refer to Service {:?}", kind.name(), b.name),
        ));
    }
    None
}

/// For a backendRef that cannot be resolved: a warning at `at` and the
/// unresolved backend standing for its weight. `None` when it resolves.
pub fn unresolved_backend(
    b: &HttpBackendRef,
    at: &str,
    namespace: &str,
    groups: &mut Groups<'_>,
) -> Option<BackendConfig> {
    let (field, why) = unresolvable(b, namespace, groups.kind(), &groups.grants)?;
    let answer = match groups.kind() {
        RouteKind::Http => "answers 500",
        RouteKind::Grpc => "gets gRPC status UNAVAILABLE",
    };
    groups.warnings.push(
        format!("{at}.{field}"),
        format!(
            "{why}; its share of the requests (weight {}) {answer}",
            b.weight.unwrap_or(1)
        ),
    );
    let ns = b.namespace.as_deref().unwrap_or(namespace);
    let kind = b.kind.as_deref().unwrap_or("Service").to_ascii_lowercase();
    let name = format!("unresolved.{kind}.{ns}.{}", b.name);
    Some(unresolved(name, b.weight.unwrap_or(1), at, groups))
}

/// The backend of a rule without backendRefs (at `at`).
pub fn no_backend_refs(at: &str, groups: &mut Groups<'_>) -> BackendConfig {
    unresolved(NO_BACKEND_REFS.to_string(), 1, at, groups)
}

fn unresolved(group: String, weight: u32, at: &str, groups: &mut Groups<'_>) -> BackendConfig {
    groups
        .unresolved
        .entry(group.clone())
        .or_insert_with(|| at.to_string());
    marked_unresolved(group, weight)
}

/// A backend of `group` marked unresolved: its share answers 500 (gRPC:
/// UNAVAILABLE) and is never a fallback. File and controller mode alike.
pub fn marked_unresolved(group: String, weight: u32) -> BackendConfig {
    BackendConfig {
        group,
        weight,
        fault: None,
        request_header_modifier: None,
        response_header_modifier: None,
        unresolved: true,
    }
}
