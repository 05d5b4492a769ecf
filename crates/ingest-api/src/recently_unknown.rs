//! Names (API key hashes, template keys) found missing a moment ago, so a
//! client repeating one costs one query per interval, not one per request.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

/// Names remembered at most; beyond it the set starts over (many
/// different wrong names are refused one query each: the limit per
/// address is for them).
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug)]
pub struct RecentlyUnknown<K> {
    ttl: Duration,
    seen: RwLock<HashMap<K, Instant>>,
}

impl<K: Hash + Eq> RecentlyUnknown<K> {
    /// Remembers names for `ttl`; a zero TTL remembers nothing.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            seen: RwLock::default(),
        }
    }

    /// Was `name` found missing less than the TTL ago?
    pub fn contains<Q>(&self, name: &Q) -> bool
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let seen = self.seen.read().unwrap_or_else(PoisonError::into_inner);
        seen.get(name).is_some_and(|at| at.elapsed() < self.ttl)
    }

    pub fn insert(&self, name: K) {
        if self.ttl.is_zero() {
            return;
        }
        let mut seen = self.seen.write().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= MAX_ENTRIES {
            seen.clear();
        }
        seen.insert(name, Instant::now());
    }

    /// Forgets one name (it exists now).
    pub fn remove<Q>(&self, name: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut seen = self.seen.write().unwrap_or_else(PoisonError::into_inner);
        seen.remove(name);
    }

    pub fn clear(&self) {
        self.seen
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_for_its_ttl_and_forgets_on_demand() {
        let unknown = RecentlyUnknown::new(Duration::from_secs(60));
        unknown.insert("a".to_owned());
        assert!(unknown.contains("a"));
        assert!(!unknown.contains("b"));
        unknown.remove("a");
        assert!(!unknown.contains("a"));

        let short = RecentlyUnknown::new(Duration::from_millis(1));
        short.insert("a".to_owned());
        std::thread::sleep(Duration::from_millis(5));
        assert!(!short.contains("a"));

        let off = RecentlyUnknown::new(Duration::ZERO);
        off.insert("a".to_owned());
        assert!(!off.contains("a"));
    }
}
