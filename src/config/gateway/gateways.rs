//! Gateway documents in file mode: each Gateway listener is served by the
//! cutover listener of its port (with `tls` for HTTPS; cutover's listeners
//! stay as they are and hold the certificates), and each HTTPRoute attaches
//! through its parentRefs as Gateway API says: `sectionName` and `port`
//! select listeners, `allowedRoutes` admits the route's namespace and kind,
//! and the listener's hostname narrows the route's. A route attached
//! nowhere is not served; a host no attached route accepts gets 404.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::hosts::{intersect, union, Hostnames};
use super::{ParentReference, API_GROUP};
use crate::config::error::ConfigErrors;
use crate::config::model::ListenerConfig;

/// One `Gateway` document: its listeners, by the Gateway's namespace/name.
#[derive(Debug, Clone)]
pub struct GatewayDoc {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, default `default`.
    pub namespace: String,
    /// `spec.listeners`.
    pub listeners: Vec<GatewayListener>,
    /// Prefix of this document's warnings (`file: Gateway name: `).
    pub label: String,
}

/// A Gateway `Listener`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayListener {
    /// Unique in the Gateway; a parentRef's `sectionName`.
    pub name: String,
    /// Narrows the hostnames of attached routes (`*.example.com` allowed).
    #[serde(default)]
    pub hostname: Option<String>,
    /// The cutover listener bound to this port serves it.
    pub port: u16,
    /// `HTTP` or `HTTPS`.
    pub protocol: String,
    /// HTTPS: `mode` and `certificateRefs` are recorded; the certificates
    /// are the cutover listener's `tls` files.
    #[serde(default)]
    pub tls: Option<IgnoredAny>,
    /// Which routes may attach; default HTTPRoutes of the Gateway's namespace.
    #[serde(default)]
    pub allowed_routes: Option<AllowedRoutes>,
}

/// `AllowedRoutes`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedRoutes {
    /// Default `from: Same`.
    #[serde(default)]
    pub namespaces: Option<RouteNamespaces>,
    /// Route kinds; cutover serves `HTTPRoute`.
    #[serde(default)]
    pub kinds: Option<Vec<RouteGroupKind>>,
}

/// `RouteNamespaces`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteNamespaces {
    /// `All`, `Same` (default) or `Selector`.
    #[serde(default)]
    pub from: Option<String>,
    /// With `Selector`: file mode knows no namespace labels, so no route
    /// is admitted (a warning says so).
    #[serde(default)]
    pub selector: Option<IgnoredAny>,
}

/// `RouteGroupKind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteGroupKind {
    /// Default the Gateway API group.
    #[serde(default)]
    pub group: Option<String>,
    /// e.g. `HTTPRoute`.
    pub kind: String,
}

/// What attachment needs to know of one converted HTTPRoute.
#[derive(Debug, Clone)]
pub struct RouteAttachment {
    /// Index of the converted route in the merged config's `routes`.
    pub route: usize,
    /// `metadata.namespace`, default `default`.
    pub namespace: String,
    /// `spec.parentRefs`.
    pub parent_refs: Vec<ParentReference>,
    /// `HTTPRoute` or `GRPCRoute`, for `allowedRoutes.kinds`.
    pub kind: super::grpc::RouteKind,
    /// Prefix of the route's warnings (`file: HTTPRoute name: `).
    pub label: String,
}

/// Attaches the HTTPRoutes to the Gateways' listeners: sets each route's
/// hostnames to what its listeners allow and lists it on the cutover
/// listeners that serve them. Without Gateway documents nothing changes
/// (every listener serves every route). Problems are warnings naming the
/// field: a route attached nowhere is simply not served.
pub fn attach_all(
    gateways: &[GatewayDoc],
    routes: &[RouteAttachment],
    own_routes: &[String],
    config: &mut crate::config::Config,
    warnings: &mut ConfigErrors,
) {
    if gateways.is_empty() {
        return;
    }
    let served = serving_listeners(gateways, &config.listeners, warnings);
    let mut lists: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in routes {
        let Some(route) = config.routes.get_mut(r.route) else {
            continue;
        };
        let mut hostnames: Hostnames = Some(Vec::new());
        let mut on: Vec<&str> = Vec::new();
        for (i, parent) in r.parent_refs.iter().enumerate() {
            let at = format!("{}spec.parentRefs[{i}]", r.label);
            let Some((listeners, h)) = attach(
                gateways,
                &served,
                parent,
                r,
                &route.hostnames,
                &at,
                warnings,
            ) else {
                continue;
            };
            on.extend(listeners);
            hostnames = union(hostnames, h);
        }
        if on.is_empty() {
            warnings.push(
                format!("{}spec.parentRefs", r.label),
                "attaches to no listener of the Gateway documents: the route is not served",
            );
            continue;
        }
        let mut hostnames = hostnames.unwrap_or_default();
        hostnames.sort();
        hostnames.dedup();
        route.hostnames = hostnames;
        for l in on {
            let list = lists.entry(l.to_string()).or_default();
            if !list.contains(&route.name) {
                list.push(route.name.clone());
            }
        }
    }
    for l in &mut config.listeners {
        if l.routes.is_empty() {
            l.routes = own_routes.to_vec();
        }
        l.routes.extend(lists.remove(&l.name).unwrap_or_default());
    }
}

