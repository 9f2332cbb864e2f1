//! Resilience as a client sees it: timeouts, retries (idempotency, replay
//! buffer, failed-endpoint exclusion, version fallback, budget, backoff),
//! outlier ejection, circuit breaking, body limits, health checks,
//! whole-group failure and config validation.
//!
//! Upstreams are [`kit::Backend`]s whose status, delay, resets, truncation,
//! holding and death the tests flip at runtime. Timeout and backoff tests run
//! on paused tokio time; outlier and budget clocks are real, so those tests
//! use short real times.

mod budget;
mod config;
mod fallback;
mod health;
mod httproute;
mod kit;
mod limits;
mod outlier;
mod retries;
mod timeouts;
mod upstream_edge;
