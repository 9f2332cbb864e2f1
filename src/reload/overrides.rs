//! Weight overrides from the control API, layered on top of the base config
//! (the file, or the last `PUT /v1/config`).
//!
//! Why layers: a GitOps file sets the baseline while a controller (Flagger,
//! Argo Rollouts, an operator) moves weights through the API. A later file
//! edit must not silently undo a rollout, and must not be silently ignored
//! either: an override survives a file change unless the file changed that
//! same rule's weights (the file's author spoke last) or removed the rule or
//! one of its groups; every dropped override is logged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::model::{Config, RuleConfig};

/// Group name -> weight, as the API speaks them.
pub type Weights = BTreeMap<String, u32>;

/// One rule's weights as set by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// Route name.
    pub route: String,
    /// Rule name.
    pub rule: String,
    /// The weights in force.
    pub weights: Weights,
    /// The base config's weights when the override was made; if the base
    /// changes them, the base wins.
    pub base_weights: Weights,
    /// What made it: `patch`, `promote`, `rollback`, `switch`.
    pub origin: String,
    /// Generation that published it.
    pub generation: u64,
}

/// Why an override does not fit a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misfit(pub String);

/// The rule `route/rule` in `config`.
pub fn find_rule<'c>(
    config: &'c Config,
    route: &str,
    rule: &str,
) -> Result<&'c RuleConfig, Misfit> {
    let r = config
        .routes
        .iter()
        .find(|r| r.name == route)
        .ok_or_else(|| Misfit(format!("unknown route \"{route}\"")))?;
    r.rules
        .iter()
        .find(|x| x.name == rule)
        .ok_or_else(|| Misfit(format!("route \"{route}\" has no rule \"{rule}\"")))
}

fn find_rule_mut<'c>(
    config: &'c mut Config,
    route: &str,
    rule: &str,
) -> Result<&'c mut RuleConfig, Misfit> {
    find_rule(config, route, rule)?;
    config
        .routes
        .iter_mut()
        .find(|r| r.name == route)
        .and_then(|r| r.rules.iter_mut().find(|x| x.name == rule))
        .ok_or_else(|| Misfit(format!("route \"{route}\" has no rule \"{rule}\"")))
}

/// The weights of a rule's backends.
pub fn weights_of(rule: &RuleConfig) -> Weights {
    rule.backends
        .iter()
        .map(|b| (b.group.clone(), b.weight))
        .collect()
}

/// Sets the weights of the named groups in `route/rule`; groups not named
/// keep theirs. Every named group must already be a backend of the rule.
pub fn set_weights(
    config: &mut Config,
    route: &str,
    rule: &str,
    weights: &Weights,
) -> Result<(), Misfit> {
    let r = find_rule_mut(config, route, rule)?;
    for (group, &w) in weights {
        let backend = r
            .backends
            .iter_mut()
            .find(|b| &b.group == group)
            .ok_or_else(|| {
                Misfit(format!(
                    "group \"{group}\" is not a backend of rule \"{rule}\" of route \"{route}\""
                ))
            })?;
        backend.weight = w;
    }
    Ok(())
}

/// Applies `overrides` to `base`; returns the effective config and the
/// overrides that no longer fit, with the reason.
pub fn layer(base: &Config, overrides: &[Override]) -> (Config, Vec<(Override, Misfit)>) {
    let mut effective = base.clone();
    let mut dropped = Vec::new();
    for o in overrides {
        let fits = find_rule(base, &o.route, &o.rule).and_then(|r| {
            if weights_of(r) != o.base_weights {
                return Err(Misfit(
                    "the base config changed this rule's weights since; the base wins".into(),
                ));
            }
            Ok(())
        });
        match fits.and_then(|()| set_weights(&mut effective, &o.route, &o.rule, &o.weights)) {
            Ok(()) => {}
            Err(why) => dropped.push((o.clone(), why)),
        }
    }
    (effective, dropped)
}

/// Weights that send everything to `group` and nothing to the others.
pub fn all_to(rule: &RuleConfig, group: &str) -> Weights {
    rule.backends
        .iter()
        .map(|b| (b.group.clone(), if b.group == group { 100 } else { 0 }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    const BASE: &str = r#"
listeners: [{ name: public, address: "127.0.0.1:0" }]
groups: { stable: { endpoints: ["127.0.0.1:1"] }, canary: { endpoints: ["127.0.0.1:2"] } }
routes:
  - name: web
    rules:
      - name: split
        backends: [{ group: stable, weight: 90 }, { group: canary, weight: 10 }]
"#;

    fn ov(weights: &[(&str, u32)], base: &[(&str, u32)]) -> Override {
        let w = |p: &[(&str, u32)]| p.iter().map(|(g, w)| (g.to_string(), *w)).collect();
        Override {
            route: "web".into(),
            rule: "split".into(),
            weights: w(weights),
            base_weights: w(base),
            origin: "patch".into(),
            generation: 2,
        }
    }

    #[test]
    fn override_applies_on_top_of_unchanged_base() {
        let base = parse_yaml(BASE).unwrap();
        let (eff, dropped) = layer(
            &base,
            &[ov(
                &[("canary", 50), ("stable", 50)],
                &[("stable", 90), ("canary", 10)],
            )],
        );
        assert!(dropped.is_empty());
        let w = weights_of(find_rule(&eff, "web", "split").unwrap());
        assert_eq!(w["canary"], 50);
    }

    #[test]
    fn base_weight_change_wins_and_is_reported() {
        let base = parse_yaml(BASE).unwrap();
        let (eff, dropped) = layer(
            &base,
            &[ov(&[("canary", 50)], &[("stable", 99), ("canary", 1)])],
        );
        assert_eq!(dropped.len(), 1);
        assert_eq!(
            weights_of(find_rule(&eff, "web", "split").unwrap())["canary"],
            10
        );
    }

    #[test]
    fn unknown_group_is_a_misfit() {
        let mut base = parse_yaml(BASE).unwrap();
        let w: Weights = [("canry".to_string(), 1)].into();
        let err = set_weights(&mut base, "web", "split", &w).unwrap_err();
        assert!(err.0.contains("\"canry\" is not a backend"), "{}", err.0);
    }
}
