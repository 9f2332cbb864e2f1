//! Counts, per rule and group, the requests the split actually sent over the
//! last minute, so a controller can check that a weight change took effect.
//! One relaxed atomic add per request; no lock.

use std::sync::atomic::{AtomicU64, Ordering};

/// Length of the window, in one-second slots.
const WINDOW: usize = 60;

/// A 60-slot ring of per-second counts.
#[derive(Debug)]
pub struct SplitCounter {
    slots: [Slot; WINDOW],
}

#[derive(Debug, Default)]
struct Slot {
    second: AtomicU64,
    count: AtomicU64,
}

impl Default for SplitCounter {
    fn default() -> Self {
        SplitCounter {
            slots: std::array::from_fn(|_| Slot::default()),
        }
    }
}

impl SplitCounter {
    /// Counts one request at second `now`.
    pub fn record(&self, now: u64) {
        let slot = &self.slots[(now % WINDOW as u64) as usize];
        if slot.second.load(Ordering::Relaxed) != now {
            // First request of this second in this slot: restart it. Two
            // threads racing here may lose a count; the figure is a share.
            slot.second.store(now, Ordering::Relaxed);
            slot.count.store(0, Ordering::Relaxed);
        }
        slot.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests counted in the last minute before `now`.
    pub fn last_minute(&self, now: u64) -> u64 {
        self.slots
            .iter()
            .filter(|s| {
                let sec = s.second.load(Ordering::Relaxed);
                sec != 0 && now.saturating_sub(sec) < WINDOW as u64
            })
            .map(|s| s.count.load(Ordering::Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_expire_after_a_minute() {
        let c = SplitCounter::default();
        c.record(10);
        c.record(10);
        c.record(11);
        assert_eq!(c.last_minute(11), 3);
        assert_eq!(c.last_minute(69), 3);
        assert_eq!(c.last_minute(70), 1);
        c.record(70);
        assert_eq!(c.last_minute(70), 2);
    }
}
