//! What the failover tests (Redis Cluster, Sentinel) measure from the start times of jobs and
//! enqueues: the longest stall after the fault.

use std::time::{Duration, Instant};

/// The longest time between two of `times` (sorted) after `from`, and when it ended.
pub fn longest_gap(times: impl Iterator<Item = Instant>, from: Instant) -> (Duration, Instant) {
    let (mut gap, mut end) = (Duration::ZERO, from);
    let mut previous = from;
    for at in times.filter(|at| *at > from) {
        if at.duration_since(previous) > gap {
            gap = at.duration_since(previous);
            end = at;
        }
        previous = at;
    }
    (gap, end)
}
