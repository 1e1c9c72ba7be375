//! Views of the queues for operators, dashboards, command-line tools and tests: what each
//! queue holds (here), its jobs one by one (`jobs`), and the repairs an operator makes
//! (`repair`).

mod jobs;
mod partitioned;
mod repair;

use partitioned::each_part;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use jobs::{JobInfo, JobState, Order};
pub(crate) use repair::CANCELLED_KEPT;
pub use repair::{CANCELLED_ERROR, Cancelled, PurgeState};

use crate::client::Client;
use crate::envelope::JobId;
use crate::error::Error;
use crate::periodic::PeriodicInfo;
use crate::rate_limit::RateLimit;

/// How many jobs a queue holds in each state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct QueueStats {
    /// Ready to run.
    pub pending: u64,
    /// Ready to run, but in flight on two workers that died: each runs with no other suspect
    /// beside it on its worker, until it succeeds or a third death buries it as poison.
    pub suspects: u64,
    /// Ready to run, but held back by their task's own limits (`#[task(rate = "..")]`,
    /// `max_running`): they start as soon as the limits allow.
    pub waiting: u64,
    /// Waiting for their time (delayed with `.delay` or `.at`).
    pub scheduled: u64,
    /// Failed, waiting for their next attempt.
    pub retry: u64,
    /// Dead: out of attempts, or unable to run.
    pub dead: u64,
    /// In flight on a worker.
    pub running: u64,
    /// Workers serving the queue.
    pub workers: u64,
    /// Whether an operator paused the queue.
    pub paused: bool,
}

impl QueueStats {
    /// The counts of queue `name` as the CLI's `--json` and the dashboard's live refresh
    /// print them (suspects and jobs waiting for their task's limits counted as pending, the
    /// latter also on their own).
    #[cfg(any(feature = "cli", feature = "dashboard"))]
    pub(crate) fn to_json(self, name: &str) -> serde_json::Value {
        serde_json::json!({
            "queue": name,
            "pending": self.pending + self.suspects + self.waiting,
            "waiting": self.waiting,
            "scheduled": self.scheduled,
            "retry": self.retry,
            "running": self.running,
            "dead": self.dead,
            "workers": self.workers,
            "paused": self.paused,
        })
    }
}

/// A worker serving a queue, as its registration in Redis tells.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// The worker's id: `<host>-<pid>-<random>`.
    pub id: String,
    /// The host it runs on, read from its id.
    pub host: String,
    /// Its process id, read from its id.
    pub pid: Option<u32>,
    /// When it last showed it is alive (Redis server clock).
    pub last_heartbeat: SystemTime,
    /// How many jobs of the queue it has in flight.
    pub in_flight: u64,
}

impl WorkerInfo {
    fn new(id: String, last_heartbeat_ms: u64, in_flight: u64) -> WorkerInfo {
        // `host-pid-random`; the host may hold dashes itself.
        let mut parts = id.rsplitn(3, '-');
        let (_random, pid, host) = (parts.next(), parts.next(), parts.next());
        WorkerInfo {
            host: host.unwrap_or_default().to_owned(),
            pid: pid.and_then(|pid| pid.parse().ok()),
            id,
            last_heartbeat: UNIX_EPOCH + Duration::from_millis(last_heartbeat_ms),
            in_flight,
        }
    }
}

/// A job in a queue's dead set.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeadJob {
    /// The job's id (a fresh one when the payload was not a job).
    pub id: JobId,
    /// The task it was for, when the payload named one.
    pub task: Option<String>,
    /// Why it died.
    pub error: String,
    /// How many times it ran.
    pub attempts: u32,
    /// When it died.
    pub died_at: SystemTime,
    /// The job as it was stored: its envelope, or the raw payload that was not one.
    pub payload: String,
}

/// One queue, seen through a client: `client.queue("emails")`.
#[derive(Debug, Clone)]
pub struct Queue {
    client: Client,
    name: String,
    /// Whether this is one Redis queue of a partitioned queue (a partition, or the queue
    /// itself as a member): its views never fan out.
    member: bool,
}

impl Client {
    /// The names of every queue of this client's prefix that a job was enqueued to or a worker
    /// served (by any binary of this version), sorted.
    /// A partitioned queue is listed once, by its name (not its partitions').
    pub async fn queues(&self) -> Result<Vec<String>, Error> {
        let mut queues: Vec<String> = self
            .reads()
            .known_queues()
            .await?
            .iter()
            .map(|queue| self.partitions.queue_of(queue).to_owned())
            .collect();
        queues.sort();
        queues.dedup();
        Ok(queues)
    }

