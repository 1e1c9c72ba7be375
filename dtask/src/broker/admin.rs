//! The broker's operations for operators: finding queues, reading jobs page by page in each
//! state, pausing a queue, and repairs (reviving and deleting dead jobs, purging a state). Each
//! change is one command or one script, so that it races a worker's fetch or burial safely.

use super::{Broker, keys, redis_err, scripts};
use crate::error::Error;

/// A state of a queue that is a sorted set: its members are payloads (or dead records) scored by
/// a time in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimedState {
    /// Delayed jobs, scored by due time.
    Scheduled,
    /// Failed jobs waiting for their next attempt, scored by due time.
    Retry,
    /// Dead records, scored by time of death.
    Dead,
}

/// A state that [`Broker::purge`] can empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purgeable<'a> {
    /// The pending list.
    Pending,
    /// The waiting set of one task with limits (pending jobs its limits hold back).
    Waiting(&'a str),
    /// The suspects list (pending jobs that were in flight on two dead workers).
    Suspects,
    /// The scheduled set.
    Scheduled,
    /// The retry set.
    Retry,
}

/// A dead job to revive: its dead record as stored, the payload to queue again, and its id.
pub(crate) struct Revival<'a> {
    pub(crate) record: &'a str,
    pub(crate) payload: &'a str,
    pub(crate) job_id: &'a str,
    /// A unique job's lock key and how long to hold it again.
    pub(crate) lock: Option<(&'a str, std::time::Duration)>,
}

impl Broker {
    fn timed_key(&self, queue: &str, state: TimedState) -> String {
        match state {
            TimedState::Scheduled => keys::scheduled(&self.prefix, queue),
            TimedState::Retry => keys::retry(&self.prefix, queue),
            TimedState::Dead => keys::dead(&self.prefix, queue),
        }
    }

