//! The `cutover` command line: thin wrapper over the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cutover::admin::AdminOptions;
use cutover::app::{App, DrainOptions, Options, Signal, StartError};
use cutover::config;
use cutover::config::resilience::Dur;
use cutover::metrics::access_log::JsonLines;
use cutover::metrics::log_writer::{FlushGuard, NonBlocking};

/// cutover: split HTTP traffic between versions of a service (canary,
/// blue/green) by weight, header or sticky hash.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve traffic with a config file or directory.
    Run(RunArgs),
    /// Validate config files or directories (cutover configs and Gateway API
    /// HTTPRoutes) and print every error with its field path.
    Check {
        /// Config files or directories to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Talk to a running proxy's control API.
    Ctl {
        /// Admin API base URL.
        #[arg(long, default_value = "http://127.0.0.1:9901", global = true)]
        admin: String,
        /// File holding the bearer token (else $CUTOVER_ADMIN_TOKEN).
        #[arg(long, global = true)]
        token_file: Option<PathBuf>,
        #[command(subcommand)]
        action: cutover::ctl::Action,
    },
    /// Add the cutover native sidecar to Kubernetes workloads (as in
    /// k8s/sidecar/): `kubectl get deploy web -o yaml | cutover inject |
    /// kubectl apply -f -`.
    #[command(long_about = INJECT_ABOUT)]
    Inject(InjectArgs),
    /// Start demo upstreams (stable, canary) and the proxy in front of them.
    Demo {
        /// Where the demo proxy listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The demo's admin listener (control API for `cutover ctl`, probes,
        /// metrics), on loopback so no token is needed.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
        /// Run the demo without the admin listener.
        #[arg(long)]
        no_admin: bool,
        /// Make the canary bad (1 request in 4 is a 503), start its
        /// rollout and watch the proxy roll it back by itself.
        #[arg(long, conflicts_with = "no_admin")]
        bad_canary: bool,
    },
}

/// `cutover run` flags.
#[derive(clap::Args)]
struct RunArgs {
    /// YAML config file, or a directory of them (every *.yaml/*.yml; cutover
    /// configs and Gateway API HTTPRoutes); watched and hot-reloaded on change.
    #[arg(short, long, default_value = "config/cutover.yaml")]
    config: PathBuf,
    /// Worker threads (default: one per CPU). 1 runs a single-threaded
    /// runtime, the cheapest per request.
    #[arg(long)]
    workers: Option<usize>,
    /// Admin listener (probes and control API). Loopback unless a token is set.
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: SocketAddr,
    /// Run without the admin listener.
    #[arg(long)]
    no_admin: bool,
    /// File holding the control API bearer token (else $CUTOVER_ADMIN_TOKEN).
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// Directory where control API changes are persisted and restored from.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Record no request metrics or live quantiles (`/metrics` keeps the
    /// process-level series); the access log follows the config.
    #[arg(long)]
    no_metrics: bool,
    /// After SIGTERM: keep serving, and accepting new connections, this long
    /// with /ready at 503, so load balancers stop sending here first.
    /// SIGINT (Ctrl-C) skips it, and so does a second signal.
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    drain_delay: Dur,
    /// Then: longest wait for requests in flight once the listeners are
    /// closed; connections still open after it are dropped. A further
    /// signal drops them at once.
    #[arg(long, default_value = "20s", value_name = "DURATION")]
    drain_timeout: Dur,
    /// DNS server (ip:port) for host-name endpoints; repeat for several.
    /// Default: the system's /etc/resolv.conf.
    #[arg(long, value_name = "ADDR")]
    dns_server: Vec<SocketAddr>,
    /// Controller mode: also serve the Gateway API objects of the cluster
    /// (GatewayClasses naming --controller-name, their Gateways, HTTPRoutes)
    /// with Services' ready pods as endpoints. Uses the in-cluster service
    /// account, or $KUBECONFIG / ~/.kube/config. The config file still
    /// supplies listeners, admin, access log and group policies.
    #[arg(long)]
    kubernetes: bool,
    /// The GatewayClass controllerName served in controller mode.
    #[arg(long, default_value = cutover::kubernetes::CONTROLLER_NAME, requires = "kubernetes")]
    controller_name: String,
    /// Controller mode with several replicas: the Lease (namespace/name)
    /// that picks the one replica writing status. Without it, this replica
    /// writes status. Its identity is $POD_NAME (else the host name).
    #[arg(long, value_name = "NAMESPACE/NAME", requires = "kubernetes")]
    status_lease: Option<String>,
    /// Controller mode: where clients reach this cutover (an IP address or
    /// a host name, e.g. its Service's), written to every Gateway's
    /// status.addresses; repeat for several.
    #[arg(long, value_name = "ADDRESS", requires = "kubernetes")]
    gateway_address: Vec<String>,
    /// Controller mode in a sidecar: the listener (by name) that is the
    /// outbound one. It serves the HTTPRoutes whose parentRef is a Service
    /// (Gateway API mesh profile) for requests addressed to that Service.
    #[arg(long, value_name = "LISTENER", requires = "kubernetes")]
    mesh_listener: Option<String>,
}

