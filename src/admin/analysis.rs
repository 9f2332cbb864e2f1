//! The release-analysis endpoints: rollout actions, `GET /v1/analysis`
//! (what Argo Rollouts' `web` metric provider reads) and Flagger's
//! webhooks. Every answer says why, in `reason`.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::{json, Value};

use super::json::{error, json};
use super::Context;
use crate::analysis::{MetricReport, Report, Verdict};
use crate::config::rollout::plan_of;
use crate::reload::rollouts::{Phase, RolloutRecord};
use crate::reload::{self, overrides::find_rule};
use crate::rollout::actions::{self, ActionError};
use crate::rollout::View;

type Resp = Response<Full<Bytes>>;

/// `POST /v1/routes/{route}/rules/{rule}/rollout/{action}`.
pub fn act(shared: &Context, route: &str, rule: &str, action: &str) -> Resp {
    let result = match action {
        "start" => actions::start(&shared.control, route, rule),
        "pause" => actions::pause(&shared.control, route, rule),
        "resume" => actions::resume(&shared.control, route, rule),
        "abort" => actions::abort(&shared.control, route, rule),
        other => {
            return error(
                StatusCode::NOT_FOUND,
                &format!("no rollout action \"{other}\" (start, pause, resume, abort)"),
            )
        }
    };
    match result {
        Ok(generation) => json(StatusCode::OK, &one(shared, route, rule, Some(generation))),
        Err(ActionError::NotFound(m)) => error(StatusCode::NOT_FOUND, &m),
        Err(ActionError::Conflict(m)) => error(StatusCode::CONFLICT, &m),
        Err(ActionError::Change(e)) => error(StatusCode::CONFLICT, &e.to_string()),
    }
}

/// `GET /v1/analysis`: every rule with a rollout plan or record.
pub fn all(shared: &Context) -> Resp {
    json(StatusCode::OK, &json!({ "analyses": all_json(shared) }))
}

/// The analysis documents of every rule with a rollout plan or record (the
/// dashboard shows them too).
pub fn all_json(shared: &Context) -> Vec<Value> {
    let (_, _, effective) = reload::snapshot(&shared.tables);
    let mut keys: Vec<(String, String)> = effective
        .routes
        .iter()
        .flat_map(|r| {
            r.rules
                .iter()
                .filter(|x| plan_of(&effective, &r.name, x).is_some())
                .map(|x| (r.name.clone(), x.name.clone()))
        })
        .collect();
    for v in shared.control.rollouts.views(&shared.tables) {
        let k = (v.record.route, v.record.rule);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.iter()
        .map(|(route, rule)| one(shared, route, rule, None))
        .collect()
}

/// `GET /v1/analysis/{route}/{rule}`: 200 whenever the rule exists, so a
/// controller's query never fails for lack of data (that is
/// `inconclusive`).
pub fn get(shared: &Context, route: &str, rule: &str) -> Resp {
    let (_, _, effective) = reload::snapshot(&shared.tables);
    let known = find_rule(&effective, route, rule).is_ok()
        || shared
            .control
            .rollouts
            .views(&shared.tables)
            .iter()
            .any(|v| v.record.route == route && v.record.rule == rule);
    if !known {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no rule \"{rule}\" in route \"{route}\""),
        );
    }
    json(StatusCode::OK, &one(shared, route, rule, None))
}

/// The analysis document of one rule.
fn one(shared: &Context, route: &str, rule: &str, generation: Option<u64>) -> Value {
    let view = shared
        .control
        .rollouts
        .views(&shared.tables)
        .into_iter()
        .find(|v| v.record.route == route && v.record.rule == rule);
    let weights = live_weights(shared, route, rule);
    let mut doc = match view {
        None => json!({
            "route": route,
            "rule": rule,
            "phase": "not_started",
            "verdict": "inconclusive",
            "reason": format!("no rollout running: POST /v1/routes/{route}/rules/{rule}/rollout/start"),
        }),
        Some(v) => document(&v),
    };
    doc["weights"] = weights;
    if let Some(g) = generation {
        doc["generation"] = json!(g);
    }
    doc
}

/// What a controller reads: the verdict it acts on, the evidence behind it.
fn document(v: &View) -> Value {
    let r = &v.record;
    let step_weight = r.plan.steps.get(r.step).map(|s| s.weight());
    let verdict = phase_verdict(r.phase, v.report.as_ref());
    let mut doc = json!({
        "route": r.route,
        "rule": r.rule,
        "phase": r.phase.as_str(),
        "verdict": verdict.as_str(),
        "step": { "index": r.step, "weight": step_weight, "of": r.plan.steps.len() },
        "window": { "seconds": v.step_secs, "slow_threshold_ms": v.slow_threshold_ms },
        "source": if r.plan.source.is_some() { "prometheus" } else { "local" },
        "reason": match (&v.report, r.phase) {
            (Some(rep), Phase::Running) => rep.reason.clone(),
            _ => r.reason.clone(),
        },
    });
    if let Some(rep) = &v.report {
        fill_evidence(&mut doc, r, rep);
    }
    doc
}

