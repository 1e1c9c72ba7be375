//! The heartbeat: tells every queue this worker serves that it is alive, so that its in-flight
//! jobs are not taken for orphans.
//!
//! It also keeps, per queue, since when this worker's own beats have been getting through
//! without a break ([`Beats`]): the recoverer takes no other worker for dead on a queue whose
//! Redis this worker could not reach for a while itself (a cluster node failing over, a
//! network cut): the others could not beat either.
//!
//! It runs on an OS thread of its own, with its own small runtime and its own connection to
//! Redis: a handler that blocks its thread or burns CPU (`std::thread::sleep`, a tight loop, a
//! synchronous library call) can starve every task of the worker's runtime, timers included,
//! but not this. A live process is never taken for dead, however its handlers behave.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::backoff::RECONNECT;
use crate::broker::Broker;
use crate::error::Error;

/// Per queue, since when (ms, by the clock of the queue's Redis) this worker's beats have got
/// through with no outage long enough to make a live worker look dead; `None` before the first
/// beat and during such an outage. (A worker that just started takes nobody for dead for a
/// lease: started during a failover, it would see on the new master the heartbeats of live
/// workers that could not beat there yet.)
///
/// An outage counts when beats failed for at least half a lease in a row: a live worker beats
/// five times a lease, so a shorter one cannot make it lapse, while a longer one (a node failing
/// over, a network cut) may have stopped everyone's beats.
pub(crate) struct Beats {
    queues: Mutex<HashMap<String, QueueBeats>>,
    /// How long beats must fail in a row to count as an outage.
    outage: Duration,
}

/// One queue's beats.
#[derive(Default, Clone, Copy)]
struct QueueBeats {
    /// Since when beats got through (server clock, ms), outages aside.
    since: Option<u64>,
    /// When the failures going on began (this machine's clock).
    failing_since: Option<std::time::Instant>,
}

impl Beats {
    /// Beats of `queues`, none yet, for workers whose heartbeats lapse after `lease`.
    pub(crate) fn new(queues: &[String], lease: Duration) -> Beats {
        Beats {
            queues: Mutex::new(
                queues
                    .iter()
                    .map(|q| (q.clone(), QueueBeats::default()))
                    .collect(),
            ),
            outage: lease / 2,
        }
    }

    fn with<T>(&self, queue: &str, f: impl FnOnce(&mut QueueBeats) -> T) -> T {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        f(queues.entry(queue.to_owned()).or_default())
    }

    /// A beat on `queue` got through at `server_ms`.
    fn got_through(&self, queue: &str, server_ms: u64) {
        let outage = self.outage;
        self.with(queue, |beats| {
            let after_outage = beats
                .failing_since
                .take()
                .is_some_and(|since| since.elapsed() >= outage);
            if beats.since.is_none() || after_outage {
                beats.since = Some(server_ms);
            }
        });
    }

    /// A beat on `queue` failed, or got no answer in time.
    fn failed(&self, queue: &str) {
        self.with(queue, |beats| {
            beats
                .failing_since
                .get_or_insert_with(std::time::Instant::now);
        });
    }

    /// Since when this worker's beats on `queue` have got through, outages aside; `None`
    /// before the first and during an outage.
    pub(crate) fn unbroken_since(&self, queue: &str) -> Option<u64> {
        let outage = self.outage;
        self.with(queue, |beats| match beats.failing_since {
            Some(since) if since.elapsed() >= outage => None,
            _ => beats.since,
        })
    }
}

/// What the heartbeat needs to know.
pub(crate) struct Heartbeat {
    broker: Broker,
    queues: Vec<String>,
    worker_id: String,
    interval: Duration,
    beats: Arc<Beats>,
}

impl Heartbeat {
    /// A heartbeat for `worker_id` on `queues` every `interval`, through `broker`'s Redis (on a
    /// connection of its own), noting in `beats` which got through.
    pub(crate) fn new(
        broker: Broker,
        queues: Vec<String>,
        worker_id: String,
        interval: Duration,
        beats: Arc<Beats>,
    ) -> Heartbeat {
        Heartbeat {
            broker,
            queues,
            worker_id,
            interval,
            beats,
        }
    }

