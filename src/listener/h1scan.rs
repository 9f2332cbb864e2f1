//! Finds HTTP/1.1 request heads that carry both `Content-Length` and
//! `Transfer-Encoding`. hyper reads such a request as chunked, drops the
//! `Content-Length` and closes the connection afterwards (allowed by RFC
//! 9112 section 6.1), but keeps no trace the pipeline could see; edge
//! proxies (Envoy, nginx) answer 400. This scan follows the bytes hyper
//! reads, head by head, and raises the connection's flag; the service then
//! answers the request that carries `Transfer-Encoding` with 400 + close.
//!
//! Cost: only request heads are looked at, a line at a time (one `memchr`
//! per line and a comparison of the first bytes of the name); a body with a
//! `Content-Length` is skipped without reading it. After a head with
//! `Transfer-Encoding` (a chunked body), an upgrade or `CONNECT`, the scan
//! stops for the rest of the connection: hyper closes after a conflicting
//! head, and no later head can be told apart from body bytes without
//! decoding chunks again.

/// Longest line prefix kept across reads: a header name and a
/// `Content-Length` value fit.
const KEEP: usize = 64;

/// The scan of one connection's request bytes.
#[derive(Debug)]
pub struct HeadScan {
    state: State,
    /// The start of a line split across reads (at most [`KEEP`] bytes).
    partial: Vec<u8>,
}

#[derive(Debug)]
enum State {
    /// In a request head.
    Head(Head),
    /// In a body of this many bytes still to come.
    Body(u64),
    /// Not following the bytes any more.
    Off,
}

/// What one head has shown so far.
#[derive(Debug, Default)]
struct Head {
    request_line: bool,
    content_length: Option<u64>,
    has_content_length: bool,
    transfer_encoding: bool,
    upgrade: bool,
}

/// What a scan found in the bytes just read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Nothing to report.
    Nothing,
    /// A head with both `Content-Length` and `Transfer-Encoding`.
    Conflict,
}

impl Default for HeadScan {
    fn default() -> Self {
        HeadScan {
            state: State::Head(Head::default()),
            partial: Vec::new(),
        }
    }
}

impl HeadScan {
    /// Stops following: the connection speaks HTTP/2.
    pub fn stop(&mut self) {
        self.state = State::Off;
        self.partial = Vec::new();
    }

    /// Follows `bytes`, the next ones the client sent.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Found {
        let mut found = Found::Nothing;
        while !bytes.is_empty() {
            match &mut self.state {
                State::Off => return found,
                State::Body(left) => {
                    let n = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len());
                    *left -= n as u64;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        self.state = State::Head(Head::default());
                    }
                }
                State::Head(_) => {
                    let Some(end) = memchr::memchr(b'\n', bytes) else {
                        let room = KEEP.saturating_sub(self.partial.len());
                        self.partial
                            .extend_from_slice(&bytes[..bytes.len().min(room)]);
                        return found;
                    };
                    let (line, rest) = (&bytes[..end], &bytes[end + 1..]);
                    bytes = rest;
                    if self.partial.is_empty() {
                        found = self.line(line).max_with(found);
                    } else {
                        let room = KEEP.saturating_sub(self.partial.len());
                        let mut whole = std::mem::take(&mut self.partial);
                        whole.extend_from_slice(&line[..line.len().min(room)]);
                        found = self.line(&whole).max_with(found);
                        whole.clear();
                        self.partial = whole;
                    }
                }
            }
        }
        found
    }

    /// One line of a head (without its `\n`).
    fn line(&mut self, line: &[u8]) -> Found {
        let State::Head(head) = &mut self.state else {
            return Found::Nothing;
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !head.request_line {
            // Empty lines before a request line are skipped, as hyper does.
            if !line.is_empty() {
                head.request_line = true;
                head.upgrade = line.starts_with(b"CONNECT ");
            }
            return Found::Nothing;
        }
        if line.is_empty() {
            return self.end_of_head();
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            return Found::Nothing;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            head.has_content_length = true;
            head.content_length = head.content_length.or_else(|| parse_length(value));
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            head.transfer_encoding = true;
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            head.upgrade = true;
        }
        Found::Nothing
    }

    fn end_of_head(&mut self) -> Found {
        let State::Head(head) = std::mem::replace(&mut self.state, State::Off) else {
            return Found::Nothing;
        };
        let found = if head.has_content_length && head.transfer_encoding {
            Found::Conflict
        } else {
            Found::Nothing
        };
        self.state = match head.content_length {
            _ if head.transfer_encoding || head.upgrade => State::Off,
            Some(n) if n > 0 => State::Body(n),
            // No valid length with a Content-Length line: hyper refuses it.
            None if head.has_content_length => State::Off,
            _ => State::Head(Head::default()),
        };
        found
    }
}

impl Found {
    fn max_with(self, other: Found) -> Found {
        if self == Found::Conflict || other == Found::Conflict {
            Found::Conflict
        } else {
            Found::Nothing
        }
    }
}

fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_in_pieces(bytes: &[u8], piece: usize) -> Vec<Found> {
        let mut s = HeadScan::default();
        bytes.chunks(piece).map(|c| s.feed(c)).collect()
    }

    fn conflicts(bytes: &[u8]) -> bool {
        // Whatever way the reads split the bytes, the answer is the same.
        let answers: Vec<bool> = [1, 2, 3, 7, 64, bytes.len().max(1)]
            .iter()
            .map(|&p| scan_in_pieces(bytes, p).contains(&Found::Conflict))
            .collect();
        assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
        answers[0]
    }

    #[test]
    fn both_headers_in_one_head_are_found_in_any_case_and_order() {
        assert!(conflicts(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(conflicts(
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nCONTENT-LENGTH: 5\r\n\r\n0\r\n\r\n"
        ));
    }

    #[test]
    fn one_of_them_alone_is_fine_and_bodies_are_skipped() {
        assert!(!conflicts(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
        ));
        assert!(!conflicts(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        ));
        // A body that looks like a conflicting head is a body.
        let body = b"x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut req = format!(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        assert!(!conflicts(&req));
    }

    #[test]
    fn the_second_of_pipelined_requests_is_followed() {
        assert!(conflicts(
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
    }

    #[test]
    fn upgrades_and_h2_stop_the_scan() {
        assert!(!conflicts(
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        let mut s = HeadScan::default();
        s.stop();
        assert_eq!(
            s.feed(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Found::Nothing
        );
    }
}
