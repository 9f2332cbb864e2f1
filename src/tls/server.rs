//! A listener's `rustls::ServerConfig`: certificates chosen by SNI (exact
//! name, then `*.` wildcard, then the default), TLS 1.2/1.3, ALPN, and
//! optional client-certificate verification.

use std::collections::HashMap;
use std::sync::Arc;

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
#[derive(Debug)]
struct SniResolver {
    exact: HashMap<Box<str>, Arc<CertifiedKey>>,
    /// `*.example.com` is stored as `example.com`: a wildcard covers exactly
    /// one label, as in certificate matching.
    wildcard: HashMap<Box<str>, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    fn pick(&self, name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = name else {
            return &self.default;
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(k) = self.exact.get(name.as_str()) {
            return k;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(self.pick(hello.server_name())))
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
        default,
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
