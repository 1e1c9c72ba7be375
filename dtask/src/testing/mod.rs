//! Helpers for your own tests (feature `testing`), against a real Redis as production has:
//! a private `redis-server` per test (or the one `DTASK_TEST_REDIS_URL` names) and a client
//! under a key prefix of its own, so that tests running at once never see each other's jobs;
//! the typed arguments of the jobs a task has queued; running every queued job in-process
//! until nothing is left, with what became of each; and making delayed jobs due at once.
//! For one Redis server, not a cluster (a drain reads all its queues in one script). For unit
//! tests without Redis, [`inline`] runs each job at once where it is enqueued.
//!
//! ```no_run
//! #[dtask::task(queue = "emails")]
//! async fn send_welcome(email: String, attempt: u32) {}
//!
//! # async fn signup(client: &dtask::Client, email: &str) -> Result<(), dtask::Error> {
//! #     send_welcome::with().client(client).enqueue(email.into(), 1).await?; Ok(())
//! # }
//! # async fn test() -> Result<(), dtask::Error> {
//! let env = dtask::testing::TestRedis::start().await?;
//! signup(env.client(), "ann@example.com").await?; // your code, enqueueing
//! assert_eq!(
//!     env.enqueued::<send_welcome::Task>().await?,
//!     [("ann@example.com".to_owned(), 1)]
//! );
//! let ran = env.drain().await?; // runs them here, and what they enqueue
//! assert!(ran.iter().all(|job| job.succeeded()));
//! # Ok(()) }
//! # fn main() {}
//! ```

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod inline;

pub(crate) use inline::current as inline_mode;
pub use inline::{Inline, inline};

use crate::envelope::{self, JobId};
use crate::middleware::{JobEvent, WorkerEvent};
use crate::registry::Registry;
use crate::{Client, Error, TaskDef, Worker};

/// How long a redis-server this module starts may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`TestRedis::drain`] runs jobs before it gives up (a job that enqueues itself
/// for ever, say).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a drain looks whether anything is left to run.
const DRAIN_POLL: Duration = Duration::from_millis(5);

/// A Redis for one test and a client on it under a key prefix of the test's own. Stops the
/// redis-server it started when dropped.
pub struct TestRedis {
    // Dropped last: the client goes before its server.
    client: Client,
    url: String,
    _server: Server,
}

/// The redis-server a test started, if it did; killed when dropped.
struct Server(Option<Child>);

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A job a [`TestRedis::drain`] ran, and how that run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RanJob {
    /// The job's id.
    pub id: JobId,
    /// Its task's name.
    pub task: String,
    /// How the run ended.
    pub outcome: RunOutcome,
}

impl RanJob {
    /// Whether the run succeeded.
    pub fn succeeded(&self) -> bool {
        matches!(self.outcome, RunOutcome::Succeeded { .. })
    }
}

/// How a run in a [`TestRedis::drain`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunOutcome {
    /// It succeeded with this result (JSON).
    Succeeded {
        /// The result, as JSON text.
        result: String,
    },
    /// The attempt failed; the job waits for its next one (make it due with
    /// [`TestRedis::run_scheduled_now`]).
    Retrying {
        /// The attempt's error.
        error: String,
    },
    /// The job is dead.
    Dead {
        /// Why.
        error: String,
    },
}

impl TestRedis {
    /// A Redis for this test: the server `DTASK_TEST_REDIS_URL` names when set, else a
    /// private `redis-server` (from `PATH`) started on a free loopback port, without
    /// persistence. The client's key prefix is new each call.
    pub async fn start() -> Result<TestRedis, Error> {
        let prefix = fresh_prefix();
        let (server, url, client) = match std::env::var("DTASK_TEST_REDIS_URL") {
            Ok(url) => {
                let client = connect_when_up(&url, &prefix, None).await?;
                (Server(None), url, client)
            }
            Err(_) => start_server(&prefix).await?,
        };
        Ok(TestRedis {
            client,
            url,
            _server: server,
        })
    }

