//! Repairs an operator makes to a queue: running dead jobs again, deleting them, purging a
//! waiting state, pausing and resuming. Each change is one script or one command in Redis, so a
//! repair racing a worker (a retry racing a burial, a purge racing a fetch) loses nothing and
//! duplicates nothing.

use super::{JobState, Queue, partitioned, partitioned::each_part};
use crate::broker::{Purgeable, Revival, TimedState};
use crate::envelope::{self, DeadRecord, JobId, OutcomeRecord, OutcomeState};
use crate::error::Error;

/// How many dead records one revival or deletion handles at a time.
const BATCH: usize = 200;

/// A waiting state [`Queue::purge`] can empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeState {
    /// Jobs ready to run.
    Pending,
    /// Delayed jobs.
    Scheduled,
    /// Failed jobs waiting for their next attempt.
    Retry,
}

impl std::fmt::Display for PurgeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PurgeState::Pending => "pending",
            PurgeState::Scheduled => "scheduled",
            PurgeState::Retry => "retry",
        })
    }
}

impl std::str::FromStr for PurgeState {
    type Err = Error;
    fn from_str(text: &str) -> Result<PurgeState, Error> {
        match text {
            "pending" => Ok(PurgeState::Pending),
            "scheduled" => Ok(PurgeState::Scheduled),
            "retry" => Ok(PurgeState::Retry),
            other => Err(Error::Config(format!(
                "cannot purge `{other}`: expected pending, scheduled or retry (dead jobs are deleted with `dead delete`)"
            ))),
        }
    }
}

/// What [`Queue::cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// The job was waiting in this state, and will not run: its handle's `wait()` returns
    /// [`Error::JobDead`] with the error [`CANCELLED_ERROR`].
    Cancelled(JobState),
    /// The job is running on a worker, which was told to stop it (over Redis pub/sub, within
    /// milliseconds): its handler's future is dropped at its next `.await` (code that does not
    /// await sees [`JobContext::is_cancelled`](crate::JobContext::is_cancelled)), and the job
    /// is settled like a cancelled waiting one. A run that finishes first keeps its outcome;
    /// should the job go back to its queue instead (its worker died), it does not start again.
    Running,
    /// The queue holds no such job (it finished, was never there, or is dead: delete it with
    /// [`Queue::delete_dead`]).
    NotFound,
}

/// How long a cancelled job's outcome is kept.
pub(crate) const CANCELLED_KEPT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The error a cancelled job's outcome carries.
pub const CANCELLED_ERROR: &str = "cancelled";

/// Which dead jobs a repair takes.
enum Which<'a> {
    All,
    Ids(&'a [JobId]),
}

/// The payload that runs a dead job again with a fresh attempt budget: its envelope with no
/// attempt and no error counted, or the payload as it was when it was not a job this version
/// reads.
fn fresh_payload(record: &DeadRecord) -> String {
    let Some(job) = &record.job else {
        return record.raw.clone().unwrap_or_default();
    };
    match envelope::decode(job.get().as_bytes()) {
        Ok(mut envelope) => {
            envelope.attempt = 0;
            envelope.last_error = None;
            envelope.to_json()
        }
        Err(_) => job.get().to_owned(),
    }
}

