//! The TLS Secrets of HTTPS Gateway listeners. Every Secret's metadata is
//! watched (names and resourceVersions only, no data); a Secret's data is
//! read (`get`) only while one of cutover's Gateways references it, and
//! again when its resourceVersion moves (a rotation), so no other Secret's
//! content is ever held in memory. Their certificates are handed to the
//! listeners ([`serve`]) only when they change.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};

use super::index::{Certificates, ObjectKey, SecretCertificate};
use crate::tls::server::{SniResolver, Supplied};

/// The Secret type that holds `tls.crt` and `tls.key`.
const TLS_TYPE: &str = "kubernetes.io/tls";

/// The referenced Secrets as last read, by resourceVersion.
pub struct Secrets {
    client: kube::Client,
    meta: Store<PartialObjectMeta<Secret>>,
    read: BTreeMap<ObjectKey, (String, SecretCertificate)>,
}

impl Secrets {
    /// Reads through `client`; `meta` is the metadata watch's store.
    pub fn new(client: kube::Client, meta: Store<PartialObjectMeta<Secret>>) -> Self {
        Secrets {
            client,
            meta,
            read: BTreeMap::new(),
        }
    }

    /// The certificates of `wanted`, read again where the Secret changed;
    /// a Secret that does not exist is absent. A failed read keeps the last
    /// one (or says why), and is tried again at the next change.
    pub async fn certificates(
        &mut self,
        wanted: &BTreeSet<ObjectKey>,
    ) -> BTreeMap<ObjectKey, SecretCertificate> {
        self.read.retain(|k, _| wanted.contains(k));
        let mut out = BTreeMap::new();
        for key in wanted {
            let at = ObjectRef::new(&key.name).within(&key.namespace);
            let Some(version) = self.meta.get(&at).map(|m| version_of(&m.metadata)) else {
                self.read.remove(key);
                continue;
            };
            if let Some((v, cert)) = self.read.get(key) {
                if *v == version {
                    out.insert(key.clone(), cert.clone());
                    continue;
                }
            }
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &key.namespace);
            match api.get_opt(&key.name).await {
                Ok(Some(secret)) => {
                    let cert = certificate(&secret, key);
                    if let Err(why) = &cert {
                        tracing::warn!(secret = %key, "TLS Secret unusable: {why}");
                    }
                    let version = version_of(&secret.metadata);
                    self.read.insert(key.clone(), (version, cert.clone()));
                    out.insert(key.clone(), cert);
                }
                Ok(None) => {
                    self.read.remove(key);
                }
                Err(e) => {
                    tracing::warn!(secret = %key, error = %e, "cannot read TLS Secret");
                    let last = self.read.get(key).map(|(_, c)| c.clone());
                    let cert =
                        last.unwrap_or_else(|| Err(format!("cannot read Secret {key}: {e}")));
                    out.insert(key.clone(), cert);
                }
            }
        }
        out
    }
}

fn version_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.resource_version.clone().unwrap_or_default()
}

/// The certificate of a `kubernetes.io/tls` Secret, or why not.
fn certificate(secret: &Secret, key: &ObjectKey) -> SecretCertificate {
    let what = format!("Secret {key}");
    let kind = secret.type_.as_deref().unwrap_or("Opaque");
    if kind != TLS_TYPE {
        return Err(format!("{what} is of type {kind}, not {TLS_TYPE}"));
    }
    let field = |name: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(name))
            .map(|b| b.0.as_slice())
            .ok_or_else(|| format!("{what} has no {name}"))
    };
    crate::tls::certified_from_pem(field("tls.crt")?, field("tls.key")?, &what)
}

/// Hands `now` to the listeners when it differs from `last` (what was
/// handed over before): the next handshake uses them.
pub fn serve(supplied: &Supplied, last: &mut Option<Certificates>, now: &Certificates) {
    if last.as_ref().is_some_and(|l| same(l, now)) {
        return;
    }
    let resolvers: HashMap<String, SniResolver> = now
        .iter()
        .map(|(listener, certs)| (listener.clone(), SniResolver::from_entries(certs.clone())))
        .collect();
    tracing::info!(
        listeners = resolvers.len(),
        "kubernetes: Gateway certificates served"
    );
    supplied.set(resolvers);
    *last = Some(now.clone());
}

/// Whether two certificate sets hold the same certificates (by identity:
/// a Secret read again is a new one).
fn same(a: &Certificates, b: &Certificates) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((la, ca), (lb, cb))| {
            la == lb
                && ca.len() == cb.len()
                && ca
                    .iter()
                    .zip(cb)
                    .all(|((ha, ka), (hb, kb))| ha == hb && Arc::ptr_eq(ka, kb))
        })
}
