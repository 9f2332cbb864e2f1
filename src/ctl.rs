//! `cutover ctl`: a client for the control API, with readable output.

use std::path::PathBuf;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Where the admin API is and how to authenticate.
#[derive(Debug, Clone)]
pub struct Target {
    /// Base URL, e.g. `http://127.0.0.1:9901`.
    pub admin: String,
    /// Bearer token file, if the API needs one.
    pub token_file: Option<PathBuf>,
}

/// One `ctl` action (also the `cutover ctl` subcommands).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Action {
    /// Weights, observed split and generation per rule.
    Status,
    /// The live config as JSON.
    Config,
    /// Set weights: `route rule group=weight...`.
    Weights {
        /// Route name.
        route: String,
        /// Rule name.
        rule: String,
        /// `group=weight` pairs, e.g. stable=90 canary=10.
        #[arg(required = true)]
        weights: Vec<String>,
        /// Only apply if the live generation is this one (else 409).
        #[arg(long)]
        if_match: Option<u64>,
    },
    /// 100% to a group.
    Promote {
        /// Route name.
        route: String,
        /// Rule name.
        rule: String,
        /// Group to promote.
        group: String,
    },
    /// Back to the weights before the last change.
    Rollback {
        /// Route name.
        route: String,
        /// Rule name.
        rule: String,
    },
    /// Blue/green cutover of a whole route.
    Switch {
        /// Route name.
        route: String,
        /// Group to switch to.
        to: String,
    },
    /// Dry-run a config file.
    Validate {
        /// YAML file.
        file: PathBuf,
    },
    /// Progressive rollouts judged by the proxy: start, status, pause,
    /// resume, abort.
    Rollout {
        /// What to do.
        action: RolloutAction,
        /// Route name.
        route: String,
        /// Rule name (the rule with the `rollout` plan).
        rule: String,
    },
}

/// `cutover ctl rollout ACTION ROUTE RULE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RolloutAction {
    /// Start the rule's plan at its first step.
    Start,
    /// The verdict, its evidence and the step.
    Status,
    /// Hold at the current step.
    Pause,
    /// Continue a paused rollout.
    Resume,
    /// Stop; the canary's weight goes to 0.
    Abort,
}

impl RolloutAction {
    fn as_str(self) -> &'static str {
        match self {
            RolloutAction::Start => "start",
            RolloutAction::Status => "status",
            RolloutAction::Pause => "pause",
            RolloutAction::Resume => "resume",
            RolloutAction::Abort => "abort",
        }
    }
}

/// Runs `action` and prints the result; `Err` carries a one-line message.
pub async fn run(target: &Target, action: Action) -> Result<(), String> {
    let (method, path, body) = request_for(&action)?;
    let (status, value) = call(target, method, &path, body, if_match(&action)).await?;
    if !status.is_success() {
        return Err(describe_error(status, &value));
    }
    match action {
        Action::Status => {
            // Older proxies have no /v1/stats: the table then shows "-".
            let stats = match call(target, Method::GET, "/v1/stats", None, None).await {
                Ok((s, v)) if s.is_success() => v,
                _ => Value::Null,
            };
            print_status(&value, &stats);
        }
        Action::Config => println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        ),
        Action::Validate { file } => println!("{}: valid", file.display()),
        Action::Rollout { .. } => print_analysis(&value),
        _ => println!(
            "applied: generation {}",
            value.get("generation").cloned().unwrap_or(Value::Null)
        ),
    }
    Ok(())
}

fn if_match(action: &Action) -> Option<u64> {
    match action {
        Action::Weights { if_match, .. } => *if_match,
        _ => None,
    }
}

