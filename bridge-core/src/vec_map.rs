//! [`VecMap`]: a map kept as a `Vec` of entries sorted by key, for the engine's and the
//! channel logs' small maps.
//!
//! A `BTreeMap` is compiled once per key and value type (insert, search, rebalancing,
//! iterators: several kilobytes each), and the browser package links every map the engine
//! uses. These maps hold a few entries (sessions of one engine, channels, messages in flight),
//! so a sorted `Vec` does the same with binary search and far less code. Iteration is in key
//! order, as a `BTreeMap`'s.

use std::borrow::Borrow;
use std::fmt;
use std::ops::RangeBounds;

#[derive(Clone, PartialEq, Eq)]
pub(crate) struct VecMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap(Vec::new())
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for VecMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

impl<K: Ord, V> VecMap<K, V> {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Where `key`'s entry is, or where it would go.
    fn find<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.0.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    pub(crate) fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    pub(crate) fn get_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| &mut self.0[i].1)
    }

    pub(crate) fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`; returns the value it replaced.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    /// `key`'s value, inserted from `make` if absent (`BTreeMap::entry(..).or_insert_with`).
    pub(crate) fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let i = match self.find(&key) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (key, make()));
                i
            }
        };
        &mut self.0[i].1
    }

    /// The entries whose keys are in `range`, in key order.
    pub(crate) fn range<R: RangeBounds<K>>(&self, range: R) -> impl Iterator<Item = (&K, &V)> {
        self.iter().filter(move |(k, _)| range.contains(*k))
    }

    pub(crate) fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }
}

impl<K, V> VecMap<K, V> {
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    #[cfg(any(test, feature = "sim"))]
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    /// In key order.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// In key order.
    pub(crate) fn iter_mut(&mut self) -> impl DoubleEndedIterator<Item = (&K, &mut V)> {
        self.0.iter_mut().map(|(k, v)| (&*k, v))
    }

    /// In key order.
    pub(crate) fn keys(&self) -> impl DoubleEndedIterator<Item = &K> {
        self.0.iter().map(|(k, _)| k)
    }

    /// In key order.
    pub(crate) fn values(&self) -> impl DoubleEndedIterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for VecMap<K, V> {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        let mut m = VecMap::new();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

impl<'a, K, V> IntoIterator for &'a VecMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // On wasm32 the same `#[test]` functions run under wasm-bindgen-test (see scripts/test.sh).
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn behaves_as_a_btree_map() {
        use std::collections::BTreeMap;
        let mut m: VecMap<u32, u32> = VecMap::new();
        let mut b: BTreeMap<u32, u32> = BTreeMap::new();
        for (i, k) in [5u32, 1, 9, 5, 3, 9, 0, 7].into_iter().enumerate() {
            assert_eq!(m.insert(k, i as u32), b.insert(k, i as u32));
        }
        assert_eq!(m.remove(&3), b.remove(&3));
        assert_eq!(m.remove(&4), b.remove(&4));
        *m.get_or_insert_with(2, || 20) += 1;
        *b.entry(2).or_insert_with(|| 20) += 1;
        *m.get_or_insert_with(5, || 50) += 1;
        *b.entry(5).or_insert_with(|| 50) += 1;
        assert_eq!(m.iter().collect::<Vec<_>>(), b.iter().collect::<Vec<_>>());
        assert_eq!(m.len(), b.len());
        assert_eq!(m.get(&9), b.get(&9));
        assert_eq!(m.get(&4), None);
        assert!(m.contains_key(&0) && !m.contains_key(&3));
        assert_eq!(
            m.range(2..).chain(m.range(..2)).collect::<Vec<_>>(),
            b.range(2..).chain(b.range(..2)).collect::<Vec<_>>()
        );
        assert_eq!(format!("{m:?}"), format!("{b:?}"));
    }
}
