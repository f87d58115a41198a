//! [`KeyMap`]: the map an entity keeps by order id or member id (a SKU's reservations, a
//! dealer's shipped orders, a store's recent visitors). Lookups hash; everything that shows
//! or saves the map sorts by key.
//!
//! These maps were `BTreeMap`s, for their sorted, deterministic serialised form. A busy SKU
//! holds hundreds of open and shipped orders, and every command on it searched one or two
//! of them: about ten string comparisons each, most of them cache misses (9% of
//! `Engine::apply` in a profile of the `default` scenario, BENCHMARKS.md). A hash map finds
//! the key in one probe. Its iteration order is not a function of the input (the hasher's
//! seed is random per process, and the order depends on how the table grew), so this type
//! offers no unordered iteration: [`KeyMap::sorted`] lists by key (and
//! [`KeyMap::values_any_order`] serves sums and checks only), and the serialised form is the
//! sorted map a `BTreeMap` wrote, byte for byte: stored states, checkpoints and replay's
//! `state.json` did not change.

use crate::Str;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::hash_map::{Entry, HashMap};

type Hash = foldhash::fast::RandomState;

/// A map from string keys: hashed for lookups, sorted when listed or serialised.
#[derive(Clone)]
pub struct KeyMap<V>(HashMap<Str, V, Hash>);

impl<V> Default for KeyMap<V> {
    fn default() -> Self {
        KeyMap(HashMap::default())
    }
}

impl<V> KeyMap<V> {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.get(key)
    }

    /// The value of `key`, to change.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.0.get_mut(key)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// Sets `key` to `v`; the value it had.
    pub fn insert(&mut self, key: Str, v: V) -> Option<V> {
        self.0.insert(key, v)
    }

    /// Removes `key`; the value it had.
    pub fn remove(&mut self, key: &str) -> Option<V> {
        self.0.remove(key)
    }

    /// The entry of `key`, to read, insert or change in one lookup.
    pub fn entry(&mut self, key: Str) -> Entry<'_, Str, V> {
        self.0.entry(key)
    }

    /// Entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every entry, sorted by key.
    pub fn sorted(&self) -> Vec<(&Str, &V)> {
        let mut all: Vec<(&Str, &V)> = self.0.iter().collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all
    }

    /// Every value, in no particular order: only for what the order cannot change (a sum,
    /// a check that holds for each).
    pub fn values_any_order(&self) -> impl Iterator<Item = &V> {
        self.0.values()
    }
}

impl<V> std::ops::Index<&str> for KeyMap<V> {
    type Output = V;

    fn index(&self, key: &str) -> &V {
        &self.0[key]
    }
}

impl<V: PartialEq> PartialEq for KeyMap<V> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<V: std::fmt::Debug> std::fmt::Debug for KeyMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.sorted()).finish()
    }
}

impl<V> FromIterator<(Str, V)> for KeyMap<V> {
    fn from_iter<I: IntoIterator<Item = (Str, V)>>(it: I) -> Self {
        KeyMap(it.into_iter().collect())
    }
}

impl<V: Serialize> Serialize for KeyMap<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.sorted())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for KeyMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        HashMap::<Str, V, Hash>::deserialize(d).map(KeyMap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn pairs(n: u32) -> Vec<(Str, u32)> {
        // inserted out of order, some keys longer than CompactString's 24 inline bytes
        (0..n)
            .rev()
            .map(|i| {
                (
                    Str::from(format!(
                        "mall:order-{:03}{}",
                        i * 7 % n,
                        "x".repeat((i % 3) as usize * 9)
                    )),
                    i,
                )
            })
            .collect()
    }

    #[test]
    fn serialises_as_the_sorted_map_did() {
        let k: KeyMap<u32> = pairs(200).into_iter().collect();
        let b: BTreeMap<Str, u32> = pairs(200).into_iter().collect();
        assert_eq!(
            serde_json::to_string(&k).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
        assert_eq!(
            crate::cold::encode(&k).unwrap(),
            crate::cold::encode(&b).unwrap()
        );
        let back: KeyMap<u32> = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
        assert_eq!(back, k);
        let stored = crate::cold::encode(&b).unwrap();
        let packed: KeyMap<u32> = postcard::from_bytes(&stored[1..]).unwrap();
        assert_eq!(packed, k);
    }

    #[test]
    fn lists_sorted_whatever_the_insertion_order() {
        let mut k = KeyMap::default();
        let all = pairs(50);
        for (key, v) in all.clone() {
            k.insert(key, v);
        }
        assert_eq!(k.remove(&all[10].0), Some(all[10].1));
        let listed: Vec<&Str> = k.sorted().into_iter().map(|(key, _)| key).collect();
        let mut want = listed.clone();
        want.sort();
        assert_eq!(listed, want);
        assert_eq!(listed.len(), 49);
        assert!(format!("{k:?}").starts_with("{\"mall:order-000\": "));
    }

    proptest::proptest! {
        /// Any history of inserts, changes and removals leaves a map that answers and
        /// serialises as the `BTreeMap` with the same history, and as a map rebuilt from its
        /// own saved form (a restore): the table's layout never shows.
        #[test]
        fn answers_and_saves_as_the_sorted_map(
            ops in proptest::collection::vec((0u8..3, 0u16..64, 0i64..1000), 0..300)
        ) {
            let mut k: KeyMap<i64> = KeyMap::default();
            let mut b: BTreeMap<Str, i64> = BTreeMap::new();
            for (op, key, v) in ops {
                let key = Str::from(format!("dealer:order-{key}{}", "-".repeat(usize::from(key % 4) * 5)));
                match op {
                    0 => proptest::prop_assert_eq!(k.insert(key.clone(), v), b.insert(key, v)),
                    1 => proptest::prop_assert_eq!(k.remove(&key), b.remove(&key)),
                    _ => {
                        *k.entry(key.clone()).or_default() += v;
                        *b.entry(key.clone()).or_default() += v;
                    }
                }
                proptest::prop_assert_eq!(k.len(), b.len());
            }
            let saved = serde_json::to_string(&k).unwrap();
            proptest::prop_assert_eq!(&saved, &serde_json::to_string(&b).unwrap());
            let restored: KeyMap<i64> = serde_json::from_str(&saved).unwrap();
            proptest::prop_assert_eq!(serde_json::to_string(&restored).unwrap(), saved);
            proptest::prop_assert_eq!(&restored, &k);
            let listed: Vec<(&Str, &i64)> = k.sorted();
            proptest::prop_assert_eq!(listed, b.iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn looks_up_changes_and_removes() {
        let mut k: KeyMap<i64> = KeyMap::default();
        assert!(k.is_empty() && k.get("a").is_none());
        assert_eq!(k.insert("a".into(), 1), None);
        assert_eq!(k.insert("a".into(), 2), Some(1));
        *k.entry("b".into()).or_default() += 5;
        *k.get_mut("a").unwrap() += 1;
        assert_eq!((k["a"], k["b"], k.len()), (3, 5, 2));
        assert!(k.contains_key("b"));
        assert_eq!(k.remove("b"), Some(5));
        assert_eq!(k.remove("b"), None);
        assert_eq!(k.values_any_order().sum::<i64>(), 3);
    }
}
