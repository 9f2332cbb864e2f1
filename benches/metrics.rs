//! What recording one request costs, in isolation: a `RequestRecord` started,
//! finished with a response and dropped (the work `proxy::handle` adds per
//! request), with metrics off, on, and on plus an access log line formatted
//! into a sink. Compare with the ~25 us a proxied request costs end to end.
//!
//!     cargo bench --bench metrics

use std::fs::OpenOptions;
use std::io;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use cutover::body::ProxyBody;
use cutover::metrics::access_log::JsonLines;
use cutover::metrics::log_writer::NonBlocking;
use cutover::metrics::Metrics;
use cutover::proxy::record::RequestRecord;
use cutover::route::Inherited;
use http::{Request, Response};
use http_body_util::Empty;
use tracing_subscriber::fmt::MakeWriter;

fn config(access_log: &str) -> cutover::config::Config {
    let yaml = format!(
        "listeners: [{{name: public, address: \"127.0.0.1:0\"}}]\n\
         groups: {{stable: {{endpoints: [\"127.0.0.1:1\"]}}, canary: {{endpoints: [\"127.0.0.1:2\"]}}}}\n\
         routes: [{{name: web, rules: [{{name: split, backends: [{{group: stable, weight: 90}}, {{group: canary, weight: 10}}]}}]}}]\n\
         access_log: {{mode: {access_log}}}\n"
    );
    cutover::config::parse_yaml(&yaml).expect("bench config")
}

fn one_request(table: &Arc<cutover::route::RouteTable>, req: &Request<Empty<Bytes>>) {
    let mut ex = RequestRecord::start(Arc::clone(table), req, cutover::clock::now());
    ex.chosen.rule = Some(0);
    ex.chosen.backend = Some(0);
    ex.chosen.endpoint = Some(0);
    let resp = Response::new(ProxyBody::local(Bytes::from_static(b"ok")));
    drop(ex.finish(resp));
}

fn record(c: &mut Criterion) {
    let req = Request::get("/items/42?page=1")
        .header("x-request-id", "bench")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let cases = [
        ("record/metrics_off", false, "off"),
        ("record/metrics_on", true, "off"),
        ("record/metrics_on+access_log", true, "on"),
    ];
    for (name, enabled, log) in cases {
        let registry = Inherited::with_metrics(Arc::new(Metrics::new(enabled)));
        let table =
            Arc::new(cutover::compile::compile(&config(log), &registry, 1).expect("compiles"));
        with_access_log(io::sink, || {
            c.bench_function(name, |b| b.iter(|| one_request(&table, &req)));
        });
    }
    // Where the line goes: /dev/null written directly (a write(2) per line on
    // the request thread) or through the access log's writer thread.
    let registry = Inherited::with_metrics(Arc::new(Metrics::new(true)));
    let table = Arc::new(cutover::compile::compile(&config("on"), &registry, 1).expect("compiles"));
    let devnull = || {
        OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .expect("/dev/null")
    };
    let direct = Mutex::new(devnull());
    with_access_log(direct, || {
        c.bench_function("record/access_log_direct_devnull", |b| {
            b.iter(|| one_request(&table, &req))
        });
    });
    let (queued, _flush) = NonBlocking::new(devnull()).expect("writer thread");
    with_access_log(queued, || {
        c.bench_function("record/access_log_queued_devnull", |b| {
            b.iter(|| one_request(&table, &req))
        });
    });
}

/// Runs `f` with an access-log subscriber writing to `writer`.
fn with_access_log<W>(writer: W, f: impl FnOnce())
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber = tracing_subscriber::registry().with(JsonLines::new(writer));
    tracing::subscriber::with_default(subscriber, f);
}

criterion_group!(benches, record);
criterion_main!(benches);
