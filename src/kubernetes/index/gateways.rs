//! cutover's GatewayClasses and Gateways: each Gateway listener matched to
//! the cutover listener of its port, and their statuses once routes have
//! attached.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{
    Condition, FileListener, GatewayStatus, ListenerStatus, ObjectKey, ObjectStatus, Objects,
    Settings, Statuses,
};
use crate::kubernetes::resources::{Gateway, Listener};

/// The names of cutover's GatewayClasses; their statuses recorded.
pub fn classes(objects: &Objects, settings: &Settings, statuses: &mut Statuses) -> Vec<String> {
    let mut out = Vec::new();
    for c in &objects.classes {
        if c.spec.controller_name != settings.controller_name {
            continue;
        }
        let Some(name) = c.metadata.name.clone() else {
            continue;
        };
        let accepted = Condition::new("Accepted", true, "Accepted", "served by cutover");
        statuses.classes.insert(
            name.clone(),
            ObjectStatus {
                generation: c.metadata.generation.unwrap_or(0),
                status: vec![accepted],
            },
        );
        out.push(name);
    }
    out
}

/// A Gateway of cutover's, while routes attach to it.
pub struct GatewayState {
    /// Its key.
    pub key: ObjectKey,
    generation: i64,
    /// The object.
    pub gateway: Arc<Gateway>,
    /// Per listener, in spec order.
    pub listeners: Vec<ListenerState>,
}

/// A Gateway listener while routes attach.
pub struct ListenerState {
    /// The file listener serving it, when it can be served.
    pub file: Option<String>,
    /// `Accepted` first.
    pub conditions: Vec<Condition>,
    /// Routes attached so far.
    pub attached: i32,
}

/// cutover's Gateways by key, each listener matched to a file listener.
pub fn gateways(
    objects: &Objects,
    classes: &[String],
    settings: &Settings,
) -> BTreeMap<ObjectKey, GatewayState> {
    let mut out = BTreeMap::new();
    for g in &objects.gateways {
        if !classes.contains(&g.spec.gateway_class_name) {
            continue;
        }
        let key = ObjectKey::of(&g.metadata);
        let listeners = g
            .spec
            .listeners
            .iter()
            .map(|l| listener(l, &settings.listeners))
            .collect();
        out.insert(
            key.clone(),
            GatewayState {
                key,
                generation: g.metadata.generation.unwrap_or(0),
                gateway: Arc::clone(g),
                listeners,
            },
        );
    }
    out
}

fn listener(l: &Listener, files: &[FileListener]) -> ListenerState {
    let supported = matches!(l.protocol.as_str(), "HTTP" | "HTTPS");
    if !supported {
        let why = format!(
            "protocol {:?} is not served; cutover serves HTTP and HTTPS",
            l.protocol
        );
        return ListenerState {
            file: None,
            conditions: vec![
                Condition::new("Accepted", false, "UnsupportedProtocol", why.clone()),
                Condition::new("Programmed", false, "Invalid", why),
                Condition::new("ResolvedRefs", true, "ResolvedRefs", ""),
            ],
            attached: 0,
        };
    }
    let https = l.protocol == "HTTPS";
    let file = files
        .iter()
        .find(|f| i32::from(f.port) == l.port && f.tls == https);
    let programmed = match file {
        Some(f) => Condition::new(
            "Programmed",
            true,
            "Programmed",
            format!("served by cutover listener {:?}", f.name),
        ),
        None => Condition::new(
            "Programmed",
            false,
            "Invalid",
            format!(
                "no cutover listener {}on port {}; add one to the config file (listeners change only with a restart)",
                if https { "with tls " } else { "" },
                l.port
            ),
        ),
    };
    ListenerState {
        file: file.map(|f| f.name.clone()),
        conditions: vec![
            Condition::new("Accepted", true, "Accepted", ""),
            programmed,
            Condition::new("ResolvedRefs", true, "ResolvedRefs", ""),
        ],
        attached: 0,
    }
}

impl GatewayState {
    /// The Gateway's status once every route has attached.
    pub fn status(&self) -> Option<ObjectStatus<GatewayStatus>> {
        let all = self
            .listeners
            .iter()
            .all(|l| l.conditions.iter().all(|c| c.status));
        let programmed = if all {
            Condition::new("Programmed", true, "Programmed", "")
        } else {
            Condition::new(
                "Programmed",
                false,
                "Invalid",
                "one or more listeners are not programmed; see their conditions",
            )
        };
        let listeners = self
            .gateway
            .spec
            .listeners
            .iter()
            .zip(&self.listeners)
            .map(|(spec, l)| ListenerStatus {
                name: spec.name.clone(),
                attached_routes: l.attached,
                conditions: l.conditions.clone(),
            })
            .collect();
        Some(ObjectStatus {
            generation: self.generation,
            status: GatewayStatus {
                conditions: vec![Condition::new("Accepted", true, "Accepted", ""), programmed],
                listeners,
            },
        })
    }
}
