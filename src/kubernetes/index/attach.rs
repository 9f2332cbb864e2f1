//! How an HTTPRoute attaches to the listeners of cutover's Gateways
//! (parentRefs, allowedRoutes, hostnames) or, in the mesh, to a Service
//! (served on the mesh listener for the Service's names), is converted, and
//! what its status says.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::backends::Backends;
use super::gateways::GatewayState;
use super::hosts::{intersect, union, Hostnames};
use super::{mesh_route_name, route_key, route_name};
use super::{Condition, ObjectKey, ObjectStatus, Output, Settings};
use crate::config::error::ConfigErrors;
use crate::config::gateway::gateways::{kinds_admit, namespaces_admit};
use crate::config::gateway::grpc::RouteKind;
use crate::config::gateway::{self, ApiVersion, HttpRouteSpec, ObjectMeta, API_GROUP};
use crate::kubernetes::resources::{HttpRoute, Listener};
use k8s_openapi::api::core::v1::Service;

/// A parentRef as the route wrote it, defaults filled in: the key of its
/// `status.parents[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentKey {
    /// The Gateway API group, or `""` for a Service (mesh).
    pub group: String,
    /// `Gateway` or `Service`.
    pub kind: String,
    /// The parent's namespace.
    pub namespace: String,
    /// The parent's name.
    pub name: String,
    /// The listener named, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// The port named, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// Namespace name -> its labels.
pub type NamespaceLabels = BTreeMap<String, BTreeMap<String, String>>;

/// Where one parentRef attached.
pub enum Target {
    /// To listeners (index) of a Gateway, with the hostnames it got there.
    Gateway(ObjectKey, Vec<usize>, Hostnames),
    /// To a Service (mesh): the hosts requests to it carry.
    Mesh(Vec<String>),
}

/// One parentRef's attachment, or why none.
pub type Attachment = Result<Target, Condition>;

/// What attaching needs besides the route and Gateways.
pub struct Context<'a> {
    /// Namespace labels, for `allowedRoutes` selectors.
    pub namespaces: &'a NamespaceLabels,
    /// Services, for mesh parents.
    pub services: &'a [Arc<Service>],
    /// The index settings.
    pub settings: &'a Settings,
}

/// Attaches `route` to cutover's Gateways (and Services, in the mesh),
/// converts it, and records its status and (when it is served) its table
/// entries.
pub fn route(
    route: &HttpRoute,
    kind: RouteKind,
    gateways: &mut BTreeMap<ObjectKey, GatewayState>,
    backends: &mut Backends<'_>,
    cx: &Context<'_>,
    out: &mut Output,
) {
    let settings = cx.settings;
    let object = ObjectKey::of(&route.metadata);
    let spec = read_spec(&route.spec);
    let attachments = attachments(route, kind, &object, spec.as_ref().ok(), gateways, cx);
    if attachments.is_empty() {
        return;
    }
    // The key of the shared maps; `object` names the status.
    let key = route_key(kind, &object);
    let name = route_name(&key);
    let mut backends = backends.for_route(&object);
    let (refused, served) =
        convert_or_fallback(route, kind, spec, &name, &key, &mut backends, settings);
    let resolved = match &backends.unresolved {
        Some((reason, message)) => Condition::new("ResolvedRefs", false, reason, message.clone()),
        None => Condition::new("ResolvedRefs", true, "ResolvedRefs", ""),
    };
    let mut parents = Vec::new();
    let mut hostnames: Hostnames = Some(Vec::new());
    let mut any = false;
    let mut mesh_hosts: Option<Vec<String>> = None;
    for (parent, attachment) in attachments {
        let accepted = match attachment {
            Err(c) => c,
            Ok(target) => {
                if served.is_some() {
                    match target {
                        Target::Gateway(gateway_key, listeners, h) => {
                            any = true;
                            let attached = refused.is_none();
                            serve_on(gateways, &gateway_key, &listeners, attached, &name, out);
                            hostnames = union(hostnames, h);
                        }
                        Target::Mesh(hosts) => mesh_hosts.get_or_insert_default().extend(hosts),
                    }
                }
                match &refused {
                    Some(why) => Condition::new("Accepted", false, "UnsupportedValue", why.clone()),
                    None => Condition::new("Accepted", true, "Accepted", ""),
                }
            }
        };
        parents.push((parent, vec![accepted, resolved.clone()]));
    }
    let generation = route.metadata.generation.unwrap_or(0);
    let status = ObjectStatus {
        generation,
        status: parents,
    };
    match kind {
        RouteKind::Http => out.statuses.routes.insert(object, status),
        RouteKind::Grpc => out.statuses.grpc_routes.insert(object, status),
    };
    let Some((spec, c)) = served else {
        return;
    };
    if let (Some(mut hosts), Some(mesh)) = (mesh_hosts, &settings.mesh_listener) {
        hosts.sort();
        hosts.dedup();
        let mut r = c.route.clone();
        r.name = mesh_route_name(&key);
        r.hostnames = hosts;
        out.route_keys.insert(r.name.clone(), key.clone());
        out.specs.insert(key.clone(), Arc::clone(&spec));
        out.generated
            .listener_routes
            .entry(mesh.clone())
            .or_default()
            .push(r.name.clone());
        out.generated.routes.push(r);
    }
    if any {
        let mut route = c.route;
        let mut hostnames = hostnames.unwrap_or_default();
        hostnames.sort();
        hostnames.dedup();
        route.hostnames = hostnames;
        out.route_keys.insert(name, key.clone());
        out.specs.insert(key, spec);
        out.generated.routes.push(route);
    }
}