impl Queue {
    /// Reads the dead records `which` names, oldest first, `BATCH` at a time, and hands each
    /// batch (records as stored, read) to `act`, which returns how many it changed.
    ///
    /// The dead set is walked by score (time of death) from a cursor, up to the newest record
    /// there when the walk began: records that die meanwhile (a job revived here that fails
    /// again, say) are not taken, so the walk ends; and records removed elsewhere (a burial
    /// trimming the set, another operator) do not make it skip any.
    async fn each_dead_batch<F, Fut>(&self, which: Which<'_>, mut act: F) -> Result<u64, Error>
    where
        F: FnMut(Vec<(String, DeadRecord)>) -> Fut,
        Fut: std::future::Future<Output = Result<u64, Error>>,
    {
        let broker = &self.client.broker;
        let newest = broker
            .timed_page(&self.name, TimedState::Dead, 0, 1, true)
            .await?;
        let Some((_, end)) = newest.first() else {
            return Ok(0);
        };
        let end = *end;
        let mut wanted: Option<std::collections::HashSet<&JobId>> = match which {
            Which::All => None,
            Which::Ids(ids) => Some(ids.iter().collect()),
        };
        // The cursor: the score reached, and the records at that score already seen.
        let mut from = f64::NEG_INFINITY;
        let mut seen_at_from: std::collections::HashSet<Vec<u8>> = Default::default();
        let mut changed = 0;
        loop {
            let page = broker
                .timed_by_score(
                    &self.name,
                    TimedState::Dead,
                    from,
                    end,
                    BATCH + seen_at_from.len(),
                )
                .await?;
            let fresh: Vec<(Vec<u8>, f64)> = page
                .into_iter()
                .filter(|(member, score)| *score > from || !seen_at_from.contains(member))
                .collect();
            if fresh.is_empty() {
                return Ok(changed);
            }
            let mut batch = Vec::new();
            for (member, score) in fresh {
                if score > from {
                    from = score;
                    seen_at_from.clear();
                }
                seen_at_from.insert(member.clone());
                let text = String::from_utf8_lossy(&member).into_owned();
                let Ok(record) = serde_json::from_str::<DeadRecord>(&text) else {
                    continue;
                };
                let take = match &mut wanted {
                    None => true,
                    Some(ids) => ids.remove(&record.id),
                };
                if take {
                    batch.push((text, record));
                }
            }
            if !batch.is_empty() {
                changed += act(batch).await?;
            }
            if wanted.as_ref().is_some_and(|ids| ids.is_empty()) {
                return Ok(changed);
            }
        }
    }

    /// Runs the dead jobs `ids` again: each goes back to the end of the queue with a fresh
    /// attempt budget, its dead record removed in the same step. Returns how many were revived
    /// (a job already revived or deleted meanwhile is not revived twice).
    pub async fn retry_dead(&self, ids: &[JobId]) -> Result<u64, Error> {
        if let Some(parts) = self.partitions() {
            let all = each_part!(parts, |part| part.retry_dead_here(ids));
            return Ok(all.into_iter().sum());
        }
        self.retry_dead_here(ids).await
    }

    /// [`Queue::retry_dead`] of one Redis queue (a partition, or a queue without partitions).
    pub(super) async fn retry_dead_here(&self, ids: &[JobId]) -> Result<u64, Error> {
        self.revive(Which::Ids(ids)).await
    }

    /// Runs every dead job of the queue again, as [`Queue::retry_dead`] does.
    pub async fn retry_all_dead(&self) -> Result<u64, Error> {
        if let Some(parts) = self.partitions() {
            let all = each_part!(parts, |part| part.retry_all_dead_here());
            return Ok(all.into_iter().sum());
        }
        self.retry_all_dead_here().await
    }

    /// [`Queue::retry_all_dead`] of one Redis queue (a partition, or a queue without partitions).
    pub(super) async fn retry_all_dead_here(&self) -> Result<u64, Error> {
        self.revive(Which::All).await
    }

    async fn revive(&self, which: Which<'_>) -> Result<u64, Error> {
        let broker = &self.client.broker;
        self.each_dead_batch(which, |batch| async move {
            let fresh: Vec<String> = batch
                .iter()
                .map(|(_, record)| fresh_payload(record))
                .collect();
            // A unique job takes its lock back as it is revived (or stays dead if another job
            // holds it now).
            let envelopes: Vec<Option<envelope::Envelope>> = fresh
                .iter()
                .map(|payload| envelope::decode(payload.as_bytes()).ok())
                .collect();
            let revivals: Vec<Revival<'_>> = batch
                .iter()
                .zip(&fresh)
                .zip(&envelopes)
                .map(|(((text, record), payload), envelope)| Revival {
                    record: text,
                    payload,
                    job_id: record.id.as_str(),
                    lock: envelope.as_ref().and_then(crate::unique::lock_to_retake),
                })
                .collect();
            let revived = broker.revive(&self.name, &revivals).await?;
            Ok(revived.into_iter().filter(|r| *r).count() as u64)
        })
        .await
    }

    /// Deletes the dead jobs `ids`; returns how many were deleted.
    pub async fn delete_dead(&self, ids: &[JobId]) -> Result<u64, Error> {
        if let Some(parts) = self.partitions() {
            let all = each_part!(parts, |part| part.delete_dead_here(ids));
            return Ok(all.into_iter().sum());
        }
        self.delete_dead_here(ids).await
    }

    /// [`Queue::delete_dead`] of one Redis queue (a partition, or a queue without partitions).
    pub(super) async fn delete_dead_here(&self, ids: &[JobId]) -> Result<u64, Error> {
        let broker = &self.client.broker;
        self.each_dead_batch(Which::Ids(ids), |batch| async move {
            let records: Vec<&str> = batch.iter().map(|(text, _)| text.as_str()).collect();
            broker.delete_dead(&self.name, &records).await
        })
        .await
    }

    /// Deletes every dead job of the queue at once; returns how many there were.
    pub async fn delete_all_dead(&self) -> Result<u64, Error> {
        if let Some(parts) = self.partitions() {
            let all = each_part!(parts, |part| part.delete_all_dead_here());
            return Ok(all.into_iter().sum());
        }
        self.delete_all_dead_here().await
    }

    /// [`Queue::delete_all_dead`] of one Redis queue (a partition, or a queue without partitions).
    pub(super) async fn delete_all_dead_here(&self) -> Result<u64, Error> {
        self.client.broker.purge(&self.name, None).await
    }

    /// Empties one waiting state of the queue at once; returns how many jobs it held. Jobs in
    /// flight are not touched.
    pub async fn purge(&self, state: PurgeState) -> Result<u64, Error> {
        if let Some(parts) = self.partitions() {
            let all = each_part!(parts, |part| part.purge_here(state));
            return Ok(all.into_iter().sum());
        }
        self.purge_here(state).await
    }

    /// [`Queue::purge`] of one Redis queue (a partition, or a queue without partitions).
    pub(super) async fn purge_here(&self, state: PurgeState) -> Result<u64, Error> {
        let broker = &self.client.broker;
        Ok(match state {
            PurgeState::Pending => {
                let mut purged = broker.purge(&self.name, Some(Purgeable::Pending)).await?
                    + broker.purge(&self.name, Some(Purgeable::Suspects)).await?;
                for task in broker.limited_tasks(&self.name).await? {
                    purged += broker
                        .purge(&self.name, Some(Purgeable::Waiting(&task)))
                        .await?;
                }
                purged
            }
            PurgeState::Scheduled => broker.purge(&self.name, Some(Purgeable::Scheduled)).await?,
            PurgeState::Retry => broker.purge(&self.name, Some(Purgeable::Retry)).await?,
        })
    }

    /// Cancels the job `id`. A waiting job (pending, scheduled or retrying) leaves the queue in
    /// one step, racing no worker; a running one is stopped by its worker (see
    /// [`Cancelled::Running`]). Either way its outcome becomes dead with [`CANCELLED_ERROR`],
    /// so that a caller waiting on it stops waiting; it is not put in the dead set. Cancelling
    /// again, or cancelling a job that finished, changes nothing.
    pub async fn cancel(&self, id: &JobId) -> Result<Cancelled, Error> {
        if let Some(parts) = self.partitions() {
            return partitioned::cancel(&parts, id).await;
        }
        self.cancel_here(id).await
    }

    /// [`Queue::cancel`] of one Redis queue (a partition, or a queue without partitions).
    pub(super) async fn cancel_here(&self, id: &JobId) -> Result<Cancelled, Error> {
        // Looked up on the master: a replica may not have the job yet.
        let on_primary = Queue {
            client: self.client.on_primary(),
            name: self.name.clone(),
            member: self.member,
        };
        // A job that moved between states while it was looked for is looked for once more.
        for _ in 0..3 {
            let Some(job) = on_primary.job_here(id).await? else {
                return Ok(Cancelled::NotFound);
            };
            let state = match job.state {
                JobState::Pending if job.suspect => Purgeable::Suspects,
                JobState::Pending if job.waiting_for.is_some() => {
                    Purgeable::Waiting(job.waiting_for.as_deref().unwrap_or_default())
                }
                JobState::Pending => Purgeable::Pending,
                JobState::Scheduled => Purgeable::Scheduled,
                JobState::Retry => Purgeable::Retry,
                JobState::Running => return self.stop_running(id).await,
                JobState::Dead => return Ok(Cancelled::NotFound),
            };
            let broker = &self.client.broker;
            // What follows the job in its workflow is failed in the same step.
            let errand = crate::envelope::decode(job.payload.as_bytes())
                .ok()
                .and_then(|envelope| {
                    let follow = crate::workflow::Follow::of(&envelope)?;
                    Some(
                        follow
                            .died(&envelope.id, &envelope.task, CANCELLED_ERROR)
                            .to_json(),
                    )
                });
            if broker
                .cancel(&self.name, state, job.payload.as_bytes(), errand.as_deref())
                .await?
            {
                let outcome = OutcomeRecord {
                    state: OutcomeState::Dead,
                    attempts: job.attempts,
                    at_ms: crate::clock::now_ms(),
                    value: None,
                    error: Some(CANCELLED_ERROR.to_owned()),
                    progress: None,
                };
                broker
                    .set_final(&self.name, id.as_str(), &outcome.to_json(), CANCELLED_KEPT)
                    .await?;
                let event = crate::events::EventKind::Cancelled {
                    attempts: job.attempts,
                };
                let line = event.line(id, job.task.as_deref().unwrap_or_default(), outcome.at_ms);
                // Best effort, as every event.
                if let Err(error) = broker.publish_events(&self.name, &line).await {
                    tracing::debug!(%error, "could not publish a cancelled job's event");
                }
                // A unique job's lock goes with it.
                if let Ok(envelope) = crate::envelope::decode(job.payload.as_bytes())
                    && let Some((key, _)) = crate::unique::lock_of(&envelope)
                {
                    let keep = crate::unique::kept_after_end(key, CANCELLED_KEPT);
                    broker
                        .release_unique(&self.name, key, id.as_str(), keep)
                        .await?;
                }
                return Ok(Cancelled::Cancelled(job.state));
            }
        }
        // It kept moving (workers take it as fast as it is looked for): it runs somewhere.
        self.stop_running(id).await
    }

    /// Asks the workers of the queue to stop job `id`, which runs on one of them (or starts
    /// again later).
    async fn stop_running(&self, id: &JobId) -> Result<Cancelled, Error> {
        self.client
            .broker
            .request_cancel(&self.name, id.as_str())
            .await?;
        Ok(Cancelled::Running)
    }

    /// Pauses the queue: workers take no job from it until [`Queue::resume`] (a job an idle
    /// worker's blocking wait takes meanwhile goes back to the head of the queue); enqueues go
    /// on, and jobs already running finish. The pause is kept in Redis, so it outlives worker
    /// restarts. A resumed queue runs again at a busy worker's next fetch, and within half a
    /// second on an idle one.
    pub async fn pause(&self) -> Result<(), Error> {
        if let Some(parts) = self.partitions() {
            each_part!(parts, |part| part.pause_here());
            return Ok(());
        }
        self.pause_here().await
    }

    /// [`Queue::pause`] of one Redis queue (a partition, or a queue without partitions).
    pub(super) async fn pause_here(&self) -> Result<(), Error> {
        self.check_name()?;
        self.client.broker.set_paused(&self.name, true).await
    }

    /// Resumes a paused queue.
    pub async fn resume(&self) -> Result<(), Error> {
        if let Some(parts) = self.partitions() {
            each_part!(parts, |part| part.resume_here());
            return Ok(());
        }
        self.resume_here().await
    }

    /// [`Queue::resume`] of one Redis queue (a partition, or a queue without partitions).
    pub(super) async fn resume_here(&self) -> Result<(), Error> {
        self.check_name()?;
        self.client.broker.set_paused(&self.name, false).await
    }

    /// Refuses a name no queue can have.
    fn check_name(&self) -> Result<(), Error> {
        if self.name.is_empty() || self.name.contains(['{', '}']) {
            return Err(Error::Config(format!(
                "queue name `{}` must be non-empty and hold no `{{` or `}}`",
                self.name
            )));
        }
        Ok(())
    }

    /// Whether the queue is paused.
    pub async fn is_paused(&self) -> Result<bool, Error> {
        if let Some(parts) = self.partitions() {
            let all = each_part!(parts, |part| part.is_paused_here());
            return Ok(all.into_iter().any(|paused| paused));
        }
        self.is_paused_here().await
    }

    /// [`Queue::is_paused`] of one Redis queue (a partition, or a queue without partitions).
    pub(super) async fn is_paused_here(&self) -> Result<bool, Error> {
        self.client.broker.is_paused(&self.name).await
    }
}
