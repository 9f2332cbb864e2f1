//! TLS end to end: certificates made at test time (rcgen), real rustls
//! clients and upstreams, the proxy in the middle.

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

use crate::support::{proxy, tool_or_skip, upstream, Proxy, TempDir};

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

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// === listener ===

#[tokio::test]
async fn https_serves_http1_and_h2_by_alpn() {
    let ca = Ca::new("test-ca");
    let dir = TempDir::new("alpn");
    let (p, up) = https_proxy(&ca, &dir, "").await;
    for (alpn, want) in [
        (&["http/1.1"][..], Version::HTTP_11),
        (&["h2", "http/1.1"][..], Version::HTTP_2),
    ] {
        let mut conn = connect(
            p.addr,
            Some("localhost"),
            client_config(Some(ca.roots()), alpn, None),
        )
        .await
        .unwrap();
        assert_eq!(conn.alpn.as_deref(), Some(alpn[0].as_bytes()));
        for _ in 0..3 {
            let got = conn.get("/x").await.unwrap();
            assert_eq!((got.status, got.body.as_str()), (StatusCode::OK, "app"));
            assert_eq!(got.version, want);
        }
    }
    // A client without ALPN gets HTTP/1.1 (the connection is sniffed).
    let (got, _) = get_once(
        p.addr,
        Some("localhost"),
        client_config(Some(ca.roots()), &[], None),
    )
    .await
    .unwrap();
    assert_eq!(got.status, StatusCode::OK);
    let seen = up.requests();
    assert_eq!(seen.len(), 7);
    assert!(seen
        .iter()
        .all(|s| s.headers.get("x-forwarded-proto").unwrap() == "https"));
}

