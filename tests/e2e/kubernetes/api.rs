//! An API server test double over loopback HTTP, enough for the real `kube`
//! client: `list` with a resourceVersion, `watch` from one (history
//! replayed, bookmarks, `410 Gone` once compacted), status PATCHes recorded
//! and applied, Leases with optimistic concurrency. It can drop every watch,
//! or stop and come back on the same port (a restart).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;

type Body = BoxBody<Bytes, Infallible>;

/// A kind the double serves: its API path prefix, plural and list kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Kind {
    /// `api/v1` or `apis/<group>/<version>`.
    pub prefix: &'static str,
    /// e.g. `httproutes`.
    pub plural: &'static str,
    /// e.g. `HTTPRoute`.
    pub kind: &'static str,
}

const GATEWAY_API: &str = "apis/gateway.networking.k8s.io/v1";
pub const GATEWAY_CLASS: Kind = Kind::new(GATEWAY_API, "gatewayclasses", "GatewayClass");
pub const GATEWAY: Kind = Kind::new(GATEWAY_API, "gateways", "Gateway");
pub const HTTP_ROUTE: Kind = Kind::new(GATEWAY_API, "httproutes", "HTTPRoute");
pub const GRPC_ROUTE: Kind = Kind::new(GATEWAY_API, "grpcroutes", "GRPCRoute");
pub const REFERENCE_GRANT: Kind = Kind::new(
    "apis/gateway.networking.k8s.io/v1beta1",
    "referencegrants",
    "ReferenceGrant",
);
pub const SERVICE: Kind = Kind::new("api/v1", "services", "Service");
pub const ENDPOINT_SLICE: Kind = Kind::new(
    "apis/discovery.k8s.io/v1",
    "endpointslices",
    "EndpointSlice",
);
pub const NAMESPACE: Kind = Kind::new("api/v1", "namespaces", "Namespace");
pub const SECRET: Kind = Kind::new("api/v1", "secrets", "Secret");
pub const LEASE: Kind = Kind::new("apis/coordination.k8s.io/v1", "leases", "Lease");

const KINDS: [Kind; 10] = [
    GATEWAY_CLASS,
    GATEWAY,
    HTTP_ROUTE,
    GRPC_ROUTE,
    REFERENCE_GRANT,
    SERVICE,
    ENDPOINT_SLICE,
    NAMESPACE,
    SECRET,
    LEASE,
];

impl Kind {
    const fn new(prefix: &'static str, plural: &'static str, kind: &'static str) -> Kind {
        Kind {
            prefix,
            plural,
            kind,
        }
    }

    fn api_version(&self) -> &'static str {
        self.prefix
            .trim_start_matches("apis/")
            .trim_start_matches("api/")
    }
}

/// A recorded status PATCH.
#[derive(Debug, Clone)]
pub struct StatusPatch {
    pub kind: &'static str,
    pub name: String,
    pub content_type: String,
    pub field_manager: String,
    pub body: Value,
}

#[derive(Debug, Clone)]
struct Event {
    rv: u64,
    kind: Kind,
    kind_of_event: &'static str,
    object: Value,
}

#[derive(Default)]
struct State {
    rv: u64,
    objects: BTreeMap<(Kind, String, String), Value>,
    history: Vec<Event>,
    /// Watches from this resourceVersion or an older one get 410 Gone.
    compacted: u64,
    patches: Vec<StatusPatch>,
    /// `(kind, namespace/name)` of each single-object GET.
    gets: Vec<(&'static str, String)>,
    lists: usize,
    watches: usize,
    /// Kinds whose CRD is not installed: discovery leaves them out and
    /// their paths answer 404.
    uninstalled: Vec<Kind>,
}

/// The running double.
pub struct ApiServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<Event>,
    /// Each watch stream holds a receiver; `drop_watches` ends them all.
    cut: broadcast::Sender<()>,
    server: Mutex<Option<JoinSet<()>>>,
}

