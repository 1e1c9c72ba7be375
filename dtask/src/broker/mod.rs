//! The broker: the only module that spells a Redis key or a Redis command.
//!
//! Every state change that touches more than one key is one Lua script (see `lua/`), so a job is
//! always in exactly one place: pending, scheduled, retry, in flight on one worker, or dead.
//! Commands that need no atomicity across keys are single commands.

mod admin;
mod cancels;
mod cluster;
mod connection;
mod durable;
mod events;
mod finished;
mod keys;
mod outbox;
mod periodic;
mod scripts;
mod sentinel;
mod subscription;
#[cfg(feature = "testing")]
mod testing;
#[cfg(test)]
mod tests;
mod unique;

use std::sync::Arc;
use std::time::Duration;

use redis::RedisError;

pub(crate) use admin::{Purgeable, Revival, TimedState};
pub(crate) use cancels::{CANCEL_KEPT, CancelRequest};
use connection::Target;
pub(crate) use connection::{Conn, DEFAULT_RESPONSE_TIMEOUT};
pub(crate) use events::{EventFeed, Passing, PassingNote};

pub(crate) use finished::{FEED_PING, FinishedFeed, JobOutcome};
pub(crate) use outbox::{MemberEnded, NewGroup};
pub(crate) use periodic::Claim;
pub(crate) use unique::UniqueLock;

/// The hash slots of a Redis Cluster.
pub(crate) const SLOTS: usize = 16384;

/// The hash slot of `queue`'s keys (they share the hash tag `{queue}`).
pub(crate) fn queue_slot(queue: &str) -> u16 {
    cluster::slot_of(format!("{{{queue}}}").as_bytes())
}

use crate::error::Error;

/// A job to put into a queue: its payload and, for a delayed job, when it is due.
pub(crate) struct NewJob<'a> {
    pub(crate) queue: &'a str,
    pub(crate) payload: &'a str,
    pub(crate) due: Option<Due>,
}

/// How many replicas must confirm an enqueue before it returns, and how long to wait for them
/// (`WAIT` on the queue's node, after the write).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Replicas {
    pub(crate) count: u32,
    pub(crate) timeout: Duration,
}

/// The longest a write waits for its replicas: the durable connection's replies may take this
/// long beyond the response timeout.
pub(crate) const MAX_REPLICA_WAIT: Duration = Duration::from_secs(60);

/// What an enqueue tells of its new jobs, beside enqueueing them.
#[derive(Debug, Default)]
pub(crate) struct News<'a> {
    /// Their short records (queued, scheduled) by job id, kept for `ttl`.
    pub(crate) records: Vec<(&'a str, &'a str)>,
    pub(crate) ttl: Duration,
    /// Their events, as lines of one message per queue.
    pub(crate) events: Vec<(&'a str, String)>,
}

/// A pipeline of commands some of which must succeed (the enqueue itself) and others may fail
/// (records, events: logged), for one queue on a cluster (any on a server).
struct Pipe<'a> {
    queue: &'a str,
    pipe: redis::Pipeline,
    /// Per command, whether its failure fails the call.
    essential: Vec<bool>,
    /// The `WAIT` at the end, if any: its index, the queue its jobs went to, and how many
    /// replicas it needs.
    wait: Option<(usize, &'a str, Replicas)>,
}

impl<'a> Pipe<'a> {
    fn new(queue: &'a str) -> Pipe<'a> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        Pipe {
            queue,
            pipe,
            essential: Vec::new(),
            wait: None,
        }
    }

    /// Ends the pipeline with `WAIT`, so that it fails unless `replicas` confirm its writes
    /// (to `queue`) in time.
    fn wait_for(&mut self, queue: &'a str, replicas: Replicas) {
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas.count)
            .arg(replicas.timeout.as_millis().max(1) as u64);
        self.wait = Some((self.essential.len(), queue, replicas));
        self.add(wait, true);
    }

    fn add(&mut self, cmd: redis::Cmd, essential: bool) {
        self.pipe.add_command(cmd);
        self.essential.push(essential);
    }

    /// Sends the commands; the first failure of an essential one is the error (`action`
    /// failed), the others are logged.
    async fn send(self, conn: &Conn, action: &'static str) -> Result<(), Error> {
        if self.essential.is_empty() {
            return Ok(());
        }
        let mut conn = conn.clone();
        let replies: Vec<redis::RedisResult<redis::Value>> = self
            .pipe
            .query_async(&mut conn)
            .await
            .map_err(redis_err(action))?;
        for (index, (reply, essential)) in replies.into_iter().zip(self.essential).enumerate() {
            match reply {
                Err(error) if self.wait.is_some_and(|(at, _, _)| at == index) => {
                    // The writes before it went through: queued, not confirmed.
                    let (_, queue, replicas) = self.wait.expect("just matched");
                    tracing::warn!(%error, queue, "WAIT for replicas failed after an enqueue");
                    replicas.confirmed(queue, 0)?;
                }
                Err(error) if essential => return Err(redis_err(action)(error)),
                Err(error) => {
                    tracing::debug!(%error, "could not record or announce enqueued jobs")
                }
                Ok(value) => {
                    if let Some((at, queue, replicas)) = self.wait
                        && at == index
                    {
                        let confirmed: u32 =
                            redis::from_redis_value(value).map_err(|e| Error::Redis {
                                action,
                                source: e.into(),
                            })?;
                        replicas.confirmed(queue, confirmed)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Adds to `pipe` the write of `fields` (job id, record) into the results hash `key` with
/// `write` (`HSET`; `HSETNX`, field by field, to write only where a job has no record), and
/// its expiry: at least `ttl` (set if it has none, pushed later if it has a sooner one).
fn add_hash_records(
    pipe: &mut Pipe<'_>,
    key: &str,
    fields: &[(&str, &str)],
    ttl: Duration,
    write: &str,
) {
    if write == "HSET" {
        let mut hset = redis::cmd("HSET");
        hset.arg(key);
        for (id, record) in fields {
            hset.arg(*id).arg(*record);
        }
        pipe.add(hset, false);
    } else {
        for (id, record) in fields {
            let mut set = redis::cmd(write);
            set.arg(key).arg(*id).arg(*record);
            pipe.add(set, false);
        }
    }
    let ttl_ms = outcome_ttl_ms(ttl);
    for condition in ["NX", "GT"] {
        let mut expire = redis::cmd("PEXPIRE");
        expire.arg(key).arg(ttl_ms).arg(condition);
        pipe.add(expire, false);
    }
}

/// When a delayed job is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Due {
    /// This long after Redis receives it, on the Redis server's clock.
    After(Duration),
    /// At this time, ms since the epoch (a time the caller chose).
    AtMs(u64),
}

/// A job moved in flight on a worker, under a lease id unique to this run of it.
#[derive(Debug)]
pub(crate) struct Leased {
    pub(crate) lease: String,
    pub(crate) payload: Vec<u8>,
}

/// What one fetch or adoption took: jobs leased to the worker, whether the first is a suspect,
/// whether the queue is paused (then nothing is taken), and how long until its rate limit lets
/// a job start when the limit held jobs back.
#[derive(Debug)]
pub(crate) struct Taken {
    pub(crate) jobs: Vec<Leased>,
    pub(crate) suspect: bool,
    pub(crate) paused: bool,
    pub(crate) rate_wait: Option<Duration>,
    /// The leases of the runs admitted from their tasks' waiting sets (they may start at once).
    pub(crate) admitted: Vec<String>,
    /// Whether jobs still wait for their tasks' limits, and how long until the first may start
    /// by its task's rate (`Some(None)`: when a run of its task ends).
    pub(crate) limit_wait: Option<Option<Duration>>,
}

/// What admitting a run of a task with limits found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// The run may start: it holds a slot and spent a token.
    Admitted,
    /// The job went to its task's waiting set; a job may start in this long by the rate
    /// (None: when a run of the task ends).
    Parked(Option<Duration>),
    /// The worker no longer holds the run's lease: nothing changed.
    NotHeld,
}

/// A task's limits as a worker passes them to [`Broker::admit`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct TaskLimits {
    pub(crate) max_running: Option<u32>,
    pub(crate) rate: Option<crate::RateLimit>,
}

/// The longest a fetcher waits on a queue whose rate limit is spent before it looks again, so
/// that a limit lifted or raised meanwhile takes effect within it.
const RATE_RECHECK: Duration = Duration::from_secs(1);

/// A rate limit's wait in ms as read from a script (none when 0), at most [`RATE_RECHECK`].
fn rate_wait(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms).min(RATE_RECHECK))
}

