//! `GET /v1/events`: the dashboard's live feed as server-sent events. One
//! task samples the counters once a second and, while a stream is open,
//! builds the state document once, also on every published change (it
//! follows the generation's `watch`, so a change from the file, the API or a
//! rollout shows within one frame); every open stream sends the latest
//! document. Publishes closer together than [`MIN_GAP`] (controller mode
//! under EndpointSlice churn publishes many a second) share one document,
//! and the document is built on a blocking thread: with tens of thousands of
//! endpoints it takes milliseconds the request workers must not lose.
//!
//! Bounded: at most [`MAX_STREAMS`] streams at a time, each holding at most
//! two frames; a slow reader skips frames rather than queueing them; every
//! stream ends when the admin listener drains.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame};
use serde_json::json;
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::time::{Instant, MissedTickBehavior};

use super::history::{History, DEPTH};

/// Most event streams open at once (dashboards, `curl`s); more get 503.
pub const MAX_STREAMS: usize = 16;

/// How often the counters are sampled and the state is sent.
pub const TICK: Duration = Duration::from_secs(1);

/// Least time between two state documents built for publishes.
pub const MIN_GAP: Duration = Duration::from_millis(250);

/// The feed shared by every stream.
#[derive(Debug)]
pub struct Events {
    /// The latest `event: state` frame, ready to write.
    frames: watch::Sender<Bytes>,
    history: Arc<Mutex<History>>,
    streams: Arc<Semaphore>,
    /// Poked by a new stream: the document may be stale (none is built
    /// while nobody watches).
    opened: Arc<Notify>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            frames: watch::Sender::new(Bytes::new()),
            history: Arc::default(),
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
            opened: Arc::new(Notify::new()),
        }
    }
}

impl Events {
    /// Samples every [`TICK`] and, while a stream is open, rebuilds the
    /// state then, when a stream opens, and after a publish (at most once
    /// per [`MIN_GAP`]), until `shutdown`.
    pub async fn run(&self, shared: Arc<super::Context>, mut shutdown: watch::Receiver<bool>) {
        let mut published = shared.tables.published.subscribe();
        let mut every = tokio::time::interval(TICK);
        every.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last = Instant::now();
        let mut built = Instant::now() - MIN_GAP;
        loop {
            tokio::select! {
                _ = every.tick() => {
                    let now = Instant::now();
                    let secs = now.duration_since(last).as_secs_f64();
                    last = now;
                    let table = shared.tables.routes.load_full();
                    self.history().sample(&table, unix_ms() / 1000, secs);
                }
                changed = published.changed() => {
                    if changed.is_err() { return }
                    tokio::select! {
                        () = tokio::time::sleep_until(built + MIN_GAP) => {}
                        _ = shutdown.changed() => return,
                    }
                    published.mark_unchanged();
                }
                () = self.opened.notified() => {}
                _ = shutdown.changed() => return,
            }
            if self.frames.receiver_count() == 0 {
                // Nothing stale for the next stream to send first.
                self.frames.send_replace(Bytes::new());
                continue;
            }
            built = Instant::now();
            let (shared, history) = (Arc::clone(&shared), Arc::clone(&self.history));
            let state = tokio::task::spawn_blocking(move || {
                let history = history.lock().unwrap_or_else(|p| p.into_inner());
                event("state", &super::board::state(&shared, &history, unix_ms()))
            })
            .await;
            // A panicked build keeps the previous frame.
            if let Ok(frame) = state {
                self.frames.send_replace(frame);
            }
        }
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new stream: the five-minute history, the current state, then each
    /// new state; `None` when [`MAX_STREAMS`] are open.
    pub fn open(&self, mut shutdown: watch::Receiver<bool>) -> Option<EventBody> {
        let permit = Arc::clone(&self.streams).try_acquire_owned().ok()?;
        let history = json!({
            "interval_ms": TICK.as_millis() as u64,
            "depth": DEPTH,
            "series": self.history().to_json(),
        });
        let history = event("history", &history);
        let mut frames = self.frames.subscribe();
        let (tx, rx) = mpsc::channel::<Bytes>(2);
        // The current state counts as unseen: it follows the history at
        // once, and a fresh one is asked for (none was built while nobody
        // watched).
        frames.mark_changed();
        self.opened.notify_one();
        tokio::spawn(async move {
            let _permit = permit;
            if *shutdown.borrow_and_update() {
                return;
            }
            let mut next = history;
            loop {
                if !next.is_empty() {
                    tokio::select! {
                        sent = tx.send(next) => if sent.is_err() { return },
                        _ = shutdown.changed() => return,
                    }
                }
                tokio::select! {
                    changed = frames.changed() => if changed.is_err() { return },
                    _ = shutdown.changed() => return,
                    () = tx.closed() => return,
                }
                next = frames.borrow_and_update().clone();
            }
        });
        Some(EventBody { rx })
    }
}

/// The response of `GET /v1/events`.
pub fn response(body: EventBody) -> Response<EventBody> {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Proxies in between (nginx) would otherwise hold the frames back.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// The 503 past [`MAX_STREAMS`].
pub fn too_many() -> Response<http_body_util::Full<Bytes>> {
    super::json::error(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("{MAX_STREAMS} event streams are open already: close a dashboard"),
    )
}

/// One server-sent event: `event: NAME`, the JSON on one `data:` line.
fn event(name: &str, value: &serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {value}\n\n"))
}

fn unix_ms() -> u64 {
    crate::clock::wall_now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A stream's body: the frames its task hands over; ends when the task
/// does (drain, or the client left).
#[derive(Debug)]
pub struct EventBody {
    rx: mpsc::Receiver<Bytes>,
}

impl Body for EventBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.get_mut()
            .rx
            .poll_recv(cx)
            .map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}
