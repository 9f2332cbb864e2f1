//! A real OpenSSL client (curl): h2 and HTTP/1.1, TLS versions, and plain HTTP on the TLS port.

use super::*;

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
        p.app.routes.load().figures(0),
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
