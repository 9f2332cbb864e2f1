//! Wires the pieces together and owns none of their state: builds the
//! serving state (`serving`), the table bookkeeping (`reload::Tables`) and
//! the rollout controller, binds the listeners (and the admin listener),
//! spawns the background tasks, and runs until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::admin::{self, AdminOptions};
use crate::config::{Config, ConfigErrors};
use crate::listener::{self, Phase};
use crate::metrics::Metrics;
use crate::reload::{self, BaseOrigin, Desired, Tables};
use crate::rollout::Control;
use crate::route::Inherited;
use crate::serving::{ConnLimits, Serving};

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
    /// `hash::content_hash`); read from the file when absent.
    pub config_hash: Option<String>,
    /// Where API changes are persisted and restored from.
    pub state_dir: Option<PathBuf>,
    /// Record no request metrics (`--no-metrics`): for the last percent of
    /// throughput, or to measure what metrics cost.
    pub no_metrics: bool,
    /// How shutdown drains.
    pub drain: DrainOptions,
    /// DNS servers for host-name endpoints (`--dns-server`); empty: the
    /// system's `/etc/resolv.conf`.
    pub dns_servers: Vec<SocketAddr>,
}

/// The shutdown timeline: `/ready` turns 503 at once; listeners keep
/// accepting for `delay` (load balancers and kube-proxy need time to see the
/// endpoint leave, and until then they still send new connections here);
/// then they close, and requests in flight get up to `timeout` to finish.
#[derive(Debug, Clone, Copy)]
pub struct DrainOptions {
    /// Time between `/ready` turning 503 and the listeners closing. The
    /// library default is zero (tests, embedders); `cutover run` uses 5 s.
    pub delay: Duration,
    /// Longest wait for requests in flight once the listeners are closed;
    /// connections still open then are dropped.
    pub timeout: Duration,
}

impl Default for DrainOptions {
    fn default() -> Self {
        DrainOptions {
            delay: Duration::ZERO,
            timeout: Duration::from_secs(30),
        }
    }
}

/// A shutdown request, as the process received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// From the orchestrator (SIGTERM): drain with the delay.
    Terminate,
    /// From a terminal (SIGINT, Ctrl-C): a person is waiting and no load
    /// balancer needs time, so skip the delay.
    Interrupt,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Terminate => "SIGTERM",
            Signal::Interrupt => "SIGINT",
        }
    }
}

