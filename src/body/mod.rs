//! The body types of both directions, below the pipeline so that proxy,
//! retry and the upstream pool share them: [`request`] is what goes
//! upstream (bounded replay, size limit, idle timeout), [`response`] what
//! goes back to the client (upstream stream or local reply).

pub mod lease;
pub mod request;
pub mod response;

pub use lease::{Lease, Park};
pub use request::{BodyError, PreparedBody, UpstreamBody};
pub use response::{ProxyBody, ResponseBodyError};
