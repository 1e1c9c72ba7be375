//! The rig every scenario stands on: a redis-server of its own, a dtask client, a raw
//! connection to look at dtask's keys and the jobs' effects, and the waits and watches the
//! scenarios share.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::acl;
use crate::effects::{self, Effects};
use crate::report::Figures;
use crate::scenarios::Ctx;
use crate::tasks;
use crate::workers::WorkerConfig;
use dtask_testkit::redis_server::{Persistence, RedisServer};

/// The kinds of key in which dtask keeps a worker's in-flight jobs (`<prefix>:{queue}:<kind>:<worker>`).
const IN_FLIGHT_KEYS: [&str; 2] = ["active", "landing"];

/// The shortest stay in a landing list that [`Rig::watch_landing`] reports: a job runs from its
/// landing list, so short jobs pass through in well under a second.
const LANDING_NOTICE: Duration = Duration::from_secs(1);

/// How often [`Rig::watch_landing`] looks.
const LANDING_POLL: Duration = Duration::from_millis(100);

/// How many jobs are where, summed over some queues.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Leftovers {
    /// Ready to run.
    pub pending: u64,
    /// Delayed.
    pub scheduled: u64,
    /// Waiting for another attempt.
    pub retry: u64,
    /// In flight on some worker (live or not).
    pub in_flight: u64,
    /// In the dead set.
    pub dead: u64,
}

impl Leftovers {
    /// Whether nothing waits or runs any more.
    pub fn settled(&self) -> bool {
        self.pending == 0 && self.scheduled == 0 && self.retry == 0 && self.in_flight == 0
    }
}

/// What became of the jobs that were in flight on a worker when a fault hit it.
#[derive(Debug, Clone)]
pub enum Rerun {
    /// It had none.
    Idle,
    /// All of them ran again, the last this long after the fault.
    After(Duration),
    /// These had not run again when the watch gave up.
    Missing(Vec<u64>),
}

/// A job seen in a landing list for at least a second (see [`Rig::watch_landing`]).
#[derive(Debug, Clone)]
pub struct Stay {
    /// The landing list (`<prefix>:{queue}:landing:<worker>`).
    pub key: String,
    /// The job's id, when it is a counted job.
    pub id: Option<u64>,
    /// How long it was seen there (to within 100 ms).
    pub seen: Duration,
    /// Whether it was still there when the watch ended.
    pub ongoing: bool,
}

/// A redis-server of the scenario's own, and the connections to it.
pub struct Rig {
    /// The server.
    pub redis: RedisServer,
    /// The dtask client that enqueues: as the README's `producer` user in `--acl` mode.
    pub client: dtask::Client,
    /// A dtask client with every right, for queue stats, dead jobs and job statuses.
    pub admin: dtask::Client,
    /// The driver's raw connection, to read effects and dtask's keys.
    pub conn: ConnectionManager,
    /// dtask's key prefix.
    pub prefix: String,
    /// The effects of this scenario's jobs.
    pub fx: Effects,
    /// The scenario's directory (Redis data, worker logs).
    pub dir: PathBuf,
    /// The README's users, in `--acl` mode.
    users: Option<acl::Users>,
    /// Kills the worker user's connections every 2 s, in `--acl` mode.
    _killer: Option<acl::Killer>,
    log_filter: String,
    recovery: Duration,
}

