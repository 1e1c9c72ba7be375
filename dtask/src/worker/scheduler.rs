//! The scheduler: keeps this worker's periodic schedules. At each tick (on the Redis server's
//! clock) it claims the tick in Redis and, if it was first, the same script enqueues the job;
//! every worker with the schedule does the same, so each tick fires once whichever workers are
//! up. After a time with no worker (or while the queue was paused), the ticks missed are
//! claimed as one: one job, or none when the schedule skips missed ticks and the latest is more
//! than a minute old. Each queue's schedules are kept by a task of their own, on the clock of
//! that queue's Redis node.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::broker::Claim;
use crate::client::Client;
use crate::enqueue::NewPayload;
use crate::error::Error;
use crate::periodic::{Missed, Periodic, PeriodicJob, Schedule};
use crate::registry::Registry;

/// A tick claimed this long after it fell is still on time (a schedule that skips missed ticks
/// fires it).
const ON_TIME_MS: u64 = 60_000;
/// The longest the scheduler sleeps between two looks at the server's clock and the ticks.
const MAX_SLEEP_MS: u64 = 60_000;
/// How long it waits after Redis failed it, doubling with each failure in a row...
const AFTER_ERROR: Duration = Duration::from_secs(1);
/// ... up to this.
const MAX_AFTER_ERROR: Duration = Duration::from_secs(30);

/// One schedule this worker keeps.
struct Kept {
    name: String,
    cron: String,
    tz: Option<String>,
    missed: Missed,
    schedule: Schedule,
    job: PeriodicJob,
}

/// The schedules of one worker and the client their jobs are enqueued with.
pub(crate) struct Scheduler {
    client: Client,
    /// By queue: each queue's ticks are read and claimed under its own keys.
    by_queue: BTreeMap<String, Vec<Kept>>,
}

impl Scheduler {
    /// The schedules given to the worker and those of the `#[task(cron = "..")]` tasks of
    /// `queues`, checked: a bad pattern or zone, arguments that did not encode, or two
    /// schedules of one name in one queue are errors.
    pub(crate) fn new(
        client: Client,
        given: Vec<Periodic>,
        registry: &Registry,
        queues: &[String],
    ) -> Result<Scheduler, Error> {
        let declared = registry
            .scheduled(queues)
            .into_iter()
            .map(|info| Periodic::of_task(info, info.cron.unwrap_or_default(), info.tz));
        let mut by_queue: BTreeMap<String, Vec<Kept>> = BTreeMap::new();
        for periodic in given.into_iter().chain(declared) {
            let schedule = periodic.schedule()?;
            if schedule.next_after(crate::clock::now_ms()).is_none() {
                return Err(Error::Config(format!(
                    "periodic job `{}`: the pattern `{}` has no tick in the future",
                    periodic.name, periodic.cron
                )));
            }
            let mut job = periodic.job.map_err(|error| {
                Error::Config(format!("periodic job `{}`: {error}", periodic.name))
            })?;
            // A partitioned queue's schedule is kept, and its jobs enqueued, in one partition
            // (its ticks are claimed in the same step as the job is queued).
            job.queue = client
                .partitions
                .route(&job.queue, Some(crate::partition::key_hash(&periodic.name)))
                .to_owned();
            let kept = by_queue.entry(job.queue.clone()).or_default();
            if kept.iter().any(|other| other.name == periodic.name) {
                return Err(Error::Config(format!(
                    "two periodic jobs are named `{}` in queue `{}`: give each its own name",
                    periodic.name, job.queue
                )));
            }
            kept.push(Kept {
                name: periodic.name,
                cron: periodic.cron,
                tz: periodic.tz,
                missed: periodic.missed,
                schedule,
                job,
            });
        }
        Ok(Scheduler { client, by_queue })
    }

    /// Whether there is nothing to keep.
    pub(crate) fn is_empty(&self) -> bool {
        self.by_queue.is_empty()
    }

    /// Keeps the schedules until `stop`: each queue's in a task of its own, so that a queue
    /// whose node is slow or down delays no other queue's ticks.
    pub(crate) async fn run(self, stop: CancellationToken) {
        if self.is_empty() {
            return;
        }
        self.define_all().await;
        let loops: Vec<_> = self
            .by_queue
            .into_iter()
            .map(|(queue, kept)| {
                let keeper = QueueKeeper {
                    client: self.client.clone(),
                    queue,
                    kept,
                    given_up: HashMap::new(),
                };
                tokio::spawn(keeper.run(stop.clone()))
            })
            .collect();
        for keeper in loops {
            let _ = keeper.await;
        }
    }

    /// Records every schedule's definition, and its queue, for operators (best effort).
    async fn define_all(&self) {
        // Operators find schedules queue by queue, through the prefix's queue registry.
        self.client
            .broker
            .register_new_queues(self.by_queue.keys().map(String::as_str))
            .await;
        let now = crate::clock::now_ms();
        for (queue, kept) in &self.by_queue {
            for item in kept {
                let definition = item.definition(item.schedule.next_after(now));
                if let Err(error) = self
                    .client
                    .broker
                    .define_periodic(queue, &item.name, &definition)
                    .await
                {
                    tracing::warn!(%error, queue, schedule = %item.name, "recording a periodic schedule failed");
                }
            }
        }
    }
}

