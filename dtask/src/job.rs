//! Job handles: the typed view of one enqueued job, to read its status or wait for its result,
//! from the process that enqueued it or from any other.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;

use crate::client::{Client, default_client};
use serde_json::value::RawValue;

use crate::admin::CANCELLED_ERROR;
use crate::envelope::{JobId, Marker, OutcomeRecord, OutcomeState};
use crate::error::Error;
use crate::registry::TaskInfo;

/// Where a job stands, as its record in Redis tells.
///
/// Every state but `Unknown` is kept as long as the job's result (its task's `result_ttl`,
/// default the worker's, 1 h): a job that waits longer than that in its queue reads
/// `Unknown` until it runs. The passing states (queued to retrying) are written as the job
/// moves, in the same round trips as the moves where possible and never over a final one.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum JobStatus<T> {
    /// A step of a workflow (a chain's later step, a group's callback) waiting for the steps
    /// before it: not enqueued yet.
    Waiting,
    /// Waiting in its queue to be taken: enqueued, due after a delay, or back in its queue
    /// after its worker died.
    Queued,
    /// Enqueued with a delay, due at `due_at`.
    Scheduled {
        /// When it is due.
        due_at: SystemTime,
    },
    /// An attempt is running.
    Running {
        /// Which attempt, from 1.
        attempt: u32,
        /// When it started.
        started_at: SystemTime,
        /// The latest progress it told ([`progress`](crate::progress)), if any.
        progress: Option<crate::Progress>,
    },
    /// An attempt failed; another one is scheduled.
    Retrying {
        /// Attempts made so far.
        attempts: u32,
        /// The error of the last attempt.
        error: String,
        /// When the next attempt is due.
        next_attempt_at: SystemTime,
    },
    /// The job succeeded and returned this value.
    Succeeded(T),
    /// The job will not run again: it ran out of attempts, or it could not run at all.
    Dead {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        error: String,
    },
    /// The job was cancelled ([`JobHandle::cancel`]): it will not run (again).
    Cancelled {
        /// Attempts made before.
        attempts: u32,
    },
    /// Nothing is known of the job: no job of this id was enqueued, its record expired, or
    /// its task keeps none (`result_ttl = "0s"`: only its death is recorded).
    Unknown,
}

/// A handle on one enqueued job whose task returns `T`.
///
/// Returned by `my_task::enqueue`, or rebuilt from an id with `my_task::job(id)` in any process.
pub struct JobHandle<T> {
    id: JobId,
    client: Option<Client>,
    /// The job's task, when known: tells whether it keeps a result to wait for.
    task: Option<&'static TaskInfo>,
    /// Whether the enqueue that made this handle found the job already there (a unique job).
    duplicate: bool,
    /// The job's queue, when known (a handle from an enqueue): waits are then woken by a
    /// notification instead of polling.
    queue: Option<Arc<str>>,
    /// Whether the job ran inline (`dtask::testing::inline`), and then its outcome record
    /// (none for a task that keeps no result and succeeded): all there is of it.
    inline: Option<Option<Arc<str>>>,
    output: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for JobHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobHandle").field("id", &self.id).finish()
    }
}

impl<T> Clone for JobHandle<T> {
    fn clone(&self) -> Self {
        JobHandle {
            id: self.id.clone(),
            client: self.client.clone(),
            queue: self.queue.clone(),
            task: self.task,
            duplicate: self.duplicate,
            inline: self.inline.clone(),
            output: PhantomData,
        }
    }
}

impl<T> JobHandle<T> {
    /// A handle on the job `id`, read through `client` (or the default client when `None`).
    pub(crate) fn new(id: JobId, client: Option<Client>) -> Self {
        JobHandle {
            id,
            client,
            task: None,
            duplicate: false,
            queue: None,
            inline: None,
            output: PhantomData,
        }
    }

    /// The same handle, of a job that ran inline and ended with the outcome `record`.
    #[cfg(feature = "testing")]
    pub(crate) fn ran_inline(mut self, task: &'static TaskInfo, record: Option<Arc<str>>) -> Self {
        self.task = Some(task);
        self.inline = Some(record);
        self
    }

    /// The same handle, knowing the job's queue.
    pub(crate) fn in_queue(mut self, queue: &str) -> Self {
        self.queue = Some(Arc::from(queue));
        self
    }

    /// The same handle, of a job an enqueue found already there.
    pub(crate) fn found_duplicate(mut self) -> Self {
        self.duplicate = true;
        self
    }

    /// Whether the enqueue that gave this handle queued nothing because the job was already
    /// there: a unique job (`.id(..)`, `.unique_for(..)`) whose lock another job holds; the
    /// handle is then that job's.
    pub fn is_duplicate(&self) -> bool {
        self.duplicate
    }

