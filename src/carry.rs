//! State carried from one table generation to the next by key (endpoint
//! address, route name, ...): a map of weak references, so a value lives as
//! long as some published table holds it and no longer. Locked only while a
//! table is compiled, never on the request path.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// Values by key, shared with older tables while they live.
#[derive(Debug)]
pub struct WeakMap<K, T> {
    map: Mutex<HashMap<K, Weak<T>>>,
}

impl<K, T> Default for WeakMap<K, T> {
    fn default() -> Self {
        WeakMap {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq, T> WeakMap<K, T> {
    /// The live value for `key`, or a new one from `make`.
    pub fn get_or_make(&self, key: K, make: impl FnOnce() -> T) -> Arc<T> {
        self.get_or_make_arc(key, || Arc::new(make()))
    }

    /// [`Self::get_or_make`] for values built in their `Arc` (e.g. with a
    /// weak reference to themselves).
    pub fn get_or_make_arc(&self, key: K, make: impl FnOnce() -> Arc<T>) -> Arc<T> {
        let mut map = lock(&self.map);
        if let Some(v) = map.get(&key).and_then(Weak::upgrade) {
            return v;
        }
        // Sweep dead entries now and then, not on every miss: a sweep per
        // miss made compiling a 10,000-rule table quadratic.
        if map.len() >= 64 && map.len().is_power_of_two() {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let v = make();
        map.insert(key, Arc::downgrade(&v));
        v
    }

    /// How many values some table still holds.
    pub fn live(&self) -> usize {
        lock(&self.map)
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }

    /// The keys of the values some table still holds.
    pub fn live_keys(&self) -> Vec<K>
    where
        K: Clone,
    {
        lock(&self.map)
            .iter()
            .filter(|(_, w)| w.strong_count() > 0)
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// Locks `m`, also after a panic elsewhere (the maps stay consistent: every
/// change is one insert or retain).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