/// The schedules of one queue, kept by one task.
struct QueueKeeper {
    client: Client,
    queue: String,
    kept: Vec<Kept>,
    /// The tick, by schedule, whose job this worker could not make (its enqueue middleware
    /// refused it, say): left for another worker to claim, not tried again here.
    given_up: HashMap<String, u64>,
}

impl QueueKeeper {
    async fn run(mut self, stop: CancellationToken) {
        let mut failures = 0u32;
        loop {
            let pause = match self.round().await {
                Ok(pause) => {
                    failures = 0;
                    pause
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let pause = AFTER_ERROR
                        .saturating_mul(1 << failures.min(5))
                        .min(MAX_AFTER_ERROR);
                    tracing::warn!(%error, queue = %self.queue, retry_in_ms = pause.as_millis() as u64, "periodic jobs of this queue: claiming ticks failed; will retry");
                    pause
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Claims the ticks that have fallen, on the clock of the queue's Redis node; how long to
    /// sleep before the next one.
    async fn round(&mut self) -> Result<Duration, Error> {
        let broker = &self.client.broker;
        let queue = self.queue.as_str();
        let names: Vec<&str> = self.kept.iter().map(|item| item.name.as_str()).collect();
        let (now, lasts) = broker.periodic_state(queue, &names).await?;
        let started = tokio::time::Instant::now();
        let mut wake = now + MAX_SLEEP_MS;
        for (item, last) in self.kept.iter().zip(lasts) {
            // A schedule seen for the first time starts now: nothing before it was missed.
            // Its start is marked by claiming the millisecond before now, without a job.
            let Some(last) = last else {
                let next = item.schedule.next_after(now.saturating_sub(1));
                broker
                    .claim_tick(
                        queue,
                        &item.name,
                        now.saturating_sub(1),
                        &item.definition(next),
                        None,
                    )
                    .await?;
                wake = wake.min(next.unwrap_or(wake));
                continue;
            };
            let Some(due) = item.schedule.next_after(last) else {
                continue; // no tick ever again
            };
            if due > now {
                wake = wake.min(due);
                continue;
            }
            // One claim for every tick fallen since the last: the latest stands for them all
            // (and should the calendar find none, the present moment does: never one claim
            // per missed tick).
            let tick = item
                .schedule
                .latest_at_or_before(now)
                .unwrap_or(now)
                .max(due);
            let next = item.schedule.next_after(tick);
            wake = wake.min(next.unwrap_or(wake));
            if self.given_up.get(&item.name) == Some(&tick) {
                continue;
            }
            let fire = now - tick <= ON_TIME_MS || item.missed == Missed::FireOnce;
            let job = if fire {
                match payload(&self.client, item, queue, tick, now) {
                    Ok(job) => Some(job),
                    Err(error) => {
                        // Another worker (another version, in a rolling deploy) may make it.
                        tracing::error!(%error, queue, schedule = %item.name, tick, "cannot make this tick's periodic job; leaving the tick to other workers");
                        self.given_up.insert(item.name.clone(), tick);
                        continue;
                    }
                }
            } else {
                None
            };
            let claim = broker
                .claim_tick(
                    queue,
                    &item.name,
                    tick,
                    &item.definition(next),
                    job.as_ref().map(|(_, payload)| payload.as_str()),
                )
                .await?;
            match claim {
                Claim::Fired => {
                    crate::metrics::enqueued(queue, item.job.info.name, 1);
                    if let Some((id, _)) = &job {
                        tracing::info!(queue, schedule = %item.name, tick, job_id = %id, late_ms = now - tick, "periodic job enqueued");
                    }
                }
                Claim::Skipped => {
                    tracing::info!(queue, schedule = %item.name, tick, "periodic tick skipped: missed while no worker kept the schedule or the queue was paused, and more than a minute old");
                }
                Claim::Taken | Claim::Paused => {}
                Claim::Early(in_ms) => wake = wake.min(now + in_ms),
            }
        }
        Ok(Duration::from_millis(wake.saturating_sub(now)).saturating_sub(started.elapsed()))
    }
}

/// The job of `item`'s `tick`, enqueued by `client`: its id and payload.
fn payload(
    client: &Client,
    item: &Kept,
    queue: &str,
    tick: u64,
    now: u64,
) -> Result<(String, String), Error> {
    let job = NewPayload {
        info: item.job.info,
        queue,
        retries: item.job.retries,
        args: item.job.args.clone(),
        enqueued_at_ms: now,
        trace: &[],
        headers: [
            (PERIODIC_HEADER, item.name.clone()),
            (TICK_HEADER, tick.to_string()),
        ]
        .into_iter()
        .chain(item.job.headers.iter().cloned())
        .collect(),
        id: None,
    };
    let (id, payload) = job.encode(client)?;
    Ok((id.to_string(), payload))
}

/// The header naming the schedule that enqueued a job.
pub(crate) const PERIODIC_HEADER: &str = "dtask-periodic";
/// The header holding the tick (ms since the epoch) a periodic job was enqueued for.
pub(crate) const TICK_HEADER: &str = "dtask-tick";

impl Kept {
    /// The definition operators read: task, pattern, zone, policy, next tick.
    fn definition(&self, next: Option<u64>) -> String {
        json!({
            "task": self.job.info.name,
            "cron": self.cron,
            "tz": self.tz.as_deref().unwrap_or("UTC"),
            "missed": self.missed.as_str(),
            "next_ms": next,
        })
        .to_string()
    }
}