/// A run that ended in success: which queue and lease, and the outcome record to keep for it
/// (job id, record, and how long when not the worker's default) unless the task keeps none.
pub(crate) struct Finished {
    pub(crate) queue: Arc<str>,
    pub(crate) lease: String,
    pub(crate) outcome: Option<(String, String, Option<Duration>)>,
    /// What the job's workflow does next, for the queue's outbox (see `workflow.rs`).
    pub(crate) errand: Option<String>,
}

/// What a fenced settle (retry, bury) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fenced {
    /// Done now, at this time (server clock, ms).
    Settled(u64),
    /// Done already, by an earlier call with this lease whose reply was lost.
    AlreadySettled,
    /// The lease is not held: the job was taken back and belongs to another run. Nothing
    /// changed.
    NotHeld,
}

impl Fenced {
    fn from_reply(reply: i64) -> Fenced {
        match u64::try_from(reply) {
            Ok(at) => Fenced::Settled(at),
            Err(_) if reply == -2 => Fenced::AlreadySettled,
            Err(_) => Fenced::NotHeld,
        }
    }

    /// Whether this run held its lease (now or in an earlier call).
    pub(crate) fn held(self) -> bool {
        self != Fenced::NotHeld
    }
}

/// What became of a worker's in-flight jobs when they were taken back.
pub(crate) struct Requeued {
    /// Jobs returned to their queue (or to its suspects list).
    pub(crate) requeued: u64,
    /// Jobs set aside as poison (too many workers died running them), to be buried.
    pub(crate) poisoned: u64,
    /// The payloads of the jobs returned.
    pub(crate) payloads: Vec<Vec<u8>>,
}

/// Limits applied when a job is buried in the dead set.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeadLimits {
    pub(crate) max_len: u64,
    pub(crate) max_age: Duration,
}

/// The outcome of one run of the forwarder over one queue.
pub(crate) struct Forwarded {
    pub(crate) moved: u64,
    /// How long until the earliest job left is due, when there is one.
    pub(crate) next_due_in: Option<Duration>,
}

/// How long the deaths hash of a queue outlives its last change: a job whose workers die less
/// often than this is not taken for poison.
const DEATHS_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

/// A handle on Redis for one key prefix. Cheap to clone: clones share one multiplexed connection.
#[derive(Clone)]
pub(crate) struct Broker {
    target: Arc<Target>,
    conn: Conn,
    prefix: Arc<str>,
    /// The URL connected to, with its password hidden: safe to log.
    url: Arc<str>,
    /// Set for good when the server behind a single URL turns out to be a cluster node (one
    /// shard of a cluster): Redis then refuses a script whose keys span slots, so outcomes are
    /// stored apart from acknowledgements, as on a cluster.
    outcomes_apart: Arc<std::sync::atomic::AtomicBool>,
    /// The queues this broker has noted in the queue registry already (once per process).
    registered: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// The connections of enqueues that wait for replicas.
    durable: Arc<durable::DurablePool>,
    /// How long a command may take (the durable connection's take up to `MAX_REPLICA_WAIT`
    /// more).
    response_timeout: Duration,
}

/// Outcome records bound for one results hash, and how long the longest-kept of them is to be
/// kept (ms).
#[derive(Default)]
struct OutcomesOfSpan<'a> {
    records: Vec<OutcomeToKeep<'a>>,
    ttl_ms: u64,
}

/// One outcome record to keep: the job's id, the record, how long it is kept (ms), and which
/// run of a batch it belongs to (its index).
struct OutcomeToKeep<'a> {
    run: usize,
    job_id: &'a str,
    record: &'a str,
    ttl_ms: u64,
}

/// The minute (since the Unix epoch) and its second now, by this machine's clock: where the
/// counts of jobs that end now go.
fn minute_and_second() -> (u64, u64) {
    let seconds = crate::clock::now_ms() / 1000;
    (seconds / 60, seconds % 60)
}

/// What a burial writes: the dead record (kept within `limits`), what the job's workflow does
/// now (an errand), and the job's outcome.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Burial<'a> {
    pub(crate) record: &'a str,
    pub(crate) limits: DeadLimits,
    pub(crate) errand: Option<&'a str>,
    pub(crate) outcome: Option<DeadOutcome<'a>>,
}

/// The outcome of a job being buried: stored in the same step as its burial on one server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeadOutcome<'a> {
    pub(crate) job_id: &'a str,
    /// Its outcome record (dead, and why).
    pub(crate) record: &'a str,
    /// How long the record is kept.
    pub(crate) ttl: Duration,
}

/// `n` (at most a batch's size, which `Broker::ack` bounds) as two bytes, high first, as
/// `ack.lua` reads its plan.
fn two_bytes(n: usize) -> [u8; 2] {
    u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes()
}

/// The longest an outcome record is kept: 100 years, far past any use, and small enough that
/// the scripts' numbers (doubles) carry it exactly.
const OUTCOME_TTL_MAX: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// How long an outcome record kept for `ttl` lives, in ms: at least 1, at most
/// [`OUTCOME_TTL_MAX`].
fn outcome_ttl_ms(ttl: Duration) -> u64 {
    ttl.clamp(Duration::from_millis(1), OUTCOME_TTL_MAX)
        .as_millis() as u64
}

/// Groups `items` (each of the job `id_of` gives) by the results hash they go to, in the order
/// the hashes are first met.
fn group_by_results_hash<T>(
    prefix: &str,
    items: impl IntoIterator<Item = T>,
    id_of: impl Fn(&T) -> &str,
) -> Vec<(String, Vec<T>)> {
    let mut hashes: Vec<(keys::ResultsHash, Vec<T>)> = Vec::new();
    for item in items {
        let hash = keys::results_hash(id_of(&item));
        match hashes.iter_mut().find(|(h, _)| *h == hash) {
            Some((_, items)) => items.push(item),
            None => hashes.push((hash, vec![item])),
        }
    }
    hashes
        .into_iter()
        .map(|(hash, items)| (keys::results_of(prefix, &hash), items))
        .collect()
}

/// Groups outcomes by the results hash they go to, in the order the hashes are first met,
/// with how long the longest-kept of each is to be kept.
fn by_results_hash<'a>(
    prefix: &str,
    outcomes: impl Iterator<Item = OutcomeToKeep<'a>>,
) -> Vec<(String, OutcomesOfSpan<'a>)> {
    group_by_results_hash(prefix, outcomes, |outcome| outcome.job_id)
        .into_iter()
        .map(|(key, records)| {
            let ttl_ms = records.iter().map(|r| r.ttl_ms).max().unwrap_or(0);
            (key, OutcomesOfSpan { records, ttl_ms })
        })
        .collect()
}

