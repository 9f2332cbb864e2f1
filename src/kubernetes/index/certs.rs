//! HTTPS Gateway listeners' `certificateRefs`: each names a core Secret (in
//! another namespace only with a ReferenceGrant from Gateways of the
//! listener's namespace); the Secret's certificate, as the controller read
//! it, is served on that listener, or the listener says why not.

use std::collections::BTreeSet;
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use super::backends::grant_allows;
use super::{Condition, ObjectKey, Objects};
use crate::kubernetes::resources::{Listener, ReferenceGrant};

/// The certificate a listener's `certificateRefs` give: `Ok(None)` when it
/// names none (the cutover listener's own certificates serve), else the
/// first Secret's; `Err` is the `ResolvedRefs` condition saying why not.
pub fn resolve(
    l: &Listener,
    gateway_ns: &str,
    objects: &Objects,
) -> Result<Option<Arc<CertifiedKey>>, Condition> {
    let refs = l.tls.iter().flat_map(|t| &t.certificate_refs);
    let mut first = None;
    for (i, r) in refs.enumerate() {
        let key = permitted(r, gateway_ns, &objects.grants).map_err(|(reason, why)| {
            Condition::new(
                "ResolvedRefs",
                false,
                reason,
                format!("tls.certificateRefs[{i}]: {why}"),
            )
        })?;
        let cert = match objects.secrets.get(&key) {
            Some(Ok(cert)) => cert,
            Some(Err(why)) => return Err(invalid(i, why.clone())),
            None => return Err(invalid(i, format!("Secret {key} does not exist"))),
        };
        first.get_or_insert_with(|| Arc::clone(cert));
    }
    Ok(first)
}

fn invalid(i: usize, why: String) -> Condition {
    Condition::new(
        "ResolvedRefs",
        false,
        "InvalidCertificateRef",
        format!("tls.certificateRefs[{i}]: {why}"),
    )
}

/// The Secret a reference names, if it is a core Secret the Gateway may
/// read; else the `ResolvedRefs` reason and why.
fn permitted(
    r: &crate::kubernetes::resources::SecretObjectReference,
    gateway_ns: &str,
    grants: &[Arc<ReferenceGrant>],
) -> Result<ObjectKey, (&'static str, String)> {
    let group = r.group.as_deref().unwrap_or("");
    let kind = r.kind.as_deref().unwrap_or("Secret");
    if !group.is_empty() || kind != "Secret" {
        return Err((
            "InvalidCertificateRef",
            format!("{group:?}/{kind} is not supported; cutover reads core Secrets"),
        ));
    }
    let ns = r.namespace.as_deref().unwrap_or(gateway_ns);
    if ns != gateway_ns && !granted(grants, gateway_ns, ns, &r.name) {
        return Err((
            "RefNotPermitted",
            format!(
                "no ReferenceGrant in namespace {ns} lets Gateways of {gateway_ns} reference Secret {}",
                r.name
            ),
        ));
    }
    Ok(ObjectKey {
        namespace: ns.to_string(),
        name: r.name.clone(),
    })
}

/// Whether a ReferenceGrant in `secret_ns` lets Gateways of `gateway_ns`
/// reference Secret `name`.
fn granted(grants: &[Arc<ReferenceGrant>], gateway_ns: &str, secret_ns: &str, name: &str) -> bool {
    grants
        .iter()
        .filter(|g| g.metadata.namespace.as_deref() == Some(secret_ns))
        .any(|g| grant_allows(g, "Gateway", gateway_ns, "Secret", name))
}

/// Every Secret that an HTTPS listener of cutover's Gateways may read: the
/// controller fetches these (and keeps no other Secret's data).
pub fn referenced(objects: &Objects, controller_name: &str) -> BTreeSet<ObjectKey> {
    let ours: BTreeSet<&str> = objects
        .classes
        .iter()
        .filter(|c| c.spec.controller_name == controller_name)
        .filter_map(|c| c.metadata.name.as_deref())
        .collect();
    let mut out = BTreeSet::new();
    for g in &objects.gateways {
        if !ours.contains(g.spec.gateway_class_name.as_str()) {
            continue;
        }
        let ns = g.metadata.namespace.as_deref().unwrap_or("");
        for l in &g.spec.listeners {
            for r in l.tls.iter().flat_map(|t| &t.certificate_refs) {
                if let Ok(key) = permitted(r, ns, &objects.grants) {
                    out.insert(key);
                }
            }
        }
    }
    out
}
