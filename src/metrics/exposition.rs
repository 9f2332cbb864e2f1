//! `/metrics`: the live series encoded by prometheus-client (OpenMetrics text),
//! and the same in the classic Prometheus text format for clients that do not
//! ask for OpenMetrics (`curl | promtool check metrics`).

use std::fmt::{self, Write};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::histogram::Snapshot;
use super::mirror::MirrorOutcome;
use super::series::{Live, Series, CODE_CLASSES, OTHER};
use crate::config::model::Limit;

/// Encodes every live series at scrape time.
#[derive(Debug)]
pub struct SeriesCollector(pub Arc<Series>);

impl Collector for SeriesCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let live = self.0.live();
        requests(&mut enc, &live)?;
        analysis(&mut enc, &live)?;
        durations(&mut enc, &live)?;
        resilience(&mut enc, &live)?;
        let folded = self.0.folded.load(std::sync::atomic::Ordering::Relaxed);
        counter_value(
            &mut enc,
            "cutover_series_folded",
            "Config names counted under \"other\" because a series cap was reached.",
            folded,
        )?;
        counter_value(
            &mut enc,
            "cutover_access_log_dropped",
            "Access log lines dropped because stdout could not keep up.",
            super::log_writer::DROPPED.load(std::sync::atomic::Ordering::Relaxed),
        )
    }
}

/// Series whose zeros are noise, so only their non-zero values are shown:
/// no group (unmatched requests, rules with every weight 0) and the `other`
/// overflow.
fn quiet(names: &[&str]) -> bool {
    names.last().is_some_and(|g| g.is_empty()) || names.iter().all(|n| *n == OTHER)
}

/// One counter family from `(labels, value)` rows.
pub fn counter<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, u64)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        m.encode_family(&labels)?
            .encode_counter::<NoLabelSet, u64, f64>(&v, None)?;
    }
    Ok(())
}

/// A counter without labels.
pub fn counter_value(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    enc.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, u64, f64>(&v, None)
}

/// A gauge without labels.
pub fn gauge_value(enc: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> fmt::Result {
    enc.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

/// One gauge family from `(labels, value)` rows.
pub fn gauge<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, i64)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        m.encode_family(&labels)?.encode_gauge(&v)?;
    }
    Ok(())
}

fn histogram<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, Snapshot)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, s) in rows {
        m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
            s.sum_seconds(),
            s.count(),
            &s.buckets_seconds(),
            None,
        )?;
    }
    Ok(())
}

fn requests(enc: &mut DescriptorEncoder, live: &Live) -> fmt::Result {
    let mut rows = Vec::new();
    for ((route, rule, group), s) in &live.rule_groups {
        let quiet = quiet(&[route, rule, group]);
        for (reason, class, n) in s.counts() {
            if quiet && n == 0 {
                continue;
            }
            let labels = [
                ("route", &**route),
                ("rule", &**rule),
                ("group", &**group),
                ("code_class", CODE_CLASSES[class]),
                ("reason", reason.unwrap_or("")),
            ];
            rows.push((labels, n));
        }
    }
    counter(
        enc,
        "cutover_requests",
        "Requests by route, rule, group (version), code class and local-reply reason (empty: the upstream answered).",
        rows,
    )
}