    /// Notes `queues` in the prefix's queue registry.
    pub(crate) async fn register_queues(&self, queues: &[&str]) -> Result<(), Error> {
        if queues.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        redis::cmd("SADD")
            .arg(keys::queues(&self.prefix))
            .arg(queues)
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err("registering queues"))
    }

    /// Notes in the queue registry those of `queues` this broker has not noted yet: one command
    /// the first time a process enqueues to a queue, none after.
    pub(crate) async fn register_new_queues<'a>(&self, queues: impl Iterator<Item = &'a str>) {
        let new: Vec<&str> = {
            let registered = self.registered.lock().unwrap_or_else(|e| e.into_inner());
            let mut new: Vec<&str> = queues.filter(|q| !registered.contains(*q)).collect();
            new.sort_unstable();
            new.dedup();
            new
        };
        if new.is_empty() {
            return;
        }
        // Best effort: a client whose ACL lacks `SADD` still enqueues (its queues are found
        // once a worker serving them registers them).
        if let Err(error) = self.register_queues(&new).await {
            tracing::warn!(%error, queues = ?new, "could not note the queues in the queue registry; admin tools will not list them until a worker serving them starts");
        }
        let mut registered = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        registered.extend(new.into_iter().map(str::to_owned));
    }

    /// Every queue in the prefix's queue registry, sorted by name.
    pub(crate) async fn known_queues(&self) -> Result<Vec<String>, Error> {
        let mut conn = self.conn.clone();
        let mut queues: Vec<String> = redis::cmd("SMEMBERS")
            .arg(keys::queues(&self.prefix))
            .query_async(&mut conn)
            .await
            .map_err(redis_err("listing queues"))?;
        queues.sort();
        Ok(queues)
    }

    /// Pauses `queue` (workers take nothing from it) or resumes it.
    pub(crate) async fn set_paused(&self, queue: &str, paused: bool) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        let key = keys::paused(&self.prefix, queue);
        let cmd = if paused {
            let mut cmd = redis::cmd("SET");
            cmd.arg(key).arg("1");
            cmd
        } else {
            let mut cmd = redis::cmd("DEL");
            cmd.arg(key);
            cmd
        };
        cmd.query_async::<()>(&mut conn)
            .await
            .map_err(redis_err("pausing or resuming a queue"))
    }

    /// Whether `queue` is paused.
    pub(crate) async fn is_paused(&self, queue: &str) -> Result<bool, Error> {
        let mut conn = self.conn.clone();
        redis::cmd("EXISTS")
            .arg(keys::paused(&self.prefix, queue))
            .query_async(&mut conn)
            .await
            .map_err(redis_err("reading whether a queue is paused"))
    }

    /// Up to `count` payloads of `queue`'s pending list from position `start`, oldest first or
    /// newest first.
    pub(crate) async fn pending_page(
        &self,
        queue: &str,
        start: usize,
        count: usize,
        newest_first: bool,
    ) -> Result<Vec<Vec<u8>>, Error> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let start = i64::try_from(start)
            .unwrap_or(i64::MAX / 2)
            .min(i64::MAX / 2);
        let count = i64::try_from(count)
            .unwrap_or(i64::MAX / 2)
            .min(i64::MAX / 2);
        let (from, to) = if newest_first {
            (-start - count, -start - 1)
        } else {
            (start, start + count - 1)
        };
        let mut conn = self.conn.clone();
        let mut page: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(keys::pending(&self.prefix, queue))
            .arg(from)
            .arg(to)
            .query_async(&mut conn)
            .await
            .map_err(redis_err("reading pending jobs"))?;
        if newest_first {
            page.reverse();
        }
        Ok(page)
    }

    /// Up to `count` members of one of `queue`'s sorted sets from rank `start`, with their
    /// scores (ms), lowest score first or highest first.
    pub(crate) async fn timed_page(
        &self,
        queue: &str,
        state: TimedState,
        start: usize,
        count: usize,
        highest_first: bool,
    ) -> Result<Vec<(Vec<u8>, f64)>, Error> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("ZRANGE");
        let start = i64::try_from(start)
            .unwrap_or(i64::MAX / 2)
            .min(i64::MAX / 2);
        let count = i64::try_from(count)
            .unwrap_or(i64::MAX / 2)
            .min(i64::MAX / 2);
        cmd.arg(self.timed_key(queue, state))
            .arg(start)
            .arg(start + count - 1);
        if highest_first {
            cmd.arg("REV");
        }
        cmd.arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .map_err(redis_err("reading jobs"))
    }

    /// Up to `count` members of one of `queue`'s sorted sets scored from `min` to `max`
    /// (inclusive), lowest first, with their scores: a cursor that records added or removed
    /// elsewhere in the set do not shift.
    pub(crate) async fn timed_by_score(
        &self,
        queue: &str,
        state: TimedState,
        min: f64,
        max: f64,
        count: usize,
    ) -> Result<Vec<(Vec<u8>, f64)>, Error> {
        let mut conn = self.conn.clone();
        redis::cmd("ZRANGE")
            .arg(self.timed_key(queue, state))
            .arg(min)
            .arg(max)
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(count)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .map_err(redis_err("reading jobs"))
    }

    /// The entries of `queue`'s pending list (`state` None) or of a sorted set that contain
    /// `needle`, among `count` entries from the newest end after skipping `skip`, with their
    /// scores (0 for pending); and where to go on from, None once the state is read to its end.
    /// One script call: it compares bytes, so the caller decodes the matches.
    pub(crate) async fn find_entries(
        &self,
        queue: &str,
        state: Result<TimedState, Purgeable<'_>>,
        needle: &str,
        skip: usize,
        count: usize,
    ) -> Result<(Option<usize>, Vec<(Vec<u8>, f64)>), Error> {
        let key = match state {
            Err(list) => self.list_key(queue, list),
            Ok(state) => self.timed_key(queue, state),
        };
        let mut conn = self.conn.clone();
        let (next, found): (i64, Vec<(Vec<u8>, f64)>) = scripts::FIND
            .key(key)
            .arg(needle)
            .arg(skip)
            .arg(count.max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("looking for a job"))?;
        Ok((usize::try_from(next).ok(), found))
    }

    /// Sets `queue`'s rate limit to `jobs` per `per_ms` ms, `burst` at once, with a full bucket;
    /// None removes it.
    pub(crate) async fn set_rate_limit(
        &self,
        queue: &str,
        limit: Option<(u32, u64, u32)>,
    ) -> Result<(), Error> {
        let key = keys::rate(&self.prefix, queue);
        let mut pipe = redis::pipe();
        pipe.atomic();
        // A new limit keeps the bucket's state: setting the same limit again (every deploy,
        // say) grants no fresh burst.
        if limit.is_none() {
            pipe.cmd("DEL").arg(&key).ignore();
        }
        if let Some((jobs, per_ms, burst)) = limit {
            pipe.cmd("HSET")
                .arg(&key)
                .arg("n")
                .arg(jobs)
                .arg("per")
                .arg(per_ms)
                .arg("burst")
                .arg(burst)
                .ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async(&mut conn)
            .await
            .map_err(redis_err("setting a rate limit"))
    }

    /// `queue`'s rate limit: jobs, period (ms), burst; None when it has none.
    pub(crate) async fn rate_limit(&self, queue: &str) -> Result<Option<(u32, u64, u32)>, Error> {
        let mut conn = self.conn.clone();
        let (jobs, per, burst): (Option<u32>, Option<u64>, Option<u32>) = redis::cmd("HMGET")
            .arg(keys::rate(&self.prefix, queue))
            .arg("n")
            .arg("per")
            .arg("burst")
            .query_async(&mut conn)
            .await
            .map_err(redis_err("reading a rate limit"))?;
        Ok(match (jobs, per, burst) {
            (Some(jobs), Some(per), Some(burst)) => Some((jobs, per, burst)),
            _ => None,
        })
    }

    /// Every job in `queue`'s suspects list (a handful at most: jobs in flight on two workers
    /// that died), oldest first.
    pub(crate) async fn suspects(&self, queue: &str) -> Result<Vec<Vec<u8>>, Error> {
        let mut conn = self.conn.clone();
        redis::cmd("LRANGE")
            .arg(keys::suspects(&self.prefix, queue))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(redis_err("reading suspect jobs"))
    }

    /// The workers registered on `queue`, with their last heartbeat (server clock, ms).
    pub(crate) async fn workers_of(&self, queue: &str) -> Result<Vec<(String, u64)>, Error> {
        let mut conn = self.conn.clone();
        let workers: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(keys::workers(&self.prefix, queue))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .map_err(redis_err("listing workers"))?;
        Ok(workers
            .into_iter()
            .map(|(worker, beat)| (worker, beat as u64))
            .collect())
    }

    /// The payloads of the jobs `worker` has in flight from `queue` (settled runs left out).
    pub(crate) async fn running_on(
        &self,
        queue: &str,
        worker: &str,
    ) -> Result<Vec<Vec<u8>>, Error> {
        let mut conn = self.conn.clone();
        let held: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(keys::active(&self.prefix, queue, worker))
            .query_async(&mut conn)
            .await
            .map_err(redis_err("reading running jobs"))?;
        let landed: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(keys::landing(&self.prefix, queue, worker))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(redis_err("reading running jobs"))?;
        Ok(held
            .into_iter()
            .filter(|(field, _)| !keys::is_settled_marker(field))
            .map(|(_, payload)| payload)
            .chain(landed)
            .collect())
    }

    /// Moves dead jobs back to the end of `queue`, each only if its record is still in the dead
    /// set; returns, per job in order, whether this call revived it. On a single server a
    /// revived job's dead outcome is removed in the same step; on a cluster just after.
    pub(crate) async fn revive(
        &self,
        queue: &str,
        jobs: &[Revival<'_>],
    ) -> Result<Vec<bool>, Error> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let inline = self.inline_outcomes();
        let mut invocation = scripts::REVIVE.prepare_invoke();
        invocation
            .key(keys::dead(&self.prefix, queue))
            .key(keys::pending(&self.prefix, queue))
            .arg(if inline { "inline" } else { "apart" });
        // Keys after the first two, each once: results hashes and locks.
        let mut more_keys: Vec<String> = Vec::new();
        let mut position_of = |key: String| match more_keys.iter().position(|k| *k == key) {
            Some(at) => at + 3,
            None => {
                more_keys.push(key);
                more_keys.len() + 2
            }
        };
        for job in jobs {
            let results = if inline && !job.job_id.is_empty() {
                position_of(keys::results(&self.prefix, job.job_id))
            } else {
                0
            };
            let (lock, lock_ms) = match job.lock {
                Some((key, ttl)) => (
                    position_of(keys::unique_lock(&self.prefix, queue, key)),
                    ttl.as_millis().max(1) as u64,
                ),
                None => (0, 0),
            };
            invocation
                .arg(job.record)
                .arg(job.payload)
                .arg(job.job_id)
                .arg(results)
                .arg(lock)
                .arg(lock_ms);
        }
        for key in &more_keys {
            invocation.key(key.as_str());
        }
        let mut conn = self.conn.clone();
        let revived: Vec<i64> = match invocation.invoke_async(&mut conn).await {
            Err(error)
                if inline
                    && error.kind()
                        == redis::ErrorKind::Server(redis::ServerErrorKind::CrossSlot) =>
            {
                // A cluster node behind a single URL (nothing was changed): outcomes apart
                // from now on, and once more.
                self.outcomes_apart
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                return Box::pin(self.revive(queue, jobs)).await;
            }
            revived => revived.map_err(redis_err("reviving dead jobs"))?,
        };
        let revived: Vec<bool> = revived.into_iter().map(|r| r == 1).collect();
        if !inline {
            for (job, _) in jobs.iter().zip(&revived).filter(|(_, r)| **r) {
                if job.job_id.is_empty() {
                    continue;
                }
                // Best effort: a dead outcome left behind only makes `status()` say dead until
                // the job's next outcome replaces it.
                let _ = redis::cmd("HDEL")
                    .arg(keys::results(&self.prefix, job.job_id))
                    .arg(job.job_id)
                    .query_async::<()>(&mut conn)
                    .await;
            }
        }
        Ok(revived)
    }

    /// The counts hashes of `queue` for `minutes` (minutes since the Unix epoch), in order: each
    /// field (`done`, `failed`, `done:<second>`, ...) with its count; empty for a minute with
    /// none.
    pub(crate) async fn counts(
        &self,
        queue: &str,
        minutes: &[u64],
    ) -> Result<Vec<std::collections::HashMap<String, u64>>, Error> {
        let mut pipe = redis::pipe();
        for &minute in minutes {
            pipe.cmd("HGETALL")
                .arg(keys::counts(&self.prefix, queue, minute));
        }
        let mut conn = self.conn.clone();
        pipe.query_async(&mut conn)
            .await
            .map_err(redis_err("reading a queue's counts"))
    }

    /// Takes the waiting job `payload` out of `state` of `queue`; false when it was no longer
    /// there (a worker took it, or it became due and moved on).
    pub(crate) async fn cancel(
        &self,
        queue: &str,
        state: Purgeable<'_>,
        payload: &[u8],
        errand: Option<&str>,
    ) -> Result<bool, Error> {
        let key = self.list_key(queue, state);
        let mut conn = self.conn.clone();
        let removed: i64 = scripts::CANCEL
            .key(key)
            .key(keys::outbox(&self.prefix, queue))
            .arg(payload)
            .arg(errand.unwrap_or_default())
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("cancelling a job"))?;
        Ok(removed == 1)
    }

    /// Deletes dead records of `queue`; returns how many were still there.
    pub(crate) async fn delete_dead(&self, queue: &str, records: &[&str]) -> Result<u64, Error> {
        if records.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn.clone();
        redis::cmd("ZREM")
            .arg(keys::dead(&self.prefix, queue))
            .arg(records)
            .query_async(&mut conn)
            .await
            .map_err(redis_err("deleting dead jobs"))
    }

    /// Empties one state of `queue` (the dead set included, when `dead`); returns how many
    /// jobs it held.
    pub(crate) async fn purge(
        &self,
        queue: &str,
        state: Option<Purgeable<'_>>,
    ) -> Result<u64, Error> {
        let key = match state {
            Some(state) => self.list_key(queue, state),
            None => keys::dead(&self.prefix, queue),
        };
        let mut conn = self.conn.clone();
        scripts::PURGE
            .key(key)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("purging a queue"))
    }

    /// The key of one waiting state of `queue`.
    fn list_key(&self, queue: &str, state: Purgeable<'_>) -> String {
        match state {
            Purgeable::Pending => keys::pending(&self.prefix, queue),
            Purgeable::Waiting(task) => keys::task_waiting(&self.prefix, queue, task),
            Purgeable::Suspects => keys::suspects(&self.prefix, queue),
            Purgeable::Scheduled => keys::scheduled(&self.prefix, queue),
            Purgeable::Retry => keys::retry(&self.prefix, queue),
        }
    }

    /// The tasks of `queue` that may have jobs in a waiting set.
    pub(crate) async fn limited_tasks(&self, queue: &str) -> Result<Vec<String>, Error> {
        let mut conn = self.conn.clone();
        redis::cmd("SMEMBERS")
            .arg(keys::limited_tasks(&self.prefix, queue))
            .query_async(&mut conn)
            .await
            .map_err(redis_err("reading a queue's tasks with limits"))
    }
}
