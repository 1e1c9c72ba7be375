//! The fetcher: takes jobs from the queues, in strict priority order, as fast as free slots
//! allow, and hands each to the executor in a task of its own.
//!
//! When a queue is deep, one script moves up to one batch of jobs per round trip. When every
//! queue is empty, one waiter per queue blocks on its own connection (`BLMOVE`), so an idle
//! worker starts a new job within milliseconds without polling; what a waiter lands is adopted
//! into the in-flight hash under a lease at once, like a fetched job.
//!
//! A queue that fails (a broken key, a denied command, its cluster node down) is set aside with
//! backoff while the others go on: a fault in one queue never slows or strands another.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Context;
use super::executor;
use crate::backoff::RECONNECT;
use crate::broker::Leased;

/// How long one blocking wait lasts at most; the waiters check for shutdown between waits.
const BLOCK: Duration = Duration::from_secs(1);

/// How long one blocking wait lasts: [`BLOCK`], and under half the lease, so that a wait a worker
/// sent just before it froze has ended before anyone can take the worker for dead. (Else the
/// wait, still blocked inside Redis, could take a job the recovery just returned to the queue
/// into the landing list of a worker no longer registered.)
fn block_time(lease: Duration) -> Duration {
    BLOCK.min(lease / 2)
}
/// How long past [`BLOCK`] a blocking wait may go unanswered before its connection is taken
/// for dead and replaced.
const BLOCK_MARGIN: Duration = Duration::from_secs(3);
/// How often a waiter looks whether its paused queue was resumed: a resumed queue runs jobs
/// again within this time on an idle worker (a busy one fetches from it at its next round).
const PAUSED_CHECK: Duration = Duration::from_millis(500);
/// How often a waiter looks whether its queue's runs waiting for their settle are fewer than
/// the concurrency again.
const SETTLING_CHECK: Duration = Duration::from_millis(50);
/// How long an idle fetcher waits for a waiter before it polls the queues itself.
const IDLE_POLL: Duration = Duration::from_secs(5);

/// A job moved in flight on this worker: its queue, its lease, and its payload.
pub(crate) struct Fetched {
    pub(crate) queue: Arc<str>,
    /// Whether it is a suspect (in flight on two dead workers): the only one on this worker.
    pub(crate) suspect: bool,
    /// The lease of this run: every settle presents it.
    pub(crate) lease: String,
    pub(crate) payload: Vec<u8>,
    /// Whether the fetch already admitted it under its task's limits (it came from the task's
    /// waiting set): it starts without asking again.
    pub(crate) admitted: bool,
}

impl Fetched {
    fn new(queue: &Arc<str>, job: Leased, suspect: bool, admitted: bool) -> Fetched {
        Fetched {
            queue: queue.clone(),
            suspect,
            lease: job.lease,
            payload: job.payload,
            admitted,
        }
    }
}

/// How often an idle worker looks again at jobs waiting for a run of their task to end
/// (`max_running`) on another worker; a run ending on this worker wakes it at once.
const SLOT_POLL: Duration = Duration::from_millis(50);

/// How one queue has been answering the fetcher.
#[derive(Default)]
struct QueueHealth {
    failures: u32,
    /// Set aside until then after a failure.
    retry_at: Option<Instant>,
    /// Set when a fetch failed: its reply may have been lost after Redis ran it.
    reclaim_needed: bool,
    /// Not fetched from until then: its rate limit is spent (its jobs wait in the queue).
    rate_until: Option<Instant>,
    /// Fetched from again by then, if the worker is idle: jobs wait for their tasks' limits.
    limits_at: Option<Instant>,
}

