//! The Gateway API objects the controller watches, as the API server sends
//! them. Fields are read leniently here (a newer Gateway API release may add
//! some): the HTTPRoute spec stays raw JSON until the index converts it, so
//! one object cutover cannot read gets a status saying why instead of
//! breaking the watch. The `gateway-api` crate is not used: it follows an
//! older `kube`/`k8s-openapi` than ours, and these few types are all we read.

use std::borrow::Cow;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::core::{ClusterResourceScope, NamespaceResourceScope};
use serde::{Deserialize, Serialize};

use crate::config::gateway::API_GROUP;

/// The Gateway API version served and written.
pub const VERSION: &str = "v1";

/// Implements `kube::Resource` for a Gateway API type (static, no
/// discovery needed).
macro_rules! gateway_resource {
    ($ty:ident, $kind:literal, $plural:literal, $version:expr, $scope:ty) => {
        impl kube::Resource for $ty {
            type DynamicType = ();
            type Scope = $scope;
            fn kind(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($kind)
            }
            fn group(_: &()) -> Cow<'_, str> {
                Cow::Borrowed(API_GROUP)
            }
            fn version(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($version)
            }
            fn plural(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($plural)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

/// `GatewayClass`: cutover serves the Gateways of the classes whose
/// `controllerName` is its own.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct GatewayClass {
    /// Name and generation.
    pub metadata: ObjectMeta,
    /// The controller name.
    pub spec: GatewayClassSpec,
    /// As written by controllers (kept raw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}
gateway_resource!(
    GatewayClass,
    "GatewayClass",
    "gatewayclasses",
    VERSION,
    ClusterResourceScope
);

/// `GatewayClassSpec`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassSpec {
    /// e.g. `cutover.dev/gateway-controller`.
    pub controller_name: String,
}

/// `Gateway`: its listeners are served by cutover's own listeners of the
/// same port.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Gateway {
    /// Name, namespace, generation.
    pub metadata: ObjectMeta,
    /// Class and listeners.
    pub spec: GatewaySpec,
    /// As written by controllers (kept raw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}
gateway_resource!(
    Gateway,
    "Gateway",
    "gateways",
    VERSION,
    NamespaceResourceScope
);

/// `GatewaySpec`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// The `GatewayClass`.
    pub gateway_class_name: String,
    /// Ports, protocols, hostnames.
    #[serde(default)]
    pub listeners: Vec<Listener>,
}

/// `Listener`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// Unique in the Gateway; a parentRef's `sectionName`.
    pub name: String,
    /// Narrows the hostnames of attached routes.
    #[serde(default)]
    pub hostname: Option<String>,
    /// The port: a cutover listener of this port serves it.
    pub port: i32,
    /// `HTTP` or `HTTPS` are served.
    pub protocol: String,
    /// TLS settings (HTTPS): the Secrets holding the certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<GatewayTls>,
    /// Which routes may attach.
    #[serde(default)]
    pub allowed_routes: Option<AllowedRoutes>,
}

/// `GatewayTLSConfig`: cutover terminates TLS with the certificates of the
/// Secrets named (the listener's own `tls` certificates serve names they
/// do not cover).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayTls {
    /// `Terminate` (default); `Passthrough` is not served.
    #[serde(default)]
    pub mode: Option<String>,
    /// Secrets of type `kubernetes.io/tls` (`tls.crt`, `tls.key`).
    #[serde(default)]
    pub certificate_refs: Vec<SecretObjectReference>,
}

/// `SecretObjectReference`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SecretObjectReference {
    /// Default `""` (core).
    #[serde(default)]
    pub group: Option<String>,
    /// Default `Secret`.
    #[serde(default)]
    pub kind: Option<String>,
    /// The Secret's name.
    pub name: String,
    /// Default the Gateway's namespace; another needs a ReferenceGrant.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `AllowedRoutes`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedRoutes {
    /// Default: the Gateway's own namespace.
    #[serde(default)]
    pub namespaces: Option<RouteNamespaces>,
    /// Route kinds; cutover serves `HTTPRoute`.
    #[serde(default)]
    pub kinds: Option<Vec<RouteGroupKind>>,
}

/// `RouteNamespaces`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteNamespaces {
    /// `All`, `Same` (default) or `Selector`.
    #[serde(default)]
    pub from: Option<String>,
    /// With `Selector`: the namespaces' labels.
    #[serde(default)]
    pub selector: Option<LabelSelector>,
}

/// `RouteGroupKind`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RouteGroupKind {
    /// Default the Gateway API group.
    #[serde(default)]
    pub group: Option<String>,
    /// e.g. `HTTPRoute`.
    pub kind: String,
}

