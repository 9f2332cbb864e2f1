//! `cutover demo`: two stable endpoints and one canary endpoint in-process,
//! the proxy in front with a 90/10 split, a header override and a sticky
//! rule, the admin listener on loopback (with its dashboard), and the curl
//! and `cutover ctl` commands to try it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::admin::AdminOptions;
use crate::app::{App, Options, Signal, StartError};
use crate::config::parse_yaml;

/// Starts an upstream on 127.0.0.1 (port 0) that answers every request with
/// `<version> <its address>`, so a client sees where it landed; with
/// `fail_every` n > 0, every n-th answer is a 503 (a bad release).
pub async fn spawn_version_server(
    version: &'static str,
    fail_every: u64,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let served = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let served = Arc::clone(&served);
            let service = service_fn(move |_req: Request<Incoming>| {
                let n = served.fetch_add(1, Ordering::Relaxed) + 1;
                async move {
                    let body = format!("{version} {addr}\n");
                    let mut resp = Response::new(Full::new(Bytes::from(body)));
                    resp.headers_mut()
                        .insert("x-version", http::HeaderValue::from_static(version));
                    if fail_every > 0 && n.is_multiple_of(fail_every) {
                        *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    Ok::<_, Infallible>(resp)
                }
            });
            tokio::spawn(async move {
                let builder = auto::Builder::new(TokioExecutor::new());
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// The rollout plan of the demo's `split` rule.
const DEMO_ROLLOUT: &str = "        rollout:\n          canary: canary\n          steps: [10, 25, 50, 100]\n          hold: 10s\n";

/// The demo's config: a readable example of every routing feature.
pub fn demo_config_yaml(listen: SocketAddr, stable: [SocketAddr; 2], canary: SocketAddr) -> String {
    format!(
        r#"listeners:
  - name: public
    address: "{listen}"
groups:
  stable:
    endpoints: ["{s0}", "{s1}"]
  canary:
    endpoints: ["{canary}"]
routes:
  - name: web
    rules:
      - name: canary-override
        matches:
          - headers: [{{ name: x-canary, value: always }}]
        backends: [{{ group: canary }}]
      - name: sticky-users
        matches:
          - path: {{ type: PathPrefix, value: /app }}
        sticky: {{ header: x-user-id }}
        backends:
          - {{ group: stable, weight: 90 }}
          - {{ group: canary, weight: 10 }}
      - name: split
        backends:
          - {{ group: stable, weight: 90 }}
          - {{ group: canary, weight: 10 }}
{DEMO_ROLLOUT}"#,
        s0 = stable[0],
        s1 = stable[1],
    )
}

/// Runs the demo until Ctrl-C. `admin` is the control API's address
/// (loopback, so no token is needed); `None` runs without one. With
/// `bad_canary`, the canary answers one request in four with a 503, the
/// demo sends itself a little traffic and starts the `split` rollout, which
/// fails and rolls back while you watch.
pub async fn run(
    listen: SocketAddr,
    admin: Option<SocketAddr>,
    bad_canary: bool,
) -> Result<(), StartError> {
    let io = |e: std::io::Error| StartError::Bind {
        name: "demo upstream".into(),
        address: "127.0.0.1:0".parse().unwrap_or(listen),
        source: e,
    };
    let stable = [
        spawn_version_server("stable", 0).await.map_err(io)?,
        spawn_version_server("stable", 0).await.map_err(io)?,
    ];
    let canary_fails = if bad_canary { 4 } else { 0 };
    let canary = spawn_version_server("canary", canary_fails)
        .await
        .map_err(io)?;
    let yaml = demo_config_yaml(listen, stable, canary);
    let config = parse_yaml(&yaml)?;
    let options = Options {
        admin: admin.map(|address| AdminOptions {
            address,
            token: None,
        }),
        ..Options::default()
    };
    let app = App::start(&config, options).await?;
    let addr = app.local_addr("public").unwrap_or(listen);
    println!("{}", instructions(addr, &yaml));
    if let Some(admin) = app.local_addr("admin") {
        println!("{}", admin_instructions(admin));
    }
    if bad_canary {
        rehearse_bad_canary(&app, addr);
    }
    println!("\nCtrl-C stops the demo.");
    // Ctrl-C is the demo's only way out: drain without a delay and say so.
    let (signals, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if signals.send(Signal::Interrupt).is_err() {
                return;
            }
        }
    });
    app.serve_signals(rx).await;
    Ok(())
}

/// Starts the `split` rollout of a bad canary and feeds it 50 requests a
/// second (for at most 10 minutes), printing how to watch it fail.
fn rehearse_bad_canary(app: &App, addr: SocketAddr) {
    let control = app.control();
    match crate::rollout::actions::start(&control, "web", "split") {
        Ok(_) => println!(
            "\nBad canary: 1 request in 4 answers 503. The split rollout has started at 10%;\n\
             watch the proxy fail it and roll it back (within about 10 s):\n  \
             watch -n 0.5 cutover ctl rollout status web split{}",
            app.local_addr("admin")
                .filter(|a| a.port() != 9901)
                .map(|a| format!(" --admin http://{a}"))
                .unwrap_or_default()
        ),
        Err(e) => println!("\nBad canary: the rollout did not start: {e}"),
    }
    tokio::spawn(async move {
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .build_http::<Full<Bytes>>();
        let url = format!("http://{addr}/");
        let mut every = tokio::time::interval(std::time::Duration::from_millis(20));
        for _ in 0..(50 * 600) {
            every.tick().await;
            let Ok(req) = Request::get(&url).body(Full::new(Bytes::new())) else {
                return;
            };
            let _ = client.request(req).await;
        }
    });
}

fn instructions(addr: SocketAddr, yaml: &str) -> String {
    format!(
        r#"cutover demo: proxy on http://{addr}, stable x2 and canary x1 upstreams in-process.

Config in use:
{yaml}
Try:
  # 90/10 weighted split: count the versions of 100 requests
  for i in $(seq 100); do curl -s http://{addr}/; done | cut -d' ' -f1 | sort | uniq -c

  # header override: always the canary
  curl -s -H 'x-canary: always' http://{addr}/

  # sticky: one user always lands on the same version
  for i in $(seq 5); do curl -s -H 'x-user-id: alice' http://{addr}/app; done

  # HTTP/2 (h2c prior knowledge) on the same port
  curl -s --http2-prior-knowledge http://{addr}/

  # validate a config file: every error with its field path
  cargo run --release -- check config/cutover.yaml"#
    )
}

/// The dashboard's URL and the control API commands, pointed at the demo's
/// admin listener.
fn admin_instructions(admin: SocketAddr) -> String {
    let ctl = if admin.port() == 9901 && admin.ip().is_loopback() {
        "cutover ctl".to_string()
    } else {
        format!("cutover ctl --admin http://{admin}")
    };
    format!(
        r#"
Dashboard: http://{admin}/
  live weights, req/s, error rates and latency per version, the rollout's
  verdict, and buttons that act on them (run the curl loop above for traffic)

Control API on http://{admin} (loopback: no token needed):
  # weights, observed split and generation per rule
  {ctl} status

  # move the split (the curl loop above shows it), then undo it
  {ctl} weights web split stable=50 canary=50
  {ctl} rollback web split

  # per-version Prometheus metrics
  curl -s http://{admin}/metrics | grep cutover_requests_total"#
    )
}
