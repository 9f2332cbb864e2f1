//! The one path by which a routing table changes, whatever the source (file,
//! control API, SIGHUP): edit a copy of the desired state -> compile and
//! validate the whole table -> persist (with `--state-dir`) -> one `ArcSwap`
//! store. Any error changes nothing. Certificate files are read by that
//! compile, so they reload the same way ([`certs`] watches them). Changes are serialised by one mutex that
//! the request path never takes.

pub mod certs;
pub mod dns;
#[cfg(test)]
mod endpoint_tests;
pub mod overrides;
pub mod rollouts;
pub mod state;
pub mod watch;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::compile::compile;
use crate::config::gateway::Generated;
use crate::config::{Config, ConfigErrors};
use crate::metrics::Metrics;
use crate::route::{Inherited, RouteTable};
use overrides::{Misfit, Override, Weights};

/// The published table and its bookkeeping: what the operator asked for,
/// the state new tables inherit, and who to tell about a publish. Owned
/// here because [`change`] is the only writer; the request path sees only
/// the `ArcSwap` (through `serving::Serving`, which holds the same one).
#[derive(Debug)]
pub struct Tables {
    /// The live table.
    pub routes: Arc<ArcSwap<RouteTable>>,
    /// Endpoint, pool, admission, DNS and rule state carried across tables.
    pub inherited: Inherited,
    /// Announces each published generation (health checks, DNS, certs).
    pub published: tokio::sync::watch::Sender<u64>,
    /// What the operator asked for (base config + API overrides); its lock
    /// serialises changes and is never taken on the request path.
    pub desired: Mutex<Desired>,
    /// Where API changes are persisted (`--state-dir`).
    pub state_dir: Option<PathBuf>,
    /// Rejected reloads (invalid file), for logs and metrics.
    pub reload_errors: AtomicU64,
    /// Content hash of the last config file that was rejected, so one bad
    /// file is reported once.
    pub last_rejected_file: Mutex<Option<String>>,
}

impl Tables {
    /// The bookkeeping of `table`, published as generation 1 from `base`.
    pub fn new(
        routes: Arc<ArcSwap<RouteTable>>,
        inherited: Inherited,
        base: Desired,
        state_dir: Option<PathBuf>,
    ) -> Tables {
        Tables {
            routes,
            inherited,
            published: tokio::sync::watch::Sender::new(1),
            desired: Mutex::new(base),
            state_dir,
            reload_errors: AtomicU64::new(0),
            last_rejected_file: Mutex::new(None),
        }
    }

    /// The metrics every table records into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        self.inherited.metrics()
    }
}

/// How many earlier weight sets `rollback` can go back through, per rule.
const HISTORY_DEPTH: usize = 16;

/// What the operator asked for: a base config plus API weight overrides.
/// The published table is compiled from `layer(base, overrides)`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Desired {
    /// The file's config, or the last one `PUT` through the API.
    pub base: Config,
    /// Where `base` came from.
    pub base_origin: BaseOrigin,
    /// API weight changes in force, at most one per rule.
    pub overrides: Vec<Override>,
    /// Per `route/rule`, earlier weights (most recent last), for rollback.
    pub history: BTreeMap<String, Vec<Weights>>,
    /// Rollouts started through the control API, by `route/rule`.
    #[serde(default)]
    pub rollouts: BTreeMap<String, rollouts::RolloutRecord>,
    /// Controller mode: routes and groups from the Kubernetes API, layered
    /// on `base` at each compile (not persisted: the API server holds them).
    #[serde(skip)]
    pub generated: Option<Arc<Generated>>,
}

/// Where the base config came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BaseOrigin {
    /// Given to the process at start (tests, the demo).
    #[default]
    Startup,
    /// Read from the config file; `hash` identifies its content.
    File {
        /// Path of the file.
        path: String,
        /// Content hash (hex).
        hash: String,
    },
    /// Replaced by `PUT /v1/config`; `file_hash` is the file's hash at the
    /// time, so a restart can tell whether the file changed since.
    Api {
        /// Generation that published it.
        generation: u64,
        /// Hash of the config file when the PUT happened, if there is one.
        file_hash: Option<String>,
    },
}

