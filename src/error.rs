//! Every way the proxy itself answers a request, with its status and reason.
//! One enum so the pipeline, the logs and (later) metrics agree on names.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::body::ProxyBody;
use crate::config::model::Limit;

/// Why the proxy answered instead of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// Ambiguous or invalid framing; the connection is closed after the reply.
    BadRequest(&'static str),
    /// No route rule matches the request.
    NoRoute,
    /// The rule's backends all have weight 0.
    NoBackend,
    /// The chosen group has no endpoint.
    NoEndpoints,
    /// No connection could be made to the endpoint.
    ConnectFailed,
    /// The endpoint failed mid-exchange (reset, protocol error).
    UpstreamFailed,
    /// The endpoint's response had a transfer coding other than `chunked`.
    UpstreamFraming,
    /// The endpoint answered 101 to a request that did not ask to upgrade.
    UnexpectedUpgrade,
    /// `timeouts.request` fired before a response head arrived.
    RequestTimeout,
    /// `timeouts.per_try` fired on the last attempt.
    PerTryTimeout,
    /// Every endpoint of the chosen groups is ejected or failing health checks.
    NoHealthyEndpoints,
    /// A circuit-breaking limit of the group or endpoint is reached.
    Overflow(Limit),
    /// The request body is over the listener's `max_request_body`.
    BodyTooLarge,
    /// The client's connection failed while its body was read.
    ClientBodyFailed,
    /// The listener's `request_body_timeout` passed with nothing of the body.
    BodyTimeout,
    /// A configured `fault.abort` answered with this status.
    FaultInjected(StatusCode),
    /// The split picked an HTTPRoute backendRef that could not be resolved
    /// (or the rule has none): Gateway API's 500 (gRPC: UNAVAILABLE).
    UnresolvedBackend,
}

impl ProxyError {
    /// HTTP status of the local reply.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoBackend
            | ProxyError::NoEndpoints
            | ProxyError::NoHealthyEndpoints
            | ProxyError::Overflow(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::ConnectFailed
            | ProxyError::UpstreamFailed
            | ProxyError::UpstreamFraming
            | ProxyError::UnexpectedUpgrade => StatusCode::BAD_GATEWAY,
            ProxyError::RequestTimeout | ProxyError::PerTryTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::ClientBodyFailed => StatusCode::BAD_REQUEST,
            ProxyError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::FaultInjected(status) => *status,
            ProxyError::UnresolvedBackend => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable snake_case name for logs and metric labels.
    pub fn label(&self) -> &'static str {
        match self {
            ProxyError::BadRequest(_) => "bad_request",
            ProxyError::NoRoute => "no_route",
            ProxyError::NoBackend => "no_backend",
            ProxyError::NoEndpoints => "no_endpoints",
            ProxyError::ConnectFailed => "connect_failed",
            ProxyError::UpstreamFailed => "upstream_failed",
            ProxyError::UpstreamFraming => "upstream_framing",
            ProxyError::UnexpectedUpgrade => "unexpected_upgrade",
            ProxyError::RequestTimeout => "request_timeout",
            ProxyError::PerTryTimeout => "per_try_timeout",
            ProxyError::NoHealthyEndpoints => "no_healthy_endpoints",
            ProxyError::Overflow(limit) => limit.reason(),
            ProxyError::BodyTooLarge => "body_too_large",
            ProxyError::ClientBodyFailed => "client_body_failed",
            ProxyError::BodyTimeout => "request_body_timeout",
            ProxyError::FaultInjected(_) => "fault_injected",
            ProxyError::UnresolvedBackend => "unresolved_backend",
        }
    }

    /// One line for the client, naming the reason.
    pub fn message(&self) -> &'static str {
        match self {
            ProxyError::BadRequest(why) => why,
            ProxyError::NoRoute => "no route matches this request",
            ProxyError::NoBackend => "every backend of the matched rule has weight 0",
            ProxyError::NoEndpoints => "the chosen upstream group has no endpoint",
            ProxyError::ConnectFailed => "could not connect to the upstream",
            ProxyError::UpstreamFailed => "the upstream connection failed",
            ProxyError::UpstreamFraming => {
                "the upstream response has a transfer coding other than chunked"
            }
            ProxyError::UnexpectedUpgrade => "the upstream switched protocols unasked",
            ProxyError::RequestTimeout => "request timeout (timeouts.request) fired",
            ProxyError::PerTryTimeout => "per-try timeout (timeouts.per_try) fired",
            ProxyError::NoHealthyEndpoints => {
                "no healthy endpoint: every candidate is ejected or failing health checks"
            }
            ProxyError::Overflow(limit) => limit.message(),
            ProxyError::BodyTooLarge => "request body over max_request_body",
            ProxyError::ClientBodyFailed => "the request body could not be read",
            ProxyError::BodyTimeout => "request body timeout (request_body_timeout) fired",
            ProxyError::FaultInjected(_) => "fault injected (fault.abort)",
            ProxyError::UnresolvedBackend => {
                "the chosen backend could not be resolved (`cutover check` names it)"
            }
        }
    }

    /// The gRPC status code a gRPC client gets instead of [`Self::status`]:
    /// gRPC's own HTTP-to-gRPC mapping, except that no route is UNIMPLEMENTED
    /// (what a server without the method answers, and what Gateway API's
    /// conformance tests expect) and an unresolved backend UNAVAILABLE (as
    /// GRPCRoute asks).
    pub fn grpc_status(&self) -> u8 {
        const UNKNOWN: u8 = 2;
        const PERMISSION_DENIED: u8 = 7;
        const UNIMPLEMENTED: u8 = 12;
        const INTERNAL: u8 = 13;
        const UNAVAILABLE: u8 = 14;
        const UNAUTHENTICATED: u8 = 16;
        match self {
            ProxyError::NoRoute => UNIMPLEMENTED,
            ProxyError::UnresolvedBackend => UNAVAILABLE,
            other => match other.status().as_u16() {
                400 => INTERNAL,
                401 => UNAUTHENTICATED,
                403 => PERMISSION_DENIED,
                404 => UNIMPLEMENTED,
                429 | 502 | 503 | 504 => UNAVAILABLE,
                _ => UNKNOWN,
            },
        }
    }

    /// The local reply: plain text, or for a gRPC request (`grpc`) a
    /// trailers-only gRPC answer (HTTP 200, `grpc-status`, `grpc-message`),
    /// which every gRPC client reads as the call's status.
    pub fn reply(self, grpc: bool) -> Response<ProxyBody> {
        if !grpc {
            return self.into_response();
        }
        let mut resp = Response::new(ProxyBody::local(Bytes::new()));
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert(
            "grpc-status",
            HeaderValue::from(u16::from(self.grpc_status())),
        );
        // Printable ASCII needs no percent-encoding in `grpc-message`.
        if let Ok(message) = HeaderValue::from_str(self.message()) {
            h.insert("grpc-message", message);
        }
        resp
    }

    /// The plain-text local reply. Bad framing also closes the connection:
    /// after it, the byte stream cannot be trusted.
    pub fn into_response(self) -> Response<ProxyBody> {
        let body = format!("cutover: {}\n", self.message());
        let mut resp = Response::new(ProxyBody::local(Bytes::from(body)));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if matches!(
            self,
            ProxyError::BadRequest(_)
                | ProxyError::BodyTooLarge
                | ProxyError::ClientBodyFailed
                | ProxyError::BodyTimeout
        ) {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}
