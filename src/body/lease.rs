//! A pooled upstream connection lent to one response: handed back to its
//! pool only when the response body reached its end, dropped otherwise (a
//! body cut short leaves the connection mid-message, unfit for reuse).
//!
//! Defined here, below the pipeline, so the response body can carry it
//! without knowing the pool; the pool implements [`Park`].

use std::sync::Arc;

use hyper::client::conn::http1::SendRequest;

use super::request::UpstreamBody;

/// An HTTP/1.1 connection's request handle, as the pool keeps it.
pub type Http1Sender = SendRequest<UpstreamBody>;

/// Where a lent connection goes back to.
pub trait Park: Send + Sync {
    /// The response on `conn` ended cleanly: `conn` may carry another request.
    fn park(&self, conn: Http1Sender);
    /// A multiplexed stream ended (cleanly or not): its slot is free again.
    fn stream_ended(&self);
}

/// One connection (HTTP/1.1) or stream slot (h2) held by a response.
/// Two options rather than an enum: it rides in every response body, and
/// this layout is a word smaller.
#[derive(Default)]
pub struct Lease {
    home: Option<Arc<dyn Park>>,
    /// Set for HTTP/1.1; `None` with a home is an h2 stream slot.
    conn: Option<Http1Sender>,
}

impl Lease {
    /// An HTTP/1.1 connection that returns to `home` at end of stream.
    pub fn http1(conn: Http1Sender, home: Arc<dyn Park>) -> Lease {
        Lease {
            home: Some(home),
            conn: Some(conn),
        }
    }

    /// A stream slot on a shared h2 connection, freed when the lease goes.
    pub fn stream(home: Arc<dyn Park>) -> Lease {
        Lease {
            home: Some(home),
            conn: None,
        }
    }

    /// The response body reached its end: the connection may be reused.
    pub fn end(&mut self) {
        let Some(home) = self.home.take() else { return };
        match self.conn.take() {
            Some(conn) => home.park(conn),
            None => home.stream_ended(),
        }
    }
}

impl Drop for Lease {
    /// Without [`Lease::end`], an HTTP/1.1 connection is closed (dropping
    /// its handle ends hyper's connection task); a stream slot is freed.
    fn drop(&mut self) {
        if let (Some(home), None) = (self.home.take(), &self.conn) {
            home.stream_ended();
        }
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match (&self.home, &self.conn) {
            (None, _) => "Lease(none)",
            (Some(_), Some(_)) => "Lease(http1)",
            (Some(_), None) => "Lease(h2 stream)",
        })
    }
}
