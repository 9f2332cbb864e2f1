//! Routes and groups made from the Kubernetes API (controller mode), kept
//! apart from the file's config and layered on it at each compile, so that a
//! file reload and an API server change never undo each other.

use std::collections::BTreeMap;

use crate::config::error::ConfigErrors;
use crate::config::model::{Config, GroupConfig, RouteConfig};

/// What the controller publishes: HTTPRoutes converted, Services' ready pods
/// as groups, and which file listener serves which converted route.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Generated {
    /// Groups by name; a file group of the same name lends its policy
    /// (balance, outlier, health check, limits, TLS), the pods its endpoints.
    pub groups: BTreeMap<String, GroupConfig>,
    /// Converted HTTPRoutes, appended after the file's routes.
    pub routes: Vec<RouteConfig>,
    /// File listener name -> generated routes attached to it (through a
    /// Gateway listener on the same port).
    pub listener_routes: BTreeMap<String, Vec<String>>,
}

impl Generated {
    /// `base` with these routes and groups added: the config that is
    /// compiled. A listener that serves attached routes and listed none of
    /// its own (meaning "every route") keeps serving every file route.
    pub fn apply(&self, base: &Config) -> Result<Config, ConfigErrors> {
        let mut out = base.clone();
        for (name, g) in &self.groups {
            let group = match base.groups.get(name) {
                Some(policy) => GroupConfig {
                    endpoints: g.endpoints.clone(),
                    ..policy.clone()
                },
                None => g.clone(),
            };
            out.groups.insert(name.clone(), group);
        }
        let mut errors = ConfigErrors::default();
        for (name, routes) in &self.listener_routes {
            let Some(l) = out.listeners.iter_mut().find(|l| &l.name == name) else {
                errors.push(
                    "listeners",
                    format!("no listener {name:?} for attached routes {routes:?}"),
                );
                continue;
            };
            if l.routes.is_empty() {
                l.routes = base.routes.iter().map(|r| r.name.clone()).collect();
            }
            l.routes.extend(routes.iter().cloned());
        }
        out.routes.extend(self.routes.iter().cloned());
        errors.into_result(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    #[test]
    fn file_groups_lend_policy_and_listeners_keep_their_own_routes() {
        let base = parse_yaml(
            "listeners: [{name: web, address: \"127.0.0.1:0\"}, {name: other, address: \"127.0.0.1:0\"}]\n\
             groups:\n  own: {endpoints: [\"127.0.0.1:1\"]}\n  \
               shop.web.80: {endpoints: [], balance: least_request}\n\
             routes: [{name: own, rules: [{name: all, backends: [{group: own}]}]}]\n",
        )
        .unwrap();
        let mut g = Generated::default();
        g.groups.insert(
            "shop.web.80".into(),
            GroupConfig::new(vec!["10.0.0.1:8080".into()]),
        );
        g.routes.push(RouteConfig {
            name: "shop.web".into(),
            hostnames: vec![],
            rules: vec![],
        });
        g.listener_routes
            .insert("web".into(), vec!["shop.web".into()]);
        let out = g.apply(&base).unwrap();
        let group = &out.groups["shop.web.80"];
        assert_eq!(group.endpoints, ["10.0.0.1:8080"]);
        assert_eq!(group.balance, base.groups["shop.web.80"].balance);
        assert_eq!(out.listeners[0].routes, ["own", "shop.web"]);
        assert!(out.listeners[1].routes.is_empty());
        assert_eq!(out.routes.len(), 2);
        g.listener_routes.insert("gone".into(), vec![]);
        assert!(g.apply(&base).unwrap_err().to_string().contains("gone"));
    }
}
