//! The bounded memory of delivered keys (post ids, edit versions) that keeps
//! each event handed on once across replays, resumes and catch-ups. A plain
//! data structure, separate so it can be read and tested alone.

use std::collections::{HashSet, VecDeque};

/// Remembers the last `cap` keys.
#[derive(Debug)]
pub(super) struct Seen {
    set: HashSet<String>,
    pub(super) order: VecDeque<String>,
    cap: usize,
}

impl Seen {
    pub(super) fn new(cap: usize) -> Self {
        Seen {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    pub(super) fn contains(&self, key: &str) -> bool {
        self.set.contains(key)
    }

    /// False when the key was there already.
    pub(super) fn insert(&mut self, key: String) -> bool {
        if self.set.contains(&key) {
            return false;
        }
        self.set.insert(key.clone());
        self.order.push_back(key);
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}