const INJECT_ABOUT: &str = "\
Add the cutover native sidecar to Kubernetes workloads, as in k8s/sidecar/:

  kubectl get deploy web -o yaml | cutover inject | kubectl apply -f -

Reads YAML documents (Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs,
CronJobs, Pods, and Lists of them; other kinds pass through unchanged) and
writes them back with cutover as an init container with restartPolicy: Always
(Kubernetes 1.29+): started before the app, stopped after it. It mounts the
ConfigMap --config-map as /etc/cutover/config and the Secret --admin-token-secret
(key `token`) as /etc/cutover/admin, serves --inbound-port (port `inbound`) and
the admin port (`admin`, probes /ready and /live). The app's HTTP probes on
--app-port are moved to `inbound`, so they reach the app through cutover.
Point the Service's targetPort at `inbound` and the app's outbound calls at
127.0.0.1:<--outbound-port>; the ConfigMap's listeners must use these ports.

Running it again changes nothing (or applies new flags); --uninject restores
the input exactly. Errors name the object and the field: a container already
using one of cutover's ports or names, a terminationGracePeriodSeconds too short
for the app's preStop sleep plus --drain-timeout. Nothing is written on error.";

/// `cutover inject` flags.
#[derive(clap::Args)]
struct InjectArgs {
    /// YAML file to read; `-` (the default) reads standard input.
    #[arg(default_value = "-", value_name = "FILE|-")]
    file: PathBuf,
    /// Take out a sidecar added by `cutover inject`, restoring the input.
    #[arg(long)]
    uninject: bool,
    /// The cutover image.
    #[arg(long, default_value = concat!("cutover:", env!("CARGO_PKG_VERSION")))]
    image: String,
    /// ConfigMap holding cutover's config [default: <workload name>-cutover].
    #[arg(long)]
    config_map: Option<String>,
    /// The ConfigMap key with the config.
    #[arg(long, default_value = "cutover.yaml")]
    config_key: String,
    /// Secret holding the admin API token under the key `token`.
    #[arg(long, default_value = "cutover-admin-token")]
    admin_token_secret: String,
    /// cutover's inbound listener port (containerPort `inbound`).
    #[arg(long, default_value_t = 8080)]
    inbound_port: u16,
    /// cutover's outbound listener port (on 127.0.0.1; no app container may use it).
    #[arg(long, default_value_t = 15001)]
    outbound_port: u16,
    /// cutover's admin port (containerPort `admin`).
    #[arg(long, default_value_t = 9901)]
    admin_port: u16,
    /// The port the app listens on behind cutover.
    #[arg(long, default_value_t = 8081)]
    app_port: u16,
    /// cutover's --drain-timeout after the app has exited.
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    drain_timeout: Dur,
}

/// mimalloc, not the system's malloc: a proxied request allocates its task
/// and futures (several KiB) and frees them on another poll; glibc serves
/// blocks that large from its shared bins, not its per-thread cache, at about
/// twice the instructions and with more cache misses (`benches/callgrind.sh`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tune_allocator();
    let _flush = init_logging();
    let cli = Cli::parse();
    match cli.command {
        Command::Check { files } => check(&files),
        Command::Run(args) => serve(args.workers, run(args)),
        Command::Ctl {
            admin,
            token_file,
            action,
        } => {
            let target = cutover::ctl::Target { admin, token_file };
            serve(
                Some(1),
                async move { cutover::ctl::run(&target, action).await },
            )
        }
        Command::Inject(args) => inject(args),
        Command::Demo {
            listen,
            admin,
            no_admin,
            bad_canary,
        } => serve(Some(1), async move {
            let admin = (!no_admin).then_some(admin);
            cutover::demo::run(listen, admin, bad_canary)
                .await
                .map_err(|e| e.to_string())
        }),
    }
}

