//! One YAML text -> its documents, each a cutover config or an HTTPRoute,
//! with the field path and line of the first error.

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

use crate::config::error::ConfigErrors;
use crate::config::gateway::gateways::GatewayDoc;
use crate::config::gateway::grant::{DocumentKind, ReferenceGrant};
use crate::config::gateway::grpc::RouteKind;
use crate::config::gateway::{ApiVersion, HttpRoute, HttpRouteSpec, ObjectMeta};
use crate::config::model::{AccessLogConfig, Config, GroupConfig, ListenerConfig, RouteConfig};
use crate::config::rollout::RolloutBinding;

/// One parsed YAML document.
#[derive(Debug, Clone)]
pub enum Document {
    /// A cutover config (no `apiVersion`/`kind`).
    Cutover(Config),
    /// A Gateway API HTTPRoute or GRPCRoute.
    HttpRoute(HttpRoute),
    /// A Gateway API ReferenceGrant.
    ReferenceGrant(ReferenceGrant),
    /// A Gateway API Gateway (its listeners; label added by the loader).
    Gateway(GatewayDoc),
}

thread_local! {
    /// Field path of the last document that failed to deserialize:
    /// serde-saphyr's multi-document reader gives no other way out.
    static FAILED_AT: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Parses one or more YAML documents; a syntax or type error names the
/// field path and line/column.
pub fn parse_documents(text: &str) -> Result<Vec<Document>, ConfigErrors> {
    FAILED_AT.with(|p| p.borrow_mut().clear());
    let options = serde_saphyr::options! { with_snippet: false };
    let parsed =
        serde_saphyr::from_str_multiple_with_options::<Tracked, Vec<Tracked>>(text, options);
    let raw = parsed.map_err(|e| {
        let path = FAILED_AT.with(|p| std::mem::take(&mut *p.borrow_mut()));
        let message = e
            .to_string()
            .replace(", set DuplicateKeyPolicy in Options if acceptable", "");
        ConfigErrors::one(path, message)
    })?;
    let numbered = raw.len() > 1;
    let mut errors = ConfigErrors::default();
    let docs = raw
        .into_iter()
        .enumerate()
        .filter_map(|(i, Tracked(doc))| classify(doc, i, numbered, &mut errors))
        .collect();
    errors.into_result(docs)
}

/// Every top-level field either kind of document may have; the kind is
/// decided after reading (see `classify`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    #[serde(rename = "apiVersion", default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<DocumentKind>,
    #[serde(default)]
    metadata: Option<ObjectMeta>,
    #[serde(default)]
    spec: Option<HttpRouteSpec>,
    #[serde(default)]
    status: Option<IgnoredAny>,
    #[serde(default)]
    listeners: Option<Vec<ListenerConfig>>,
    #[serde(default)]
    groups: Option<BTreeMap<String, GroupConfig>>,
    #[serde(default)]
    routes: Option<Vec<RouteConfig>>,
    #[serde(default)]
    access_log: Option<AccessLogConfig>,
    #[serde(default)]
    rollouts: Option<Vec<RolloutBinding>>,
}

struct Tracked(RawDocument);

impl<'de> Deserialize<'de> for Tracked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut track = serde_path_to_error::Track::new();
        let result =
            RawDocument::deserialize(serde_path_to_error::Deserializer::new(d, &mut track));
        if result.is_err() {
            let path = track.path().to_string();
            let path = path.trim_end_matches(".?");
            let path = if path == "." || path == "?" { "" } else { path };
            FAILED_AT.with(|p| *p.borrow_mut() = path.to_string());
        }
        result.map(Tracked)
    }
}

