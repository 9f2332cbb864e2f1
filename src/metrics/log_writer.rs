//! A non-blocking stdout for the access log: request threads hand each line
//! to one writer thread, which batches them into few `write(2)` calls (lines
//! reach stdout within about 10 ms). A full queue drops lines (counted in
//! `cutover_access_log_dropped_total`) rather than stall the proxy behind a
//! slow log reader.

use std::io::{self, BufWriter, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// Lines queued at most (about 20 MiB of typical lines). Counted, not
/// preallocated: `sync_channel(QUEUE)` wrote 2 MiB of slots at start-up,
/// 2 MiB of every idle process's RSS; the unbounded channel allocates as
/// lines come and frees as they go.
const QUEUE: usize = 65_536;

/// How long lines gather before a write.
const ROUND: Duration = Duration::from_millis(10);

/// Lines dropped because the queue was full.
pub static DROPPED: AtomicU64 = AtomicU64::new(0);

enum Msg {
    Line(Vec<u8>),
    /// Write out everything queued so far, then answer.
    Flush(SyncSender<()>),
}

/// The `tracing` writer side: cheap to call from any thread.
#[derive(Debug, Clone)]
pub struct NonBlocking {
    tx: Sender<Msg>,
    /// Lines sent and not yet taken by the writer thread.
    queued: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

/// Flushes the queue when dropped (at exit), waiting up to a second.
#[derive(Debug)]
pub struct FlushGuard {
    tx: Sender<Msg>,
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        let (ack, done) = mpsc::sync_channel(1);
        if self.tx.send(Msg::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(Duration::from_secs(1));
        }
    }
}

impl NonBlocking {
    /// Starts the writer thread over `out` (stdout in the binary).
    pub fn new(out: impl Write + Send + 'static) -> io::Result<(NonBlocking, FlushGuard)> {
        let (tx, rx) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let taken = Arc::clone(&queued);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(&rx, &taken, BufWriter::with_capacity(64 * 1024, out)))?;
        let guard = FlushGuard { tx: tx.clone() };
        Ok((NonBlocking { tx, queued }, guard))
    }
}

/// Idle, the thread waits on the queue; once a line arrives it writes in
/// rounds: sleep a moment so lines gather, write them all, flush. Request
/// threads then never wake it (it is asleep, not waiting on the queue), and
/// one `write(2)` carries many lines. A line waits at most one round.
fn write_lines(rx: &Receiver<Msg>, queued: &AtomicUsize, mut out: BufWriter<impl Write>) {
    let write = |msg: Msg, out: &mut BufWriter<_>| match msg {
        Msg::Line(line) => {
            queued.fetch_sub(1, Ordering::Relaxed);
            let _ = out.write_all(&line);
        }
        Msg::Flush(ack) => {
            let _ = out.flush();
            let _ = ack.send(());
        }
    };
    while let Ok(msg) = rx.recv() {
        write(msg, &mut out);
        loop {
            std::thread::sleep(ROUND);
            let mut more = false;
            while let Ok(msg) = rx.try_recv() {
                write(msg, &mut out);
                more = true;
            }
            let _ = out.flush();
            if !more {
                break;
            }
        }
    }
}

/// One event's writer: `tracing`'s fmt layer writes each formatted line
/// with a single `write_all`.
#[derive(Debug)]
pub struct LineSender<'a>(&'a NonBlocking);

impl Write for LineSender<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let sender = self.0;
        // Counted before the send, so the writer never takes a line that
        // is not counted yet.
        let queued = sender.queued.fetch_add(1, Ordering::Relaxed);
        if queued >= QUEUE || sender.tx.send(Msg::Line(buf.to_vec())).is_err() {
            sender.queued.fetch_sub(1, Ordering::Relaxed);
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for NonBlocking {
    type Writer = LineSender<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineSender(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_whole_and_in_order_by_the_flush() {
        let out = Shared::default();
        let (writer, guard) = NonBlocking::new(out.clone()).unwrap();
        for i in 0..1000 {
            let mut w = writer.make_writer();
            w.write_all(format!("{{\"n\":{i}}}\n").as_bytes()).unwrap();
        }
        drop(guard);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 1000);
        assert_eq!(lines[999], "{\"n\":999}");
    }

    /// Stdout that blocks its first write until the test lets it go.
    struct Stuck {
        gate: Arc<Mutex<()>>,
        out: Shared,
    }

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            drop(self.gate.lock().unwrap());
            self.out.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_reader_costs_lines_over_the_bound_not_a_blocked_request() {
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let out = Shared::default();
        let stuck = Stuck {
            gate: Arc::clone(&gate),
            out: out.clone(),
        };
        // Lines go to a 64 KiB buffer first: the stuck write comes once
        // the writer flushes, after the first round.
        let (writer, guard) = NonBlocking::new(stuck).unwrap();
        writer.make_writer().write_all(b"first\n").unwrap();
        std::thread::sleep(ROUND * 3);
        let dropped_before = DROPPED.load(Ordering::Relaxed);
        let sent = QUEUE + 10;
        for _ in 0..sent {
            writer.make_writer().write_all(b"x\n").unwrap();
        }
        let dropped = DROPPED.load(Ordering::Relaxed) - dropped_before;
        // Other tests may drop lines too; this one drops at least its 10.
        assert!(dropped >= 10, "dropped {dropped}");
        drop(held);
        drop(guard);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text.lines().count(),
            1 + QUEUE,
            "the first line and a full queue"
        );
    }
}
