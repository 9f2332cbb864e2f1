//! A small client for Prometheus's HTTP query API (`GET /api/v1/query`,
//! JSON): enough to read the raw samples of the analysis counters of every
//! replica. On hyper, with a deadline and a bounded answer.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

/// Largest answer read: a range vector of a few series over a few minutes
/// is far smaller.
const MAX_ANSWER: usize = 8 * 1024 * 1024;

/// One Prometheus server.
#[derive(Debug, Clone)]
pub struct Prometheus {
    client: Client<HttpConnector, Empty<Bytes>>,
    base: String,
    timeout: Duration,
}

/// One series of a range-vector answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Series {
    /// Its labels, `__name__` included.
    pub metric: BTreeMap<String, String>,
    /// (unix seconds, value as Prometheus writes it), oldest first.
    #[serde(default)]
    pub values: Vec<(f64, String)>,
}

impl Series {
    /// The finite samples as numbers, oldest first.
    pub fn samples(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.values
            .iter()
            .filter_map(|(ts, v)| v.parse::<f64>().ok().map(|v| (*ts, v)))
            .filter(|(_, v)| v.is_finite())
    }
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    #[serde(default)]
    result: Vec<Series>,
}

impl Prometheus {
    /// A client for the API at `base` (`http://host:port[/prefix]`, as
    /// `config::rollout::prometheus_base` checked it).
    pub fn new(base: &str, timeout: Duration) -> Prometheus {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        Prometheus {
            client: Client::builder(TokioExecutor::new()).build(connector),
            base: base.trim_end_matches('/').to_string(),
            timeout,
        }
    }

    /// Runs `promql`, whose answer must be a range vector (a `matrix`).
    pub async fn matrix(&self, promql: &str) -> Result<Vec<Series>, String> {
        let url = format!("{}/api/v1/query?query={}", self.base, encode(promql));
        let uri: http::Uri = url.parse().map_err(|e| format!("bad query URL: {e}"))?;
        let asked = async {
            let resp = self
                .client
                .get(uri)
                .await
                .map_err(|e| format!("{}: {}", self.base, cause(&e)))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| format!("{}: reading the answer: {e}", self.base))?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, asked)
            .await
            .map_err(|_| format!("{}: no answer within {:?}", self.base, self.timeout))??;
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| {
            format!(
                "{}: answered {status} with a body that is not the query API's JSON ({e})",
                self.base
            )
        })?;
        if answer.status != "success" {
            let why = answer.error.unwrap_or_else(|| "no reason given".into());
            return Err(format!("{}: query failed ({status}): {why}", self.base));
        }
        match answer.data {
            Some(d) if d.result_type == "matrix" => Ok(d.result),
            Some(d) => Err(format!(
                "{}: expected a range vector, got a {}",
                self.base, d.result_type
            )),
            None => Err(format!("{}: a success without data", self.base)),
        }
    }
}

/// The innermost cause of a client error (hyper-util's own message only
/// says "client error (Connect)").
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}

/// Percent-encodes a query-string value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `s` as the inside of a PromQL double-quoted string.
pub fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matrix_answer_parses_and_skips_non_finite_samples() {
        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"cutover_analysis_errors_total","group":"canary","instance":"a"},
             "values":[[1700000000.5,"3"],[1700000001.5,"NaN"],[1700000002.5,"5"]]}]}}"#;
        let a: Answer = serde_json::from_str(body).unwrap();
        let d = a.data.unwrap();
        assert_eq!(d.result_type, "matrix");
        let s: Vec<_> = d.result[0].samples().collect();
        assert_eq!(s, vec![(1700000000.5, 3.0), (1700000002.5, 5.0)]);
        assert_eq!(d.result[0].metric["group"], "canary");
    }

    #[test]
    fn queries_and_label_values_are_escaped() {
        assert_eq!(encode("a{b=\"c\"}[5s]"), "a%7Bb%3D%22c%22%7D%5B5s%5D");
        assert_eq!(quote(r#"a"b\c"#), r#"a\"b\\c"#);
    }
}
