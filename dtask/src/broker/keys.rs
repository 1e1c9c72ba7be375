//! Every Redis key name dtask uses, and nothing else.
//!
//! All keys of one queue share the hash tag `{queue}`, so every script of a queue touches one slot
//! and the same commands run on a standalone Redis and on Redis Cluster. Jobs' results live in
//! hashes named by the time their jobs were created (read from the id), so that a handle can
//! find a result knowing only the id.

/// `prefix:{queue}:pending`: LIST of payloads waiting to run, oldest at the head.
pub(crate) fn pending(prefix: &str, queue: &str) -> String {
    format!("{prefix}:{{{queue}}}:pending")
}

/// `prefix:{queue}:suspects`: LIST of jobs that were in flight on two dead workers: each runs
/// with no other suspect beside it on its worker, so that a job killing its workers is found
/// out alone and jobs that merely ran beside it are not blamed.
pub(crate) fn suspects(prefix: &str, queue: &str) -> String {
    format!("{prefix}:{{{queue}}}:suspects")
}

/// `prefix:{queue}:scheduled`: ZSET of payloads waiting for a time, scored by due time (ms).
pub(crate) fn scheduled(prefix: &str, queue: &str) -> String {
    format!("{prefix}:{{{queue}}}:scheduled")
}

/// `prefix:{queue}:retry`: ZSET of failed jobs waiting for their next attempt, scored by due time.
pub(crate) fn retry(prefix: &str, queue: &str) -> String {
    format!("{prefix}:{{{queue}}}:retry")
}

/// `prefix:{queue}:dead`: ZSET of dead records, scored by time of death (ms).
pub(crate) fn dead(prefix: &str, queue: &str) -> String {
    format!("{prefix}:{{{queue}}}:dead")
}

/// `prefix:{queue}:workers`: ZSET of worker ids serving the queue, scored by last heartbeat (ms).
pub(crate) fn workers(prefix: &str, queue: &str) -> String {
    format!("{prefix}:{{{queue}}}:workers")
}

/// `prefix:{queue}:active:<worker>`: HASH of the jobs one worker has in flight (lease id ->
/// payload): the one shape of a job in flight, whichever way it was taken. Also holds, for a
/// moment, the settled markers of runs that just ended (`s:<lease>`).
pub(crate) fn active(prefix: &str, queue: &str, worker: &str) -> String {
    format!("{prefix}:{{{queue}}}:active:{worker}")
}

/// The field of a worker's in-flight hash that marks the run under `lease` as settled (see
/// `lua/settle.lua`); lease ids are digits, so it never collides with one.
pub(crate) fn settled_marker(lease: &str) -> String {
    format!("{SETTLED_MARKER_PREFIX}{lease}")
}

/// What every settled marker's field starts with (`lua/settle.lua` spells it too).
const SETTLED_MARKER_PREFIX: &str = "s:";

/// Whether `field` of a worker's in-flight hash is a settled marker, not a job.
pub(crate) fn is_settled_marker(field: &str) -> bool {
    field.starts_with(SETTLED_MARKER_PREFIX)
}

/// `prefix:{queue}:landing:<worker>`: LIST where a blocking wait of one worker puts the job it
/// takes, until the worker adopts it into its in-flight hash a moment later (`adopt.lua`);
/// recovery sweeps it like the hash, for a worker that died in between.
pub(crate) fn landing(prefix: &str, queue: &str, worker: &str) -> String {
    format!("{prefix}:{{{queue}}}:landing:{worker}")
}

/// `prefix:{queue}:acked:<worker>`: STRING holding the answer to one worker's last batch of
/// acknowledgements (`ack.lua`), so that a batch repeated after a lost reply is answered the
/// same; it expires minutes after the worker's last batch.
pub(crate) fn ack_answer(prefix: &str, queue: &str, worker: &str) -> String {
    format!("{prefix}:{{{queue}}}:acked:{worker}")
}

/// `prefix:{queue}:leases`: STRING counter from which every fetch draws its lease ids.
pub(crate) fn leases(prefix: &str, queue: &str) -> String {
    format!("{prefix}:{{{queue}}}:leases")
}

/// `prefix:{queue}:deaths`: HASH of the worker deaths counted against jobs of the queue (SHA-1
/// of the payload -> deaths), beside the payloads rather than inside them; absent when none.
pub(crate) fn deaths(prefix: &str, queue: &str) -> String {
    format!("{prefix}:{{{queue}}}:deaths")
}

/// `prefix:{queue}:poisoned`: LIST of jobs set aside as poison by a recovery, until a recoverer
/// has built their dead records and buried them.
pub(crate) fn poisoned(prefix: &str, queue: &str) -> String {
    format!("{prefix}:{{{queue}}}:poisoned")
}

/// `prefix:{queue}:periodic`: HASH of the queue's periodic schedules, name -> the last tick
/// claimed (ms since the epoch): the record that makes each tick fire once.
pub(crate) fn periodic_ticks(prefix: &str, queue: &str) -> String {
    format!("{prefix}:{{{queue}}}:periodic")
}

