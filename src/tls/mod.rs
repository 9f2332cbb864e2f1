//! TLS on both sides of the proxy, with rustls and the `ring` provider:
//! [`server`] builds a listener's `ServerConfig` (certificates by SNI, ALPN,
//! mTLS), [`client`] a group's upstream `ClientConfig`, [`files`] reads the
//! PEM files with errors that name the file and the reason.
//!
//! Every file is read at each compile, so certificates follow the routing
//! table: a reload (file, API, SIGHUP, or a change in a watched certificate
//! directory) re-reads them, a bad file rejects the whole table, and the
//! previous configs keep serving. A connection keeps the config it was
//! accepted (or dialled) with.

pub mod client;
pub mod files;
pub mod server;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The one crypto provider: `ring` builds with a C compiler only (aws-lc
/// needs cmake), and a fixed provider keeps both sides' cipher suites alike.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())))
}

/// A certificate chain with its matching private key, as read from two PEM
/// files.
pub(crate) struct KeyPair {
    /// The chain, leaf first.
    pub chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    /// The private key.
    pub key: rustls_pki_types::PrivateKeyDer<'static>,
    /// Both, ready for a server's resolver.
    pub certified: Arc<rustls::sign::CertifiedKey>,
    /// The files' bytes, for content fingerprints.
    pub bytes: Vec<u8>,
}

/// Reads `cert` and `key` and checks that the key belongs to the leaf
/// certificate. Problems go to `errors` under `<at>.cert` / `<at>.key`.
pub(crate) fn key_pair(
    cert: &str,
    key: &str,
    at: &str,
    errors: &mut crate::config::ConfigErrors,
) -> Option<KeyPair> {
    let cert_bytes = files::read(cert);
    let chain = cert_bytes
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|b| files::certs(cert, b))
        .map_err(|e| errors.push(format!("{at}.cert"), e))
        .ok();
    let key_bytes = files::read(key);
    let der = key_bytes
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|b| files::key(key, b))
        .map_err(|e| errors.push(format!("{at}.key"), e))
        .ok();
    let (chain, der, cert_bytes, key_bytes) = (chain?, der?, cert_bytes.ok()?, key_bytes.ok()?);
    let certified = match certify(chain.clone(), der.clone_key(), key, cert) {
        Ok(c) => c,
        Err(e) => {
            errors.push(format!("{at}.key"), e);
            return None;
        }
    };
    let mut bytes = cert_bytes;
    bytes.extend_from_slice(&key_bytes);
    Some(KeyPair {
        chain,
        key: der,
        certified: Arc::new(certified),
        bytes,
    })
}

/// A certificate chain and key given as PEM bytes (a Kubernetes TLS
/// Secret's `tls.crt` and `tls.key`), checked as files are: `what` names
/// them in the error (e.g. `Secret shop/web-tls`).
pub fn certified_from_pem(
    cert: &[u8],
    key: &[u8],
    what: &str,
) -> Result<Arc<rustls::sign::CertifiedKey>, String> {
    let cert_name = format!("{what} tls.crt");
    let key_name = format!("{what} tls.key");
    let chain = files::certs(&cert_name, cert)?;
    let der = files::key(&key_name, key)?;
    certify(chain, der, &key_name, &cert_name).map(Arc::new)
}

/// The signing key for `der`, checked against the leaf of `chain`; errors
/// name `key` and `cert`.
fn certify(
    chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    der: rustls_pki_types::PrivateKeyDer<'static>,
    key: &str,
    cert: &str,
) -> Result<rustls::sign::CertifiedKey, String> {
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| format!("{key}: unusable private key: {e}"))?;
    let certified = rustls::sign::CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        // `Unknown`: the key type cannot tell its public key; rustls would
        // then fail the handshake signature, which the client reports.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(_) => Err(format!(
            "{key}: key does not match the certificate in {cert}"
        )),
    }
}
