//! Proxy semantics as a client or an upstream sees them: header hygiene,
//! HTTP/2 and trailers, streaming in bounded memory, upgrades, framing
//! rejections and limits, local replies and graceful shutdown.
//!
//! Upstream behaviours `support` lacks (raw byte-level upstreams, h2 with
//! trailers, slow, closing and WebSocket-echo upstreams) live in
//! [`kit`].

mod framing;
mod headers;
mod host;
mod http2;
mod kit;
mod lifecycle;
mod slow_body;
mod streaming;
mod upgrade;
