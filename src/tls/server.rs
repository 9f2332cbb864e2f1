//! A listener's `rustls::ServerConfig`: certificates chosen by SNI (exact
//! name, then `*.` wildcard, then the default), TLS 1.2/1.3, ALPN, and
//! optional client-certificate verification. [`Supplied`] layers
//! certificates that do not come from files (controller mode: Gateway
//! Secrets) over a listener's, swapped without a new table.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};

use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SupportedProtocolVersion};

use super::{files, key_pair, provider};
use crate::config::model::{ListenerTlsConfig, TlsVersion};
use crate::config::ConfigErrors;

/// Builds the listener's config; `None` (with `errors` filled) if any file or
/// setting is wrong. `path` is the field path of the `tls` block.
pub fn build(
    cfg: &ListenerTlsConfig,
    path: &str,
    errors: &mut ConfigErrors,
) -> Option<Arc<ServerConfig>> {
    let before = errors.0.len();
    let resolver = resolver(cfg, path, errors);
    let alpn = alpn(&cfg.alpn, path, errors);
    let versions: &[&SupportedProtocolVersion] = match cfg.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let builder =
        match ServerConfig::builder_with_provider(provider()).with_protocol_versions(versions) {
            Ok(b) => b,
            Err(e) => {
                errors.push(format!("{path}.min_version"), e.to_string());
                return None;
            }
        };
    let builder = match &cfg.client_auth {
        None => builder.with_no_client_auth(),
        Some(auth) => {
            let at = format!("{path}.client_auth.ca");
            let roots = files::read(&auth.ca).and_then(|b| files::roots(&auth.ca, &b));
            let roots = roots.map_err(|e| errors.push(&at, e)).ok()?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if auth.required {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            match verifier.build() {
                Ok(v) => builder.with_client_cert_verifier(v),
                Err(e) => {
                    errors.push(at, format!("{}: {e}", auth.ca));
                    return None;
                }
            }
        }
    };
    let resolver = resolver?;
    if errors.0.len() > before {
        return None;
    }
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = alpn;
    Some(Arc::new(config))
}

/// Certificates by SNI name.
#[derive(Debug, Default)]
pub struct SniResolver {
    exact: HashMap<Box<str>, Arc<CertifiedKey>>,
    /// `*.example.com` is stored as `example.com`: a wildcard covers exactly
    /// one label, as in certificate matching.
    wildcard: HashMap<Box<str>, Arc<CertifiedKey>>,
    /// For clients without SNI or with an unknown name; always set for a
    /// file listener, optional for supplied certificates.
    default: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    /// Certificates for names: `Some("shop.example.com")` or
    /// `Some("*.example.com")` serve those names, `None` every other name
    /// (the first such entry wins). A name that is not a host name is
    /// skipped (the caller has validated its names), as is a second
    /// certificate for the same name.
    pub fn from_entries(entries: Vec<(Option<String>, Arc<CertifiedKey>)>) -> Self {
        let mut out = SniResolver::default();
        for (name, key) in entries {
            let Some(name) = name else {
                out.default.get_or_insert(key);
                continue;
            };
            let lower = name.to_ascii_lowercase();
            let (map, name) = match lower.strip_prefix("*.") {
                Some(rest) => (&mut out.wildcard, rest),
                None => (&mut out.exact, lower.as_str()),
            };
            if is_dns_name(name) {
                map.entry(Box::from(name)).or_insert(key);
            }
        }
        out
    }

    /// Whether it holds no certificate at all.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty() && self.default.is_none()
    }

    fn pick(&self, name: Option<&str>) -> Option<&Arc<CertifiedKey>> {
        let Some(name) = name else {
            return self.default.as_ref();
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(k) = self.exact.get(name.as_str()) {
            return Some(k);
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .or(self.default.as_ref())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name()).map(Arc::clone)
    }
}

/// Certificates supplied at run time rather than read from the config's
/// files (controller mode: the Secrets of HTTPS Gateway listeners), per
/// cutover listener. They are consulted first at each handshake, the
/// listener's own certificates (its `tls` block) after them; replacing them
/// takes effect for the next handshake, without a new table, and
/// connections already open keep the certificate they were accepted with.
#[derive(Debug, Default)]
pub struct Supplied {
    listeners: ArcSwap<HashMap<Box<str>, Arc<SuppliedListener>>>,
}

/// One listener's supplied certificates, and its file config with them
/// layered on (rebuilt when the table brings a new file config).
#[derive(Debug, Default)]
struct SuppliedListener {
    certs: Arc<ArcSwap<SniResolver>>,
    /// (the table's config, the same with the supplied certificates first).
    layered: ArcSwapOption<(Arc<ServerConfig>, Arc<ServerConfig>)>,
}

impl Supplied {
    /// Replaces the certificates of every listener: those absent from
    /// `certs` serve their own again.
    pub fn set(&self, certs: HashMap<String, SniResolver>) {
        let current = self.listeners.load();
        let mut next: HashMap<Box<str>, Arc<SuppliedListener>> = HashMap::new();
        for (name, resolver) in certs {
            let entry = current.get(name.as_str()).cloned().unwrap_or_default();
            entry.certs.store(Arc::new(resolver));
            next.insert(Box::from(name), entry);
        }
        for (name, entry) in current.iter() {
            if !next.contains_key(name) {
                // Kept (empty) so that configs already layered fall back.
                entry.certs.store(Arc::new(SniResolver::default()));
            }
        }
        self.listeners.store(Arc::new(next));
    }

    /// The config a new connection of `listener` is served with: `base`
    /// (the table's) unless certificates are supplied for it.
    pub fn config_for(&self, listener: &str, base: Arc<ServerConfig>) -> Arc<ServerConfig> {
        let listeners = self.listeners.load();
        let Some(l) = listeners.get(listener) else {
            return base;
        };
        if let Some(done) = &*l.layered.load() {
            if Arc::ptr_eq(&done.0, &base) {
                return Arc::clone(&done.1);
            }
        }
        let mut layered = (*base).clone();
        layered.cert_resolver = Arc::new(Layered {
            supplied: Arc::clone(&l.certs),
            own: Arc::clone(&base.cert_resolver),
        });
        let layered = Arc::new(layered);
        l.layered
            .store(Some(Arc::new((base, Arc::clone(&layered)))));
        layered
    }
}

/// Supplied certificates first, then the listener's own.
#[derive(Debug)]
struct Layered {
    supplied: Arc<ArcSwap<SniResolver>>,
    own: Arc<dyn ResolvesServerCert>,
}

impl ResolvesServerCert for Layered {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let supplied = self.supplied.load();
        if let Some(k) = supplied.pick(hello.server_name()) {
            return Some(Arc::clone(k));
        }
        self.own.resolve(hello)
    }
}

