//! Retry budget shared by every rule of a route: over a sliding 10 s window,
//! retries may add at most `ratio` of the original requests plus
//! `min_per_sec` per second. When one endpoint fails, this is what stops a
//! retry storm. Lock-free: per-second slots of atomic counters.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::model::BudgetConfig;

const WINDOW: usize = 10;

#[derive(Debug, Default)]
struct Slot {
    second: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// A route's budget state, carried across reloads.
#[derive(Debug, Default)]
pub struct RetryBudget {
    slots: [Slot; WINDOW],
}

impl RetryBudget {
    fn slot(&self, now_s: u64) -> &Slot {
        let slot = &self.slots[(now_s % WINDOW as u64) as usize];
        if slot.second.load(Ordering::Relaxed) != now_s {
            slot.second.store(now_s, Ordering::Relaxed);
            slot.requests.store(0, Ordering::Relaxed);
            slot.retries.store(0, Ordering::Relaxed);
        }
        slot
    }

    /// Counts an original request (deposits into the budget).
    pub fn request(&self, now_s: u64) {
        self.slot(now_s).requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub fn try_retry(&self, cfg: &BudgetConfig, now_s: u64) -> bool {
        let (mut requests, mut retries) = (0u64, 0u64);
        for s in &self.slots {
            let sec = s.second.load(Ordering::Relaxed);
            if sec != 0 && now_s.saturating_sub(sec) < WINDOW as u64 {
                requests += s.requests.load(Ordering::Relaxed);
                retries += s.retries.load(Ordering::Relaxed);
            }
        }
        let allowed = cfg.ratio * requests as f64 + f64::from(cfg.min_per_sec) * WINDOW as f64;
        if (retries as f64) < allowed {
            self.slot(now_s).retries.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_capped_by_ratio_plus_floor() {
        let b = RetryBudget::default();
        let cfg = BudgetConfig {
            ratio: 0.2,
            min_per_sec: 1,
        };
        let mut granted = 0;
        for i in 0..1000u64 {
            let now = 1 + i / 100; // 100 requests per second for 10 s
            b.request(now);
            if b.try_retry(&cfg, now) {
                granted += 1;
            }
        }
        // 20% of 1000 plus a floor of 1/s over the 10 s window.
        assert!((200..=215).contains(&granted), "granted {granted}");
    }

    /// On the shared clock, with time paused: a spent budget refills once
    /// the requests that spent it leave the 10 s window.
    #[tokio::test(start_paused = true)]
    async fn a_spent_budget_refills_after_the_window_on_the_shared_clock() {
        use crate::clock::now_secs;
        let b = RetryBudget::default();
        let cfg = BudgetConfig {
            ratio: 0.0,
            min_per_sec: 1,
        };
        let granted = (0..20).filter(|_| b.try_retry(&cfg, now_secs())).count();
        assert_eq!(granted, 10, "the floor: 1/s over the window");
        assert!(!b.try_retry(&cfg, now_secs()), "spent");
        tokio::time::advance(std::time::Duration::from_secs(11)).await;
        assert!(b.try_retry(&cfg, now_secs()), "refilled");
    }
}
