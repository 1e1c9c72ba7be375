//! What this worker knows it holds in flight, per queue: the fields of fetched jobs and the
//! payloads of landed ones. After Redis failed mid-fetch, anything else in the worker's in-flight
//! state got there by a fetch whose reply was lost, and is reclaimed (see `reclaim.lua`).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// The jobs of one queue this worker holds.
#[derive(Default)]
struct QueueHeld {
    fields: HashSet<String>,
    landed: Vec<Vec<u8>>,
}

/// The jobs this worker holds in flight, by queue.
#[derive(Default)]
pub(crate) struct HeldJobs {
    queues: Mutex<HashMap<String, QueueHeld>>,
}

impl HeldJobs {
    fn with<T>(&self, queue: &str, f: impl FnOnce(&mut QueueHeld) -> T) -> T {
        // A panic while holding this lock cannot leave it inconsistent: take it anyway.
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        f(queues.entry(queue.to_owned()).or_default())
    }

    /// Notes jobs fetched into the in-flight hash under `fields`.
    pub(crate) fn hold_fetched<'a>(&self, queue: &str, fields: impl Iterator<Item = &'a str>) {
        self.with(queue, |held| held.fields.extend(fields.map(str::to_owned)));
    }

    /// Notes a job a blocking wait landed.
    pub(crate) fn hold_landed(&self, queue: &str, payload: &[u8]) {
        self.with(queue, |held| held.landed.push(payload.to_vec()));
    }

    /// Forgets a job once it is settled: by `field`, or by `payload` when it was landed.
    pub(crate) fn release(&self, queue: &str, field: Option<&str>, payload: &[u8]) {
        self.with(queue, |held| match field {
            Some(field) => {
                held.fields.remove(field);
            }
            None => {
                if let Some(i) = held.landed.iter().position(|p| p == payload) {
                    held.landed.swap_remove(i);
                }
            }
        });
    }

    /// The fields of the fetched jobs held for `queue`.
    pub(crate) fn fetched(&self, queue: &str) -> Vec<String> {
        self.with(queue, |held| held.fields.iter().cloned().collect())
    }

    /// The payloads of the landed jobs held for `queue`.
    pub(crate) fn landed(&self, queue: &str) -> Vec<Vec<u8>> {
        self.with(queue, |held| held.landed.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_jobs_are_tracked_until_released() {
        let held = HeldJobs::default();
        held.hold_fetched("q", ["a", "b"].into_iter());
        held.hold_landed("q", b"p");
        held.hold_landed("q", b"p");
        held.release("q", Some("a"), b"");
        held.release("q", None, b"p");
        assert_eq!(held.fetched("q"), ["b"]);
        assert_eq!(held.landed("q"), [b"p".to_vec()]);
        assert!(held.fetched("other").is_empty());
    }
}
