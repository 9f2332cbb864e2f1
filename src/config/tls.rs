//! The `tls` blocks of listeners and groups as the user writes them. File
//! paths stay strings: they are read at every compile (so a reload re-reads
//! rotated certificates), relative to the process working directory.

use serde::{Deserialize, Serialize};

/// A listener's TLS: certificates by SNI name, versions, ALPN, client auth.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsConfig {
    /// At least one; the entry without `hostnames` (or the first) is the
    /// default for clients without SNI or with an unknown name.
    pub certificates: Vec<CertificateConfig>,
    /// Oldest TLS version accepted: `"1.2"` (default) or `"1.3"`.
    #[serde(default)]
    pub min_version: TlsVersion,
    /// ALPN protocols offered, in preference order; default `[h2, http/1.1]`.
    #[serde(default = "default_alpn")]
    pub alpn: Vec<String>,
    /// Client-certificate verification (mTLS); off unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuthConfig>,
}

fn default_alpn() -> Vec<String> {
    vec!["h2".to_string(), "http/1.1".to_string()]
}

/// One certificate chain and its key, served for some SNI names.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM file: the leaf certificate first, then intermediates.
    pub cert: String,
    /// PEM file: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// SNI names (`shop.example.com`, `*.example.com`); none = the default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    #[serde(rename = "1.2")]
    V1_2,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    V1_3,
}

/// Client-certificate verification against a CA bundle.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthConfig {
    /// PEM bundle of the CAs whose client certificates are accepted.
    pub ca: String,
    /// `true` (default): no valid certificate, no handshake. `false`: a
    /// presented certificate must be valid, but none is fine.
    #[serde(default = "default_true")]
    pub required: bool,
}

fn default_true() -> bool {
    true
}

/// An upstream group's TLS; its presence turns TLS on for the group.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupTlsConfig {
    /// PEM bundle of the CAs trusted for the upstream; absent = system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// SNI and verification name; default = the endpoint's host (IP
    /// addresses send no SNI and are verified against the IP SAN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Client certificate chain (PEM) for upstreams that require mTLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// Its private key (PEM); `cert` and `key` come together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}
