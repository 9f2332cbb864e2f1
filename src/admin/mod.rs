//! The admin listener: probes (`/live`, `/ready`), the Prometheus scrape
//! (`/metrics`), the control API (`/v1/*`, JSON), its live feed
//! (`/v1/events`) and the dashboard page that reads them (`/`, `/ui`).
//! Loopback by default; a bearer token is required to bind anywhere else
//! (probes, `/metrics` and the page itself do not need it; the page's data
//! does).

// Handlers return a ready error response as their `Err`: the admin path is
// not hot, and a boxed response would only add noise.
#![allow(clippy::result_large_err)]

mod analysis;
mod api;
mod board;
mod events;
mod history;
mod json;
mod ui;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Format;
use crate::reload::Tables;
use crate::rollout::Control;
use crate::serving::Serving;
use events::{EventBody, Events};
use json::{error, text};

pub use events::MAX_STREAMS;
pub use ui::CSP;

/// An admin response: a whole body, or an event stream.
type AdminBody = Either<Full<Bytes>, EventBody>;

/// Largest control API request body.
const MAX_BODY: usize = 1024 * 1024;

/// Admin listener settings.
#[derive(Clone)]
pub struct AdminOptions {
    /// Where to listen; default `127.0.0.1:9901`.
    pub address: SocketAddr,
    /// Bearer token required on `/v1/*`; probes never need it.
    pub token: Option<String>,
}

impl std::fmt::Debug for AdminOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminOptions")
            .field("address", &self.address)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl AdminOptions {
    /// Refuses to expose the control API beyond loopback without a token.
    pub fn check_safe(&self) -> Result<(), String> {
        if self.token.is_none() && !self.address.ip().is_loopback() {
            return Err(format!(
                "refusing to serve the control API on {} without a token: set --admin-token-file or CUTOVER_ADMIN_TOKEN, or bind to 127.0.0.1",
                self.address
            ));
        }
        if self.token.as_deref().is_some_and(|t| t.len() < 16) {
            return Err("the admin token must be at least 16 characters".into());
        }
        Ok(())
    }
}

/// What the admin API reads and changes: the published tables (changed
/// only through `reload`), the rollout controller, and the serving state
/// for `/ready`.
#[derive(Debug, Clone)]
pub struct Context {
    /// The published table and the desired state.
    pub tables: Arc<Tables>,
    /// The rollouts.
    pub control: Arc<Control>,
    /// The drain flag.
    pub serving: Arc<Serving>,
}

/// What every admin connection shares.
struct Admin {
    options: AdminOptions,
    events: Events,
    shutdown: watch::Receiver<bool>,
}

/// Serves the admin API until shutdown; event streams end then too.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Context>,
    options: AdminOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, auth = options.token.is_some(), "admin API listening");
    }
    let admin = Arc::new(Admin {
        options,
        events: Events::default(),
        shutdown: shutdown.clone(),
    });
    let feed = {
        let (admin, shared, stop) = (Arc::clone(&admin), Arc::clone(&shared), shutdown.clone());
        tokio::spawn(async move { admin.events.run(shared, stop).await })
    };
    let _feed = AbortOnDrop(feed);
    loop {
        let (stream, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let (shared, admin) = (Arc::clone(&shared), Arc::clone(&admin));
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let (shared, admin) = (Arc::clone(&shared), Arc::clone(&admin));
                async move { Ok::<_, Infallible>(route(&shared, &admin, req).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Ends the feed task with the listener, however `serve` returns.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn route(shared: &Context, admin: &Admin, req: Request<Incoming>) -> Response<AdminBody> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match (&method, path.as_str()) {
        (&Method::GET, "/live") => return text(StatusCode::OK, "live\n").map(Either::Left),
        (&Method::GET, "/ready") => return ready(shared).map(Either::Left),
        (&Method::GET, "/metrics") => return metrics(shared, &req).map(Either::Left),
        (&Method::GET, p) => {
            if let Some(page) = ui::file(p) {
                return page.map(Either::Left);
            }
        }
        _ => {}
    }
    if let Err(resp) = authorize(&admin.options, &req) {
        return resp.map(Either::Left);
    }
    if (&method, path.as_str()) == (&Method::GET, "/v1/events") {
        return match admin.events.open(admin.shutdown.clone()) {
            Some(body) => events::response(body).map(Either::Right),
            None => events::too_many().map(Either::Left),
        };
    }
    control(shared, req, method, path).await.map(Either::Left)
}

/// The JSON control API.
async fn control(
    shared: &Context,
    req: Request<Incoming>,
    method: Method,
    path: String,
) -> Response<Full<Bytes>> {
    let query = req.uri().query().unwrap_or("").to_string();
    let if_match = match if_match(&req) {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let resp = api::dispatch(shared, &method, &path, &query, if_match, &body);
    tracing::info!(%method, path, status = resp.status().as_u16(), "control API");
    resp
}

fn ready(shared: &Context) -> Response<Full<Bytes>> {
    if shared.serving.draining.load(Ordering::Relaxed) {
        text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        text(StatusCode::OK, "ready\n")
    }
}

/// The scrape, in the format the client accepts (OpenMetrics for
/// Prometheus, the classic text format otherwise).
fn metrics(shared: &Context, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let table = shared.tables.routes.load_full();
    let reload_errors = shared.tables.reload_errors.load(Ordering::Relaxed);
    let body = shared
        .tables
        .metrics()
        .encode(table.figures(reload_errors), format);
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(format.content_type()),
    );
    resp
}

/// 401 without a token, 403 with a wrong one; constant-time comparison.
fn authorize(options: &AdminOptions, req: &Request<Incoming>) -> Result<(), Response<Full<Bytes>>> {
    let Some(expected) = &options.token else {
        return Ok(());
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        None => {
            let mut resp = error(StatusCode::UNAUTHORIZED, "missing bearer token");
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            Err(resp)
        }
        Some(t) if constant_time_eq(t.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(error(StatusCode::FORBIDDEN, "wrong bearer token")),
    }
}

/// Compares without an early exit, so timing does not reveal a prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// `If-Match: 7` or `If-Match: "7"` -> generation 7.
fn if_match(req: &Request<Incoming>) -> Result<Option<u64>, Response<Full<Bytes>>> {
    let Some(v) = req.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .map(|s| s.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|s| s.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                "If-Match must be a generation number",
            )
        })
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Response<Full<Bytes>>> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(_) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body over {MAX_BODY} bytes or unreadable"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret-token-123", b"secret-token-123"));
        assert!(!constant_time_eq(b"secret-token-123", b"secret-token-124"));
        assert!(!constant_time_eq(b"secret", b"secret-token-123"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn exposed_admin_needs_a_token() {
        let open = AdminOptions {
            address: "0.0.0.0:9901".parse().unwrap(),
            token: None,
        };
        assert!(open.check_safe().is_err());
        let local = AdminOptions {
            address: "127.0.0.1:9901".parse().unwrap(),
            token: None,
        };
        assert!(local.check_safe().is_ok());
    }
}
