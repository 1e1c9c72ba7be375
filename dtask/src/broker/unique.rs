//! The broker's operations for unique jobs: queueing a job with its uniqueness lock in one
//! step (or finding the job that holds it), and releasing a lock.

use std::time::Duration;

use super::{Broker, Due, Replicas, keys, redis_err, scripts};
use crate::error::Error;

/// A uniqueness lock to take: its key (`id:<job id>` or `args:<task>:<hash>`), held for at
/// most `ttl`.
pub(crate) struct UniqueLock<'a> {
    pub(crate) key: &'a str,
    pub(crate) ttl: Duration,
}

impl Broker {
    /// Queues `payload` (job `job_id`) in `queue`, due as `due`, under `lock`; or, when another
    /// job holds the lock, queues nothing and returns that job's id. With `replicas`, waits for
    /// them to have the job (see [`Broker::enqueue`]).
    pub(crate) async fn enqueue_unique(
        &self,
        queue: &str,
        lock: UniqueLock<'_>,
        job_id: &str,
        payload: &str,
        due: Option<Due>,
        replicas: Option<Replicas>,
    ) -> Result<Option<String>, Error> {
        self.register_new_queues(std::iter::once(queue)).await;
        let due = match due {
            None => String::new(),
            Some(Due::AtMs(ms)) => format!("at:{ms}"),
            Some(Due::After(delay)) => format!("after:{}", delay.as_millis()),
        };
        let lent = match replicas {
            Some(replicas) => self.durable_conn(replicas).await?,
            None => None,
        };
        let mut conn = lent.as_ref().map_or(&self.conn, |lent| &lent.conn).clone();
        let (queued, holder): (i64, String) = scripts::ENQUEUE_UNIQUE
            .key(keys::unique_lock(&self.prefix, queue, lock.key))
            .key(keys::pending(&self.prefix, queue))
            .key(keys::scheduled(&self.prefix, queue))
            .arg(job_id)
            .arg(lock.ttl.as_millis().max(1) as u64)
            .arg(payload)
            .arg(due)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("enqueueing a unique job"))?;
        if let Some(replicas) = replicas.filter(|_| queued == 1) {
            match lent {
                Some(_) => self.wait_replicas(&conn, queue, replicas).await?,
                // Every durable connection waits for replicas already: queued unconfirmed.
                None => replicas.confirmed(queue, 0)?,
            }
        }
        Ok((queued == 0).then_some(holder))
    }

    /// Releases the lock `lock_key` of `queue` if job `job_id` holds it, now or (`keep`) that
    /// long from now; whether the job held it.
    pub(crate) async fn release_unique(
        &self,
        queue: &str,
        lock_key: &str,
        job_id: &str,
        keep: Duration,
    ) -> Result<bool, Error> {
        let mut conn = self.conn.clone();
        let released: i64 = scripts::RELEASE_UNIQUE
            .key(keys::unique_lock(&self.prefix, queue, lock_key))
            .arg(job_id)
            .arg(keep.as_millis() as u64)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("releasing a unique job's lock"))?;
        Ok(released == 1)
    }
}
