//! Edge hardening of the listener: idle and silent connections cannot fill
//! it, every connection has deadlines (idle, first request, send idle), and
//! request heads have limits (414, 431, CONTINUATION floods), all seen
//! through raw sockets.

mod flood;
mod h2raw;
mod headers;
mod idle;

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