/// `prefix:{queue}:periodic:defs`: HASH of the queue's periodic schedules, name -> JSON of
/// their definition and next tick, for operators.
pub(crate) fn periodic_defs(prefix: &str, queue: &str) -> String {
    format!("{prefix}:{{{queue}}}:periodic:defs")
}

/// `prefix:{queue}:unique:<lock>`: STRING, the id of the job holding the uniqueness lock
/// `<lock>` (`id:<job id>` or `args:<task>:<hash>`), expiring at the end of its window.
pub(crate) fn unique_lock(prefix: &str, queue: &str, lock: &str) -> String {
    format!("{prefix}:{{{queue}}}:unique:{lock}")
}

/// `prefix:{queue}:rate`: HASH of the queue's rate limit (`n` jobs per `per` ms, `burst`) and
/// its token bucket (`tokens`, `at`); absent when the queue has no limit.
pub(crate) fn rate(prefix: &str, queue: &str) -> String {
    format!("{prefix}:{{{queue}}}:rate")
}

/// `prefix:{queue}:`: what every key of one queue starts with, for the scripts that name a
/// task's or a worker's keys themselves (`lua/fetch.lua`, `lua/limits.lua`).
pub(crate) fn of_queue(prefix: &str, queue: &str) -> String {
    format!("{prefix}:{{{queue}}}:")
}

/// `prefix:{queue}:active:`: what every worker's in-flight hash of the queue starts with.
pub(crate) fn active_of_queue(prefix: &str, queue: &str) -> String {
    format!("{prefix}:{{{queue}}}:active:")
}

/// `prefix:{queue}:limit:<task>`: HASH of a task's own limits (`max` runs at once; a rate as in
/// [`rate`]) and its token bucket; see `lua/limits.lua`.
pub(crate) fn task_limit(prefix: &str, queue: &str, task: &str) -> String {
    format!("{prefix}:{{{queue}}}:limit:{task}")
}

/// `prefix:{queue}:slots:<task>`: ZSET of the runs of a task holding one of its `max_running`
/// slots (`<worker>|<lease>`, scored by lease), each free again once its run lost its lease.
pub(crate) fn task_slots(prefix: &str, queue: &str, task: &str) -> String {
    format!("{prefix}:{{{queue}}}:slots:{task}")
}

/// `prefix:{queue}:waiting:<task>`: ZSET of a task's jobs waiting for room under its limits
/// (payload -> enqueue time, ms): pending jobs still, served oldest first before the pending
/// list (`lua/fetch.lua`).
pub(crate) fn task_waiting(prefix: &str, queue: &str, task: &str) -> String {
    format!("{prefix}:{{{queue}}}:waiting:{task}")
}

/// `prefix:{queue}:limited`: SET of the tasks of the queue that may have jobs in a waiting set.
pub(crate) fn limited_tasks(prefix: &str, queue: &str) -> String {
    format!("{prefix}:{{{queue}}}:limited")
}

/// `prefix:{queue}:cancelled`: ZSET of the jobs someone asked to stop while they ran (job id
/// -> ms asked, server clock), for the workers that missed the message on
/// [`cancel_channel`]; entries older than the recent window are trimmed.
pub(crate) fn cancelled(prefix: &str, queue: &str) -> String {
    format!("{prefix}:{{{queue}}}:cancelled")
}

/// `prefix:{queue}:cancel`: the pub/sub channel that tells every worker of the queue to stop a
/// running job (message: `<ms asked> <job id>`).
pub(crate) fn cancel_channel(prefix: &str, queue: &str) -> String {
    format!("{prefix}:{{{queue}}}:cancel")
}

/// `prefix:{queue}:watched`: ZSET of the jobs someone waits on (job id -> until when, ms):
/// their final outcomes are published on [`finished_channel`] (see `lua/notify.lua`).
pub(crate) fn watched(prefix: &str, queue: &str) -> String {
    format!("{prefix}:{{{queue}}}:watched")
}

/// `prefix:{queue}:finished`: the pub/sub channel where the final outcomes of watched jobs are
/// published (`<bytes>:<id><bytes>:<record>` for each job).
pub(crate) fn finished_channel(prefix: &str, queue: &str) -> String {
    format!("{prefix}:{{{queue}}}:finished")
}

/// The queue whose finished channel is `channel`, if it is one.
pub(crate) fn queue_of_finished_channel<'a>(prefix: &str, channel: &'a str) -> Option<&'a str> {
    channel
        .strip_prefix(prefix)?
        .strip_prefix(":{")?
        .strip_suffix("}:finished")
}

/// `prefix:{queue}:events`: the pub/sub channel where the queue's lifecycle events are
/// published (one JSON object per line, one or more lines per message; see `events.rs`).
pub(crate) fn events_channel(prefix: &str, queue: &str) -> String {
    format!("{prefix}:{{{queue}}}:events")
}

/// `prefix:{queue}:outbox`: LIST of errands, what the workflows of jobs that ended in the queue
/// do next (enqueue a chain's next step, record a group member's end, mark the steps of a
/// failed workflow dead), written by the settling scripts and run by the workers' couriers.
pub(crate) fn outbox(prefix: &str, queue: &str) -> String {
    format!("{prefix}:{{{queue}}}:outbox")
}

