//! The one error type of dtask's public API.

use std::time::Duration;

use crate::JobId;

/// Everything that can go wrong when enqueueing, waiting for, or running jobs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Redis command failed: Redis is unreachable, timed out, or refused the command.
    #[error("redis failed while {action}: {source}")]
    Redis {
        /// What dtask was doing, e.g. "enqueueing".
        action: &'static str,
        /// The error reported by the Redis client.
        #[source]
        source: redis::RedisError,
    },

    /// Fewer replicas than asked confirmed an enqueue in time ([`ClientBuilder::replicas`],
    /// [`Enqueue::replicas`]): the jobs are queued on the master and will run, but a failure of
    /// that master before its replicas catch up could lose them. Enqueueing again may queue
    /// them twice (name the job with [`Enqueue::id`] to make that safe).
    ///
    /// [`ClientBuilder::replicas`]: crate::ClientBuilder::replicas
    /// [`Enqueue::replicas`]: crate::Enqueue::replicas
    /// [`Enqueue::id`]: crate::Enqueue::id
    #[error(
        "only {confirmed} of {wanted} replicas confirmed the jobs enqueued to `{queue}` within {timeout:?}: they are queued, but a failure of the master now could lose them"
    )]
    NotReplicated {
        /// The queue enqueued to.
        queue: String,
        /// How many replicas were to confirm.
        wanted: u32,
        /// How many did in time.
        confirmed: u32,
        /// How long the enqueue waited for them.
        timeout: Duration,
    },

    /// The Redis URL could not be parsed (the password, if any, is not shown).
    #[error("invalid redis url `{url}`: {source}")]
    InvalidRedisUrl {
        /// The URL with its password replaced by `***`.
        url: String,
        /// Why it was refused.
        #[source]
        source: redis::RedisError,
    },

    /// A setting is missing or malformed.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The process-wide default client was already set, by `dtask::init` or a first enqueue.
    #[error(
        "the default dtask client is already initialized; call `dtask::init` once, before the first enqueue"
    )]
    AlreadyInitialized,

    /// A task's arguments could not be serialized.
    #[error("could not serialize the arguments of task `{task}`: {source}")]
    SerializeArgs {
        /// The task's name.
        task: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },

    /// A job's payload is larger than the client's limit; nothing was enqueued.
    #[error(
        "a job of task `{task}` would be {size} bytes, over the limit of {limit} bytes; store large data elsewhere and pass its key"
    )]
    PayloadTooLarge {
        /// The task's name.
        task: String,
        /// The payload's size in bytes.
        size: usize,
        /// The client's limit (`Client::with_max_payload_bytes`).
        limit: usize,
    },

    /// A middleware of the client (`ClientBuilder::enqueue_middleware`) refused the job; nothing
    /// of that call was enqueued.
    #[error("a middleware of the client refused to enqueue a job of task `{task}`: {reason}")]
    EnqueueRefused {
        /// The task's registered name.
        task: String,
        /// Why the middleware refused it.
        reason: String,
    },

    /// The job ran out of attempts (or could not run at all) and is in the dead set.
    #[error("job {id} is dead after {attempts} attempt(s): {error}")]
    JobDead {
        /// The job's id.
        id: JobId,
        /// How many times it ran.
        attempts: u32,
        /// The last error.
        error: String,
    },

    /// `wait()` on a job whose task keeps no result (`result_ttl = "0s"`): it would never end.
    #[error(
        "job {id} keeps no result to wait for: its task `{task}` is declared with result_ttl = \"0s\""
    )]
    NoResultKept {
        /// The job.
        id: JobId,
        /// Its task.
        task: String,
    },

    /// The job did not finish within the time the caller was willing to wait.
    #[error("job {id} did not finish within {waited:?}")]
    WaitTimeout {
        /// The job's id.
        id: JobId,
        /// How long the caller waited.
        waited: Duration,
    },

    /// A stored result could not be decoded as the task's output type.
    #[error("the result of job {id} does not decode as the task's output type: {source}")]
    DecodeResult {
        /// The job's id.
        id: JobId,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },

    /// Two tasks were registered under one name.
    #[error(
        "two tasks are registered as `{name}`: one at {first}, one at {second}; give one of them `#[task(name = \"...\")]`"
    )]
    DuplicateTask {
        /// The shared name.
        name: String,
        /// Where the first is defined (file:line).
        first: String,
        /// Where the second is defined (file:line).
        second: String,
    },

    /// The worker's background machinery failed in a way it cannot recover from.
    #[error("worker failed: {0}")]
    Worker(String),
}
