//! The dashboard tests' fixture: two upstreams (`stable`, and a `canary`
//! the test can make fail), the real proxy with its admin listener and a
//! token, a control API client and a reader of the event stream.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cutover::admin::AdminOptions;
use cutover::app::{App, Options};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::support::{http1_client, send, serve};

/// The admin token of every test here.
pub const TOKEN: &str = "dashboard-test-token-0123456789";

/// An upstream answering its name, or 503 while `failing`.
#[derive(Clone)]
pub struct Version {
    pub addr: SocketAddr,
    pub failing: Arc<AtomicBool>,
}

pub async fn version(name: &'static str) -> Version {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let v = Version {
        addr: listener.local_addr().unwrap(),
        failing: Arc::new(AtomicBool::new(false)),
    };
    let failing = Arc::clone(&v.failing);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let failing = Arc::clone(&failing);
            let service = service_fn(move |_req: Request<Incoming>| {
                let fail = failing.load(Ordering::Relaxed);
                async move {
                    let mut resp = Response::new(Full::new(Bytes::from(name)));
                    if fail {
                        *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    }
                    Ok::<_, Infallible>(resp)
                }
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    v
}

/// Route `web`: rule `testers` (header `x-canary: always` -> canary) and
/// rule `split` (stable 90, canary 10, with a rollout plan).
pub fn config(stable: &Version, canary: &Version) -> String {
    crate::support::config_at(
        &[("stable", stable.addr), ("canary", canary.addr)],
        r#"      - name: testers
        matches: [{ headers: [{ name: x-canary, value: always }] }]
        backends: [{ group: canary }]
      - name: split
        backends: [{ group: stable, weight: 90 }, { group: canary, weight: 10 }]
        rollout:
          canary: canary
          steps: [10, 50, 100]
          hold: 1h
"#,
    )
}

/// The proxy with its admin listener, token required.
pub struct Board {
    pub public: SocketAddr,
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

impl Board {
    pub async fn start(yaml: &str) -> Board {
        let config = cutover::config::parse_yaml(yaml).unwrap_or_else(|e| panic!("{e}"));
        let options = Options {
            admin: Some(AdminOptions {
                address: "127.0.0.1:0".parse().unwrap(),
                token: Some(TOKEN.into()),
            }),
            ..Options::default()
        };
        let app = App::start(&config, options).await.unwrap();
        let public = app.local_addr("public").unwrap();
        let admin = app.local_addr("admin").unwrap();
        let (stop, done) = serve(app);
        Board {
            public,
            admin,
            stop: Some(stop),
            done,
        }
    }

    /// `http://admin/`: the dashboard.
    pub fn page(&self) -> String {
        format!("http://{}/", self.admin)
    }

    /// A control API call with the token; `(status, JSON body)`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: &str,
        if_match: Option<u64>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.admin))
            .header("authorization", format!("Bearer {TOKEN}"));
        if let Some(g) = if_match {
            req = req.header("if-match", g.to_string());
        }
        let got = send(
            &http1_client(),
            req.body(Full::new(Bytes::from(body.to_string()))).unwrap(),
        )
        .await;
        let v = serde_json::from_str(&got.body).unwrap_or(Value::Null);
        (got.status, v)
    }

    /// The live generation.
    pub async fn generation(&self) -> u64 {
        let (_, v) = self.call(Method::GET, "/v1/config", "", None).await;
        v["generation"].as_u64().expect("a generation")
    }

    /// The weights of `web/split` as the control API reports them.
    pub async fn weights(&self) -> (u64, u64) {
        let (_, v) = self.call(Method::GET, "/v1/status", "", None).await;
        let rule = &v["routes"][0]["rules"]
            .as_array()
            .and_then(|r| r.iter().find(|x| x["rule"] == "split").cloned())
            .expect("rule split");
        let w = &rule["desired_weights"];
        (
            w["stable"].as_u64().unwrap_or(0),
            w["canary"].as_u64().unwrap_or(0),
        )
    }

    /// Sends `n` requests through the proxy: how many the canary answered.
    pub async fn canary_share(&self, n: usize) -> usize {
        let c = http1_client();
        let mut canary = 0;
        for _ in 0..n {
            let req = Request::get(format!("http://{}/", self.public))
                .body(Full::new(Bytes::new()))
                .unwrap();
            if send(&c, req).await.body == "canary" {
                canary += 1;
            }
        }
        canary
    }

    /// Opens `GET /v1/events` with `token`.
    pub async fn events(&self, token: Option<&str>) -> (StatusCode, Feed) {
        let mut req = Request::get(format!("http://{}/v1/events", self.admin));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = http1_client()
            .request(req.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        (
            status,
            Feed {
                body: resp.into_body(),
                buf: String::new(),
            },
        )
    }

    pub async fn shut_down(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.done).await;
    }
}

/// A server-sent event stream, read event by event.
pub struct Feed {
    body: Incoming,
    buf: String,
}

impl Feed {
    /// The next `(event name, JSON data)`; `None` when the stream ended
    /// (or nothing came for 5 s).
    pub async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                let mut name = String::new();
                let mut data = String::new();
                for line in raw.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = n.to_string();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push_str(d);
                    }
                }
                return Some((name, serde_json::from_str(&data).unwrap_or(Value::Null)));
            }
            let frame = tokio::time::timeout(Duration::from_secs(5), self.body.frame())
                .await
                .ok()??
                .ok()?;
            if let Some(d) = frame.data_ref() {
                self.buf.push_str(&String::from_utf8_lossy(d));
            }
        }
    }

    /// Whether the stream ends (within `secs`), reading what is left.
    pub async fn ends_within(&mut self, secs: u64) -> bool {
        let read_all = async {
            while let Some(frame) = self.body.frame().await {
                if frame.is_err() {
                    break;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(secs), read_all)
            .await
            .is_ok()
    }
}

/// Background traffic through the proxy until dropped.
pub struct Load(tokio::task::JoinHandle<()>);

impl Load {
    /// One keep-alive client sending a request every 5 ms (at most 60 s).
    pub fn start(public: SocketAddr) -> Load {
        Load(tokio::spawn(async move {
            let c = http1_client();
            for _ in 0..12_000 {
                let req = Request::get(format!("http://{public}/"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                if let Ok(resp) = c.request(req).await {
                    let _ = resp.into_body().collect().await;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.abort();
    }
}
