//! Metric handles by config name, carried across table generations and
//! capped. The compiler asks for the handles of each rule and group; a request
//! then does atomic adds on handles its table already holds, never a label
//! lookup.
//!
//! Label values are config names (route, rule, group) and fixed enums, never
//! request data. Handles are kept by weak reference, like endpoint state: a
//! name's series live while some table uses it. Past a cap, new names share
//! one `other` series, so a config with 100,000 rules still scrapes in bounded
//! size.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::arms::ArmCounters;
use super::histogram::{DurationHistogram, Slots};
use super::mirror::MirrorSeries;
pub use super::resilience::{GroupSeries, RouteSeries};
use super::window::Window;

/// Label value of the series that names past a cap fold into.
pub const OTHER: &str = "other";

/// `code_class` label values, by `status / 100 - 1`.
pub const CODE_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Index into [`CODE_CLASSES`]; non-standard codes 600..=999 count as 5xx.
pub fn class_index(status: u16) -> usize {
    usize::from((status / 100).clamp(1, 5)) - 1
}

/// Most distinct local-reply reasons per (route, rule, group).
const REASONS: usize = 12;
/// Most distinct status codes per (route, group) in
/// `http_request_duration_seconds`; more share `status="other"`.
const STATUSES: usize = 8;

/// Counters of one (route, rule, group): what `cutover_requests_total` shows.
#[derive(Debug)]
pub struct RuleGroupSeries {
    upstream: [AtomicU64; 5],
    local: Slots<&'static str, [AtomicU64; 5], REASONS>,
    /// Latency, attempts and the live window of this rule's (route, group).
    pub route_group: Arc<RouteGroupSeries>,
    /// What a rollout of this rule compares.
    pub arm: ArmCounters,
}

impl RuleGroupSeries {
    fn new(route_group: Arc<RouteGroupSeries>) -> Self {
        RuleGroupSeries {
            upstream: Default::default(),
            local: Slots::default(),
            route_group,
            arm: ArmCounters::default(),
        }
    }

    /// Counts one response: `reason` is the local-reply reason, `None` when
    /// the upstream answered.
    pub fn count(&self, status: u16, reason: Option<&'static str>) {
        let class = class_index(status);
        match reason {
            None => &self.upstream[class],
            Some(r) => &self.local.get(r)[class],
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// `(reason, class index, count)`: upstream classes always (zeros
    /// included, so a fresh canary's queries find series), local ones when
    /// counted.
    pub fn counts(&self) -> Vec<(Option<&'static str>, usize, u64)> {
        let mut out: Vec<_> = (0..5)
            .map(|c| (None, c, self.upstream[c].load(Ordering::Relaxed)))
            .collect();
        for (reason, by_class) in self.local.iter() {
            for (c, n) in by_class.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    out.push((Some(reason.unwrap_or(OTHER)), c, n));
                }
            }
        }
        out
    }
}

/// Latency and upstream attempts of one (route, group).
#[derive(Debug, Default)]
pub struct RouteGroupSeries {
    statuses: Slots<u16, DurationHistogram, STATUSES>,
    attempts: AtomicU64,
    /// The last minute, for `/v1/stats`.
    pub window: Window,
}

impl RouteGroupSeries {
    /// Resilience: call once per attempt sent to this group (first try,
    /// retry or fallback) -> `cutover_upstream_attempts_total`.
    pub fn upstream_attempt(&self) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one finished request's duration.
    pub fn observe(&self, status: u16, us: u64) {
        self.statuses.get(status).observe_us(us);
        self.window.record(us, status >= 500);
    }

    /// Upstream attempts so far.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// Histograms by status code (`None`: the overflow one).
    pub fn by_status(&self) -> impl Iterator<Item = (Option<u16>, &DurationHistogram)> {
        self.statuses.iter()
    }
}

/// The handles a compiled rule carries.
#[derive(Debug)]
pub struct RuleMetrics {
    /// Route-level counters (retries, fallbacks, budget).
    pub route: Arc<RouteSeries>,
    /// Per backend, in the split's order.
    pub backends: Box<[Arc<RuleGroupSeries>]>,
    /// Requests the rule matched but no group took (every weight 0).
    pub no_group: Arc<RuleGroupSeries>,
}

/// How many names each kind of series may hold before folding into `other`.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// (route, rule, group) triples.
    pub rule_groups: usize,
    /// (route, group) pairs.
    pub route_groups: usize,
    /// Routes.
    pub routes: usize,
    /// Groups.
    pub groups: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            rule_groups: 1000,
            route_groups: 500,
            routes: 500,
            groups: 500,
        }
    }
}

