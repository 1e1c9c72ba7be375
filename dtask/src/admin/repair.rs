//! Repairs an operator makes to a queue: running dead jobs again, deleting them, purging a
//! waiting state, pausing and resuming. Each change is one script or one command in Redis, so a
//! repair racing a worker (a retry racing a burial, a purge racing a fetch) loses nothing and
//! duplicates nothing.

use super::{JobState, Queue};
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
    /// [`Error::JobDead`] with the error "cancelled by an operator".
    Cancelled(JobState),
    /// The job is running on a worker: it is not stopped (cancelling a running job is not
    /// supported yet).
    Running,
    /// The queue holds no such job (it finished, was never there, or is dead: delete it with
    /// [`Queue::delete_dead`]).
    NotFound,
}

/// How long a cancelled job's outcome is kept.
const CANCELLED_KEPT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The error a cancelled job's outcome carries.
pub const CANCELLED_ERROR: &str = "cancelled by an operator";

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
    /// Reads the dead records `which` names, `BATCH` at a time, oldest first, and hands each
    /// batch (records as stored, read) to `act`, which returns how many it changed.
    async fn each_dead_batch<F, Fut>(&self, which: Which<'_>, mut act: F) -> Result<u64, Error>
    where
        F: FnMut(Vec<(String, DeadRecord)>) -> Fut,
        Fut: std::future::Future<Output = Result<u64, Error>>,
    {
        let broker = &self.client.broker;
        let mut changed = 0;
        let mut offset = 0;
        loop {
            let page = broker
                .timed_page(&self.name, TimedState::Dead, offset, BATCH, false)
                .await?;
            let full = page.len() == BATCH;
            let mut batch = Vec::new();
            let mut skipped = 0;
            for (member, _) in page {
                let text = String::from_utf8_lossy(&member).into_owned();
                let wanted = match serde_json::from_str::<DeadRecord>(&text) {
                    Ok(record) => match which {
                        Which::All => Some(record),
                        Which::Ids(ids) => ids.contains(&record.id).then_some(record),
                    },
                    Err(_) => None,
                };
                match wanted {
                    Some(record) => batch.push((text, record)),
                    None => skipped += 1,
                }
            }
            let asked = batch.len() as u64;
            let done = if batch.is_empty() {
                0
            } else {
                act(batch).await?
            };
            changed += done;
            if !full {
                return Ok(changed);
            }
            // Records acted on left the set; the others (skipped, or taken by a racing repair
            // meanwhile) stay before the next page.
            offset += skipped + (asked - done) as usize;
        }
    }

    /// Runs the dead jobs `ids` again: each goes back to the end of the queue with a fresh
    /// attempt budget, its dead record removed in the same step. Returns how many were revived
    /// (a job already revived or deleted meanwhile is not revived twice).
    pub async fn retry_dead(&self, ids: &[JobId]) -> Result<u64, Error> {
        self.revive(Which::Ids(ids)).await
    }

    /// Runs every dead job of the queue again, as [`Queue::retry_dead`] does.
    pub async fn retry_all_dead(&self) -> Result<u64, Error> {
        self.revive(Which::All).await
    }

    async fn revive(&self, which: Which<'_>) -> Result<u64, Error> {
        let broker = &self.client.broker;
        self.each_dead_batch(which, |batch| async move {
            let fresh: Vec<String> = batch
                .iter()
                .map(|(_, record)| fresh_payload(record))
                .collect();
            let revivals: Vec<Revival<'_>> = batch
                .iter()
                .zip(&fresh)
                .map(|((text, record), payload)| Revival {
                    record: text,
                    payload,
                    job_id: record.id.as_str(),
                })
                .collect();
            let revived = broker.revive(&self.name, &revivals).await?;
            Ok(revived.into_iter().filter(|r| *r).count() as u64)
        })
        .await
    }

    /// Deletes the dead jobs `ids`; returns how many were deleted.
    pub async fn delete_dead(&self, ids: &[JobId]) -> Result<u64, Error> {
        let broker = &self.client.broker;
        self.each_dead_batch(Which::Ids(ids), |batch| async move {
            let records: Vec<&str> = batch.iter().map(|(text, _)| text.as_str()).collect();
            broker.delete_dead(&self.name, &records).await
        })
        .await
    }

    /// Deletes every dead job of the queue at once; returns how many there were.
    pub async fn delete_all_dead(&self) -> Result<u64, Error> {
        self.client.broker.purge(&self.name, None).await
    }

    /// Empties one waiting state of the queue at once; returns how many jobs it held. Jobs in
    /// flight are not touched.
    pub async fn purge(&self, state: PurgeState) -> Result<u64, Error> {
        let state = match state {
            PurgeState::Pending => Purgeable::Pending,
            PurgeState::Scheduled => Purgeable::Scheduled,
            PurgeState::Retry => Purgeable::Retry,
        };
        self.client.broker.purge(&self.name, Some(state)).await
    }

    /// Cancels the job `id` if it is still waiting (pending, scheduled or retrying): it leaves
    /// the queue in one step, racing no worker (a job a worker took first is `Running`), and
    /// its outcome becomes dead with [`CANCELLED_ERROR`], so that a caller waiting on it stops
    /// waiting.
    pub async fn cancel(&self, id: &JobId) -> Result<Cancelled, Error> {
        // A job that moved between states while it was looked for is looked for once more.
        for _ in 0..3 {
            let Some(job) = self.job(id).await? else {
                return Ok(Cancelled::NotFound);
            };
            let state = match job.state {
                JobState::Pending => Purgeable::Pending,
                JobState::Scheduled => Purgeable::Scheduled,
                JobState::Retry => Purgeable::Retry,
                JobState::Running => return Ok(Cancelled::Running),
                JobState::Dead => return Ok(Cancelled::NotFound),
            };
            let broker = &self.client.broker;
            if broker
                .cancel(&self.name, state, job.payload.as_bytes())
                .await?
            {
                let outcome = OutcomeRecord {
                    state: OutcomeState::Dead,
                    attempts: job.attempts,
                    at_ms: crate::clock::now_ms(),
                    value: None,
                    error: Some(CANCELLED_ERROR.to_owned()),
                };
                broker
                    .set_result(id.as_str(), &outcome.to_json(), CANCELLED_KEPT)
                    .await?;
                return Ok(Cancelled::Cancelled(job.state));
            }
        }
        Ok(Cancelled::Running)
    }

    /// Pauses the queue: workers take no job from it (within half a second on an idle worker,
    /// at once on a busy one) until [`Queue::resume`]; enqueues go on, and jobs already running
    /// finish. The pause is kept in Redis, so it outlives worker restarts.
    pub async fn pause(&self) -> Result<(), Error> {
        self.client.broker.set_paused(&self.name, true).await
    }

    /// Resumes a paused queue.
    pub async fn resume(&self) -> Result<(), Error> {
        self.client.broker.set_paused(&self.name, false).await
    }

    /// Whether the queue is paused.
    pub async fn is_paused(&self) -> Result<bool, Error> {
        self.client.broker.is_paused(&self.name).await
    }
}
