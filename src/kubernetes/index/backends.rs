//! backendRef -> group of ready pod addresses, with the ReferenceGrant check
//! for other namespaces; an unresolvable reference keeps its weight and
//! answers 500, and says why in `ResolvedRefs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;

use super::{ObjectKey, Objects};
use crate::config::error::ConfigErrors;
use crate::config::gateway::grpc::RouteKind;
use crate::config::gateway::refs::marked_unresolved;
use crate::config::gateway::{HttpBackendRef, ResolveBackend, API_GROUP};
use crate::config::model::{BackendConfig, GroupConfig, UpstreamProtocol};
use crate::kubernetes::resources::{EndpointSlice, ReferenceGrant};

/// Whether grant `g` (in the target's namespace) lets `from_kind` objects of
/// `from_ns` (Gateway API group) reference the core `to_kind` object `name`.
pub fn grant_allows(
    g: &ReferenceGrant,
    from_kind: &str,
    from_ns: &str,
    to_kind: &str,
    name: &str,
) -> bool {
    let from = g
        .spec
        .from
        .iter()
        .any(|f| f.group == API_GROUP && f.kind == from_kind && f.namespace == from_ns);
    let to = g.spec.to.iter().any(|t| {
        t.group.is_empty() && t.kind == to_kind && t.name.as_deref().is_none_or(|n| n == name)
    });
    from && to
}

/// The group behind every unresolvable backendRef (and rules without
/// any): no endpoints, and the backend marked unresolved, as file mode
/// does (`config::gateway::refs`): its share answers 500 (gRPC:
/// UNAVAILABLE) and never spills over to the other backends.
pub const UNRESOLVED_GROUP: &str = "cutover.unresolved";

/// The label EndpointSlices carry with their Service's name.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Lookups over the objects, and the groups made so far.
pub struct Backends<'a> {
    services: HashMap<(&'a str, &'a str), &'a Service>,
    slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
    grants: HashMap<&'a str, Vec<&'a ReferenceGrant>>,
    groups: BTreeMap<String, GroupConfig>,
    service_groups: ServiceGroups,
}

/// Per Service, the groups made of its pods, with the Service port each
/// serves: what an EndpointSlice change of that Service recomputes.
pub type ServiceGroups = BTreeMap<ObjectKey, BTreeMap<String, u16>>;

/// Why a reference was not resolved: a `ResolvedRefs` reason and message.
pub type Unresolved = (&'static str, String);

impl<'a> Backends<'a> {
    /// Indexes `objects`.
    pub fn new(objects: &'a Objects) -> Self {
        let mut services = HashMap::new();
        for s in &objects.services {
            let (ns, name) = (s.metadata.namespace.as_deref(), s.metadata.name.as_deref());
            if let (Some(ns), Some(name)) = (ns, name) {
                services.insert((ns, name), &**s);
            }
        }
        let mut slices: HashMap<_, Vec<_>> = HashMap::new();
        for s in &objects.slices {
            let ns = s.metadata.namespace.as_deref();
            let svc = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .map(String::as_str);
            if let (Some(ns), Some(svc)) = (ns, svc) {
                slices.entry((ns, svc)).or_default().push(&**s);
            }
        }
        let mut grants: HashMap<_, Vec<_>> = HashMap::new();
        for g in &objects.grants {
            if let Some(ns) = g.metadata.namespace.as_deref() {
                grants.entry(ns).or_default().push(&**g);
            }
        }
        Backends {
            services,
            slices,
            grants,
            groups: BTreeMap::new(),
            service_groups: BTreeMap::new(),
        }
    }

    /// Which groups were made of which Service's pods (see [`ServiceGroups`]).
    pub fn take_service_groups(&mut self) -> ServiceGroups {
        std::mem::take(&mut self.service_groups)
    }

    /// The groups made, the unresolved one included when used.
    pub fn into_groups(self) -> BTreeMap<String, GroupConfig> {
        self.groups
    }

    /// A resolver for the backendRefs of one route.
    pub fn for_route<'b>(&'b mut self, route: &'b ObjectKey) -> RouteBackends<'a, 'b> {
        RouteBackends {
            backends: self,
            route,
            unresolved: None,
            kind: RouteKind::Http,
        }
    }

    fn granted(&self, kind: RouteKind, from_ns: &str, to_ns: &str, service: &str) -> bool {
        self.grants.get(to_ns).is_some_and(|grants| {
            grants
                .iter()
                .any(|g| grant_allows(g, kind.name(), from_ns, "Service", service))
        })
    }

    /// The Service's port `port` as ready pod addresses; `Err` says why not.
    fn pods(&self, ns: &str, name: &str, port: u16) -> Result<Vec<String>, Unresolved> {
        let service = self.services.get(&(ns, name)).ok_or_else(|| {
            (
                "BackendNotFound",
                format!("Service {ns}/{name} does not exist"),
            )
        })?;
        let ports = service.spec.as_ref().and_then(|s| s.ports.as_ref());
        let service_port = ports
            .into_iter()
            .flatten()
            .find(|p| p.port == i32::from(port))
            .ok_or_else(|| {
                (
                    "BackendNotFound",
                    format!("Service {ns}/{name} has no port {port}"),
                )
            })?;
        let port_name = service_port.name.as_deref().unwrap_or("");
        let mut addresses = BTreeSet::new();
        for slice in self.slices.get(&(ns, name)).into_iter().flatten() {
            let Some(target) = slice
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref().unwrap_or("") == port_name)
                .and_then(|p| p.port)
                .and_then(|p| u16::try_from(p).ok())
            else {
                continue;
            };
            for e in &slice.endpoints {
                let c = e.conditions.as_ref();
                // `ready` unset means ready; terminating pods get no new
                // requests (those in flight finish on the table they hold).
                let ready = c.and_then(|c| c.ready).unwrap_or(true);
                let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
                if !ready || terminating {
                    continue;
                }
                for a in &e.addresses {
                    if let Ok(ip) = a.parse::<IpAddr>() {
                        addresses.insert(std::net::SocketAddr::new(ip, target));
                    }
                }
            }
        }
        Ok(addresses.into_iter().map(|a| a.to_string()).collect())
    }
}