type Map<K, T> = BTreeMap<K, Weak<T>>;
/// `(route, rule, group)`.
pub type RuleGroupKey = (Box<str>, Box<str>, Box<str>);
/// `(route, group)`.
pub type RouteGroupKey = (Box<str>, Box<str>);

#[derive(Debug, Default)]
struct Maps {
    rule_groups: Map<RuleGroupKey, RuleGroupSeries>,
    route_groups: Map<RouteGroupKey, RouteGroupSeries>,
    routes: Map<Box<str>, RouteSeries>,
    groups: Map<Box<str>, GroupSeries>,
    mirrors: Map<RouteGroupKey, MirrorSeries>,
}

/// Every live series by name. Locked while a table compiles and while
/// `/metrics` is scraped; never on the request path.
#[derive(Debug)]
pub struct Series {
    caps: Caps,
    maps: Mutex<Maps>,
    /// Names folded into `other` because a cap was reached.
    pub folded: AtomicU64,
    /// Requests no rule matched: route, rule and group are empty.
    pub unmatched: Arc<RuleGroupSeries>,
    other: Arc<RuleGroupSeries>,
    other_route: Arc<RouteSeries>,
    other_group: Arc<GroupSeries>,
    other_mirror: Arc<MirrorSeries>,
    /// Kept alive with the specials above.
    _pinned: Vec<Arc<RouteGroupSeries>>,
}

impl Default for Series {
    fn default() -> Self {
        Series::with_caps(Caps::default())
    }
}

/// Returns the live handle for `key`, or a new one unless the map is at its
/// cap (then `None`: the caller uses the `other` handle).
fn get_or_make<K: Ord, T>(
    map: &mut Map<K, T>,
    key: K,
    cap: usize,
    make: impl FnOnce() -> T,
) -> Option<Arc<T>> {
    if let Some(t) = map.get(&key).and_then(Weak::upgrade) {
        return Some(t);
    }
    if map.len() >= cap {
        map.retain(|_, w| w.strong_count() > 0);
        if map.len() >= cap {
            return None;
        }
    }
    let t = Arc::new(make());
    map.insert(key, Arc::downgrade(&t));
    Some(t)
}

fn key2(a: &str, b: &str) -> RouteGroupKey {
    (a.into(), b.into())
}

impl Series {
    /// Empty, with the given caps (tests use small ones).
    pub fn with_caps(caps: Caps) -> Series {
        let unmatched_rg = Arc::new(RouteGroupSeries::default());
        let other_rg = Arc::new(RouteGroupSeries::default());
        let unmatched = Arc::new(RuleGroupSeries::new(Arc::clone(&unmatched_rg)));
        let other = Arc::new(RuleGroupSeries::new(Arc::clone(&other_rg)));
        let (other_route, other_group, other_mirror) = Default::default();
        let mut maps = Maps::default();
        maps.route_groups
            .insert(key2("", ""), Arc::downgrade(&unmatched_rg));
        maps.route_groups
            .insert(key2(OTHER, OTHER), Arc::downgrade(&other_rg));
        let k = |a: &str, b: &str, c: &str| (a.into(), b.into(), c.into());
        maps.rule_groups
            .insert(k("", "", ""), Arc::downgrade(&unmatched));
        maps.rule_groups
            .insert(k(OTHER, OTHER, OTHER), Arc::downgrade(&other));
        maps.routes
            .insert(OTHER.into(), Arc::downgrade(&other_route));
        maps.groups
            .insert(OTHER.into(), Arc::downgrade(&other_group));
        Series {
            caps,
            maps: Mutex::new(maps),
            folded: AtomicU64::new(0),
            unmatched,
            other,
            other_route,
            other_group,
            other_mirror,
            _pinned: vec![unmatched_rg, other_rg],
        }
    }

    fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fold<T>(&self, got: Option<Arc<T>>, other: &Arc<T>) -> Arc<T> {
        got.unwrap_or_else(|| {
            self.folded.fetch_add(1, Ordering::Relaxed);
            Arc::clone(other)
        })
    }

