//! The HTTPS listener: ALPN, SNI, mutual TLS, and handshake deadlines.

use super::*;

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
        p.app.routes.load().figures(0),
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
    let p = crate::support::launch(&yaml(&tls, &plain_group(up.addr)))
        .with(|o| o.limits.header_read_timeout = Duration::from_millis(300))
        .start()
        .await;
    let addr = p.addr;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf))
        .await
        .expect("the proxy kept a silent connection open");
    assert!(matches!(n, Ok(0) | Err(_)));
    assert!(started.elapsed() < Duration::from_secs(2));
}