/// The call of `set_outcomes.lua` that stores `span`'s outcomes in the results hash `key`.
fn set_outcomes(key: String, span: &OutcomesOfSpan<'_>) -> redis::ScriptInvocation<'static> {
    let mut invocation = scripts::SET_OUTCOMES.prepare_invoke();
    invocation.key(key).arg(span.ttl_ms);
    for outcome in &span.records {
        invocation.arg(outcome.job_id).arg(outcome.record);
    }
    invocation
}

impl Replicas {
    /// `count` replicas within `timeout` (capped at [`MAX_REPLICA_WAIT`], at least 1 ms); None
    /// for 0 replicas: no wait.
    pub(crate) fn asked(count: u32, timeout: Duration) -> Option<Replicas> {
        (count > 0).then(|| Replicas {
            count,
            timeout: timeout.clamp(Duration::from_millis(1), MAX_REPLICA_WAIT),
        })
    }

    /// Ok when `confirmed` replicas are enough; else the error the caller sees.
    fn confirmed(self, queue: &str, confirmed: u32) -> Result<(), Error> {
        if confirmed >= self.count {
            return Ok(());
        }
        Err(Error::NotReplicated {
            queue: queue.to_owned(),
            wanted: self.count,
            confirmed,
            timeout: self.timeout,
        })
    }
}

fn redis_err(action: &'static str) -> impl FnOnce(RedisError) -> Error {
    move |source| Error::Redis { action, source }
}

impl Broker {
    /// Connects to the Redis at `url`, for keys under `prefix`; for a `rediss://` URL, trusting
    /// the certificate authority `tls_ca` (PEM) when given, else the system's roots. A command
    /// unanswered after `response_timeout` fails (and a connection that keeps failing so is
    /// replaced).
    pub(crate) async fn connect(
        url: &str,
        prefix: &str,
        tls_ca: Option<Vec<u8>>,
        response_timeout: Duration,
    ) -> Result<Broker, Error> {
        Broker::connect_to(
            url,
            prefix,
            tls_ca,
            response_timeout,
            sentinel::Wanted::Master,
        )
        .await
    }

    /// [`Broker::connect`] for reading only: through a `redis+sentinel://` URL, to a replica.
    pub(crate) async fn connect_reader(
        url: &str,
        prefix: &str,
        tls_ca: Option<Vec<u8>>,
        response_timeout: Duration,
    ) -> Result<Broker, Error> {
        Broker::connect_to(
            url,
            prefix,
            tls_ca,
            response_timeout,
            sentinel::Wanted::Replica,
        )
        .await
    }

    async fn connect_to(
        url: &str,
        prefix: &str,
        tls_ca: Option<Vec<u8>>,
        response_timeout: Duration,
        wanted: sentinel::Wanted,
    ) -> Result<Broker, Error> {
        let invalid = |source| Error::InvalidRedisUrl {
            url: crate::redact::redis_url(url),
            source,
        };
        if url.starts_with("rediss://") || url.starts_with("rediss+sentinel://") {
            // rustls needs a process-wide crypto provider; another part of the application may
            // have installed one already, which is as good.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        // Several comma-separated node URLs mean a Redis Cluster.
        let nodes: Vec<&str> = url.split(',').map(str::trim).collect();
        let target = if sentinel::is_sentinel_url(url) {
            sentinel::Sentinels::parse(url, tls_ca, wanted)
                .map(|sentinels| Target::sentinel(sentinels, response_timeout))
        } else if nodes.len() > 1 {
            Target::cluster(&nodes, tls_ca, response_timeout)
        } else {
            let info = redis::IntoConnectionInfo::into_connection_info(url)
                .map_err(invalid)?
                .set_tcp_settings(connection::tcp_settings());
            connection::client_of(info, tls_ca.as_deref())
                .map(|client| Target::server(client, response_timeout))
        }
        .map_err(invalid)?;
        let conn = target.shared().await.map_err(redis_err("connecting"))?;
        Ok(Broker {
            target: Arc::new(target),
            conn,
            prefix: prefix.into(),
            url: crate::redact::redis_url(url).into(),
            outcomes_apart: Arc::default(),
            registered: Arc::default(),
            durable: Arc::new(durable::DurablePool::new()),
            response_timeout,
        })
    }

    /// A connection of its own for an enqueue that waits for `replicas`; None when none is
    /// free within their timeout (the enqueue then goes on the shared connection, and is not
    /// confirmed).
    async fn durable_conn(&self, replicas: Replicas) -> Result<Option<durable::Lent<'_>>, Error> {
        self.durable
            .lend(
                &self.target,
                self.response_timeout + MAX_REPLICA_WAIT,
                replicas.timeout,
            )
            .await
            .map_err(redis_err("connecting"))
    }

    /// Waits until `replicas` confirm the writes sent so far on `conn` to the node of `queue`.
    async fn wait_replicas(
        &self,
        conn: &Conn,
        queue: &str,
        replicas: Replicas,
    ) -> Result<(), Error> {
        // A read of one of the queue's keys first, so that the `WAIT` goes to the queue's node
        // on a cluster.
        let mut pipe = Pipe::new(queue);
        let mut exists = redis::cmd("EXISTS");
        exists.arg(keys::pending(&self.prefix, queue));
        pipe.add(exists, false);
        pipe.wait_for(queue, replicas);
        pipe.send(conn, "waiting for replicas").await
    }

    /// The Redis URL, with its password hidden.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The server's `maxmemory-policy`; `None` when the server does not let us read it (an ACL
    /// user without `CONFIG`, or a managed Redis).
    pub(crate) async fn eviction_policy(&self) -> Option<String> {
        let mut conn = self.conn.clone();
        let reply: Result<Vec<String>, _> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query_async(&mut conn)
            .await;
        reply.ok().and_then(|pair| pair.into_iter().nth(1))
    }

    /// The key prefix this broker works under.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Opens a connection of its own for blocking commands, whose replies may take up to
    /// `response_timeout`: a blocking command holds its whole socket, so it must not share the
    /// multiplexed one, and a socket gone silent must still be noticed.
    pub(crate) async fn blocking_connection(
        &self,
        response_timeout: Duration,
    ) -> Result<Conn, Error> {
        self.target
            .blocking(response_timeout)
            .await
            .map_err(redis_err("opening a blocking connection"))
    }

    /// The same broker on a connection of its own whose commands may take up to
    /// `response_timeout`, made on the calling runtime (on a cluster, with a slot map of its
    /// own, read on that runtime): for a part that must keep talking to Redis when the shared
    /// connection's runtime is starved (the heartbeat).
    pub(crate) async fn dedicated(&self, response_timeout: Duration) -> Result<Broker, Error> {
        let target = Arc::new(self.target.detached());
        let conn = target
            .with_timeout(response_timeout)
            .await
            .map_err(redis_err("connecting"))?;
        Ok(Broker {
            target,
            conn,
            ..self.clone()
        })
    }

    /// Adds jobs: ready ones to the end of their queue's pending list, delayed ones to its
    /// scheduled set (a delay counts from the Redis server's clock, read first when a job has
    /// one). One round trip on a server, whatever the number of jobs (two with a delay); on a
    /// cluster, one per queue (a pipeline must stay within one hash slot).
    ///
    /// `news` tells of the new jobs: their short records are written first, in the same
    /// pipeline (so that no worker can take a job before its record exists, and a record never
    /// lands over a later one), and their events are published after them. Both are best
    /// effort: a failure is logged, the jobs are enqueued all the same.
    ///
    /// With `replicas`, each pipeline ends with `WAIT`: the call fails with
    /// [`Error::NotReplicated`] unless that many replicas confirmed the jobs in time.
    pub(crate) async fn enqueue(
        &self,
        jobs: &[NewJob<'_>],
        news: &News<'_>,
        replicas: Option<Replicas>,
    ) -> Result<(), Error> {
        self.register_new_queues(jobs.iter().map(|job| job.queue))
            .await;
        // A delay counts on the clock of the node of the first delayed job's queue (one clock
        // for the whole call, as an enqueue names one queue).
        let server_now_ms = match jobs
            .iter()
            .find(|job| matches!(job.due, Some(Due::After(_))))
        {
            Some(job) => Some(self.server_time_ms(job.queue).await?),
            None => None,
        };
        let due_ms = |job: &NewJob<'_>| match job.due {
            None => None,
            Some(Due::AtMs(due)) => Some(due),
            Some(Due::After(delay)) => {
                Some(server_now_ms.unwrap_or_default() + delay.as_millis() as u64)
            }
        };
        let mut pipes: Vec<Pipe<'_>> = Vec::new();
        let cluster = self.target.is_cluster();
        // On a cluster the records live in other slots: they go first, one pipeline per
        // results hash, for the same reason.
        if cluster {
            self.write_records_apart(news).await;
        } else {
            let mut records = Pipe::new("");
            self.add_records(&mut records, news);
            pipes.push(records);
        }
        let mut i = 0;
        while i < jobs.len() {
            let job = &jobs[i];
            let pipe = match pipes.last_mut() {
                Some(pipe) if !cluster || pipe.queue == job.queue => pipe,
                _ => {
                    pipes.push(Pipe::new(job.queue));
                    pipes.last_mut().expect("just pushed")
                }
            };
            // Consecutive jobs of one queue due alike go into one command.
            let run_end = jobs[i..]
                .iter()
                .position(|next| next.queue != job.queue || next.due != job.due)
                .map_or(jobs.len(), |len| i + len);
            let payloads = jobs[i..run_end].iter().map(|job| job.payload);
            match due_ms(job) {
                None => {
                    let mut cmd = redis::cmd("RPUSH");
                    cmd.arg(keys::pending(&self.prefix, job.queue))
                        .arg(payloads.collect::<Vec<_>>());
                    pipe.add(cmd, true);
                }
                Some(due_ms) => {
                    let mut cmd = redis::cmd("ZADD");
                    cmd.arg(keys::scheduled(&self.prefix, job.queue));
                    for payload in payloads {
                        cmd.arg(due_ms).arg(payload);
                    }
                    pipe.add(cmd, true);
                }
            }
            i = run_end;
        }
        for (queue, lines) in &news.events {
            let pipe = match pipes
                .iter_mut()
                .find(|pipe| !cluster || pipe.queue == *queue)
            {
                Some(pipe) => pipe,
                None => {
                    pipes.push(Pipe::new(queue));
                    pipes.last_mut().expect("just pushed")
                }
            };
            let mut cmd = redis::cmd(self.events_publish());
            cmd.arg(keys::events_channel(&self.prefix, queue))
                .arg(lines);
            pipe.add(cmd, false);
        }
        let lent = match replicas {
            Some(replicas) => self.durable_conn(replicas).await?,
            None => None,
        };
        let conn = lent.as_ref().map_or(&self.conn, |lent| &lent.conn);
        // Too few replicas for one queue's jobs: the others are still sent (and waited for);
        // the first such answer is the error.
        let mut unconfirmed = None;
        let mut sends = Vec::with_capacity(pipes.len());
        for mut pipe in pipes {
            let queue = match pipe.queue {
                "" => jobs.first().map_or("", |job| job.queue),
                queue => queue,
            };
            if let Some(replicas) = replicas
                && lent.is_none()
            {
                // Every durable connection waits for replicas already: sent unconfirmed.
                unconfirmed.get_or_insert(Error::NotReplicated {
                    queue: queue.to_owned(),
                    wanted: replicas.count,
                    confirmed: 0,
                    timeout: replicas.timeout,
                });
            } else if let Some(replicas) = replicas {
                pipe.wait_for(queue, replicas);
            }
            sends.push(pipe.send(conn, "enqueueing"));
        }
        // Each queue's pipeline (a partitioned queue's partitions, on a cluster) at once: one
        // round trip for them all, and one queue's failure holds up no other's.
        let mut failed = None;
        for sent in futures_util::future::join_all(sends).await {
            match sent {
                Ok(()) => {}
                Err(error @ Error::NotReplicated { .. }) => {
                    unconfirmed.get_or_insert(error);
                }
                Err(error) => {
                    failed.get_or_insert(error);
                }
            }
        }
        match (failed, unconfirmed) {
            (Some(error), _) | (None, Some(error)) => Err(error),
            (None, None) => Ok(()),
        }
    }

    /// Writes the short records of `news` (best effort, failures logged): in one pipeline on
    /// a server, one per results hash on a cluster (a pipeline stays within one slot).
    pub(crate) async fn write_records(&self, news: &News<'_>) {
        if self.target.is_cluster() {
            self.write_records_apart(news).await;
            return;
        }
        let mut pipe = Pipe::new("");
        self.add_records(&mut pipe, news);
        if let Err(error) = pipe.send(&self.conn, "recording where jobs stand").await {
            tracing::debug!(%error, "could not record where jobs stand");
        }
    }

    /// [`Broker::write_records`] on a cluster: one pipeline per results hash, all at once.
    async fn write_records_apart(&self, news: &News<'_>) {
        let writes = self.records_by_hash(news).into_iter().map(|(key, fields)| {
            let mut pipe = Pipe::new("");
            add_hash_records(&mut pipe, &key, &fields, news.ttl, "HSET");
            async move {
                if let Err(error) = pipe.send(&self.conn, "recording where jobs stand").await {
                    tracing::debug!(%error, "could not record where jobs stand");
                }
            }
        });
        futures_util::future::join_all(writes).await;
    }

    /// The records of `news` by the results hash they go to.
    fn records_by_hash<'a>(&self, news: &News<'a>) -> Vec<(String, Vec<(&'a str, &'a str)>)> {
        group_by_results_hash(&self.prefix, news.records.iter().copied(), |(id, _)| id)
    }

    /// Adds to `pipe` the writes of the short records of `news`: one `HSET` per results hash,
    /// and its expiry (set if it has none, pushed later if it has a sooner one).
    fn add_records(&self, pipe: &mut Pipe<'_>, news: &News<'_>) {
        for (key, fields) in self.records_by_hash(news) {
            add_hash_records(pipe, &key, &fields, news.ttl, "HSET");
        }
    }

    /// Moves up to `max` jobs from `queue` to `worker`'s in-flight hash, each under a fresh
    /// lease, the first of them a suspect when `take_suspect` and there is one; returns them
    /// oldest first, and whether the first is a suspect. A paused queue gives nothing.
    pub(crate) async fn fetch(
        &self,
        queue: &str,
        worker: &str,
        max: usize,
        take_suspect: bool,
    ) -> Result<Taken, Error> {
        let mut conn = self.conn.clone();
        type Reply = (Vec<Vec<u8>>, i64, i64, u64, Vec<String>, i64, u64);
        let call_keys = [
            keys::pending(&self.prefix, queue),
            keys::active(&self.prefix, queue, worker),
            keys::workers(&self.prefix, queue),
            keys::suspects(&self.prefix, queue),
            keys::leases(&self.prefix, queue),
            keys::paused(&self.prefix, queue),
            keys::rate(&self.prefix, queue),
            keys::limited_tasks(&self.prefix, queue),
        ];
        let (payloads, suspect, paused, wait, admitted, limit_wait, before_first): Reply =
            scripts::ScriptCall::new(&scripts::FETCH, &call_keys, 4, 64 + worker.len())
                .arg(max)
                .arg(worker)
                .arg(if take_suspect { "1" } else { "0" })
                .arg(keys::of_queue(&self.prefix, queue))
                .invoke_async(&mut conn)
                .await
                .map_err(redis_err("fetching jobs"))?;
        // The leases follow the number before the first one by one (see `fetch.lua`).
        let jobs = payloads
            .into_iter()
            .zip(1..)
            .map(|(payload, k)| Leased {
                lease: (before_first + k).to_string(),
                payload,
            })
            .collect();
        Ok(Taken {
            jobs,
            suspect: suspect == 1,
            paused: paused == 1,
            rate_wait: rate_wait(wait),
            admitted,
            limit_wait: (limit_wait >= 0).then(|| rate_wait(limit_wait as u64)),
        })
    }

    /// Waits up to `block` for a job on `queue` and moves it to `worker`'s landing list, on a
    /// connection from [`Broker::blocking_connection`]; true when one landed. The caller then
    /// [adopts](Broker::adopt_landed) it.
    pub(crate) async fn fetch_blocking(
        &self,
        conn: &mut Conn,
        queue: &str,
        worker: &str,
        block: Duration,
    ) -> Result<bool, Error> {
        let landed: Option<Vec<u8>> = redis::cmd("BLMOVE")
            .arg(keys::pending(&self.prefix, queue))
            .arg(keys::landing(&self.prefix, queue, worker))
            .arg("LEFT")
            .arg("RIGHT")
            .arg(block.as_secs_f64())
            .query_async(conn)
            .await
            .map_err(redis_err("waiting for a job"))?;
        Ok(landed.is_some())
    }

    /// Moves every job in `worker`'s landing list for `queue` into its in-flight hash, each
    /// under a fresh lease; when the queue is paused, back to the head of the queue instead.
    pub(crate) async fn adopt_landed(&self, queue: &str, worker: &str) -> Result<Taken, Error> {
        let mut conn = self.conn.clone();
        let (jobs, paused, wait): (Vec<(String, Vec<u8>)>, i64, u64) = scripts::ADOPT
            .key(keys::landing(&self.prefix, queue, worker))
            .key(keys::active(&self.prefix, queue, worker))
            .key(keys::leases(&self.prefix, queue))
            .key(keys::paused(&self.prefix, queue))
            .key(keys::pending(&self.prefix, queue))
            .key(keys::rate(&self.prefix, queue))
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("adopting landed jobs"))?;
        Ok(Taken {
            jobs: leased(jobs),
            suspect: false,
            paused: paused == 1,
            rate_wait: rate_wait(wait),
            admitted: Vec::new(),
            limit_wait: None,
        })
    }

    /// Lets the run under `lease` of `task` (with `limits`) start, or parks its job in the
    /// task's waiting set, in the order of its enqueue time, until its limits let it start.
    pub(crate) async fn admit(
        &self,
        queue: &str,
        worker: &str,
        lease: &str,
        task: &str,
        enqueued_at_ms: u64,
        limits: TaskLimits,
    ) -> Result<Admission, Error> {
        let mut conn = self.conn.clone();
        let rate = limits.rate.map_or((0, 0, 0), |rate| {
            (u64::from(rate.jobs()), rate.per_ms(), rate.burst_size())
        });
        let (code, wait): (i64, u64) = scripts::ADMIT
            .key(keys::active(&self.prefix, queue, worker))
            .key(keys::task_limit(&self.prefix, queue, task))
            .key(keys::task_slots(&self.prefix, queue, task))
            .key(keys::task_waiting(&self.prefix, queue, task))
            .key(keys::limited_tasks(&self.prefix, queue))
            .arg(lease)
            .arg(worker)
            .arg(keys::active_of_queue(&self.prefix, queue))
            .arg(task)
            .arg(limits.max_running.unwrap_or(0))
            .arg(rate.0)
            .arg(rate.1)
            .arg(rate.2)
            .arg(enqueued_at_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("admitting a job of a task with limits"))?;
        Ok(match code {
            1 => Admission::Admitted,
            0 => Admission::Parked(rate_wait(wait)),
            _ => Admission::NotHeld,
        })
    }

    /// Acknowledges a batch of finished runs of `worker`: settles each in its in-flight hash by
    /// its lease (one script per queue) and stores the outcome of each run whose lease was held
    /// in its results hash (for its task's time or `ttl`); a stale run (its job was taken back
    /// meanwhile) changes nothing. Returns, per run in order, whether its lease was held.
    ///
    /// `batch` is unique per batch of this worker: every call with it (a repeat after a lost
    /// reply, a first try that reached Redis late) gets the same answer.
    ///
    /// On a server the script stores the outcomes itself, fenced in the same step, so that no
    /// crash can come between a settled run and its outcome. On a cluster, results hashes live
    /// in slots of their own: the outcomes follow the answer, best effort.
    pub(crate) async fn ack(
        &self,
        worker: &str,
        batch: u64,
        jobs: &[&Finished],
        ttl: Duration,
    ) -> Result<Vec<bool>, Error> {
        // The script's plan numbers runs, results hashes and TTLs in two bytes each (the acker
        // sends at most 512 runs a batch).
        if jobs.len() > usize::from(u16::MAX) {
            return Err(Error::Worker(format!(
                "{} acknowledgements in one batch: at most {} fit one script",
                jobs.len(),
                u16::MAX
            )));
        }
        let mut held = vec![false; jobs.len()];
        let mut queues: Vec<&str> = Vec::new();
        for job in jobs {
            if !queues.contains(&&*job.queue) {
                queues.push(&job.queue);
            }
        }
        let inline = self.inline_outcomes();
        let (minute, second) = minute_and_second();
        // The outcomes of the batch, each with the index of its run in `jobs`.
        let outcomes = || {
            jobs.iter().enumerate().filter_map(|(run, job)| {
                let (job_id, record, task_ttl) = job.outcome.as_ref()?;
                Some(OutcomeToKeep {
                    run,
                    job_id,
                    record,
                    ttl_ms: outcome_ttl_ms(task_ttl.unwrap_or(ttl)),
                })
            })
        };
        let mut conn = self.conn.clone();
        for queue in &queues {
            // Each run of the queue, and its position among them (1-based).
            let mut positions = vec![0; jobs.len()];
            let mut members = 0;
            for (run, job) in jobs.iter().enumerate() {
                if &*job.queue == *queue {
                    members += 1;
                    positions[run] = members;
                }
            }
            // The outcomes of the queue's runs, by the results hash they go to (inline only).
            let of_queue = || outcomes().filter(|outcome| positions[outcome.run] > 0);
            let hashes = if inline {
                by_results_hash(&self.prefix, of_queue())
            } else {
                Vec::new()
            };
            let mut call_keys = vec![
                keys::active(&self.prefix, queue, worker),
                keys::deaths(&self.prefix, queue),
                keys::ack_answer(&self.prefix, queue, worker),
                keys::counts(&self.prefix, queue, minute),
                keys::watched(&self.prefix, queue),
                keys::outbox(&self.prefix, queue),
            ];
            call_keys.extend(hashes.iter().map(|(key, _)| key.clone()));
            // Room for every run's lease, outcome and errand, so the command never grows.
            let (args, bytes) = jobs.iter().filter(|job| &*job.queue == *queue).fold(
                (16, 256),
                |(args, bytes), job| {
                    let (id, record) = job
                        .outcome
                        .as_ref()
                        .map_or((0, 0), |(id, record, _)| (id.len(), record.len()));
                    let errand = job.errand.as_ref().map_or(0, String::len);
                    (
                        args + 5,
                        bytes + 64 + job.lease.len() + id + record + errand,
                    )
                },
            );
            let mut invocation = scripts::ScriptCall::new(&scripts::ACK, &call_keys, args, bytes);
            invocation
                .arg(batch)
                .arg(if inline { "inline" } else { "apart" })
                .arg(members);
            for job in jobs.iter().filter(|job| &*job.queue == *queue) {
                invocation.arg(job.lease.as_str());
            }
            let errands: Vec<(usize, &str)> = jobs
                .iter()
                .enumerate()
                .filter_map(|(run, job)| Some((positions[run], job.errand.as_deref()?)))
                .filter(|(position, _)| *position > 0)
                .collect();
            invocation.arg(errands.len());
            for (position, errand) in errands {
                invocation.arg(position).arg(errand);
            }
            if inline {
                // The plan: per run, which results hash (1-based) its outcome goes to and
                // which TTL (1-based) it is kept for, two bytes each; then the TTLs; then the
                // outcomes in the runs' order.
                let mut plan = vec![0u8; 4 * members];
                let mut ttls: Vec<u64> = Vec::new();
                for (hash, (_, span)) in hashes.iter().enumerate() {
                    for outcome in &span.records {
                        let ttl = match ttls.iter().position(|ttl| *ttl == outcome.ttl_ms) {
                            Some(at) => at,
                            None => {
                                ttls.push(outcome.ttl_ms);
                                ttls.len() - 1
                            }
                        };
                        let at = 4 * (positions[outcome.run] - 1);
                        plan[at..at + 2].copy_from_slice(&two_bytes(hash + 1));
                        plan[at + 2..at + 4].copy_from_slice(&two_bytes(ttl + 1));
                    }
                }
                invocation.arg(plan).arg(ttls.len());
                for ttl in &ttls {
                    invocation.arg(*ttl);
                }
                for outcome in of_queue() {
                    invocation.arg(outcome.job_id).arg(outcome.record);
                }
            }
            invocation
                .arg(keys::finished_channel(&self.prefix, queue))
                .arg(second);
            let answer: Vec<i64> = match invocation.invoke_async(&mut conn).await {
                Err(error)
                    if inline
                        && error.kind()
                            == redis::ErrorKind::Server(redis::ServerErrorKind::CrossSlot) =>
                {
                    // A cluster node behind a single URL: store outcomes apart from now on.
                    // Nothing was changed by the refused script; the caller tries again.
                    self.outcomes_apart
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!(
                        "the Redis server is a cluster node: outcomes are stored apart from acknowledgements"
                    );
                    return Err(redis_err("acknowledging jobs")(error));
                }
                answer => answer.map_err(redis_err("acknowledging jobs"))?,
            };
            let mut answers = answer.into_iter();
            for (i, job) in jobs.iter().enumerate() {
                if &*job.queue == *queue {
                    held[i] = answers.next() == Some(1);
                }
            }
        }
        if !inline {
            let kept = outcomes().filter(|outcome| held[outcome.run]);
            // Best effort: the jobs are settled; an outcome whose node is down is lost (and
            // logged), and must not hold back the acknowledgement of the others.
            if let Err((lost, error)) = self.store_outcomes_apart(kept).await {
                tracing::error!(lost, %error, "could not store the results of jobs that succeeded (their cluster node did not answer); those results are lost");
            }
            for queue in &queues {
                let finished: Vec<(&str, &str)> = outcomes()
                    .filter(|outcome| held[outcome.run] && &*jobs[outcome.run].queue == *queue)
                    .map(|outcome| (outcome.job_id, outcome.record))
                    .collect();
                // Best effort too: a waiter not told reads the outcome within a minute.
                if let Err(error) = self.notify_finished(queue, &finished).await {
                    tracing::warn!(%error, queue, "could not tell waiters that their jobs finished");
                }
            }
        }
        Ok(held)
    }

    /// Whether acknowledgements store outcomes in the same script (one server, not a cluster
    /// node).
    pub(crate) fn inline_outcomes(&self) -> bool {
        !self.target.is_cluster()
            && !self
                .outcomes_apart
                .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stores outcomes on a cluster, one request per results hash,
    /// so that a node that is down loses only its own. Returns how many outcomes were lost, and
    /// the first error, when some were.
    async fn store_outcomes_apart<'a>(
        &self,
        outcomes: impl Iterator<Item = OutcomeToKeep<'a>>,
    ) -> Result<(), (usize, String)> {
        let mut writes = tokio::task::JoinSet::new();
        for (key, span) in by_results_hash(&self.prefix, outcomes) {
            let count = span.records.len();
            let invocation = set_outcomes(key, &span);
            let mut conn = self.conn.clone();
            writes.spawn(async move {
                invocation
                    .invoke_async::<()>(&mut conn)
                    .await
                    .map_err(|error| (count, error.to_string()))
            });
        }
        let mut lost = 0;
        let mut first_error = None;
        while let Some(written) = writes.join_next().await {
            if let Err((count, error)) = written.unwrap_or_else(|e| Err((1, e.to_string()))) {
                lost += count;
                first_error.get_or_insert(error);
            }
        }
        match first_error {
            Some(error) => Err((lost, error)),
            None => Ok(()),
        }
    }

    /// Stores the final outcome (succeeded or dead) of a job of `queue` in its results hash for
    /// `ttl`, then tells whoever waits on it.
    pub(crate) async fn set_final(
        &self,
        queue: &str,
        job_id: &str,
        record: &str,
        ttl: Duration,
    ) -> Result<(), Error> {
        self.set_result(job_id, record, ttl).await?;
        // Best effort: a waiter not told reads the outcome within a minute.
        if let Err(error) = self.notify_finished(queue, &[(job_id, record)]).await {
            tracing::warn!(%error, queue, "could not tell waiters that a job finished");
        }
        Ok(())
    }

    /// Stores a job's final outcome (succeeded or dead) in its results hash for `ttl`.
    pub(crate) async fn set_result(
        &self,
        job_id: &str,
        record: &str,
        ttl: Duration,
    ) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        let outcome = OutcomeToKeep {
            run: 0,
            job_id,
            record,
            ttl_ms: outcome_ttl_ms(ttl),
        };
        let Some((key, span)) = by_results_hash(&self.prefix, std::iter::once(outcome)).pop()
        else {
            return Ok(());
        };
        set_outcomes(key, &span)
            .invoke_async::<()>(&mut conn)
            .await
            .map_err(redis_err("storing a job's outcome"))
    }

    /// Stores that a job is to be retried after `attempts`, unless it already has a final
    /// outcome (or a later attempt started); true when written.
    pub(crate) async fn set_retrying(
        &self,
        job_id: &str,
        attempts: u32,
        record: &str,
        ttl: Duration,
    ) -> Result<bool, Error> {
        let note = PassingNote {
            job_id,
            record,
            attempts,
        };
        Ok(self.set_passing(Passing::Retrying, &[note], ttl).await? == 1)
    }

    /// Reads a job's latest outcome record, if one is kept.
    pub(crate) async fn result(&self, job_id: &str) -> Result<Option<String>, Error> {
        let mut conn = self.conn.clone();
        redis::cmd("HGET")
            .arg(keys::results(&self.prefix, job_id))
            .arg(job_id)
            .query_async(&mut conn)
            .await
            .map_err(redis_err("reading a job's outcome"))
    }

    /// Settles the run holding `lease` in `worker`'s in-flight hash by scheduling
    /// `next_payload` in the retry set, due `delay` from now on the server's clock (the due
    /// time is in [`Fenced::Settled`]).
    pub(crate) async fn retry(
        &self,
        queue: &str,
        worker: &str,
        lease: &str,
        next_payload: &[u8],
        delay: Duration,
        failed: bool,
    ) -> Result<Fenced, Error> {
        let mut conn = self.conn.clone();
        let (minute, second) = minute_and_second();
        let due: i64 = scripts::RETRY
            .key(keys::active(&self.prefix, queue, worker))
            .key(keys::retry(&self.prefix, queue))
            .key(keys::deaths(&self.prefix, queue))
            .key(keys::counts(&self.prefix, queue, minute))
            .arg(lease)
            .arg(next_payload)
            .arg(delay.as_millis() as u64)
            .arg(if failed {
                second.to_string()
            } else {
                String::new()
            })
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("scheduling a retry"))?;
        self.forget_settled(queue, worker, &[lease]).await;
        Ok(Fenced::from_reply(due))
    }

    /// Removes the settled markers of runs from `worker`'s in-flight hash. Best effort: a marker
    /// left behind is skipped by recovery and removed by the next reclaim or shutdown.
    async fn forget_settled(&self, queue: &str, worker: &str, leases: &[&str]) {
        let mut conn = self.conn.clone();
        let markers: Vec<String> = leases.iter().map(|l| keys::settled_marker(l)).collect();
        let removed: Result<(), _> = redis::cmd("HDEL")
            .arg(keys::active(&self.prefix, queue, worker))
            .arg(markers)
            .query_async(&mut conn)
            .await;
        if let Err(error) = removed {
            tracing::debug!(%error, "removing settled runs failed; they are skipped meanwhile");
        }
    }

    /// Settles the run holding `lease` in `worker`'s in-flight hash by adding `record` to the
    /// dead set, trimmed to `limits` (the time of death is in [`Fenced::Settled`]).
    pub(crate) async fn bury(
        &self,
        queue: &str,
        worker: &str,
        lease: &str,
        burial: Burial<'_>,
    ) -> Result<Fenced, Error> {
        let Burial {
            record,
            limits,
            errand,
            outcome,
        } = burial;
        let (minute, second) = minute_and_second();
        let inline = outcome.is_some() && self.inline_outcomes();
        let mut invocation = scripts::BURY.prepare_invoke();
        invocation
            .key(keys::active(&self.prefix, queue, worker))
            .key(keys::dead(&self.prefix, queue))
            .key(keys::deaths(&self.prefix, queue))
            .key(keys::counts(&self.prefix, queue, minute))
            .key(keys::outbox(&self.prefix, queue))
            .arg(lease);
        let second = second.to_string();
        let mut more = vec![second.as_str(), errand.unwrap_or_default()];
        let (ttl_ms, channel);
        match &outcome {
            Some(outcome) if inline => {
                invocation
                    .key(keys::results(&self.prefix, outcome.job_id))
                    .key(keys::watched(&self.prefix, queue));
                ttl_ms = outcome_ttl_ms(outcome.ttl).to_string();
                channel = keys::finished_channel(&self.prefix, queue);
                more.extend(["inline", outcome.job_id, outcome.record, &ttl_ms, &channel]);
            }
            _ => more.push("apart"),
        }
        let died = match self
            .bury_with(invocation, record, limits, &more, "burying a job")
            .await
        {
            Err(Error::Redis { source, .. })
                if inline
                    && source.kind()
                        == redis::ErrorKind::Server(redis::ServerErrorKind::CrossSlot) =>
            {
                // A cluster node behind a single URL: store outcomes apart from now on.
                // Nothing was changed by the refused script; the caller tries again.
                self.outcomes_apart
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                return Err(redis_err("burying a job")(source));
            }
            died => died?,
        };
        let fenced = Fenced::from_reply(died);
        if let Some(outcome) = outcome.filter(|_| !inline && fenced.held()) {
            // Apart (a cluster): after the burial, best effort as every result stored apart.
            if let Err(error) = self
                .set_final(queue, outcome.job_id, outcome.record, outcome.ttl)
                .await
            {
                tracing::warn!(%error, job_id = outcome.job_id, "could not record a dead job's outcome");
            }
        }
        self.forget_settled(queue, worker, &[lease]).await;
        Ok(fenced)
    }

    /// Up to `limit` jobs of `queue` set aside as poison, waiting for their dead record.
    pub(crate) async fn poisoned(&self, queue: &str, limit: usize) -> Result<Vec<Vec<u8>>, Error> {
        let mut conn = self.conn.clone();
        redis::cmd("LRANGE")
            .arg(keys::poisoned(&self.prefix, queue))
            .arg(0)
            .arg(limit.saturating_sub(1))
            .query_async(&mut conn)
            .await
            .map_err(redis_err("reading poisoned jobs"))
    }

    /// Moves one poisoned job of `queue` to the dead set as `record`, trimmed to `limits`.
    /// Returns the time of death, or None when another recoverer buried it first.
    pub(crate) async fn bury_poisoned(
        &self,
        queue: &str,
        payload: &[u8],
        record: &str,
        limits: DeadLimits,
        errand: Option<&str>,
    ) -> Result<Option<u64>, Error> {
        let mut invocation = scripts::BURY_POISONED.prepare_invoke();
        invocation
            .key(keys::poisoned(&self.prefix, queue))
            .key(keys::dead(&self.prefix, queue))
            .key(keys::outbox(&self.prefix, queue))
            .arg(payload);
        let died = self
            .bury_with(
                invocation,
                record,
                limits,
                &[errand.unwrap_or_default()],
                "burying a poison job",
            )
            .await?;
        Ok(u64::try_from(died).ok())
    }

    /// Runs a burying script (`bury`, `bury_poisoned`) whose keys and first argument are set:
    /// adds the dead record and the dead set's caps, and returns its answer.
    async fn bury_with(
        &self,
        mut invocation: redis::ScriptInvocation<'_>,
        record: &str,
        limits: DeadLimits,
        more: &[&str],
        action: &'static str,
    ) -> Result<i64, Error> {
        invocation
            .arg(record)
            .arg(limits.max_len)
            .arg(limits.max_age.as_millis() as u64);
        for arg in more {
            invocation.arg(*arg);
        }
        let mut conn = self.conn.clone();
        invocation
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err(action))
    }

    /// Moves the scheduled and retry jobs of `queue` that are due (on the server's clock) to
    /// its pending list, at most `limit` from each set.
    pub(crate) async fn forward_due(&self, queue: &str, limit: usize) -> Result<Forwarded, Error> {
        let mut conn = self.conn.clone();
        let (moved, next_due): (u64, i64) = scripts::FORWARD_DUE
            .key(keys::scheduled(&self.prefix, queue))
            .key(keys::retry(&self.prefix, queue))
            .key(keys::pending(&self.prefix, queue))
            .arg(limit)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("forwarding due jobs"))?;
        Ok(Forwarded {
            moved,
            next_due_in: u64::try_from(next_due).ok().map(Duration::from_millis),
        })
    }

    /// Records, at the Redis server's clock, that `worker` is alive and serving `queue`;
    /// returns that clock's time (ms since the epoch).
    pub(crate) async fn heartbeat(&self, queue: &str, worker: &str) -> Result<u64, Error> {
        let mut conn = self.conn.clone();
        scripts::HEARTBEAT
            .key(keys::workers(&self.prefix, queue))
            .arg(worker)
            .invoke_async::<u64>(&mut conn)
            .await
            .map_err(redis_err("sending a heartbeat"))
    }

    /// The clock of the Redis holding `queue` (on a cluster, its node's), ms since the epoch.
    pub(crate) async fn server_time_ms(&self, queue: &str) -> Result<u64, Error> {
        let mut conn = self.conn.clone();
        scripts::TIME
            .key(keys::pending(&self.prefix, queue))
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("reading the server time"))
    }

    /// The workers of `queue` whose last heartbeat is older than `lease`, by the clock of the
    /// queue's Redis (on a cluster, its node's), and that cutoff (ms since the epoch).
    pub(crate) async fn lapsed_workers(
        &self,
        queue: &str,
        lease: Duration,
    ) -> Result<(u64, Vec<String>), Error> {
        let mut conn = self.conn.clone();
        let (cutoff, workers): (i64, Vec<String>) = scripts::LAPSED
            .key(keys::workers(&self.prefix, queue))
            .arg(lease.as_millis() as u64)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("listing lapsed workers"))?;
        Ok((cutoff.max(0) as u64, workers))
    }

    /// Returns the in-flight jobs of a worker whose heartbeat is at or before `cutoff_ms` to
    /// `queue`, counting a worker death against each; a job one death short of `max_deaths`
    /// goes to the suspects list, and a job with `max_deaths` to the poisoned list (see
    /// [`Broker::poisoned`]). None when the worker is alive after all.
    pub(crate) async fn requeue_lapsed(
        &self,
        queue: &str,
        worker: &str,
        cutoff_ms: u64,
        max_deaths: u32,
    ) -> Result<Option<Requeued>, Error> {
        self.requeue_inflight(queue, worker, "lapsed", cutoff_ms, max_deaths)
            .await
    }

    /// Returns all of `worker`'s in-flight jobs of `queue` to the front of the queue and removes
    /// the worker from the queue's registry (used by the worker itself at shutdown); their
    /// payloads.
    pub(crate) async fn requeue_own(
        &self,
        queue: &str,
        worker: &str,
    ) -> Result<Vec<Vec<u8>>, Error> {
        Ok(self
            .requeue_inflight(queue, worker, "always", 0, u32::MAX)
            .await?
            .map_or_else(Vec::new, |requeued| requeued.payloads))
    }

    async fn requeue_inflight(
        &self,
        queue: &str,
        worker: &str,
        mode: &str,
        cutoff_ms: u64,
        max_deaths: u32,
    ) -> Result<Option<Requeued>, Error> {
        let mut conn = self.conn.clone();
        let answer: Vec<redis::Value> = scripts::REQUEUE_INFLIGHT
            .key(keys::workers(&self.prefix, queue))
            .key(keys::active(&self.prefix, queue, worker))
            .key(keys::landing(&self.prefix, queue, worker))
            .key(keys::pending(&self.prefix, queue))
            .key(keys::suspects(&self.prefix, queue))
            .key(keys::deaths(&self.prefix, queue))
            .key(keys::poisoned(&self.prefix, queue))
            .key(keys::errands_in_hand(&self.prefix, queue, worker))
            .key(keys::outbox(&self.prefix, queue))
            .arg(worker)
            .arg(mode)
            .arg(cutoff_ms)
            .arg(max_deaths)
            .arg(max_deaths.saturating_sub(1).max(1))
            .arg(DEATHS_KEPT.as_millis() as u64)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("requeueing in-flight jobs"))?;
        let mut answer = answer.into_iter();
        let mut number = || -> Result<i64, Error> {
            redis::from_redis_value(answer.next().unwrap_or(redis::Value::Nil))
                .map_err(|error| redis_err("requeueing in-flight jobs")(error.into()))
        };
        let (requeued, poisoned) = (number()?, number()?);
        if requeued < 0 {
            return Ok(None);
        }
        let payloads = answer
            .map(redis::from_redis_value::<Vec<u8>>)
            .collect::<Result<_, _>>()
            .map_err(|error| redis_err("requeueing in-flight jobs")(error.into()))?;
        Ok(Some(Requeued {
            requeued: requeued as u64,
            poisoned: poisoned as u64,
            payloads,
        }))
    }

    /// Returns to the front of `queue` every job in `worker`'s in-flight hash whose lease is not
    /// among `held` (see `reclaim.lua`). Returns how many.
    pub(crate) async fn reclaim(
        &self,
        queue: &str,
        worker: &str,
        held: &[String],
    ) -> Result<u64, Error> {
        let mut conn = self.conn.clone();
        let mut invocation = scripts::RECLAIM.prepare_invoke();
        invocation
            .key(keys::active(&self.prefix, queue, worker))
            .key(keys::pending(&self.prefix, queue))
            .arg(held);
        invocation
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("reclaiming lost fetches"))
    }

    /// Number of jobs waiting in `queue`'s pending list.
    pub(crate) async fn pending_len(&self, queue: &str) -> Result<u64, Error> {
        self.card("LLEN", keys::pending(&self.prefix, queue)).await
    }

    /// Number of jobs of `queue` waiting in their tasks' waiting sets for their limits.
    pub(crate) async fn waiting_len(&self, queue: &str) -> Result<u64, Error> {
        let tasks = self.limited_tasks(queue).await?;
        let mut conn = self.conn.clone();
        if tasks.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for task in &tasks {
            pipe.cmd("ZCARD")
                .arg(keys::task_waiting(&self.prefix, queue, task));
        }
        let lens: Vec<u64> = pipe
            .query_async(&mut conn)
            .await
            .map_err(redis_err("counting jobs"))?;
        Ok(lens.iter().sum())
    }

    /// Number of jobs in `queue`'s scheduled set.
    pub(crate) async fn scheduled_len(&self, queue: &str) -> Result<u64, Error> {
        self.card("ZCARD", keys::scheduled(&self.prefix, queue))
            .await
    }

    /// Number of jobs in `queue`'s retry set.
    pub(crate) async fn retry_len(&self, queue: &str) -> Result<u64, Error> {
        self.card("ZCARD", keys::retry(&self.prefix, queue)).await
    }

    /// Number of jobs in `queue`'s suspects list.
    pub(crate) async fn suspects_len(&self, queue: &str) -> Result<u64, Error> {
        self.card("LLEN", keys::suspects(&self.prefix, queue)).await
    }

    /// Number of records in `queue`'s dead set.
    pub(crate) async fn dead_len(&self, queue: &str) -> Result<u64, Error> {
        self.card("ZCARD", keys::dead(&self.prefix, queue)).await
    }

    /// Number of jobs in flight on `worker` for `queue` (settled markers of runs that just
    /// ended are not counted).
    pub(crate) async fn inflight_len(&self, queue: &str, worker: &str) -> Result<u64, Error> {
        let mut conn = self.conn.clone();
        let fields: Vec<String> = redis::cmd("HKEYS")
            .arg(keys::active(&self.prefix, queue, worker))
            .query_async(&mut conn)
            .await
            .map_err(redis_err("counting jobs"))?;
        let held = fields
            .iter()
            .filter(|f| !keys::is_settled_marker(f))
            .count() as u64;
        let landed = self
            .card("LLEN", keys::landing(&self.prefix, queue, worker))
            .await?;
        Ok(held + landed)
    }

    async fn card(&self, command: &str, key: String) -> Result<u64, Error> {
        let mut conn = self.conn.clone();
        redis::cmd(command)
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(redis_err("counting jobs"))
    }

    /// Pushes a raw payload onto the end of `queue`, bypassing every check. For tests and repair
    /// tools that need to put exactly these bytes into a queue.
    pub(crate) async fn push_raw(&self, queue: &str, payload: &[u8]) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        redis::cmd("RPUSH")
            .arg(keys::pending(&self.prefix, queue))
            .arg(payload)
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err("pushing a raw payload"))
    }
}

/// Pairs of lease and payload, as the fetching scripts answer.
fn leased(pairs: Vec<(String, Vec<u8>)>) -> Vec<Leased> {
    pairs
        .into_iter()
        .map(|(lease, payload)| Leased { lease, payload })
        .collect()
}
