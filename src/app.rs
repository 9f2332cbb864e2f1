//! Wires the shared state, binds the listeners (and the admin listener), and
//! runs until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::admin::{self, AdminOptions};
use crate::config::{Config, ConfigErrors};
use crate::listener::{self, ConnLimits};
use crate::metrics::Metrics;
use crate::reload::{self, BaseOrigin, Desired};
use crate::route::RouteTable;
use crate::upstream::EndpointRegistry;

/// State shared by every connection: the published routing table plus the
/// parts that outlive any one table.
#[derive(Debug)]
pub struct Shared {
    /// The live table; one `load` per request.
    pub routes: ArcSwap<RouteTable>,
    /// Per-endpoint state by address, carried across tables.
    pub endpoints: EndpointRegistry,
    /// Announces each published generation (health checks follow it).
    pub published: watch::Sender<u64>,
    /// Request metrics, connection gauges, the scrape.
    pub metrics: Arc<Metrics>,
    /// Downstream connection limits.
    pub limits: ConnLimits,
    /// What the operator asked for (base config + API overrides); its lock
    /// serialises changes and is never taken on the request path.
    pub desired: Mutex<Desired>,
    /// Where API changes are persisted (`--state-dir`).
    pub state_dir: Option<PathBuf>,
    /// Rejected reloads (invalid file), for logs and metrics.
    pub reload_errors: AtomicU64,
    /// Set on shutdown: `/ready` turns 503.
    pub draining: AtomicBool,
    /// Content hash of the last config file that was rejected, so one bad
    /// file is reported once.
    pub last_rejected_file: Mutex<Option<String>>,
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config is invalid.
    #[error("invalid config:\n{0}")]
    Config(#[from] ConfigErrors),
    /// A listener could not bind.
    #[error("listener {name}: cannot bind {address}: {source}")]
    Bind {
        /// Listener name.
        name: String,
        /// Address tried.
        address: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// A safety rule refused the settings (e.g. an exposed admin API without
    /// a token), or saved state could not be read.
    #[error("{0}")]
    Refused(String),
}

/// Process-level settings that are not part of the routing config.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Downstream connection limits.
    pub limits: ConnLimits,
    /// The admin listener (control API, probes); `None` runs without one.
    pub admin: Option<AdminOptions>,
    /// The config file, watched for changes.
    pub config_file: Option<PathBuf>,
    /// Content hash of the config file as it was loaded (see
    /// `reload::watch::content_hash`); read from the file when absent.
    pub config_hash: Option<String>,
    /// Where API changes are persisted and restored from.
    pub state_dir: Option<PathBuf>,
    /// Record no request metrics (`--no-metrics`): for the last percent of
    /// throughput, or to measure what metrics cost.
    pub no_metrics: bool,
}

/// A proxy with its listeners bound, ready to serve.
pub struct App {
    shared: Arc<Shared>,
    listeners: Vec<(String, TcpListener)>,
    admin: Option<(TcpListener, AdminOptions)>,
    watch: Option<reload::watch::FileWatch>,
    drain_timeout: Duration,
}

impl App {
    /// Compiles the config and binds every listener (port 0 picks a free
    /// port, see [`App::local_addr`]).
    pub async fn bind(config: &Config) -> Result<App, StartError> {
        Self::start(config, Options::default()).await
    }

    /// [`App::bind`] with explicit connection limits.
    pub async fn bind_with(config: &Config, limits: ConnLimits) -> Result<App, StartError> {
        let options = Options {
            limits,
            ..Options::default()
        };
        Self::start(config, options).await
    }