    /// The same handle, knowing the job's task.
    pub(crate) fn of_task(mut self, task: &'static TaskInfo) -> Self {
        self.task = Some(task);
        self
    }

    /// The job's id.
    pub fn id(&self) -> &JobId {
        &self.id
    }

    /// Cancels the job: a waiting one will not run, a running one is stopped at its next
    /// `.await` (see [`Queue::cancel`](crate::Queue::cancel)); then `wait()` returns
    /// [`Error::JobDead`] with [`CANCELLED_ERROR`](crate::CANCELLED_ERROR). Cancelling a job
    /// that finished changes nothing ([`Cancelled::NotFound`](crate::Cancelled::NotFound)).
    pub async fn cancel(&self) -> Result<crate::Cancelled, Error> {
        if self.inline.is_some() {
            // A job run inline ended before its enqueue returned.
            return Ok(crate::Cancelled::NotFound);
        }
        self.client().await?.cancel(&self.id).await
    }

    /// The same handle, reading through `client` instead of the default client.
    pub fn with_client(mut self, client: &Client) -> Self {
        self.client = Some(client.clone());
        self
    }

    async fn client(&self) -> Result<&Client, Error> {
        match &self.client {
            Some(client) => Ok(client),
            None => default_client().await,
        }
    }
}

impl Client {
    /// A handle on the job `id` of any task, whose result is read as untyped JSON: for code
    /// that follows jobs without knowing their task, such as a generic `/jobs/{id}` route.
    pub fn job(&self, id: impl Into<JobId>) -> JobHandle<serde_json::Value> {
        JobHandle::new(id.into(), Some(self.clone()))
    }
}

/// How often a notified wait reads its job's outcome anyway.
const SAFETY_READ: Duration = Duration::from_secs(60);

impl<T: DeserializeOwned> JobHandle<T> {
    /// Reads where the job stands now: one read of its record. A job of a task that keeps no
    /// result (`result_ttl = "0s"`) reads [`JobStatus::Unknown`] until it dies (its death is
    /// recorded).
    pub async fn status(&self) -> Result<JobStatus<T>, Error> {
        if let Some(record) = &self.inline {
            return self.status_of(record.as_deref());
        }
        let client = self.client().await?;
        let record = client.broker.result(self.id.as_str()).await?;
        self.status_of(record.as_deref())
    }

    /// The status an outcome record (or none) tells.
    fn status_of(&self, record: Option<&str>) -> Result<JobStatus<T>, Error> {
        let Some(record) = record else {
            return Ok(JobStatus::Unknown);
        };
        match crate::envelope::read_marker(record) {
            Some(Marker::Queued) => return Ok(JobStatus::Queued),
            Some(Marker::Waiting) => return Ok(JobStatus::Waiting),
            // Due already: waiting to be taken.
            Some(Marker::Scheduled(due_ms)) => {
                let due_at = UNIX_EPOCH + Duration::from_millis(due_ms);
                return Ok(if due_at <= SystemTime::now() {
                    JobStatus::Queued
                } else {
                    JobStatus::Scheduled { due_at }
                });
            }
            None => {}
        }
        let record: OutcomeRecord =
            serde_json::from_str(record).map_err(|source| Error::DecodeResult {
                id: self.id.clone(),
                source,
            })?;
        let at = UNIX_EPOCH + Duration::from_millis(record.at_ms);
        let error = record.error.unwrap_or_default();
        Ok(match record.state {
            OutcomeState::Running => JobStatus::Running {
                attempt: record.attempts,
                started_at: at,
                progress: record.progress,
            },
            OutcomeState::Succeeded => {
                let value = record.value.as_deref().map_or("null", RawValue::get);
                let value = serde_json::from_str(value).map_err(|source| Error::DecodeResult {
                    id: self.id.clone(),
                    source,
                })?;
                JobStatus::Succeeded(value)
            }
            OutcomeState::Retrying => JobStatus::Retrying {
                attempts: record.attempts,
                error,
                next_attempt_at: at,
            },
            OutcomeState::Dead if error == CANCELLED_ERROR => JobStatus::Cancelled {
                attempts: record.attempts,
            },
            OutcomeState::Dead => JobStatus::Dead {
                attempts: record.attempts,
                error,
            },
        })
    }

    /// What waiting ends with, once `status` is final: its value, or the job's death (a
    /// cancelled job's too, with [`CANCELLED_ERROR`]).
    fn ended(&self, status: JobStatus<T>) -> Option<Result<T, Error>> {
        match status {
            JobStatus::Succeeded(value) => Some(Ok(value)),
            JobStatus::Dead { attempts, error } => Some(Err(Error::JobDead {
                id: self.id.clone(),
                attempts,
                error,
            })),
            JobStatus::Cancelled { attempts } => Some(Err(Error::JobDead {
                id: self.id.clone(),
                attempts,
                error: CANCELLED_ERROR.to_owned(),
            })),
            JobStatus::Waiting
            | JobStatus::Queued
            | JobStatus::Scheduled { .. }
            | JobStatus::Running { .. }
            | JobStatus::Retrying { .. }
            | JobStatus::Unknown => None,
        }
    }