impl ApiServer {
    /// Starts on a free loopback port.
    pub async fn start() -> Arc<ApiServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = Arc::new(ApiServer {
            addr: listener.local_addr().unwrap(),
            state: Arc::new(Mutex::new(State::default())),
            events: broadcast::channel(65536).0,
            cut: broadcast::channel(4).0,
            server: Mutex::new(None),
        });
        api.serve(listener);
        api
    }

    /// Leaves `kind` out, as a cluster without its CRD (e.g. GRPCRoute
    /// before Gateway API v1.1).
    pub fn uninstall(&self, kind: Kind) {
        self.state.lock().unwrap().uninstalled.push(kind);
    }

    /// `GET /apis/<group>/<version>`: the served kinds of that version.
    fn discovery(&self, path: &str) -> Option<Response<Body>> {
        let uninstalled = self.state.lock().unwrap().uninstalled.clone();
        let resources: Vec<Value> = KINDS
            .iter()
            .filter(|k| k.prefix == path && !uninstalled.contains(k))
            .map(|k| json!({"name": k.plural, "kind": k.kind, "namespaced": k.kind != "GatewayClass" && k.kind != "Namespace", "singularName": "", "verbs": ["get", "list", "watch"]}))
            .collect();
        (!resources.is_empty()).then(|| {
            json_response(
                StatusCode::OK,
                &json!({"kind": "APIResourceList", "apiVersion": "v1",
                        "groupVersion": path.trim_start_matches("apis/").trim_start_matches("api/"),
                        "resources": resources}),
            )
        })
    }

    /// A `kube` client for this server.
    pub fn client(&self) -> kube::Client {
        let url = format!("http://{}", self.addr).parse().unwrap();
        let mut config = kube::Config::new(url);
        config.default_namespace = "default".into();
        config.read_timeout = Some(std::time::Duration::from_secs(30));
        kube::Client::try_from(config).unwrap()
    }

    fn serve(self: &Arc<Self>, listener: TcpListener) {
        let mut set = JoinSet::new();
        let api = Arc::clone(self);
        let conns = Arc::new(Mutex::new(JoinSet::new()));
        let held = Arc::clone(&conns);
        set.spawn(async move {
            let _held = held;
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let api = Arc::clone(&api);
                let service = service_fn(move |req| {
                    let api = Arc::clone(&api);
                    async move { Ok::<_, Infallible>(api.handle(req).await) }
                });
                conns.lock().unwrap().spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        *self.server.lock().unwrap() = Some(set);
    }

    /// Stops serving (every connection cut), keeps the objects, and comes
    /// back on the same port: an API server restart.
    pub async fn restart(self: &Arc<Self>, down_for: std::time::Duration) {
        self.server.lock().unwrap().take();
        let _ = self.cut.send(());
        tokio::time::sleep(down_for).await;
        let listener = self.rebind().await;
        self.serve(listener);
    }

    /// Binds the old port again, retrying for a while: meanwhile a client
    /// socket may hold it as its local port (the port is from the ephemeral
    /// range, and a client reconnecting to a port nothing listens on can
    /// even connect to itself), until that client gives up on it.
    async fn rebind(&self) -> TcpListener {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => return listener,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    eprintln!("api server: {} busy ({e}), retrying", self.addr);
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => panic!("api server: {} still busy after 10 s: {e}", self.addr),
            }
        }
    }

    /// Ends every open watch (the client reconnects from its last version).
    pub fn drop_watches(&self) {
        let _ = self.cut.send(());
    }

    /// Forgets the history up to now and ends every watch: reconnecting
    /// watches get 410 Gone and must list again.
    pub fn compact_and_drop_watches(&self) {
        {
            let mut s = self.state.lock().unwrap();
            s.compacted = s.rv;
            s.history.clear();
            // Versions move on (other objects change), so a re-list gets
            // one that is not compacted.
            s.rv += 1;
        }
        self.drop_watches();
    }

    /// Creates or replaces an object (`kind`, namespace and name from it);
    /// a changed spec bumps `metadata.generation`, as for CRDs.
    pub fn apply(&self, kind: Kind, mut object: Value) -> Value {
        let mut s = self.state.lock().unwrap();
        s.rv += 1;
        let rv = s.rv;
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let key = (kind, ns.clone(), name.clone());
        let old = s.objects.get(&key).cloned();
        let generation = match &old {
            Some(o) if o["spec"] == object["spec"] => {
                o["metadata"]["generation"].as_i64().unwrap_or(1)
            }
            Some(o) => o["metadata"]["generation"].as_i64().unwrap_or(1) + 1,
            None => 1,
        };
        if let (Some(o), None) = (&old, object.get("status")) {
            if let Some(st) = o.get("status") {
                object["status"] = st.clone();
            }
        }
        object["apiVersion"] = kind.api_version().into();
        object["kind"] = kind.kind.into();
        object["metadata"]["resourceVersion"] = rv.to_string().into();
        object["metadata"]["generation"] = generation.into();
        object["metadata"]["uid"] = format!("uid-{}-{ns}-{name}", kind.plural).into();
        object["metadata"]["creationTimestamp"] = old
            .as_ref()
            .map(|o| o["metadata"]["creationTimestamp"].clone())
            .unwrap_or_else(|| {
                format!("2026-01-01T00:{:02}:{:02}Z", (rv / 60) % 60, rv % 60).into()
            });
        s.objects.insert(key, object.clone());
        let event = Event {
            rv,
            kind,
            kind_of_event: if old.is_some() { "MODIFIED" } else { "ADDED" },
            object: object.clone(),
        };
        s.history.push(event.clone());
        drop(s);
        let _ = self.events.send(event);
        object
    }

    /// Deletes an object.
    pub fn delete(&self, kind: Kind, ns: &str, name: &str) {
        let mut s = self.state.lock().unwrap();
        let Some(mut object) = s.objects.remove(&(kind, ns.to_string(), name.to_string())) else {
            return;
        };
        s.rv += 1;
        object["metadata"]["resourceVersion"] = s.rv.to_string().into();
        let event = Event {
            rv: s.rv,
            kind,
            kind_of_event: "DELETED",
            object,
        };
        s.history.push(event.clone());
        drop(s);
        let _ = self.events.send(event);
    }

    /// The object as stored.
    pub fn get(&self, kind: Kind, ns: &str, name: &str) -> Option<Value> {
        self.state
            .lock()
            .unwrap()
            .objects
            .get(&(kind, ns.to_string(), name.to_string()))
            .cloned()
    }

    /// The status PATCHes received so far.
    pub fn patches(&self) -> Vec<StatusPatch> {
        self.state.lock().unwrap().patches.clone()
    }

    /// `(kind, namespace/name)` of every single-object GET so far.
    pub fn gets(&self) -> Vec<(&'static str, String)> {
        self.state.lock().unwrap().gets.clone()
    }

    /// (lists, watches) served so far.
    pub fn requests(&self) -> (usize, usize) {
        let s = self.state.lock().unwrap();
        (s.lists, s.watches)
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().trim_start_matches('/').to_string();
        let query: BTreeMap<String, String> = req
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(found) = self.discovery(&path) {
            return found;
        }
        let route =
            route(&path).filter(|(k, ..)| !self.state.lock().unwrap().uninstalled.contains(k));
        let Some((kind, ns, name, sub)) = route else {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("no route {path}"),
            );
        };
        let method = req.method().clone();
        let content_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        match (method, name, sub.as_deref()) {
            (Method::GET, None, None)
                if query.get("watch").is_some_and(|w| w == "true" || w == "1") =>
            {
                self.watch(kind, &query)
            }
            (Method::GET, None, None) => self.list(kind, ns.as_deref(), &query),
            (Method::GET, Some(name), None) => {
                let at = format!("{}/{name}", ns.as_deref().unwrap_or(""));
                self.state.lock().unwrap().gets.push((kind.kind, at));
                match self.get(kind, ns.as_deref().unwrap_or(""), &name) {
                    Some(o) => json_response(StatusCode::OK, &o),
                    None => status(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        &format!("{} {name} not found", kind.plural),
                    ),
                }
            }
            (Method::POST, None, None) => {
                let object: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let name = object["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                if self.get(kind, ns.as_deref().unwrap_or(""), &name).is_some() {
                    return status(StatusCode::CONFLICT, "AlreadyExists", "exists");
                }
                json_response(StatusCode::CREATED, &self.apply(kind, object))
            }
            (Method::PUT, Some(name), None) => {
                let object: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let current = self.get(kind, ns.as_deref().unwrap_or(""), &name);
                let Some(current) = current else {
                    return status(StatusCode::NOT_FOUND, "NotFound", "not found");
                };
                if object["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                    return status(
                        StatusCode::CONFLICT,
                        "Conflict",
                        "the object has been modified",
                    );
                }
                json_response(StatusCode::OK, &self.apply(kind, object))
            }
            (Method::PATCH, Some(name), Some("status")) => {
                let patch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let ns = ns.unwrap_or_default();
                self.state.lock().unwrap().patches.push(StatusPatch {
                    kind: kind.kind,
                    name: name.clone(),
                    content_type,
                    field_manager: query.get("fieldManager").cloned().unwrap_or_default(),
                    body: patch.clone(),
                });
                let Some(mut object) = self.get(kind, &ns, &name) else {
                    return status(StatusCode::NOT_FOUND, "NotFound", "not found");
                };
                object["status"] = patch["status"].clone();
                json_response(StatusCode::OK, &self.apply(kind, object))
            }
            _ => status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "not served by the double",
            ),
        }
    }

    /// A list, in pages of `limit` objects when asked (as a real API server
    /// pages, and as `kube`'s watcher asks: 500 by default): each page
    /// names the snapshot's resourceVersion and, but the last, a
    /// `continue` token (the version and the last object's key, hex).
    fn list(
        &self,
        kind: Kind,
        ns: Option<&str>,
        query: &BTreeMap<String, String>,
    ) -> Response<Body> {
        let limit = query
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0)
            .unwrap_or(usize::MAX);
        let after = query.get("continue").and_then(|t| continued(t));
        let mut s = self.state.lock().unwrap();
        s.lists += 1;
        let rv = after.as_ref().map_or(s.rv, |(rv, ..)| *rv);
        let start = match &after {
            Some((_, n, name)) => Bound::Excluded((kind, n.clone(), name.clone())),
            None => Bound::Included((kind, String::new(), String::new())),
        };
        let mut items: Vec<&Value> = Vec::new();
        let mut more = None;
        for ((k, n, _), v) in s.objects.range((start, Bound::Unbounded)) {
            if *k != kind {
                break;
            }
            if ns.is_some_and(|ns| ns != n) {
                continue;
            }
            if items.len() == limit {
                more = items.last().map(|last: &&Value| {
                    let key = |f: &str| hex(last["metadata"][f].as_str().unwrap_or(""));
                    format!("{rv}-{}-{}", key("namespace"), key("name"))
                });
                break;
            }
            items.push(v);
        }
        let list = json!({
            "apiVersion": kind.api_version(),
            "kind": format!("{}List", kind.kind),
            "metadata": {"resourceVersion": rv.to_string(), "continue": more},
            "items": items,
        });
        json_response(StatusCode::OK, &list)
    }

    fn watch(&self, kind: Kind, query: &BTreeMap<String, String>) -> Response<Body> {
        let from: u64 = query
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let bookmarks = query
            .get("allowWatchBookmarks")
            .is_some_and(|b| b == "true");
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        let line = |v: Value| {
            let mut b = serde_json::to_vec(&v).unwrap();
            b.push(b'\n');
            Bytes::from(b)
        };
        let mut s = self.state.lock().unwrap();
        s.watches += 1;
        if s.compacted > 0 && from <= s.compacted {
            let gone = json!({"type": "ERROR", "object": {
                "kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": format!("too old resource version: {from} ({})", s.compacted),
                "reason": "Expired", "code": 410}});
            let _ = tx.send(line(gone));
            drop(tx);
            return stream_response(rx);
        }
        for e in s.history.iter().filter(|e| e.kind == kind && e.rv > from) {
            let _ = tx.send(line(json!({"type": e.kind_of_event, "object": e.object})));
        }
        if bookmarks {
            let mark = json!({"type": "BOOKMARK", "object": {
                "apiVersion": kind.api_version(), "kind": kind.kind,
                "metadata": {"resourceVersion": s.rv.to_string()}}});
            let _ = tx.send(line(mark));
        }
        let mut events = self.events.subscribe();
        let mut cut = self.cut.subscribe();
        drop(s);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    // A cut wins over events queued after it was sent.
                    biased;
                    _ = cut.recv() => return,
                    e = events.recv() => match e {
                        Ok(e) if e.kind == kind => {
                            if tx.send(line(json!({"type": e.kind_of_event, "object": e.object}))).is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => return,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        });
        stream_response(rx)
    }
}

