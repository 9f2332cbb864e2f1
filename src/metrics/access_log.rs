//! The access log: one JSON line per request (all, sampled, or none), emitted
//! through `tracing` with target `access_log` so the binary can send it to
//! stdout and everything else to stderr.

use std::time::{SystemTime, UNIX_EPOCH};

use std::io::Write;

use serde::Serialize;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::model::{AccessLogConfig, AccessLogMode};

/// The `tracing` target of access log lines.
pub const TARGET: &str = "access_log";

/// Decides, at the start of a request, whether it will be logged.
pub fn sampled(config: &AccessLogConfig) -> bool {
    match config.mode {
        AccessLogMode::Off => false,
        AccessLogMode::On => true,
        AccessLogMode::Sampled => rand::random::<f64>() < config.sample_rate,
    }
}

/// One request as the access log shows it. `None` fields are `null`.
#[derive(Debug, Serialize)]
pub struct Line<'a> {
    /// Start of the request, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// `x-request-id` (the client's, or the one the proxy generated).
    pub request_id: Option<&'a str>,
    /// HTTP method.
    pub method: &'a str,
    /// Path, with the query only if `include_query` is set.
    pub path: &'a str,
    /// Status sent to the client (499: the client went away first).
    pub status: u16,
    /// Matched route.
    pub route: Option<&'a str>,
    /// Matched rule.
    pub rule: Option<&'a str>,
    /// Chosen group (version).
    pub group: Option<&'a str>,
    /// Endpoint (`host:port`) of the last attempt.
    pub endpoint: Option<&'a str>,
    /// Requests sent upstream for this one.
    pub attempts: u32,
    /// Request head to end of the response body, milliseconds.
    pub duration_ms: f64,
    /// Request body bytes, as declared by `Content-Length` (`null` for a
    /// chunked body).
    pub bytes_in: Option<u64>,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// Why the proxy answered itself; `null` when the upstream answered.
    pub reason: Option<&'a str>,
}

impl Line<'_> {
    /// Writes the line through `tracing` (target [`TARGET`]).
    pub fn emit(&self) {
        match serde_json::to_string(self) {
            Ok(json) => tracing::info!(target: TARGET, "{json}"),
            Err(e) => tracing::warn!(error = %e, "access log line not written"),
        }
    }
}

/// A `tracing` layer that writes each event's message, and nothing else, as
/// one line: the access log's output, cheaper than a general-purpose
/// formatter (no timestamp, level or field machinery per line).
#[derive(Debug)]
pub struct JsonLines<W> {
    writer: W,
}

impl<W> JsonLines<W> {
    /// Lines go to `writer`.
    pub fn new(writer: W) -> Self {
        JsonLines { writer }
    }
}

/// Collects an event's `message`.
struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            use std::fmt::Write;
            let _ = write!(self.0, "{value:?}");
        }
    }
}

impl<S, W> tracing_subscriber::Layer<S> for JsonLines<W>
where
    S: tracing::Subscriber,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut line = Message(String::with_capacity(384));
        event.record(&mut line);
        line.0.push('\n');
        let _ = self.writer.make_writer().write_all(line.0.as_bytes());
    }
}

/// `t` as `2024-05-01T12:34:56.789Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn config_reads_every_mode_and_checks_the_rate() {
        let base = "listeners: [{name: l, address: \"127.0.0.1:0\"}]\n\
                    groups: {g: {endpoints: [\"127.0.0.1:1\"]}}\n\
                    routes: [{name: r, rules: [{name: x, backends: [{group: g}]}]}]\n";
        let parse = |extra: &str| crate::config::parse_yaml(&format!("{base}{extra}"));
        assert_eq!(parse("").unwrap().access_log, AccessLogConfig::default());
        for (text, mode) in [
            ("off", AccessLogMode::Off),
            ("on", AccessLogMode::On),
            ("sampled", AccessLogMode::Sampled),
        ] {
            let c = parse(&format!("access_log: {{mode: {text}}}\n")).unwrap();
            assert_eq!(c.access_log.mode, mode, "{text}");
        }
        let c = parse("access_log: {mode: sampled, sample_rate: 0.5, include_query: true}\n");
        let c = c.unwrap();
        assert!(c.access_log.include_query && c.access_log.sample_rate == 0.5);
        assert!(parse("access_log: {mode: loud}\n").is_err());
        let bad = parse("access_log: {sample_rate: 2}\n").unwrap();
        let registry = crate::route::Inherited::default();
        let errors = crate::compile::compile(&bad, &registry, 1).unwrap_err();
        assert_eq!(errors.0[0].path, "access_log.sample_rate");
    }

    #[test]
    fn sampling_follows_the_mode() {
        let mut c = AccessLogConfig::default();
        assert!(!sampled(&c));
        c.mode = AccessLogMode::On;
        assert!(sampled(&c));
        c.mode = AccessLogMode::Sampled;
        c.sample_rate = 0.0;
        assert!(!(0..1000).any(|_| sampled(&c)));
        c.sample_rate = 0.5;
        let n = (0..10_000).filter(|_| sampled(&c)).count();
        assert!((4000..6000).contains(&n), "{n}");
    }
}
