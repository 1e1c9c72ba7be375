//! Workflows on the broker's side: each queue's outbox (errands: what the workflows of jobs
//! that ended there do next, written by the settling scripts in the same step as the
//! settle), and what running an errand does in Redis: enqueue a chain's next step once
//! (`lua/spawn.lua`), record a group member's end and enqueue the group's callback once
//! (`lua/group_member.lua`). Also the groups' hashes and the waiting records of steps not
//! enqueued yet.

use std::time::Duration;

use super::{Broker, keys, redis_err, scripts};
use crate::error::Error;

/// How long a step's spawn mark is kept: longer than any errand waits in an outbox.
const SPAWNED_KEPT: Duration = Duration::from_secs(24 * 3600);

/// How long a group's hash is kept after its last change (its creation, a member's end).
pub(crate) const GROUP_KEPT: Duration = Duration::from_secs(30 * 24 * 3600);

/// What recording a group member's end came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MemberEnded {
    /// Recorded (or recorded already, by an errand run before); members are left.
    Recorded,
    /// Recorded, and the group's callback was enqueued (by this call, once).
    CallbackQueued,
    /// Recorded, and the group failed with it: these jobs (JSON) will not run.
    Failed(String),
    /// The group is not there (it expired).
    NoGroup,
}

/// A group's hash as its workflow's enqueue writes it.
pub(crate) struct NewGroup<'a> {
    pub(crate) queue: &'a str,
    pub(crate) id: &'a str,
    pub(crate) members: usize,
    /// The callback's payload before its argument, between its argument and its enqueue
    /// time, and after that.
    pub(crate) head: &'a str,
    pub(crate) mid: &'a str,
    pub(crate) tail: &'a str,
    /// Whether failed members are left out (else one fails the group).
    pub(crate) skip_failed: bool,
    /// The jobs that will not run when the group fails (JSON).
    pub(crate) doomed: &'a str,
}

impl Broker {
    /// The errands `worker` holds for `queue`: those left from a round that failed, else up
    /// to `max` taken from the queue's outbox, oldest first (see `lua/claim_errands.lua`).
    pub(crate) async fn claim_errands(
        &self,
        queue: &str,
        worker: &str,
        max: usize,
    ) -> Result<Vec<String>, Error> {
        let mut conn = self.conn.clone();
        scripts::CLAIM_ERRANDS
            .key(keys::outbox(&self.prefix, queue))
            .key(keys::errands_in_hand(&self.prefix, queue, worker))
            .key(keys::workers(&self.prefix, queue))
            .arg(max)
            .arg(worker)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("taking workflow errands"))
    }

    /// Forgets the errands `worker` held for `queue`, once they ran.
    pub(crate) async fn errands_done(&self, queue: &str, worker: &str) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(keys::errands_in_hand(&self.prefix, queue, worker))
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err("forgetting workflow errands that ran"))
    }

    /// Enqueues the jobs `steps` (id, payload) into `queue`, each unless it was already;
    /// per job, whether now.
    pub(crate) async fn spawn(
        &self,
        queue: &str,
        steps: &[(&str, &str)],
    ) -> Result<Vec<bool>, Error> {
        self.register_new_queues(std::iter::once(queue)).await;
        let mut invocation = scripts::SPAWN.prepare_invoke();
        invocation
            .key(keys::pending(&self.prefix, queue))
            .arg(SPAWNED_KEPT.as_millis() as u64);
        for (id, payload) in steps {
            invocation
                .key(keys::spawned(&self.prefix, queue, id))
                .arg(*payload);
        }
        let mut conn = self.conn.clone();
        let spawned: Vec<i64> = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("enqueueing workflows' next steps"))?;
        Ok(spawned.into_iter().map(|one| one == 1).collect())
    }

    /// Records that members of group `group` (in `queue`) ended: for each, its index and its
    /// result (its result as JSON, or its error).
    pub(crate) async fn members_ended(
        &self,
        queue: &str,
        group: &str,
        ended: &[(u32, Result<&str, &str>)],
    ) -> Result<MemberEnded, Error> {
        let mut invocation = scripts::GROUP_MEMBER.prepare_invoke();
        invocation
            .key(keys::group(&self.prefix, queue, group))
            .key(keys::pending(&self.prefix, queue))
            .arg(GROUP_KEPT.as_millis() as u64);
        for (index, result) in ended {
            let (state, text) = match result {
                Ok(value) => ("ok", *value),
                Err(error) => ("failed", *error),
            };
            invocation.arg(*index).arg(state).arg(text);
        }
        let mut conn = self.conn.clone();
        let (code, doomed): (i64, String) = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("recording the ends of group members"))?;
        Ok(match code {
            0 => MemberEnded::Recorded,
            1 => MemberEnded::CallbackQueued,
            2 => MemberEnded::Failed(doomed),
            _ => MemberEnded::NoGroup,
        })
    }

    /// Marks group `group` (in `queue`) failed with `error`, unless it failed already or
    /// every member ended (its callback then ran or was failed): what follows it will not run
    /// (for a group whose members could not all be enqueued).
    pub(crate) async fn fail_group(
        &self,
        queue: &str,
        group: &str,
        error: &str,
    ) -> Result<(), Error> {
        self.mark_group(queue, group, "failed", error).await
    }

    /// Notes that the doomed jobs of failed group `group` (in `queue`) were marked dead.
    pub(crate) async fn group_failure_told(&self, queue: &str, group: &str) -> Result<(), Error> {
        self.mark_group(queue, group, "told", "1").await
    }

    /// Sets `field` of a group's hash (see `lua/mark_group.lua`).
    async fn mark_group(
        &self,
        queue: &str,
        group: &str,
        field: &str,
        value: &str,
    ) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        scripts::MARK_GROUP
            .key(keys::group(&self.prefix, queue, group))
            .arg(field)
            .arg(value)
            .invoke_async::<()>(&mut conn)
            .await
            .map_err(redis_err("marking a workflow's group"))
    }

    /// Writes a group's hash (before any of its members is enqueued).
    pub(crate) async fn create_group(&self, group: &NewGroup<'_>) -> Result<(), Error> {
        let key = keys::group(&self.prefix, group.queue, group.id);
        let mut conn = self.conn.clone();
        redis::pipe()
            .cmd("HSET")
            .arg(&key)
            .arg("total")
            .arg(group.members)
            .arg("left")
            .arg(group.members)
            .arg("head")
            .arg(group.head)
            .arg("mid")
            .arg(group.mid)
            .arg("tail")
            .arg(group.tail)
            .arg("skip")
            .arg(if group.skip_failed { "1" } else { "0" })
            .arg("doomed")
            .arg(group.doomed)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(GROUP_KEPT.as_millis() as u64)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err("creating a workflow's group"))
    }

    /// Writes the waiting records of workflow steps not enqueued yet (job id, record), kept
    /// for `ttl`; best effort, as every passing record.
    pub(crate) async fn record_waiting(&self, records: &[(&str, &str)], ttl: Duration) {
        let news = super::News {
            records: records.to_vec(),
            ttl,
            events: Vec::new(),
        };
        self.write_records(&news).await;
    }
}