/// `HTTPRoute`, its spec raw: the index converts it with the file mode's
/// strict reader, so an unsupported field becomes a status, not a watch
/// error.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct HttpRoute {
    /// Name, namespace, generation.
    pub metadata: ObjectMeta,
    /// The spec as sent; shared (not copied) with the index's fallback
    /// of the last accepted spec.
    #[serde(default, with = "shared")]
    pub spec: Arc<serde_json::Value>,
    /// As written by every controller (cutover keeps the others' entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}
gateway_resource!(
    HttpRoute,
    "HTTPRoute",
    "httproutes",
    VERSION,
    NamespaceResourceScope
);

/// `GRPCRoute` (v1, Standard channel), its spec raw like [`HttpRoute`]'s:
/// the index reads it with the same types, the match `method` being a gRPC
/// service/method.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct GrpcRoute {
    /// Name, namespace, generation.
    pub metadata: ObjectMeta,
    /// The spec as sent; shared (not copied) with the index's fallback
    /// of the last accepted spec.
    #[serde(default, with = "shared")]
    pub spec: Arc<serde_json::Value>,
    /// As written by every controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}
gateway_resource!(
    GrpcRoute,
    "GRPCRoute",
    "grpcroutes",
    VERSION,
    NamespaceResourceScope
);

/// `EndpointSlice` (discovery.k8s.io/v1) with just what the index reads:
/// the ports' names and numbers, each endpoint's addresses and readiness.
/// The store holds one per slice of the cluster, and `k8s-openapi`'s type
/// spends ~340 bytes per endpoint on fields cutover never reads (pod
/// reference, node, zone, hints), decoded for every pod: at 50,000
/// endpoints that was 17 MiB of the controller's memory.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct EndpointSlice {
    /// Name, namespace, the `kubernetes.io/service-name` label.
    pub metadata: ObjectMeta,
    /// The ports (a Service port's `targetPort`, resolved, by name).
    #[serde(default)]
    pub ports: Option<Vec<EndpointPort>>,
    /// The pods.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

impl kube::Resource for EndpointSlice {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;
    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("EndpointSlice")
    }
    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("discovery.k8s.io")
    }
    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("v1")
    }
    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("endpointslices")
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// `EndpointPort`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct EndpointPort {
    /// The Service port's name (empty when it has one unnamed port).
    #[serde(default)]
    pub name: Option<String>,
    /// The pods' port.
    #[serde(default)]
    pub port: Option<i32>,
}

/// `Endpoint`: one pod.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Endpoint {
    /// Its IP addresses.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Readiness; absent means ready.
    #[serde(default)]
    pub conditions: Option<EndpointConditions>,
}

/// `EndpointConditions`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct EndpointConditions {
    /// Ready for new requests (unset: ready).
    #[serde(default)]
    pub ready: Option<bool>,
    /// Shutting down: no new requests.
    #[serde(default)]
    pub terminating: Option<bool>,
}

/// `ReferenceGrant` (v1beta1): lets routes of other namespaces reference
/// Services of this one.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ReferenceGrant {
    /// Name and namespace (the namespace holding the targets).
    pub metadata: ObjectMeta,
    /// From whom, to what.
    pub spec: ReferenceGrantSpec,
}
gateway_resource!(
    ReferenceGrant,
    "ReferenceGrant",
    "referencegrants",
    "v1beta1",
    NamespaceResourceScope
);

/// `ReferenceGrantSpec`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ReferenceGrantSpec {
    /// Referrers allowed.
    #[serde(default)]
    pub from: Vec<GrantFrom>,
    /// Targets allowed.
    #[serde(default)]
    pub to: Vec<GrantTo>,
}

/// `ReferenceGrantFrom`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct GrantFrom {
    /// The referrer's group.
    #[serde(default)]
    pub group: String,
    /// The referrer's kind.
    pub kind: String,
    /// The referrer's namespace.
    pub namespace: String,
}

/// `ReferenceGrantTo`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct GrantTo {
    /// The target's group (`""` for core).
    #[serde(default)]
    pub group: String,
    /// The target's kind.
    pub kind: String,
    /// One target, or every one of that kind.
    #[serde(default)]
    pub name: Option<String>,
}

/// Serde for an `Arc<Value>` (serde's `rc` feature is not enabled).
mod shared {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;

    pub fn serialize<S: Serializer>(v: &Arc<Value>, s: S) -> Result<S::Ok, S::Error> {
        (**v).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<Value>, D::Error> {
        Value::deserialize(d).map(Arc::new)
    }
}
