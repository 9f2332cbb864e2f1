//! One request's record, from the start of `proxy::handle` to the end of the
//! response body: what the pipeline chose, how it ended, and then (once) its
//! metrics and access log line, also when the client leaves early.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use crate::body::{ProxyBody, ResponseBodyError};
use crate::error::ProxyError;
use crate::metrics::access_log::{self, Line};
use crate::metrics::{Chosen, RuleGroupSeries};
use crate::route::{RouteTable, Rule};
use crate::upstream::outlier::{self, Outcome};
use crate::upstream::{Endpoint, Group};

/// Status recorded when the client went away before the response head (as
/// nginx logs it).
const CLIENT_CLOSED: u16 = 499;

/// What the access log needs from the request head; only kept for requests
/// that will be logged.
#[derive(Debug)]
struct LogStart {
    time: SystemTime,
    method: Method,
    path: String,
    bytes_in: Option<u64>,
    request_id: Option<HeaderValue>,
}

/// A request in progress. Records itself exactly once: at the end of the
/// response body, or when dropped (client gone, connection closed).
#[derive(Debug)]
pub struct RequestRecord {
    /// The table the request routes on; held until the body ends so the
    /// handles it carries stay valid.
    pub table: Arc<RouteTable>,
    /// Filled in by the pipeline.
    pub chosen: Chosen,
    started: Instant,
    /// 0 until the response head is known.
    status: u16,
    reason: Option<&'static str>,
    bytes_out: u64,
    log: Option<Box<LogStart>>,
    recorded: bool,
}

impl RequestRecord {
    /// Starts the record of `req`, which routes on `table`.
    pub fn start<B: Body>(
        table: Arc<RouteTable>,
        req: &Request<B>,
        started: Instant,
    ) -> RequestRecord {
        let config = &table.observe.access_log;
        let log = access_log::sampled(config).then(|| {
            let uri = req.uri();
            let path = match uri.path_and_query() {
                Some(pq) if config.include_query => pq.as_str(),
                _ => uri.path(),
            };
            Box::new(LogStart {
                time: crate::clock::wall_now(),
                method: req.method().clone(),
                path: path.to_string(),
                bytes_in: req.body().size_hint().exact(),
                request_id: req.headers().get("x-request-id").cloned(),
            })
        });
        RequestRecord {
            table,
            chosen: Chosen::default(),
            started,
            status: 0,
            reason: None,
            bytes_out: 0,
            log,
            recorded: false,
        }
    }

    /// Notes that the proxy answers itself, and why.
    pub fn local_reply(&mut self, e: &ProxyError) {
        self.reason = Some(e.label());
        // A gRPC call gets this as HTTP 200 with a `grpc-status`; metrics and
        // the log count it under the status it stands for, as any other.
        self.status = e.status().as_u16();
    }

    /// Attaches the record to the response; it completes with the body.
    pub fn finish(mut self, resp: Response<ProxyBody>) -> Response<Observed> {
        if self.reason.is_none() {
            self.status = resp.status().as_u16();
        }
        let (parts, body) = resp.into_parts();
        Response::from_parts(parts, Observed { body, ex: self })
    }

    /// The counters this request lands in.
    fn series(&self) -> &RuleGroupSeries {
        let t = &self.table;
        let Some(rule) = self.chosen.rule.and_then(|r| t.rules.get(r as usize)) else {
            return &t.observe.unmatched;
        };
        self.chosen
            .backend
            .and_then(|b| rule.metrics.backends.get(b as usize))
            .unwrap_or(&rule.metrics.no_group)
    }

