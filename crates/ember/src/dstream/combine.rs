//! The table keyed combines fold into: one entry per key, its combiner updated in place.
//!
//! Every `reduce_by_key`, `combine_by_key`, `count_by_value` and windowed reduce folds each of
//! its records into one of these, so the probe is the innermost loop of most jobs. It is
//! hashbrown's raw table rather than a `HashMap` so that the key comparison can be the cheap
//! one for the commonest key, a short `String` (a word, an id): compared as two overlapping
//! machine words instead of a call to `memcmp`, which costs more than the rest of the probe for
//! keys of a few bytes. Other key types compare with their own `Eq`.

use std::any::Any;
use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::dstream::shuffle::KeyHasher;

/// Keys and their combiners (see the module docs). The hasher is seeded at random per table,
/// as [`KeyHasher`] explains. A combiner is held as an `Option` so that it can be taken out and
/// merged by value in place; one whose merge panicked stays empty and is left out.
pub(crate) struct CombineTable<K, C> {
    table: HashTable<(K, Option<C>)>,
    hasher: KeyHasher,
}

impl<K, C> Default for CombineTable<K, C> {
    fn default() -> Self {
        CombineTable {
            table: HashTable::new(),
            hasher: KeyHasher::default(),
        }
    }
}

impl<K: std::hash::Hash + Eq + 'static, C> CombineTable<K, C> {
    /// Folds `v` into `k`'s combiner: `merge` it with the combiner there, or `create` one.
    #[inline]
    pub(crate) fn fold<V>(&mut self, k: K, v: V, create: impl FnOnce(V) -> C, merge: impl FnOnce(C, V) -> C) {
        let hash = self.hasher.hash_one(&k);
        match self.table.find_mut(hash, |(other, _)| key_eq(other, &k)) {
            Some((_, slot)) => *slot = slot.take().map(|c| merge(c, v)),
            None => {
                let hasher = &self.hasher;
                self.table.insert_unique(hash, (k, Some(create(v))), |(k, _)| hasher.hash_one(k));
            }
        }
    }

    /// Room for this many keys without growing.
    pub(crate) fn capacity(&self) -> usize {
        self.table.capacity()
    }

    /// Every key and its combiner, leaving the table empty with its room kept.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (K, C)> + '_ {
        self.table.drain().filter_map(|(k, c)| Some((k, c?)))
    }

    /// Every key and its combiner.
    pub(crate) fn into_entries(self) -> impl Iterator<Item = (K, C)> {
        self.table.into_iter().filter_map(|(k, c)| Some((k, c?)))
    }

    /// Empties the table, keeping its room.
    pub(crate) fn clear(&mut self) {
        self.table.clear();
    }
}

/// `a == b`, with `String`s compared by [`bytes_eq`]. Which branch runs is known when the
/// function is compiled for `K` (a `TypeId` comparison of two constants), so it costs nothing.
#[inline(always)]
fn key_eq<K: Eq + 'static>(a: &K, b: &K) -> bool {
    match ((a as &dyn Any).downcast_ref::<String>(), (b as &dyn Any).downcast_ref::<String>()) {
        (Some(a), Some(b)) => bytes_eq(a.as_bytes(), b.as_bytes()),
        _ => a == b,
    }
}

/// Byte-string equality without a call for strings of up to 16 bytes: the first and the last
/// word of each (they overlap when the string is shorter than two words).
#[inline(always)]
fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if (8..=16).contains(&n) {
        word::<8>(a, 0) == word::<8>(b, 0) && word::<8>(a, n - 8) == word::<8>(b, n - 8)
    } else if (4..8).contains(&n) {
        word::<4>(a, 0) == word::<4>(b, 0) && word::<4>(a, n - 4) == word::<4>(b, n - 4)
    } else if n < 4 {
        a.iter().zip(b).all(|(x, y)| x == y)
    } else {
        a == b
    }
}

/// The `N` bytes of `s` from `at`, as one array (a single load once inlined).
#[inline(always)]
fn word<const N: usize>(s: &[u8], at: usize) -> [u8; N] {
    let mut w = [0; N];
    w.copy_from_slice(&s[at..at + N]);
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_compare_equal_exactly_when_they_are_equal_at_every_length() {
        for n in 0..40usize {
            let a: Vec<u8> = (0..n as u8).map(|i| i.wrapping_mul(37).wrapping_add(1)).collect();
            assert!(bytes_eq(&a, &a.clone()), "length {n}");
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!bytes_eq(&a, &b), "length {n}, differing at {at}");
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(!bytes_eq(&a, &longer), "lengths {n} and {}", n + 1);
        }
    }

    #[test]
    fn a_table_combines_each_key_once_whatever_its_type() {
        let mut words: CombineTable<String, u64> = CombineTable::default();
        let text = "a bb a ccc dddd eeeee a bb ffffffff ggggggggg ffffffff hhhhhhhhhhhhhhhhhhhh hhhhhhhhhhhhhhhhhhhh";
        for w in text.split(' ') {
            words.fold(w.to_owned(), 1, |v| v, |c, v| c + v);
        }
        let mut got: Vec<(String, u64)> = words.drain().collect();
        got.sort();
        let want: Vec<(String, u64)> = [
            ("a", 3),
            ("bb", 2),
            ("ccc", 1),
            ("dddd", 1),
            ("eeeee", 1),
            ("ffffffff", 2),
            ("ggggggggg", 1),
            ("hhhhhhhhhhhhhhhhhhhh", 2),
        ]
        .into_iter()
        .map(|(w, c)| (w.to_owned(), c))
        .collect();
        assert_eq!(got, want);
        assert_eq!(words.drain().count(), 0);

        let mut pairs: CombineTable<(u32, char), Vec<u8>> = CombineTable::default();
        for (i, x) in [(1, 'x'), (2, 'y'), (1, 'x'), (1, 'y')].into_iter().enumerate() {
            pairs.fold(
                x,
                i as u8,
                |v| vec![v],
                |mut c, v| {
                    c.push(v);
                    c
                },
            );
        }
        let mut got: Vec<_> = pairs.into_entries().collect();
        got.sort();
        assert_eq!(got, vec![((1, 'x'), vec![0, 2]), ((1, 'y'), vec![3]), ((2, 'y'), vec![1])]);
    }
}