/// A proxy with its listeners bound, ready to serve.
pub struct App {
    serving: Arc<Serving>,
    tables: Arc<Tables>,
    control: Arc<Control>,
    listeners: Vec<(String, TcpListener)>,
    admin: Option<(TcpListener, AdminOptions)>,
    watch: Option<reload::watch::FileWatch>,
    certs: reload::certs::CertWatch,
    drain: DrainOptions,
    dns_servers: Vec<SocketAddr>,
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
        let inherited = Inherited::with_metrics(Arc::clone(&metrics));
        let table = crate::compile::compile(config, &inherited, 1)?;
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
        let routes = Arc::new(ArcSwap::from_pointee(table));
        let serving = Arc::new(Serving {
            routes: Arc::clone(&routes),
            draining: AtomicBool::new(false),
            limits: options.limits,
            metrics,
            certificates: Arc::default(),
        });
        let desired = Desired {
            base: config.clone(),
            base_origin,
            ..Desired::default()
        };
        let tables = Arc::new(Tables::new(routes, inherited, desired, options.state_dir));
        let control = Arc::new(Control::new(Arc::clone(&tables)));
        reload::state::restore(&tables).map_err(StartError::Refused)?;
        // Watch from here, not from `serve`, so no change made after `start`
        // returns can be missed.
        let watch = options.config_file.as_ref().and_then(|path| {
            match reload::watch::spawn(Arc::clone(&tables), path.clone()) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "cannot watch the config file; hot reload is off");
                    None
                }
            }
        });
        let certs = reload::certs::spawn(&tables);
        Ok(App {
            serving,
            tables,
            control,
            listeners,
            admin,
            watch,
            certs,
            drain: options.drain,
            dns_servers: options.dns_servers,
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

    /// The table bookkeeping, e.g. to publish a new table.
    pub fn tables(&self) -> Arc<Tables> {
        Arc::clone(&self.tables)
    }

    /// The rollout controller, e.g. to start a rollout.
    pub fn control(&self) -> Arc<Control> {
        Arc::clone(&self.control)
    }

    /// What connections and requests read (drain flag, limits, metrics).
    pub fn serving(&self) -> Arc<Serving> {
        Arc::clone(&self.serving)
    }

    /// Serves until `shutdown` completes, then drains as after a SIGTERM
    /// (see [`App::serve_signals`]).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let signal = async move {
            shutdown.await;
            let _ = tx.send(Signal::Terminate);
            // Keep the sender: no further signal is not "channel closed".
            std::future::pending::<()>().await;
        };
        tokio::select! {
            () = self.serve_signals(rx) => {}
            () = signal => {}
        }
    }

    /// Serves until the first signal, then drains: `/ready` turns 503 at
    /// once; listeners keep accepting for the drain delay (skipped after
    /// [`Signal::Interrupt`]); then they close and requests in flight get up
    /// to the drain timeout. A second signal skips the rest of the delay; a
    /// signal during the final drain drops the remaining connections. The
    /// admin listener serves until the end, so probes see the 503.
    pub async fn serve_signals(self, mut signals: mpsc::UnboundedReceiver<Signal>) {
        let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
        let mut accept = JoinSet::new();
        for (index, (name, socket)) in self.listeners.into_iter().enumerate() {
            if let Ok(addr) = socket.local_addr() {
                tracing::info!(listener = %name, %addr, "listening");
            }
            let serving = Arc::clone(&self.serving);
            accept.spawn(listener::accept_loop(
                socket,
                index,
                serving,
                phase_rx.clone(),
            ));
        }
        drop(phase_rx);
        let (admin_stop, admin_rx) = watch::channel(false);
        let admin = self.admin.map(|(socket, options)| {
            let context = Arc::new(admin::Context {
                tables: Arc::clone(&self.tables),
                control: Arc::clone(&self.control),
                serving: Arc::clone(&self.serving),
            });
            tokio::spawn(admin::serve(socket, context, options, admin_rx))
        });
        let _watch = self.watch;
        let _certs = self.certs;
        let health = tokio::spawn(crate::upstream::health::supervise(
            Arc::clone(&self.tables.routes),
            self.tables.published.subscribe(),
        ));
        let rollouts = tokio::spawn(crate::rollout::supervise(Arc::clone(&self.control)));
        let dns = reload::dns::spawn(Arc::clone(&self.tables), self.dns_servers);

        let first = next_signal(&mut signals).await;
        self.serving.draining.store(true, Ordering::Relaxed);
        drain(self.drain, first, &mut signals, &phase_tx, accept).await;
        let _ = admin_stop.send(true);
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        health.abort();
        rollouts.abort();
        dns.abort();
    }

    /// Replaces the base config through the one reload path.
    pub fn replace_base(&self, config: &Config) -> Result<u64, ConfigErrors> {
        reload::replace_base(&self.tables, config)
    }
}

/// The drain after the first signal: the delay (still accepting), then
/// closed listeners and up to the timeout for open connections; ends with
/// every connection gone or cut.
async fn drain(
    options: DrainOptions,
    first: Signal,
    signals: &mut mpsc::UnboundedReceiver<Signal>,
    phase_tx: &watch::Sender<Phase>,
    mut accept: JoinSet<()>,
) {
    let started = crate::clock::now();
    let delay = match first {
        Signal::Terminate => options.delay,
        Signal::Interrupt => Duration::ZERO,
    };
    let _ = phase_tx.send(Phase::Draining);
    if delay.is_zero() {
        tracing::info!("{}: draining, /ready=503", first.name());
    } else {
        tracing::info!(
            "{}: draining, /ready=503, still accepting for {delay:?}",
            first.name()
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            s = next_signal(signals) => {
                tracing::info!("{}: skipping the rest of the drain delay", s.name());
            }
        }
    }

    let _ = phase_tx.send(Phase::Stopped);
    while accept.join_next().await.is_some() {}
    // Every receiver left belongs to an open connection.
    let open = phase_tx.receiver_count();
    tracing::info!(
        "stopped accepting; {open} connection(s) open, up to {:?} to finish",
        options.timeout
    );
    let deadline = tokio::time::sleep(options.timeout);
    tokio::pin!(deadline);
    tokio::select! {
        () = phase_tx.closed() => {
            tracing::info!("drained in {:.1?}", started.elapsed());
        }
        () = &mut deadline => {
            tracing::warn!(
                "drain deadline: closing {} connection(s)",
                phase_tx.receiver_count()
            );
        }
        s = next_signal(signals) => {
            tracing::warn!(
                "{}: closing {} connection(s) now",
                s.name(),
                phase_tx.receiver_count()
            );
        }
    }
    let _ = phase_tx.send(Phase::Cut);
}

/// The next signal; a closed channel means none will come.
async fn next_signal(signals: &mut mpsc::UnboundedReceiver<Signal>) -> Signal {
    match signals.recv().await {
        Some(s) => s,
        None => std::future::pending().await,
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
