//! The cost of HTTP/2 itself: an h2c server that answers every request at
//! once with the upstream fixture's answer (`stable\n` and nginx's four
//! response headers), built on hyper's HTTP/2 server as cutover is, or on the
//! `h2` crate alone. `benches/h2_floor.sh` counts its instructions per
//! request under callgrind, beside nginx and HAProxy answering the same way,
//! to show how much of cutover's h2c cost is the HTTP/2 library's floor.
//!
//! Usage: `h2_floor MODE PORT REQUESTS`; MODE is `hyper` (hyper's server,
//! a task per stream), `h2` (the `h2` crate, a task per stream) or
//! `h2-inline` (the `h2` crate, answered in the connection's task). It
//! serves 127.0.0.1:PORT and exits once it has answered REQUESTS requests.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response};
use http_body_util::Full;
use tokio::net::{TcpListener, TcpStream};

static ANSWERED: AtomicUsize = AtomicUsize::new(0);
const BODY: &[u8] = b"stable\n";

#[derive(Clone, Copy)]
enum Mode {
    Hyper,
    H2,
    H2Inline,
}

/// nginx's answer headers in the bench fixture; counts the answer.
fn answer_headers(headers: &mut HeaderMap) {
    ANSWERED.fetch_add(1, Ordering::Relaxed);
    headers.insert("server", HeaderValue::from_static("nginx/1.22.1"));
    headers.insert(
        "date",
        HeaderValue::from_static("Mon, 07 Dec 2026 20:41:28 GMT"),
    );
    headers.insert("content-type", HeaderValue::from_static("text/plain"));
    headers.insert("content-length", HeaderValue::from_static("7"));
}

async fn serve_hyper(socket: TcpStream) {
    let service = hyper::service::service_fn(|_req| async {
        let mut resp = Response::new(Full::new(Bytes::from_static(BODY)));
        answer_headers(resp.headers_mut());
        Ok::<_, Infallible>(resp)
    });
    let builder = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    if let Err(e) = builder
        .serve_connection(hyper_util::rt::TokioIo::new(socket), service)
        .await
    {
        eprintln!("h2_floor: connection: {e}");
    }
}

async fn serve_h2(socket: TcpStream, inline: bool) {
    let mut conn = match h2::server::handshake(socket).await {
        Ok(conn) => conn,
        Err(e) => return eprintln!("h2_floor: handshake: {e}"),
    };
    while let Some(Ok((req, respond))) = conn.accept().await {
        drop(req);
        if inline {
            answer(respond);
        } else {
            tokio::spawn(async move { answer(respond) });
        }
    }
}

fn answer(mut respond: h2::server::SendResponse<Bytes>) {
    let mut resp = Response::new(());
    answer_headers(resp.headers_mut());
    if let Ok(mut body) = respond.send_response(resp, false) {
        let _ = body.send_data(Bytes::from_static(BODY), true);
    }
}

async fn run(mode: Mode, port: u16, requests: usize) -> std::io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let accept = async {
        loop {
            let (socket, _) = listener.accept().await?;
            socket.set_nodelay(true)?;
            match mode {
                Mode::Hyper => tokio::spawn(serve_hyper(socket)),
                Mode::H2 => tokio::spawn(serve_h2(socket, false)),
                Mode::H2Inline => tokio::spawn(serve_h2(socket, true)),
            };
        }
    };
    let answered = async {
        while ANSWERED.load(Ordering::Relaxed) < requests {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The last answers' frames are written before the process exits.
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    tokio::select! {
        r = accept => r,
        () = answered => Ok(()),
    }
}

const USAGE: &str = "usage: h2_floor hyper|h2|h2-inline PORT REQUESTS (run by benches/h2_floor.sh)";

/// MODE PORT REQUESTS, or `None` when any of them is missing or invalid.
fn parse(args: &[String]) -> Option<(Mode, u16, usize)> {
    let mode = match args.first()?.as_str() {
        "hyper" => Mode::Hyper,
        "h2" => Mode::H2,
        "h2-inline" => Mode::H2Inline,
        _ => return None,
    };
    Some((mode, args.get(1)?.parse().ok()?, args.get(2)?.parse().ok()?))
}

fn main() {
    // `cargo bench` passes `--bench`; the rest are ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.is_empty() {
        // A plain `cargo bench` runs every bench target: this one is a
        // server for h2_floor.sh, so it says so and leaves `cargo bench`
        // green.
        println!("h2_floor: nothing to do without arguments; {USAGE}");
        return;
    }
    let (mode, port, requests) = match parse(&args) {
        Some(parsed) => parsed,
        None => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = runtime.and_then(|rt| rt.block_on(run(mode, port, requests)));
    if let Err(e) = result {
        eprintln!("h2_floor: {e}");
        std::process::exit(1);
    }
}
