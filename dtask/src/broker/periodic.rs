//! The broker's operations for periodic schedules: claiming a tick (and enqueueing its job) in
//! one script, reading the last ticks claimed, recording a schedule's definition, and reading
//! them all back for operators.

use super::{Broker, keys, redis_err, scripts};
use crate::error::Error;

/// What claiming a tick did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// This call claimed the tick and enqueued its job.
    Fired,
    /// This call claimed the tick without a job (a missed tick skipped).
    Skipped,
    /// The tick, or a later one, was claimed before.
    Taken,
    /// The queue is paused: nothing was claimed.
    Paused,
    /// The tick is this many ms in the future on the server's clock.
    Early(u64),
}

impl Broker {
    /// Claims `tick` of the schedule `name` of `queue` and, when `payload` is Some, enqueues it,
    /// in one step; `definition` is stored for operators.
    pub(crate) async fn claim_tick(
        &self,
        queue: &str,
        name: &str,
        tick_ms: u64,
        definition: &str,
        payload: Option<&str>,
    ) -> Result<Claim, Error> {
        let mut conn = self.conn.clone();
        let answer: i64 = scripts::TICK
            .key(keys::periodic_ticks(&self.prefix, queue))
            .key(keys::periodic_defs(&self.prefix, queue))
            .key(keys::pending(&self.prefix, queue))
            .key(keys::paused(&self.prefix, queue))
            .arg(name)
            .arg(tick_ms)
            .arg(definition)
            .arg(payload.unwrap_or(""))
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("claiming a periodic tick"))?;
        Ok(match answer {
            1 => Claim::Fired,
            2 => Claim::Skipped,
            3 => Claim::Paused,
            n if n < 0 => Claim::Early(n.unsigned_abs()),
            _ => Claim::Taken,
        })
    }

    /// The server's clock (ms, read on `queue`'s node) and the last tick claimed of each of
    /// `names`, schedules of `queue`.
    pub(crate) async fn periodic_state(
        &self,
        queue: &str,
        names: &[&str],
    ) -> Result<(u64, Vec<Option<u64>>), Error> {
        let mut conn = self.conn.clone();
        let mut invocation = scripts::PERIODIC_STATE.key(keys::periodic_ticks(&self.prefix, queue));
        for name in names {
            invocation.arg(*name);
        }
        invocation
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("reading periodic ticks"))
    }

    /// Records the definition of the schedule `name` of `queue`, for operators.
    pub(crate) async fn define_periodic(
        &self,
        queue: &str,
        name: &str,
        definition: &str,
    ) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        redis::cmd("HSET")
            .arg(keys::periodic_defs(&self.prefix, queue))
            .arg(name)
            .arg(definition)
            .query_async(&mut conn)
            .await
            .map_err(redis_err("recording a periodic schedule"))
    }

    /// Every schedule of `queue`: name, definition (JSON) and last tick claimed.
    pub(crate) async fn periodic_of(
        &self,
        queue: &str,
    ) -> Result<Vec<(String, String, Option<u64>)>, Error> {
        let mut conn = self.conn.clone();
        type Definitions = Vec<(String, String)>;
        type Ticks = Vec<(String, u64)>;
        let (defs, ticks): (Definitions, Ticks) = redis::pipe()
            .cmd("HGETALL")
            .arg(keys::periodic_defs(&self.prefix, queue))
            .cmd("HGETALL")
            .arg(keys::periodic_ticks(&self.prefix, queue))
            .query_async(&mut conn)
            .await
            .map_err(redis_err("reading periodic schedules"))?;
        Ok(defs
            .into_iter()
            .map(|(name, definition)| {
                let last = ticks.iter().find(|(n, _)| *n == name).map(|(_, t)| *t);
                (name, definition, last)
            })
            .collect())
    }
}

impl Broker {
    /// Removes the schedule `name` of `queue` (its definition and last tick); whether it was
    /// there.
    pub(crate) async fn forget_periodic(&self, queue: &str, name: &str) -> Result<bool, Error> {
        let mut conn = self.conn.clone();
        let (defs, _ticks): (u64, u64) = redis::pipe()
            .cmd("HDEL")
            .arg(keys::periodic_defs(&self.prefix, queue))
            .arg(name)
            .cmd("HDEL")
            .arg(keys::periodic_ticks(&self.prefix, queue))
            .arg(name)
            .query_async(&mut conn)
            .await
            .map_err(redis_err("forgetting a periodic schedule"))?;
        Ok(defs > 0)
    }
}
