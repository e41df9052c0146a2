//! A small time-to-live cache: GA4 quotas per property are small, and a dashboard reloaded within the
//! TTL needs no new reports. Bounded, so many customers and ranges cannot grow it without end.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) struct TtlCache<K, V> {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self { ttl, capacity: capacity.max(1), entries: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (Instant, V)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let entries = self.lock();
        entries.get(key).filter(|(stored, _)| stored.elapsed() < self.ttl).map(|(_, v)| v.clone())
    }

    pub fn put(&self, key: K, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (stored, _)| stored.elapsed() < self.ttl);
            if entries.len() >= self.capacity {
                let oldest = entries.iter().min_by_key(|(_, (stored, _))| *stored).map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(key, (Instant::now(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_after_the_ttl_and_stays_bounded() {
        let cache = TtlCache::new(Duration::from_millis(30), 2);
        cache.put(1, "a");
        cache.put(2, "b");
        cache.put(3, "c");
        assert_eq!(cache.lock().len(), 2);
        assert_eq!(cache.get(&3), Some("c"));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.get(&3), None);
        let off = TtlCache::new(Duration::ZERO, 2);
        off.put(1, "a");
        assert_eq!(off.get(&1), None);
    }
}