fn resolver(cfg: &ListenerTlsConfig, path: &str, errors: &mut ConfigErrors) -> Option<SniResolver> {
    if cfg.certificates.is_empty() {
        errors.push(
            format!("{path}.certificates"),
            "needs at least one certificate",
        );
        return None;
    }
    let mut exact = HashMap::new();
    let mut wildcard = HashMap::new();
    let mut default: Option<(usize, Arc<CertifiedKey>)> = None;
    let mut first = None;
    for (i, c) in cfg.certificates.iter().enumerate() {
        let at = format!("{path}.certificates[{i}]");
        let pair = key_pair(&c.cert, &c.key, &at, errors);
        let key = pair.map(|p| p.certified);
        if c.hostnames.is_empty() {
            if let Some((d, _)) = &default {
                errors.push(
                    format!("{at}.hostnames"),
                    format!(
                        "only one certificate may omit hostnames (the default); certificates[{d}] already does"
                    ),
                );
            }
            if let Some(k) = &key {
                default = Some((i, Arc::clone(k)));
            }
        }
        for (j, h) in c.hostnames.iter().enumerate() {
            let lower = h.to_ascii_lowercase();
            let (map, name) = match lower.strip_prefix("*.") {
                Some(rest) => (&mut wildcard, rest),
                None => (&mut exact, lower.as_str()),
            };
            if !is_dns_name(name) {
                errors.push(
                    format!("{at}.hostnames[{j}]"),
                    format!("{h:?} is not a host name (a leading \"*.\" is the only wildcard)"),
                );
                continue;
            }
            let Some(k) = &key else { continue };
            if map.insert(Box::<str>::from(name), Arc::clone(k)).is_some() {
                errors.push(
                    format!("{at}.hostnames[{j}]"),
                    format!("{h:?} is listed by two certificates"),
                );
            }
        }
        if first.is_none() {
            first = key;
        }
    }
    let default = default.map(|(_, k)| k).or(first)?;
    Some(SniResolver {
        exact,
        wildcard,
        default: Some(default),
    })
}

fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn alpn(names: &[String], path: &str, errors: &mut ConfigErrors) -> Vec<Vec<u8>> {
    if names.is_empty() {
        errors.push(format!("{path}.alpn"), "needs at least one of h2, http/1.1");
    }
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(names.len());
    for (i, n) in names.iter().enumerate() {
        if n != "h2" && n != "http/1.1" {
            errors.push(
                format!("{path}.alpn[{i}]"),
                format!("{n:?} is not h2 or http/1.1"),
            );
        } else if out.iter().any(|o| o == n.as_bytes()) {
            errors.push(
                format!("{path}.alpn[{i}]"),
                format!("{n:?} is listed twice"),
            );
        } else {
            out.push(n.as_bytes().to_vec());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_accepts_only_the_two_http_protocols() {
        let mut errors = ConfigErrors::default();
        let got = alpn(&["http/1.1".into(), "h2".into()], "tls", &mut errors);
        assert!(errors.is_empty());
        assert_eq!(got, vec![b"http/1.1".to_vec(), b"h2".to_vec()]);
        alpn(&["h3".into(), "h2".into(), "h2".into()], "tls", &mut errors);
        assert_eq!(errors.0.len(), 2, "{errors}");
        assert_eq!(errors.0[0].path, "tls.alpn[0]");
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_name("shop.example.com"));
        assert!(!is_dns_name("shop..example.com"));
        assert!(!is_dns_name("shop.example.com:443"));
        assert!(!is_dns_name(""));
    }
}
