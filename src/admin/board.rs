//! What the dashboard shows, as one JSON document: per route and rule the
//! desired, effective and observed weights, per group the latest second of
//! traffic, the rollouts' verdicts with their evidence, the config's
//! generation and origin, the overrides (who changed what), reload errors
//! and outlier ejections. Built once a second (and on each publish) for
//! every open dashboard, never per request.

use serde_json::{json, Value};

use super::history::{History, Key};
use super::Context;
use crate::clock::now_ms;
use crate::config::model::OnGroupUnavailable;
use crate::config::Config;
use crate::reload::{self, overrides};
use crate::route::{RouteTable, Rule};

/// The dashboard's state document.
pub fn state(shared: &Context, history: &History, unix_ms: u64) -> Value {
    let (_, desired, effective) = reload::snapshot(&shared.tables);
    let table = shared.tables.routes.load_full();
    let now = now_ms();
    let mut routes: Vec<(&str, Vec<Value>)> = Vec::new();
    for rule in table.rules.iter() {
        let doc = rule_doc(&table, &effective, history, rule, now);
        match routes.iter_mut().find(|(name, _)| *name == &*rule.route) {
            Some((_, rules)) => rules.push(doc),
            None => routes.push((&rule.route, vec![doc])),
        }
    }
    let routes: Vec<Value> = routes
        .into_iter()
        .map(|(route, rules)| json!({ "route": route, "rules": rules }))
        .collect();
    let endpoints: Vec<Value> = table
        .groups
        .iter()
        .flat_map(|g| {
            g.endpoints.iter().map(move |e| {
                json!({
                    "group": &*g.name,
                    "endpoint": &*e.state.address,
                    "ejected": e.state.outlier.is_ejected(now),
                    "healthy": e.state.healthy.load(std::sync::atomic::Ordering::Relaxed),
                    "ejections": e.state.outlier.ejections(),
                })
            })
        })
        .collect();
    json!({
        "time_ms": unix_ms,
        "generation": table.generation,
        "origin": desired.base_origin,
        "overrides": desired.overrides,
        "reload_errors": shared.tables.reload_errors.load(std::sync::atomic::Ordering::Relaxed),
        "draining": shared.serving.draining.load(std::sync::atomic::Ordering::Relaxed),
        "routes": routes,
        "endpoints": endpoints,
        "analysis": super::analysis::all_json(shared),
    })
}

/// One rule: its groups with their three weights and latest sample.
fn rule_doc(
    table: &RouteTable,
    desired: &Config,
    history: &History,
    rule: &Rule,
    now: u64,
) -> Value {
    let asked = overrides::find_rule(desired, &rule.route, &rule.name)
        .map(overrides::weights_of)
        .unwrap_or_default();
    let groups: Vec<(&str, u32, bool)> = rule
        .split
        .backends()
        .filter_map(|(g, w)| {
            let group = table.groups.get(g as usize)?;
            Some((&*group.name, w, group.has_available(now)))
        })
        .collect();
    let effective = effective_weights(&groups, rule.policy.on_unavailable);
    let keys: Vec<Key> = groups
        .iter()
        .map(|(g, _, _)| (rule.route.clone(), rule.name.clone(), (*g).into()))
        .collect();
    let recent: Vec<u64> = keys.iter().map(|k| history.recent_requests(k)).collect();
    let total: u64 = recent.iter().sum();
    let docs: Vec<Value> = groups
        .iter()
        .zip(&effective)
        .zip(keys.iter().zip(&recent))
        .map(|(((name, weight, available), eff), (key, n))| {
            json!({
                "group": name,
                "desired": asked.get(*name).copied().unwrap_or(*weight),
                "effective": eff,
                "observed": (total > 0).then(|| *n as f64 / total as f64),
                "available": available,
                "sample": history.latest(key),
            })
        })
        .collect();
    json!({
        "rule": &*rule.name,
        "sticky": rule.sticky.is_some(),
        "rollout_plan": rule.rollout.is_some(),
        "groups": docs,
    })
}

/// The share of traffic each group really gets, in percent: a group with
/// no available endpoint passes its share to the others by weight
/// (`redistribute`), or keeps it and answers 503 (`fail`).
fn effective_weights(groups: &[(&str, u32, bool)], policy: OnGroupUnavailable) -> Vec<f64> {
    let total: u32 = groups.iter().map(|g| g.1).sum();
    let up: u32 = groups.iter().filter(|g| g.2).map(|g| g.1).sum();
    let share = |w: u32, of: u32| {
        if of == 0 {
            0.0
        } else {
            100.0 * f64::from(w) / f64::from(of)
        }
    };
    groups
        .iter()
        .map(|&(_, w, available)| match policy {
            OnGroupUnavailable::Redistribute if up > 0 => {
                if available {
                    share(w, up)
                } else {
                    0.0
                }
            }
            _ => share(w, total),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unavailable_group_passes_its_share_on_unless_the_rule_fails() {
        let groups = [("stable", 90, true), ("canary", 10, false)];
        assert_eq!(
            effective_weights(&groups, OnGroupUnavailable::Redistribute),
            [100.0, 0.0]
        );
        assert_eq!(
            effective_weights(&groups, OnGroupUnavailable::Fail),
            [90.0, 10.0]
        );
        let none_up = [("stable", 90, false), ("canary", 10, false)];
        assert_eq!(
            effective_weights(&none_up, OnGroupUnavailable::Redistribute),
            [90.0, 10.0]
        );
        assert_eq!(
            effective_weights(&[("a", 0, true)], OnGroupUnavailable::Fail),
            [0.0]
        );
    }
}
