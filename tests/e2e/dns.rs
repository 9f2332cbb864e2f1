//! DNS discovery against a DNS server on loopback that the test controls:
//! a host-name endpoint becomes one endpoint per A record ("pods" on
//! 127.0.0.2, 127.0.0.3, ...: all loopback on Linux, one port for all), and
//! scale-up, scale-down, a replaced pod and a failing server lose no request.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{rdata::A, RData, Record, RecordType};
use tokio::net::UdpSocket;

use crate::support::*;

/// What the test DNS server answers.
#[derive(Default)]
struct Zone {
    /// Name (no trailing dot) -> A records and their TTL.
    records: HashMap<String, (Vec<Ipv4Addr>, u32)>,
    /// Answer SERVFAIL to everything.
    failing: bool,
    /// A queries received.
    queries: usize,
}

/// A UDP DNS server on 127.0.0.1:0 answering A queries from its zone
/// (AAAA: no records).
struct DnsServer {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
}

impl DnsServer {
    async fn start() -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let zone = Arc::new(Mutex::new(Zone::default()));
        let z = Arc::clone(&zone);
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let reply = answer(&query, &mut z.lock().unwrap());
                let _ = socket.send_to(&reply.to_vec().unwrap(), from).await;
            }
        });
        DnsServer { addr, zone }
    }

    fn set(&self, name: &str, ips: &[Ipv4Addr], ttl: u32) {
        let mut z = self.zone.lock().unwrap();
        z.records.insert(name.into(), (ips.to_vec(), ttl));
    }

    fn fail(&self, failing: bool) {
        self.zone.lock().unwrap().failing = failing;
    }

    fn queries(&self) -> usize {
        self.zone.lock().unwrap().queries
    }
}

fn answer(query: &Message, zone: &mut Zone) -> Message {
    let id = query.metadata.id;
    let mut reply = Message::response(id, OpCode::Query);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.authoritative = true;
    reply.add_queries(query.queries.clone());
    let Some(q) = query.queries.first() else {
        reply.metadata.response_code = ResponseCode::FormErr;
        return reply;
    };
    if q.query_type() == RecordType::A {
        zone.queries += 1;
    }
    if zone.failing {
        reply.metadata.response_code = ResponseCode::ServFail;
        return reply;
    }
    let name = q.name().to_string();
    let Some((ips, ttl)) = zone.records.get(name.trim_end_matches('.')) else {
        reply.metadata.response_code = ResponseCode::NXDomain;
        return reply;
    };
    if q.query_type() == RecordType::A {
        for ip in ips {
            reply.add_answer(Record::from_rdata(q.name().clone(), *ttl, RData::A(A(*ip))));
        }
    }
    reply.metadata.message_type = MessageType::Response;
    reply
}

/// The pods, all on one port, `127.0.0.{2,3,...}`.
struct Pods {
    port: u16,
    pods: Vec<(Upstream, tokio::task::JoinHandle<()>)>,
}

impl Pods {
    async fn start(names: &[&'static str]) -> Pods {
        let (first, accept) = upstream_at(names[0], "127.0.0.2:0".parse().unwrap()).await;
        let port = first.addr.port();
        let mut pods = vec![(first, accept)];
        for (i, name) in names.iter().enumerate().skip(1) {
            let addr = SocketAddr::from((ip(i), port));
            pods.push(upstream_at(name, addr).await);
        }
        Pods { port, pods }
    }

    fn count(&self, i: usize) -> usize {
        self.pods[i].0.count()
    }
}

/// Pod `i`'s address: 127.0.0.(i+2).
fn ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + i as u8)
}

/// The proxy, its admin address and its state, resolving through `dns`.
async fn start_proxy(
    dns: &DnsServer,
    group_yaml: &str,
) -> (SocketAddr, String, Arc<cutover::reload::Tables>) {
    let yaml = format!(
        "listeners: [{{name: public, address: \"127.0.0.1:0\"}}]\ngroups:\n  web: {group_yaml}\nroutes: [{{name: web, rules: [{{name: all, backends: [{{group: web}}]}}]}}]\n"
    );
    let proxy = launch(&yaml)
        .admin(None)
        .with(|o| o.dns_servers = vec![dns.addr])
        .start()
        .await;
    let (addr, admin, tables) = (proxy.addr, proxy.admin_url(""), Arc::clone(&proxy.app));
    // The proxy runs until the test's runtime ends.
    std::mem::forget(proxy);
    (addr, admin, tables)
}

