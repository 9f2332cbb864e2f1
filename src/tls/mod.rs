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
    let signing = match provider().key_provider.load_private_key(der.clone_key()) {
        Ok(s) => s,
        Err(e) => {
            errors.push(
                format!("{at}.key"),
                format!("{key}: unusable private key: {e}"),
            );
            return None;
        }
    };
    let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing);
    match certified.keys_match() {
        // `Unknown`: the key type cannot tell its public key; rustls would
        // then fail the handshake signature, which the client reports.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            errors.push(
                format!("{at}.key"),
                format!("{key}: key does not match the certificate in {cert}"),
            );
            return None;
        }
    }
    let mut bytes = cert_bytes;
    bytes.extend_from_slice(&key_bytes);
    Some(KeyPair {
        chain,
        key: der,
        certified: Arc::new(certified),
        bytes,
    })
}