/// `prefix:{queue}:errands:<worker>`: LIST of the errands one worker's courier took from the
/// outbox and has not run yet (see `lua/claim_errands.lua`).
pub(crate) fn errands_in_hand(prefix: &str, queue: &str, worker: &str) -> String {
    format!("{prefix}:{{{queue}}}:errands:{worker}")
}

/// `prefix:{queue}:spawned:<id>`: STRING that marks a workflow step as enqueued (see
/// `lua/spawn.lua`), kept a day.
pub(crate) fn spawned(prefix: &str, queue: &str, id: &str) -> String {
    format!("{prefix}:{{{queue}}}:spawned:{id}")
}

/// `prefix:{queue}:group:<group>`: HASH of a group's state, in its callback's queue (see
/// `lua/group_member.lua`).
pub(crate) fn group(prefix: &str, queue: &str, group: &str) -> String {
    format!("{prefix}:{{{queue}}}:group:{group}")
}

/// `prefix:{queue}:paused`: STRING that exists while an operator has paused the queue: workers
/// take nothing from it; enqueues go on.
pub(crate) fn paused(prefix: &str, queue: &str) -> String {
    format!("{prefix}:{{{queue}}}:paused")
}

/// `prefix:{queue}:counts:<minute>`: HASH of how many jobs succeeded and failed in one minute
/// (minutes since the Unix epoch), in all and per second (see `lua/counts.lua`).
pub(crate) fn counts(prefix: &str, queue: &str, minute: u64) -> String {
    format!("{prefix}:{{{queue}}}:counts:{minute}")
}

/// `prefix:queues`: SET of every queue name jobs were enqueued to or workers served, so that
/// tools built from any binary find them all.
pub(crate) fn queues(prefix: &str) -> String {
    format!("{prefix}:queues")
}

/// How much creation time one results hash covers, in milliseconds: small enough that even a
/// bulk enqueue at a million jobs a second fills a hash with no more than 10,000 results (freed
/// in a few milliseconds when it expires), large enough that a batch of acknowledgements of
/// jobs enqueued together mostly writes one hash.
const RESULTS_SPAN_MS: u64 = 10;

/// `prefix:results:{<bucket>}`: HASH of the latest outcome (result, retrying, dead) of each job
/// created in one span of time (job id -> record), kept until the longest time any of its
/// records is to be kept. One hash written with one command per batch costs Redis a third of a
/// `SET` per job and keeps a result in less memory. The bucket is read from the id
/// (`t<span>` for dtask's ids, which begin with their creation time); an id dtask did not make
/// (a producer in another language) has a bucket of its own (`j<id>`).
pub(crate) fn results(prefix: &str, job_id: &str) -> String {
    results_of(prefix, &results_hash(job_id))
}

/// Which results hash the outcome of a job goes to (see [`results`]), without its key: jobs
/// whose outcomes share a hash have equal ones (a batch is grouped by these, and each key
/// written once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ResultsHash {
    /// The span of time a dtask id was created in.
    Span(u64),
    /// An id dtask did not make: a hash of its own.
    Own(String),
}

/// Which results hash the outcome of `job_id` goes to.
pub(crate) fn results_hash(job_id: &str) -> ResultsHash {
    match crate::envelope::JobId::created_ms(job_id) {
        Some(ms) => ResultsHash::Span(ms / RESULTS_SPAN_MS),
        None => ResultsHash::Own(job_id.to_owned()),
    }
}

/// The key of results hash `hash`.
pub(crate) fn results_of(prefix: &str, hash: &ResultsHash) -> String {
    match hash {
        ResultsHash::Span(span) => format!("{prefix}:results:{{t{span}}}"),
        ResultsHash::Own(job_id) => format!("{prefix}:results:{{j{job_id}}}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keys_share_one_hash_tag() {
        assert_eq!(pending("dtask", "emails"), "dtask:{emails}:pending");
        assert_eq!(active("p", "q", "w1"), "p:{q}:active:w1");
    }

    #[test]
    fn results_of_jobs_created_in_one_span_share_a_hash() {
        // 1 ms and 9 ms after the start of a span, and 10 ms later.
        let ms = |ms: u64| {
            let id = crate::envelope::JobId::at_ms(ms);
            results("p", id.as_str())
        };
        assert_eq!(ms(1_764_485_000_001), "p:results:{t176448500000}");
        assert_eq!(ms(1_764_485_000_009), "p:results:{t176448500000}");
        assert_eq!(ms(1_764_485_000_010), "p:results:{t176448500001}");
        // An id of another producer that merely looks like dtask's (its "time" is not one a
        // job could have been created at) gets a hash of its own, never a shared one.
        assert_eq!(
            results("p", "0000000000000000000042"),
            "p:results:{j0000000000000000000042}"
        );
        assert_eq!(results("p", "invoice-42"), "p:results:{jinvoice-42}");
        assert_eq!(results("p", "short"), "p:results:{jshort}");
    }
}
