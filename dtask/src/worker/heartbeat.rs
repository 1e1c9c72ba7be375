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
/// through without a failure in between; `None` before the first and while they fail. (A
/// worker that just started takes nobody for dead for a lease: started during a failover, it
/// would see on the new master the heartbeats of live workers that could not beat there yet.)
pub(crate) struct Beats {
    since: Mutex<HashMap<String, Option<u64>>>,
}

impl Beats {
    /// Beats of `queues`, none yet.
    pub(crate) fn new(queues: &[String]) -> Beats {
        Beats {
            since: Mutex::new(queues.iter().map(|q| (q.clone(), None)).collect()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Option<u64>>) -> T) -> T {
        f(&mut self.since.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A beat on `queue` got through at `server_ms`.
    fn got_through(&self, queue: &str, server_ms: u64) {
        self.with(|since| {
            let entry = since.entry(queue.to_owned()).or_insert(None);
            entry.get_or_insert(server_ms);
        });
    }

    /// A beat on `queue` failed, or got no answer in time.
    fn failed(&self, queue: &str) {
        self.with(|since| since.insert(queue.to_owned(), None));
    }

    /// Since when this worker's beats on `queue` have got through without a break; `None`
    /// while they fail.
    pub(crate) fn unbroken_since(&self, queue: &str) -> Option<u64> {
        self.with(|since| since.get(queue).copied().flatten())
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
