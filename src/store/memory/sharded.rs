//! The memory store's maps, built so that no single request pays for the size of the state
//! (issue 17): with hundreds of thousands of admissions held, one map growing by rehashing
//! everything at once, or one sweep over every key, is a multi-millisecond stall on whichever
//! request triggers it.
//!
//! - **Sharded**: 256 small maps, so a map that grows rehashes 1/256 of the keys.
//! - **Pruned as it goes**: each shard keeps a min-heap of when its keys next need a look;
//!   every operation settles at most [`TIDY_BUDGET`] due keys of the shard it touches and of one
//!   more shard in turn, so expired state leaves steadily instead of in one sweep.
//! - **Small**: a key is held as 128 bits of two per-process SipHash keys (no string per key;
//!   a collision is a 2^-128 event, and the keys are unknown to clients), and a rolling
//!   counter keeps up to four admission times inline.

use std::cmp::Reverse;
use std::collections::hash_map::{Entry, RandomState};
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// Shards per map: a power of two.
pub(super) const SHARDS: usize = 256;
/// Due keys settled per operation, per shard visited: bounded work on every request.
pub(super) const TIDY_BUDGET: usize = 4;

/// A key's identity in the store.
pub(super) type KeyId = u128;

/// What the maps hold: state that can tell when it next needs a look, and settle then.
pub(super) trait Expiring {
    /// When this value may next have something to drop (its earliest expiry).
    fn next_look(&self) -> u64;
    /// Drops what has expired at `now_ms`; `false` when nothing is left (the key goes).
    fn settle(&mut self, now_ms: u64) -> bool;
}

/// The hasher of a shard's map: the key is already a uniform 128-bit hash, so its high 64 bits
/// are used as they are (the low bits chose the shard).
#[derive(Default)]
pub(super) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used; any other input is folded in, never ignored.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = (n >> 64) as u64;
    }
}

struct Shard<V> {
    map: HashMap<KeyId, V, BuildHasherDefault<PassThrough>>,
    /// (when to look, key), earliest first. A key has one entry while it lives (re-pushed
    /// when settled and still live); entries of removed keys are dropped when they come up.
    due: BinaryHeap<Reverse<(u64, KeyId)>>,
}

impl<V: Expiring> Shard<V> {
    fn tidy(&mut self, now_ms: u64, budget: usize) {
        for _ in 0..budget {
            match self.due.peek() {
                Some(Reverse((at, _))) if *at <= now_ms => {}
                _ => return,
            }
            let Some(Reverse((_, key))) = self.due.pop() else {
                return;
            };
            let Some(value) = self.map.get_mut(&key) else {
                continue;
            };
            if value.settle(now_ms) {
                let next = value.next_look().max(now_ms + 1);
                self.due.push(Reverse((next, key)));
            } else {
                self.map.remove(&key);
            }
        }
    }
}

/// A map from string keys to expiring values, in shards.
pub(super) struct Sharded<V> {
    hash: (RandomState, RandomState),
    shards: Vec<Shard<V>>,
    /// The shard tidied next beside the one an operation touches.
    cursor: usize,
}

impl<V: Expiring> Default for Sharded<V> {
    fn default() -> Self {
        Sharded {
            hash: (RandomState::new(), RandomState::new()),
            shards: (0..SHARDS)
                .map(|_| Shard {
                    map: HashMap::default(),
                    due: BinaryHeap::new(),
                })
                .collect(),
            cursor: 0,
        }
    }
}

impl<V: Expiring> Sharded<V> {
    pub(super) fn id(&self, key: &str) -> KeyId {
        let high = self.hash.0.hash_one(key);
        let low = self.hash.1.hash_one(key);
        (u128::from(high) << 64) | u128::from(low)
    }

    fn shard(&mut self, id: KeyId) -> &mut Shard<V> {
        &mut self.shards[(id as usize) & (SHARDS - 1)]
    }

    /// Bounded housekeeping for one operation at `now_ms` on `id`: its own shard and the next
    /// one in turn.
    pub(super) fn tidy(&mut self, id: KeyId, now_ms: u64) {
        self.shard(id).tidy(now_ms, TIDY_BUDGET);
        let cursor = self.cursor;
        self.cursor = (cursor + 1) & (SHARDS - 1);
        self.shards[cursor].tidy(now_ms, TIDY_BUDGET);
    }

    pub(super) fn get(&self, id: KeyId) -> Option<&V> {
        self.shards[(id as usize) & (SHARDS - 1)].map.get(&id)
    }

