//! A bound on HTTP/2 header blocks as they arrive, frame by frame. h2 stops
//! a CONTINUATION flood only after a count of frames (at least five, about
//! 96 KiB of header block at the default frame size, whatever the header
//! limit); this ends the connection as soon as one block's frames exceed the
//! listener's `max_header_bytes` by more than one frame, before h2 buffers
//! them. An HPACK block can decode to less than its encoded size only
//! through unusual Huffman codes, which the one frame of slack covers: a
//! block this large is over the header list limit, and h2 would answer 431.

use std::io;

/// The client connection preface of HTTP/2 (h2c and h2 over TLS).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Slack over the limit: one frame at the default `SETTINGS_MAX_FRAME_SIZE`.
const SLACK: usize = 16 * 1024;
const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

/// Watches the bytes a client sends: an HTTP/1 connection is left alone
/// after its first bytes; on HTTP/2 each frame header is read.
pub struct HeaderScan {
    limit: usize,
    scan: Scan,
}

#[derive(Debug)]
enum Scan {
    /// Comparing the first bytes with the preface.
    Preface(usize),
    /// Frame by frame: `head` collects a frame header, `skip` is the rest
    /// of the payload, `block` the bytes of an unfinished header block.
    Frames {
        head: [u8; 9],
        have: usize,
        skip: usize,
        block: Option<usize>,
    },
    /// Not HTTP/2: nothing to watch.
    Off,
}

impl HeaderScan {
    /// Cuts header blocks over `limit` (+ one frame).
    pub fn new(limit: usize) -> Self {
        HeaderScan {
            limit: limit.saturating_add(SLACK),
            scan: Scan::Preface(0),
        }
    }

    /// Follows bytes just read; an error ends the connection.
    pub fn check(&mut self, bytes: &[u8]) -> io::Result<()> {
        if matches!(self.scan, Scan::Off) {
            return Ok(());
        }
        self.scan.feed(bytes, self.limit).map_err(|()| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "HTTP/2 header block over max_header_bytes",
            )
        })
    }
}

impl Scan {
    /// Follows `bytes`; `Err` when a header block grew over `limit`.
    fn feed(&mut self, mut bytes: &[u8], limit: usize) -> Result<(), ()> {
        while !bytes.is_empty() {
            match self {
                Scan::Off => return Ok(()),
                Scan::Preface(seen) => {
                    let n = bytes.len().min(PREFACE.len() - *seen);
                    if bytes[..n] != PREFACE[*seen..*seen + n] {
                        *self = Scan::Off;
                        return Ok(());
                    }
                    *seen += n;
                    bytes = &bytes[n..];
                    if *seen == PREFACE.len() {
                        *self = Scan::Frames {
                            head: [0; 9],
                            have: 0,
                            skip: 0,
                            block: None,
                        };
                    }
                }
                Scan::Frames {
                    head,
                    have,
                    skip,
                    block,
                } => {
                    if *skip > 0 {
                        let n = bytes.len().min(*skip);
                        *skip -= n;
                        bytes = &bytes[n..];
                        continue;
                    }
                    let n = bytes.len().min(9 - *have);
                    head[*have..*have + n].copy_from_slice(&bytes[..n]);
                    *have += n;
                    bytes = &bytes[n..];
                    if *have < 9 {
                        continue;
                    }
                    *have = 0;
                    let len = usize::from(head[0]) << 16
                        | usize::from(head[1]) << 8
                        | usize::from(head[2]);
                    let (kind, flags) = (head[3], head[4]);
                    *skip = len;
                    let so_far = match (kind, *block) {
                        (HEADERS | PUSH_PROMISE, _) => len,
                        (CONTINUATION, Some(b)) => b.saturating_add(len),
                        _ => continue,
                    };
                    if so_far > limit {
                        return Err(());
                    }
                    *block = (flags & END_HEADERS == 0).then_some(so_far);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, len: usize) -> Vec<u8> {
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            1,
        ];
        f.resize(9 + len, b'x');
        f
    }

    /// Feeds `frames` after the preface, in pieces of `step` bytes; returns
    /// the index of the frame that was refused.
    fn refused_at(frames: &[Vec<u8>], limit: usize, step: usize) -> Option<usize> {
        let mut scan = Scan::Preface(0);
        let mut bytes = PREFACE.to_vec();
        let mut ends = Vec::new();
        for f in frames {
            bytes.extend_from_slice(f);
            ends.push(bytes.len());
        }
        for (i, piece) in bytes.chunks(step).enumerate() {
            if scan.feed(piece, limit).is_err() {
                let at = (i + 1) * step;
                return ends.iter().position(|&end| at <= end);
            }
        }
        None
    }

    #[test]
    fn a_growing_header_block_is_refused_at_the_frame_over_the_limit() {
        let mut frames = vec![frame(HEADERS, 0, 10_000)];
        frames.extend((0..10).map(|_| frame(CONTINUATION, 0, 10_000)));
        // 10,000 bytes a frame: the fourth takes the block over 30,000.
        for step in [1, 7, 4096] {
            assert_eq!(refused_at(&frames, 30_000, step), Some(3), "step {step}");
        }
    }

    #[test]
    fn finished_blocks_and_other_frames_do_not_add_up() {
        let mut frames = Vec::new();
        for _ in 0..10 {
            frames.push(frame(HEADERS, 0, 9_000));
            frames.push(frame(CONTINUATION, END_HEADERS, 9_000));
            frames.push(frame(0x0, 0, 16_000)); // DATA
        }
        assert_eq!(refused_at(&frames, 20_000, 1000), None);
    }

    #[test]
    fn http1_is_passed_through() {
        let mut scan = Scan::Preface(0);
        assert!(scan.feed(b"GET / HTTP/1.1\r\n", 1).is_ok());
        assert!(matches!(scan, Scan::Off));
    }
}