/// The release analysis's counters per (route, rule, group): what a
/// rollout with `source: prometheus` sums over the replicas.
fn analysis(enc: &mut DescriptorEncoder, live: &Live) -> fmt::Result {
    type Pick = fn(&super::arms::ArmSnapshot) -> u64;
    let families: [(&str, &str, Pick); 4] = [
        (
            "cutover_analysis_requests",
            "Client requests through a group, plus attempts that failed there and were retried elsewhere (the rollout analysis's requests).",
            |s| s.trials,
        ),
        (
            "cutover_analysis_errors",
            "Of cutover_analysis_requests: 5xx (upstream or local), resets and timeouts.",
            |s| s.errors,
        ),
        (
            "cutover_analysis_timed",
            "Requests that ended while a rollout's latency threshold was in force.",
            |s| s.timed,
        ),
        (
            "cutover_analysis_slow",
            "Of cutover_analysis_timed: requests slower than that threshold.",
            |s| s.slow,
        ),
    ];
    let snapshots: Vec<_> = live
        .rule_groups
        .iter()
        .filter(|((route, rule, group), _)| !quiet(&[route, rule, group]))
        .map(|((route, rule, group), s)| {
            let labels = [("route", &**route), ("rule", &**rule), ("group", &**group)];
            (labels, s.arm.snapshot())
        })
        .collect();
    for (name, help, pick) in families {
        counter(
            enc,
            name,
            help,
            snapshots.iter().map(|(l, s)| (*l, pick(s))),
        )?;
    }
    Ok(())
}

fn durations(enc: &mut DescriptorEncoder, live: &Live) -> fmt::Result {
    let mut merged = Vec::new();
    let mut by_status = Vec::new();
    let mut attempts = Vec::new();
    for ((route, group), s) in &live.route_groups {
        let quiet = quiet(&[route, group]);
        let mut all = Snapshot::default();
        for (status, h) in s.by_status() {
            let snap = h.snapshot();
            if snap.count() == 0 {
                continue;
            }
            h.add_to(&mut all);
            let status = status.map_or_else(|| OTHER.to_string(), |c| c.to_string());
            by_status.push(((&**route, &**group, status), snap));
        }
        if !(quiet && all.count() == 0) {
            merged.push(([("route", &**route), ("group", &**group)], all));
        }
        if !(quiet && s.attempts() == 0) {
            attempts.push(([("route", &**route), ("group", &**group)], s.attempts()));
        }
    }
    histogram(
        enc,
        "cutover_request_duration_seconds",
        "Time from request head to the end of the response body, by route and group.",
        merged,
    )?;
    let rows = by_status.iter().map(|((r, g, st), s)| {
        (
            [("route", *r), ("group", *g), ("status", st.as_str())],
            s.clone(),
        )
    });
    histogram(
        enc,
        "http_request_duration_seconds",
        "The conventional request duration histogram (Flagger's kubernetes provider), by route, group and status code.",
        rows,
    )?;
    counter(
        enc,
        "cutover_upstream_attempts",
        "Requests sent to an upstream, first tries, retries and fallbacks alike.",
        attempts,
    )
}

fn resilience(enc: &mut DescriptorEncoder, live: &Live) -> fmt::Result {
    let route_counters = [
        ("cutover_retries", "Retries sent."),
        (
            "cutover_fallbacks",
            "Requests that fell back to another group.",
        ),
        (
            "cutover_retry_budget_exhausted",
            "Retries refused by the retry budget.",
        ),
    ];
    for (i, (name, help)) in route_counters.into_iter().enumerate() {
        let rows = live
            .routes
            .iter()
            .map(|(route, s)| ([("route", &**route)], s.values()[i]))
            .filter(|(l, v)| !(*v == 0 && quiet(&[l[0].1])));
        counter(enc, name, help, rows)?;
    }
    group_counters(enc, live)?;
    mirror_counters(enc, live)
}

/// `cutover_mirror_requests_total{route,group,outcome}`: every outcome of
/// every live (route, mirror group), zeros included, so a dashboard finds
/// the series before the first copy.
fn mirror_counters(enc: &mut DescriptorEncoder, live: &Live) -> fmt::Result {
    let rows = live.mirrors.iter().flat_map(|((route, group), s)| {
        MirrorOutcome::ALL
            .iter()
            .zip(s.values())
            .map(move |(o, n)| {
                (
                    [
                        ("route", &**route),
                        ("group", &**group),
                        ("outcome", o.label()),
                    ],
                    n,
                )
            })
    });
    let rows = rows.filter(|(l, n)| !(*n == 0 && quiet(&[l[0].1, l[1].1])));
    counter(
        enc,
        "cutover_mirror_requests",
        "Mirrored copies of requests (Gateway API RequestMirror), by route, mirror group and outcome; never part of the primary's series.",
        rows,
    )
}