    pub(super) fn get_mut(&mut self, id: KeyId) -> Option<&mut V> {
        self.shard(id).map.get_mut(&id)
    }

    /// The value of `id`, made by `make` (and scheduled for its first look) when absent.
    pub(super) fn get_or_insert_with(&mut self, id: KeyId, make: impl FnOnce() -> V) -> &mut V {
        let shard = self.shard(id);
        match shard.map.entry(id) {
            Entry::Occupied(found) => found.into_mut(),
            Entry::Vacant(slot) => {
                let value = make();
                shard.due.push(Reverse((value.next_look(), id)));
                slot.insert(value)
            }
        }
    }

    /// Replaces (or inserts) the value of `id`.
    pub(super) fn insert(&mut self, id: KeyId, value: V) {
        let shard = self.shard(id);
        // Scheduled again even when replacing: the new value may expire sooner than the old
        // one was scheduled for (a stale entry is harmless: it settles a live value).
        shard.due.push(Reverse((value.next_look(), id)));
        shard.map.insert(id, value);
    }

    /// Makes room for one more key in `id`'s shard when it holds `per_shard` keys already: the
    /// keys due soonest leave first (for call records, which are due when they expire, the
    /// oldest). Bounds a map to `per_shard * SHARDS` keys; one key leaves per insert once
    /// full, plus any stale heap entries on the way.
    pub(super) fn make_room(&mut self, id: KeyId, per_shard: usize) {
        let shard = self.shard(id);
        while shard.map.len() >= per_shard {
            let Some(Reverse((_, key))) = shard.due.pop() else {
                return;
            };
            shard.map.remove(&key);
        }
    }

    pub(super) fn remove(&mut self, id: KeyId) -> Option<V> {
        self.shard(id).map.remove(&id)
    }

    /// Keys held.
    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.map.len()).sum()
    }

    /// Settles every key at `now_ms` (tests, and nothing on the request path).
    #[cfg(test)]
    pub(super) fn settle_all(&mut self, now_ms: u64) {
        for shard in &mut self.shards {
            shard.map.retain(|_, v| v.settle(now_ms));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value that expires at a fixed time.
    struct Until(u64);

    impl Expiring for Until {
        fn next_look(&self) -> u64 {
            self.0
        }
        fn settle(&mut self, now_ms: u64) -> bool {
            self.0 > now_ms
        }
    }

    #[test]
    fn expired_keys_leave_a_few_per_operation_without_a_sweep() {
        let mut map: Sharded<Until> = Sharded::default();
        for i in 0..10_000u64 {
            let id = map.id(&format!("key:{i}"));
            map.get_or_insert_with(id, || Until(1_000 + i % 10));
        }
        assert_eq!(map.len(), 10_000);
        // Each operation settles a bounded number of keys: a few operations do not empty it…
        let probe = map.id("probe");
        map.tidy(probe, 5_000);
        let left = map.len();
        assert!(left >= 10_000 - 2 * TIDY_BUDGET, "{left}");
        // …but steady operations do, visiting the shards in turn.
        let mut operations = 1;
        while map.len() > 0 && operations < 100 * SHARDS {
            map.tidy(probe, 5_000);
            operations += 1;
        }
        assert_eq!(map.len(), 0, "after {operations} operations");
    }

    #[test]
    fn a_live_key_is_looked_at_again_later_and_kept() {
        let mut map: Sharded<Until> = Sharded::default();
        let id = map.id("live");
        map.get_or_insert_with(id, || Until(100));
        // Not due yet: nothing happens.
        map.tidy(id, 50);
        assert!(map.get(id).is_some());
        // Extended before it was due: it survives its first look and is looked at again.
        map.get_mut(id).unwrap().0 = 300;
        map.tidy(id, 150);
        assert!(map.get(id).is_some());
        map.tidy(id, 299);
        assert!(map.get(id).is_some());
        map.tidy(id, 300);
        assert!(map.get(id).is_none());
    }

    #[test]
    fn ids_differ_for_different_keys_and_are_stable_within_a_map() {
        let map: Sharded<Until> = Sharded::default();
        assert_eq!(map.id("ip:203.0.113.10"), map.id("ip:203.0.113.10"));
        assert_ne!(map.id("ip:203.0.113.10"), map.id("ip:203.0.113.11"));
        assert_ne!(map.id("ab"), map.id("ba"));
    }
}