/// Why a change was refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeError {
    /// `If-Match` named another generation than the live one.
    Conflict {
        /// The live generation.
        current: u64,
    },
    /// The resulting config is invalid.
    Invalid(ConfigErrors),
    /// The change names a route, rule or group that does not fit.
    Misfit(String),
    /// `rollback` with no earlier weights.
    NothingToRollBack,
    /// The state directory could not be written; the change was not applied.
    Persist(String),
}

impl std::fmt::Display for ChangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChangeError::Conflict { current } => {
                write!(f, "stale If-Match: the live generation is {current}")
            }
            ChangeError::Invalid(e) => write!(f, "invalid config:\n{e}"),
            ChangeError::Misfit(m) => f.write_str(m),
            ChangeError::NothingToRollBack => f.write_str("no earlier weights to roll back to"),
            ChangeError::Persist(m) => write!(f, "cannot persist the change: {m}"),
        }
    }
}

impl From<Misfit> for ChangeError {
    fn from(m: Misfit) -> Self {
        ChangeError::Misfit(m.0)
    }
}

/// Replaces the base config (`PUT /v1/config`, tests) and publishes it:
/// API weight overrides are cleared, with a log line.
pub fn replace_base(tables: &Tables, config: &Config) -> Result<u64, ConfigErrors> {
    let generation = tables.routes.load().generation + 1;
    change(tables, None, "replace", |d| {
        let file_hash = match &d.base_origin {
            BaseOrigin::File { hash, .. } => Some(hash.clone()),
            BaseOrigin::Api { file_hash, .. } => file_hash.clone(),
            BaseOrigin::Startup => None,
        };
        if !d.overrides.is_empty() {
            tracing::warn!(
                overrides = d.overrides.len(),
                "a full config replace clears the API weight overrides"
            );
        }
        d.base = config.clone();
        d.base_origin = BaseOrigin::Api {
            generation,
            file_hash,
        };
        d.overrides.clear();
        d.history.clear();
        Ok(())
    })
    .map_err(|e| match e {
        ChangeError::Invalid(errors) => errors,
        other => ConfigErrors::one("", other.to_string()),
    })
}

/// Applies `edit` to a copy of the desired state and publishes the result as
/// the next generation; `if_match` guards against a stale writer.
pub fn change(
    tables: &Tables,
    if_match: Option<u64>,
    what: &str,
    edit: impl FnOnce(&mut Desired) -> Result<(), ChangeError>,
) -> Result<u64, ChangeError> {
    let mut desired = tables
        .desired
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let current = tables.routes.load().generation;
    if let Some(expected) = if_match {
        if expected != current {
            return Err(ChangeError::Conflict { current });
        }
    }
    let mut next = desired.clone();
    edit(&mut next)?;
    let generation = current + 1;
    for o in next.overrides.iter_mut().filter(|o| o.generation == 0) {
        o.generation = generation;
    }
    let combined = match &next.generated {
        Some(g) => g.apply(&next.base).map_err(ChangeError::Invalid)?,
        None => next.base.clone(),
    };
    // Without overrides the layered config is `combined` itself: no copy
    // (in controller mode it holds every generated route and group).
    let (effective, dropped) = match next.overrides.is_empty() {
        true => (combined, Vec::new()),
        false => overrides::layer(&combined, &next.overrides),
    };
    let table = compile(&effective, &tables.inherited, generation).map_err(ChangeError::Invalid)?;
    check_listeners(&tables.routes.load(), &table)?;
    next.overrides
        .retain(|o| !dropped.iter().any(|(d, _)| d == o));
    if let Some(dir) = &tables.state_dir {
        state::save(dir, &next).map_err(|e| ChangeError::Persist(e.to_string()))?;
    }
    tables.routes.store(Arc::new(table));
    tables.published.send_replace(generation);
    *desired = next;
    drop(desired);
    for (o, why) in dropped {
        tracing::warn!(
            route = %o.route, rule = %o.rule, weights = ?o.weights,
            "API weight override dropped: {}", why.0
        );
    }
    tracing::info!(generation, change = what, "routing table published");
    Ok(generation)
}

