//! Follows the HTTP/1.1 request bytes hyper reads, message by message, for
//! two reasons. It finds request heads that carry both `Content-Length` and
//! `Transfer-Encoding`: hyper reads such a request as chunked, drops the
//! `Content-Length` and closes the connection afterwards (allowed by RFC
//! 9112 section 6.1), but keeps no trace the pipeline could see; edge
//! proxies (Envoy, nginx) answer 400, so the scan raises the connection's
//! flag and the service answers that request with 400 + close. And it says
//! whether every byte read so far belongs to complete requests
//! ([`HeadScan::between_requests`]): only then may an idle connection be
//! parked without hyper (see `park`).
//!
//! Cost: request heads are looked at a line at a time (one `memchr` per
//! line and a comparison of the first bytes of the name); a body with a
//! `Content-Length` is skipped without reading it, a chunked body is
//! followed through its size lines only (`chunked` exactly, as hyper reads
//! it; data is skipped). After an upgrade, `CONNECT`, a conflicting head,
//! another transfer coding or framing the scan does not follow, it stops
//! for the rest of the connection (which is then never parked).

/// Longest line prefix kept across reads: a header name and a
/// `Content-Length` value fit.
const KEEP: usize = 64;

/// The scan of one connection's request bytes.
#[derive(Debug)]
pub struct HeadScan {
    state: State,
    /// The start of a line split across reads (at most [`KEEP`] bytes).
    partial: Vec<u8>,
    /// `partial` lost bytes beyond [`KEEP`].
    cut: bool,
}

#[derive(Debug)]
enum State {
    /// In a request head.
    Head(Head),
    /// In a body of this many bytes still to come.
    Body(u64),
    /// In a chunked body.
    Chunked(Chunk),
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
    /// Exactly one `Transfer-Encoding` line, and it says `chunked`.
    chunked: bool,
    /// An upgrade, `CONNECT`, or framing the scan cannot follow.
    unfollowed: bool,
}

/// Where in a chunked body the scan is, as hyper's decoder reads it: a size
/// in hex, optional blanks and `;extensions`, CRLF, the data, CRLF; a last
/// chunk of size 0, trailer lines, and the final CRLF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// The first digit of a size line.
    Start,
    /// More digits of the size so far.
    Size(u64),
    /// Blanks after the size.
    Blank(u64),
    /// A chunk extension, up to its CR.
    Extension(u64),
    /// The LF of a size line.
    SizeLf(u64),
    /// Data bytes still to come.
    Data(u64),
    /// The CR after a chunk's data.
    DataCr,
    /// The LF after a chunk's data.
    DataLf,
    /// After the last chunk or a trailer line: CR ends the body, anything
    /// else starts a trailer line.
    EndCr,
    /// A trailer line, up to its CR.
    Trailer,
    /// The LF of a trailer line.
    TrailerLf,
    /// The LF that ends the body.
    EndLf,
    /// The body ended.
    Done,
}

impl Chunk {
    /// Follows `bytes` until the body ends or they run out; returns what
    /// follows the body, or `None` where hyper's decoder would fail.
    fn feed<'a>(&mut self, mut bytes: &'a [u8]) -> Option<&'a [u8]> {
        while let Some((&b, rest)) = bytes.split_first() {
            if let Chunk::Data(left) = *self {
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                let left = left - n as u64;
                *self = if left == 0 {
                    Chunk::DataCr
                } else {
                    Chunk::Data(left)
                };
                bytes = &bytes[n..];
                continue;
            }
            *self = self.next(b)?;
            bytes = rest;
            if *self == Chunk::Done {
                break;
            }
        }
        Some(bytes)
    }

    /// The state after byte `b` (outside data).
    fn next(self, b: u8) -> Option<Chunk> {
        Some(match (self, b) {
            (Chunk::Start, _) => Chunk::Size(u64::from(hex(b)?)),
            (Chunk::Size(n), b'\t' | b' ') => Chunk::Blank(n),
            (Chunk::Size(n) | Chunk::Blank(n), b';') => Chunk::Extension(n),
            (Chunk::Size(n) | Chunk::Blank(n) | Chunk::Extension(n), b'\r') => Chunk::SizeLf(n),
            (Chunk::Size(n), _) => Chunk::Size(n.checked_mul(16)?.checked_add(u64::from(hex(b)?))?),
            (Chunk::Blank(n), b'\t' | b' ') => Chunk::Blank(n),
            (Chunk::Extension(_), b'\n') => return None,
            (Chunk::Extension(n), _) => Chunk::Extension(n),
            (Chunk::SizeLf(0), b'\n') => Chunk::EndCr,
            (Chunk::SizeLf(n), b'\n') => Chunk::Data(n),
            (Chunk::DataCr, b'\r') => Chunk::DataLf,
            (Chunk::DataLf, b'\n') => Chunk::Start,
            (Chunk::EndCr, b'\r') => Chunk::EndLf,
            (Chunk::Trailer, b'\r') => Chunk::TrailerLf,
            (Chunk::EndCr | Chunk::Trailer, _) => Chunk::Trailer,
            (Chunk::TrailerLf, b'\n') => Chunk::EndCr,
            (Chunk::EndLf, b'\n') => Chunk::Done,
            _ => return None,
        })
    }
}

/// The value of a hex digit.
fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
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
            cut: false,
        }
    }
}

