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

    /// How many errands of `queue`'s workflows are still to run: in its outbox, or claimed by
    /// `worker` and not done.
    pub(crate) async fn errands_left(&self, queue: &str, worker: &str) -> Result<u64, Error> {
        let mut conn = self.conn.clone();
        let (outbox, in_hand): (u64, u64) = redis::pipe()
            .cmd("LLEN")
            .arg(keys::outbox(&self.prefix, queue))
            .cmd("LLEN")
            .arg(keys::errands_in_hand(&self.prefix, queue, worker))
            .query_async(&mut conn)
            .await
            .map_err(redis_err("counting a queue's errands"))?;
        Ok(outbox + in_hand)
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
