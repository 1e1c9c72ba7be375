//! What `dtask::testing` reads and does in Redis: the jobs a queue holds (ready, delayed,
//! retrying), whether anything is left to run (including a workflow's errands), and making
//! every delayed job due at once.

use super::{Broker, keys, redis_err, scripts};
use crate::error::Error;

/// How far ahead of the server's clock "now" is when every job is made due: a century.
const FAR_AHEAD_MS: u64 = 100 * 365 * 24 * 3600 * 1000;

impl Broker {
    /// The payloads `queue` holds: ready (oldest first), then delayed and retrying (soonest
    /// first).
    pub(crate) async fn held_payloads(&self, queue: &str) -> Result<Vec<Vec<u8>>, Error> {
        let mut conn = self.conn.clone();
        type Payloads = Vec<Vec<u8>>;
        let (pending, scheduled, retry): (Payloads, Payloads, Payloads) = redis::pipe()
            .cmd("LRANGE")
            .arg(keys::pending(&self.prefix, queue))
            .arg(0)
            .arg(-1)
            .cmd("ZRANGE")
            .arg(keys::scheduled(&self.prefix, queue))
            .arg(0)
            .arg(-1)
            .cmd("ZRANGE")
            .arg(keys::retry(&self.prefix, queue))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(redis_err("reading a queue's jobs"))?;
        Ok(pending.into_iter().chain(scheduled).chain(retry).collect())
    }

    /// How many jobs of `queues` are still to run on `worker`, read at one instant: ready,
    /// suspect, in flight, landing, waiting for their task's limits, and workflow errands
    /// (`lua/left_to_run.lua`; the queues share one server).
    pub(crate) async fn left_to_run(&self, queues: &[String], worker: &str) -> Result<u64, Error> {
        let mut conn = self.conn.clone();
        let mut invocation = scripts::LEFT_TO_RUN.prepare_invoke();
        for queue in queues {
            invocation
                .key(keys::pending(&self.prefix, queue))
                .key(keys::suspects(&self.prefix, queue))
                .key(keys::active(&self.prefix, queue, worker))
                .key(keys::landing(&self.prefix, queue, worker))
                .key(keys::outbox(&self.prefix, queue))
                .key(keys::errands_in_hand(&self.prefix, queue, worker))
                .key(keys::limited_tasks(&self.prefix, queue))
                .arg(keys::of_queue(&self.prefix, queue));
        }
        invocation
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("counting the jobs left to run"))
    }

    /// Moves every delayed and retrying job of `queue` to its pending list, whatever its due
    /// time; how many moved.
    pub(crate) async fn make_all_due(&self, queue: &str) -> Result<u64, Error> {
        let mut conn = self.conn.clone();
        let (moved, _next_due): (u64, i64) = scripts::FORWARD_DUE
            .key(keys::scheduled(&self.prefix, queue))
            .key(keys::retry(&self.prefix, queue))
            .key(keys::pending(&self.prefix, queue))
            .arg(u32::MAX)
            .arg(FAR_AHEAD_MS)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("making delayed jobs due"))?;
        Ok(moved)
    }
}
