//! The operator views of a partitioned queue (`#[task(partitions = ..)]`): each view asks
//! every partition, as a queue of its own, and adds the answers up, so that `client.queue(..)`,
//! the CLI and the dashboard show one queue.

use super::{Cancelled, JobInfo, JobState, Order, Queue, QueueStats, Throughput, WorkerInfo};
use crate::envelope::JobId;
use crate::error::Error;

/// Every partition's answer to `$ask` (an expression of `$part`, awaited, its error returned),
/// in partition order.
macro_rules! each_part {
    ($parts:expr, |$part:ident| $ask:expr) => {{
        let mut all = Vec::with_capacity($parts.len());
        for $part in &$parts {
            all.push($ask.await?);
        }
        all
    }};
}
pub(super) use each_part;

impl Queue {
    /// The Redis queues this queue is made of: its partitions (`#[task(partitions = ..)]`,
    /// [`ClientBuilder::partitions`](crate::ClientBuilder::partitions)) and then itself (where
    /// a producer that does not know the partitions puts its jobs; workers serve it too), or
    /// only itself.
    pub fn redis_queues(&self) -> Vec<String> {
        self.client
            .partitions
            .members(&self.name)
            .unwrap_or_else(|| vec![self.name.clone()])
    }

    /// The partitions of this queue, each as a queue of its own; None when it has none.
    pub(super) fn partitions(&self) -> Option<Vec<Queue>> {
        if self.member {
            return None;
        }
        self.client.partitions.members(&self.name).map(|names| {
            names
                .into_iter()
                .map(|name| Queue {
                    client: self.client.clone(),
                    name,
                    member: true,
                })
                .collect()
        })
    }
}

/// The partitions' figures added up (paused when any partition is).
pub(super) fn add_stats(all: Vec<QueueStats>) -> QueueStats {
    all.into_iter()
        .fold(QueueStats::default(), |sum, part| QueueStats {
            pending: sum.pending + part.pending,
            suspects: sum.suspects + part.suspects,
            waiting: sum.waiting + part.waiting,
            scheduled: sum.scheduled + part.scheduled,
            retry: sum.retry + part.retry,
            dead: sum.dead + part.dead,
            running: sum.running + part.running,
            workers: sum.workers.max(part.workers),
            paused: sum.paused || part.paused,
        })
}

/// Each worker once, with what it has in flight from every partition.
pub(super) fn merge_workers(all: Vec<Vec<WorkerInfo>>) -> Vec<WorkerInfo> {
    let mut merged: Vec<WorkerInfo> = Vec::new();
    for worker in all.into_iter().flatten() {
        match merged.iter_mut().find(|seen| seen.id == worker.id) {
            Some(seen) => {
                seen.in_flight += worker.in_flight;
                seen.last_heartbeat = seen.last_heartbeat.max(worker.last_heartbeat);
            }
            None => merged.push(worker),
        }
    }
    merged
}

/// The partitions' counts added up, minute by minute.
pub(super) fn add_throughput(all: Vec<Throughput>) -> Option<Throughput> {
    let mut all = all.into_iter();
    let mut sum = all.next()?;
    for part in all {
        sum.last_minute.succeeded += part.last_minute.succeeded;
        sum.last_minute.failed += part.last_minute.failed;
        sum.last_hour.succeeded += part.last_hour.succeeded;
        sum.last_hour.failed += part.last_hour.failed;
        for ((_, total), (_, counts)) in sum.per_minute.iter_mut().zip(part.per_minute) {
            total.succeeded += counts.succeeded;
            total.failed += counts.failed;
        }
    }
    Some(sum)
}

/// Up to `limit` jobs from `offset` on, of pages read from every partition from the start:
/// merged by when they were enqueued (or are due, or died), in `order`.
pub(super) async fn jobs(
    parts: &[Queue],
    state: JobState,
    order: Order,
    offset: usize,
    limit: usize,
) -> Result<Vec<JobInfo>, Error> {
    let wanted = offset.saturating_add(limit);
    let mut pages = Vec::with_capacity(parts.len());
    for part in parts {
        pages.push(part.jobs_here(state, order, 0, wanted).await?);
    }
    let mut jobs: Vec<JobInfo> = pages.into_iter().flatten().collect();
    jobs.sort_by_key(|job| job.died_at.or(job.due_at).or(job.enqueued_at));
    if order == Order::NewestFirst {
        jobs.reverse();
    }
    Ok(jobs.into_iter().skip(offset).take(limit).collect())
}

/// The job `id` in whichever partition holds it.
pub(super) async fn job(parts: &[Queue], id: &JobId) -> Result<Option<JobInfo>, Error> {
    for part in parts {
        if let Some(found) = part.job_here(id).await? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// Cancels the job `id` in whichever partition holds it.
pub(super) async fn cancel(parts: &[Queue], id: &JobId) -> Result<Cancelled, Error> {
    for part in parts {
        match part.cancel_here(id).await? {
            Cancelled::NotFound => {}
            done => return Ok(done),
        }
    }
    Ok(Cancelled::NotFound)
}
