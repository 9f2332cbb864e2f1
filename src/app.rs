//! Wires the shared state, binds the listeners and runs until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{Config, ConfigErrors};
use crate::listener::{self, ConnLimits};
use crate::reload;
use crate::route::RouteTable;
use crate::upstream::pool::UpstreamPool;
use crate::upstream::EndpointRegistry;

/// State shared by every connection: the published routing table plus the
/// parts that outlive any one table.
#[derive(Debug)]
pub struct Shared {
    /// The live table; one `load` per request.
    pub routes: ArcSwap<RouteTable>,
    /// Per-endpoint state by address, carried across tables.
    pub endpoints: EndpointRegistry,
    /// Upstream connection pools.
    pub pool: UpstreamPool,
    /// Downstream connection limits.
    pub limits: ConnLimits,
    /// Serializes publishers (never taken on the request path).
    pub publish_lock: std::sync::Mutex<()>,
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
}

/// A proxy with its listeners bound, ready to serve.
pub struct App {
    shared: Arc<Shared>,
    listeners: Vec<(String, TcpListener)>,
    drain_timeout: Duration,
}

impl App {
    /// Compiles the config and binds every listener (port 0 picks a free
    /// port, see [`App::local_addr`]).
    pub async fn bind(config: &Config) -> Result<App, StartError> {
        Self::bind_with(config, ConnLimits::default()).await
    }

    /// [`App::bind`] with explicit connection limits.
    pub async fn bind_with(config: &Config, limits: ConnLimits) -> Result<App, StartError> {
        let endpoints = EndpointRegistry::default();
        let table = crate::config::compile::compile(config, &endpoints, 1)?;
        let mut listeners = Vec::with_capacity(table.listeners.len());
        for l in table.listeners.iter() {
            let socket = TcpListener::bind(l.address)
                .await
                .map_err(|source| StartError::Bind {
                    name: l.name.to_string(),
                    address: l.address,
                    source,
                })?;
            listeners.push((l.name.to_string(), socket));
        }
        let shared = Arc::new(Shared {
            routes: ArcSwap::from_pointee(table),
            endpoints,
            pool: UpstreamPool::new(),
            limits,
            publish_lock: std::sync::Mutex::new(()),
        });
        Ok(App {
            shared,
            listeners,
            drain_timeout: Duration::from_secs(30),
        })
    }

    /// The bound address of listener `name`.
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, l)| l.local_addr().ok())
    }

    /// The shared state, e.g. to publish a new table.
    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Serves until `shutdown` completes, then stops accepting and lets open
    /// connections finish for up to the drain timeout.
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
        drop(stop_rx);
        shutdown.await;
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