impl HeadScan {
    /// Whether every byte followed so far belongs to complete requests:
    /// the scan is between two messages, with no part of a line pending.
    pub fn between_requests(&self) -> bool {
        matches!(&self.state, State::Head(h) if !h.request_line) && self.partial.is_empty()
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
                State::Chunked(chunk) => {
                    bytes = match chunk.feed(bytes) {
                        Some(rest) => rest,
                        None => {
                            self.state = State::Off;
                            return found;
                        }
                    };
                    if *chunk == Chunk::Done {
                        self.state = State::Head(Head::default());
                    }
                }
                State::Head(_) => {
                    let Some(end) = memchr::memchr(b'\n', bytes) else {
                        self.keep(bytes);
                        return found;
                    };
                    let (line, rest) = (&bytes[..end], &bytes[end + 1..]);
                    bytes = rest;
                    if self.partial.is_empty() {
                        found = self.line(line, true).max_with(found);
                    } else {
                        self.keep(line);
                        let mut whole = std::mem::take(&mut self.partial);
                        let cut = std::mem::take(&mut self.cut);
                        found = self.line(&whole, !cut).max_with(found);
                        whole.clear();
                        self.partial = whole;
                    }
                }
            }
        }
        found
    }

    /// Keeps the start of a line that continues in the next read.
    fn keep(&mut self, bytes: &[u8]) {
        let room = KEEP.saturating_sub(self.partial.len());
        self.cut |= bytes.len() > room;
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// One line of a head (without its `\n`); `whole` unless its end was
    /// cut off (see [`KEEP`]).
    fn line(&mut self, line: &[u8], whole: bool) -> Found {
        let State::Head(head) = &mut self.state else {
            return Found::Nothing;
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !head.request_line {
            // Empty lines before a request line are skipped, as hyper does.
            if !line.is_empty() {
                head.request_line = true;
                head.unfollowed = line.starts_with(b"CONNECT ");
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
        let framing = name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"transfer-encoding");
        if framing && !whole {
            // A value that long is not followed: the framing is unknown.
            head.unfollowed = true;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            head.has_content_length = true;
            head.content_length = head.content_length.or_else(|| parse_length(value));
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            head.chunked = !head.transfer_encoding && value.eq_ignore_ascii_case(b"chunked");
            head.transfer_encoding = true;
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            head.unfollowed = true;
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
        let conflict = found == Found::Conflict;
        self.state = match head.content_length {
            _ if head.unfollowed || conflict => State::Off,
            _ if head.chunked => State::Chunked(Chunk::Start),
            _ if head.transfer_encoding => State::Off,
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
    fn upgrades_stop_the_scan() {
        assert!(!conflicts(
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(!between(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"));
        assert!(!between(b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"));
    }

    /// Whether the scan ends between requests, however reads split `bytes`.
    fn between(bytes: &[u8]) -> bool {
        let answers: Vec<bool> = [1, 2, 3, 7, 64, bytes.len().max(1)]
            .iter()
            .map(|&piece| {
                let mut s = HeadScan::default();
                bytes.chunks(piece).for_each(|c| {
                    s.feed(c);
                });
                s.between_requests()
            })
            .collect();
        assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
        answers[0]
    }

    #[test]
    fn complete_requests_end_between_requests_and_parts_do_not() {
        let get = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert!(between(b""));
        assert!(between(get));
        assert!(between(&[&get[..], &get[..]].concat()));
        for cut in 1..get.len() {
            assert!(!between(&get[..cut]), "{cut}");
        }
        let sized = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        assert!(between(sized));
        assert!(!between(&sized[..sized.len() - 1]));
    }

    #[test]
    fn chunked_bodies_are_followed_to_their_end() {
        let chunked: &[u8] = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
            5\r\nhello\r\nA ; name=v\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\n";
        assert!(between(chunked));
        for cut in 1..chunked.len() {
            assert!(!between(&chunked[..cut]), "cut at {cut}");
        }
        // Body bytes that look like a conflicting head are body bytes.
        let fake = "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let tricky = format!(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{fake}\r\n0\r\n\r\n",
            fake.len()
        );
        let tricky = tricky.as_bytes();
        assert!(!conflicts(tricky));
        assert!(between(tricky));
        // ...and the next head is followed again.
        let then = [
            chunked,
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        ]
        .concat();
        assert!(conflicts(&then));
    }

    #[test]
    fn framing_the_scan_cannot_follow_never_ends_between_requests() {
        for bad in [
            // Not hyper's grammar: LF only, a missing size, an extension with LF.
            &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;a\nb\r\nx\r\n0\r\n\r\n",
            // Another coding, two lines, a size over u64.
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
            // A length that is not one.
            b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello",
        ] {
            let mut then = bad.to_vec();
            then.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            assert!(!between(&then), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_long_framing_line_split_across_reads_stops_the_scan() {
        let zeros = "0".repeat(100);
        let req = format!("POST / HTTP/1.1\r\nContent-Length: {zeros}1\r\n\r\nx");
        // In one read the line is whole; split, its end is not kept.
        let mut whole = HeadScan::default();
        whole.feed(req.as_bytes());
        assert!(whole.between_requests());
        let mut split = HeadScan::default();
        let at = req.find("000").unwrap() + 10;
        split.feed(&req.as_bytes()[..at]);
        split.feed(&req.as_bytes()[at..]);
        assert!(!split.between_requests());
    }
}
