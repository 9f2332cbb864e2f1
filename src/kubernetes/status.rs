//! Status documents for server-side apply: what the index decided, with
//! `observedGeneration` and `lastTransitionTime` (kept from the object while
//! a condition's status holds), and the other controllers' entries of an
//! HTTPRoute kept. [`Patch::unchanged`] tells a document that would write
//! nothing new, so an unchanged status is never re-written.

use serde_json::{json, Map, Value};

use super::index::{Condition, GatewayStatus, ObjectStatus, ParentKey, RouteStatus};
use super::resources::VERSION;
use crate::config::gateway::API_GROUP;

/// One status to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Patch {
    /// The apply document (apiVersion, kind, metadata, status).
    pub body: Value,
    /// The part of `body` that is ours, minus transition times: equal to
    /// the same part of the object's current status means nothing to do.
    pub ours: Value,
}

impl Patch {
    /// Whether the object's `current` status already says what this would.
    pub fn unchanged(&self, current: &Value) -> bool {
        self.ours == current.clone()
    }
}

fn conditions(wanted: &[Condition], generation: i64, current: Option<&Value>, now: &str) -> Value {
    let list = wanted
        .iter()
        .map(|c| {
            let status = if c.status { "True" } else { "False" };
            // The transition time moves only when the status does.
            let since = current
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|x| x["type"] == c.kind))
                .filter(|x| x["status"] == status)
                .and_then(|x| x["lastTransitionTime"].as_str())
                .unwrap_or(now);
            json!({
                "type": c.kind,
                "status": status,
                "reason": c.reason,
                "message": c.message,
                "observedGeneration": generation,
                "lastTransitionTime": since,
            })
        })
        .collect();
    Value::Array(list)
}

/// Conditions without their transition times, for comparison.
fn comparable(conditions: &Value) -> Value {
    let mut c = conditions.clone();
    if let Some(list) = c.as_array_mut() {
        for x in list {
            if let Some(o) = x.as_object_mut() {
                o.remove("lastTransitionTime");
            }
        }
    }
    c
}

fn document(kind: &str, namespace: Option<&str>, name: &str, status: Value) -> Value {
    let mut metadata = Map::new();
    metadata.insert("name".into(), name.into());
    if let Some(ns) = namespace {
        metadata.insert("namespace".into(), ns.into());
    }
    json!({
        "apiVersion": format!("{API_GROUP}/{VERSION}"),
        "kind": kind,
        "metadata": metadata,
        "status": status,
    })
}

/// A GatewayClass's status; `current` is the object's status.
pub fn gateway_class(
    name: &str,
    wanted: &ObjectStatus<Vec<Condition>>,
    current: Option<&Value>,
    now: &str,
) -> Patch {
    let cs = conditions(
        &wanted.status,
        wanted.generation,
        current.map(|c| &c["conditions"]),
        now,
    );
    Patch {
        ours: comparable(&cs),
        body: document("GatewayClass", None, name, json!({ "conditions": cs })),
    }
}

/// The comparable part of a GatewayClass's current status.
pub fn gateway_class_current(current: Option<&Value>) -> Value {
    current.map_or(Value::Null, |c| comparable(&c["conditions"]))
}

/// A Gateway's status.
pub fn gateway(
    namespace: &str,
    name: &str,
    wanted: &ObjectStatus<GatewayStatus>,
    current: Option<&Value>,
    now: &str,
) -> Patch {
    let g = wanted.generation;
    let cs = conditions(
        &wanted.status.conditions,
        g,
        current.map(|c| &c["conditions"]),
        now,
    );
    let listeners: Vec<Value> = wanted
        .status
        .listeners
        .iter()
        .map(|l| {
            let was = current
                .and_then(|c| c["listeners"].as_array())
                .and_then(|ls| ls.iter().find(|x| x["name"] == l.name.as_str()));
            json!({
                "name": l.name,
                "supportedKinds": [
                    {"group": API_GROUP, "kind": "HTTPRoute"},
                    {"group": API_GROUP, "kind": "GRPCRoute"},
                ],
                "attachedRoutes": l.attached_routes,
                "conditions": conditions(&l.conditions, g, was.map(|w| &w["conditions"]), now),
            })
        })
        .collect();
    let mut status = json!({ "conditions": cs, "listeners": listeners });
    if !wanted.status.addresses.is_empty() {
        status["addresses"] = addresses(&wanted.status.addresses);
    }
    Patch {
        ours: gateway_current(Some(&status)),
        body: document("Gateway", Some(namespace), name, status),
    }
}

/// The comparable part of a Gateway's current status.
pub fn gateway_current(current: Option<&Value>) -> Value {
    let Some(c) = current else {
        return Value::Null;
    };
    let listeners: Vec<Value> = c["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            json!({
                "name": l["name"],
                "attachedRoutes": l["attachedRoutes"],
                "conditions": comparable(&l["conditions"]),
            })
        })
        .collect();
    json!({
        "conditions": comparable(&c["conditions"]),
        "listeners": listeners,
        "addresses": c["addresses"],
    })
}

/// `status.addresses`: each an `IPAddress` or a `Hostname`.
fn addresses(list: &[String]) -> Value {
    let entries = list
        .iter()
        .map(|a| {
            let kind = if a.parse::<std::net::IpAddr>().is_ok() {
                "IPAddress"
            } else {
                "Hostname"
            };
            json!({ "type": kind, "value": a })
        })
        .collect();
    Value::Array(entries)
}

/// An HTTPRoute's (or, `kind`, GRPCRoute's) status: the other
/// controllers' parents as they are, ours as the index decided.
pub fn route(
    kind: &str,
    namespace: &str,
    name: &str,
    controller: &str,
    wanted: &ObjectStatus<RouteStatus>,
    current: Option<&Value>,
    now: &str,
) -> Patch {
    let existing: Vec<&Value> = current
        .and_then(|c| c["parents"].as_array())
        .into_iter()
        .flatten()
        .collect();
    let mut parents: Vec<Value> = existing
        .iter()
        .filter(|p| p["controllerName"] != controller)
        .map(|p| (*p).clone())
        .collect();
    for (parent, cs) in &wanted.status {
        let parent_ref = parent_ref(parent);
        let was = existing
            .iter()
            .find(|p| p["controllerName"] == controller && p["parentRef"] == parent_ref);
        parents.push(json!({
            "parentRef": parent_ref,
            "controllerName": controller,
            "conditions": conditions(cs, wanted.generation, was.map(|w| &w["conditions"]), now),
        }));
    }
    let status = json!({ "parents": parents });
    Patch {
        ours: route_current(Some(&status), controller),
        body: document(kind, Some(namespace), name, status),
    }
}

/// The comparable part of an HTTPRoute's current status: cutover's parents.
pub fn route_current(current: Option<&Value>, controller: &str) -> Value {
    let ours: Vec<Value> = current
        .and_then(|c| c["parents"].as_array())
        .into_iter()
        .flatten()
        .filter(|p| p["controllerName"] == controller)
        .map(|p| json!({ "parentRef": p["parentRef"], "conditions": comparable(&p["conditions"]) }))
        .collect();
    Value::Array(ours)
}

fn parent_ref(p: &ParentKey) -> Value {
    serde_json::to_value(p).unwrap_or(Value::Null)
}

/// Now, as Kubernetes writes times (RFC 3339, seconds).
pub fn now() -> String {
    let t = k8s_openapi::jiff::Timestamp::now();
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}
