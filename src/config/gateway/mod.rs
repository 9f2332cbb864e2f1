//! Kubernetes Gateway API `HTTPRoute` (and `GRPCRoute`, see [`grpc`]) input:
//! the serde shape of the subset cutover reads ([`HttpRoute`]) and its
//! translation into cutover's own
//! routes and groups ([`convert`]). Every field Gateway API defines is
//! listed, so one cutover cannot honour is reported with its path instead of
//! being dropped by serde.

pub mod convert;
pub mod duration;
pub mod filters;
pub mod gateways;
pub mod generated;
pub mod grant;
pub mod grpc;
pub mod hosts;
pub mod mirror;
pub mod refs;

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::Deserialize;

pub use convert::{convert, Converted, ResolveBackend};
pub use generated::Generated;

/// API group of the Gateway API resources.
pub const API_GROUP: &str = "gateway.networking.k8s.io";

/// `apiVersion` of an accepted document. `v1beta1` is accepted because its
/// HTTPRoute fields are the same as `v1`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    /// `gateway.networking.k8s.io/v1`
    V1,
    /// `gateway.networking.k8s.io/v1beta1`
    V1beta1,
}

/// Kubernetes `ObjectMeta`: only `name` and `namespace` are used; the rest
/// (written by kubectl, controllers, the API server) is accepted and ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ObjectMeta {
    /// Becomes the cutover route name.
    #[serde(default)]
    pub name: Option<String>,
    /// Default namespace of the route's backendRefs; default `default`.
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub generate_name: Option<IgnoredAny>,
    #[serde(default)]
    pub uid: Option<IgnoredAny>,
    #[serde(default)]
    pub resource_version: Option<IgnoredAny>,
    #[serde(default)]
    pub generation: Option<IgnoredAny>,
    #[serde(default)]
    pub creation_timestamp: Option<IgnoredAny>,
    #[serde(default)]
    pub deletion_timestamp: Option<IgnoredAny>,
    #[serde(default)]
    pub deletion_grace_period_seconds: Option<IgnoredAny>,
    #[serde(default)]
    pub owner_references: Option<IgnoredAny>,
    #[serde(default)]
    pub finalizers: Option<IgnoredAny>,
    #[serde(default)]
    pub managed_fields: Option<IgnoredAny>,
    #[serde(default)]
    pub self_link: Option<IgnoredAny>,
}

/// One `HTTPRoute` or `GRPCRoute` document (the same shape, see `grpc`).
#[derive(Debug, Clone)]
pub struct HttpRoute {
    /// `HTTPRoute` or `GRPCRoute`.
    pub kind: grpc::RouteKind,
    /// The document's `apiVersion`.
    pub api_version: ApiVersion,
    /// Name and namespace.
    pub metadata: ObjectMeta,
    /// The route.
    pub spec: HttpRouteSpec,
}

/// `HTTPRouteSpec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRouteSpec {
    /// Gateways (and listeners) the route attaches to: with Gateway
    /// documents loaded they decide where it is served (see `gateways`);
    /// without, every cutover listener serves it.
    #[serde(default)]
    pub parent_refs: Vec<ParentReference>,
    /// Host names; same syntax as cutover's.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// The rules.
    #[serde(default)]
    pub rules: Vec<HttpRouteRule>,
    /// `ReferenceGrant`'s `from` (the document's `spec` is read before its
    /// kind is known; set only in a ReferenceGrant).
    #[serde(default)]
    pub from: Option<Vec<grant::GrantFrom>>,
    /// `ReferenceGrant`'s `to`.
    #[serde(default)]
    pub to: Option<Vec<grant::GrantTo>>,
    /// `Gateway`'s class (set only in a Gateway; recorded).
    #[serde(default)]
    pub gateway_class_name: Option<String>,
    /// `Gateway`'s listeners.
    #[serde(default)]
    pub listeners: Option<Vec<gateways::GatewayListener>>,
    /// `Gateway`'s addresses: cutover binds its own listeners; recorded.
    #[serde(default)]
    pub addresses: Option<IgnoredAny>,
    /// `Gateway`'s infrastructure labels and annotations; recorded.
    #[serde(default)]
    pub infrastructure: Option<IgnoredAny>,
}

/// `ParentReference`: a Gateway and optionally one of its listeners.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ParentReference {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    pub name: String,
    #[serde(default)]
    pub section_name: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
}

/// `HTTPRouteRule`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRouteRule {
    /// Becomes the cutover rule name; default `rule-<index>`.
    #[serde(default)]
    pub name: Option<String>,
    /// Alternatives (OR); none means every request.
    #[serde(default)]
    pub matches: Vec<HttpRouteMatch>,
    /// Header modifiers are supported; other filters are reported.
    #[serde(default)]
    pub filters: Vec<HttpRouteFilter>,
    /// Services and their weights.
    #[serde(default)]
    pub backend_refs: Vec<HttpBackendRef>,
    /// `request` and `backendRequest`.
    #[serde(default)]
    pub timeouts: Option<HttpRouteTimeouts>,
    /// `attempts` and `codes` map to cutover's retry; `backoff` is reported.
    #[serde(default)]
    pub retry: Option<HttpRouteRetry>,
    /// Reported: cutover does not issue session cookies.
    #[serde(default)]
    pub session_persistence: Option<IgnoredAny>,
}

