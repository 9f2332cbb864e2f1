//! A group's upstream `rustls::ClientConfig`: trusted CAs (a bundle or the
//! system store), the SNI/verification name, an optional client certificate,
//! and ALPN matching the group's protocol.

use std::sync::{Arc, OnceLock};

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;

use super::{files, key_pair, provider};
use crate::config::model::{GroupTlsConfig, UpstreamProtocol};
use crate::config::ConfigErrors;

/// What the connector needs to dial one group's endpoints over TLS.
#[derive(Debug)]
pub struct UpstreamTls {
    /// Roots, client certificate, ALPN.
    pub config: Arc<ClientConfig>,
    /// `server_name` from the config; `None` = each endpoint's host.
    pub server_name: Option<ServerName<'static>>,
    /// Hash of the settings and of the files' content: equal fingerprints
    /// share a connection pool, a rotated certificate gets a new one.
    pub fingerprint: u64,
}

/// Builds the group's TLS settings; `None` (with `errors` filled) if a file
/// or setting is wrong. `path` is the field path of the `tls` block.
pub fn build(
    cfg: &GroupTlsConfig,
    protocol: UpstreamProtocol,
    path: &str,
    errors: &mut ConfigErrors,
) -> Option<Arc<UpstreamTls>> {
    let before = errors.0.len();
    let mut seen: Vec<u8> = format!("{protocol:?}|{:?}|", cfg.server_name).into_bytes();
    let roots = match &cfg.ca {
        Some(ca) => {
            let bytes = files::read(ca);
            if let Ok(b) = &bytes {
                seen.extend_from_slice(b);
            }
            bytes
                .and_then(|b| files::roots(ca, &b))
                .map(Arc::new)
                .map_err(|e| errors.push(format!("{path}.ca"), e))
                .ok()
        }
        None => system_roots()
            .map_err(|e| errors.push(format!("{path}.ca"), e))
            .ok(),
    };
    let server_name = cfg.server_name.as_ref().and_then(|n| {
        ServerName::try_from(n.clone())
            .map_err(|_| {
                errors.push(
                    format!("{path}.server_name"),
                    format!("{n:?} is not a DNS name or IP address"),
                )
            })
            .ok()
    });
    let pair = match (&cfg.cert, &cfg.key) {
        (Some(cert), Some(key)) => key_pair(cert, key, path, errors),
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            errors.push(
                path,
                "cert and key come together (client certificate): give both or neither",
            );
            None
        }
    };
    let roots = roots?;
    if errors.0.len() > before {
        return None;
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| errors.push(path, e.to_string()))
        .ok()?
        .with_root_certificates(roots);
    let mut config = match pair {
        Some(p) => {
            seen.extend_from_slice(&p.bytes);
            builder
                .with_client_auth_cert(p.chain, p.key)
                .map_err(|e| errors.push(format!("{path}.key"), e.to_string()))
                .ok()?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = match protocol {
        UpstreamProtocol::H2 => vec![b"h2".to_vec()],
        UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
    };
    Some(Arc::new(UpstreamTls {
        config: Arc::new(config),
        server_name,
        fingerprint: crate::hash::hash_key(&seen),
    }))
}

/// The operating system's trust store (e.g. Debian's `ca-certificates`), read
/// once: operators manage it (corporate CAs, distribution updates) without a
/// new cutover build, unlike a root list compiled into the binary.
fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let loaded = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            store.add_parsable_certificates(loaded.certs);
            if store.is_empty() {
                let why = loaded.errors.first().map(|e| format!(" ({e})")).unwrap_or_default();
                return Err(format!(
                    "no system root certificates found{why}: set `ca`, or install the system CA bundle"
                ));
            }
            Ok(Arc::new(store))
        })
        .clone()
}
