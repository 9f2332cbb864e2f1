//! The mesh profile (GAMMA): an HTTPRoute whose parentRef is a Service
//! attaches to the mesh listener for the hosts that address that Service.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;

use super::attach::{Attachment, ParentKey, Target};
use super::Condition;

/// A Service parent (GAMMA): the hosts that address it, `name`,
/// `name.ns`, `name.ns.svc`, `name.ns.svc.cluster.local` and its IPv4
/// ClusterIP (a port in the Host header is ignored when matching). Only
/// routes of the Service's own namespace (producer routes) are served: a
/// consumer route would need to know each client's namespace.
pub fn attach(parent: &ParentKey, route_ns: &str, services: &[Arc<Service>]) -> Attachment {
    if parent.namespace != route_ns {
        return Err(Condition::new(
            "Accepted",
            false,
            "UnsupportedValue",
            "a Service parent in another namespace (a consumer route) is not served; cutover serves producer routes",
        ));
    }
    let (ns, name) = (parent.namespace.as_str(), parent.name.as_str());
    let service = services.iter().find(|s| {
        s.metadata.namespace.as_deref() == Some(ns) && s.metadata.name.as_deref() == Some(name)
    });
    let Some(service) = service else {
        return Err(Condition::new(
            "Accepted",
            false,
            "NoMatchingParent",
            format!("Service {ns}/{name} does not exist"),
        ));
    };
    if let Some(port) = parent.port {
        let ports = service.spec.as_ref().and_then(|s| s.ports.as_ref());
        if !ports
            .into_iter()
            .flatten()
            .any(|p| p.port == i32::from(port))
        {
            return Err(Condition::new(
                "Accepted",
                false,
                "NoMatchingParent",
                format!("Service {ns}/{name} has no port {port}"),
            ));
        }
    }
    let mut hosts = vec![
        name.to_string(),
        format!("{name}.{ns}"),
        format!("{name}.{ns}.svc"),
        format!("{name}.{ns}.svc.cluster.local"),
    ];
    let ips = service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref());
    if let Some(ip) = ips.filter(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok()) {
        hosts.push(ip.to_string());
    }
    Ok(Target::Mesh(hosts))
}