/// Controller mode's cheap path: new endpoints for some generated groups
/// (an EndpointSlice changed), published without recompiling the table.
/// Only those groups are compiled; listeners, rules and the other groups
/// are shared with the live table ([`crate::compile::regroup`]). Like
/// [`change`]: one lock, the next generation, endpoint state and pools
/// carried by address, nothing changed on error. `Ok(None)`: every group
/// already has these endpoints. A name that is not a generated group is a
/// [`ChangeError::Misfit`] (the caller rebuilds in full).
pub fn change_endpoints(
    tables: &Tables,
    what: &str,
    endpoints: BTreeMap<String, Vec<String>>,
) -> Result<Option<u64>, ChangeError> {
    let mut desired = tables
        .desired
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let Some(generated) = &desired.generated else {
        return Err(ChangeError::Misfit("no generated groups to change".into()));
    };
    let mut changed = BTreeMap::new();
    for (name, pods) in endpoints {
        let Some(g) = generated.groups.get(&name) else {
            return Err(ChangeError::Misfit(format!("no generated group {name:?}")));
        };
        if g.endpoints != pods {
            // A file group of the same name lends its policy, as in a full
            // compile (`Generated::apply`).
            let policy = desired.base.groups.get(&name).unwrap_or(g);
            let group = crate::config::model::GroupConfig {
                endpoints: pods,
                ..policy.clone()
            };
            changed.insert(name, group);
        }
    }
    if changed.is_empty() {
        return Ok(None);
    }
    let live = tables.routes.load_full();
    let generation = live.generation + 1;
    let table = crate::compile::regroup(&live, &changed, &tables.inherited, generation)
        .map_err(ChangeError::Invalid)?;
    // Only the generated part changed, which is not persisted (the API
    // server holds it): nothing to write to the state directory.
    if let Some(generated) = desired.generated.as_mut() {
        let generated = Arc::make_mut(generated);
        for (name, g) in changed {
            if let Some(slot) = generated.groups.get_mut(&name) {
                slot.endpoints = g.endpoints;
            }
        }
    }
    tables.routes.store(Arc::new(table));
    tables.published.send_replace(generation);
    drop(desired);
    tracing::info!(generation, change = what, "routing table published");
    Ok(Some(generation))
}

fn check_listeners(old: &RouteTable, new: &RouteTable) -> Result<(), ChangeError> {
    let changed = old.listeners.len() != new.listeners.len()
        || old
            .listeners
            .iter()
            .zip(new.listeners.iter())
            .any(|(a, b)| a.name != b.name || a.address != b.address);
    if changed {
        let mut e = ConfigErrors::default();
        e.push(
            "listeners",
            "listener names and addresses cannot change without a restart",
        );
        return Err(ChangeError::Invalid(e));
    }
    Ok(())
}

/// Sets weights on several rules in one transaction (all or nothing).
/// `changes` are `(route, rule, weights)`; groups not named keep theirs.
pub fn set_weights(
    tables: &Tables,
    if_match: Option<u64>,
    what: &str,
    changes: &[(String, String, Weights)],
) -> Result<u64, ChangeError> {
    change(tables, if_match, what, |d| {
        for (route, rule, weights) in changes {
            override_rule(d, route, rule, what, |_| Ok(weights.clone()))?;
        }
        Ok(())
    })
}

/// Sends 100% of a rule to `group`.
pub fn promote(
    tables: &Tables,
    if_match: Option<u64>,
    route: &str,
    rule: &str,
    group: &str,
) -> Result<u64, ChangeError> {
    change(tables, if_match, "promote", |d| {
        override_rule(d, route, rule, "promote", |r| {
            if !r.backends.iter().any(|b| b.group == group) {
                return Err(ChangeError::Misfit(format!(
                    "group \"{group}\" is not a backend of rule \"{rule}\" of route \"{route}\""
                )));
            }
            Ok(overrides::all_to(r, group))
        })
    })
}

