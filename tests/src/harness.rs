//! Starts and stops redis-server processes for tests, and polls for expected states.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use dtask_testkit::redis_cluster::{ClusterOptions, RedisCluster};
pub use dtask_testkit::redis_sentinel::RedisSentinels;
pub use dtask_testkit::redis_server::{Persistence, RedisServer};

/// Starts a redis-server of the test's own, without persistence (see [`RedisServer`]).
pub fn start_redis() -> RedisServer {
    RedisServer::start().expect("start redis-server")
}

/// Starts a redis-server with extra arguments (e.g. `--cluster-enabled yes`).
pub fn start_redis_with(args: &[&str]) -> RedisServer {
    RedisServer::options()
        .args(args)
        .start()
        .expect("start redis-server")
}

/// Starts a redis-server that makes every acknowledged write durable (`appendfsync always`), so
/// that a crash and [`RedisServer::restart`] keep every acknowledged job.
pub fn start_durable_redis() -> RedisServer {
    RedisServer::options()
        .persistence(Persistence::AppendFsyncAlways)
        .start()
        .expect("start redis-server")
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    dtask_testkit::os::free_port().expect("a free port")
}

/// A key prefix no other test uses: `test-<pid>-<n>-<label>`.
pub fn unique_prefix(label: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "test-{}-{}-{label}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A `test_worker` process; killed (SIGKILL, by pid) when dropped if still running.
pub struct WorkerProcess {
    child: Child,
}

impl WorkerProcess {
    /// Starts the worker binary at `exe` against `redis_url` and `prefix`, serving `queues`,
    /// with extra environment variables.
    pub fn start(
        exe: &str,
        redis_url: &str,
        prefix: &str,
        queues: &str,
        env: &[(&str, &str)],
    ) -> WorkerProcess {
        WorkerProcess::start_with_args(exe, &[], redis_url, prefix, queues, env)
    }

    /// [`WorkerProcess::start`], with command-line arguments.
    pub fn start_with_args(
        exe: &str,
        args: &[&str],
        redis_url: &str,
        prefix: &str,
        queues: &str,
        env: &[(&str, &str)],
    ) -> WorkerProcess {
        let child = Command::new(exe)
            .args(args)
            .env("DTASK_REDIS_URL", redis_url)
            .env("DTASK_PREFIX", prefix)
            .env("TEST_QUEUES", queues)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the test worker");
        WorkerProcess { child }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (e.g. "TERM") to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits up to `timeout` for the process to exit; returns its exit code (None if killed by
    /// a signal). Panics when it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "worker {} did not exit within {timeout:?}",
                self.pid()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// A directory under the system's temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh directory named after `label`.
    pub fn new(label: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique_prefix(label));
        std::fs::create_dir_all(&path).expect("create a temp dir");
        TempDir(path)
    }

    /// The directory's path.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A Redis Cluster of three masters (no replicas) on 127.0.0.1, owned by one test; its nodes
/// are stopped (by pid) when dropped. [`RedisCluster::options`] makes others (replicas, node
/// timeout).
pub fn start_cluster() -> RedisCluster {
    RedisCluster::start().expect("start a Redis Cluster")
}

/// How many jobs of `queue` are in flight (or settling) on any worker: the entries of the
/// workers' in-flight hashes and landing lists.
pub async fn in_flight(
    raw: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    queue: &str,
) -> u64 {
    let mut count = 0;
    for kind in ["active", "landing"] {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:{{{queue}}}:{kind}:*"))
            .query_async(raw)
            .await
            .unwrap();
        for key in keys {
            let len: u64 = redis::cmd(if kind == "active" { "HLEN" } else { "LLEN" })
                .arg(&key)
                .query_async(raw)
                .await
                .unwrap();
            count += len;
        }
    }
    count
}

/// Waits up to `timeout` for `job` to end in the dead set and returns its attempts and last
/// error; panics when it succeeds instead, or does not die in time.
pub async fn wait_dead<T>(job: &dtask::JobHandle<T>, timeout: Duration) -> (u32, String)
where
    T: serde::de::DeserializeOwned + std::fmt::Debug,
{
    match job.wait(timeout).await {
        Err(dtask::Error::JobDead {
            attempts, error, ..
        }) => (attempts, error),
        other => panic!("expected a dead job, got {other:?}"),
    }
}

/// A redis-server of the test's own, a dtask client on it under a fresh key prefix (`label`
/// names it), a raw connection to look at the keys, and the prefix.
pub async fn start_with_client(
    label: &str,
) -> (
    RedisServer,
    dtask::Client,
    redis::aio::MultiplexedConnection,
    String,
) {
    init_logging();
    let redis = start_redis();
    let prefix = unique_prefix(label);
    let client = dtask::Client::connect_with_prefix(&redis.url(), &prefix)
        .await
        .expect("connect");
    let raw = redis::Client::open(redis.url())
        .expect("a valid URL")
        .get_multiplexed_async_connection()
        .await
        .expect("a raw connection");
    (redis, client, raw, prefix)
}

/// The README's ACL rules for `user`, exactly as a reader would copy them (without `user NAME`).
pub fn readme_acl(user: &str) -> String {
    let readme = include_str!("../../README.md");
    let prefix = format!("user {user} ");
    readme
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("README.md has no ACL line for `{user}`"))
        .to_owned()
}

/// Cuts every pub/sub connection of the Redis behind `raw` (`CLIENT KILL TYPE pubsub`), as a
/// dropped route would; returns how many there were.
pub async fn kill_subscribers(raw: &mut redis::aio::MultiplexedConnection) -> i64 {
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(raw)
        .await
        .expect("CLIENT KILL TYPE pubsub")
}