    fn record(&mut self) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        if self.status == 0 {
            self.status = CLIENT_CLOSED;
            self.reason = Some(CLIENT_CLOSED_REASON);
        }
        let us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let series = self.series();
        let error = self.status >= 500 || self.reason == Some(UPSTREAM_FAILED);
        series.arm.record(error, us);
        if self.table.observe.enabled {
            series.count(self.status, self.reason);
            series.route_group.observe(self.status, us);
            if self.chosen.attempts == 0 && self.chosen.endpoint.is_some() {
                series.route_group.upstream_attempt();
            }
        }
        if let Some(log) = self.log.take() {
            // Not formatted at all when RUST_LOG turns the access log off.
            if tracing::enabled!(target: access_log::TARGET, tracing::Level::INFO) {
                self.write_log(&log, us);
            }
        }
    }

    /// The rule, group and endpoint the last attempt went to, as far as
    /// they were chosen.
    fn target(&self) -> (Option<&Rule>, Option<&Group>, Option<&Endpoint>) {
        let t = &self.table;
        let rule = self.chosen.rule.and_then(|r| t.rules.get(r as usize));
        let group = rule
            .zip(self.chosen.backend)
            .and_then(|(r, b)| r.split.backends().nth(b as usize))
            .and_then(|(g, _)| t.groups.get(g as usize))
            .map(|g| &**g);
        let endpoint = group
            .zip(self.chosen.endpoint)
            .and_then(|(g, e)| g.endpoints.get(e as usize));
        (rule, group, endpoint)
    }

    /// An upstream broke its body after a good head: one log line, and a
    /// gateway failure against the endpoint for outlier ejection (its head
    /// was counted a success).
    fn upstream_body_failed(&self, e: &ResponseBodyError) {
        let (rule, group, endpoint) = self.target();
        tracing::warn!(
            route = rule.map(|r| &*r.route),
            rule = rule.map(|r| &*r.name),
            group = group.map(|g| &*g.name),
            endpoint = endpoint.map(|e| &*e.state.address),
            error = %e,
            "response aborted"
        );
        if let (Some(g), Some(e)) = (group, endpoint) {
            if let Some(cfg) = &g.policy.outlier {
                outlier::record(g, e, cfg, Outcome::GatewayFailure, crate::clock::now_ms());
            }
        }
    }

    fn write_log(&self, log: &LogStart, us: u64) {
        let (rule, group, endpoint) = self.target();
        let request_id = self.chosen.request_id.as_ref().or(log.request_id.as_ref());
        Line {
            time: access_log::rfc3339(log.time),
            request_id: request_id.and_then(|v| v.to_str().ok()),
            method: log.method.as_str(),
            path: &log.path,
            status: self.status,
            route: rule.map(|r| &*r.route),
            rule: rule.map(|r| &*r.name),
            group: group.map(|g| &*g.name),
            endpoint: endpoint.map(|e| &*e.state.address),
            attempts: self.chosen.attempts.max(u32::from(endpoint.is_some())),
            duration_ms: us as f64 / 1000.0,
            bytes_in: log.bytes_in,
            bytes_out: self.bytes_out,
            reason: self.reason,
        }
        .emit();
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        self.record();
    }
}

/// Reason of a response whose upstream body failed mid-stream (as
/// `ProxyError::UpstreamFailed` names a failed upstream connection).
const UPSTREAM_FAILED: &str = "upstream_failed";
/// Reason of a request whose client left before the response ended.
const CLIENT_CLOSED_REASON: &str = "client_closed";

/// The response body with its request's record: counts bytes out and
/// records the request when the body ends or is dropped.
#[derive(Debug)]
pub struct Observed {
    body: ProxyBody,
    ex: RequestRecord,
}

impl Body for Observed {
    type Data = Bytes;
    type Error = ResponseBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ResponseBodyError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.ex.bytes_out += data.len() as u64;
                }
            }
            Poll::Ready(None) => this.ex.record(),
            Poll::Ready(Some(Err(e))) => {
                // The head said 200, but the body broke: count it apart.
                this.ex.reason.get_or_insert(UPSTREAM_FAILED);
                this.ex.upstream_body_failed(e);
                this.ex.record();
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Observed {
    /// hyper drops a body unfinished only when the client went away (a
    /// finished body was polled to its end or says `is_end_stream`).
    fn drop(&mut self) {
        if !self.ex.recorded && !self.body.is_end_stream() {
            self.ex.reason.get_or_insert(CLIENT_CLOSED_REASON);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Arc<RouteTable> {
        let yaml = "listeners: [{name: l, address: \"127.0.0.1:0\"}]\n\
                    groups: {g: {endpoints: [\"127.0.0.1:1\"]}}\n\
                    routes: [{name: r, rules: [{name: x, backends: [{group: g}]}]}]\n";
        let cfg = crate::config::parse_yaml(yaml).unwrap();
        Arc::new(crate::compile::compile(&cfg, &crate::route::Inherited::default(), 1).unwrap())
    }

    fn request() -> Request<http_body_util::Empty<Bytes>> {
        Request::new(http_body_util::Empty::new())
    }

    #[test]
    fn a_body_dropped_unfinished_counts_as_client_closed() {
        let t = table();
        let ex = RequestRecord::start(Arc::clone(&t), &request(), crate::clock::now());
        let resp = ex.finish(Response::new(ProxyBody::local(Bytes::from_static(b"hi"))));
        drop(resp);
        let counts = t.observe.unmatched.counts();
        assert!(
            counts.contains(&(Some(CLIENT_CLOSED_REASON), 1, 1)),
            "{counts:?}"
        );
    }

    #[test]
    fn a_request_dropped_before_its_head_is_a_499() {
        let t = table();
        let mut ex = RequestRecord::start(Arc::clone(&t), &request(), crate::clock::now());
        ex.chosen.rule = Some(0);
        ex.chosen.backend = Some(0);
        drop(ex);
        let counts = t.rules[0].metrics.backends[0].counts();
        assert!(
            counts.contains(&(Some(CLIENT_CLOSED_REASON), 3, 1)),
            "{counts:?}"
        );
    }
}
