//! HTTP/2: h2c (prior knowledge) clients to HTTP/1.1 and h2 upstreams, and
//! trailers both ways through an h2 group.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, Version};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::kit::{one_group, serve, Frames};
use crate::support::*;

#[tokio::test]
async fn h2c_client_reaches_an_http1_upstream() {
    let up = upstream("app").await;
    let p = proxy(&one_group(up.addr, "http1")).await;
    let c = h2_client();

    let resp = c
        .request(
            Request::get(p.url("/h2?q=1"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "app");

    let post = Request::post(p.url("/upload")).body(Full::new(Bytes::from_static(b"hello")));
    assert_eq!(send(&c, post.unwrap()).await.status, 200);

    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    let authority = p.addr.to_string();
    assert_eq!(seen[0].version, Version::HTTP_11);
    assert_eq!(seen[0].uri, "/h2?q=1");
    assert_eq!(
        seen[0].headers["host"],
        authority.as_str(),
        "Host = the client's :authority"
    );
    assert_eq!(seen[0].headers["x-forwarded-host"], authority.as_str());
    assert_eq!(seen[1].body_len, 5);
}

#[tokio::test]
async fn h2c_and_http1_clients_reach_an_h2_upstream() {
    let up = upstream("app").await;
    let p = proxy(&one_group(up.addr, "h2")).await;

    // Several streams at once on one client connection.
    let c = h2_client();
    let url = p.url("/multi");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (c, url) = (c.clone(), url.clone());
        tasks.spawn(async move { get(&c, &url, &[]).await });
    }
    let replies = tasks.join_all().await;
    assert!(replies.iter().all(|g| g.status == 200 && g.body == "app"));

    let got = get(
        &http1_client(),
        &p.url("/from-h1"),
        &[("host", "app.example")],
    )
    .await;
    assert_eq!(got.status, 200);

    let seen = up.requests();
    assert_eq!(seen.len(), 11);
    let authority = p.addr.to_string();
    for s in &seen {
        assert_eq!(s.version, Version::HTTP_2);
        // h2 upstreams get :authority = the endpoint and no Host header; the
        // client's host is in X-Forwarded-Host.
        assert_eq!(
            s.uri.authority().map(|a| a.as_str()),
            Some(up.addr.to_string().as_str())
        );
        assert!(!s.headers.contains_key("host"), "{:?}", s.headers);
        assert!(!s.headers.contains_key("connection"), "{:?}", s.headers);
    }
    assert_eq!(seen[0].headers["x-forwarded-host"], authority.as_str());
    assert_eq!(seen[10].headers["x-forwarded-host"], "app.example");
}

/// What the gRPC-like upstream read: request headers, body, trailers.
type SeenGrpc = Arc<Mutex<Vec<(HeaderMap, Bytes, Option<HeaderMap>)>>>;

#[tokio::test]
async fn trailers_cross_an_h2_group_both_ways() {
    let seen: SeenGrpc = Arc::default();
    let record = Arc::clone(&seen);
    let addr = serve(move |req: Request<Incoming>| {
        let record = Arc::clone(&record);
        async move {
            let (parts, body) = req.into_parts();
            let collected = body.collect().await.unwrap();
            let trailers = collected.trailers().cloned();
            record
                .lock()
                .unwrap()
                .push((parts.headers, collected.to_bytes(), trailers));
            let mut t = HeaderMap::new();
            t.insert("grpc-status", "0".parse().unwrap());
            t.insert("grpc-message", "ok".parse().unwrap());
            Response::builder()
                .header("content-type", "application/grpc")
                .body(Frames::new([
                    Frame::data(Bytes::from_static(b"pong")),
                    Frame::trailers(t),
                ]))
                .unwrap()
        }
    })
    .await;
    let p = proxy(&one_group(addr, "h2")).await;

    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Frames>();
    let mut req_trailers = HeaderMap::new();
    req_trailers.insert("x-checksum", "abc123".parse().unwrap());
    let req = Request::post(p.url("/pkg.Echo/Say"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Frames::new([
            Frame::data(Bytes::from_static(b"ping")),
            Frame::trailers(req_trailers),
        ]))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    let got = resp.into_body().collect().await.unwrap();
    let trailers = got
        .trailers()
        .cloned()
        .expect("response trailers reach the client");
    assert_eq!(got.to_bytes(), "pong");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "ok");

    let seen = seen.lock().unwrap();
    let (headers, body, trailers) = &seen[0];
    assert_eq!(body, "ping");
    assert_eq!(headers["te"], "trailers", "gRPC needs `te: trailers`");
    let trailers = trailers
        .as_ref()
        .expect("request trailers reach the upstream");
    assert_eq!(trailers["x-checksum"], "abc123");
}
