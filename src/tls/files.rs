//! PEM files: certificate chains, private keys and CA bundles. Each error is
//! `<file>: <reason>`, to be placed under the config field that named it.

use rustls::RootCertStore;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Largest PEM file read; certificate bundles are kilobytes.
const MAX_PEM_BYTES: u64 = 4 * 1024 * 1024;

/// Reads a file whole, refusing oversized ones.
pub fn read(path: &str) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{path}: cannot read: {e}"))?;
    if meta.len() > MAX_PEM_BYTES {
        return Err(format!(
            "{path}: is {} bytes; the limit is {MAX_PEM_BYTES}",
            meta.len()
        ));
    }
    std::fs::read(path).map_err(|e| format!("{path}: cannot read: {e}"))
}

/// A certificate chain, leaf first.
pub fn certs(path: &str, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{path}: invalid PEM: {}", reason(&e)))?;
    if chain.is_empty() {
        return Err(format!("{path}: no certificate found in PEM"));
    }
    Ok(chain)
}

/// The first private key of the file (PKCS#8, PKCS#1 or SEC1).
pub fn key(path: &str, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => format!("{path}: no private key found in PEM"),
        e => format!("{path}: invalid PEM: {}", reason(&e)),
    })
}

/// A CA bundle as a root store; every certificate in it must parse.
pub fn roots(path: &str, bytes: &[u8]) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    for cert in certs(path, bytes)? {
        store
            .add(cert)
            .map_err(|e| format!("{path}: not a usable CA certificate: {e}"))?;
    }
    Ok(store)
}

fn reason(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line".to_string(),
        pem::Error::IllegalSectionStart { .. } => "malformed BEGIN line".to_string(),
        other => other.to_string(),
    }
}
