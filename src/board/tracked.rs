//! A map that remembers which keys were changed: the board's cards and shelf, so the
//! daemon's incremental plan (`incremental.rs`) learns of every change without each
//! place that changes a card having to say so.
//!
//! Reading goes through `Deref` to the `HashMap`; every way to change an entry
//! (`insert`, `remove`, `get_mut`) notes its key while tracking is on. Tracking is off
//! by default: a reading command's board (`pas status`) is planned in full and needs no
//! record of its changes.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::ops::Deref;

/// A `HashMap` whose changes are noted by key (see the module's doc).
#[derive(Debug, Clone)]
pub struct Tracked<K, V> {
    map: HashMap<K, V>,
    /// Keys changed since the last `take_changed` (with repeats), while `on`.
    changed: Vec<String>,
    on: bool,
}

impl<K, V> Default for Tracked<K, V> {
    fn default() -> Self {
        Tracked {
            map: HashMap::new(),
            changed: Vec::new(),
            on: false,
        }
    }
}

impl<K: Hash + Eq + AsRef<str>, V> Tracked<K, V> {
    /// Starts noting changes (the daemon's board).
    pub fn track(&mut self) {
        self.on = true;
    }

    /// Whether changes are noted.
    pub fn tracking(&self) -> bool {
        self.on
    }

    fn note(&mut self, key: &str) {
        if self.on {
            self.changed.push(key.to_string());
        }
    }

    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        self.note(k.as_ref());
        self.map.insert(k, v)
    }

    pub fn remove<Q>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + AsRef<str> + ?Sized,
    {
        let v = self.map.remove(k)?;
        self.note(k.as_ref());
        Some(v)
    }

    /// The entry to change in place; noted as changed.
    pub fn get_mut<Q>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + AsRef<str> + ?Sized,
    {
        if self.map.contains_key(k) {
            self.note(k.as_ref());
        }
        self.map.get_mut(k)
    }

    /// The entry to change in a way no plan reads (a card's `pas.waiting_for`, which
    /// the plan writes itself): not noted, so the card is not planned again for it.
    pub fn get_mut_unplanned<Q>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get_mut(k)
    }

    /// The keys changed since the last call (with repeats, in order of change).
    pub fn take_changed(&mut self) -> Vec<String> {
        std::mem::take(&mut self.changed)
    }
}

impl<K, V> Deref for Tracked<K, V> {
    type Target = HashMap<K, V>;
    fn deref(&self) -> &HashMap<K, V> {
        &self.map
    }
}

impl<'a, K, V> IntoIterator for &'a Tracked<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::collections::hash_map::Iter<'a, K, V>;
    fn into_iter(self) -> Self::IntoIter {
        self.map.iter()
    }
}
