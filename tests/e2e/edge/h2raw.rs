//! HTTP/2 written out frame by frame (prior knowledge, no HPACK state: only
//! indexed and literal-without-indexing fields), and frames read back.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const HEADERS: u8 = 0x1;
pub const SETTINGS: u8 = 0x4;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

/// One frame: 9-byte header, then the payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The preface and an empty SETTINGS frame: what a silent client sends.
pub fn hello() -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out
}

/// HPACK integer with an `n`-bit prefix, `first` holding the high bits.
fn int(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A literal header field without indexing (new name, no Huffman).
pub fn literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x00);
    int(out, 0, 7, name.len());
    out.extend_from_slice(name.as_bytes());
    int(out, 0, 7, value.len());
    out.extend_from_slice(value.as_bytes());
}

/// `GET <path>` for `app.example` over http: the pseudo-header block.
pub fn get(path: &str) -> Vec<u8> {
    let mut out = vec![0x82, 0x86]; // :method GET, :scheme http (indexed)
    out.push(0x04); // :path, literal without indexing, indexed name 4
    int(&mut out, 0, 7, path.len());
    out.extend_from_slice(path.as_bytes());
    out.push(0x01); // :authority, indexed name 1
    int(&mut out, 0, 7, "app.example".len());
    out.extend_from_slice(b"app.example");
    out
}

/// A frame as read (its payload skipped): type, flags, stream.
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

/// The next frame, or `None` at EOF, on a read error or after `wait`.
pub async fn read_frame(s: &mut TcpStream, wait: Duration) -> Option<Frame> {
    let read = async {
        let mut head = [0u8; 9];
        s.read_exact(&mut head).await.ok()?;
        let len = (head[0] as usize) << 16 | (head[1] as usize) << 8 | head[2] as usize;
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.ok()?;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        Some(Frame {
            kind: head[3],
            flags: head[4],
            stream,
        })
    };
    tokio::time::timeout(wait, read).await.ok().flatten()
}

/// Connects and says hello (preface, SETTINGS, and the ACK of the server's
/// SETTINGS, which is skipped with every other frame before it).
pub async fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&hello()).await.unwrap();
    s.write_all(&frame(SETTINGS, 0x1, 0, &[])).await.unwrap();
    s
}
