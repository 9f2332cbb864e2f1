//! `GRPCRoute` in cutover's reading: the same document shape as an
//! HTTPRoute (parentRefs, hostnames, rules with filters and weighted
//! backendRefs, read by the same types and converted by the same code),
//! except that a match names a gRPC `method` ({service, method}) instead of
//! a path, and the rule has no timeouts, retry or HTTP-only filters.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::{FilterType, HttpRouteFilter, HttpRouteMatch, HttpRouteRule};
use crate::config::error::ConfigErrors;
use crate::config::model::{GrpcMatchConfig, MatchConfig};

/// Which Gateway API route kind a document is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RouteKind {
    /// `HTTPRoute`.
    #[default]
    Http,
    /// `GRPCRoute`.
    Grpc,
}

impl RouteKind {
    /// The `kind` as Gateway API spells it (ReferenceGrant `from`,
    /// `allowedRoutes.kinds`, labels).
    pub fn name(self) -> &'static str {
        match self {
            RouteKind::Http => "HTTPRoute",
            RouteKind::Grpc => "GRPCRoute",
        }
    }
}

/// A match's `method`: an HTTP method name in an HTTPRoute, a gRPC
/// service/method match in a GRPCRoute (the document's kind is known only
/// after its spec is read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MethodField {
    /// e.g. `GET`.
    Http(String),
    /// `{type, service, method}`.
    Grpc(GrpcMatchConfig),
}

impl<'de> Deserialize<'de> for MethodField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> Visitor<'de> for Either {
            type Value = MethodField;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an HTTP method (HTTPRoute) or {service, method} (GRPCRoute)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MethodField, E> {
                Ok(MethodField::Http(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MethodField, A::Error> {
                GrpcMatchConfig::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(MethodField::Grpc)
            }
        }
        d.deserialize_any(Either)
    }
}

/// Refuses, naming the field, what a GRPCRoute rule cannot hold.
pub fn check_rule(rule: &HttpRouteRule, at: &str, errors: &mut ConfigErrors) {
    if rule.timeouts.is_some() {
        errors.push(format!("{at}.timeouts"), not_grpc("timeouts"));
    }
    if rule.retry.is_some() {
        errors.push(format!("{at}.retry"), not_grpc("retry"));
    }
    check_filters(&rule.filters, at, errors);
    for (k, b) in rule.backend_refs.iter().enumerate() {
        check_filters(&b.filters, &format!("{at}.backendRefs[{k}]"), errors);
    }
}

fn check_filters(list: &[HttpRouteFilter], at: &str, errors: &mut ConfigErrors) {
    for (f, filter) in list.iter().enumerate() {
        if matches!(
            filter.kind,
            FilterType::RequestRedirect
                | FilterType::URLRewrite
                | FilterType::CORS
                | FilterType::ExternalAuth
        ) {
            errors.push(
                format!("{at}.filters[{f}].type"),
                format!(
                    "{:?} is not a GRPCRoute filter (RequestHeaderModifier, ResponseHeaderModifier, RequestMirror)",
                    filter.kind
                ),
            );
        }
    }
}

fn not_grpc(field: &str) -> String {
    format!("`{field}` is an HTTPRoute field, not a GRPCRoute one; remove it")
}

/// A GRPCRoute rule's matches as cutover matches; none is one matching
/// every gRPC request (ranked as such).
pub fn convert_matches(
    matches: &[HttpRouteMatch],
    at: &str,
    errors: &mut ConfigErrors,
) -> Vec<MatchConfig> {
    if matches.is_empty() {
        return vec![MatchConfig {
            grpc: Some(GrpcMatchConfig::default()),
            ..MatchConfig::default()
        }];
    }
    let mut out = Vec::with_capacity(matches.len());
    for (j, m) in matches.iter().enumerate() {
        let here = format!("{at}.matches[{j}]");
        if m.path.is_some() {
            errors.push(format!("{here}.path"), not_grpc("path"));
        }
        if !m.query_params.is_empty() {
            errors.push(format!("{here}.queryParams"), not_grpc("queryParams"));
        }
        let grpc = match &m.method {
            None => GrpcMatchConfig::default(),
            Some(MethodField::Grpc(g)) => g.clone(),
            Some(MethodField::Http(name)) => {
                errors.push(
                    format!("{here}.method"),
                    format!("{name:?}: a GRPCRoute method is {{service, method}}, e.g. {{service: helloworld.Greeter, method: SayHello}}"),
                );
                continue;
            }
        };
        out.push(MatchConfig {
            grpc: Some(grpc),
            headers: super::convert::header_matches(m),
            ..MatchConfig::default()
        });
    }
    out
}