    /// Every periodic schedule a worker of this prefix keeps or kept, queue by queue, with its
    /// last tick and its next. A schedule removed from the code stays listed until
    /// [`Queue::forget_periodic`] removes it.
    pub async fn periodic_jobs(&self) -> Result<Vec<PeriodicInfo>, Error> {
        let mut all = Vec::new();
        for queue in self.queues().await? {
            all.extend(self.queue(&queue).periodic_jobs().await?);
        }
        Ok(all)
    }

    /// Cancels the job `id`, wherever it is queued or runs (see [`Queue::cancel`]).
    pub async fn cancel(&self, id: &JobId) -> Result<Cancelled, Error> {
        for queue in self.queues().await? {
            match self.queue(&queue).cancel(id).await? {
                Cancelled::NotFound => {}
                done => return Ok(done),
            }
        }
        Ok(Cancelled::NotFound)
    }

    /// The job `id`, looked for in every queue (see [`Queue::job`]).
    pub async fn find_job(&self, id: &JobId) -> Result<Option<JobInfo>, Error> {
        for queue in self.queues().await? {
            if let Some(job) = self.queue(&queue).job(id).await? {
                return Ok(Some(job));
            }
        }
        Ok(None)
    }

    /// A view of the queue `name`.
    pub fn queue(&self, name: &str) -> Queue {
        Queue {
            client: self.clone(),
            name: name.to_owned(),
            member: false,
        }
    }
}

impl Queue {
    /// How many jobs the queue holds in each state.
    pub async fn stats(&self) -> Result<QueueStats, Error> {
        if let Some(parts) = self.partitions() {
            let all = each_part!(parts, |part| part.stats_here());
            return Ok(partitioned::add_stats(all));
        }
        self.stats_here().await
    }

    /// [`Queue::stats`] of one Redis queue (a partition, or a queue without partitions).
    pub(super) async fn stats_here(&self) -> Result<QueueStats, Error> {
        let broker = self.client.reads();
        let workers = self.workers_here().await?;
        Ok(QueueStats {
            pending: broker.pending_len(&self.name).await?,
            suspects: broker.suspects_len(&self.name).await?,
            waiting: broker.waiting_len(&self.name).await?,
            scheduled: broker.scheduled_len(&self.name).await?,
            retry: broker.retry_len(&self.name).await?,
            dead: broker.dead_len(&self.name).await?,
            running: workers.iter().map(|w| w.in_flight).sum(),
            workers: workers.len() as u64,
            paused: broker.is_paused(&self.name).await?,
        })
    }

