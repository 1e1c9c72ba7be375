//! The fetcher: takes jobs from the queues, in strict priority order, as fast as free slots
//! allow, and hands each to the executor in a task of its own.
//!
//! When a queue is deep, one script moves up to one batch of jobs per round trip. When every
//! queue is empty, one waiter per queue blocks on its own connection (`BLMOVE`), so an idle
//! worker starts a new job within milliseconds without polling.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Context;
use super::executor;
use crate::backoff::RECONNECT;

/// How long one blocking wait lasts; the waiters check for shutdown between waits.
const BLOCK: Duration = Duration::from_secs(1);
/// How long an idle fetcher waits for a waiter before it polls the queues itself.
const IDLE_POLL: Duration = Duration::from_secs(5);

/// A job moved in flight on this worker: its queue, where it is held, and its payload.
pub(crate) struct Fetched {
    pub(crate) queue: Arc<str>,
    /// Whether it is a suspect (in flight on two dead workers): the only one on this worker.
    pub(crate) suspect: bool,
    /// Its field in the in-flight hash; None when a blocking wait put it in the landing list.
    pub(crate) field: Option<String>,
    pub(crate) payload: Vec<u8>,
}

pub(crate) struct Fetcher {
    ctx: Arc<Context>,
    slots: Arc<Semaphore>,
    jobs: TaskTracker,
    abandon: CancellationToken,
}

impl Fetcher {
    /// A fetcher that runs at most `slots` jobs at once on `jobs`; `abandon` tells running jobs
    /// to stop at once (the shutdown grace period is over).
    pub(crate) fn new(
        ctx: Arc<Context>,
        slots: usize,
        jobs: TaskTracker,
        abandon: CancellationToken,
    ) -> Fetcher {
        Fetcher {
            ctx,
            slots: Arc::new(Semaphore::new(slots)),
            jobs,
            abandon,
        }
    }

