//! Reading a queue's jobs: by state, page by page, and one job by id, each read into a
//! [`JobInfo`] (the envelope's fields, the time it is due or died, the worker holding it).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Queue, partitioned};
use crate::broker::{Purgeable, TimedState};
use crate::envelope::{self, DeadRecord, JobId};
use crate::error::Error;

/// Where a job stands in its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Ready to run.
    Pending,
    /// Waiting for its time (`.delay` or `.at`).
    Scheduled,
    /// Failed, waiting for its next attempt.
    Retry,
    /// In flight on a worker.
    Running,
    /// Out of attempts, or unable to run.
    Dead,
}

impl JobState {
    /// Every state, in the order a job goes through them.
    pub const ALL: [JobState; 5] = [
        JobState::Pending,
        JobState::Scheduled,
        JobState::Retry,
        JobState::Running,
        JobState::Dead,
    ];

    /// The state's name, as the CLI and the dashboard spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Scheduled => "scheduled",
            JobState::Retry => "retry",
            JobState::Running => "running",
            JobState::Dead => "dead",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = Error;
    fn from_str(text: &str) -> Result<JobState, Error> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown job state `{text}`: expected pending, scheduled, retry, running or dead"
                ))
            })
    }
}

/// Which end of a state a page starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// The job that has waited longest (or is due first, or died first) first.
    #[default]
    OldestFirst,
    /// The most recent first.
    NewestFirst,
}

/// One job as an operator sees it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobInfo {
    /// The job's id (empty when the payload is not a job and names none).
    pub id: JobId,
    /// Its task, when the payload names one.
    pub task: Option<String>,
    /// Its queue.
    pub queue: String,
    /// Where it stands.
    pub state: JobState,
    /// Its arguments as JSON, when the payload is a job.
    pub args: Option<serde_json::Value>,
    /// Attempts made so far.
    pub attempts: u32,
    /// The error of its last failed attempt, or why it died.
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub enqueued_at: Option<SystemTime>,
    /// When it is due (scheduled and retrying jobs).
    pub due_at: Option<SystemTime>,
    /// When it died (dead jobs).
    pub died_at: Option<SystemTime>,
    /// The worker running it (running jobs).
    pub worker: Option<String>,
    /// The job as stored: its envelope, or the raw payload that is not one (lossily read as
    /// UTF-8).
    pub payload: String,
    /// The payload's bytes, exactly as stored (what a repair must name to remove it).
    pub(crate) raw: Vec<u8>,
    /// Whether it waits in the suspects list rather than the pending list.
    pub(crate) suspect: bool,
    /// The task whose waiting set holds it (held back by that task's limits), if one does.
    pub(crate) waiting_for: Option<String>,
}

fn at_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl JobInfo {
    /// Reads a payload of `queue` in `state`.
    fn of_payload(queue: &str, state: JobState, payload: &[u8]) -> JobInfo {
        let text = String::from_utf8_lossy(payload).into_owned();
        match envelope::decode(payload) {
            Ok(job) => JobInfo {
                id: job.id,
                task: Some(job.task),
                queue: queue.to_owned(),
                state,
                args: serde_json::from_str(job.args.get()).ok(),
                attempts: job.attempt,
                last_error: job.last_error,
                enqueued_at: Some(at_ms(job.enqueued_at_ms)),
                due_at: None,
                died_at: None,
                worker: None,
                payload: text,
                raw: payload.to_vec(),
                suspect: false,
                waiting_for: None,
            },
            Err(_) => {
                let peek = envelope::peek(payload);
                JobInfo {
                    id: peek
                        .as_ref()
                        .and_then(|p| p.id.clone())
                        .unwrap_or_else(|| JobId::from("")),
                    task: peek
                        .as_ref()
                        .map(|p| p.task.clone())
                        .filter(|t| !t.is_empty()),
                    queue: queue.to_owned(),
                    state,
                    args: None,
                    attempts: 0,
                    last_error: None,
                    enqueued_at: peek.map(|p| at_ms(p.enqueued_at_ms)),
                    due_at: None,
                    died_at: None,
                    worker: None,
                    payload: text,
                    raw: payload.to_vec(),
                    suspect: false,
                    waiting_for: None,
                }
            }
        }
    }

    /// Reads a dead record of `queue`.
    pub(super) fn of_dead_record(queue: &str, record: &[u8]) -> JobInfo {
        match serde_json::from_slice::<DeadRecord>(record) {
            Ok(dead) => {
                let payload = dead
                    .job
                    .as_ref()
                    .map(|job| job.get().to_owned())
                    .or(dead.raw)
                    .unwrap_or_default();
                let mut info = JobInfo::of_payload(queue, JobState::Dead, payload.as_bytes());
                info.id = dead.id;
                info.task = dead.task.or(info.task);
                info.attempts = dead.attempts;
                info.last_error = Some(dead.error);
                info.died_at = Some(at_ms(dead.died_at_ms));
                info
            }
            Err(error) => {
                let mut info = JobInfo::of_payload(queue, JobState::Dead, b"");
                info.last_error = Some(format!("unreadable dead record: {error}"));
                info.payload = String::from_utf8_lossy(record).into_owned();
                info.raw = record.to_vec();
                info
            }
        }
    }
}