/// `(resourceVersion, namespace, name)` of a `continue` token.
fn continued(token: &str) -> Option<(u64, String, String)> {
    let mut parts = token.splitn(3, '-');
    let rv = parts.next()?.parse().ok()?;
    let unhex = |h: &str| -> Option<String> {
        let bytes: Option<Vec<u8>> = (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
            .collect();
        String::from_utf8(bytes?).ok()
    };
    Some((rv, unhex(parts.next()?)?, unhex(parts.next()?)?))
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// What an API path names: kind, namespace, name, subresource.
type Target = (Kind, Option<String>, Option<String>, Option<String>);

/// The [`Target`] of an API path.
fn route(path: &str) -> Option<Target> {
    for kind in KINDS {
        let Some(rest) = path
            .strip_prefix(kind.prefix)
            .and_then(|r| r.strip_prefix('/'))
        else {
            continue;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let (ns, rest): (Option<String>, &[&str]) = match parts.as_slice() {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() && kind != NAMESPACE => {
                (Some(ns.to_string()), rest)
            }
            rest => (None, rest),
        };
        match rest {
            [p] if *p == kind.plural => return Some((kind, ns, None, None)),
            [p, name] if *p == kind.plural => {
                return Some((kind, ns, Some(name.to_string()), None))
            }
            [p, name, sub] if *p == kind.plural => {
                return Some((kind, ns, Some(name.to_string()), Some(sub.to_string())))
            }
            _ => {}
        }
    }
    None
}

fn json_response(code: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(serde_json::to_vec(v).unwrap())).boxed());
    *r.status_mut() = code;
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_response(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": message, "reason": reason, "code": code.as_u16()}),
    )
}

fn stream_response(rx: mpsc::UnboundedReceiver<Bytes>) -> Response<Body> {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}