/// `HTTPRouteMatch`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRouteMatch {
    /// Default `PathPrefix /`.
    #[serde(default)]
    pub path: Option<HttpPathMatch>,
    /// Header conditions.
    #[serde(default)]
    pub headers: Vec<HttpValueMatch>,
    /// Query parameter conditions.
    #[serde(default)]
    pub query_params: Vec<HttpValueMatch>,
    /// e.g. `GET`; in a GRPCRoute, the gRPC service and method.
    #[serde(default)]
    pub method: Option<grpc::MethodField>,
}

/// `HTTPPathMatch`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpPathMatch {
    /// `Exact`, `PathPrefix` (default) or `RegularExpression`.
    #[serde(rename = "type", default = "path_prefix")]
    pub kind: super::model::PathMatchType,
    /// Default `/`.
    #[serde(default = "slash")]
    pub value: String,
}

fn path_prefix() -> super::model::PathMatchType {
    super::model::PathMatchType::PathPrefix
}

fn slash() -> String {
    "/".into()
}

/// Gateway API's header and query match types (no `Present`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum GatewayValueMatchType {
    /// Equal, case-sensitive.
    #[default]
    Exact,
    /// Whole-value regular expression.
    RegularExpression,
}

/// `HTTPHeaderMatch` and `HTTPQueryParamMatch` (same shape).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpValueMatch {
    /// Default `Exact`.
    #[serde(rename = "type", default)]
    pub kind: GatewayValueMatchType,
    /// Header or parameter name.
    pub name: String,
    /// Value or pattern.
    pub value: String,
}

/// `HTTPRouteFilter` type names, including the ones cutover reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[allow(missing_docs)]
pub enum FilterType {
    RequestHeaderModifier,
    ResponseHeaderModifier,
    RequestMirror,
    RequestRedirect,
    URLRewrite,
    ExtensionRef,
    CORS,
    ExternalAuth,
}

/// `HTTPRouteFilter`: a type plus the field of that type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct HttpRouteFilter {
    #[serde(rename = "type")]
    pub kind: FilterType,
    #[serde(default)]
    pub request_header_modifier: Option<HttpHeaderFilter>,
    #[serde(default)]
    pub response_header_modifier: Option<HttpHeaderFilter>,
    #[serde(default)]
    pub request_mirror: Option<mirror::HttpRequestMirror>,
    #[serde(default)]
    pub request_redirect: Option<filters::HttpRequestRedirect>,
    #[serde(default)]
    pub url_rewrite: Option<filters::HttpUrlRewrite>,
    #[serde(default)]
    pub extension_ref: Option<IgnoredAny>,
    #[serde(default)]
    pub cors: Option<filters::HttpCors>,
    #[serde(default)]
    pub external_auth: Option<IgnoredAny>,
}

/// `HTTPHeaderFilter`: the same shape as cutover's header modifier.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpHeaderFilter {
    /// Replace.
    #[serde(default)]
    pub set: Vec<super::model::HeaderValueConfig>,
    /// Append.
    #[serde(default)]
    pub add: Vec<super::model::HeaderValueConfig>,
    /// Delete.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// `HTTPBackendRef`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpBackendRef {
    /// `""` (core) or absent.
    #[serde(default)]
    pub group: Option<String>,
    /// `Service` or absent.
    #[serde(default)]
    pub kind: Option<String>,
    /// A cutover group of that name, or a Kubernetes Service.
    pub name: String,
    /// Service namespace; default the route's.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Service port; required unless `name` is a cutover group.
    #[serde(default)]
    pub port: Option<u16>,
    /// Default 1.
    #[serde(default)]
    pub weight: Option<u32>,
    /// Per-backend filters: header modifiers.
    #[serde(default)]
    pub filters: Vec<HttpRouteFilter>,
}

/// `HTTPRouteTimeouts`, in Gateway API duration syntax (`10s`, `1h30m`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRouteTimeouts {
    /// The whole request.
    #[serde(default)]
    pub request: Option<String>,
    /// One request from the gateway to a backend.
    #[serde(default)]
    pub backend_request: Option<String>,
}

/// `HTTPRouteRetry`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRouteRetry {
    /// Retryable status codes.
    #[serde(default)]
    pub codes: Vec<u16>,
    /// Retries after the first attempt.
    #[serde(default)]
    pub attempts: Option<u32>,
    /// Minimum wait between attempts: reported (cutover's jitter may wait less).
    #[serde(default)]
    pub backoff: Option<String>,
}

#[cfg(test)]
mod tests;