    /// The client, under this test's prefix: enqueue through it (`my_task::with().client(..)`).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The Redis URL (another client or a worker process of the test may connect to it, with
    /// [`TestRedis::prefix`]).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// This test's key prefix.
    pub fn prefix(&self) -> &str {
        self.client.prefix()
    }

    /// The arguments of the jobs of task `T` waiting to run in any queue of this prefix
    /// (ready ones first, oldest first; then delayed and retrying ones, soonest first), as
    /// the tuple of its parameters (a job of an older version of the task through its
    /// migration). A job this binary's task cannot read (a newer version's) is an error.
    pub async fn enqueued<T: TaskDef>(&self) -> Result<Vec<T::Args>, Error> {
        let mut found = Vec::new();
        for queue in self.redis_queues().await? {
            for payload in self.client.broker.held_payloads(&queue).await? {
                let Ok(envelope) = envelope::decode(&payload) else {
                    continue;
                };
                if envelope.task != T::INFO.name {
                    continue;
                }
                // Read as a worker of this binary would: an older job through the task's
                // migration.
                let args = T::decode_job(envelope.args.get(), envelope.version).map_err(|e| {
                    Error::Config(format!(
                        "job {} of `{}` cannot be read as the task's parameters: {e:?}",
                        envelope.id, envelope.task
                    ))
                })?;
                found.push(args);
            }
        }
        Ok(found)
    }

    /// Runs every job ready in this prefix's queues in this process (with every task this
    /// binary registered), and the jobs they enqueue, until none is left to run; what became
    /// of each run, in the order they ended. Delayed and retrying jobs stay where they are:
    /// [`TestRedis::run_scheduled_now`] makes them due. The `#[task(cron = ..)]` schedules
    /// are not kept meanwhile. A task that takes a `State<T>` needs the state: use
    /// [`TestRedis::drain_with`].
    pub async fn drain(&self) -> Result<Vec<RanJob>, Error> {
        let mut ran = Vec::new();
        // A job may enqueue into a queue nobody served yet: one more round serves it too.
        loop {
            let queues = self.queues().await?;
            ran.extend(self.drain_with(Worker::new(&self.client)).await?);
            if self.queues().await? == queues {
                return Ok(ran);
            }
        }
    }

    /// [`TestRedis::drain`] with a worker of your own making (states, middleware, settings);
    /// it serves every queue of this prefix known when the drain starts.
    pub async fn drain_with(&self, worker: Worker) -> Result<Vec<RanJob>, Error> {
        let queues: Vec<String> = self.queues().await?.into_iter().collect();
        // What the worker serves in Redis: a partitioned queue's members.
        let redis_queues = self.client.partitions.expand(&queues).0;
        let ran = Arc::new(Mutex::new(Vec::new()));
        let worker_id = Arc::new(Mutex::new(None::<String>));
        let (noted, id_seen) = (ran.clone(), worker_id.clone());
        let handle = worker
            .queues(queues.clone())
            .without_task_schedules()
            .on_job_event(move |event| note(&noted, event))
            .on_worker_event(move |event| {
                if let WorkerEvent::Started { worker_id, .. } = event {
                    *lock(&id_seen) = Some((*worker_id).to_owned());
                }
            })
            .spawn();
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        // Nothing left twice in a row: a snapshot is exact, the second one is for the courier
        // between two of its steps.
        let mut idle_looks = 0;
        let outcome = loop {
            if handle.is_finished() {
                // It could not start (a state a task takes is missing, Redis is away): its
                // error says why.
                return match handle.shutdown().await {
                    Err(error) => Err(error),
                    Ok(()) => Err(Error::Worker("the drain's worker stopped early".into())),
                };
            }
            let worker = lock(&worker_id).clone();
            if let Some(worker) = worker {
                match self
                    .client
                    .broker
                    .left_to_run(&redis_queues, &worker)
                    .await?
                {
                    0 => idle_looks += 1,
                    _ => idle_looks = 0,
                }
                if idle_looks == 2 {
                    break Ok(());
                }
            }
            if Instant::now() >= deadline {
                break Err(Error::Config(format!(
                    "drain: jobs were still left to run after {DRAIN_TIMEOUT:?} (a job that \
                     enqueues itself for ever?)"
                )));
            }
            tokio::time::sleep(DRAIN_POLL).await;
        };
        handle.shutdown().await?;
        outcome?;
        let ran = std::mem::take(&mut *lock(&ran));
        Ok(ran)
    }