    /// The handles of rule `rule` of `route` whose backends are `groups`.
    pub fn rule<'g>(
        &self,
        route: &str,
        rule: &str,
        groups: impl Iterator<Item = &'g str>,
    ) -> RuleMetrics {
        let mut maps = self.maps();
        let caps = self.caps;
        let got = get_or_make(
            &mut maps.routes,
            route.into(),
            caps.routes,
            Default::default,
        );
        let route_series = self.fold(got, &self.other_route);
        let mut one = |group: &str| {
            let rg = get_or_make(
                &mut maps.route_groups,
                key2(route, group),
                caps.route_groups,
                Default::default,
            );
            let rg = self.fold(rg, &self.other.route_group);
            let key = (route.into(), rule.into(), group.into());
            let got = get_or_make(&mut maps.rule_groups, key, caps.rule_groups, || {
                RuleGroupSeries::new(rg)
            });
            self.fold(got, &self.other)
        };
        let backends = groups.map(&mut one).collect();
        let no_group = one("");
        RuleMetrics {
            route: route_series,
            backends,
            no_group,
        }
    }

    /// The handles of group `name`.
    pub fn group(&self, name: &str) -> Arc<GroupSeries> {
        let got = get_or_make(
            &mut self.maps().groups,
            name.into(),
            self.caps.groups,
            Default::default,
        );
        self.fold(got, &self.other_group)
    }

    /// The mirroring series of `route` copying to `group`.
    pub fn mirror(&self, route: &str, group: &str) -> Arc<MirrorSeries> {
        let got = get_or_make(
            &mut self.maps().mirrors,
            key2(route, group),
            self.caps.route_groups,
            Default::default,
        );
        self.fold(got, &self.other_mirror)
    }

    /// Every live series, sorted by name, for a scrape.
    pub fn live(&self) -> Live {
        fn up<K: Clone, T>(m: &Map<K, T>) -> Vec<(K, Arc<T>)> {
            m.iter()
                .filter_map(|(k, w)| Some((k.clone(), w.upgrade()?)))
                .collect()
        }
        let maps = self.maps();
        Live {
            rule_groups: up(&maps.rule_groups),
            route_groups: up(&maps.route_groups),
            routes: up(&maps.routes),
            groups: up(&maps.groups),
            mirrors: up(&maps.mirrors),
        }
    }
}

/// Live series at one scrape.
#[derive(Debug)]
pub struct Live {
    /// By (route, rule, group).
    pub rule_groups: Vec<(RuleGroupKey, Arc<RuleGroupSeries>)>,
    /// By (route, group).
    pub route_groups: Vec<(RouteGroupKey, Arc<RouteGroupSeries>)>,
    /// By route.
    pub routes: Vec<(Box<str>, Arc<RouteSeries>)>,
    /// By group.
    pub groups: Vec<(Box<str>, Arc<GroupSeries>)>,
    /// Mirroring, by (route, mirror group).
    pub mirrors: Vec<(RouteGroupKey, Arc<MirrorSeries>)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(n: usize) -> Caps {
        Caps {
            rule_groups: n,
            route_groups: n,
            routes: n,
            groups: n,
        }
    }

    #[test]
    fn handles_are_shared_by_name_and_die_with_their_tables() {
        let s = Series::default();
        let a = s.rule("web", "split", ["stable", "canary"].into_iter());
        let b = s.rule("web", "split", ["stable", "canary"].into_iter());
        assert!(Arc::ptr_eq(&a.backends[0], &b.backends[0]));
        assert!(Arc::ptr_eq(&a.route, &b.route));
        let other_rule = s.rule("web", "testers", ["canary"].into_iter());
        assert!(Arc::ptr_eq(
            &a.backends[1].route_group,
            &other_rule.backends[0].route_group
        ));
        drop((a, b, other_rule));
        let live = s.live();
        assert_eq!(live.rule_groups.len(), 2, "only unmatched and other remain");
    }

    #[test]
    fn names_past_the_cap_fold_into_other() {
        // 2 pinned entries (unmatched, other) per map are part of the cap.
        let s = Series::with_caps(caps(4));
        let kept: Vec<_> = (0..5)
            .map(|i| s.rule(&format!("r{i}"), "x", std::iter::empty()))
            .collect();
        assert!(!Arc::ptr_eq(&kept[0].no_group, &s.other));
        assert!(Arc::ptr_eq(&kept[4].no_group, &s.other));
        assert!(s.folded.load(Ordering::Relaxed) > 0);
        assert_eq!(s.live().rule_groups.len(), 4);
        drop(kept);
        let fresh = s.rule("new", "x", std::iter::empty());
        assert!(
            !Arc::ptr_eq(&fresh.no_group, &s.other),
            "dead names free room"
        );
    }

    #[test]
    fn counts_keep_upstream_zeros_and_local_reasons() {
        let s = Series::default();
        let m = s.rule("web", "split", ["stable"].into_iter());
        m.backends[0].count(200, None);
        m.backends[0].count(502, Some("connect_failed"));
        let c = m.backends[0].counts();
        assert_eq!(c.len(), 6);
        assert!(c.contains(&(None, 1, 1)));
        assert!(c.contains(&(None, 4, 0)));
        assert!(c.contains(&(Some("connect_failed"), 4, 1)));
        assert_eq!(class_index(999), 4);
        assert_eq!(class_index(101), 0);
    }
}
