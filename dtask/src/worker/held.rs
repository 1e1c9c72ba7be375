//! What this worker knows it holds in flight: the lease of every run it started and has not
//! settled, per queue. After a fetch whose reply may have been lost, any other lease in the
//! worker's in-flight hash got there unseen, and its job is reclaimed (see `reclaim.lua`).
//! Lease ids are decimal numbers (the queue's lease counter): they are kept as numbers, so that
//! noting and forgetting a run copies no text, and hashed with foldhash (not SipHash: every
//! run is noted and forgotten, by keys this worker chose).

use std::sync::Mutex;

use foldhash::{HashMap, HashSet};

/// The leases this worker holds, by queue.
#[derive(Default)]
pub(crate) struct HeldJobs {
    queues: Mutex<HashMap<String, Leases>>,
}

/// The leases held on one queue: numbers, and (never seen, but not lost if it were) any lease
/// that is not a number.
#[derive(Default)]
struct Leases {
    numbers: HashSet<u64>,
    others: HashSet<String>,
}

/// `lease` as the number it writes, when it is one written the usual way (digits, no leading
/// zero): that number gives back the very text.
fn as_number(lease: &str) -> Option<u64> {
    let digits = lease.bytes().all(|b| b.is_ascii_digit());
    let plain = !lease.is_empty() && digits && (lease == "0" || !lease.starts_with('0'));
    plain.then(|| lease.parse().ok()).flatten()
}

impl Leases {
    fn insert(&mut self, lease: &str) {
        match as_number(lease) {
            Some(number) => self.numbers.insert(number),
            None => self.others.insert(lease.to_owned()),
        };
    }

    fn remove(&mut self, lease: &str) {
        match as_number(lease) {
            Some(number) => self.numbers.remove(&number),
            None => self.others.remove(lease),
        };
    }

    fn all(&self) -> Vec<String> {
        let numbers = self.numbers.iter().map(u64::to_string);
        numbers.chain(self.others.iter().cloned()).collect()
    }
}

impl HeldJobs {
    fn with<T>(&self, queue: &str, f: impl FnOnce(&mut Leases) -> T) -> T {
        // A panic while holding this lock cannot leave it inconsistent: take it anyway.
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = queues.get_mut(queue) {
            return f(held);
        }
        f(queues.entry(queue.to_owned()).or_default())
    }

    /// Notes runs of `queue` under `leases`.
    pub(crate) fn hold<'a>(&self, queue: &str, leases: impl Iterator<Item = &'a str>) {
        self.with(queue, |held| leases.for_each(|lease| held.insert(lease)));
    }

    /// Forgets a run once it is settled.
    pub(crate) fn release(&self, queue: &str, lease: &str) {
        self.with(queue, |held| held.remove(lease));
    }

    /// The leases held for `queue`.
    pub(crate) fn leases(&self, queue: &str) -> Vec<String> {
        self.with(queue, |held| held.all())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_tracked_until_released() {
        let held = HeldJobs::default();
        held.hold("q", ["1", "2", "x7", "+3", "04"].into_iter());
        held.release("q", "1");
        held.release("q", "x7");
        held.release("q", "3");
        held.release("q", "4");
        let mut left = held.leases("q");
        left.sort();
        assert_eq!(left, ["+3", "04", "2"]);
        assert!(held.leases("other").is_empty());
    }
}