    /// Makes every delayed and retrying job of this prefix's queues due now; how many there
    /// were. A [`TestRedis::drain`] then runs them.
    pub async fn run_scheduled_now(&self) -> Result<u64, Error> {
        let mut moved = 0;
        for queue in self.redis_queues().await? {
            moved += self.client.broker.make_all_due(&queue).await?;
        }
        Ok(moved)
    }

    /// The queues jobs of this prefix may be in: those enqueued to, and those of the tasks
    /// this binary registered.
    async fn queues(&self) -> Result<BTreeSet<String>, Error> {
        let mut queues: BTreeSet<String> = self.client.queues().await?.into_iter().collect();
        if let Ok(registry) = Registry::collect() {
            queues.extend(registry.queues());
        }
        Ok(queues)
    }

    /// The Redis queues behind [`TestRedis::queues`]: a partitioned queue's members.
    async fn redis_queues(&self) -> Result<Vec<String>, Error> {
        let queues: Vec<String> = self.queues().await?.into_iter().collect();
        Ok(self.client.partitions.expand(&queues).0)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Notes a run's end.
fn note(ran: &Mutex<Vec<RanJob>>, event: &JobEvent<'_>) {
    let (job, outcome) = match event {
        JobEvent::Succeeded { job, result } => (
            Some(*job),
            RunOutcome::Succeeded {
                result: (*result).to_owned(),
            },
        ),
        JobEvent::Retrying { job, error, .. } => (
            Some(*job),
            RunOutcome::Retrying {
                error: (*error).to_owned(),
            },
        ),
        JobEvent::Dead { job, error } => (
            *job,
            RunOutcome::Dead {
                error: (*error).to_owned(),
            },
        ),
    };
    let (id, task) = match job {
        Some(job) => (job.id().clone(), job.task().to_owned()),
        None => (JobId::from(""), String::new()),
    };
    lock(ran).push(RanJob { id, task, outcome });
}

/// A key prefix no other test of any process uses.
fn fresh_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "dtask-test:{}:{}:{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        JobId::generate()
    )
}

/// Starts a redis-server on a free loopback port, without persistence, and a client of it
/// under `prefix`; another port when the one picked was taken meanwhile.
async fn start_server(prefix: &str) -> Result<(Server, String, Client), Error> {
    let mut last_error = None;
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| Error::Config(format!("no free loopback port for a test Redis: {e}")))?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                Error::Config(format!(
                    "cannot start `redis-server` for a test ({e}): install it (Debian: apt-get \
                     install redis-server) or set DTASK_TEST_REDIS_URL"
                ))
            })?;
        let mut server = Server(Some(child));
        let url = format!("redis://127.0.0.1:{port}");
        match connect_when_up(&url, prefix, Some(&mut server)).await {
            Ok(client) => return Ok((server, url, client)),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| Error::Config("no test Redis could start".into())))
}

/// A client of the Redis at `url` under `prefix`, once the server answers; an error at once
/// when `server` (ours) exited (its port was taken: the answer would be another's).
async fn connect_when_up(
    url: &str,
    prefix: &str,
    mut server: Option<&mut Server>,
) -> Result<Client, Error> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(Server(Some(child))) = server.as_deref_mut()
            && !matches!(child.try_wait(), Ok(None))
        {
            return Err(Error::Config(format!(
                "the test redis-server for {url} exited at start (its port was taken?)"
            )));
        }
        match Client::connect_with_prefix(url, prefix).await {
            Ok(client) if client.queues().await.is_ok() => return Ok(client),
            Err(error) if Instant::now() >= deadline => return Err(error),
            _ if Instant::now() >= deadline => {
                return Err(Error::Config(format!(
                    "the test Redis at {url} did not answer within {START_TIMEOUT:?}"
                )));
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
