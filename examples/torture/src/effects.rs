//! The effects jobs leave in Redis, so that lost and duplicated jobs are counted, not guessed.
//!
//! Every run of a [`work`](crate::tasks::work) job ends with one Lua call that adds the job's id
//! to `fx:{ns}:done`, counts the run in `fx:{ns}:runs`, and notes when and where it ran
//! (`fx:{ns}:last`, `fx:{ns}:by`). The keys live outside dtask's prefix. A random token per run
//! (`fx:{ns}:tokens`) makes the call idempotent: when a reply is lost and the worker sends the
//! same call again, the run still counts once.
//!
//! A [`stall`](crate::tasks::stall) job also notes when it *starts* (`fx:{ns}:starts`, with a
//! token of its own), so that a job run twice at once, both copies still running, is counted
//! too. A [`first_slow`](crate::tasks::first_slow) job notes its starts the same way and learns
//! which start it is (`fx:{ns}:start-numbers` keeps each token's answer, so that a repeated call
//! answers the same), and notes when and where its runs end (`fx:{ns}:<what>`, job id -> ms, and
//! `fx:{ns}:<what>-by`, job id -> pid).

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

/// Environment variable naming the effects namespace of a worker process.
pub const FX_ENV: &str = "TORTURE_FX";
/// Environment variable with the Redis URL a worker process records effects at (default:
/// `DTASK_REDIS_URL`). A scenario that puts a faulty network between the workers and Redis
/// points this straight at Redis, so that only dtask's own connections suffer the fault.
pub const FX_URL_ENV: &str = "TORTURE_FX_URL";

/// How long a worker keeps trying to record an effect before the attempt fails (and dtask
/// retries the job).
const RECORD_PATIENCE: Duration = Duration::from_secs(60);

/// Records the start of one run, once per token.
static START: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('SADD', KEYS[2], ARGV[2]) == 0 then
  return 0
end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
",
    )
});

/// Records one run, once per token.
static RECORD: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('SADD', KEYS[4], ARGV[2]) == 0 then
  return 0
end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[5], ARGV[1], ARGV[4])
return 1
",
    )
});

/// Records the start of one run, once per token, and answers which start of the job it is (the
/// same answer when the call is repeated with the token).
static NUMBERED_START: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local seen = redis.call('HGET', KEYS[2], ARGV[2])
if seen then
  return tonumber(seen)
end
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HSET', KEYS[2], ARGV[2], n)
return n
",
    )
});

/// The effect keys of one namespace.
#[derive(Clone, Debug)]
pub struct Effects {
    ns: String,
}

impl Effects {
    /// The keys of namespace `ns`.
    pub fn new(ns: &str) -> Effects {
        Effects { ns: ns.to_owned() }
    }

    /// The namespace, as passed to workers in [`FX_ENV`].
    pub fn ns(&self) -> &str {
        &self.ns
    }

    fn key(&self, what: &str) -> String {
        format!("fx:{{{}}}:{what}", self.ns)
    }

    /// The ids of every job that ran at least once.
    pub async fn done(&self, conn: &mut ConnectionManager) -> redis::RedisResult<HashSet<u64>> {
        redis::cmd("SMEMBERS")
            .arg(self.key("done"))
            .query_async(conn)
            .await
    }

    /// How many jobs ran at least once.
    pub async fn done_count(&self, conn: &mut ConnectionManager) -> redis::RedisResult<u64> {
        redis::cmd("SCARD")
            .arg(self.key("done"))
            .query_async(conn)
            .await
    }

    /// How many times each job ran.
    pub async fn runs(
        &self,
        conn: &mut ConnectionManager,
    ) -> redis::RedisResult<HashMap<u64, u64>> {
        redis::cmd("HGETALL")
            .arg(self.key("runs"))
            .query_async(conn)
            .await
    }

    /// How many times each job started (only jobs that note their start, see [`record_start`]).
    pub async fn starts(
        &self,
        conn: &mut ConnectionManager,
    ) -> redis::RedisResult<HashMap<u64, u64>> {
        redis::cmd("HGETALL")
            .arg(self.key("starts"))
            .query_async(conn)
            .await
    }

    /// The periodic jobs that ran (see [`record_tick`]): tick (ms) -> each job id enqueued for
    /// it, with when it ran (ms, worker clock).
    pub async fn ticks(
        &self,
        conn: &mut ConnectionManager,
    ) -> redis::RedisResult<std::collections::BTreeMap<u64, HashMap<String, Option<u64>>>> {
        let entries: Vec<(String, u64)> = redis::cmd("HGETALL")
            .arg(self.key("ticks"))
            .query_async(conn)
            .await?;
        let mut ticks: std::collections::BTreeMap<u64, HashMap<String, Option<u64>>> =
            Default::default();
        for (field, ran_ms) in entries {
            if let Some((tick, job)) = field.split_once('/')
                && let Ok(tick) = tick.parse()
            {
                ticks
                    .entry(tick)
                    .or_default()
                    .insert(job.to_owned(), Some(ran_ms));
            }
        }
        Ok(ticks)
    }