/// The resolver handed to the HTTPRoute conversion for one route; remembers
/// the first unresolved reference for `ResolvedRefs`.
pub struct RouteBackends<'a, 'b> {
    backends: &'b mut Backends<'a>,
    route: &'b ObjectKey,
    /// The first reference that did not resolve.
    pub unresolved: Option<Unresolved>,
    kind: RouteKind,
}

impl RouteBackends<'_, '_> {
    fn resolve_service(&mut self, b: &HttpBackendRef) -> Result<(String, Vec<String>), Unresolved> {
        let kind = b.kind.as_deref().unwrap_or("Service");
        let group = b.group.as_deref().unwrap_or("");
        if kind != "Service" || !group.is_empty() {
            return Err((
                "InvalidKind",
                format!("{group:?}/{kind} is not supported; cutover routes to core Services"),
            ));
        }
        let ns = b.namespace.as_deref().unwrap_or(&self.route.namespace);
        let from = &self.route.namespace;
        if ns != from && !self.backends.granted(self.kind, from, ns, &b.name) {
            return Err((
                "RefNotPermitted",
                format!(
                    "no ReferenceGrant in namespace {ns} lets {}s of {from} reference Service {}",
                    self.kind.name(),
                    b.name
                ),
            ));
        }
        let port = b.port.ok_or_else(|| {
            (
                "UnsupportedValue",
                format!("backendRef to Service {ns}/{} needs a port", b.name),
            )
        })?;
        let pods = self.backends.pods(ns, &b.name, port)?;
        let group = format!("{ns}.{}.{port}", b.name);
        let service = ObjectKey {
            namespace: ns.to_string(),
            name: b.name.clone(),
        };
        self.backends
            .service_groups
            .entry(service)
            .or_default()
            .insert(group.clone(), port);
        Ok((group, pods))
    }
}

impl ResolveBackend for RouteBackends<'_, '_> {
    fn resolve(
        &mut self,
        b: &HttpBackendRef,
        _at: &str,
        _namespace: &str,
        _errors: &mut ConfigErrors,
    ) -> Option<BackendConfig> {
        let weight = b.weight.unwrap_or(1);
        match self.resolve_service(b) {
            Ok((group, pods)) => {
                let kind = self.kind;
                let made = self.backends.groups.entry(group.clone());
                let made = made.or_insert_with(|| GroupConfig::new(pods));
                if kind == RouteKind::Grpc {
                    made.protocol = UpstreamProtocol::H2;
                }
                Some(BackendConfig {
                    unresolved: false,
                    ..marked_unresolved(group, weight)
                })
            }
            Err(why) => {
                self.unresolved.get_or_insert(why);
                Some(self.unresolved_backend(weight))
            }
        }
    }

    fn no_backend_refs(&mut self, _at: &str) -> Option<BackendConfig> {
        Some(self.unresolved_backend(1))
    }

    fn route_kind(&mut self, kind: RouteKind) {
        self.kind = kind;
    }
}

impl RouteBackends<'_, '_> {
    fn unresolved_backend(&mut self, weight: u32) -> BackendConfig {
        self.backends
            .groups
            .entry(UNRESOLVED_GROUP.into())
            .or_insert_with(|| GroupConfig::new(Vec::new()));
        marked_unresolved(UNRESOLVED_GROUP.into(), weight)
    }
}

/// The ready pods of `groups` (`(group, Service, port)`), from `objects`
/// holding those Services and their EndpointSlices; `None` when one no
/// longer resolves (a Service or port gone: the full rebuild reports it).
pub fn pods_of(
    objects: &Objects,
    groups: &[(String, ObjectKey, u16)],
) -> Option<BTreeMap<String, Vec<String>>> {
    let backends = Backends::new(objects);
    groups
        .iter()
        .map(|(group, s, port)| {
            let pods = backends.pods(&s.namespace, &s.name, *port).ok()?;
            Some((group.clone(), pods))
        })
        .collect()
}
