//! Read-only and repair views of a queue, for dashboards, command-line tools and tests.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::client::Client;
use crate::envelope::{DeadRecord, JobId};
use crate::error::Error;

/// How many jobs a queue holds in each state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct QueueStats {
    /// Ready to run.
    pub pending: u64,
    /// Ready to run, but in flight on two workers that died: each runs with no other suspect
    /// beside it on its worker, until it succeeds or a third death buries it as poison.
    pub suspects: u64,
    /// Waiting for their time (delayed with `.delay` or `.at`).
    pub scheduled: u64,
    /// Failed, waiting for their next attempt.
    pub retry: u64,
    /// Dead: out of attempts, or unable to run.
    pub dead: u64,
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
}

impl Client {
    /// A view of the queue `name`.
    pub fn queue(&self, name: &str) -> Queue {
        Queue {
            client: self.clone(),
            name: name.to_owned(),
        }
    }
}

impl Queue {
    /// How many jobs the queue holds in each state.
    pub async fn stats(&self) -> Result<QueueStats, Error> {
        let broker = &self.client.broker;
        Ok(QueueStats {
            pending: broker.pending_len(&self.name).await?,
            suspects: broker.suspects_len(&self.name).await?,
            scheduled: broker.scheduled_len(&self.name).await?,
            retry: broker.retry_len(&self.name).await?,
            dead: broker.dead_len(&self.name).await?,
        })
    }

    /// How many jobs the worker `worker_id` has in flight from this queue.
    pub async fn in_flight_on(&self, worker_id: &str) -> Result<u64, Error> {
        self.client.broker.inflight_len(&self.name, worker_id).await
    }

    /// The dead jobs of this queue, most recent first, at most `limit`.
    pub async fn dead_jobs(&self, limit: usize) -> Result<Vec<DeadJob>, Error> {
        let records = self.client.broker.dead_records(&self.name, limit).await?;
        Ok(records
            .into_iter()
            .map(|text| match serde_json::from_str::<DeadRecord>(&text) {
                Ok(record) => DeadJob {
                    id: record.id,
                    task: record.task,
                    error: record.error,
                    attempts: record.attempts,
                    died_at: UNIX_EPOCH + Duration::from_millis(record.died_at_ms),
                    payload: record
                        .job
                        .map(|job| job.get().to_owned())
                        .or(record.raw)
                        .unwrap_or_default(),
                },
                Err(error) => DeadJob {
                    id: JobId::from(""),
                    task: None,
                    error: format!("unreadable dead record: {error}"),
                    attempts: 0,
                    died_at: UNIX_EPOCH,
                    payload: text,
                },
            })
            .collect())
    }

    /// Appends `payload` to the queue as it is, with no checks. For repair tools, and for tests
    /// that show what a worker does with a payload that is not a job.
    pub async fn push_raw(&self, payload: &[u8]) -> Result<(), Error> {
        self.client.broker.push_raw(&self.name, payload).await
    }
}
