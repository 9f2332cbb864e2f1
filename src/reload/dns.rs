//! DNS discovery: resolves every host-name endpoint of the live table to all
//! its A/AAAA addresses, again when the record's TTL (clamped to the group's
//! `dns` bounds) runs out, and republishes through [`super::change`] when an
//! answer changes. The compiler turns each address into an endpoint
//! (`upstream::dns`), so state carries over by address; a removed address
//! gets no new requests, while requests already on it finish on the table
//! they hold. A failed lookup keeps the last good addresses, is logged once
//! per failing spell and counted in `cutover_dns_failures_total{group}`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Tables;

/// A name to resolve, with the bounds and groups that use it.
struct Wanted {
    min: Duration,
    max: Duration,
    groups: Vec<Arc<crate::metrics::GroupSeries>>,
}

/// Builds the resolver: `servers` (`cutover run --dns-server`, tests), or
/// the system's `/etc/resolv.conf`. Its cache is off: each lookup asks, so
/// the TTL bounds here are the only ones.
pub fn resolver(servers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = if servers.is_empty() {
        TokioResolver::builder(provider)
            .map_err(|e| format!("cannot read the system DNS configuration: {e}"))?
    } else {
        let servers = servers
            .iter()
            .map(|s| {
                let mut ns = NameServerConfig::udp_and_tcp(s.ip());
                for c in &mut ns.connections {
                    c.port = s.port();
                }
                ns
            })
            .collect();
        TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
    };
    let opts: &mut ResolverOpts = builder.options_mut();
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    opts.cache_size = 0;
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 1;
    builder
        .build()
        .map_err(|e| format!("cannot build the DNS resolver: {e}"))
}

/// Runs discovery for as long as the process serves.
pub fn spawn(tables: Arc<Tables>, servers: Vec<SocketAddr>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let resolver = match resolver(&servers) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "DNS discovery is off: host-name endpoints resolve on connect");
                return;
            }
        };
        run(tables, resolver).await;
    })
}

async fn run(tables: Arc<Tables>, resolver: TokioResolver) {
    let mut published = tables.published.subscribe();
    let mut due: HashMap<Box<str>, Instant> = HashMap::new();
    loop {
        let wanted = wanted(&tables);
        due.retain(|name, _| wanted.contains_key(name));
        tables
            .inherited
            .upstream
            .dns
            .retain(&|name| wanted.contains_key(name));
        let now = Instant::now();
        let mut lookups = JoinSet::new();
        for (name, _) in wanted
            .iter()
            .filter(|(n, _)| due.get(*n).is_none_or(|d| *d <= now))
        {
            let (resolver, name) = (resolver.clone(), name.clone());
            lookups.spawn(async move {
                let result = lookup(&resolver, &name).await;
                (name, result)
            });
        }
        let mut changed = false;
        while let Some(joined) = lookups.join_next().await {
            // A lookup task that panicked has no due time: it is retried
            // on the next pass.
            let Ok((name, result)) = joined else { continue };
            let Some(w) = wanted.get(&name) else { continue };
            let at = Instant::now();
            let next = match result {
                Ok((addresses, ttl)) => {
                    if tables.inherited.upstream.dns.is_failing(&name) {
                        tracing::info!(endpoint = %name, addresses = addresses.len(), "DNS lookup succeeds again");
                    }
                    changed |= tables.inherited.upstream.dns.answer(
                        &name,
                        addresses,
                        crate::clock::wall_now(),
                    );
                    ttl.clamp(w.min, w.max)
                }
                Err(e) => {
                    if tables
                        .inherited
                        .upstream
                        .dns
                        .failure(&name, crate::clock::wall_now())
                    {
                        tracing::warn!(endpoint = %name, error = %e, "DNS lookup failed; keeping the last good addresses");
                    }
                    w.groups.iter().for_each(|g| g.dns_failure());
                    w.min
                }
            };
            due.insert(name, at + next);
        }
        if changed {
            if let Err(e) = super::change(&tables, None, "dns", |_| Ok(())) {
                tracing::warn!(error = %e, "DNS answers changed, but the table was not republished");
            }
            // Our own publish wakes the loop once more below: it finds the
            // same names, none due, and sleeps (marking it seen could hide
            // a file reload published in between).
        }
        let next = due.values().min().copied();
        tokio::select! {
            _ = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {}
            r = published.changed() => if r.is_err() { return },
        }
    }
}

/// Every host name of the live table, with the tightest bounds of the
/// groups that list it.
fn wanted(tables: &Tables) -> HashMap<Box<str>, Wanted> {
    let table = tables.routes.load_full();
    let mut out: HashMap<Box<str>, Wanted> = HashMap::new();
    for g in table.groups.iter() {
        for name in g.discovery.names.iter() {
            let w = out.entry(name.clone()).or_insert_with(|| Wanted {
                min: g.discovery.min_ttl,
                max: g.discovery.max_ttl,
                groups: Vec::new(),
            });
            w.min = w.min.min(g.discovery.min_ttl);
            w.max = w.max.min(g.discovery.max_ttl).max(w.min);
            w.groups.push(Arc::clone(&g.metrics));
        }
    }
    out
}

/// All addresses of `host:port` with the port, and the record's TTL.
async fn lookup(
    resolver: &TokioResolver,
    name: &str,
) -> Result<(Vec<SocketAddr>, Duration), String> {
    let (host, port) = name.rsplit_once(':').ok_or("no port")?;
    let port: u16 = port.parse().map_err(|_| "bad port")?;
    let answer = resolver.lookup_ip(host).await.map_err(|e| e.to_string())?;
    #[allow(
        clippy::disallowed_methods,
        reason = "hickory states the record's expiry on the std clock"
    )]
    let ttl = answer
        .valid_until()
        .saturating_duration_since(std::time::Instant::now());
    let addresses: Vec<SocketAddr> = answer.iter().map(|ip| SocketAddr::new(ip, port)).collect();
    if addresses.is_empty() {
        // An empty answer is treated as a failure: dropping every endpoint
        // of a group on one odd answer would turn a DNS blip into an outage.
        return Err("no A or AAAA records".into());
    }
    Ok((addresses, ttl))
}
