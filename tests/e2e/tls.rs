//! TLS end to end: certificates made at test time (rcgen), real rustls
//! clients and upstreams, the proxy in the middle.

mod check;
mod curl;
mod listener;
mod reload;
mod upstream;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::support::{proxy, tool_or_skip, until, upstream, Proxy, TempDir};

// === certificates ===

/// A private CA that issues server and client certificates.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate with its key, as PEM and DER.
#[derive(Clone)]
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn leaf(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn server(&self, names: &[&str]) -> Leaf {
        self.leaf(names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    fn client(&self, name: &str) -> Leaf {
        self.leaf(&[name], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        roots
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Certificate files in a scratch directory, with their paths as the
/// strings a config names them by.
trait PemFiles {
    /// Writes `name` atomically; returns its path.
    fn file(&self, name: &str, text: &str) -> String;

    /// Writes a leaf's cert and key as `<name>.crt` / `<name>.key`.
    fn pair(&self, name: &str, leaf: &Leaf) -> (String, String) {
        (
            self.file(&format!("{name}.crt"), &leaf.cert_pem),
            self.file(&format!("{name}.key"), &leaf.key_pem),
        )
    }
}

impl PemFiles for TempDir {
    fn file(&self, name: &str, text: &str) -> String {
        self.write(name, text).display().to_string()
    }
}

// === clients ===

/// Accepts any server certificate: for tests that look at which certificate
/// was served for names it does not cover.
#[derive(Debug)]
struct AnyServerCert;

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client config trusting `roots` (or anything, with `None`), offering
/// `alpn`, presenting `client` if given.
fn client_config(
    roots: Option<RootCertStore>,
    alpn: &[&str],
    client: Option<&Leaf>,
) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match roots {
        Some(r) => builder.with_root_certificates(r),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert)),
    };
    let mut config = match client {
        Some(c) => {
            let chain = vec![c.der.clone()];
            let key = PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Arc::new(config)
}

use rustls::pki_types::pem::PemObject;

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// One client connection over TLS.
struct Conn {
    sender: Sender,
    /// The leaf certificate the server presented.
    peer: CertificateDer<'static>,
    alpn: Option<Vec<u8>>,
    host: String,
}

/// Connects, handshakes with SNI `sni` (none if `None`; the name is still
/// used for verification), and sets up HTTP per the negotiated ALPN.
async fn connect(
    addr: SocketAddr,
    sni: Option<&str>,
    config: Arc<ClientConfig>,
) -> std::io::Result<Conn> {
    let mut config = config;
    let name = match sni {
        Some(n) => n.to_string(),
        None => {
            let mut c = (*config).clone();
            c.enable_sni = false;
            config = Arc::new(c);
            "localhost".to_string()
        }
    };
    let tcp = TcpStream::connect(addr).await?;
    let server_name = ServerName::try_from(name.clone()).map_err(std::io::Error::other)?;
    let tls = TlsConnector::from(config).connect(server_name, tcp).await?;
    let (_, session) = tls.get_ref();
    let peer = session.peer_certificates().unwrap()[0].clone().into_owned();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    let io = TokioIo::new(tls);
    let sender = if alpn.as_deref() == Some(b"h2") {
        let (s, c) = http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(c);
        Sender::H2(s)
    } else {
        let (s, c) = http1::handshake(io).await.map_err(std::io::Error::other)?;
        tokio::spawn(c);
        Sender::H1(s)
    };
    Ok(Conn {
        sender,
        peer,
        alpn,
        host: name,
    })
}

/// A response with its body read.
struct Got {
    status: StatusCode,
    version: Version,
    body: String,
}

impl Conn {
    async fn get(&mut self, path: &str) -> Result<Got, Box<dyn std::error::Error + Send + Sync>> {
        let resp = match &mut self.sender {
            Sender::H1(s) => {
                let req = Request::get(path)
                    .header("host", &self.host)
                    .body(Full::new(Bytes::new()))?;
                s.ready().await?;
                s.send_request(req).await?
            }
            Sender::H2(s) => {
                let req = Request::get(format!("https://{}{path}", self.host))
                    .version(Version::HTTP_2)
                    .body(Full::new(Bytes::new()))?;
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Got {
            status: parts.status,
            version: parts.version,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// One request on a new connection.
async fn get_once(
    addr: SocketAddr,
    sni: Option<&str>,
    config: Arc<ClientConfig>,
) -> Result<(Got, CertificateDer<'static>), Box<dyn std::error::Error + Send + Sync>> {
    let mut conn = connect(addr, sni, config).await?;
    let got = conn.get("/").await?;
    Ok((got, conn.peer))
}

// === upstreams ===

/// What a TLS upstream saw of one request.
#[derive(Debug, Clone)]
struct SeenTls {
    version: Version,
    sni: Option<String>,
    alpn: Option<Vec<u8>>,
    forwarded_proto: Option<String>,
}

struct TlsUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<SeenTls>>>,
}

/// A hyper server behind rustls answering `name`; with `client_ca`, it
/// requires a client certificate from that CA.
async fn tls_upstream(name: &'static str, leaf: &Leaf, client_ca: Option<&Ca>) -> TlsUpstream {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(
            rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(ca.roots()),
                provider(),
            )
            .build()
            .unwrap(),
        ),
        None => builder.with_no_client_auth(),
    };
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let mut config = builder
        .with_single_cert(vec![leaf.der.clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, record) = (acceptor.clone(), Arc::clone(&record));
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let session = tls.get_ref().1;
                let sni = session.server_name().map(str::to_string);
                let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
                let service = service_fn(move |req: Request<Incoming>| {
                    record.lock().unwrap().push(SeenTls {
                        version: req.version(),
                        sni: sni.clone(),
                        alpn: alpn.clone(),
                        forwarded_proto: req
                            .headers()
                            .get("x-forwarded-proto")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string),
                    });
                    async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(name)))) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    TlsUpstream { addr, seen }
}

// === configs ===

/// A one-listener config: `listener_tls` is the YAML under `tls:` (indented
/// 6), `group` the YAML of group `app` (indented 4).
fn yaml(listener_tls: &str, group: &str) -> String {
    let mut y = String::from("listeners:\n  - name: public\n    address: \"127.0.0.1:0\"\n");
    if !listener_tls.is_empty() {
        y.push_str("    tls:\n");
        y.push_str(listener_tls);
    }
    y.push_str("groups:\n  app:\n");
    y.push_str(group);
    y.push_str(
        "routes:\n  - name: web\n    rules:\n      - name: all\n        backends: [{group: app}]\n",
    );
    y
}

fn plain_group(addr: SocketAddr) -> String {
    format!("    endpoints: [\"{addr}\"]\n")
}

fn certificate(cert: &str, key: &str, hostnames: &str) -> String {
    let mut s = format!("        - cert: \"{cert}\"\n          key: \"{key}\"\n");
    if !hostnames.is_empty() {
        s.push_str(&format!("          hostnames: {hostnames}\n"));
    }
    s
}

/// A TLS listener with one default certificate for `localhost`.
async fn https_proxy(ca: &Ca, dir: &TempDir, extra: &str) -> (Proxy, crate::support::Upstream) {
    let up = upstream("app").await;
    let (cert, key) = dir.pair("server", &ca.server(&["localhost"]));
    let tls = format!(
        "      certificates:\n{}{extra}",
        certificate(&cert, &key, "")
    );
    (proxy(&yaml(&tls, &plain_group(up.addr))).await, up)
}