/// Blue/green cutover: every rule of `route` that has `to` as a backend
/// sends it 100%. Switching back is the same call with the other group.
pub fn switch(
    tables: &Tables,
    if_match: Option<u64>,
    route: &str,
    to: &str,
) -> Result<u64, ChangeError> {
    change(tables, if_match, "switch", |d| {
        let (effective, _) = overrides::layer(&d.base, &d.overrides);
        let r = effective
            .routes
            .iter()
            .find(|r| r.name == route)
            .ok_or_else(|| ChangeError::Misfit(format!("unknown route \"{route}\"")))?;
        let rules: Vec<String> = r
            .rules
            .iter()
            .filter(|x| x.backends.iter().any(|b| b.group == to))
            .map(|x| x.name.clone())
            .collect();
        if rules.is_empty() {
            return Err(ChangeError::Misfit(format!(
                "no rule of route \"{route}\" has group \"{to}\" as a backend"
            )));
        }
        for rule in rules {
            override_rule(d, route, &rule, "switch", |r| Ok(overrides::all_to(r, to)))?;
        }
        Ok(())
    })
}

/// Restores the weights a rule had before its last change.
pub fn rollback(
    tables: &Tables,
    if_match: Option<u64>,
    route: &str,
    rule: &str,
) -> Result<u64, ChangeError> {
    change(tables, if_match, "rollback", |d| {
        let key = format!("{route}/{rule}");
        let previous = d
            .history
            .get_mut(&key)
            .and_then(Vec::pop)
            .ok_or(ChangeError::NothingToRollBack)?;
        override_rule(d, route, rule, "rollback", |_| Ok(previous))?;
        // The rollback itself must not become the next thing to roll back to.
        if let Some(h) = d.history.get_mut(&key) {
            h.pop();
        }
        Ok(())
    })
}

/// Stores a rollout's record and, with `weights`, sets its rule's weights
/// (origin `rollout`), in one change: a step and its record are published,
/// and persisted, together.
pub fn set_rollout(
    tables: &Tables,
    what: &str,
    record: rollouts::RolloutRecord,
    weights: Option<Weights>,
) -> Result<u64, ChangeError> {
    change(tables, None, what, |d| {
        if let Some(w) = weights {
            override_rule(d, &record.route, &record.rule, "rollout", |_| Ok(w))?;
        }
        let key = rollouts::RolloutRecord::key(&record.route, &record.rule);
        d.rollouts.insert(key, record);
        Ok(())
    })
}

/// The rollout records, for the controller and the API.
pub fn rollout_records(tables: &Tables) -> Vec<rollouts::RolloutRecord> {
    let desired = tables
        .desired
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    desired.rollouts.values().cloned().collect()
}

/// Records the rule's current weights in its history and installs an
/// override with the weights `new` computes from the current rule.
fn override_rule(
    d: &mut Desired,
    route: &str,
    rule: &str,
    origin: &str,
    new: impl FnOnce(&crate::config::model::RuleConfig) -> Result<Weights, ChangeError>,
) -> Result<(), ChangeError> {
    let (effective, _) = overrides::layer(&d.base, &d.overrides);
    let current_rule = overrides::find_rule(&effective, route, rule)?;
    let current = overrides::weights_of(current_rule);
    let mut weights = current.clone();
    for (g, w) in new(current_rule)? {
        weights.insert(g, w);
    }
    let mut probe = effective.clone();
    overrides::set_weights(&mut probe, route, rule, &weights)?;
    let base_weights = overrides::weights_of(overrides::find_rule(&d.base, route, rule)?);
    let history = d.history.entry(format!("{route}/{rule}")).or_default();
    history.push(current);
    if history.len() > HISTORY_DEPTH {
        history.remove(0);
    }
    d.overrides
        .retain(|o| !(o.route == route && o.rule == rule));
    d.overrides.push(Override {
        route: route.to_string(),
        rule: rule.to_string(),
        weights,
        base_weights,
        origin: origin.to_string(),
        generation: 0,
    });
    Ok(())
}

/// The desired state and the effective config, for `GET /v1/config`.
pub fn snapshot(tables: &Tables) -> (u64, Desired, Config) {
    let desired = tables
        .desired
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    let generation = tables.routes.load().generation;
    let (effective, _) = overrides::layer(&desired.base, &desired.overrides);
    (generation, desired, effective)
}