#[tokio::test]
async fn sni_picks_the_certificate_and_unknown_or_no_sni_gets_the_default() {
    let ca = Ca::new("test-ca");
    let dir = TempDir::new("sni");
    let up = upstream("app").await;
    let shop = ca.server(&["shop.test"]);
    let wild = ca.server(&["*.api.test"]);
    let fallback = ca.server(&["default.test"]);
    let (c1, k1) = dir.pair("shop", &shop);
    let (c2, k2) = dir.pair("wild", &wild);
    let (c3, k3) = dir.pair("default", &fallback);
    let tls = format!(
        "      certificates:\n{}{}{}",
        certificate(&c1, &k1, "[shop.test]"),
        certificate(&c3, &k3, ""),
        certificate(&c2, &k2, "[\"*.api.test\"]"),
    );
    let p = proxy(&yaml(&tls, &plain_group(up.addr))).await;
    let any = client_config(None, &["h2", "http/1.1"], None);
    for (sni, want) in [
        (Some("shop.test"), &shop),
        (Some("SHOP.test"), &shop),
        (Some("v1.api.test"), &wild),
        (Some("a.b.api.test"), &fallback), // a wildcard covers one label
        (Some("unknown.test"), &fallback),
        (None, &fallback),
    ] {
        let (got, peer) = get_once(p.addr, sni, Arc::clone(&any)).await.unwrap();
        assert_eq!(got.status, StatusCode::OK);
        assert!(peer == want.der, "SNI {sni:?} got the wrong certificate");
    }
    // And with real verification, each name verifies against its own cert.
    let verified = client_config(Some(ca.roots()), &["h2"], None);
    for sni in ["shop.test", "x.api.test"] {
        get_once(p.addr, Some(sni), Arc::clone(&verified))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn mtls_accepts_a_valid_client_certificate_and_rejects_others() {
    let ca = Ca::new("test-ca");
    let clients = Ca::new("client-ca");
    let other = Ca::new("other-ca");
    let dir = TempDir::new("mtls");
    let client_ca = dir.file("client-ca.pem", &clients.pem());
    let extra = format!("      client_auth:\n        ca: \"{client_ca}\"\n");
    let (p, up) = https_proxy(&ca, &dir, &extra).await;
    let good = clients.client("alice");
    for alpn in [&["h2"][..], &["http/1.1"][..]] {
        let (got, _) = get_once(
            p.addr,
            Some("localhost"),
            client_config(Some(ca.roots()), alpn, Some(&good)),
        )
        .await
        .unwrap();
        assert_eq!(got.status, StatusCode::OK);
    }
    let foreign = other.client("mallory");
    for (who, cert) in [("no certificate", None), ("another CA", Some(&foreign))] {
        // With TLS 1.3 the client may finish its side before the server's
        // alert arrives; either way no request gets through.
        let result = get_once(
            p.addr,
            Some("localhost"),
            client_config(Some(ca.roots()), &["http/1.1"], cert),
        )
        .await;
        assert!(result.is_err(), "{who}: got through");
    }
    assert_eq!(up.count(), 2);
    let scrape = p.app.metrics().encode(
        &p.app.routes.load(),
        0,
        cutover::metrics::Format::Prometheus,
    );
    for reason in ["no_client_certificate", "bad_client_certificate"] {
        assert!(
            scrape.contains(&format!(
                "cutover_tls_handshake_failures_total{{listener=\"public\",reason=\"{reason}\"}} 1"
            )),
            "{reason} not counted:\n{scrape}"
        );
    }
}

#[tokio::test]
async fn a_client_that_never_finishes_the_handshake_is_cut_off() {
    use tokio::io::AsyncReadExt;
    let ca = Ca::new("test-ca");
    let dir = TempDir::new("slow");
    let up = upstream("app").await;
    let (cert, key) = dir.pair("server", &ca.server(&["localhost"]));
    let tls = format!("      certificates:\n{}", certificate(&cert, &key, ""));
    let config = cutover::config::parse_yaml(&yaml(&tls, &plain_group(up.addr))).unwrap();
    let limits = cutover::serving::ConnLimits {
        header_read_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let app = cutover::app::App::bind_with(&config, limits).await.unwrap();
    let addr = app.local_addr("public").unwrap();
    tokio::spawn(app.serve(std::future::pending()));
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf))
        .await
        .expect("the proxy kept a silent connection open");
    assert!(matches!(n, Ok(0) | Err(_)));
    assert!(started.elapsed() < Duration::from_secs(2));
}

// === upstream ===

fn tls_group(addr: SocketAddr, protocol: &str, tls: &str) -> String {
    format!("    endpoints: [\"{addr}\"]\n    protocol: {protocol}\n    tls:\n{tls}")
}

#[tokio::test]
async fn upstream_tls_with_a_private_ca_over_http1_and_h2() {
    let ca = Ca::new("upstream-ca");
    let dir = TempDir::new("up");
    let ca_file = dir.file("ca.pem", &ca.pem());
    // Verified against the IP SAN, no SNI (an IP address is not a host name).
    let by_ip = tls_upstream("by-ip", &ca.server(&["127.0.0.1"]), None).await;
    // Verified against and sent `server_name`.
    let by_name = tls_upstream("by-name", &ca.server(&["app.internal"]), None).await;
    for (up, protocol, tls, version, alpn) in [
        (
            &by_ip,
            "http1",
            format!("      ca: \"{ca_file}\"\n"),
            Version::HTTP_11,
            &b"http/1.1"[..],
        ),
        (
            &by_name,
            "h2",
            format!("      ca: \"{ca_file}\"\n      server_name: app.internal\n"),
            Version::HTTP_2,
            &b"h2"[..],
        ),
    ] {
        let p = proxy(&yaml("", &tls_group(up.addr, protocol, &tls))).await;
        let c = crate::support::http1_client();
        for _ in 0..3 {
            let got = crate::support::get(&c, &p.url("/"), &[]).await;
            assert_eq!(got.status, 200, "{protocol}: {}", got.body);
        }
        let seen = up.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 3);
        for s in &seen {
            assert_eq!(s.version, version);
            assert_eq!(s.alpn.as_deref(), Some(alpn));
            assert_eq!(s.forwarded_proto.as_deref(), Some("http"));
        }
        let sni = seen[0].sni.clone();
        if protocol == "h2" {
            assert_eq!(sni.as_deref(), Some("app.internal"));
        } else {
            assert_eq!(sni, None);
        }
    }
}

