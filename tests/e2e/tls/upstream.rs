//! TLS to upstream groups: private CAs, bad certificates (502), client certificates, health checks.

use super::*;

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
    until("a TLS health check", Duration::from_secs(5), || {
        !up.seen.lock().unwrap().is_empty()
    })
    .await;
}
