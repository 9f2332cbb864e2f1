//! GRPCRoute documents: the method match in each form, and the fields that
//! belong to the other route kind.

use super::{assert_error, compiled};
use crate::config::model::GrpcMatchType;

#[test]
fn grpc_matches_and_shared_fields_convert() {
    let route = r#"apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: echo, namespace: grpc}
spec:
  hostnames: [grpc.example.com]
  rules:
  - matches:
    - method: {service: echo.Echo, method: Get}
      headers: [{name: x-v, value: "2"}]
    - method: {type: RegularExpression, method: "Get.*"}
    backendRefs: [{name: echo, port: 9000}]
  - backendRefs: [{name: echo, port: 9000}]
"#;
    let config = compiled(route).unwrap_or_else(|e| panic!("{e}"));
    let r = &config.routes[0];
    assert_eq!(r.hostnames, ["grpc.example.com"]);
    let m = &r.rules[0].matches;
    let g = m[0].grpc.as_ref().unwrap(); // ok: a test of a literal route
    assert_eq!(
        (g.service.as_deref(), g.method.as_deref()),
        (Some("echo.Echo"), Some("Get"))
    );
    assert_eq!(m[0].headers[0].name, "x-v");
    assert_eq!(
        m[1].grpc.as_ref().unwrap().kind, // ok: a test of a literal route
        GrpcMatchType::RegularExpression
    );
    assert!(m.iter().all(|m| m.path.is_none() && m.method.is_none()));
    let all = &r.rules[1].matches;
    assert_eq!(all.len(), 1, "no matches: one matching every call");
    assert_eq!(all[0].grpc, Some(Default::default()));
    assert_eq!(
        config.groups["echo"].protocol,
        crate::config::model::UpstreamProtocol::H2
    );
}

#[test]
fn each_kind_refuses_the_others_method_naming_the_field() {
    let http = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  rules:
  - matches: [{method: {service: echo.Echo}}]
    backendRefs: [{name: web, port: 80}]
"#;
    assert_error(
        http,
        "HTTPRoute web: spec.rules[0].matches[0].method: an HTTPRoute method",
    );
    let grpc = http
        .replace("HTTPRoute", "GRPCRoute")
        .replace("{method: {service: echo.Echo}}", "{method: GET}");
    assert_error(
        &grpc,
        "GRPCRoute web: spec.rules[0].matches[0].method: \"GET\"",
    );
    let bad_regex = grpc.replace(
        "{method: GET}",
        "{method: {type: RegularExpression, service: \"(\"}}",
    );
    assert_error(
        &bad_regex,
        "GRPCRoute web: spec.rules[0].matches[0].method.service: invalid regular expression",
    );
    let beta = grpc
        .replace("/v1\n", "/v1beta1\n")
        .replace("{method: GET}", "{method: {service: a}}");
    assert_error(&beta, "GRPCRoute is read from gateway.networking.k8s.io/v1");
}