fn classify(
    raw: RawDocument,
    index: usize,
    numbered: bool,
    errors: &mut ConfigErrors,
) -> Option<Document> {
    let k8s = raw.api_version.is_some()
        || raw.kind.is_some()
        || raw.metadata.is_some()
        || raw.spec.is_some()
        || raw.status.is_some();
    if !k8s {
        return Some(Document::Cutover(Config {
            listeners: raw.listeners.unwrap_or_default(),
            groups: raw.groups.unwrap_or_default(),
            routes: raw.routes.unwrap_or_default(),
            access_log: raw.access_log.unwrap_or_default(),
            rollouts: raw.rollouts.unwrap_or_default(),
        }));
    }
    let doc = if numbered {
        format!("document {}: ", index + 1)
    } else {
        String::new()
    };
    let before = errors.0.len();
    let own = [
        ("listeners", raw.listeners.is_some()),
        ("groups", raw.groups.is_some()),
        ("routes", raw.routes.is_some()),
        ("access_log", raw.access_log.is_some()),
        ("rollouts", raw.rollouts.is_some()),
    ];
    for (field, set) in own {
        if set {
            errors.push(
                format!("{doc}{field}"),
                "a cutover config field in a Kubernetes document; put the cutover config in its own document (separated by ---)",
            );
        }
    }
    let api_version = match raw.api_version.as_deref() {
        Some("gateway.networking.k8s.io/v1") => Some(ApiVersion::V1),
        Some("gateway.networking.k8s.io/v1beta1") => Some(ApiVersion::V1beta1),
        Some(other) => {
            errors.push(
                format!("{doc}apiVersion"),
                format!("{other:?} is not supported; HTTPRoute is read from gateway.networking.k8s.io/v1 (or v1beta1)"),
            );
            None
        }
        None => {
            errors.push(
                format!("{doc}apiVersion"),
                "required in a Kubernetes document (gateway.networking.k8s.io/v1)",
            );
            None
        }
    };
    if raw.kind.is_none() {
        errors.push(
            format!("{doc}kind"),
            "required in a Kubernetes document (HTTPRoute, GRPCRoute, Gateway, ReferenceGrant)",
        );
    }
    if raw.spec.is_none() {
        errors.push(format!("{doc}spec"), "required in a Kubernetes document");
    }
    if errors.0.len() > before {
        return None;
    }
    let spec = raw.spec.unwrap_or_default();
    let grant_fields = spec.from.is_some() || spec.to.is_some();
    if raw.kind == Some(DocumentKind::ReferenceGrant) {
        return reference_grant(raw.metadata.unwrap_or_default(), spec, &doc, errors);
    }
    if raw.kind == Some(DocumentKind::Gateway) {
        return gateway(raw.metadata.unwrap_or_default(), spec, &doc, errors);
    }
    if grant_fields {
        errors.push(
            format!("{doc}spec"),
            "`from` and `to` belong to a ReferenceGrant, not a route",
        );
        return None;
    }
    if spec.listeners.is_some() || spec.gateway_class_name.is_some() {
        errors.push(
            format!("{doc}spec"),
            "`gatewayClassName` and `listeners` belong to a Gateway, not a route",
        );
        return None;
    }
    let kind = match raw.kind {
        Some(DocumentKind::GrpcRoute) => RouteKind::Grpc,
        _ => RouteKind::Http,
    };
    if kind == RouteKind::Grpc && api_version == Some(ApiVersion::V1beta1) {
        errors.push(
            format!("{doc}apiVersion"),
            "GRPCRoute is read from gateway.networking.k8s.io/v1",
        );
        return None;
    }
    Some(Document::HttpRoute(HttpRoute {
        kind,
        api_version: api_version?,
        metadata: raw.metadata.unwrap_or_default(),
        spec,
    }))
}

/// A Gateway: `listeners` required (names unique), no HTTPRoute fields.
fn gateway(
    metadata: ObjectMeta,
    spec: HttpRouteSpec,
    doc: &str,
    errors: &mut ConfigErrors,
) -> Option<Document> {
    let before = errors.0.len();
    let route_fields = !spec.rules.is_empty()
        || !spec.hostnames.is_empty()
        || !spec.parent_refs.is_empty()
        || spec.from.is_some()
        || spec.to.is_some();
    if route_fields {
        errors.push(
            format!("{doc}spec"),
            "`rules`, `hostnames`, `parentRefs`, `from` and `to` do not belong to a Gateway",
        );
    }
    let Some(name) = metadata.name else {
        errors.push(format!("{doc}metadata.name"), "required in a Gateway");
        return None;
    };
    let Some(listeners) = spec.listeners.filter(|l| !l.is_empty()) else {
        errors.push(
            format!("{doc}spec.listeners"),
            "a Gateway needs at least one listener",
        );
        return None;
    };
    for (i, l) in listeners.iter().enumerate() {
        if listeners[..i].iter().any(|o| o.name == l.name) {
            errors.push(
                format!("{doc}spec.listeners[{i}].name"),
                format!("{:?} is used by another listener of this Gateway", l.name),
            );
        }
    }
    (errors.0.len() == before).then(|| {
        Document::Gateway(GatewayDoc {
            name,
            namespace: metadata.namespace.unwrap_or_else(|| "default".into()),
            listeners,
            label: doc.to_string(),
        })
    })
}

/// A ReferenceGrant: `from` and `to` required, no HTTPRoute fields.
fn reference_grant(
    metadata: ObjectMeta,
    spec: HttpRouteSpec,
    doc: &str,
    errors: &mut ConfigErrors,
) -> Option<Document> {
    let route_fields =
        !spec.rules.is_empty() || !spec.hostnames.is_empty() || !spec.parent_refs.is_empty();
    if route_fields {
        errors.push(
            format!("{doc}spec"),
            "`rules`, `hostnames` and `parentRefs` belong to an HTTPRoute, not a ReferenceGrant",
        );
    }
    let (Some(from), Some(to)) = (spec.from, spec.to) else {
        errors.push(
            format!("{doc}spec"),
            "a ReferenceGrant needs `from` and `to`",
        );
        return None;
    };
    (!route_fields).then(|| {
        Document::ReferenceGrant(ReferenceGrant {
            namespace: metadata.namespace.unwrap_or_else(|| "default".into()),
            from,
            to,
        })
    })
}
