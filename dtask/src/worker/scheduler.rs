//! The scheduler: keeps this worker's periodic schedules. At each tick (on the Redis server's
//! clock) it claims the tick in Redis and, if it was first, the same script enqueues the job;
//! every worker with the schedule does the same, so each tick fires once whichever workers are
//! up. After a time with no worker, the ticks missed are claimed as one: one job, or none when
//! the schedule skips missed ticks and the latest is more than a minute old.

use std::collections::BTreeMap;
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
/// How long it waits after Redis failed it.
const AFTER_ERROR: Duration = Duration::from_secs(1);

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
            let job = periodic.job.map_err(|error| {
                Error::Config(format!("periodic job `{}`: {error}", periodic.name))
            })?;
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

    /// Keeps the schedules until `stop`.
    pub(crate) async fn run(self, stop: CancellationToken) {
        if self.is_empty() {
            return;
        }
        self.define_all().await;
        loop {
            let pause = self.round().await;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
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

    /// Claims every tick that has fallen; how long to sleep before the next one.
    async fn round(&self) -> Duration {
        let broker = &self.client.broker;
        let now = match broker.server_time_ms().await {
            Ok(now) => now,
            Err(error) => {
                tracing::warn!(%error, "periodic jobs: reading the server's clock failed; will retry");
                return AFTER_ERROR;
            }
        };
        let started = tokio::time::Instant::now();
        let mut wake = now + MAX_SLEEP_MS;
        for (queue, kept) in &self.by_queue {
            match self.round_of(queue, kept, now).await {
                Ok(next) => wake = wake.min(next),
                Err(error) => {
                    // The other queues' schedules go on.
                    tracing::warn!(%error, queue, "periodic jobs of this queue: claiming ticks failed; will retry");
                    wake = wake.min(now + AFTER_ERROR.as_millis() as u64);
                }
            }
        }
        Duration::from_millis(wake.saturating_sub(now)).saturating_sub(started.elapsed())
    }

    /// Claims the fallen ticks of `queue`'s schedules at server time `now`; the next tick due.
    async fn round_of(&self, queue: &str, kept: &[Kept], now: u64) -> Result<u64, Error> {
        let broker = &self.client.broker;
        let names: Vec<&str> = kept.iter().map(|item| item.name.as_str()).collect();
        let lasts = broker.last_ticks(queue, &names).await?;
        let mut wake = now + MAX_SLEEP_MS;
        for (item, last) in kept.iter().zip(lasts) {
            // A schedule seen for the first time starts now: nothing before it was missed.
            // Marking its start claims `now` (not a tick) without a job.
            let Some(last) = last else {
                let next = item.schedule.next_after(now);
                broker
                    .claim_tick(queue, &item.name, now, &item.definition(next), None)
                    .await?;
                if let Some(next) = next {
                    wake = wake.min(next);
                }
                continue;
            };
            let Some(due) = item.schedule.next_after(last) else {
                continue; // no tick ever again
            };
            if due > now {
                wake = wake.min(due);
                continue;
            }
            // One claim for every tick fallen since the last: the latest stands for them all.
            let tick = item
                .schedule
                .latest_at_or_before(now)
                .unwrap_or(due)
                .max(due);
            let next = item.schedule.next_after(tick);
            if let Some(next) = next {
                wake = wake.min(next);
            }
            let fire = now - tick <= ON_TIME_MS || item.missed == Missed::FireOnce;
            let job = if fire {
                self.payload(item, queue, tick, now)
            } else {
                None
            };
            let definition = item.definition(next);
            let claim = broker
                .claim_tick(
                    queue,
                    &item.name,
                    tick,
                    &definition,
                    job.as_ref().map(|(_, payload)| payload.as_str()),
                )
                .await?;
            match claim {
                Claim::Fired => {
                    crate::metrics::enqueued(queue, item.job.info.name, 1);
                    let (id, _) = job.as_ref().expect("a fired tick has a job");
                    tracing::info!(queue, schedule = %item.name, tick, job_id = %id, late_ms = now - tick, "periodic job enqueued");
                }
                Claim::Skipped => {
                    tracing::info!(queue, schedule = %item.name, tick, "periodic tick skipped (missed while no worker ran it)");
                }
                Claim::Taken => {}
                Claim::Early(in_ms) => wake = wake.min(now + in_ms),
            }
        }
        Ok(wake)
    }

    /// The job of `item`'s `tick`: its id and payload; None (the tick is then claimed without
    /// a job, so that it is not tried again and again) when it cannot be made.
    fn payload(&self, item: &Kept, queue: &str, tick: u64, now: u64) -> Option<(String, String)> {
        let job = NewPayload {
            info: item.job.info,
            queue,
            retries: item.job.retries,
            args: item.job.args.clone(),
            enqueued_at_ms: now,
            trace: &[],
            headers: vec![
                (PERIODIC_HEADER, item.name.clone()),
                (TICK_HEADER, tick.to_string()),
            ],
            id: None,
        };
        match job.encode(&self.client) {
            Ok((id, payload)) => Some((id.to_string(), payload)),
            Err(error) => {
                tracing::error!(%error, queue, schedule = %item.name, tick, "periodic job refused; this tick enqueues nothing");
                None
            }
        }
    }
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