    /// Every run that noted its span (see [`record_span`]): (job id, start ms, end ms).
    pub async fn spans(
        &self,
        conn: &mut ConnectionManager,
    ) -> redis::RedisResult<Vec<(u64, u64, u64)>> {
        let entries: Vec<String> = redis::cmd("LRANGE")
            .arg(self.key("spans"))
            .arg(0)
            .arg(-1)
            .query_async(conn)
            .await?;
        Ok(entries
            .iter()
            .filter_map(|entry| {
                let mut parts = entry.split(' ').map(|n| n.parse::<u64>().ok());
                Some((parts.next()??, parts.next()??, parts.next()??))
            })
            .collect())
    }

    /// When each of `ids` last ran (ms since the epoch, worker clock), if it ran.
    pub async fn last_runs(
        &self,
        conn: &mut ConnectionManager,
        ids: &[u64],
    ) -> redis::RedisResult<Vec<Option<u64>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        redis::cmd("HMGET")
            .arg(self.key("last"))
            .arg(ids)
            .query_async(conn)
            .await
    }

    /// Records `mark` of job `id` under `token`; answers the start number for
    /// [`Mark::NumberedStart`], else 0.
    async fn record_once(
        &self,
        conn: &mut ConnectionManager,
        id: u64,
        token: &str,
        mark: Mark,
    ) -> redis::RedisResult<u64> {
        match mark {
            Mark::Start => self.record_start_once(conn, id, token).await.map(|()| 0),
            Mark::NumberedStart => self.record_numbered_start_once(conn, id, token).await,
            Mark::Done => self.record_done_once(conn, id, token).await.map(|()| 0),
            Mark::Time(what) => self.record_time(conn, id, what).await.map(|()| 0),
        }
    }

    /// Records the start of a run of job `id` under `token`.
    async fn record_start_once(
        &self,
        conn: &mut ConnectionManager,
        id: u64,
        token: &str,
    ) -> redis::RedisResult<()> {
        START
            .key(self.key("starts"))
            .key(self.key("tokens"))
            .arg(id)
            .arg(token)
            .invoke_async::<i64>(conn)
            .await
            .map(drop)
    }

    /// Records the start of a run of job `id` under `token`; answers which start it is.
    async fn record_numbered_start_once(
        &self,
        conn: &mut ConnectionManager,
        id: u64,
        token: &str,
    ) -> redis::RedisResult<u64> {
        NUMBERED_START
            .key(self.key("starts"))
            .key(self.key("start-numbers"))
            .arg(id)
            .arg(token)
            .invoke_async(conn)
            .await
    }

    /// Notes now as the time of `what` for job `id`, and this process as where it happened.
    async fn record_time(
        &self,
        conn: &mut ConnectionManager,
        id: u64,
        what: &str,
    ) -> redis::RedisResult<()> {
        redis::pipe()
            .atomic()
            .cmd("HSET")
            .arg(self.key(what))
            .arg(id)
            .arg(now_ms())
            .ignore()
            .cmd("HSET")
            .arg(self.key(&format!("{what}-by")))
            .arg(id)
            .arg(std::process::id())
            .ignore()
            .query_async(conn)
            .await
    }

    /// When `what` happened to each job that noted it (see [`note_time`]), ms since the epoch.
    pub async fn times(
        &self,
        conn: &mut ConnectionManager,
        what: &str,
    ) -> redis::RedisResult<HashMap<u64, u64>> {
        redis::cmd("HGETALL")
            .arg(self.key(what))
            .query_async(conn)
            .await
    }

    /// Which worker process `what` happened in, for each job that noted it (see [`note_time`]).
    pub async fn pids(
        &self,
        conn: &mut ConnectionManager,
        what: &str,
    ) -> redis::RedisResult<HashMap<u64, u32>> {
        redis::cmd("HGETALL")
            .arg(self.key(&format!("{what}-by")))
            .query_async(conn)
            .await
    }

    /// Records one run of job `id` under `token`, from this worker process.
    async fn record_done_once(
        &self,
        conn: &mut ConnectionManager,
        id: u64,
        token: &str,
    ) -> redis::RedisResult<()> {
        RECORD
            .key(self.key("done"))
            .key(self.key("runs"))
            .key(self.key("last"))
            .key(self.key("tokens"))
            .key(self.key("by"))
            .arg(id)
            .arg(token)
            .arg(now_ms())
            .arg(std::process::id())
            .invoke_async::<i64>(conn)
            .await
            .map(drop)
    }
}