/// The verdict a controller should act on: the phase decides once the
/// rollout is over, the latest report while it runs.
fn phase_verdict(phase: Phase, report: Option<&Report>) -> Verdict {
    match phase {
        Phase::Promoted | Phase::Passed => Verdict::Pass,
        Phase::RolledBack | Phase::Aborted | Phase::Failed => Verdict::Fail,
        Phase::Running | Phase::Paused | Phase::Ended => {
            report.map_or(Verdict::Inconclusive, |r| r.verdict)
        }
    }
}

fn fill_evidence(doc: &mut Value, r: &RolloutRecord, rep: &Report) {
    let metrics: Vec<Value> = rep.metrics.iter().map(metric_json).collect();
    let worst = rep
        .metrics
        .iter()
        .max_by(|a, b| a.bayes_factor.total_cmp(&b.bayes_factor));
    let count = rep.metrics.len().max(1) as f64;
    let p = rep.metrics.iter().map(|m| m.p_value).fold(1.0f64, f64::min);
    if let Some(errors) = rep.metrics.first() {
        let (c, b) = (errors.counts.canary, errors.counts.baseline);
        let slow = rep.metrics.get(1).map(|m| m.counts);
        doc["groups"] = json!({
            r.plan.canary.clone(): {
                "requests": c.requests, "errors": c.bad, "rate": c.rate(),
                "slow": slow.map(|s| s.canary.bad),
            },
            "baseline": {
                "requests": b.requests, "errors": b.bad, "rate": b.rate(),
                "slow": slow.map(|s| s.baseline.bad),
            },
        });
        doc["effect"] = json!({ "low": errors.effect.low, "high": errors.effect.high });
    }
    doc["bayes_factor"] = json!(worst.map(|m| m.bayes_factor));
    doc["p_value"] = json!((p * count).min(1.0));
    doc["requests_needed"] = json!(rep.requests_needed());
    doc["metrics"] = json!(metrics);
}

fn metric_json(m: &MetricReport) -> Value {
    json!({
        "metric": m.metric.as_str(),
        "canary": { "requests": m.counts.canary.requests, "bad": m.counts.canary.bad },
        "baseline": { "requests": m.counts.baseline.requests, "bad": m.counts.baseline.bad },
        "bayes_factor": m.bayes_factor,
        "p_value": m.p_value,
        "effect": { "low": m.effect.low, "high": m.effect.high },
        "requests_needed": m.requests_needed,
    })
}

/// The rule's weights in the live table.
fn live_weights(shared: &Context, route: &str, rule: &str) -> Value {
    let table = shared.tables.routes.load();
    let Some(r) = table
        .rules
        .iter()
        .find(|r| &*r.route == route && &*r.name == rule)
    else {
        return Value::Null;
    };
    let mut w = serde_json::Map::new();
    for (group, weight) in r.split.backends() {
        if let Some(g) = table.groups.get(group as usize) {
            w.insert(g.name.to_string(), json!(weight));
        }
    }
    Value::Object(w)
}

/// Flagger's webhook payload; `metadata.route` / `metadata.rule` say which
/// rule (else the route named like the canary, and its one rule with a
/// rollout plan).
#[derive(Debug, Deserialize)]
struct FlaggerHook {
    name: String,
    #[serde(default)]
    metadata: std::collections::BTreeMap<String, String>,
}

/// `POST /v1/flagger/{hook}`: confirm-traffic-increase is 2xx only with a
/// pass verdict; rollout is non-2xx on a fail; rollback is 2xx on a fail.
pub fn flagger(shared: &Context, hook: &str, body: &Bytes) -> Resp {
    let payload: FlaggerHook = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("not a Flagger webhook payload (name, namespace, phase, metadata): {e}"),
            )
        }
    };
    let Some((route, rule)) = flagger_target(shared, &payload) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!(
                "no rollout rule for Flagger canary \"{}\": set metadata.route and metadata.rule in the webhook",
                payload.name
            ),
        );
    };
    let doc = one(shared, &route, &rule, None);
    let verdict = doc["verdict"].as_str().unwrap_or("inconclusive");
    let ok = match hook {
        "confirm-traffic-increase" => verdict == "pass",
        "rollout" => verdict != "fail",
        "rollback" => verdict == "fail",
        other => {
            return error(
                StatusCode::NOT_FOUND,
                &format!(
                    "no Flagger hook \"{other}\" (confirm-traffic-increase, rollout, rollback)"
                ),
            )
        }
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::FORBIDDEN
    };
    json(status, &doc)
}

fn flagger_target(shared: &Context, p: &FlaggerHook) -> Option<(String, String)> {
    let route = p
        .metadata
        .get("route")
        .cloned()
        .unwrap_or_else(|| p.name.clone());
    if let Some(rule) = p.metadata.get("rule") {
        return Some((route, rule.clone()));
    }
    let (_, _, effective) = reload::snapshot(&shared.tables);
    let r = effective.routes.iter().find(|r| r.name == route)?;
    let mut with_plan = r
        .rules
        .iter()
        .filter(|x| plan_of(&effective, &r.name, x).is_some());
    let rule = with_plan.next()?;
    with_plan
        .next()
        .is_none()
        .then(|| (route.clone(), rule.name.clone()))
}
