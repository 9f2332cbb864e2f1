//! HTTPS Gateway listeners: the certificate of the Secret a listener names
//! is served by SNI on cutover's TLS listener of that port; a rotation
//! reaches new connections within 1 s while open ones carry on; a bad
//! Secret is reported on the listener and the last good certificate stays.

use bytes::Bytes;
use http_body_util::Full;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::*;

/// A private CA and certificates it signs, as (cert PEM, key PEM, DER).
struct Ca(CertifiedIssuer<'static, KeyPair>);

type Leaf = (String, String, CertificateDer<'static>);

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        Ca(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    fn leaf(&self, name: &str) -> Leaf {
        let params = CertificateParams::new(vec![name.to_string()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.0).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().clone())
    }

    fn client(&self) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        roots.add(self.0.der().clone()).unwrap();
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }
}

/// Secret `shop/<name>` of type `kubernetes.io/tls` holding `leaf`.
fn tls_secret(api: &ApiServer, name: &str, cert: &str, key: &str) {
    let secret = Secret {
        metadata: kube::core::ObjectMeta {
            name: Some(name.into()),
            namespace: Some("shop".into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_string(), ByteString(cert.as_bytes().to_vec())),
            ("tls.key".to_string(), ByteString(key.as_bytes().to_vec())),
        ])),
        ..Default::default()
    };
    api.apply(SECRET, serde_json::to_value(secret).unwrap());
}

/// A TLS connection to `addr` for `sni`, verified against the CA.
async fn connect(ca: &Ca, addr: SocketAddr, sni: &str) -> TlsStream<TcpStream> {
    try_connect(ca, addr, sni).await.unwrap()
}

/// [`connect`], or why the handshake failed.
async fn try_connect(
    ca: &Ca,
    addr: SocketAddr,
    sni: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    ca.client().connect(name, tcp).await
}