/// Per Gateway (in `gateways` order), per listener: the cutover listener
/// serving it, if any (same port; `tls` for HTTPS).
fn serving_listeners(
    gateways: &[GatewayDoc],
    listeners: &[ListenerConfig],
    warnings: &mut ConfigErrors,
) -> Vec<Vec<Option<String>>> {
    gateways
        .iter()
        .map(|g| {
            g.listeners
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    let at = format!("{}spec.listeners[{i}]", g.label);
                    let from = l.allowed_routes.as_ref().and_then(|a| a.namespaces.as_ref());
                    if from.and_then(|n| n.from.as_deref()) == Some("Selector") {
                        warnings.push(
                            format!("{at}.allowedRoutes.namespaces.from"),
                            "Selector admits no route in file mode (namespace labels are unknown); use Same or All",
                        );
                    }
                    let https = match l.protocol.as_str() {
                        "HTTP" => false,
                        "HTTPS" => true,
                        other => {
                            warnings.push(
                                format!("{at}.protocol"),
                                format!("{other:?} is not served; cutover serves HTTP and HTTPS"),
                            );
                            return None;
                        }
                    };
                    let file = listeners.iter().find(|c| {
                        c.address.parse::<SocketAddr>().is_ok_and(|a| a.port() == l.port)
                            && c.tls.is_some() == https
                    });
                    if file.is_none() {
                        warnings.push(
                            format!("{at}.port"),
                            format!(
                                "no cutover listener {}on port {}: routes attached here are not served",
                                if https { "with tls " } else { "" },
                                l.port
                            ),
                        );
                    }
                    file.map(|c| c.name.clone())
                })
                .collect()
        })
        .collect()
}

/// The cutover listeners `parent` attaches route `r` to, and the hostnames
/// it serves there; `None` with a warning at `at` when none.
fn attach<'s>(
    gateways: &[GatewayDoc],
    served: &'s [Vec<Option<String>>],
    parent: &ParentReference,
    r: &RouteAttachment,
    route_hosts: &[String],
    at: &str,
    warnings: &mut ConfigErrors,
) -> Option<(Vec<&'s str>, Hostnames)> {
    let kind_ok = parent.kind.as_deref().is_none_or(|k| k == "Gateway")
        && parent.group.as_deref().is_none_or(|g| g == API_GROUP);
    if !kind_ok {
        warnings.push(
            at,
            "not a Gateway: ignored (cutover serves routes through Gateways)",
        );
        return None;
    }
    let ns = parent.namespace.as_deref().unwrap_or(&r.namespace);
    let Some(gi) = gateways
        .iter()
        .position(|g| g.name == parent.name && g.namespace == ns)
    else {
        warnings.push(
            format!("{at}.name"),
            format!("no Gateway document {ns}/{}", parent.name),
        );
        return None;
    };
    let g = &gateways[gi];
    let mut why = "no listener of the Gateway has that sectionName and port";
    let mut listeners = Vec::new();
    let mut hostnames: Hostnames = Some(Vec::new());
    for (li, l) in g.listeners.iter().enumerate() {
        let selected = parent.section_name.as_ref().is_none_or(|s| *s == l.name)
            && parent.port.is_none_or(|p| p == l.port);
        if !selected {
            continue;
        }
        if !allows(l, &g.namespace, r) {
            why = match r.kind {
                super::grpc::RouteKind::Http => {
                    "no selected listener allows HTTPRoutes from the route's namespace"
                }
                super::grpc::RouteKind::Grpc => {
                    "no selected listener allows GRPCRoutes from the route's namespace"
                }
            };
            continue;
        }
        let Some(h) = intersect(l.hostname.as_deref(), route_hosts) else {
            why = "no hostname of the route matches a selected listener's hostname";
            continue;
        };
        let Some(file) = served[gi][li].as_deref() else {
            why = "no cutover listener serves the selected listeners";
            continue;
        };
        listeners.push(file);
        hostnames = union(hostnames, h);
    }
    if listeners.is_empty() {
        warnings.push(
            at,
            format!("not attached to Gateway {ns}/{}: {why}", g.name),
        );
        return None;
    }
    Some((listeners, hostnames))
}

/// Whether listener `l` of a Gateway in `gateway_ns` admits route `r` (its
/// kind and namespace; `Selector` admits none: file mode knows no labels).
fn allows(l: &GatewayListener, gateway_ns: &str, r: &RouteAttachment) -> bool {
    let allowed = l.allowed_routes.as_ref();
    let kinds = allowed.and_then(|a| a.kinds.as_ref()).map(|kinds| {
        kinds
            .iter()
            .map(|k| (k.group.as_deref(), k.kind.as_str()))
            .collect::<Vec<_>>()
    });
    let from = allowed
        .and_then(|a| a.namespaces.as_ref())
        .and_then(|n| n.from.as_deref());
    kinds_admit(kinds.as_deref(), r.kind.name())
        && namespaces_admit(from, gateway_ns, &r.namespace, || false)
}

/// Whether an `allowedRoutes.kinds` list of `(group, kind)` admits routes
/// of `route_kind`: absent or empty (the protocol's defaults: an HTTP or
/// HTTPS listener takes HTTPRoutes and GRPCRoutes) does. Shared by file
/// mode and controller mode.
pub fn kinds_admit(kinds: Option<&[(Option<&str>, &str)]>, route_kind: &str) -> bool {
    kinds.is_none_or(|kinds| {
        kinds.is_empty()
            || kinds
                .iter()
                .any(|(group, kind)| *kind == route_kind && group.is_none_or(|g| g == API_GROUP))
    })
}

/// Whether `allowedRoutes.namespaces.from` (default `Same`) admits a route
/// of `route_ns` on a Gateway of `gateway_ns`; `Selector` asks `selected`.
/// Shared by file mode and controller mode.
pub fn namespaces_admit(
    from: Option<&str>,
    gateway_ns: &str,
    route_ns: &str,
    selected: impl FnOnce() -> bool,
) -> bool {
    match from.unwrap_or("Same") {
        "All" => true,
        "Same" => gateway_ns == route_ns,
        "Selector" => selected(),
        _ => false,
    }
}