/// Logs on stderr, the access log (target `access_log`, one JSON line per
/// request, nothing else on the line) on stdout through a writer thread;
/// `RUST_LOG` filters both (e.g. `RUST_LOG=info,access_log=off`). The guard
/// flushes the access log at exit.
fn init_logging() -> Option<FlushGuard> {
    use tracing_subscriber::filter::filter_fn;
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{fmt, EnvFilter};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let access = |m: &tracing::Metadata<'_>| m.target() == cutover::metrics::access_log::TARGET;
    // Colours only on a terminal: container log collectors store the bytes.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = fmt::layer()
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .with_filter(filter_fn(move |m| !access(m)));
    let (stdout, guard) = match NonBlocking::new(std::io::stdout()) {
        Ok((writer, guard)) => (BoxMakeWriter::new(writer), Some(guard)),
        Err(e) => {
            eprintln!("cutover: no access log thread ({e}); writing stdout directly");
            (BoxMakeWriter::new(std::io::stdout), None)
        }
    };
    let access_log = JsonLines::new(stdout).with_filter(filter_fn(access));
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(access_log)
        .init();
    guard
}

fn check(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for file in files {
        let result = config::load_path(file).and_then(|loaded| {
            for w in &loaded.origins.warnings.0 {
                eprintln!("{}: warning: {w}", file.display());
            }
            let registry = cutover::route::Inherited::default();
            let cfg = &loaded.config;
            cutover::compile::compile(cfg, &registry, 1)
                .map(|t| {
                    let rules = t.rules.len();
                    (t.listeners.len(), cfg.routes.len(), rules, t.groups.len())
                })
                .map_err(|e| loaded.origins.annotate(e))
        });
        match result {
            Ok((l, r, rules, g)) => println!(
                "{}: ok ({l} listeners, {r} routes, {rules} rules, {g} groups)",
                file.display()
            ),
            Err(errors) => {
                failed = true;
                eprintln!("{}: {} error(s)", file.display(), errors.0.len());
                for e in &errors.0 {
                    eprintln!("  {e}");
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn inject(args: InjectArgs) -> ExitCode {
    use std::io::{Read, Write};
    let input = if args.file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map(|_| s)
    } else {
        std::fs::read_to_string(&args.file)
    };
    let input = match input {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cutover inject: {}: {e}", args.file.display());
            return ExitCode::FAILURE;
        }
    };
    let options = cutover::inject::Options {
        image: args.image,
        config_map: args.config_map,
        config_key: args.config_key,
        token_secret: args.admin_token_secret,
        inbound_port: args.inbound_port,
        outbound_port: args.outbound_port,
        admin_port: args.admin_port,
        app_port: args.app_port,
        drain_timeout_secs: args.drain_timeout.0.as_secs_f64().ceil() as u64,
    };
    let out = if args.uninject {
        cutover::inject::uninject(&input)
    } else {
        cutover::inject::inject(&input, &options)
    };
    match out.map(|o| std::io::stdout().write_all(o.as_bytes())) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("cutover inject: cannot write: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("cutover inject: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: RunArgs) -> Result<(), String> {
    let controller = controller_options(&args)?;
    let path = args.config;
    let loaded = config::load_path(&path)
        .map_err(|e| format!("{}: invalid config:\n{e}", path.display()))?;
    if let Some(mesh) = controller.as_ref().and_then(|c| c.mesh_listener.as_ref()) {
        if !loaded.config.listeners.iter().any(|l| &l.name == mesh) {
            return Err(format!(
                "--mesh-listener {mesh:?}: {} has no listener of that name",
                path.display()
            ));
        }
    }
    for w in &loaded.origins.warnings.0 {
        tracing::warn!(warning = %w, "config loaded with a warning");
    }
    let shown = path.display().to_string();
    let token = admin_token(args.admin_token_file.as_deref())?;
    let options = Options {
        admin: (!args.no_admin).then_some(AdminOptions {
            address: args.admin,
            token,
        }),
        config_hash: Some(loaded.hash),
        config_file: Some(path),
        state_dir: args.state_dir,
        no_metrics: args.no_metrics,
        drain: DrainOptions {
            delay: args.drain_delay.0,
            timeout: args.drain_timeout.0,
        },
        dns_servers: args.dns_server,
        ..Options::default()
    };
    let app = App::start(&loaded.config, options)
        .await
        .map_err(|e| match e {
            // Compile errors name the file and HTTPRoute they came from.
            StartError::Config(errors) => {
                format!(
                    "{shown}: invalid config:\n{}",
                    loaded.origins.annotate(errors)
                )
            }
            other => other.to_string(),
        })?;
    let signals = shutdown_signals().map_err(|e| format!("cannot listen for signals: {e}"))?;
    if let Some(mut controller) = controller {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| format!("--kubernetes: cannot reach the API server: {e}"))?;
        let synced = std::sync::Arc::new(tokio::sync::Notify::new());
        controller.synced = Some(std::sync::Arc::clone(&synced));
        controller.certificates = std::sync::Arc::clone(&app.serving().certificates);
        tokio::spawn(cutover::kubernetes::run(app.tables(), client, controller));
        // Probes and listeners answer once the routes are read: until then
        // the pod is not ready and gets no traffic (a signal meanwhile is
        // handled as soon as serving starts).
        let wait = std::time::Duration::from_secs(60);
        if tokio::time::timeout(wait, synced.notified()).await.is_err() {
            tracing::warn!("--kubernetes: no table from the API server after {wait:?}; serving the file's routes meanwhile");
        }
    }
    tokio::spawn(release_memory_after_bursts(app.serving()));
    app.serve_signals(signals).await;
    Ok(())
}

/// Gives freed heap memory back to the system once a burst of connections
/// ended: the allocator keeps what a thread freed until that thread
/// allocates again, so after a flood of 10,000 connections RSS stayed at its
/// peak. It collects when the
/// open connections, or those of them holding buffers (not parked: a
/// parked idle HTTP/1.1 connection freed its hyper buffers), fell by half
/// (and by 64 or more: an unparked HTTP/1.1 connection holds about 28 KiB,
/// an h2c one 44 KiB) since their last peak,
/// at most once a second, so steady traffic never pays for the walk over the
/// arenas; then three more times, 30 s apart, for what the burst left behind
/// and is freed later (idle upstream connections leave the pool after 60 s).
async fn release_memory_after_bursts(serving: std::sync::Arc<cutover::serving::Serving>) {
    const AGAIN: u32 = 30;
    // Open connections, and those of them holding buffers (not parked).
    let mut peaks = [0i64; 2];
    let mut again = Vec::new();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    for second in 0u32.. {
        tick.tick().await;
        let open = serving.metrics.downstream_open();
        let now = [open, open - serving.metrics.downstream_parked()];
        let fell = (0..2).any(|i| peaks[i] - now[i] >= 64 && now[i] <= peaks[i] / 2);
        let due = again.first().is_some_and(|&at| at <= second);
        if due {
            again.remove(0);
        }
        if fell {
            release_free_heap();
            peaks = now;
            // Added to the ones an earlier fall set, not in their place: a
            // burst's clients park (a fall) and close seconds later (another),
            // and its idle upstream connections leave the pool 60 s after
            // the first.
            again.extend([second + AGAIN, second + 2 * AGAIN, second + 3 * AGAIN]);
            again.sort_unstable();
            again.dedup();
        } else {
            peaks = [peaks[0].max(now[0]), peaks[1].max(now[1])];
            if due {
                release_free_heap();
            }
        }
    }
}

// Positions in mimalloc 3's `mi_option_t` (include/mimalloc.h), which only
// grows: libmimalloc-sys names the older options only.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const PAGE_FULL_RETAIN: libmimalloc_sys::mi_option_t = 36;

/// mimalloc settings for memory that follows the open connections: a page
/// that falls empty goes back to the system at once (not a second later,
/// when a quiet worker may not be running to do it), and no empty pages are kept
/// per size class. With 1,000 idle HTTP/1.1 connections anonymous memory is
/// 7.9 MiB, not 10.4, and CPU per request is level (`benches/rss.sh`,
/// interleaved pairs). A `MIMALLOC_*` variable of the same name still wins.
fn tune_allocator() {
    for (option, variable) in [
        (PURGE_DELAY, "MIMALLOC_PURGE_DELAY"),
        (PAGE_FULL_RETAIN, "MIMALLOC_PAGE_FULL_RETAIN"),
    ] {
        if std::env::var_os(variable).is_none() {
            // SAFETY: mi_option_set takes no pointers; it stores the value
            // mimalloc reads at its next purge or page retirement.
            unsafe { libmimalloc_sys::mi_option_set(option, 0) };
        }
    }
}

/// Returns freed memory to the system now: mimalloc gives back what a
/// thread freed only when that thread allocates again, later, so a worker
/// that went quiet after a burst would keep its peak. `mi_collect(true)`
/// also purges the arenas every thread shares. Here in the binary, because
/// the library forbids unsafe code.
fn release_free_heap() {
    // SAFETY: mi_collect takes no pointers; it walks the calling thread's
    // heap and the shared arenas under mimalloc's own locks.
    unsafe { libmimalloc_sys::mi_collect(true) };
    tracing::debug!("free heap memory returned to the system");
}

/// The nice value of the controller's threads: when a request worker and a
/// controller round want the same core, the scheduler weighs the worker ~10×
/// higher (nice 0 vs 10); a core the workers leave idle still runs the
/// controller at full speed, so tables keep landing within the second.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const CONTROLLER_NICE: libc::c_int = 10;

/// Lowers the calling thread's priority to [`CONTROLLER_NICE`] (on Linux
/// nice is per thread). Here in the binary for the same reason as
/// [`release_free_heap`]. A refusal only costs latency: logged at debug.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn yield_to_requests() {
    // SAFETY: gettid and setpriority take no pointers; `who` is this
    // thread's own id, so only this thread's priority changes.
    let failed = unsafe {
        let tid = libc::gettid() as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, CONTROLLER_NICE) != 0
    };
    if failed {
        let error = std::io::Error::last_os_error();
        tracing::debug!(%error, "kubernetes: controller thread keeps the default priority");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn yield_to_requests() {}

/// `--kubernetes` and its flags; `None` in file mode.
fn controller_options(
    args: &RunArgs,
) -> Result<Option<cutover::kubernetes::ControllerOptions>, String> {
    if !args.kubernetes {
        return Ok(None);
    }
    let lease = match &args.status_lease {
        None => None,
        Some(at) => {
            let (namespace, name) = at
                .split_once('/')
                .filter(|(ns, n)| !ns.is_empty() && !n.is_empty())
                .ok_or_else(|| format!("--status-lease {at:?}: expected NAMESPACE/NAME"))?;
            let identity = std::env::var("POD_NAME")
                .ok()
                .filter(|n| !n.is_empty())
                .or_else(|| std::env::var("HOSTNAME").ok())
                .ok_or("--status-lease: set $POD_NAME to the pod's name")?;
            Some(cutover::kubernetes::lease::LeaseOptions {
                namespace: namespace.into(),
                name: name.into(),
                identity,
                duration: std::time::Duration::from_secs(15),
            })
        }
    };
    if let Some(bad) = args.gateway_address.iter().find(|a| !valid_address(a)) {
        return Err(format!(
            "--gateway-address {bad:?}: expected an IP address or a host name"
        ));
    }
    Ok(Some(cutover::kubernetes::ControllerOptions {
        controller_name: args.controller_name.clone(),
        lease,
        addresses: args.gateway_address.clone(),
        mesh_listener: args.mesh_listener.clone(),
        release_memory: Some(release_free_heap),
        thread_start: Some(yield_to_requests),
        ..Default::default()
    }))
}

/// An IP address or a DNS host name (what a Gateway's status.addresses
/// holds).
fn valid_address(a: &str) -> bool {
    a.parse::<std::net::IpAddr>().is_ok()
        || (!a.is_empty()
            && a.len() <= 253
            && a.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }))
}

/// The control API token: from the file, else `$CUTOVER_ADMIN_TOKEN`.
fn admin_token(file: Option<&std::path::Path>) -> Result<Option<String>, String> {
    let token = match file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| format!("admin token file {}: {e}", f.display()))?,
        ),
        None => std::env::var("CUTOVER_ADMIN_TOKEN").ok(),
    };
    Ok(token
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty()))
}

