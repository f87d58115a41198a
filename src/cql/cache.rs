//! The read cache in front of the state tables (one per entity kind): the encoded states the
//! engine activates (loads back after passivating them), and the keys known to have none,
//! weighed in bytes.
//!
//! It holds only durable states, so it can never answer with something a restart would not
//! find: it is filled by reads of durable rows and by checkpoints once they are durable. One
//! process writes a keyspace (it holds the writer lease, `lease.rs`, and exits when another
//! wrote) and the shard is its only reader, so there is no other writer to miss. A read of a key and a checkpoint writing that key never overlap: while a checkpoint
//! is in flight, its keys are answered from memory (`store::Layered`) and never reach this
//! cache or the table, and a new one is taken only between the shard's reads.

use crate::store::ReadCache;
use omnistream_actors::cold::Kind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes an entry costs beyond its key and state (moka's bookkeeping, the key's box, the Arc).
const ENTRY_OVERHEAD: usize = 96;

type Key = (u8, Box<str>);
/// A state, or None when the table has none for the key.
type Value = Option<Arc<[u8]>>;

/// The cache and its counters.
pub(super) struct StateCache {
    cache: moka::sync::Cache<Key, Value>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl StateCache {
    /// A cache of at most `bytes` (weighed as key + state + [`ENTRY_OVERHEAD`]); None for 0.
    pub(super) fn new(bytes: u64) -> Option<Arc<StateCache>> {
        (bytes > 0).then(|| {
            let cache = moka::sync::Cache::builder()
                .max_capacity(bytes)
                .weigher(|k: &Key, v: &Value| {
                    let n = k.1.len() + v.as_ref().map_or(0, |s| s.len()) + ENTRY_OVERHEAD;
                    u32::try_from(n).unwrap_or(u32::MAX)
                })
                .build();
            Arc::new(StateCache {
                cache,
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
            })
        })
    }

    /// What the cache knows of a key: `Some(state or None)` on a hit, None on a miss.
    pub(super) fn get(&self, kind: Kind, key: &str) -> Option<Option<Vec<u8>>> {
        match self.cache.get(&(kind as u8, Box::from(key))) {
            Some(v) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(v.map(|s| s.to_vec()))
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Records a key's durable state (None: it has none).
    pub(super) fn put(&self, kind: Kind, key: &str, state: Option<&[u8]>) {
        self.cache
            .insert((kind as u8, Box::from(key)), state.map(Arc::from));
    }

    /// Counters and size.
    pub(super) fn stats(&self) -> ReadCache {
        self.cache.run_pending_tasks();
        ReadCache {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.cache.entry_count(),
            bytes: self.cache.weighted_size(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_misses_absent_keys_and_the_byte_bound() {
        assert!(StateCache::new(0).is_none());
        let c = StateCache::new(64 * 1024).unwrap();
        assert_eq!(c.get(Kind::Member, "m1"), None);
        c.put(Kind::Member, "m1", Some(b"state"));
        c.put(Kind::Member, "m2", None);
        assert_eq!(c.get(Kind::Member, "m1"), Some(Some(b"state".to_vec())));
        assert_eq!(
            c.get(Kind::Member, "m2"),
            Some(None),
            "known to have no state"
        );
        assert_eq!(c.get(Kind::Sku, "m1"), None, "kinds do not mix");
        c.put(Kind::Member, "m1", Some(b"newer"));
        assert_eq!(c.get(Kind::Member, "m1"), Some(Some(b"newer".to_vec())));
        let s = c.stats();
        assert_eq!((s.hits, s.misses), (3, 2));
        // far more than fits: the weighed size stays under the bound
        let big = vec![7u8; 1000];
        for i in 0..1000 {
            c.put(Kind::Member, &format!("k{i}"), Some(&big));
        }
        let s = c.stats();
        assert!(s.bytes <= 64 * 1024, "{s:?}");
        assert!(s.entries < 1000, "{s:?}");
    }
}
