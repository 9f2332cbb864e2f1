//! The real `cutover` binary: the access log is one JSON line per request on
//! stdout (other logs stay on stderr), and `ctl status` shows live stats.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::kit::*;
use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_cutover");

/// Removes terminal colour codes.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

/// Starts `cutover run`; returns it with the public and admin addresses read
/// from its stderr (which keeps being collected into `stderr`).
async fn run(file: &std::path::Path, stderr: Arc<Mutex<Vec<String>>>) -> (Child, String, String) {
    let mut child = Command::new(BIN)
        .args(["run", "--workers", "1", "--admin", "127.0.0.1:0", "-c"])
        .arg(file)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut public, mut admin) = (None, None);
    let addr = |l: &str| {
        let a = l.split("addr=").nth(1)?.split_whitespace().next()?;
        Some(a.to_string())
    };
    while public.is_none() || admin.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("cutover did not start")
            .unwrap()
            .expect("cutover exited");
        let line = plain(&line);
        if line.contains("admin API listening") {
            admin = addr(&line);
        } else if line.contains("listening") {
            public = addr(&line);
        }
        stderr.lock().unwrap().push(line);
    }
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            stderr.lock().unwrap().push(plain(&l));
        }
    });
    (child, public.unwrap(), admin.unwrap())
}

/// Three requests: a GET with a request id, query and `traceparent`, a POST
/// with a 5-byte body to the canary, and one no rule matches.
async fn traffic(public: &str) {
    let c = http1_client();
    let url = |p: &str| format!("http://{public}{p}");
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let h = [
        ("host", "app.test"),
        ("x-request-id", "req-1"),
        ("traceparent", trace),
    ];
    assert_eq!(get(&c, &url("/hello?token=secret"), &h).await.status, 200);
    let post = Request::post(url("/upload"))
        .header("host", "app.test")
        .header("x-canary", "always")
        .body(Full::new(Bytes::from_static(b"12345")))
        .unwrap();
    assert_eq!(send(&c, post).await.status, 200);
    let other = [("host", "other.test")];
    assert_eq!(get(&c, &url("/"), &other).await.status, 404);
}

/// Every field is there; the values are those of [`traffic`].
fn check_lines(logged: &[Value], stable: &str) {
    let fields = [
        "time",
        "request_id",
        "method",
        "path",
        "status",
        "route",
        "rule",
        "group",
        "endpoint",
        "attempts",
        "duration_ms",
        "bytes_in",
        "bytes_out",
        "reason",
    ];
    for v in logged {
        for f in fields {
            assert!(v.get(f).is_some(), "no {f} in {v}");
        }
        let time = v["time"].as_str().unwrap();
        assert!(time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T');
        assert!(v["duration_ms"].as_f64().unwrap() > 0.0);
    }
    let (a, b, nf) = (&logged[0], &logged[1], &logged[2]);
    let s = |v: &Value, f: &str| v[f].as_str().map(str::to_string);
    let n = |v: &Value, f: &str| v[f].as_u64();
    assert_eq!(s(a, "request_id").as_deref(), Some("req-1"));
    assert_eq!(s(a, "path").as_deref(), Some("/hello"), "query omitted");
    assert_eq!(
        (s(a, "method"), n(a, "status")),
        (Some("GET".into()), Some(200))
    );
    assert_eq!(
        (s(a, "route"), s(a, "rule")),
        (Some("web".into()), Some("default".into()))
    );
    assert_eq!(
        (s(a, "group"), s(a, "endpoint")),
        (Some("stable".into()), Some(stable.into()))
    );
    assert_eq!(
        (n(a, "attempts"), n(a, "bytes_in"), n(a, "bytes_out")),
        (Some(1), Some(0), Some(6))
    );
    assert!(a["reason"].is_null());
    assert_eq!(
        (s(b, "method"), s(b, "group")),
        (Some("POST".into()), Some("canary".into()))
    );
    assert_eq!(n(b, "bytes_in"), Some(5));
    assert_eq!(
        s(b, "request_id").map(|id| id.len()),
        Some(36),
        "generated: {b}"
    );
    assert_eq!(
        (n(nf, "status"), s(nf, "reason")),
        (Some(404), Some("no_route".into()))
    );
    assert!(nf["route"].is_null() && nf["group"].is_null() && nf["attempts"] == 0);
}

/// `cutover ctl status` shows error rate and quantiles per group.
async fn check_ctl_status(admin: &str) {
    let out = Command::new(BIN)
        .args(["ctl", "--admin", &format!("http://{admin}"), "status"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let header = ["ERR%", "P50 ms", "P99 ms"];
    assert!(header.iter().all(|h| text.contains(h)), "{text}");
    let canary_row = text
        .lines()
        .find(|l| l.contains("testers") && l.contains("canary"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(canary_row.contains(" 0.0 "), "0% errors: {canary_row}");
    assert!(
        !canary_row.trim_end().ends_with('-'),
        "a p99 value: {canary_row}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_lines_are_json_on_stdout_and_ctl_status_shows_stats() {
    let stable = slow_upstream("stable", Duration::ZERO).await;
    let canary = slow_upstream("canary", Duration::ZERO).await;
    let dir = TempDir::new("binary");
    let file = dir.path("cutover.yaml");
    let yaml = two_versions(stable, canary, "access_log: { mode: on }\n");
    std::fs::write(&file, yaml).unwrap();
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let (mut child, public, admin) = run(&file, Arc::clone(&stderr)).await;
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();

    traffic(&public).await;
    let mut logged = Vec::new();
    while logged.len() < 3 {
        let line = tokio::time::timeout(Duration::from_secs(5), stdout.next_line())
            .await
            .expect("no access log line")
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
        logged.push(v);
    }
    check_lines(&logged, &stable.to_string());
    let logs = stderr.lock().unwrap().join("\n");
    let other_logs_on_stderr = logs.contains("local reply") && !logs.contains("\"request_id\"");
    assert!(other_logs_on_stderr, "{logs}");

    check_ctl_status(&admin).await;
    let _ = child.kill().await;
}