/// SIGTERM and SIGINT (Ctrl-C), in the order they arrive, for as long as
/// the runtime runs.
fn shutdown_signals() -> std::io::Result<tokio::sync::mpsc::UnboundedReceiver<Signal>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::spawn(async move {
            loop {
                let s = tokio::select! {
                    Some(()) = term.recv() => Signal::Terminate,
                    Some(()) = int.recv() => Signal::Interrupt,
                    else => return,
                };
                if tx.send(s).is_err() {
                    return;
                }
            }
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if tx.send(Signal::Interrupt).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// Builds the runtime and runs `main` on it.
fn serve(
    workers: Option<usize>,
    main: impl std::future::Future<Output = Result<(), String>>,
) -> ExitCode {
    let runtime = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n.max(1))
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cutover: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(main);
    // Tasks still running (health checks, a lingering admin connection) must
    // not hold the exit: the work that mattered is done.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cutover: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{PAGE_FULL_RETAIN, PURGE_DELAY};

    /// The positions `tune_allocator` sets hold the options it means: their
    /// mimalloc defaults (purge after 1,000 ms, keep 2 pages) read back. A
    /// mimalloc upgrade that moved them fails here, not in production.
    #[test]
    fn the_tuned_allocator_options_are_the_ones_named() {
        // SAFETY: mi_option_get takes no pointers.
        let (delay, retain) = unsafe {
            (
                libmimalloc_sys::mi_option_get(PURGE_DELAY),
                libmimalloc_sys::mi_option_get(PAGE_FULL_RETAIN),
            )
        };
        assert_eq!((delay, retain), (1000, 2), "purge_delay, page_full_retain");
    }
}