    /// Binds with all process settings: restores API changes from the state
    /// directory, binds the admin listener and remembers the file to watch.
    pub async fn start(config: &Config, options: Options) -> Result<App, StartError> {
        if let Some(admin) = &options.admin {
            admin.check_safe().map_err(StartError::Refused)?;
        }
        let metrics = Arc::new(Metrics::new(!options.no_metrics));
        let endpoints = EndpointRegistry::with_metrics(Arc::clone(&metrics));
        let table = crate::config::compile::compile(config, &endpoints, 1)?;
        let mut listeners = Vec::with_capacity(table.listeners.len());
        for l in table.listeners.iter() {
            listeners.push((l.name.to_string(), bind(&l.name, l.address).await?));
        }
        let admin = match options.admin {
            Some(a) => Some((bind("admin", a.address).await?, a)),
            None => None,
        };
        let base_origin = match &options.config_file {
            Some(path) => file_origin(path, options.config_hash.clone()),
            None => BaseOrigin::Startup,
        };
        let shared = Arc::new(Shared {
            routes: ArcSwap::from_pointee(table),
            endpoints,
            published: watch::Sender::new(1),
            metrics,
            limits: options.limits,
            desired: Mutex::new(Desired {
                base: config.clone(),
                base_origin,
                ..Desired::default()
            }),
            state_dir: options.state_dir,
            reload_errors: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            last_rejected_file: Mutex::new(None),
        });
        reload::state::restore(&shared).map_err(StartError::Refused)?;
        // Watch from here, not from `serve`, so no change made after `start`
        // returns can be missed.
        let watch = options.config_file.as_ref().and_then(|path| {
            match reload::watch::spawn(Arc::clone(&shared), path.clone()) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "cannot watch the config file; hot reload is off");
                    None
                }
            }
        });
        Ok(App {
            shared,
            listeners,
            admin,
            watch,
            drain_timeout: Duration::from_secs(30),
        })
    }

    /// The bound address of listener `name` (`admin` for the admin listener).
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        if name == "admin" {
            return self.admin.as_ref().and_then(|(l, _)| l.local_addr().ok());
        }
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, l)| l.local_addr().ok())
    }

    /// The shared state, e.g. to publish a new table.
    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Serves until `shutdown` completes: then `/ready` turns 503, listeners
    /// stop accepting, and open connections finish for up to the drain
    /// timeout.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut accept = JoinSet::new();
        for (index, (name, socket)) in self.listeners.into_iter().enumerate() {
            if let Ok(addr) = socket.local_addr() {
                tracing::info!(listener = %name, %addr, "listening");
            }
            let shared = Arc::clone(&self.shared);
            accept.spawn(listener::accept_loop(
                socket,
                index,
                shared,
                stop_rx.clone(),
            ));
        }
        if let Some((socket, options)) = self.admin {
            let shared = Arc::clone(&self.shared);
            tokio::spawn(admin::serve(socket, shared, options, stop_rx.clone()));
        }
        let _watch = self.watch;
        tokio::spawn(crate::upstream::health::supervise(Arc::clone(&self.shared)));
        drop(stop_rx);
        shutdown.await;
        self.shared.draining.store(true, Ordering::Relaxed);
        tracing::info!("shutting down: no new connections, draining open ones");
        let _ = stop_tx.send(true);
        while accept.join_next().await.is_some() {}
        let deadline = tokio::time::sleep(self.drain_timeout);
        tokio::pin!(deadline);
        tokio::select! {
            _ = stop_tx.closed() => tracing::info!("drained"),
            _ = &mut deadline => tracing::warn!("drain timeout; closing remaining connections"),
        }
    }

    /// Publishes a new config through the one reload path.
    pub fn publish(&self, config: &Config) -> Result<u64, ConfigErrors> {
        reload::publish(&self.shared, config)
    }
}

async fn bind(name: &str, address: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Bind {
            name: name.to_string(),
            address,
            source,
        })
}

fn file_origin(path: &std::path::Path, hash: Option<String>) -> BaseOrigin {
    let hash = hash.unwrap_or_else(|| {
        crate::config::load::read_path(path)
            .map(|r| r.hash)
            .unwrap_or_default()
    });
    BaseOrigin::File {
        path: path.display().to_string(),
        hash,
    }
}