/// The certificate the server presented.
fn presented(tls: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// Sends `GET /` for `host` on an open connection; the body.
async fn request(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: &str,
) -> String {
    let req = http::Request::get("/")
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap();
    String::from_utf8(body.to_bytes().to_vec()).unwrap()
}

/// The HTTPS listener's conditions in the Gateway's status: (type, status, reason).
fn listener_conditions(api: &ApiServer) -> Vec<(String, String, String)> {
    let Some(gw) = api.get(GATEWAY, "shop", "web") else {
        return vec![];
    };
    gw["status"]["listeners"][0]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
            (s("type"), s("status"), s("reason"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_listener_serves_its_secret_by_sni_and_follows_a_rotation_within_a_second() {
    let ca = Ca::new();
    // cutover's own certificate (the config file's) for other names.
    let dir = TempDir::new("kube-tls");
    let own = ca.leaf("default.example.com");
    let (cert, key) = (dir.write("own.crt", &own.0), dir.write("own.key", &own.1));
    let yaml = format!(
        "listeners: [{{name: public, address: \"127.0.0.1:0\", tls: {{certificates: [{{cert: {:?}, key: {:?}}}], alpn: [http/1.1]}}}}]\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let p = proxy(&yaml).await;
    let api = ApiServer::start().await;
    let options = ControllerOptions {
        debounce: Duration::from_millis(20),
        bound_ports: BTreeMap::from([("public".to_string(), p.addr.port())]),
        certificates: Arc::clone(&p.serving.certificates),
        addresses: vec!["203.0.113.7".into(), "gateway.example.com".into()],
        ..ControllerOptions::default()
    };
    let controller = tokio::spawn(kubernetes::run(Arc::clone(&p.app), api.client(), options));
    let first = ca.leaf("shop.example.com");
    tls_secret(&api, "shop-tls", &first.0, &first.1);
    // Another Secret nobody references: its data is never read.
    tls_secret(&api, "unrelated", &own.0, &own.1);
    api.apply(
        GATEWAY_CLASS,
        json!({"metadata": {"name": "cutover"}, "spec": {"controllerName": CONTROLLER}}),
    );
    api.apply(NAMESPACE, json!({"metadata": {"name": "shop"}}));
    api.apply(
        GATEWAY,
        json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"gatewayClassName": "cutover", "listeners": [
                {"name": "https", "port": p.addr.port(), "protocol": "HTTPS", "hostname": "shop.example.com",
                 "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": "shop-tls"}]}}
            ]}
        }),
    );
    let pods = Pods::start("shop", 70, 1).await;
    service(&api, "shop", "reviews");
    slice(&api, "shop", "reviews", pods.port, &ready(&pods));
    api.apply(
        HTTP_ROUTE,
        json!({
            "metadata": {"name": "reviews", "namespace": "shop"},
            "spec": {"parentRefs": [{"name": "web"}],
                     "rules": [{"backendRefs": [{"name": "reviews", "port": 80}]}]}
        }),
    );
    eventually("route accepted", Duration::from_secs(5), || {
        accepted_at(&api, "reviews", 1)
    })
    .await;

    // The Secret's certificate for its name, verified by a real client;
    // cutover's own for another name.
    let start = Instant::now();
    let tls = loop {
        // Until then cutover's own certificate, which does not verify.
        if let Ok(tls) = try_connect(&ca, p.addr, "shop.example.com").await {
            if presented(&tls) == first.2 {
                break tls;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "the Secret's certificate is not served"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let other = connect(&ca, p.addr, "default.example.com").await;
    assert_eq!(
        presented(&other),
        own.2,
        "names the Secret does not cover get cutover's own"
    );
    let (mut open, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    assert_eq!(request(&mut open, "shop.example.com").await, "shop");
    assert!(
        listener_conditions(&api).iter().all(|c| c.1 == "True"),
        "{:?}",
        listener_conditions(&api)
    );
    let gw = api.get(GATEWAY, "shop", "web").unwrap();
    assert_eq!(
        gw["status"]["addresses"],
        json!([{"type": "IPAddress", "value": "203.0.113.7"},
               {"type": "Hostname", "value": "gateway.example.com"}]),
        "{gw}"
    );
    assert_eq!(
        gw["status"]["listeners"][0]["supportedKinds"],
        json!([{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"},
               {"group": "gateway.networking.k8s.io", "kind": "GRPCRoute"}])
    );

    // Rotation: new connections get the new certificate within 1 s; the
    // connection opened before carries on.
    let second = ca.leaf("shop.example.com");
    tls_secret(&api, "shop-tls", &second.0, &second.1);
    let rotated = Instant::now();
    loop {
        let tls = connect(&ca, p.addr, "shop.example.com").await;
        if presented(&tls) == second.2 {
            break;
        }
        assert!(
            rotated.elapsed() < Duration::from_secs(1),
            "the rotated certificate is not served within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = rotated.elapsed();
    assert_eq!(
        request(&mut open, "shop.example.com").await,
        "shop",
        "an open connection is unaffected"
    );

    // A bad Secret: the listener says why, the last good certificate stays.
    tls_secret(
        &api,
        "shop-tls",
        &second.0,
        "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
    );
    eventually("InvalidCertificateRef", Duration::from_secs(2), || {
        listener_conditions(&api)
            .iter()
            .any(|c| c.0 == "ResolvedRefs" && c.1 == "False" && c.2 == "InvalidCertificateRef")
    })
    .await;
    let tls = connect(&ca, p.addr, "shop.example.com").await;
    assert_eq!(presented(&tls), second.2, "the last good certificate stays");
    // Deleted: still the last good one, still reported.
    api.delete(SECRET, "shop", "shop-tls");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let tls = connect(&ca, p.addr, "shop.example.com").await;
    assert_eq!(presented(&tls), second.2);

    let read: Vec<String> = api
        .gets()
        .into_iter()
        .filter(|(kind, _)| *kind == "Secret")
        .map(|(_, at)| at)
        .collect();
    assert!(
        !read.is_empty() && read.iter().all(|at| at == "shop/shop-tls"),
        "{read:?}"
    );
    eprintln!("Secret rotation reached new connections in {took:?}");
    controller.abort();
}