impl Rig {
    /// Starts the scenario's redis-server in `<run_dir>/<slug>` and connects to it. In `--acl`
    /// mode the server has the README's users, dtask's keys the README's prefix, and the worker
    /// user's connections are killed every 2 s.
    pub async fn start(ctx: &Ctx, slug: &str, persistence: Persistence) -> Result<Rig, String> {
        let dir = ctx.run_dir.join(slug);
        // A rerun into the same directory must not load an earlier run's data.
        let _ = std::fs::remove_dir_all(&dir);
        let redis_dir = dir.join("redis");
        let (users, prefix) = if ctx.acl {
            std::fs::create_dir_all(&redis_dir)
                .map_err(|e| format!("create {}: {e}", redis_dir.display()))?;
            let users = acl::Users::write_acl_file(&redis_dir.join("users.acl"))?;
            (Some(users), acl::README_PREFIX.to_owned())
        } else {
            (None, format!("torture-{slug}"))
        };
        let acl_file = users.as_ref().map(|_| redis_dir.join("users.acl"));
        let mut options = RedisServer::options()
            .dir(&redis_dir)
            .persistence(persistence);
        if let Some(acl_file) = acl_file {
            options = options.acl_file(acl_file);
        }
        let redis = tokio::task::block_in_place(|| options.start())?;
        let connect = |url: String| {
            let prefix = prefix.clone();
            async move {
                dtask::Client::connect_with_prefix(&url, &prefix)
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        let admin = connect(redis.url()).await?;
        let client = match &users {
            Some(users) => connect(users.producer.url(redis.port())).await?,
            None => admin.clone(),
        };
        let conn = effects::connect(&redis.url())
            .await
            .map_err(|e| format!("connect to redis: {e}"))?;
        let killer = ctx
            .acl
            .then(|| acl::Killer::start(conn.clone(), ctx.kills.clone()));
        Ok(Rig {
            redis,
            client,
            admin,
            conn,
            prefix,
            fx: Effects::new(slug),
            dir,
            users,
            _killer: killer,
            log_filter: ctx.log_filter.clone(),
            recovery: ctx.recovery,
        })
    }

    /// The URL the workers connect with to Redis listening (or proxied) at `port`: as the
    /// README's `worker` user in `--acl` mode.
    pub fn worker_url(&self, port: u16) -> String {
        self.url_as(port, |users| &users.worker)
    }

    /// The URL a producer connects with to Redis listening (or proxied) at `port`: as the
    /// README's `producer` user in `--acl` mode.
    pub fn producer_url(&self, port: u16) -> String {
        self.url_as(port, |users| &users.producer)
    }

    fn url_as(&self, port: u16, login: impl Fn(&acl::Users) -> &acl::Login) -> String {
        match &self.users {
            Some(users) => login(users).url(port),
            None => format!("redis://127.0.0.1:{port}"),
        }
    }

    /// The default worker configuration for this rig: serves `queues`, 16 jobs at once, the
    /// run's `recovery_after`, a grace period of 10 s, tokio's default runtime.
    pub fn workers(&self, queues: &[&str]) -> WorkerConfig {
        WorkerConfig {
            redis_url: self.worker_url(self.redis.port()),
            fx_url: self.redis.url(),
            prefix: self.prefix.clone(),
            fx_ns: self.fx.ns().to_owned(),
            queues: Vec::new(),
            concurrency: 16,
            recovery: self.recovery,
            grace: Duration::from_secs(10),
            log_filter: self.log_filter.clone(),
            log_dir: self.dir.join("logs"),
            runtime_threads: None,
        }
        .queues(queues)
    }

    /// A clone of the raw connection.
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The keys matching `pattern` (SCAN).
    pub async fn keys(&self, pattern: &str) -> redis::RedisResult<Vec<String>> {
        scan(&mut self.conn(), pattern).await
    }

    /// The keys holding the in-flight jobs of `queue`'s workers: dtask keeps a worker's jobs in
    /// `active:<worker>` (a hash by job id) and, when a blocking wait took them,
    /// `landing:<worker>` (a list). `worker` narrows the search (a glob, such as `*-<pid>-*`).
    pub async fn in_flight_keys(
        &self,
        queue: &str,
        worker: &str,
    ) -> redis::RedisResult<Vec<String>> {
        let mut keys = Vec::new();
        for kind in IN_FLIGHT_KEYS {
            keys.extend(
                self.keys(&format!("{}:{{{queue}}}:{kind}:{worker}", self.prefix))
                    .await?,
            );
        }
        Ok(keys)
    }

    /// The members of `key` whatever its type: a list's items, a hash's values (but those of
    /// settled markers, fields `s:<lease>` of runs that just ended), a set's or sorted set's
    /// members, a string's value.
    pub async fn members(&self, key: &str) -> redis::RedisResult<Vec<String>> {
        let mut conn = self.conn();
        let kind: String = redis::cmd("TYPE").arg(key).query_async(&mut conn).await?;
        if kind == "hash" {
            let entries: Vec<(String, String)> = redis::cmd("HGETALL")
                .arg(key)
                .query_async(&mut conn)
                .await?;
            return Ok(entries
                .into_iter()
                .filter(|(field, _)| !field.starts_with("s:"))
                .map(|(_, value)| value)
                .collect());
        }
        let mut read = match kind.as_str() {
            "list" => redis::cmd("LRANGE"),
            "zset" => redis::cmd("ZRANGE"),
            "set" => redis::cmd("SMEMBERS"),
            "string" => redis::cmd("GET"),
            _ => return Ok(Vec::new()),
        };
        read.arg(key);
        if kind == "list" || kind == "zset" {
            read.arg(0).arg(-1);
        }
        if kind == "string" {
            let value: Option<String> = read.query_async(&mut conn).await?;
            return Ok(value.into_iter().collect());
        }
        read.query_async(&mut conn).await
    }

    /// How many members `key` holds, whatever its type.
    async fn len(&self, key: &str) -> redis::RedisResult<u64> {
        let mut conn = self.conn();
        let kind: String = redis::cmd("TYPE").arg(key).query_async(&mut conn).await?;
        let count = match kind.as_str() {
            "hash" => return Ok(self.members(key).await?.len() as u64),
            "list" => "LLEN",
            "zset" => "ZCARD",
            "set" => "SCARD",
            "none" => return Ok(0),
            _ => return Ok(1),
        };
        redis::cmd(count).arg(key).query_async(&mut conn).await
    }

    /// The payloads in flight on the worker process `pid` for `queue`.
    pub async fn in_flight_payloads(&self, queue: &str, pid: u32) -> Result<Vec<String>, String> {
        let keys = self
            .in_flight_keys(queue, &format!("*-{pid}-*"))
            .await
            .map_err(|e| format!("list the in-flight keys: {e}"))?;
        let mut payloads = Vec::new();
        for key in keys {
            payloads.extend(
                self.members(&key)
                    .await
                    .map_err(|e| format!("read {key}: {e}"))?,
            );
        }
        Ok(payloads)
    }

    /// The ids of the counted jobs in flight on the worker process `pid` for `queue`.
    pub async fn in_flight(&self, queue: &str, pid: u32) -> Result<Vec<u64>, String> {
        Ok(self
            .in_flight_payloads(queue, pid)
            .await?
            .iter()
            .filter_map(|p| job_id(p))
            .collect())
    }

    /// How many live worker entries `queue`'s registry holds.
    pub async fn registered_workers(&self, queue: &str) -> redis::RedisResult<u64> {
        redis::cmd("ZCARD")
            .arg(format!("{}:{{{queue}}}:workers", self.prefix))
            .query_async(&mut self.conn())
            .await
    }

    /// Waits until `count` workers have registered on `queue`.
    pub async fn wait_workers(
        &self,
        queue: &str,
        count: u64,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while self.registered_workers(queue).await.unwrap_or(0) < count {
            if Instant::now() >= deadline {
                return Err(format!(
                    "{count} workers did not register within {timeout:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Where the jobs of `queues` are.
    pub async fn leftovers(&self, queues: &[&str]) -> Result<Leftovers, String> {
        let mut total = Leftovers::default();
        for queue in queues {
            let stats = self
                .admin
                .queue(queue)
                .stats()
                .await
                .map_err(|e| e.to_string())?;
            total.pending += stats.pending + stats.waiting;
            total.scheduled += stats.scheduled;
            total.retry += stats.retry;
            total.dead += stats.dead;
            for key in self
                .in_flight_keys(queue, "*")
                .await
                .map_err(|e| format!("list the in-flight keys: {e}"))?
            {
                total.in_flight += self
                    .len(&key)
                    .await
                    .map_err(|e| format!("count {key}: {e}"))?;
            }
        }
        Ok(total)
    }

    /// Waits until nothing of `queues` is pending, delayed, retrying or in flight (twice in a
    /// row, 100 ms apart); gives up after `timeout`, or once nothing has moved for 10 s (no job
    /// ran, no count changed: what is left is stuck). Returns whether it settled.
    pub async fn settle(&self, queues: &[&str], timeout: Duration) -> bool {
        const STALL: Duration = Duration::from_secs(10);
        let deadline = Instant::now() + timeout;
        let mut calm = 0;
        let mut last_seen = None;
        let mut last_change = Instant::now();
        let mut conn = self.conn();
        loop {
            let left = self.leftovers(queues).await.ok();
            match left {
                Some(left) if left.settled() => calm += 1,
                _ => calm = 0,
            }
            if calm >= 2 {
                return true;
            }
            let seen = (left, self.fx.done_count(&mut conn).await.ok());
            if last_seen != Some(seen) {
                last_seen = Some(seen);
                last_change = Instant::now();
            }
            if Instant::now() >= deadline || last_change.elapsed() >= STALL {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILLs a random worker of `fleet` and restarts it: the jobs it had in flight on
    /// `queue` (its in-flight list no longer changes until it is recovered), and a watch until
    /// each has run again (for at most a minute).
    pub async fn kill_random_worker(
        &self,
        fleet: &mut crate::workers::Fleet,
        queue: &str,
    ) -> Result<(Vec<u64>, JoinHandle<Rerun>), String> {
        use rand::Rng;
        let victim = rand::rng().random_range(0..fleet.workers.len());
        let pid = fleet.workers[victim].pid();
        fleet.workers[victim].kill();
        let killed_ms = effects::now_ms();
        let in_flight = self.in_flight(queue, pid).await?;
        let watch = self.watch_rerun(in_flight.clone(), killed_ms, Duration::from_secs(60));
        fleet.restart(victim)?;
        Ok((in_flight, watch))
    }

    /// Watches the jobs `ids` (in flight on a worker hit by a fault at `since_ms`) until each
    /// has run again, for at most `timeout`.
    pub fn watch_rerun(
        &self,
        ids: Vec<u64>,
        since_ms: u64,
        timeout: Duration,
    ) -> JoinHandle<Rerun> {
        let mut conn = self.conn();
        let fx = self.fx.clone();
        tokio::spawn(async move {
            if ids.is_empty() {
                return Rerun::Idle;
            }
            let deadline = Instant::now() + timeout;
            let mut missing = ids.clone();
            loop {
                if let Ok(last) = fx.last_runs(&mut conn, &ids).await {
                    missing = ids
                        .iter()
                        .zip(&last)
                        .filter(|(_, t)| !t.is_some_and(|t| t > since_ms))
                        .map(|(id, _)| *id)
                        .collect();
                    if missing.is_empty() {
                        let latest = last.iter().flatten().max().copied().unwrap_or(since_ms);
                        return Rerun::After(Duration::from_millis(latest - since_ms));
                    }
                }
                if Instant::now() >= deadline {
                    return Rerun::Missing(missing);
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    }

    /// Waits until one of the jobs `ids` (enqueued at `since_ms` or later) has run: how long
    /// after `since_ms` the first of them ran. None if none ran within `timeout`.
    pub async fn first_run(
        &self,
        ids: &[u64],
        since_ms: u64,
        timeout: Duration,
    ) -> Option<Duration> {
        let mut conn = self.conn();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(last) = self.fx.last_runs(&mut conn, ids).await
                && let Some(first) = last.iter().flatten().min()
            {
                return Some(Duration::from_millis(first.saturating_sub(since_ms)));
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Watches the landing lists of `queue` (where a blocking wait puts the job it takes) until
    /// `stop` says true or its sender is gone; returns every job seen in one for at least a
    /// second, the longest stay first.
    pub fn watch_landing(&self, queue: &str, stop: watch::Receiver<bool>) -> JoinHandle<Vec<Stay>> {
        let conn = self.conn();
        let pattern = format!("{}:{{{queue}}}:landing:*", self.prefix);
        tokio::spawn(watch_landing(conn, pattern, stop))
    }

    /// Waits, from `since`, until another job has run: how long processing took to resume.
    pub async fn resumed(&self, since: Instant, timeout: Duration) -> Option<Duration> {
        let mut conn = self.conn();
        let deadline = since + timeout;
        let base = loop {
            if let Ok(n) = self.fx.done_count(&mut conn).await {
                break n;
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        loop {
            if let Ok(n) = self.fx.done_count(&mut conn).await
                && n > base
            {
                return Some(since.elapsed());
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The keys matching `pattern` (SCAN).
async fn scan(conn: &mut ConnectionManager, pattern: &str) -> redis::RedisResult<Vec<String>> {
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// Every job in the lists matching `pattern`: list and payload.
async fn landed(
    conn: &mut ConnectionManager,
    pattern: &str,
) -> redis::RedisResult<HashSet<(String, String)>> {
    let mut jobs = HashSet::new();
    for key in scan(conn, pattern).await? {
        let payloads: Vec<String> = redis::cmd("LRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .query_async(conn)
            .await?;
        jobs.extend(payloads.into_iter().map(|p| (key.clone(), p)));
    }
    Ok(jobs)
}

/// The watch behind [`Rig::watch_landing`].
async fn watch_landing(
    mut conn: ConnectionManager,
    pattern: String,
    mut stop: watch::Receiver<bool>,
) -> Vec<Stay> {
    let stay = |(key, payload): (String, String), seen: Duration, ongoing: bool| Stay {
        id: job_id(&payload),
        key,
        seen,
        ongoing,
    };
    let mut first_seen: HashMap<(String, String), Instant> = HashMap::new();
    let mut stays = Vec::new();
    loop {
        if let Ok(now) = landed(&mut conn, &pattern).await {
            let gone: Vec<(String, String)> = first_seen
                .keys()
                .filter(|job| !now.contains(*job))
                .cloned()
                .collect();
            for job in gone {
                if let Some(since) = first_seen.remove(&job)
                    && since.elapsed() >= LANDING_NOTICE
                {
                    stays.push(stay(job, since.elapsed(), false));
                }
            }
            for job in now {
                first_seen.entry(job).or_insert_with(Instant::now);
            }
        }
        if stop.has_changed().is_err() || *stop.borrow() {
            break;
        }
        tokio::select! {
            _ = stop.changed() => {}
            _ = tokio::time::sleep(LANDING_POLL) => {}
        }
    }
    stays.extend(
        first_seen
            .into_iter()
            .filter(|(_, since)| since.elapsed() >= LANDING_NOTICE)
            .map(|(job, since)| stay(job, since.elapsed(), true)),
    );
    stays.sort_by_key(|s| std::cmp::Reverse(s.seen));
    stays
}

/// The id of a counted job (see [`tasks::COUNTED`]) from its payload (its first argument), if
/// it is one.
pub fn job_id(payload: &str) -> Option<u64> {
    envelope_job_id(&serde_json::from_str(payload).ok()?)
}

/// The id of a counted job from its envelope, parsed.
pub fn envelope_job_id(envelope: &serde_json::Value) -> Option<u64> {
    if !tasks::COUNTED.contains(&envelope.get("t")?.as_str()?) {
        return None;
    }
    envelope.get("a")?.get(0)?.as_u64()
}

/// The id of a counted job from its dead record (whose `job` holds its envelope), if it is one.
pub fn dead_job_id(record: &str) -> Option<u64> {
    let record: serde_json::Value = serde_json::from_str(record).ok()?;
    envelope_job_id(record.get("job")?)
}

/// Folds the reruns watched after several faults: the longest wait, and complaints about jobs
/// that never ran again.
pub async fn gather_reruns(
    watches: Vec<JoinHandle<Rerun>>,
    figures: &mut Figures,
) -> Option<Duration> {
    let mut longest: Option<Duration> = None;
    for (i, watch) in watches.into_iter().enumerate() {
        match watch.await {
            Ok(Rerun::After(d)) => longest = Some(longest.map_or(d, |l| l.max(d))),
            Ok(Rerun::Idle) => {}
            Ok(Rerun::Missing(ids)) => figures.failures.push(format!(
                "after fault {}: {} job(s) in flight on the stricken worker never ran again, e.g. {:?}",
                i + 1,
                ids.len(),
                &ids[..ids.len().min(5)]
            )),
            Err(error) => figures.failures.push(format!("a watch failed: {error}")),
        }
    }
    longest
}

/// The set of ids in a producer's report.
pub fn id_set(ids: &[u64]) -> HashSet<u64> {
    ids.iter().copied().collect()
}

/// CPU used by each process between two readings, as a share of one core.
pub fn cpu_share(
    before: &HashMap<u32, Duration>,
    after: &HashMap<u32, Duration>,
    elapsed: Duration,
) -> Vec<(u32, f64)> {
    let mut shares: Vec<(u32, f64)> = after
        .iter()
        .filter_map(|(pid, t)| {
            let t0 = before.get(pid)?;
            Some((
                *pid,
                t.saturating_sub(*t0).as_secs_f64() / elapsed.as_secs_f64().max(0.001),
            ))
        })
        .collect();
    shares.sort_by_key(|(pid, _)| *pid);
    shares
}