pub(crate) struct Fetcher {
    ctx: Arc<Context>,
    slots: Arc<Semaphore>,
    jobs: TaskTracker,
    abandon: CancellationToken,
    health: Vec<QueueHealth>,
    /// Counts fetch rounds: which partition of a partitioned queue a round starts at.
    round: usize,
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
        let health = ctx
            .settings
            .queues
            .iter()
            .map(|_| QueueHealth::default())
            .collect();
        // Workers start their rounds of a partitioned queue at different partitions.
        let round = {
            use std::hash::{BuildHasher, Hasher};
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write(ctx.worker_id.as_bytes());
            hasher.finish() as usize
        };
        Fetcher {
            round,
            ctx,
            slots: Arc::new(Semaphore::new(slots)),
            jobs,
            abandon,
            health,
        }
    }

    /// Fetches and dispatches until `stop`; returns once the blocking waiters are done too, so
    /// that nothing moves into this worker's in-flight state afterwards.
    pub(crate) async fn run(mut self, stop: CancellationToken) {
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
            if batch.len() < slots.len() {
                let wanted = slots.len() - batch.len();
                batch.extend(self.fetch_round(wanted).await);
            }
            if batch.is_empty() {
                slots.truncate(1);
                let _ = idle_tx.send(true);
                let poll = self.next_poll();
                let woken = tokio::select! {
                    biased;
                    _ = stop.cancelled() => break,
                    job = delivered.recv() => job,
                    _ = self.ctx.wake_fetcher.notified() => None,
                    _ = tokio::time::sleep_until(poll) => None,
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

    /// When an idle fetcher looks at the queues again: after [`IDLE_POLL`], or sooner when a
    /// queue set aside after a failure is due for another try.
    fn next_poll(&self) -> Instant {
        let poll = Instant::now() + IDLE_POLL;
        self.health
            .iter()
            .filter_map(|health| health.retry_at.or(health.rate_until).or(health.limits_at))
            .fold(poll, Instant::min)
    }

    /// Fetches up to `wanted` jobs, draining the queues in priority order, and notes them as
    /// held. A queue that fails is set aside with backoff; the others are still fetched from,
    /// and what was fetched is always returned.
    async fn fetch_round(&mut self, wanted: usize) -> Vec<Fetched> {
        let ctx = self.ctx.clone();
        let now = Instant::now();
        let mut jobs = Vec::new();
        self.round = self.round.wrapping_add(1);
        for index in fetch_order(
            &ctx.settings.queue_groups,
            ctx.settings.queues.len(),
            self.round,
        ) {
            let queue = &ctx.settings.queues[index];
            let health = &mut self.health[index];
            if health.retry_at.is_some_and(|at| at > now)
                || health.rate_until.is_some_and(|at| at > now)
            {
                continue;
            }
            // A queue with as many runs whose acknowledgement failed (and is retried) as the
            // concurrency is set aside like a failing one until some are settled: its Redis
            // fails, and its runs' state must stay bounded.
            if ctx.settling_full(queue) {
                continue;
            }
            match fetch_queue(&ctx, queue, wanted - jobs.len(), health.reclaim_needed).await {
                Ok((fetched, rate_wait, limit_wait)) => {
                    let now = Instant::now();
                    *health = QueueHealth {
                        rate_until: rate_wait.map(|wait| now + wait),
                        limits_at: limit_wait.map(|wait| now + wait.unwrap_or(SLOT_POLL)),
                        ..QueueHealth::default()
                    };
                    jobs.extend(fetched);
                }
                Err(error) => {
                    health.failures += 1;
                    health.reclaim_needed = true;
                    let pause = RECONNECT.delay(health.failures);
                    health.retry_at = Some(Instant::now() + pause);
                    tracing::warn!(%error, queue, retry_in_ms = pause.as_millis() as u64, "fetching jobs failed; the other queues go on");
                }
            }
            if jobs.len() == wanted {
                break;
            }
        }
        jobs
    }

    fn dispatch(&self, job: Fetched, slot: OwnedSemaphorePermit) {
        let ctx = self.ctx.clone();
        let abandon = self.abandon.clone();
        self.jobs.spawn(async move {
            executor::execute(&ctx, job, &abandon, slot).await;
        });
    }
}

/// The order in which a fetch round visits the `count` queues: groups in priority order (a
/// queue, or a partitioned queue's partitions), each group's members starting at the one
/// `round` picks and going round. Without groups, each queue is its own.
fn fetch_order(groups: &[usize], count: usize, round: usize) -> Vec<usize> {
    let mut order = Vec::with_capacity(count);
    let mut start = 0;
    for &size in groups {
        let size = size.min(count.saturating_sub(start));
        if size == 0 {
            continue;
        }
        order.extend((0..size).map(|k| start + (round + k) % size));
        start += size;
    }
    order.extend(start..count);
    order
}

/// What one fetch from a queue gave: the jobs; how long until the queue's rate limit lets a
/// job start, when it held jobs back; whether jobs wait for their tasks' limits (and how long
/// until one may start by its task's rate, None when a run has to end first).
type QueueFetch = (Vec<Fetched>, Option<Duration>, Option<Option<Duration>>);

/// Fetches up to `wanted` jobs of `queue` (reclaiming first what earlier fetches lost, when
/// `reclaim`), and notes them as held, under the queue's fetch lock.
async fn fetch_queue(
    ctx: &Context,
    queue: &str,
    wanted: usize,
    reclaim: bool,
) -> Result<QueueFetch, crate::Error> {
    let _fetching = ctx.fetch_lock(queue).lock().await;
    if reclaim {
        ctx.reclaim_lost_locked(queue).await?;
    }
    let take_suspect = !ctx.suspect_in_flight.load(Ordering::Acquire);
    let taken = ctx
        .broker
        .fetch(queue, &ctx.worker_id, wanted, take_suspect)
        .await?;
    let (fetched, suspect, admitted) = (taken.jobs, taken.suspect, taken.admitted);
    if suspect {
        ctx.suspect_in_flight.store(true, Ordering::Release);
    }
    ctx.held
        .hold(queue, fetched.iter().map(|job| job.lease.as_str()));
    let queue: Arc<str> = Arc::from(queue);
    let fetched = fetched
        .into_iter()
        .enumerate()
        .map(|(i, job)| {
            let admitted = admitted.contains(&job.lease);
            Fetched::new(&queue, job, suspect && i == 0, admitted)
        })
        .collect();
    Ok((fetched, taken.rate_wait, taken.limit_wait))
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
    let block = block_time(ctx.settings.lease);
    // Set when a job may have landed unseen (a wait or an adoption failed): adopt what is in
    // the landing list, and reclaim what an adoption whose reply was lost leased.
    let mut recover = false;
    // Set when an adoption found the queue paused (the landed job went back).
    let mut paused = false;
    // Set when an adoption found the queue's rate limit spent (the landed job went back): the
    // wait until a job may start.
    let mut rate_wait: Option<Duration> = None;
    loop {
        // Blocking waits are for an idle worker; recovering what a failed wait may have landed
        // is not: a landed job must not wait in the landing list until the worker is idle.
        if !recover {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                changed = idle.wait_for(|idle| *idle) => if changed.is_err() { return },
            }
        }
        // A queue whose rate limit is spent is waited on again once a job may start (a little
        // later for some waiters than others, so that they do not all come at once), and only
        // if the worker is still idle then.
        if let Some(wait) = rate_wait.take().filter(|_| !recover) {
            let jitter = wait.mul_f64(rand::random::<f64>() * 0.2);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait + jitter) => {}
            }
            continue;
        }
        // A queue with as many runs waiting for their settle as the concurrency (its Redis
        // node slow or failing over) takes no new job until some are settled.
        if !recover && ctx.settling_full(&queue) {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(SETTLING_CHECK) => {}
            }
            continue;
        }
        // A paused queue is not waited on: it is looked at again every [`PAUSED_CHECK`].
        while paused && !recover {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(PAUSED_CHECK) => {}
            }
            let looked = tokio::select! {
                _ = stop.cancelled() => return,
                looked = ctx.broker.is_paused(&queue) => looked,
            };
            match looked {
                Ok(still) => paused = still,
                Err(error) => {
                    tracing::warn!(%error, queue = &*queue, "reading whether the queue is paused failed");
                }
            }
        }
        // Ok((whether a blocking wait was answered, the jobs adopted)).
        let step = async {
            if recover {
                ctx.reclaim_lost(&queue).await?;
            }
            let (waited, landed) = match &mut conn {
                // While recovering on a busy worker, adopt without waiting.
                Some(_) if recover && !*idle.borrow() => (false, false),
                Some(blocking) => {
                    let waited = ctx
                        .broker
                        .fetch_blocking(blocking, &queue, &ctx.worker_id, block)
                        .await;
                    if waited.is_err() {
                        conn = None;
                    }
                    (true, waited?)
                }
                None => {
                    conn = Some(ctx.broker.blocking_connection(block + BLOCK_MARGIN).await?);
                    (false, false)
                }
            };
            if landed || recover {
                return Ok((waited, Some(ctx.adopt_landed(&queue).await?)));
            }
            Ok::<_, crate::Error>((waited, None))
        };
        let outcome = tokio::select! {
            // A wait cut short here leaves at most a landed job behind: the worker hands its
            // landing list back at shutdown, like its in-flight hash.
            _ = stop.cancelled() => return,
            outcome = step => outcome,
        };
        match outcome {
            Ok((waited, taken)) => {
                // Only an answered wait shows the queue healthy: connecting and adopting also
                // work when the queue's key is broken, and must not reset the backoff.
                if waited {
                    failures = 0;
                }
                recover = false;
                let jobs = match taken {
                    Some(taken) => {
                        paused = taken.paused;
                        rate_wait = taken.rate_wait;
                        taken.jobs
                    }
                    None => Vec::new(),
                };
                for job in jobs {
                    if deliver
                        .send(Fetched::new(&queue, job, false, false))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
            Err(error) => {
                failures += 1;
                recover = true;
                tracing::warn!(%error, queue = &*queue, "waiting for jobs failed; reconnecting");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(RECONNECT.delay(failures)) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fetch_order;

    #[test]
    fn rounds_keep_priority_and_go_round_a_partitioned_queue() {
        // A queue, a queue of 3 partitions, a queue: priority stays, partitions take turns.
        let orders: Vec<Vec<usize>> = (0..4)
            .map(|round| fetch_order(&[1, 3, 1], 5, round))
            .collect();
        assert_eq!(orders[0], [0, 1, 2, 3, 4]);
        assert_eq!(orders[1], [0, 2, 3, 1, 4]);
        assert_eq!(orders[2], [0, 3, 1, 2, 4]);
        assert_eq!(orders[3], [0, 1, 2, 3, 4]);
        // Without groups, every queue is its own.
        assert_eq!(fetch_order(&[], 3, 7), [0, 1, 2]);
    }
}