impl Queue {
    /// Up to `limit` jobs of this queue in `state`, from `offset` on, in `order`. Running jobs
    /// are listed worker by worker, in no particular order.
    pub async fn jobs(
        &self,
        state: JobState,
        order: Order,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<JobInfo>, Error> {
        if let Some(parts) = self.partitions() {
            return partitioned::jobs(&parts, state, order, offset, limit).await;
        }
        self.jobs_here(state, order, offset, limit).await
    }

    /// [`Queue::jobs`] of one Redis queue (a partition, or a queue without partitions).
    pub(super) async fn jobs_here(
        &self,
        state: JobState,
        order: Order,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<JobInfo>, Error> {
        let broker = self.client.reads();
        let newest_first = order == Order::NewestFirst;
        let timed = match state {
            JobState::Pending => {
                let page = broker
                    .pending_page(&self.name, offset, limit, newest_first)
                    .await?;
                let mut jobs: Vec<JobInfo> = page
                    .iter()
                    .map(|payload| JobInfo::of_payload(&self.name, state, payload))
                    .collect();
                // Suspects (a handful at most) are pending too: they come with the first page.
                if offset == 0 {
                    let suspects = broker.suspects(&self.name).await?;
                    jobs.extend(suspects.iter().map(|payload| {
                        let mut info = JobInfo::of_payload(&self.name, state, payload);
                        info.suspect = true;
                        info
                    }));
                }
                return Ok(jobs);
            }
            JobState::Running => {
                let mut running = Vec::new();
                for (worker, _) in broker.workers_of(&self.name).await? {
                    for payload in broker.running_on(&self.name, &worker).await? {
                        let mut info = JobInfo::of_payload(&self.name, state, &payload);
                        info.worker = Some(worker.clone());
                        running.push(info);
                    }
                }
                return Ok(running.into_iter().skip(offset).take(limit).collect());
            }
            JobState::Scheduled => TimedState::Scheduled,
            JobState::Retry => TimedState::Retry,
            JobState::Dead => TimedState::Dead,
        };
        let page = broker
            .timed_page(&self.name, timed, offset, limit, newest_first)
            .await?;
        Ok(page
            .iter()
            .map(|(member, score)| {
                if state == JobState::Dead {
                    JobInfo::of_dead_record(&self.name, member)
                } else {
                    let mut info = JobInfo::of_payload(&self.name, state, member);
                    info.due_at = Some(at_ms(*score as u64));
                    info
                }
            })
            .collect())
    }

    /// The job `id` of this queue, in whichever state it is, when the queue holds it (a job
    /// that finished is no longer in its queue: see `client.job(id).status()`). Redis looks
    /// through each state a slice at a time (10,000 entries or about 1 MB of them), newest
    /// first (so that workers taking the oldest jobs meanwhile make it skip none), comparing
    /// bytes, and only the matches travel; the whole search runs once more when the job is not
    /// found (it may have moved from one state to another between two reads). A queue of a
    /// million small jobs costs about a hundred short script calls: for operators, not for a
    /// request path.
    pub async fn job(&self, id: &JobId) -> Result<Option<JobInfo>, Error> {
        if let Some(parts) = self.partitions() {
            return partitioned::job(&parts, id).await;
        }
        self.job_here(id).await
    }

    /// [`Queue::job`] of one Redis queue (a partition, or a queue without partitions).
    pub(super) async fn job_here(&self, id: &JobId) -> Result<Option<JobInfo>, Error> {
        if id.as_str().is_empty() {
            return Ok(None);
        }
        for _ in 0..2 {
            if let Some(found) = self.find_once(id).await? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    async fn find_once(&self, id: &JobId) -> Result<Option<JobInfo>, Error> {
        // The most entries one script call reads (it also stops after about 1 MB of them): a
        // few milliseconds of Redis.
        const CHUNK: usize = 10_000;
        let broker = self.client.reads();
        let needle = serde_json::to_string(id.as_str()).unwrap_or_default();
        for state in JobState::ALL {
            let timed = match state {
                JobState::Running => {
                    // Not paged in Redis, and as many as the workers' concurrency.
                    let running = self
                        .jobs_here(state, Order::NewestFirst, 0, usize::MAX)
                        .await?;
                    if let Some(found) = running.into_iter().find(|job| &job.id == id) {
                        return Ok(Some(found));
                    }
                    continue;
                }
                JobState::Pending => {
                    // Suspects: a handful at most.
                    for payload in broker.suspects(&self.name).await? {
                        let mut info = JobInfo::of_payload(&self.name, state, &payload);
                        if &info.id == id {
                            info.suspect = true;
                            return Ok(Some(info));
                        }
                    }
                    // Jobs held back by their task's limits, then the pending list.
                    for task in broker.limited_tasks(&self.name).await? {
                        let mut skip = Some(0);
                        while let Some(from) = skip {
                            let list = Err(Purgeable::Waiting(&task));
                            let (next, found) = broker
                                .find_entries(&self.name, list, &needle, from, CHUNK)
                                .await?;
                            for (entry, _) in found {
                                let mut info = JobInfo::of_payload(&self.name, state, &entry);
                                if &info.id == id {
                                    info.waiting_for = Some(task);
                                    return Ok(Some(info));
                                }
                            }
                            skip = next;
                        }
                    }
                    Err(Purgeable::Pending)
                }
                JobState::Scheduled => Ok(TimedState::Scheduled),
                JobState::Retry => Ok(TimedState::Retry),
                JobState::Dead => Ok(TimedState::Dead),
            };
            let mut skip = Some(0);
            while let Some(from) = skip {
                let (next, found) = broker
                    .find_entries(&self.name, timed, &needle, from, CHUNK)
                    .await?;
                for (entry, score) in found {
                    let info = match state {
                        JobState::Dead => JobInfo::of_dead_record(&self.name, &entry),
                        JobState::Pending => JobInfo::of_payload(&self.name, state, &entry),
                        _ => {
                            let mut info = JobInfo::of_payload(&self.name, state, &entry);
                            info.due_at = Some(at_ms(score as u64));
                            info
                        }
                    };
                    if &info.id == id {
                        return Ok(Some(info));
                    }
                }
                skip = next;
            }
        }
        Ok(None)
    }
}