    /// The workers serving this queue, with the jobs each has in flight from it.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, Error> {
        if let Some(parts) = self.partitions() {
            let all = each_part!(parts, |part| part.workers_here());
            return Ok(partitioned::merge_workers(all));
        }
        self.workers_here().await
    }

    /// [`Queue::workers`] of one Redis queue (a partition, or a queue without partitions).
    pub(super) async fn workers_here(&self) -> Result<Vec<WorkerInfo>, Error> {
        let broker = self.client.reads();
        let mut workers = Vec::new();
        for (id, beat) in broker.workers_of(&self.name).await? {
            let in_flight = broker.inflight_len(&self.name, &id).await?;
            workers.push(WorkerInfo::new(id, beat, in_flight));
        }
        Ok(workers)
    }

    /// How many jobs the worker `worker_id` has in flight from this queue.
    pub async fn in_flight_on(&self, worker_id: &str) -> Result<u64, Error> {
        if let Some(parts) = self.partitions() {
            let all = each_part!(parts, |part| part.in_flight_on_here(worker_id));
            return Ok(all.into_iter().sum());
        }
        self.in_flight_on_here(worker_id).await
    }

    /// [`Queue::in_flight_on`] of one Redis queue (a partition, or a queue without partitions).
    pub(super) async fn in_flight_on_here(&self, worker_id: &str) -> Result<u64, Error> {
        self.client
            .reads()
            .inflight_len(&self.name, worker_id)
            .await
    }

    /// The name of the queue.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The dead jobs of this queue, most recent first, at most `limit`: the short form of
    /// [`Queue::jobs`] with [`JobState::Dead`].
    pub async fn dead_jobs(&self, limit: usize) -> Result<Vec<DeadJob>, Error> {
        if let Some(parts) = self.partitions() {
            let all = each_part!(parts, |part| part.dead_jobs_here(limit));
            let mut dead: Vec<DeadJob> = all.into_iter().flatten().collect();
            dead.sort_by_key(|job| std::cmp::Reverse(job.died_at));
            dead.truncate(limit);
            return Ok(dead);
        }
        self.dead_jobs_here(limit).await
    }

    /// [`Queue::dead_jobs`] of one Redis queue (a partition, or a queue without partitions).
    pub(super) async fn dead_jobs_here(&self, limit: usize) -> Result<Vec<DeadJob>, Error> {
        let dead = self
            .jobs_here(JobState::Dead, Order::NewestFirst, 0, limit)
            .await?;
        Ok(dead
            .into_iter()
            .map(|info| DeadJob {
                id: info.id,
                task: info.task,
                error: info.last_error.unwrap_or_default(),
                attempts: info.attempts,
                died_at: info.died_at.unwrap_or(UNIX_EPOCH),
                payload: info.payload,
            })
            .collect())
    }

    /// The periodic schedules of this queue (see [`Client::periodic_jobs`]), by name.
    pub async fn periodic_jobs(&self) -> Result<Vec<PeriodicInfo>, Error> {
        if let Some(parts) = self.partitions() {
            let all = each_part!(parts, |part| part.periodic_jobs_here());
            return Ok(all.into_iter().flatten().collect());
        }
        self.periodic_jobs_here().await
    }

    /// [`Queue::periodic_jobs`] of one Redis queue (a partition, or a queue without partitions).
    pub(super) async fn periodic_jobs_here(&self) -> Result<Vec<PeriodicInfo>, Error> {
        let schedules = self.client.reads().periodic_of(&self.name).await?;
        let mut infos: Vec<PeriodicInfo> = schedules
            .into_iter()
            .map(|(name, definition, last)| {
                let definition: serde_json::Value =
                    serde_json::from_str(&definition).unwrap_or_default();
                let text = |key: &str| definition[key].as_str().unwrap_or_default().to_owned();
                let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
                PeriodicInfo {
                    name,
                    queue: self.name.clone(),
                    task: text("task"),
                    cron: text("cron"),
                    tz: text("tz"),
                    missed: text("missed"),
                    last_tick: last.map(at),
                    next_tick: definition["next_ms"].as_u64().map(at),
                }
            })
            .collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(infos)
    }

    /// Removes the periodic schedule `name` from this queue's records (a schedule no worker
    /// keeps any more); whether it was there. A worker that still keeps it records it again.
    pub async fn forget_periodic(&self, name: &str) -> Result<bool, Error> {
        if let Some(parts) = self.partitions() {
            let all = each_part!(parts, |part| part.forget_periodic_here(name));
            return Ok(all.into_iter().any(|forgot| forgot));
        }
        self.forget_periodic_here(name).await
    }

    /// [`Queue::forget_periodic`] of one Redis queue (a partition, or a queue without partitions).
    pub(super) async fn forget_periodic_here(&self, name: &str) -> Result<bool, Error> {
        self.client.broker.forget_periodic(&self.name, name).await
    }

    /// Limits how many jobs of this queue start per period, across every worker (see
    /// [`RateLimit`]); the jobs over the limit wait in the queue. Kept in Redis: it holds for
    /// workers started later too, until [`Queue::clear_rate_limit`].
    pub async fn set_rate_limit(&self, limit: RateLimit) -> Result<(), Error> {
        if let Some(parts) = self.partitions() {
            each_part!(parts, |part| part.set_rate_limit_here(limit));
            return Ok(());
        }
        self.set_rate_limit_here(limit).await
    }

    /// [`Queue::set_rate_limit`] of one Redis queue (a partition, or a queue without partitions).
    pub(super) async fn set_rate_limit_here(&self, limit: RateLimit) -> Result<(), Error> {
        self.check_queue()?;
        let parts = (limit.jobs(), limit.per_ms(), limit.burst_size());
        self.client
            .broker
            .set_rate_limit(&self.name, Some(parts))
            .await
    }

    /// Removes this queue's rate limit.
    pub async fn clear_rate_limit(&self) -> Result<(), Error> {
        if let Some(parts) = self.partitions() {
            each_part!(parts, |part| part.clear_rate_limit_here());
            return Ok(());
        }
        self.clear_rate_limit_here().await
    }

    /// [`Queue::clear_rate_limit`] of one Redis queue (a partition, or a queue without partitions).
    pub(super) async fn clear_rate_limit_here(&self) -> Result<(), Error> {
        self.check_queue()?;
        self.client.broker.set_rate_limit(&self.name, None).await
    }

    /// This queue's rate limit, if it has one.
    pub async fn rate_limit(&self) -> Result<Option<RateLimit>, Error> {
        if let Some(parts) = self.partitions() {
            let all = each_part!(parts, |part| part.rate_limit_here());
            return Ok(all.into_iter().flatten().next());
        }
        self.rate_limit_here().await
    }

    /// [`Queue::rate_limit`] of one Redis queue (a partition, or a queue without partitions).
    pub(super) async fn rate_limit_here(&self) -> Result<Option<RateLimit>, Error> {
        let limit = self.client.reads().rate_limit(&self.name).await?;
        Ok(limit.map(|(jobs, per_ms, burst)| RateLimit::from_parts(jobs, per_ms, burst)))
    }

    fn check_queue(&self) -> Result<(), Error> {
        crate::enqueue::check_queue_name(&self.name)
    }

    /// Appends `payload` to the queue as it is, with no checks. For repair tools, and for tests
    /// that show what a worker does with a payload that is not a job.
    pub async fn push_raw(&self, payload: &[u8]) -> Result<(), Error> {
        if let Some(parts) = self.partitions() {
            let _ = parts;
            let target = self.client.partitions.route(&self.name, None).to_owned();
            return self.client.queue(&target).push_raw_here(payload).await;
        }
        self.push_raw_here(payload).await
    }

    /// [`Queue::push_raw`] of one Redis queue (a partition, or a queue without partitions).
    pub(super) async fn push_raw_here(&self, payload: &[u8]) -> Result<(), Error> {
        self.client.broker.push_raw(&self.name, payload).await
    }
}