/// The route's parentRefs to cutover's Gateways (and, with a mesh
/// listener, to Services), each with its attachment.
fn attachments(
    route: &HttpRoute,
    kind: RouteKind,
    key: &ObjectKey,
    spec: Option<&HttpRouteSpec>,
    gateways: &BTreeMap<ObjectKey, GatewayState>,
    cx: &Context<'_>,
) -> Vec<(ParentKey, Attachment)> {
    let parent_refs: Vec<gateway::ParentReference> = match spec {
        Some(s) => s.parent_refs.clone(),
        // The parents are needed to say why; read them on their own.
        None => route
            .spec
            .get("parentRefs")
            .and_then(|p| serde_json::from_value(p.clone()).ok())
            .unwrap_or_default(),
    };
    let hostnames = spec.map(|s| s.hostnames.as_slice()).unwrap_or(&[]);
    let mut out = Vec::new();
    for p in &parent_refs {
        let parent = ParentKey {
            group: p.group.clone().unwrap_or_else(|| API_GROUP.into()),
            kind: p.kind.clone().unwrap_or_else(|| "Gateway".into()),
            namespace: p.namespace.clone().unwrap_or_else(|| key.namespace.clone()),
            name: p.name.clone(),
            section_name: p.section_name.clone(),
            port: p.port,
        };
        if parent.group.is_empty() && parent.kind == "Service" {
            if cx.settings.mesh_listener.is_some() {
                let attachment = super::mesh::attach(&parent, &key.namespace, cx.services);
                out.push((parent, attachment));
            }
            continue;
        }
        if parent.group != API_GROUP || parent.kind != "Gateway" {
            continue;
        }
        let gateway_key = ObjectKey {
            namespace: parent.namespace.clone(),
            name: parent.name.clone(),
        };
        let Some(gateway) = gateways.get(&gateway_key) else {
            continue; // another controller's parent
        };
        let attachment = attach(
            gateway,
            &parent,
            kind,
            &key.namespace,
            hostnames,
            cx.namespaces,
        )
        .map(|(listeners, h)| Target::Gateway(gateway_key, listeners, h));
        out.push((parent, attachment));
    }
    out
}

/// Converts the route; when its current spec is refused (by the
/// conversion, or by the last compile), converts the last accepted spec
/// instead. Returns why it was refused, and the spec served with its
/// conversion.
fn convert_or_fallback(
    route: &HttpRoute,
    kind: RouteKind,
    spec: Result<HttpRouteSpec, String>,
    name: &str,
    key: &ObjectKey,
    backends: &mut dyn gateway::ResolveBackend,
    settings: &Settings,
) -> (
    Option<String>,
    Option<(Arc<serde_json::Value>, gateway::Converted)>,
) {
    let converted = spec.and_then(|spec| convert(kind, spec, name, key, backends));
    let refused = match (&converted, settings.refused.get(key)) {
        (Err(e), _) => Some(e.trim().to_string()),
        (Ok(_), Some(why)) => Some(why.clone()),
        (Ok(_), None) => None,
    };
    match (refused, converted, settings.fallback.get(key)) {
        (None, Ok(c), _) => (None, Some((Arc::clone(&route.spec), c))),
        (Some(why), _, Some(old)) => {
            let c = read_spec(old).and_then(|s| convert(kind, s, name, key, backends));
            let why = format!("{why} (the last accepted spec is still served)");
            (Some(why), c.ok().map(|c| (Arc::clone(old), c)))
        }
        // (An error always comes with a reason; without a fallback the
        // route is not served.)
        (why, _, _) => (why, None),
    }
}