#[tokio::test]
async fn upstream_with_an_untrusted_or_misnamed_certificate_gets_502() {
    let ca = Ca::new("upstream-ca");
    let stranger = Ca::new("stranger-ca");
    let dir = TempDir::new("up-bad");
    let up = tls_upstream("app", &ca.server(&["app.internal"]), None).await;
    let wrong_ca = dir.file("stranger.pem", &stranger.pem());
    let right_ca = dir.file("ca.pem", &ca.pem());
    for tls in [
        format!("      ca: \"{wrong_ca}\"\n      server_name: app.internal\n"),
        format!("      ca: \"{right_ca}\"\n      server_name: other.internal\n"),
        format!("      ca: \"{right_ca}\"\n"), // the endpoint's IP is not in the cert
    ] {
        let p = proxy(&yaml("", &tls_group(up.addr, "http1", &tls))).await;
        let got = crate::support::get(&crate::support::http1_client(), &p.url("/"), &[]).await;
        assert_eq!(got.status, 502, "{tls}");
    }
    assert!(up.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn upstream_requiring_a_client_certificate_gets_the_groups() {
    let ca = Ca::new("upstream-ca");
    let clients = Ca::new("client-ca");
    let dir = TempDir::new("up-mtls");
    let up = tls_upstream("app", &ca.server(&["app.internal"]), Some(&clients)).await;
    let ca_file = dir.file("ca.pem", &ca.pem());
    let (cert, key) = dir.pair("client", &clients.client("cutover"));
    let base = format!("      ca: \"{ca_file}\"\n      server_name: app.internal\n");
    let with_cert = format!("{base}      cert: \"{cert}\"\n      key: \"{key}\"\n");
    for (tls, want) in [(with_cert, 200), (base, 502)] {
        let p = proxy(&yaml("", &tls_group(up.addr, "h2", &tls))).await;
        let got = crate::support::get(&crate::support::http1_client(), &p.url("/"), &[]).await;
        assert_eq!(got.status, want, "{tls}");
    }
    assert_eq!(up.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn health_checks_speak_tls_to_tls_groups() {
    let ca = Ca::new("upstream-ca");
    let dir = TempDir::new("up-health");
    let up = tls_upstream("app", &ca.server(&["app.internal"]), None).await;
    let ca_file = dir.file("ca.pem", &ca.pem());
    let tls = format!(
        "      ca: \"{ca_file}\"\n      server_name: app.internal\n    health_check: {{path: /healthz, interval: 100ms, timeout: 100ms}}\n"
    );
    let _p = proxy(&yaml("", &tls_group(up.addr, "http1", &tls))).await;
    wait_for("a TLS health check", || !up.seen.lock().unwrap().is_empty()).await;
}

// === reload ===

fn generation(p: &Proxy) -> u64 {
    p.app.routes.load().generation
}

fn reload_errors(p: &Proxy) -> u64 {
    p.app.reload_errors.load(Ordering::Relaxed)
}

#[tokio::test]
async fn a_bad_certificate_on_reload_is_rejected_and_the_old_one_keeps_serving() {
    let ca = Ca::new("test-ca");
    let dir = TempDir::new("reload-bad");
    let old = ca.server(&["localhost"]);
    let (p, up) = {
        let up = upstream("app").await;
        let (cert, key) = dir.pair("tls", &old);
        let tls = format!("      certificates:\n{}", certificate(&cert, &key, ""));
        (proxy(&yaml(&tls, &plain_group(up.addr))).await, up)
    };
    let roots = client_config(Some(ca.roots()), &["h2"], None);
    let gen = generation(&p);
    // A key that belongs to another certificate.
    dir.file("tls.key", &ca.server(&["localhost"]).key_pem);
    wait_for("the mismatched key to be rejected", || {
        reload_errors(&p) == 1
    })
    .await;
    // Garbage in the certificate file.
    dir.file("tls.crt", "-----BEGIN CERTIFICATE-----\nnot base64\n");
    wait_for("the garbage to be rejected", || reload_errors(&p) == 2).await;
    assert_eq!(generation(&p), gen);
    let (got, peer) = get_once(p.addr, Some("localhost"), Arc::clone(&roots))
        .await
        .unwrap();
    assert_eq!(got.status, StatusCode::OK);
    assert!(peer == old.der, "the old certificate is no longer served");
    // A good pair is taken.
    let new = ca.server(&["localhost"]);
    dir.pair("tls", &new);
    wait_for("the new certificate", || generation(&p) > gen).await;
    let (_, peer) = get_once(p.addr, Some("localhost"), Arc::clone(&roots))
        .await
        .unwrap();
    assert!(peer == new.der);
    // A config change through the API validates the files the same way.
    let gen = generation(&p);
    let missing = dir.0.join("missing.key").display().to_string();
    let (cert, _) = dir.pair("other", &ca.server(&["localhost"]));
    let tls = format!("      certificates:\n{}", certificate(&cert, &missing, ""));
    let config = cutover::config::parse_yaml(&yaml(&tls, &plain_group(up.addr))).unwrap();
    let err = cutover::reload::replace_base(&p.app, &config).unwrap_err();
    assert_eq!(err.0[0].path, "listeners[0].tls.certificates[0].key");
    assert!(err.0[0]
        .message
        .starts_with(&format!("{missing}: cannot read")));
    assert_eq!(generation(&p), gen);
    let (_, peer) = get_once(p.addr, Some("localhost"), roots).await.unwrap();
    assert!(peer == new.der);
}

#[tokio::test]
async fn certificates_reload_under_load_without_a_failed_request() {
    let ca = Ca::new("test-ca");
    let dir = TempDir::new("reload-load");
    let first = ca.server(&["localhost"]);
    let (p, _up) = {
        let up = upstream("app").await;
        let (cert, key) = dir.pair("tls", &first);
        let tls = format!("      certificates:\n{}", certificate(&cert, &key, ""));
        (proxy(&yaml(&tls, &plain_group(up.addr))).await, up)
    };
    let addr = p.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut tasks = Vec::new();
    // An h2 and an HTTP/1.1 connection opened before any swap, kept open.
    for alpn in ["h2", "http/1.1"] {
        let mut conn = connect(
            addr,
            Some("localhost"),
            client_config(Some(ca.roots()), &[alpn], None),
        )
        .await
        .unwrap();
        let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        let first = first.der.clone();
        tasks.push(tokio::spawn(async move {
            let mut served = 0;
            while !stop.load(Ordering::Relaxed) {
                match conn.get("/keep-alive").await {
                    Ok(g) if g.status == StatusCode::OK => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                served += 1;
            }
            assert!(conn.peer == first);
            served
        }));
    }
    // New-connection clients.
    for i in 0..2 {
        let roots = client_config(Some(ca.roots()), &[["h2", "http/1.1"][i]], None);
        let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        tasks.push(tokio::spawn(async move {
            let mut served = 0;
            while !stop.load(Ordering::Relaxed) {
                match get_once(addr, Some("localhost"), Arc::clone(&roots)).await {
                    Ok((g, _)) if g.status == StatusCode::OK => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                served += 1;
            }
            served
        }));
    }
    let probe = client_config(Some(ca.roots()), &["h2"], None);
    for round in 0..3 {
        let next = ca.server(&["localhost"]);
        dir.pair("tls", &next);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (_, peer) = get_once(addr, Some("localhost"), Arc::clone(&probe))
                .await
                .unwrap();
            if peer == next.der {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: new certificate not served"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut served = Vec::new();
    for t in tasks {
        served.push(t.await.unwrap());
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "failed requests");
    assert!(
        served.iter().all(|&n| n > 5),
        "every client made progress: {served:?}"
    );
    assert!(ok.load(Ordering::Relaxed) > 50);
}

// === check ===

#[test]
fn check_names_the_field_and_the_file_of_a_bad_tls_file() {
    let ca = Ca::new("test-ca");
    let dir = TempDir::new("check");
    let (cert, _) = dir.pair("a", &ca.server(&["localhost"]));
    let (_, other_key) = dir.pair("b", &ca.server(&["localhost"]));
    let garbage = dir.file("garbage.pem", "hello\n");
    let missing = dir.0.join("missing.key").display().to_string();
    let tls = format!(
        "      certificates:\n{}{}",
        certificate(&cert, &other_key, "[a.test]"),
        certificate(&garbage, &missing, "")
    );
    let group = format!("    endpoints: [\"127.0.0.1:9\"]\n    tls:\n      ca: \"{garbage}\"\n      cert: \"{cert}\"\n");
    let file = dir.file("bad.yaml", &yaml(&tls, &group));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["check", &file])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for want in [
        format!("listeners[0].tls.certificates[0].key: {other_key}: key does not match the certificate in {cert}"),
        format!("listeners[0].tls.certificates[1].cert: {garbage}: no certificate found in PEM"),
        format!("listeners[0].tls.certificates[1].key: {missing}: cannot read: No such file"),
        format!("groups.app.tls.ca: {garbage}: no certificate found in PEM"),
        "groups.app.tls: cert and key come together".to_string(),
    ] {
        assert!(stderr.contains(&want), "missing {want:?} in:\n{stderr}");
    }
}

// === a real curl (OpenSSL) client ===

/// Runs curl against `https://localhost:{port}/x` trusting `ca_file`;
/// returns curl's exit code and `"<http_version> <status>"`.
async fn curl(port: u16, ca_file: &str, flags: &[&str]) -> (i32, String) {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args([
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
    ])
    .args(["--max-time", "5", "--cacert", ca_file])
    .arg("--resolve")
    .arg(format!("localhost:{port}:127.0.0.1"))
    .args(flags)
    .arg(format!("https://localhost:{port}/x"));
    let out = cmd
        .output()
        .await
        .expect("curl is needed by this test (.ci/run installs it)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn curl_speaks_h2_and_http1_and_tls_versions_follow_min_version() {
    let test = "curl_speaks_h2_and_http1_and_tls_versions_follow_min_version";
    if !tool_or_skip(test, "curl", "apt-get install curl") {
        return;
    }
    let ca = Ca::new("test-ca");
    let dir = TempDir::new("curl");
    let ca_file = dir.file("ca.pem", &ca.pem());
    let (p, _up) = https_proxy(&ca, &dir, "").await;
    let port = p.addr.port();
    // ALPN picks the protocol curl asks for.
    assert_eq!(
        curl(port, &ca_file, &["--http2"]).await,
        (0, "2 200".into())
    );
    assert_eq!(
        curl(port, &ca_file, &["--http1.1"]).await,
        (0, "1.1 200".into())
    );
    // TLS 1.2 and 1.3 are served; 1.1 and older never are (curl exit 35:
    // handshake failed).
    let tls12 = ["--tlsv1.2", "--tls-max", "1.2"];
    assert_eq!(curl(port, &ca_file, &tls12).await, (0, "2 200".into()));
    assert_eq!(curl(port, &ca_file, &["--tlsv1.3"]).await.0, 0);
    let (code, _) = curl(port, &ca_file, &["--tlsv1", "--tls-max", "1.1"]).await;
    assert_ne!(code, 0, "a TLS 1.1 client must not get through");
    // `min_version: "1.3"` turns 1.2 away.
    let (strict, _up2) = https_proxy(&ca, &dir, "      min_version: \"1.3\"\n").await;
    let strict_port = strict.addr.port();
    assert_eq!(curl(strict_port, &ca_file, &tls12).await.0, 35);
    assert_eq!(
        curl(strict_port, &ca_file, &["--tlsv1.3"]).await,
        (0, "2 200".into())
    );
    // A client that does not trust the CA refuses the certificate (exit 60).
    let other = TempDir::new("curl-other");
    let other_ca = other.file("ca.pem", &Ca::new("other-ca").pem());
    assert_eq!(curl(port, &other_ca, &[]).await.0, 60);
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_a_readable_400() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca = Ca::new("test-ca");
    let dir = TempDir::new("plain");
    let (p, up) = https_proxy(&ca, &dir, "").await;
    let mut tcp = TcpStream::connect(p.addr).await.unwrap();
    tcp.write_all(b"GET /x HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_string(&mut answer))
        .await
        .expect("the proxy answers and closes")
        .unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(answer.ends_with("This port speaks HTTPS; the request was sent as plain HTTP.\n"));
    assert_eq!(up.count(), 0, "nothing reaches the upstream");
    let scrape = p.app.metrics().encode(
        &p.app.routes.load(),
        0,
        cutover::metrics::Format::Prometheus,
    );
    assert!(
        scrape.contains(
            "cutover_tls_handshake_failures_total{listener=\"public\",reason=\"plain_http\"} 1"
        ),
        "{scrape}"
    );
    // TLS clients on the same port are unaffected.
    let (got, _) = get_once(
        p.addr,
        Some("localhost"),
        client_config(Some(ca.roots()), &["http/1.1"], None),
    )
    .await
    .unwrap();
    assert_eq!(got.status, StatusCode::OK);
}