    /// Waits up to `timeout` for the job to succeed and returns its result; a job that dies
    /// first is an [`Error::JobDead`] carrying its last error. Retries are waited through.
    ///
    /// A task declared with `result_ttl = "0s"` keeps no result, so there is nothing to wait
    /// for: this returns [`Error::NoResultKept`] at once.
    ///
    /// A handle from an enqueue knows its job's queue: the wait notes the job as watched in
    /// Redis, reads its outcome once, and then sleeps until the worker that settles the job
    /// publishes the outcome (on one pub/sub connection the client's waits share): two or
    /// three Redis commands per job waited on, and a read a minute while waiting (should a
    /// notification have been lost on the way). A handle made from an id alone
    /// (`client.job(id)`), or a client that cannot subscribe (an ACL without `+subscribe`),
    /// polls the job's outcome instead, every millisecond at first and then every 50 ms.
    pub async fn wait(&self, timeout: Duration) -> Result<T, Error> {
        if let Some(task) = self
            .task
            .filter(|task| task.result_ttl == Some(Duration::ZERO))
        {
            return Err(Error::NoResultKept {
                id: self.id.clone(),
                task: task.name.to_owned(),
            });
        }
        if let Some(record) = &self.inline {
            let status = self.status_of(record.as_deref())?;
            return self.ended(status).unwrap_or_else(|| {
                Err(Error::WaitTimeout {
                    id: self.id.clone(),
                    waited: timeout,
                })
            });
        }
        let deadline = tokio::time::Instant::now() + timeout;
        if let Some(queue) = &self.queue {
            let client = self.client().await?;
            if let Some(ended) = self.wait_notified(client, queue, deadline, timeout).await {
                return ended;
            }
        }
        self.wait_polling(deadline, timeout).await
    }

    /// Waits for the job's outcome to be published; None when the client cannot subscribe
    /// (then the caller polls).
    async fn wait_notified(
        &self,
        client: &Client,
        queue: &str,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Option<Result<T, Error>> {
        loop {
            let subscribed = tokio::time::timeout_at(
                deadline.min(tokio::time::Instant::now() + crate::wait::SUBSCRIBE_TIMEOUT),
                client.waiters.watch(queue, self.id.as_str()),
            )
            .await;
            let woken = match subscribed {
                Ok(Ok(woken)) => woken,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "cannot subscribe to finished jobs; polling instead");
                    return None;
                }
                Err(_) => return None,
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let until_ms = crate::clock::now_ms().saturating_add(left.as_millis() as u64);
            let record = match client
                .broker
                .watch_and_read(queue, self.id.as_str(), until_ms)
                .await
            {
                Ok(record) => record,
                Err(error) => return Some(Err(error)),
            };
            match self
                .status_of(record.as_deref())
                .map(|status| self.ended(status))
            {
                Ok(Some(ended)) => {
                    // Ended before the wait: no one need be told (best effort).
                    let _ = client.broker.unwatch(queue, self.id.as_str()).await;
                    return Some(ended);
                }
                Ok(None) => {}
                Err(error) => return Some(Err(error)),
            }
            // A read a minute, should a notification have been lost on the way.
            let look_again = tokio::time::Instant::now() + SAFETY_READ;
            match tokio::time::timeout_at(deadline.min(look_again), woken).await {
                Err(_) if tokio::time::Instant::now() < deadline => {}
                Err(_) => {
                    return Some(Err(Error::WaitTimeout {
                        id: self.id.clone(),
                        waited: timeout,
                    }));
                }
                Ok(Ok(crate::wait::Wake::Outcome(record))) => {
                    match self
                        .status_of(Some(&record))
                        .map(|status| self.ended(status))
                    {
                        Ok(Some(ended)) => return Some(ended),
                        Ok(None) => {}
                        Err(error) => return Some(Err(error)),
                    }
                }
                // The subscription broke: note the job again and read its outcome.
                Ok(Ok(crate::wait::Wake::Reread)) | Ok(Err(_)) => {}
            }
        }
    }

    /// Waits by reading the job's outcome, every millisecond at first, then every 50 ms.
    async fn wait_polling(
        &self,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<T, Error> {
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(ended) = self.ended(self.status().await?) {
                return ended;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(Error::WaitTimeout {
                    id: self.id.clone(),
                    waited: timeout,
                });
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}