    /// Fetches and dispatches until `stop`; returns once the blocking waiters are done too, so
    /// that nothing moves into this worker's in-flight lists afterwards.
    pub(crate) async fn run(self, stop: CancellationToken) {
        let queues = self.ctx.settings.queues.clone();
        let (deliver, mut delivered) = mpsc::channel::<Fetched>(queues.len());
        let (idle_tx, idle_rx) = watch::channel(false);
        let mut waiters = JoinSet::new();
        for queue in queues {
            waiters.spawn(wait_for_jobs(
                self.ctx.clone(),
                Arc::from(queue.as_str()),
                stop.clone(),
                idle_rx.clone(),
                deliver.clone(),
            ));
        }
        drop(deliver);
        let mut failures = 0;
        // Set when a fetch failed: its reply may have been lost after Redis ran it.
        let mut reclaim_needed = false;
        loop {
            let first = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                permit = self.slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let mut slots = vec![first];
            while slots.len() < self.ctx.settings.fetch_batch {
                match self.slots.clone().try_acquire_owned() {
                    Ok(permit) => slots.push(permit),
                    Err(_) => break,
                }
            }
            // Jobs a waiter already moved in flight come first.
            let mut batch = Vec::with_capacity(slots.len());
            while batch.len() < slots.len() {
                match delivered.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            if reclaim_needed {
                match self.reclaim_lost().await {
                    Ok(()) => reclaim_needed = false,
                    Err(error) => {
                        failures += 1;
                        tracing::warn!(%error, "reclaiming lost fetches failed; retrying");
                        drop(slots);
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tokio::time::sleep(RECONNECT.delay(failures)) => continue,
                        }
                    }
                }
            }
            if batch.len() < slots.len() {
                match self.fetch_round(slots.len() - batch.len()).await {
                    Ok(jobs) => {
                        failures = 0;
                        batch.extend(jobs);
                    }
                    Err(error) => {
                        failures += 1;
                        reclaim_needed = true;
                        tracing::warn!(%error, "fetching jobs failed; retrying");
                        drop(slots);
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tokio::time::sleep(RECONNECT.delay(failures)) => continue,
                        }
                    }
                }
            }
            if batch.is_empty() {
                slots.truncate(1);
                let _ = idle_tx.send(true);
                let woken = tokio::select! {
                    biased;
                    _ = stop.cancelled() => break,
                    job = delivered.recv() => job,
                    _ = self.ctx.wake_fetcher.notified() => None,
                    _ = tokio::time::sleep(IDLE_POLL) => None,
                };
                let _ = idle_tx.send(false);
                batch.extend(woken);
            }
            for (job, slot) in batch.into_iter().zip(slots) {
                self.dispatch(job, slot);
            }
        }
        // Jobs still in the channel stay in flight; the worker requeues them at shutdown.
        drop(delivered);
        while waiters.join_next().await.is_some() {}
    }

    /// Reclaims the jobs of every queue whose fetch reply was lost.
    async fn reclaim_lost(&self) -> Result<(), crate::Error> {
        for queue in &self.ctx.settings.queues {
            self.ctx.reclaim_lost(queue).await?;
        }
        Ok(())
    }

    /// Fetches up to `wanted` jobs, draining the queues in priority order, and notes them as
    /// held.
    async fn fetch_round(&self, wanted: usize) -> Result<Vec<Fetched>, crate::Error> {
        let ctx = &self.ctx;
        let _fetching = ctx.fetch_lock.lock().await;
        let mut jobs = Vec::new();
        for queue in &ctx.settings.queues {
            let need = wanted - jobs.len();
            let take_suspect = !ctx.suspect_in_flight.load(Ordering::Acquire);
            let (fetched, suspect) = ctx
                .broker
                .fetch(queue, &ctx.worker_id, need, take_suspect)
                .await?;
            if suspect {
                ctx.suspect_in_flight.store(true, Ordering::Release);
            }
            if !fetched.is_empty() {
                ctx.held
                    .hold_fetched(queue, fetched.iter().map(|(field, _)| field.as_str()));
                let queue: Arc<str> = Arc::from(queue.as_str());
                jobs.extend(
                    fetched
                        .into_iter()
                        .enumerate()
                        .map(|(i, (field, payload))| Fetched {
                            queue: queue.clone(),
                            suspect: suspect && i == 0,
                            field: Some(field),
                            payload,
                        }),
                );
            }
            if jobs.len() == wanted {
                break;
            }
        }
        Ok(jobs)
    }

    fn dispatch(&self, job: Fetched, slot: OwnedSemaphorePermit) {
        let ctx = self.ctx.clone();
        let abandon = self.abandon.clone();
        self.jobs.spawn(async move {
            executor::execute(&ctx, job, &abandon).await;
            drop(slot);
        });
    }
}

/// Blocks on one queue while the fetcher is idle, and delivers what arrives.
async fn wait_for_jobs(
    ctx: Arc<Context>,
    queue: Arc<str>,
    stop: CancellationToken,
    mut idle: watch::Receiver<bool>,
    deliver: mpsc::Sender<Fetched>,
) {
    let mut conn = None;
    let mut failures = 0;
    // Set when a blocking wait failed: Redis may have landed a job whose reply was lost.
    let mut reclaim_needed = false;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            changed = idle.wait_for(|idle| *idle) => if changed.is_err() { return },
        }
        if reclaim_needed && conn.is_some() {
            match ctx.reclaim_lost(&queue).await {
                Ok(()) => reclaim_needed = false,
                Err(error) => {
                    tracing::warn!(%error, queue = &*queue, "reclaiming lost fetches failed; retrying")
                }
            }
        }
        let result = match &mut conn {
            Some(conn) => {
                ctx.broker
                    .fetch_blocking(conn, &queue, &ctx.worker_id, BLOCK)
                    .await
            }
            None => ctx.broker.blocking_connection().await.map(|c| {
                conn = Some(c);
                None
            }),
        };
        match result {
            Ok(Some(payload)) => {
                failures = 0;
                ctx.held.hold_landed(&queue, &payload);
                let job = Fetched {
                    queue: queue.clone(),
                    suspect: false,
                    field: None,
                    payload,
                };
                if deliver.send(job).await.is_err() {
                    return;
                }
            }
            Ok(None) => failures = 0,
            Err(error) => {
                conn = None;
                failures += 1;
                reclaim_needed = true;
                tracing::warn!(%error, queue = &*queue, "waiting for jobs failed; reconnecting");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(RECONNECT.delay(failures)) => {}
                }
            }
        }
        if stop.is_cancelled() {
            return;
        }
    }
}