/// How many jobs of a queue succeeded and how many attempts failed (retried or buried).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Counts {
    /// Jobs that succeeded.
    pub succeeded: u64,
    /// Attempts that failed: retried, or buried in the dead set.
    pub failed: u64,
}

/// A queue's throughput: counts over the last minute and hour, and minute by minute.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Throughput {
    /// Over the last 60 seconds.
    pub last_minute: Counts,
    /// Over the last 60 minutes (the current one included).
    pub last_hour: Counts,
    /// The last 60 minutes, oldest first: each minute's start and its counts.
    pub per_minute: Vec<(SystemTime, Counts)>,
}

impl Queue {
    /// How many jobs succeeded and failed over the last minute and hour, from counters the
    /// workers keep in Redis per second and per minute (by their clocks), for an hour.
    pub async fn throughput(&self) -> Result<Throughput, Error> {
        if let Some(parts) = self.partitions() {
            let all = each_part!(parts, |part| part.throughput_here());
            if let Some(sum) = partitioned::add_throughput(all) {
                return Ok(sum);
            }
        }
        self.throughput_here().await
    }

    /// [`Queue::throughput`] of one Redis queue (a partition, or a queue without partitions).
    pub(super) async fn throughput_here(&self) -> Result<Throughput, Error> {
        let now_s = crate::clock::now_ms() / 1000;
        let (minute, second) = (now_s / 60, now_s % 60);
        let minutes: Vec<u64> = (minute - 59..=minute).collect();
        let hashes = self.client.reads().counts(&self.name, &minutes).await?;
        let field = |hash: &std::collections::HashMap<String, u64>, name: &str| {
            hash.get(name).copied().unwrap_or(0)
        };
        let per_minute: Vec<(SystemTime, Counts)> = minutes
            .iter()
            .zip(&hashes)
            .map(|(minute, hash)| {
                let start = UNIX_EPOCH + Duration::from_secs(minute * 60);
                let counts = Counts {
                    succeeded: field(hash, "done"),
                    failed: field(hash, "failed"),
                };
                (start, counts)
            })
            .collect();
        // The last 60 seconds: this minute up to now, and the previous one after this second.
        let (previous, current) = (&hashes[58], &hashes[59]);
        let mut last_minute = Counts::default();
        for s in 0..60 {
            let hash = if s <= second { current } else { previous };
            last_minute.succeeded += field(hash, &format!("done:{s}"));
            last_minute.failed += field(hash, &format!("failed:{s}"));
        }
        let last_hour = per_minute
            .iter()
            .fold(Counts::default(), |sum, (_, c)| Counts {
                succeeded: sum.succeeded + c.succeeded,
                failed: sum.failed + c.failed,
            });
        Ok(Throughput {
            last_minute,
            last_hour,
            per_minute,
        })
    }
}
