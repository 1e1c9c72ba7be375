//! The broker: the only module that spells a Redis key or a Redis command.
//!
//! Every state change that touches more than one key is one Lua script (see `lua/`), so a job is
//! always in exactly one place: pending, scheduled, retry, in flight on one worker, or dead.
//! Commands that need no atomicity across keys are single commands.

mod connection;
mod keys;
mod scripts;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use redis::RedisError;

pub(crate) use connection::Conn;
use connection::Target;

use crate::error::Error;

/// A job to put into a queue: its payload and, for a delayed job, when it is due (ms).
pub(crate) struct NewJob<'a> {
    pub(crate) queue: &'a str,
    pub(crate) payload: &'a str,
    pub(crate) due_ms: Option<u64>,
}

/// Where a job is held in flight on its worker: under `field` in the in-flight hash (fetched
/// by `fetch`), or, when `field` is None, in the landing list (taken by a blocking wait).
pub(crate) struct Held<'a> {
    pub(crate) field: Option<&'a str>,
    pub(crate) payload: &'a [u8],
}

/// A job that ran to success: where it was in flight, and the outcome record to keep for it
/// (job id, record, and how long when not the worker's default) unless the task keeps none.
pub(crate) struct Finished {
    pub(crate) queue: Arc<str>,
    /// Its field in the in-flight hash; None when it is in the landing list.
    pub(crate) field: Option<String>,
    pub(crate) payload: Vec<u8>,
    pub(crate) outcome: Option<(String, String, Option<Duration>)>,
}

/// What became of a worker's in-flight jobs when they were taken back.
pub(crate) struct Requeued {
    /// Jobs returned to the front of their queue.
    pub(crate) requeued: u64,
    /// Ids of the jobs buried as poison: too many workers died running them.
    pub(crate) buried: Vec<String>,
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
    pub(crate) next_due_ms: Option<u64>,
}

/// A handle on Redis for one key prefix. Cheap to clone: clones share one multiplexed connection.
#[derive(Clone)]
pub(crate) struct Broker {
    target: Arc<Target>,
    conn: Conn,
    prefix: Arc<str>,
    /// The URL connected to, with its password hidden: safe to log.
    url: Arc<str>,
}

fn redis_err(action: &'static str) -> impl FnOnce(RedisError) -> Error {
    move |source| Error::Redis { action, source }
}

impl Broker {
    /// Connects to the Redis at `url`, for keys under `prefix`; for a `rediss://` URL, trusting
    /// the certificate authority `tls_ca` (PEM) when given, else the system's roots.
    pub(crate) async fn connect(
        url: &str,
        prefix: &str,
        tls_ca: Option<Vec<u8>>,
    ) -> Result<Broker, Error> {
        let invalid = |source| Error::InvalidRedisUrl {
            url: crate::redact::redis_url(url),
            source,
        };
        if url.starts_with("rediss://") {
            // rustls needs a process-wide crypto provider; another part of the application may
            // have installed one already, which is as good.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        // Several comma-separated node URLs mean a Redis Cluster.
        let nodes: Vec<&str> = url.split(',').map(str::trim).collect();
        let target = if nodes.len() > 1 {
            Target::cluster(&nodes, tls_ca)
        } else {
            match tls_ca {
                Some(root_cert) => redis::Client::build_with_tls(
                    url,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root_cert),
                    },
                ),
                None => redis::Client::open(url),
            }
            .map(Target::server)
        }
        .map_err(invalid)?;
        let conn = target.shared().await.map_err(redis_err("connecting"))?;
        Ok(Broker {
            target: Arc::new(target),
            conn,
            prefix: prefix.into(),
            url: crate::redact::redis_url(url).into(),
        })
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

    /// Opens a connection of its own for blocking commands, with no response timeout: a blocking
    /// command holds its whole socket, so it must not share the multiplexed one.
    pub(crate) async fn blocking_connection(&self) -> Result<Conn, Error> {
        self.target
            .blocking()
            .await
            .map_err(redis_err("opening a blocking connection"))
    }