fn group_counters(enc: &mut DescriptorEncoder, live: &Live) -> fmt::Result {
    let groups: Vec<_> = live
        .groups
        .iter()
        .map(|(g, s)| (&**g, s.values()))
        .filter(|(g, v)| !(quiet(&[g]) && *v == (0, 0, [0; Limit::ALL.len()])))
        .collect();
    counter(
        enc,
        "cutover_outlier_ejections",
        "Endpoints ejected by outlier detection, by group.",
        groups.iter().map(|(g, v)| ([("group", *g)], v.0)),
    )?;
    gauge(
        enc,
        "cutover_outlier_ejections_active",
        "Endpoints currently ejected, by group.",
        groups.iter().map(|(g, v)| ([("group", *g)], v.1)),
    )?;
    let overflows = groups.iter().flat_map(|(g, v)| {
        Limit::ALL
            .iter()
            .zip(v.2)
            .map(move |(l, n)| ([("group", *g), ("limit", l.label())], n))
    });
    counter(
        enc,
        "cutover_overflows",
        "Requests refused by a circuit-breaker limit, by group and limit.",
        overflows,
    )?;
    let dns = live.groups.iter().map(|(g, s)| (&**g, s.dns_failures()));
    let dns: Vec<_> = dns.filter(|(g, n)| !(quiet(&[g]) && *n == 0)).collect();
    counter(
        enc,
        "cutover_dns_failures",
        "Failed DNS lookups of host-name endpoints (the last good addresses stay), by group.",
        dns.iter().map(|(g, n)| ([("group", *g)], *n)),
    )?;
    let traffic: Vec<_> = live
        .groups
        .iter()
        .map(|(g, s)| (&**g, s.upstream_traffic()))
        .filter(|(g, (requests, _))| !(quiet(&[g]) && *requests == 0))
        .collect();
    counter(
        enc,
        "cutover_upstream_requests",
        "Requests (attempts) sent to the group's endpoints, by group.",
        traffic.iter().map(|(g, t)| ([("group", *g)], t.0)),
    )?;
    counter(
        enc,
        "cutover_upstream_connects",
        "Upstream connections opened, by group; 1 - connects/requests is the connection reuse ratio.",
        traffic.iter().map(|(g, t)| ([("group", *g)], t.1)),
    )
}

/// OpenMetrics text (what prometheus-client writes) -> Prometheus text format
/// 0.0.4: counter families are named with their `_total` suffix, `# UNIT`
/// and `# EOF` lines are dropped. Samples are identical in both formats.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut held_help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some(h) = held_help.replace(rest) {
                let _ = writeln!(out, "# HELP {h}");
            }
            continue;
        }
        let counter_name = line
            .strip_prefix("# TYPE ")
            .and_then(|t| t.strip_suffix(" counter"));
        match (counter_name, held_help.take()) {
            (Some(name), help) => {
                if let Some(h) = help {
                    let text = h.strip_prefix(name).unwrap_or(h);
                    let _ = writeln!(out, "# HELP {name}_total{text}");
                }
                let _ = writeln!(out, "# TYPE {name}_total counter");
            }
            (None, help) => {
                if let Some(h) = help {
                    let _ = writeln!(out, "# HELP {h}");
                }
                let _ = writeln!(out, "{line}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::to_prometheus_text;

    #[test]
    fn counters_get_their_total_suffix_in_the_classic_format() {
        let om =
            "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total{x=\"1\"} 3\n\
                  # HELP g A gauge.\n# TYPE g gauge\ng 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\na_requests_total{x=\"1\"} 3\n\
             # HELP g A gauge.\n# TYPE g gauge\ng 1\n"
        );
    }
}
