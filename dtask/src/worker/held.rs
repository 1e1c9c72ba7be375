//! What this worker knows it holds in flight: the lease of every run it started and has not
//! settled, per queue. After a fetch whose reply may have been lost, any other lease in the
//! worker's in-flight hash got there unseen, and its job is reclaimed (see `reclaim.lua`).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// The leases this worker holds, by queue.
#[derive(Default)]
pub(crate) struct HeldJobs {
    queues: Mutex<HashMap<String, HashSet<String>>>,
}

impl HeldJobs {
    fn with<T>(&self, queue: &str, f: impl FnOnce(&mut HashSet<String>) -> T) -> T {
        // A panic while holding this lock cannot leave it inconsistent: take it anyway.
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = queues.get_mut(queue) {
            return f(held);
        }
        f(queues.entry(queue.to_owned()).or_default())
    }

    /// Notes runs of `queue` under `leases`.
    pub(crate) fn hold<'a>(&self, queue: &str, leases: impl Iterator<Item = &'a str>) {
        self.with(queue, |held| held.extend(leases.map(str::to_owned)));
    }

    /// Forgets a run once it is settled.
    pub(crate) fn release(&self, queue: &str, lease: &str) {
        self.with(queue, |held| held.remove(lease));
    }

    /// The leases held for `queue`.
    pub(crate) fn leases(&self, queue: &str) -> Vec<String> {
        self.with(queue, |held| held.iter().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_tracked_until_released() {
        let held = HeldJobs::default();
        held.hold("q", ["1", "2"].into_iter());
        held.release("q", "1");
        assert_eq!(held.leases("q"), ["2"]);
        assert!(held.leases("other").is_empty());
    }
}
