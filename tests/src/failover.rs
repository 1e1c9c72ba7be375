//! What the failover tests (Redis Cluster, Sentinel) share: a producer enqueueing under the
//! fault, the wait for every returned job to run, and the longest stall after the fault.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

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

/// What one producer saw: the jobs whose enqueue returned Ok, those answered `NotReplicated`
/// (queued, not confirmed), each with when it returned, and how many enqueues failed.
#[derive(Debug, Default)]
pub struct Produced {
    /// Jobs whose enqueue returned Ok, with when.
    pub ok: Vec<(u64, Instant)>,
    /// Jobs answered `NotReplicated` (queued, not confirmed), with when.
    pub unconfirmed: Vec<(u64, Instant)>,
    /// Enqueues that failed.
    pub errors: usize,
}

impl Produced {
    /// The longest time after `from` between two enqueues that returned (Ok or NotReplicated).
    pub fn longest_stall(&self, from: Instant) -> Duration {
        let mut returned: Vec<Instant> = self
            .ok
            .iter()
            .chain(&self.unconfirmed)
            .map(|(_, at)| *at)
            .collect();
        returned.sort();
        longest_gap(returned.into_iter(), from).0
    }
}

/// Enqueues jobs `first + 1`, `first + 2`, ... with `enqueue`, one every 4 ms, until `stop`.
pub fn produce<F, Fut>(first: u64, stop: Arc<AtomicBool>, enqueue: F) -> JoinHandle<Produced>
where
    F: Fn(u64) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), dtask::Error>> + Send,
{
    tokio::spawn(async move {
        let mut produced = Produced::default();
        let mut n = first;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            match enqueue(n).await {
                Ok(()) => produced.ok.push((n, Instant::now())),
                // Queued on a master with no replica left (its replica took over from the
                // master that died): the job runs, unconfirmed.
                Err(dtask::Error::NotReplicated { .. }) => {
                    produced.unconfirmed.push((n, Instant::now()))
                }
                Err(_) => produced.errors += 1,
            }
            tokio::time::sleep(Duration::from_millis(4)).await;
        }
        produced
    })
}

/// Waits until every job of `expected` is in `runs`, or none started for 10 s (60 s at most):
/// a job still missing then is lost.
pub async fn wait_until_ran(expected: &[u64], runs: &Mutex<Vec<(u64, Instant)>>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut last_count, mut last_change) = (0, Instant::now());
    loop {
        let ran: HashSet<u64> = runs.lock().unwrap().iter().map(|(n, _)| *n).collect();
        if expected.iter().all(|n| ran.contains(n)) {
            return;
        }
        if ran.len() != last_count {
            (last_count, last_change) = (ran.len(), Instant::now());
        }
        if Instant::now() > deadline || last_change.elapsed() > Duration::from_secs(10) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
