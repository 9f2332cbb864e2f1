//! Edge hardening of the listener: idle and silent connections cannot fill
//! it, every connection has deadlines (idle, first request, send idle), and
//! request heads have limits (414, 431, CONTINUATION floods), idle HTTP/1.1
//! connections are parked and resumed without a visible difference, all
//! seen through raw sockets.

mod flood;
mod h2raw;
mod headers;
mod idle;
mod parking;

use std::net::SocketAddr;

/// A proxy config: listener `public` on port 0 with `listener` lines (e.g.
/// `max_connections: 10`), every request to `endpoint`.
pub fn config(endpoint: SocketAddr, listener: &[&str]) -> String {
    let mut y = String::from("listeners:\n  - name: public\n    address: \"127.0.0.1:0\"\n");
    for line in listener {
        y.push_str(&format!("    {line}\n"));
    }
    y.push_str(&format!(
        "groups:\n  app:\n    endpoints: [\"{endpoint}\"]\n\
         routes:\n  - name: web\n    rules:\n      - name: all\n        backends: [{{group: app}}]\n"
    ));
    y
}

#[test]
fn bad_listener_limits_are_reported_with_their_field_paths() {
    let yaml = config(
        "127.0.0.1:9".parse().unwrap(),
        &[
            "timeouts: {idle: 0s, first_request: 0ms, send_idle: 0s}",
            "max_request_target: 0",
            "max_header_bytes: 1KiB",
        ],
    );
    let config = cutover::config::parse_yaml(&yaml).unwrap();
    let registry = cutover::route::Inherited::default();
    let err = cutover::compile::compile(&config, &registry, 1).expect_err("invalid limits");
    let got = err.to_string();
    for want in [
        "listeners[0].timeouts.idle: must be more than 0",
        "listeners[0].timeouts.first_request: must be more than 0",
        "listeners[0].timeouts.send_idle: must be more than 0",
        "listeners[0].max_request_target: 0 is outside 1..16MiB",
        "listeners[0].max_header_bytes: 1KiB is outside 8KiB..16MiB",
    ] {
        assert!(got.contains(want), "missing {want:?} in:\n{got}");
    }
    let typo = yaml_with_typo();
    let err = cutover::config::parse_yaml(&typo).expect_err("unknown field");
    assert!(err.to_string().contains("timeouts"), "{err}");
}

fn yaml_with_typo() -> String {
    config("127.0.0.1:9".parse().unwrap(), &["timeouts: {idel: 1s}"])
}
