//! Gateway API `ReferenceGrant` documents: a backendRef into another
//! namespace resolves only when that namespace grants it (an HTTPRoute of
//! the route's namespace may refer to its Services).

use serde::{Deserialize, Deserializer};

use super::API_GROUP;

/// `kind` of an accepted Kubernetes document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    /// `HTTPRoute`: becomes a cutover route.
    HttpRoute,
    /// `ReferenceGrant`: allows cross-namespace backendRefs.
    ReferenceGrant,
    /// `Gateway`: listeners routes attach to.
    Gateway,
    /// `GRPCRoute`: becomes a cutover route with gRPC matches.
    GrpcRoute,
}

impl<'de> Deserialize<'de> for DocumentKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "HTTPRoute" => Ok(DocumentKind::HttpRoute),
            "ReferenceGrant" => Ok(DocumentKind::ReferenceGrant),
            "Gateway" => Ok(DocumentKind::Gateway),
            "GRPCRoute" => Ok(DocumentKind::GrpcRoute),
            _ => Err(serde::de::Error::custom(format!(
                "{s:?} is not supported; cutover reads Gateway API HTTPRoute, GRPCRoute, Gateway and ReferenceGrant documents and its own config"
            ))),
        }
    }
}

/// `ReferenceGrantFrom`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantFrom {
    /// API group of the referring kind (`gateway.networking.k8s.io`).
    pub group: String,
    /// Referring kind (`HTTPRoute`).
    pub kind: String,
    /// Namespace of the referring objects.
    pub namespace: String,
}

/// `ReferenceGrantTo`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantTo {
    /// API group of the referent (`""` for core).
    pub group: String,
    /// Referent kind (`Service`).
    pub kind: String,
    /// One referent only; absent: every object of the kind.
    #[serde(default)]
    pub name: Option<String>,
}

/// One `ReferenceGrant`: in `namespace`, objects matching `to` may be
/// referred to from `from`.
#[derive(Debug, Clone)]
pub struct ReferenceGrant {
    /// The granting (target) namespace.
    pub namespace: String,
    /// Who may refer.
    pub from: Vec<GrantFrom>,
    /// What they may refer to.
    pub to: Vec<GrantTo>,
}

/// Whether a route of `kind` (`HTTPRoute`, `GRPCRoute`) in `route_ns` may
/// refer to the Service `name` in `target_ns`: always within one namespace,
/// else only with a grant.
pub fn service_allowed(
    grants: &[ReferenceGrant],
    kind: &str,
    route_ns: &str,
    target_ns: &str,
    name: &str,
) -> bool {
    route_ns == target_ns
        || grants.iter().any(|g| {
            g.namespace == target_ns
                && g.from
                    .iter()
                    .any(|f| f.group == API_GROUP && f.kind == kind && f.namespace == route_ns)
                && g.to.iter().any(|t| {
                    t.group.is_empty()
                        && t.kind == "Service"
                        && t.name.as_deref().is_none_or(|n| n == name)
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(from_ns: &str, to_name: Option<&str>) -> ReferenceGrant {
        ReferenceGrant {
            namespace: "backends".into(),
            from: vec![GrantFrom {
                group: API_GROUP.into(),
                kind: "HTTPRoute".into(),
                namespace: from_ns.into(),
            }],
            to: vec![GrantTo {
                group: String::new(),
                kind: "Service".into(),
                name: to_name.map(Into::into),
            }],
        }
    }

    #[test]
    fn cross_namespace_needs_a_matching_grant() {
        assert!(
            service_allowed(&[], "HTTPRoute", "web", "web", "a"),
            "same namespace"
        );
        assert!(
            !service_allowed(&[], "HTTPRoute", "web", "backends", "a"),
            "no grant"
        );
        let any = [grant("web", None)];
        assert!(service_allowed(&any, "HTTPRoute", "web", "backends", "a"));
        assert!(
            !service_allowed(&any, "HTTPRoute", "other", "backends", "a"),
            "from another namespace"
        );
        assert!(
            !service_allowed(&any, "HTTPRoute", "web", "elsewhere", "a"),
            "granted elsewhere"
        );
        let one = [grant("web", Some("a"))];
        assert!(service_allowed(&one, "HTTPRoute", "web", "backends", "a"));
        assert!(
            !service_allowed(&one, "HTTPRoute", "web", "backends", "b"),
            "another name"
        );
    }
}
