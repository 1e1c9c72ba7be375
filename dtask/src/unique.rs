//! Unique jobs: the options that make an enqueue refuse a duplicate (a job named by the caller
//! with `.id(..)`, or at most one job of a task with the same arguments with `.unique_for(..)`),
//! the lock key each is known by, and the headers that tell a worker to release the lock when
//! the job starts or ends. The lock itself is a Redis key of the queue (see
//! `enqueue_unique.lua` and `release_unique.lua`): taken in the same step as the job is queued,
//! released by the worker that ends the job, and expiring on its own if everything crashes.

use std::time::Duration;

use crate::envelope::{Envelope, JobId};

/// The header naming a job's uniqueness lock, for the worker to release.
pub(crate) const UNIQUE_HEADER: &str = "dtask-unique";
/// The header saying the lock goes when the job starts (absent: when it ends).
pub(crate) const UNTIL_START_HEADER: &str = "dtask-unique-until-start";
/// The header holding the lock's window (ms), for a revival from the dead set to take it again.
pub(crate) const WINDOW_HEADER: &str = "dtask-unique-for";

/// How long a lock taken by `.id(..)` without `.unique_for(..)` lasts at most, when nothing
/// releases it (every worker gone): a day.
pub(crate) const DEFAULT_ID_LOCK: Duration = Duration::from_secs(24 * 3600);

/// Until when a unique job keeps others of its kind out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UniqueUntil {
    /// Until it ends: succeeds, dies, is cancelled or deleted (the default). A duplicate
    /// enqueued while it waits, runs or waits for a retry is refused.
    #[default]
    Finish,
    /// Until it starts: a duplicate enqueued while it waits is refused, one enqueued once it
    /// runs is a new job.
    Start,
}

/// What a job is unique by.
#[derive(Debug, Clone)]
pub(crate) enum UniqueBy {
    /// The id the caller gave it.
    Id(JobId),
    /// Its task and arguments.
    Args,
}

/// The uniqueness an enqueue asked for.
#[derive(Debug, Clone)]
pub(crate) struct Unique {
    pub(crate) by: UniqueBy,
    /// How long the lock lasts at most (it is released sooner when the job ends).
    pub(crate) ttl: Duration,
    pub(crate) until: UniqueUntil,
}

impl Unique {
    /// The lock key of a job of `task` with arguments `args` (JSON).
    pub(crate) fn key(&self, task: &str, args: &str) -> String {
        match &self.by {
            UniqueBy::Id(id) => format!("id:{id}"),
            UniqueBy::Args => format!("args:{task}:{:016x}", fnv1a(task, args)),
        }
    }

    /// The headers that tell the worker about the lock `key`.
    pub(crate) fn headers(&self, key: String) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            (UNIQUE_HEADER, key),
            (WINDOW_HEADER, self.ttl.as_millis().to_string()),
        ];
        if self.until == UniqueUntil::Start {
            headers.push((UNTIL_START_HEADER, "1".to_owned()));
        }
        headers
    }
}

/// The lock a job holds, read from its envelope: its key, and whether it goes at start.
pub(crate) fn lock_of(envelope: &Envelope) -> Option<(&str, bool)> {
    let key = envelope.headers.get(UNIQUE_HEADER)?;
    Some((key, envelope.headers.contains_key(UNTIL_START_HEADER)))
}

/// The lock a job revived from the dead set takes again: its key, for its window (or a day).
pub(crate) fn lock_to_retake(envelope: &Envelope) -> Option<(&str, Duration)> {
    let (key, _) = lock_of(envelope)?;
    let window = envelope
        .headers
        .get(WINDOW_HEADER)
        .and_then(|ms| ms.parse().ok())
        .map_or(DEFAULT_ID_LOCK, Duration::from_millis);
    Some((key, window))
}

/// How long a lock stays once its job ended, the job's outcome being kept for `outcome_kept`:
/// a job named by its caller keeps its name while its outcome can be read (a second job of the
/// name would share the record), a job unique by its arguments lets the next one in at once.
pub(crate) fn kept_after_end(key: &str, outcome_kept: Duration) -> Duration {
    if key.starts_with("id:") {
        outcome_kept
    } else {
        Duration::ZERO
    }
}

/// FNV-1a (64 bits) of `task`, a zero byte and `args`: stable across processes, versions and
/// machines, which `std`'s hasher is not promised to be.
fn fnv1a(task: &str, args: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in task.bytes().chain([0]).chain(args.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_stable_and_tell_tasks_and_arguments_apart() {
        let by_args = Unique {
            by: UniqueBy::Args,
            ttl: Duration::from_secs(1),
            until: UniqueUntil::Finish,
        };
        // Fixed: a key must not change between versions, or a deploy would let duplicates in.
        assert_eq!(
            by_args.key("mail.send", r#"[42,"a"]"#),
            "args:mail.send:2f4e70578f015fcb"
        );
        assert_ne!(
            by_args.key("mail.send", "[42]"),
            by_args.key("mail.send", "[43]")
        );
        assert_ne!(by_args.key("a", "[1]"), by_args.key("b", "[1]"));
        assert_ne!(by_args.key("ab", "[1]"), by_args.key("a", "b[1]"));
        let by_id = Unique {
            by: UniqueBy::Id(JobId::from("invoice-42")),
            ..by_args
        };
        assert_eq!(by_id.key("mail.send", "[1]"), "id:invoice-42");
    }
}
