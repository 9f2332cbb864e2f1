//! `GET /v1/stats`: the last minute per route and group (version), as JSON:
//! requests/s, error rate and latency quantiles from the live windows.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::series::{Series, OTHER};

/// Quantiles reported, with their JSON names.
const QUANTILES: [(&str, f64); 4] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99_9", 0.999)];

/// The stats document. Groups are listed while a table uses them; the
/// unmatched (`""`) and overflow (`other`) entries only when they saw
/// requests.
pub fn to_json(series: &Series) -> Value {
    let live = series.live();
    let mut routes: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for ((route, group), s) in &live.route_groups {
        let w = s.window.read();
        let quiet = group.is_empty() || (**route == *OTHER && **group == *OTHER);
        if quiet && w.requests == 0 {
            continue;
        }
        let latency: serde_json::Map<String, Value> = QUANTILES
            .iter()
            .map(|(name, q)| (name.to_string(), json!(w.quantile_ms(*q))))
            .collect();
        let error_rate = if w.requests == 0 {
            0.0
        } else {
            w.errors as f64 / w.requests as f64
        };
        routes.entry(route).or_default().push(json!({
            "group": &**group,
            "requests": w.requests,
            "requests_per_second": w.requests as f64 / w.span_secs,
            "errors": w.errors,
            "error_rate": error_rate,
            "latency_ms": latency,
            "window_seconds": w.span_secs,
        }));
    }
    let routes: Vec<Value> = routes
        .into_iter()
        .map(|(route, groups)| json!({ "route": route, "groups": groups }))
        .collect();
    json!({
        "window": "last 60 s in 10 s slices; errors are 5xx responses, local or upstream",
        "routes": routes,
    })
}