    /// Starts beating on a thread of its own until `stop`; join the handle to wait for the
    /// last beat to end.
    pub(crate) fn spawn(self, stop: CancellationToken) -> Result<JoinHandle<()>, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Worker(format!("cannot start the heartbeat's runtime: {e}")))?;
        std::thread::Builder::new()
            .name("dtask-heartbeat".into())
            .spawn(move || runtime.block_on(self.run(stop)))
            .map_err(|e| Error::Worker(format!("cannot start the heartbeat thread: {e}")))
    }

    async fn run(self, stop: CancellationToken) {
        // Its connection is made here, on this thread's runtime, so that its I/O never waits
        // for the worker's runtime.
        let mut conn: Option<Broker> = None;
        let mut failures = 0;
        loop {
            let pause = match self.beat(&mut conn).await {
                Ok(()) => {
                    failures = 0;
                    self.interval
                }
                Err(()) => {
                    failures += 1;
                    RECONNECT.delay(failures).min(self.interval)
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// One beat on every queue, each on its own and bounded: a queue whose beat fails or hangs
    /// (its registry key denied by an ACL, of a wrong type, on a node that is down or frozen)
    /// does not keep the others from theirs. When no queue answers in time, the connection is
    /// dropped, so that the next beat makes a new one. Err when any queue's beat failed.
    async fn beat(&self, conn: &mut Option<Broker>) -> Result<(), ()> {
        let bound = self.interval.max(Duration::from_secs(1));
        if conn.is_none() {
            // Its commands time out within the beat's bound, so that a connection to a node
            // gone silent is noticed (and replaced) by the connection itself.
            match tokio::time::timeout(bound, self.broker.dedicated(bound)).await {
                Ok(Ok(broker)) => *conn = Some(broker),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "heartbeat cannot connect; retrying");
                    return Err(());
                }
                Err(_) => {
                    tracing::warn!("heartbeat cannot connect in time; retrying");
                    return Err(());
                }
            }
        }
        let Some(broker) = conn.as_ref() else {
            return Err(());
        };
        // All queues at once, so that a slow one delays no other's beat.
        let mut beats = tokio::task::JoinSet::new();
        for queue in &self.queues {
            let (broker, queue, worker) = (broker.clone(), queue.clone(), self.worker_id.clone());
            beats.spawn(async move {
                let beat = tokio::time::timeout(bound, broker.heartbeat(&queue, &worker)).await;
                (queue, beat)
            });
        }
        let mut outcome = Ok(());
        let mut unanswered = 0;
        while let Some(joined) = beats.join_next().await {
            match joined {
                Ok((queue, Ok(Ok(server_ms)))) => self.beats.got_through(&queue, server_ms),
                Ok((queue, Ok(Err(error)))) => {
                    tracing::warn!(%error, queue, "heartbeat failed for this queue");
                    self.beats.failed(&queue);
                    outcome = Err(());
                }
                Ok((queue, Err(_))) => {
                    tracing::warn!(queue, "heartbeat got no answer in time for this queue");
                    self.beats.failed(&queue);
                    unanswered += 1;
                    outcome = Err(());
                }
                Err(_) => outcome = Err(()),
            }
        }
        // When no queue answered, the connection itself is likely dead: make a new one. (On a
        // cluster, one silent node leaves the others' beats going on the same connection.)
        if unanswered == self.queues.len() {
            *conn = None;
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_outage_of_half_a_lease_restarts_the_count() {
        let queues = ["q".to_owned()];
        let beats = Beats::new(&queues, Duration::from_millis(40));
        assert_eq!(
            beats.unbroken_since("q"),
            None,
            "nothing before the first beat"
        );
        beats.got_through("q", 1_000);
        assert_eq!(beats.unbroken_since("q"), Some(1_000));
        // A failed beat, then one that gets through at once: no outage.
        beats.failed("q");
        assert_eq!(beats.unbroken_since("q"), Some(1_000));
        beats.got_through("q", 1_010);
        assert_eq!(beats.unbroken_since("q"), Some(1_000));
        // Failing for half a lease: an outage, during and after it.
        beats.failed("q");
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(beats.unbroken_since("q"), None);
        beats.got_through("q", 2_000);
        assert_eq!(beats.unbroken_since("q"), Some(2_000));
    }
}
