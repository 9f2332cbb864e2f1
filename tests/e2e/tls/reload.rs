//! Certificate reloads: a bad file is rejected and the old certificate keeps serving; rotation under load fails no request.

use super::*;

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
    until(
        "the mismatched key to be rejected",
        Duration::from_secs(5),
        || reload_errors(&p) == 1,
    )
    .await;
    // Garbage in the certificate file.
    dir.file("tls.crt", "-----BEGIN CERTIFICATE-----\nnot base64\n");
    until("the garbage to be rejected", Duration::from_secs(5), || {
        reload_errors(&p) == 2
    })
    .await;
    assert_eq!(generation(&p), gen);
    let (got, peer) = get_once(p.addr, Some("localhost"), Arc::clone(&roots))
        .await
        .unwrap();
    assert_eq!(got.status, StatusCode::OK);
    assert!(peer == old.der, "the old certificate is no longer served");
    // A good pair is taken.
    let new = ca.server(&["localhost"]);
    dir.pair("tls", &new);
    until("the new certificate", Duration::from_secs(5), || {
        generation(&p) > gen
    })
    .await;
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