fn request_for(action: &Action) -> Result<(Method, String, Option<Bytes>), String> {
    let body = |v: Value| Some(Bytes::from(v.to_string()));
    Ok(match action {
        Action::Status => (Method::GET, "/v1/status".into(), None),
        Action::Config => (Method::GET, "/v1/config".into(), None),
        Action::Weights {
            route,
            rule,
            weights,
            ..
        } => {
            let mut map = serde_json::Map::new();
            for pair in weights {
                let (g, w) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("{pair:?}: expected group=weight"))?;
                let w: u32 = w
                    .parse()
                    .map_err(|_| format!("{pair:?}: weight must be a whole number"))?;
                map.insert(g.to_string(), Value::from(w));
            }
            (
                Method::PATCH,
                format!("/v1/routes/{route}/rules/{rule}/weights"),
                body(Value::Object(map)),
            )
        }
        Action::Promote { route, rule, group } => (
            Method::POST,
            format!("/v1/routes/{route}/rules/{rule}/promote"),
            body(serde_json::json!({ "group": group })),
        ),
        Action::Rollback { route, rule } => (
            Method::POST,
            format!("/v1/routes/{route}/rules/{rule}/rollback"),
            None,
        ),
        Action::Switch { route, to } => (
            Method::POST,
            format!("/v1/routes/{route}/switch"),
            body(serde_json::json!({ "to": to })),
        ),
        Action::Rollout {
            action: RolloutAction::Status,
            route,
            rule,
        } => (Method::GET, format!("/v1/analysis/{route}/{rule}"), None),
        Action::Rollout {
            action,
            route,
            rule,
        } => (
            Method::POST,
            format!(
                "/v1/routes/{route}/rules/{rule}/rollout/{}",
                action.as_str()
            ),
            None,
        ),
        Action::Validate { file } => {
            let text = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
            (
                Method::POST,
                "/v1/config/validate".into(),
                Some(Bytes::from(text)),
            )
        }
    })
}

async fn call(
    target: &Target,
    method: Method,
    path: &str,
    body: Option<Bytes>,
    if_match: Option<u64>,
) -> Result<(StatusCode, Value), String> {
    let url = format!("{}{}", target.admin.trim_end_matches('/'), path);
    let mut req = Request::builder().method(method).uri(&url);
    if let Some(file) = &target.token_file {
        let token = std::fs::read_to_string(file)
            .map_err(|e| format!("token file {}: {e}", file.display()))?;
        req = req.header(header::AUTHORIZATION, format!("Bearer {}", token.trim()));
    } else if let Ok(token) = std::env::var("CUTOVER_ADMIN_TOKEN") {
        req = req.header(header::AUTHORIZATION, format!("Bearer {}", token.trim()));
    }
    if let Some(g) = if_match {
        req = req.header(header::IF_MATCH, g.to_string());
    }
    let req = req
        .body(Full::new(body.unwrap_or_default()))
        .map_err(|e| format!("{url}: {e}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let resp = client
        .request(req)
        .await
        .map_err(|e| format!("cannot reach the admin API at {url}: {e}"))?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok((status, value))
}

fn describe_error(status: StatusCode, value: &Value) -> String {
    let mut msg = format!(
        "{status}: {}",
        value
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("request failed")
    );
    if let Some(errors) = value.get("errors").and_then(Value::as_array) {
        for e in errors {
            let path = e.get("path").and_then(Value::as_str).unwrap_or("");
            let m = e.get("message").and_then(Value::as_str).unwrap_or("");
            msg.push_str(&format!("\n  {path}: {m}"));
        }
    }
    msg
}

/// One table row: weight, observed split, and the group's live stats.
fn print_row(route: &Value, rule: &Value, group: &str, pct: f64, stats: &Value) {
    let obs = &rule["observed_last_minute"][group];
    let route_name = route["route"].as_str().unwrap_or("");
    let s = group_stats(stats, route_name, group);
    let stat = |f: &dyn Fn(&Value) -> Option<f64>| s.and_then(f);
    println!(
        "{:<16} {:<16} {:<12} {:>7.1}% {:>9.1}% {:>9} {:>7} {:>8} {:>8}",
        route_name,
        rule["rule"].as_str().unwrap_or(""),
        group,
        pct,
        obs["share"].as_f64().unwrap_or(0.0) * 100.0,
        obs["requests"].as_u64().unwrap_or(0),
        cell(stat(&|s| s["error_rate"].as_f64()), 100.0),
        cell(stat(&|s| s["latency_ms"]["p50"].as_f64()), 1.0),
        cell(stat(&|s| s["latency_ms"]["p99"].as_f64()), 1.0),
    );
}

/// The `/v1/stats` entry of `group` in `route`.
fn group_stats<'v>(stats: &'v Value, route: &str, group: &str) -> Option<&'v Value> {
    stats["routes"]
        .as_array()?
        .iter()
        .find(|r| r["route"] == route)?["groups"]
        .as_array()?
        .iter()
        .find(|g| g["group"] == group)
}