    /// Adds jobs: ready ones to the end of their queue's pending list, delayed ones to its
    /// scheduled set. One round trip on a server, whatever the number of jobs; on a cluster, one
    /// per queue (a pipeline must stay within one hash slot).
    pub(crate) async fn enqueue(&self, jobs: &[NewJob<'_>]) -> Result<(), Error> {
        let mut pipes: Vec<(&str, redis::Pipeline)> = Vec::new();
        let mut i = 0;
        while i < jobs.len() {
            let job = &jobs[i];
            let pipe = match pipes.last_mut() {
                Some((queue, pipe)) if !self.target.is_cluster() || *queue == job.queue => pipe,
                _ => {
                    pipes.push((job.queue, redis::pipe()));
                    &mut pipes.last_mut().expect("just pushed").1
                }
            };
            match job.due_ms {
                Some(due) => {
                    pipe.cmd("ZADD")
                        .arg(keys::scheduled(&self.prefix, job.queue))
                        .arg(due)
                        .arg(job.payload)
                        .ignore();
                    i += 1;
                }
                None => {
                    // Consecutive ready jobs of one queue go into one RPUSH.
                    let mut cmd = redis::cmd("RPUSH");
                    cmd.arg(keys::pending(&self.prefix, job.queue));
                    while i < jobs.len() && jobs[i].due_ms.is_none() && jobs[i].queue == job.queue {
                        cmd.arg(jobs[i].payload);
                        i += 1;
                    }
                    pipe.add_command(cmd).ignore();
                }
            }
        }
        let mut conn = self.conn.clone();
        for (_, pipe) in pipes {
            pipe.query_async::<()>(&mut conn)
                .await
                .map_err(redis_err("enqueueing"))?;
        }
        Ok(())
    }

    /// Moves up to `max` jobs from `queue` to `worker`'s in-flight hash, the first of them a
    /// suspect when `take_suspect` and there is one; returns each one's field there and its
    /// payload, oldest first, and whether the first is a suspect.
    pub(crate) async fn fetch(
        &self,
        queue: &str,
        worker: &str,
        max: usize,
        take_suspect: bool,
    ) -> Result<(Vec<(String, Vec<u8>)>, bool), Error> {
        let mut conn = self.conn.clone();
        let (jobs, suspect): (Vec<(String, Vec<u8>)>, i64) = scripts::FETCH
            .key(keys::pending(&self.prefix, queue))
            .key(keys::active(&self.prefix, queue, worker))
            .key(keys::workers(&self.prefix, queue))
            .key(keys::suspects(&self.prefix, queue))
            .arg(max)
            .arg(worker)
            .arg(if take_suspect { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("fetching jobs"))?;
        Ok((jobs, suspect == 1))
    }

    /// Waits up to `block` for a job on `queue` and moves it to `worker`'s landing list (in
    /// flight, like the hash), on a connection from [`Broker::blocking_connection`].
    pub(crate) async fn fetch_blocking(
        &self,
        conn: &mut Conn,
        queue: &str,
        worker: &str,
        block: Duration,
    ) -> Result<Option<Vec<u8>>, Error> {
        redis::cmd("BLMOVE")
            .arg(keys::pending(&self.prefix, queue))
            .arg(keys::landing(&self.prefix, queue, worker))
            .arg("LEFT")
            .arg("RIGHT")
            .arg(block.as_secs_f64())
            .query_async(conn)
            .await
            .map_err(redis_err("waiting for a job"))
    }

    /// Acknowledges finished jobs of `worker`: stores each one's outcome (when given) under its
    /// result key for its task's time, or `ttl`, then removes it from the worker's in-flight list. Results are
    /// written first: a crash in between re-runs a job, it never loses one. One round trip on a
    /// server; on a cluster, the results (each in its own slot) go out concurrently first.
    pub(crate) async fn ack_many<'a>(
        &self,
        worker: &str,
        jobs: impl Iterator<Item = &'a Finished> + Clone,
        ttl: Duration,
    ) -> Result<(), Error> {
        let result_commands = jobs.clone().filter_map(|job| {
            let (job_id, record, task_ttl) = job.outcome.as_ref()?;
            let ttl_ms = task_ttl.unwrap_or(ttl).as_millis().max(1) as u64;
            let mut cmd = redis::cmd("SET");
            cmd.arg(keys::result(&self.prefix, job_id))
                .arg(record)
                .arg("PX")
                .arg(ttl_ms);
            Some(cmd)
        });
        let mut pipe = redis::pipe();
        if self.target.is_cluster() {
            let mut writes = tokio::task::JoinSet::new();
            for cmd in result_commands {
                let mut conn = self.conn.clone();
                writes.spawn(async move { cmd.query_async::<()>(&mut conn).await });
            }
            while let Some(written) = writes.join_next().await {
                written
                    .map_err(|e| Error::Worker(format!("storing results failed: {e}")))?
                    .map_err(redis_err("storing job results"))?;
            }
        } else {
            for cmd in result_commands {
                pipe.add_command(cmd).ignore();
            }
        }
        // One HDEL per queue takes every job fetched into the in-flight hash; a job that a
        // blocking wait landed is removed from the (short) landing list. On a cluster each
        // queue's removals go in a pipeline of their own.
        let mut releases: Vec<(&str, redis::Cmd)> = Vec::new();
        // Index in `releases` of each queue's HDEL, so that fields join their own queue's HDEL
        // and never another command.
        let mut hdels: Vec<(&str, usize)> = Vec::new();
        let mut by_queue: Vec<(&str, redis::Pipeline)> = Vec::new();
        for job in jobs {
            let queue: &str = &job.queue;
            match &job.field {
                Some(field) => match hdels.iter().find(|(q, _)| *q == queue) {
                    Some(&(_, index)) => {
                        releases[index].1.arg(field);
                    }
                    None => {
                        let mut hdel = redis::cmd("HDEL");
                        hdel.arg(keys::active(&self.prefix, queue, worker))
                            .arg(field);
                        hdels.push((queue, releases.len()));
                        releases.push((queue, hdel));
                    }
                },
                None => {
                    let mut lrem = redis::cmd("LREM");
                    lrem.arg(keys::landing(&self.prefix, queue, worker))
                        .arg(1)
                        .arg(&job.payload);
                    releases.push((queue, lrem));
                }
            }
        }
        for (queue, cmd) in releases {
            if !self.target.is_cluster() {
                pipe.add_command(cmd).ignore();
                continue;
            }
            match by_queue.iter_mut().find(|(q, _)| *q == queue) {
                Some((_, pipe)) => {
                    pipe.add_command(cmd).ignore();
                }
                None => {
                    let mut pipe = redis::pipe();
                    pipe.add_command(cmd).ignore();
                    by_queue.push((queue, pipe));
                }
            };
        }
        let mut conn = self.conn.clone();
        for pipe in std::iter::once(pipe).chain(by_queue.into_iter().map(|(_, pipe)| pipe)) {
            if pipe.is_empty() {
                continue;
            }
            pipe.query_async::<()>(&mut conn)
                .await
                .map_err(redis_err("acknowledging jobs"))?;
        }
        Ok(())
    }

    /// Stores a job's latest outcome under its result key for `ttl`.
    pub(crate) async fn set_result(
        &self,
        job_id: &str,
        record: &str,
        ttl: Duration,
    ) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(keys::result(&self.prefix, job_id))
            .arg(record)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err("storing a job's outcome"))
    }

    /// Reads a job's latest outcome record, if one is kept.
    pub(crate) async fn result(&self, job_id: &str) -> Result<Option<String>, Error> {
        let mut conn = self.conn.clone();
        redis::cmd("GET")
            .arg(keys::result(&self.prefix, job_id))
            .query_async(&mut conn)
            .await
            .map_err(redis_err("reading a job's outcome"))
    }

    /// Moves a failed job from `worker`'s in-flight list to the retry set, due at `due_ms`.
    /// Returns false when the job was no longer in flight there.
    pub(crate) async fn retry(
        &self,
        queue: &str,
        worker: &str,
        held: &Held<'_>,
        next_payload: &str,
        due_ms: u64,
    ) -> Result<bool, Error> {
        let mut conn = self.conn.clone();
        let moved: i64 = scripts::RETRY
            .key(keys::active(&self.prefix, queue, worker))
            .key(keys::landing(&self.prefix, queue, worker))
            .key(keys::retry(&self.prefix, queue))
            .arg(held.field.unwrap_or(""))
            .arg(held.payload)
            .arg(next_payload)
            .arg(due_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("scheduling a retry"))?;
        Ok(moved == 1)
    }

    /// Moves a job from `worker`'s in-flight list to the dead set as `record`, trimming the dead
    /// set to `limits`. Returns false when the job was no longer in flight there.
    pub(crate) async fn bury(
        &self,
        queue: &str,
        worker: &str,
        held: &Held<'_>,
        record: &str,
        now_ms: u64,
        limits: DeadLimits,
    ) -> Result<bool, Error> {
        let oldest_kept = now_ms.saturating_sub(limits.max_age.as_millis() as u64);
        let mut conn = self.conn.clone();
        let moved: i64 = scripts::BURY
            .key(keys::active(&self.prefix, queue, worker))
            .key(keys::landing(&self.prefix, queue, worker))
            .key(keys::dead(&self.prefix, queue))
            .arg(held.field.unwrap_or(""))
            .arg(held.payload)
            .arg(record)
            .arg(now_ms)
            .arg(limits.max_len)
            .arg(oldest_kept)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("burying a job"))?;
        Ok(moved == 1)
    }

    /// Moves the scheduled and retry jobs of `queue` that are due at `now_ms` to its pending list.
    pub(crate) async fn forward_due(
        &self,
        queue: &str,
        now_ms: u64,
        limit: usize,
    ) -> Result<Forwarded, Error> {
        let mut conn = self.conn.clone();
        let (moved, next_due): (u64, i64) = scripts::FORWARD_DUE
            .key(keys::scheduled(&self.prefix, queue))
            .key(keys::retry(&self.prefix, queue))
            .key(keys::pending(&self.prefix, queue))
            .arg(now_ms)
            .arg(limit)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("forwarding due jobs"))?;
        Ok(Forwarded {
            moved,
            next_due_ms: u64::try_from(next_due).ok(),
        })
    }

    /// Records, at the Redis server's clock, that `worker` is alive and serving `queues`.
    pub(crate) async fn heartbeat(&self, queues: &[String], worker: &str) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        for queue in queues {
            scripts::HEARTBEAT
                .key(keys::workers(&self.prefix, queue))
                .arg(worker)
                .invoke_async::<u64>(&mut conn)
                .await
                .map_err(redis_err("sending a heartbeat"))?;
        }
        Ok(())
    }

    /// The Redis server's clock, ms since the epoch: the one clock heartbeats are compared by.
    pub(crate) async fn server_time_ms(&self) -> Result<u64, Error> {
        let mut conn = self.conn.clone();
        let (secs, micros): (u64, u64) = redis::cmd("TIME")
            .query_async(&mut conn)
            .await
            .map_err(redis_err("reading the server time"))?;
        Ok(secs * 1000 + micros / 1000)
    }

    /// The workers of `queue` whose last heartbeat is at or before `cutoff_ms`.
    pub(crate) async fn lapsed_workers(
        &self,
        queue: &str,
        cutoff_ms: u64,
    ) -> Result<Vec<String>, Error> {
        let mut conn = self.conn.clone();
        redis::cmd("ZRANGE")
            .arg(keys::workers(&self.prefix, queue))
            .arg("-inf")
            .arg(cutoff_ms)
            .arg("BYSCORE")
            .query_async(&mut conn)
            .await
            .map_err(redis_err("listing lapsed workers"))
    }

    /// Returns the in-flight jobs of a worker whose heartbeat is at or before `cutoff_ms` to the
    /// front of `queue`, counting a worker death for each; a job one death short of
    /// `max_deaths` goes to the suspects list, and a job with `max_deaths` to the dead set. None
    /// when the worker is alive after all.
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
    /// the worker from the queue's registry (used by the worker itself at shutdown).
    pub(crate) async fn requeue_own(&self, queue: &str, worker: &str) -> Result<u64, Error> {
        Ok(self
            .requeue_inflight(queue, worker, "always", 0, u32::MAX)
            .await?
            .map_or(0, |requeued| requeued.requeued))
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
        let (requeued, buried): (i64, Vec<String>) = scripts::REQUEUE_INFLIGHT
            .key(keys::workers(&self.prefix, queue))
            .key(keys::active(&self.prefix, queue, worker))
            .key(keys::pending(&self.prefix, queue))
            .key(keys::dead(&self.prefix, queue))
            .key(keys::landing(&self.prefix, queue, worker))
            .key(keys::suspects(&self.prefix, queue))
            .arg(worker)
            .arg(mode)
            .arg(cutoff_ms)
            .arg(max_deaths)
            .arg(crate::clock::now_ms())
            .arg(max_deaths.saturating_sub(1).max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err("requeueing in-flight jobs"))?;
        if requeued < 0 {
            return Ok(None);
        }
        Ok(Some(Requeued {
            requeued: requeued as u64,
            buried,
        }))
    }

    /// Returns to the front of `queue` every job in `worker`'s in-flight hash whose field is not
    /// in `held` (see `reclaim.lua`). Returns how many.
    pub(crate) async fn reclaim_fetched(
        &self,
        queue: &str,
        worker: &str,
        held: &[String],
    ) -> Result<u64, Error> {
        self.reclaim(queue, worker, "hash", held).await
    }

    /// Returns to the front of `queue` every job in `worker`'s landing list that is not among
    /// `held` (see `reclaim.lua`). Returns how many.
    pub(crate) async fn reclaim_landed(
        &self,
        queue: &str,
        worker: &str,
        held: &[Vec<u8>],
    ) -> Result<u64, Error> {
        self.reclaim(queue, worker, "landing", held).await
    }

    async fn reclaim(
        &self,
        queue: &str,
        worker: &str,
        mode: &str,
        held: impl redis::ToRedisArgs,
    ) -> Result<u64, Error> {
        let mut conn = self.conn.clone();
        let mut invocation = scripts::RECLAIM.prepare_invoke();
        invocation
            .key(keys::active(&self.prefix, queue, worker))
            .key(keys::landing(&self.prefix, queue, worker))
            .key(keys::pending(&self.prefix, queue))
            .arg(mode)
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

    /// Number of jobs in flight on `worker` for `queue`.
    pub(crate) async fn inflight_len(&self, queue: &str, worker: &str) -> Result<u64, Error> {
        let held = self
            .card("HLEN", keys::active(&self.prefix, queue, worker))
            .await?;
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

    /// The dead records of `queue`, newest first, at most `limit`.
    pub(crate) async fn dead_records(
        &self,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<String>, Error> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        redis::cmd("ZRANGE")
            .arg(keys::dead(&self.prefix, queue))
            .arg(0)
            .arg(limit.saturating_sub(1))
            .arg("REV")
            .query_async(&mut conn)
            .await
            .map_err(redis_err("reading dead jobs"))
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