/// What a job records.
#[derive(Clone, Copy, Debug)]
enum Mark {
    /// It started (see [`record_start`]).
    Start,
    /// It started, and wants to know which start it is (see [`record_numbered_start`]).
    NumberedStart,
    /// It ran to its end (see [`record`]).
    Done,
    /// Something happened to it now (see [`note_time`]).
    Time(&'static str),
}

/// Milliseconds since the epoch, by this machine's clock (all processes share it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A connection to Redis that reconnects by itself, with short timeouts, so that a hung Redis
/// costs an attempt a couple of seconds, not forever.
pub async fn connect(url: &str) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_max_delay(Duration::from_secs(1));
    redis::Client::open(url)?
        .get_connection_manager_with_config(config)
        .await
}

/// The worker process's connection for effects, opened on first use (at [`FX_URL_ENV`]).
static WORKER_CONN: OnceCell<(Effects, ConnectionManager)> = OnceCell::const_new();

/// Records, from inside a job, that job `id` ran: keeps trying for a minute (Redis may be down
/// or frozen), then fails the attempt.
pub async fn record(id: u64) -> Result<(), String> {
    record_mark(id, Mark::Done).await.map(drop)
}

/// Records, from inside a job, that job `id` starts, with the same patience as [`record`].
pub async fn record_start(id: u64) -> Result<(), String> {
    record_mark(id, Mark::Start).await.map(drop)
}

/// Records, from inside a job, that job `id` starts, with the same patience as [`record`];
/// answers which start of the job this is (1 for the first).
pub async fn record_numbered_start(id: u64) -> Result<u64, String> {
    record_mark(id, Mark::NumberedStart).await
}

/// Notes, from inside a job, when (now) and where (this process) `what` happened to job `id`
/// (a later note of the same `what` replaces it), with the same patience as [`record`].
pub async fn note_time(id: u64, what: &'static str) -> Result<(), String> {
    record_mark(id, Mark::Time(what)).await.map(drop)
}

/// Records, from inside a periodic job, that the job `job_id` was enqueued for `tick` (ms),
/// with the same patience as [`record`]: a tick with two job ids fired twice.
pub async fn record_tick(tick: u64, job_id: &str) -> Result<(), String> {
    let field = format!("{tick}/{job_id}");
    with_patience(&format!("tick {tick}"), |fx| {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(fx.key("ticks")).arg(&field).arg(now_ms());
        cmd
    })
    .await
}

/// Notes, from inside a job, that a run of job `id` went from `start_ms` to now (a run noted
/// twice, after a lost reply, shows as two equal spans), with the same patience as [`record`].
pub async fn record_span(id: u64, start_ms: u64) -> Result<(), String> {
    let entry = format!("{id} {start_ms} {}", now_ms());
    with_patience(&format!("the span of job {id}"), |fx| {
        let mut cmd = redis::cmd("RPUSH");
        cmd.arg(fx.key("spans")).arg(&entry);
        cmd
    })
    .await
}

/// Runs the command `command` makes for the worker's effects, trying again every 100 ms for
/// as long as [`record`] does; the error names `what` could not be recorded.
async fn with_patience(what: &str, command: impl Fn(&Effects) -> redis::Cmd) -> Result<(), String> {
    let deadline = Instant::now() + RECORD_PATIENCE;
    loop {
        let error = match worker_conn().await {
            Ok((fx, conn)) => match command(fx).query_async::<()>(&mut conn.clone()).await {
                Ok(()) => return Ok(()),
                Err(error) => error.to_string(),
            },
            Err(error) => error,
        };
        if Instant::now() >= deadline {
            return Err(format!("could not record {what}: {error}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn record_mark(id: u64, mark: Mark) -> Result<u64, String> {
    let token = match mark {
        Mark::Start | Mark::NumberedStart => format!("start-{id}-{:016x}", rand::random::<u64>()),
        Mark::Done | Mark::Time(_) => format!("{id}-{:016x}", rand::random::<u64>()),
    };
    let deadline = Instant::now() + RECORD_PATIENCE;
    let mut pause = Duration::from_millis(50);
    loop {
        let error = match worker_conn().await {
            Ok((fx, conn)) => match fx.record_once(&mut conn.clone(), id, &token, mark).await {
                Ok(answer) => return Ok(answer),
                Err(error) => error.to_string(),
            },
            Err(error) => error,
        };
        if Instant::now() >= deadline {
            return Err(format!("could not record the effect of job {id}: {error}"));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

async fn worker_conn() -> Result<&'static (Effects, ConnectionManager), String> {
    WORKER_CONN
        .get_or_try_init(|| async {
            let url = std::env::var(FX_URL_ENV)
                .or_else(|_| std::env::var("DTASK_REDIS_URL"))
                .map_err(|e| format!("{FX_URL_ENV} or DTASK_REDIS_URL: {e}"))?;
            let ns = std::env::var(FX_ENV).map_err(|e| format!("{FX_ENV}: {e}"))?;
            let conn = connect(&url).await.map_err(|e| e.to_string())?;
            Ok((Effects::new(&ns), conn))
        })
        .await
}