/// `12.3` or `-` when there is no value.
fn cell(v: Option<f64>, scale: f64) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{:.1}", x * scale))
}

fn print_status(v: &Value, stats: &Value) {
    println!(
        "generation {}   reload errors {}   {}",
        v["generation"],
        v["reload_errors"],
        if v["draining"] == Value::Bool(true) {
            "DRAINING"
        } else {
            "serving"
        }
    );
    println!();
    println!(
        "{:<16} {:<16} {:<12} {:>8} {:>10} {:>9} {:>7} {:>8} {:>8}",
        "ROUTE", "RULE", "GROUP", "WEIGHT", "OBSERVED", "REQ/1MIN", "ERR%", "P50 ms", "P99 ms"
    );
    for route in v["routes"].as_array().into_iter().flatten() {
        for rule in route["rules"].as_array().into_iter().flatten() {
            let weights = rule["desired_weights"].as_object();
            let total: u64 = weights
                .into_iter()
                .flatten()
                .filter_map(|(_, w)| w.as_u64())
                .sum();
            for (group, w) in weights.into_iter().flatten() {
                let w = w.as_u64().unwrap_or(0);
                let pct = if total == 0 {
                    0.0
                } else {
                    w as f64 * 100.0 / total as f64
                };
                print_row(route, rule, group, pct, stats);
            }
        }
    }
    println!();
    println!("ERR% (5xx) and latency: per route and group over the last 60 s (/v1/stats)");
}

/// A rollout's verdict and evidence, as `ctl rollout` prints it.
fn print_analysis(v: &Value) {
    let text = |k: &str| v[k].as_str().unwrap_or("-").to_string();
    let step = &v["step"];
    println!(
        "{}/{}   {}   verdict {}   step {} of {} (canary {}%)",
        text("route"),
        text("rule"),
        text("phase").to_uppercase(),
        text("verdict"),
        step["index"].as_u64().map_or(0, |i| i + 1),
        step["of"],
        step["weight"]
    );
    if let Some(weights) = v["weights"].as_object() {
        let w: Vec<String> = weights.iter().map(|(g, w)| format!("{g}={w}")).collect();
        println!("weights        {}", w.join(" "));
    }
    for m in v["metrics"].as_array().into_iter().flatten() {
        let (c, b) = (&m["canary"], &m["baseline"]);
        let rate = |a: &Value| {
            let (n, bad) = (
                a["requests"].as_f64().unwrap_or(0.0),
                a["bad"].as_f64().unwrap_or(0.0),
            );
            if n > 0.0 {
                bad * 100.0 / n
            } else {
                0.0
            }
        };
        println!(
            "{:<14} canary {}/{} ({:.2}%)  baseline {}/{} ({:.2}%)  Bayes factor {:.2}  effect [{:+.2}, {:+.2}] pp",
            m["metric"].as_str().unwrap_or(""),
            c["bad"], c["requests"], rate(c),
            b["bad"], b["requests"], rate(b),
            m["bayes_factor"].as_f64().unwrap_or(1.0),
            m["effect"]["low"].as_f64().unwrap_or(0.0) * 100.0,
            m["effect"]["high"].as_f64().unwrap_or(0.0) * 100.0,
        );
    }
    println!("reason         {}", text("reason"));
}
