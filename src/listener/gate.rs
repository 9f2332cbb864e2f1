//! Keeps a connection's rare events off its hot path. A connection task is
//! woken for every read, write and response chunk, and `select!` polls
//! every branch on every wake: the shutdown phase, the eviction notice and
//! the idle timer each cost a poll (a lock, a timer check) although they
//! fire a few times in a connection's life. A [`Gate`] gives those futures
//! their own waker, which notes that one of them fired before it wakes the
//! task; on the other wakes they are not polled at all.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;

/// The waker of a connection's rare events.
pub struct Gate {
    alarm: Arc<Alarm>,
    waker: Waker,
}

struct Alarm {
    /// One of the gated futures asked to be polled.
    rung: AtomicBool,
    /// The task to wake then.
    task: AtomicWaker,
}

impl Wake for Alarm {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.rung.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl Gate {
    /// A gate for one connection's task.
    pub fn new() -> Gate {
        let alarm = Arc::new(Alarm {
            rung: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        let waker = Waker::from(Arc::clone(&alarm));
        Gate { alarm, waker }
    }

    /// Polls `fut` (at once, then) only when something it waits for fired.
    pub fn watch<'a, F: Future>(&'a self, fut: Pin<&'a mut F>) -> Gated<'a, F> {
        // A new future has registered nothing yet.
        self.alarm.rung.store(true, Ordering::Release);
        Gated { gate: self, fut }
    }
}

/// A future polled through its [`Gate`].
pub struct Gated<'a, F> {
    gate: &'a Gate,
    fut: Pin<&'a mut F>,
}

impl<F: Future> Future for Gated<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let alarm = &self.gate.alarm;
        // Registered before the check: a wake in between is not lost.
        alarm.task.register(cx.waker());
        if !alarm.rung.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = self.gate.waker.clone();
        self.fut.as_mut().poll(&mut Context::from_waker(&waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_gated_timer_fires_and_other_wakes_skip_it() {
        let gate = Gate::new();
        let sleep = tokio::time::sleep(Duration::from_secs(5));
        tokio::pin!(sleep);
        let polls = std::sync::atomic::AtomicUsize::new(0);
        let counted = std::future::poll_fn(|cx| {
            polls.fetch_add(1, Ordering::Relaxed);
            sleep.as_mut().poll(cx)
        });
        tokio::pin!(counted);
        let mut gated = gate.watch(counted.as_mut());
        let start = tokio::time::Instant::now();
        // Wakes from elsewhere: a 1 ms ticker, 100 times.
        let mut ticks = 0;
        loop {
            tokio::select! {
                biased;
                () = &mut gated => break,
                () = tokio::time::sleep(Duration::from_millis(1)), if ticks < 100 => ticks += 1,
            }
        }
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert_eq!(ticks, 100);
        // Polled once to register and once when it fired, not per tick.
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }
}