/// Records `name` as attached to `listeners` of a Gateway (counted in
/// `attachedRoutes` when `attached`) and served by their cutover listeners.
fn serve_on(
    gateways: &mut BTreeMap<ObjectKey, GatewayState>,
    gateway: &ObjectKey,
    listeners: &[usize],
    attached: bool,
    name: &str,
    out: &mut Output,
) {
    let Some(g) = gateways.get_mut(gateway) else {
        return;
    };
    for &i in listeners {
        let l = &mut g.listeners[i];
        l.attached += i32::from(attached);
        if let Some(file) = &l.file {
            let list = out
                .generated
                .listener_routes
                .entry(file.clone())
                .or_default();
            if !list.iter().any(|r| r == name) {
                list.push(name.to_string());
            }
        }
    }
}

/// Converts `spec` as file mode does, backendRefs resolved to pods.
fn convert(
    kind: RouteKind,
    spec: HttpRouteSpec,
    name: &str,
    key: &ObjectKey,
    backends: &mut dyn gateway::ResolveBackend,
) -> Result<gateway::Converted, String> {
    let doc = gateway::HttpRoute {
        kind,
        api_version: ApiVersion::V1,
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(key.namespace.clone()),
            ..ObjectMeta::default()
        },
        spec,
    };
    let mut errors = ConfigErrors::default();
    gateway::convert(&doc, "", backends, &mut errors).ok_or(errors.to_string())
}

/// The spec read as in file mode: an unknown or unsupported field is named.
fn read_spec(spec: &serde_json::Value) -> Result<HttpRouteSpec, String> {
    serde_path_to_error::deserialize(spec).map_err(|e| format!("spec.{}: {}", e.path(), e.inner()))
}

/// The listeners of `gateway` that `parent` selects and that accept a route
/// of `namespace` with `hostnames`, with the hostnames served there.
fn attach(
    gateway: &GatewayState,
    parent: &ParentKey,
    kind: RouteKind,
    namespace: &str,
    hostnames: &[String],
    namespaces: &NamespaceLabels,
) -> Result<(Vec<usize>, Hostnames), Condition> {
    let spec = &gateway.gateway.spec.listeners;
    let selected: Vec<usize> = (0..spec.len())
        .filter(|&i| {
            let l = &spec[i];
            parent.section_name.as_ref().is_none_or(|s| *s == l.name)
                && parent.port.is_none_or(|p| i32::from(p) == l.port)
        })
        .collect();
    if selected.is_empty() {
        return Err(Condition::new(
            "Accepted",
            false,
            "NoMatchingParent",
            "no listener of the Gateway has that sectionName and port",
        ));
    }
    let allowed: Vec<usize> = selected
        .into_iter()
        .filter(|&i| {
            gateway.listeners[i]
                .conditions
                .first()
                .is_some_and(|c| c.status)
        })
        .filter(|&i| {
            allows(
                &spec[i],
                kind,
                &gateway.key.namespace,
                namespace,
                namespaces,
            )
        })
        .collect();
    if allowed.is_empty() {
        return Err(Condition::new(
            "Accepted",
            false,
            "NotAllowedByListeners",
            format!(
                "no selected listener allows {}s from namespace {namespace}",
                kind.name()
            ),
        ));
    }
    let mut listeners = Vec::new();
    let mut served: Option<Vec<String>> = Some(Vec::new());
    for i in allowed {
        let Some(h) = intersect(spec[i].hostname.as_deref(), hostnames) else {
            continue;
        };
        listeners.push(i);
        served = union(served, h);
    }
    if listeners.is_empty() {
        return Err(Condition::new(
            "Accepted",
            false,
            "NoMatchingListenerHostname",
            "no hostname of the route matches a selected listener's hostname",
        ));
    }
    Ok((listeners, served))
}

/// Whether listener `l` of a Gateway in `gateway_ns` accepts HTTPRoutes of
/// `route_ns` (the rules shared with file mode, `config::gateway::gateways`).
fn allows(
    l: &Listener,
    kind: RouteKind,
    gateway_ns: &str,
    route_ns: &str,
    namespaces: &NamespaceLabels,
) -> bool {
    let allowed = l.allowed_routes.as_ref();
    let kinds = allowed.and_then(|a| a.kinds.as_ref()).map(|kinds| {
        kinds
            .iter()
            .map(|k| (k.group.as_deref(), k.kind.as_str()))
            .collect::<Vec<_>>()
    });
    let from = allowed.and_then(|a| a.namespaces.as_ref());
    let selected = || {
        let selector = from.and_then(|n| n.selector.as_ref());
        match (selector, namespaces.get(route_ns)) {
            (Some(s), Some(l)) => super::selector::matches(s, l),
            _ => false,
        }
    };
    kinds_admit(kinds.as_deref(), kind.name())
        && namespaces_admit(
            from.and_then(|n| n.from.as_deref()),
            gateway_ns,
            route_ns,
            selected,
        )
}