/// The group's endpoint addresses in the live table.
fn endpoints(shared: &cutover::reload::Tables) -> Vec<String> {
    let table = shared.routes.load();
    let mut e: Vec<String> = table.groups[0]
        .endpoints
        .iter()
        .map(|e| e.state.address.to_string())
        .collect();
    e.sort();
    e
}

/// Clients sending requests back to back until `stop`; every status seen.
fn load(addr: SocketAddr, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<Vec<u16>>> {
    (0..4)
        .map(|_| {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let c = http1_client();
                let mut statuses = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(20);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    statuses.push(
                        get(&c, &format!("http://{addr}/"), &[])
                            .await
                            .status
                            .as_u16(),
                    );
                }
                statuses
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_scale_down_and_a_replaced_pod_lose_no_request() {
    let dns = DnsServer::start().await;
    let pods = Pods::start(&["a", "b", "c"]).await;
    let port = pods.port;
    dns.set("web.test", &[ip(0)], 1);
    let group =
        format!("{{endpoints: [\"web.test:{port}\"], dns: {{min_ttl: 100ms, max_ttl: 300ms}}}}");
    let (addr, _, shared) = start_proxy(&dns, &group).await;
    let a = format!("127.0.0.2:{port}");
    let (b, c) = (format!("127.0.0.3:{port}"), format!("127.0.0.4:{port}"));
    until("first answer", Duration::from_secs(3), || {
        endpoints(&shared) == [a.clone()]
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(addr, Arc::clone(&stop));
    let state_of_a = Arc::clone(&shared.routes.load().groups[0].endpoints[0].state);
    // Scale-up: b joins and gets traffic.
    dns.set("web.test", &[ip(0), ip(1)], 1);
    until("b gets traffic", Duration::from_secs(3), || {
        pods.count(1) > 20
    })
    .await;
    assert_eq!(endpoints(&shared), [a.clone(), b.clone()]);
    let table = shared.routes.load();
    let kept = table.groups[0]
        .endpoints
        .iter()
        .find(|e| e.state.address.as_ref() == a);
    assert!(
        kept.is_some_and(|e| Arc::ptr_eq(&e.state, &state_of_a)),
        "a's state (in flight, outlier, health) carried over by address"
    );

    // Scale-down: a leaves.
    dns.set("web.test", &[ip(1)], 1);
    until("a leaves", Duration::from_secs(3), || {
        endpoints(&shared) == [b.clone()]
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let a_after = pods.count(0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        pods.count(0),
        a_after,
        "a removed endpoint gets no new requests"
    );
    // Pod replaced: b goes, c comes; then b's server stops accepting. A
    // request in flight on b while it leaves finishes there.
    let lingering = tokio::spawn(async move {
        let got = get(&http1_client(), &format!("http://{addr}/linger"), &[]).await;
        (got.status.as_u16(), got.body)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    dns.set("web.test", &[ip(2)], 1);
    until("c gets traffic", Duration::from_secs(3), || {
        pods.count(2) > 20
    })
    .await;
    assert_eq!(endpoints(&shared), [c]);
    assert_eq!(lingering.await.unwrap(), (200, "b".to_string()));
    pods.pods[1].1.abort();
    tokio::time::sleep(Duration::from_millis(300)).await;

    stop.store(true, Ordering::Relaxed);
    let mut statuses = Vec::new();
    for c in clients {
        statuses.extend(c.await.unwrap());
    }
    let lost = statuses.iter().filter(|s| **s != 200).count();
    assert!(statuses.len() > 200, "{} requests", statuses.len());
    assert_eq!(lost, 0, "of {} requests", statuses.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dns_server_keeps_the_last_good_addresses() {
    let dns = DnsServer::start().await;
    let pods = Pods::start(&["a", "b"]).await;
    let port = pods.port;
    dns.set("web.test", &[ip(0), ip(1)], 1);
    let group =
        format!("{{endpoints: [\"web.test:{port}\"], dns: {{min_ttl: 100ms, max_ttl: 200ms}}}}");
    let (addr, admin, shared) = start_proxy(&dns, &group).await;
    let both = [format!("127.0.0.2:{port}"), format!("127.0.0.3:{port}")];
    until("first answer", Duration::from_secs(3), || {
        endpoints(&shared) == both
    })
    .await;
    dns.fail(true);
    let c = http1_client();
    let failures = || async {
        let metrics = get(&c, &format!("{admin}/metrics"), &[]).await.body;
        let line = metrics
            .lines()
            .find(|l| l.starts_with("cutover_dns_failures_total{group=\"web\"}"))
            .map(str::to_string);
        line.and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let start = Instant::now();
    while failures().await < 3.0 {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "no failures counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(endpoints(&shared), both, "the last good addresses stay");
    for _ in 0..20 {
        assert_eq!(get(&c, &format!("http://{addr}/"), &[]).await.status, 200);
    }
    assert!(
        pods.count(0) >= 10 && pods.count(1) >= 10,
        "both still get traffic"
    );
    let status = get(&c, &format!("{admin}/v1/status"), &[]).await.body;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["dns"]["web"][0]["failing"], true, "{status}");
    assert_eq!(
        status["dns"]["web"][0]["addresses"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    // Back: the answer is taken again.
    dns.set("web.test", &[ip(1)], 1);
    dns.fail(false);
    until("recovers", Duration::from_secs(3), || {
        endpoints(&shared) == both[1..]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttls_are_honoured_within_their_bounds() {
    let dns = DnsServer::start().await;
    let pods = Pods::start(&["a", "b"]).await;
    let port = pods.port;
    // TTL 0, min_ttl 500ms: at most a few lookups a second, not a loop.
    dns.set("zero.test", &[ip(0)], 0);
    // TTL one hour, max_ttl 500ms: a change is seen within about that.
    dns.set("long.test", &[ip(0)], 3600);
    let group = format!(
        "{{endpoints: [\"zero.test:{port}\", \"long.test:{port}\"], dns: {{min_ttl: 500ms, max_ttl: 500ms}}}}"
    );
    let (_, admin, shared) = start_proxy(&dns, &group).await;
    let a = format!("127.0.0.2:{port}");
    until("first answers", Duration::from_secs(3), || {
        endpoints(&shared) == [a.clone()]
    })
    .await;
    let start = Instant::now();
    let before = dns.queries();
    dns.set("long.test", &[ip(1)], 3600);
    until(
        "the long TTL is cut to max_ttl",
        Duration::from_secs(2),
        || endpoints(&shared).len() == 2,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(start.elapsed())).await;
    let queries = dns.queries() - before;
    // Two names, one lookup each per 500 ms over ~1.5 s: ~6; a loop would be thousands.
    assert!((2..=10).contains(&queries), "{queries} A queries in 1.5 s");

    // The status shows the resolved addresses and when.
    let status = get(&http1_client(), &format!("{admin}/v1/status"), &[])
        .await
        .body;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let names = status["dns"]["web"].as_array().unwrap();
    assert_eq!(names.len(), 2, "{status}");
    assert_eq!(
        names[1]["addresses"],
        serde_json::json!([format!("127.0.0.3:{port}")])
    );
    assert!(names[1]["resolved_at_unix"].as_f64().unwrap() > 1.7e9);
}

#[test]
fn check_does_not_resolve_and_ip_literals_stay() {
    let dir = TempDir::new("dns-check");
    let file = dir.write(
        "c.yaml",
        "listeners: [{name: public, address: \"127.0.0.1:0\"}]\ngroups:\n  web: {endpoints: [\"no-such-name.invalid:80\", \"10.0.0.5:80\"]}\nroutes: [{name: web, rules: [{name: all, backends: [{group: web}]}]}]\n",
    );
    assert_check_passes(&file);
    let config = cutover::config::load_path(&file).unwrap().config;
    let registry = cutover::route::Inherited::default();
    let table = cutover::compile::compile(&config, &registry, 1).unwrap();
    let g = &table.groups[0];
    assert_eq!(
        &*g.discovery.names,
        ["no-such-name.invalid:80".into()] as [Box<str>; 1]
    );
    let e: Vec<&str> = g.endpoints.iter().map(|e| &*e.state.address).collect();
    assert_eq!(e, ["no-such-name.invalid:80", "10.0.0.5:80"]);
}
