//! dtask: background jobs for Rust on Redis.
//!
//! Mark an async fn with [`#[dtask::task]`](task), call `my_task::enqueue(args)` from anywhere,
//! and run the same binary as a [`Worker`] on as many machines as you like. Redis lists carry
//! the jobs; Lua scripts make every state change atomic; a job that was enqueued runs to
//! success or ends in the dead set with its last error, whatever happens to the workers.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! #[derive(Debug)]
//! struct ResizeError(String);
//! impl std::fmt::Display for ResizeError {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
//!         f.write_str(&self.0)
//!     }
//! }
//!
//! /// Resizes an image; retried up to 5 times, 30 s per attempt.
//! #[dtask::task(queue = "images", retries = 5, timeout = "30s")]
//! async fn resize(image_id: u64, width: u32) -> Result<String, ResizeError> {
//!     Ok(format!("/thumbs/{image_id}-{width}.png"))
//! }
//!
//! # async fn demo() -> Result<(), dtask::Error> {
//! dtask::init("redis://127.0.0.1:6379").await?;
//! let job = resize::enqueue(7, 640).await?;
//! let path: String = job.wait(Duration::from_secs(10)).await?;
//! resize::with().delay(Duration::from_secs(30)).enqueue(7, 320).await?;
//!
//! // in worker mode:
//! dtask::Worker::from_env()?.queues(["images"]).concurrency(64).run().await?;
//! # Ok(()) }
//! # fn main() {}
//! ```
//!
//! Jobs run at least once: a handler may run again after a worker dies mid-job, so make
//! handlers idempotent.
//!
//! Every run happens in a `tracing` span `dtask.job` (fields `id`, `task`, `queue`, `attempt`,
//! `outcome`). Optional features: `metrics` (counters and histograms through the `metrics`
//! facade), `opentelemetry` (a job's runs join the trace of the request that enqueued it, by a
//! W3C `traceparent` header), `dashboard` (an axum router), `cli` (the `dtask` binary),
//! `testing` (`dtask::testing`: a private Redis per test, typed queued arguments, draining
//! jobs in-process, and an inline mode where an enqueue runs its job at once, without Redis).
//!
//! # Guarantees
//!
//! - **At least once:** a job whose enqueue returned `Ok` runs to success, or ends in the dead
//!   set with its last error, whatever happens to workers; it may run more than once (its
//!   worker died after the work, before the acknowledgement).
//! - **Fenced settles:** every acknowledgement, retry, burial and outcome presents the run's
//!   lease; a run whose job was taken back meanwhile (a frozen or cut-off worker) changes
//!   nothing when it ends. A live worker is never taken for dead: its heartbeat has an OS
//!   thread and a connection of its own.
//! - **Crashed workers:** their jobs run again elsewhere within `recovery_after` plus a few
//!   seconds; a silent connection is replaced after two response timeouts; one failing queue
//!   holds back no other.
//! - **Rolling deploys:** a job this worker cannot run yet (an unknown task, a newer envelope,
//!   more arguments than its task takes here) waits for a newer worker for
//!   [`Worker::unknown_job_grace`] before it is buried.
//! - **Durability** is Redis's: with `appendonly yes` and `appendfsync always` every
//!   acknowledged enqueue survives a Redis crash.
//!
//! The README's "Guarantees" and "Running in production" sections say each in full, with the
//! tests and torture scenarios that check them.
//!
//! # Shutdown
//!
//! [`Worker::run`] stops on SIGTERM or SIGINT ([`shutdown_signal`]): it stops fetching, lets
//! running jobs finish within [`Worker::shutdown_timeout`], hands the rest back to their queue
//! and returns. [`Worker::spawn`] gives a [`WorkerHandle`] to stop it from your own code, and
//! [`Worker::run_until`] takes your own signal (an axum server's graceful shutdown, say).
//!
//! # Running in production
//!
//! - Redis: `maxmemory-policy noeviction` (a worker warns at start otherwise; an evicted key
//!   is a lost queue), and the persistence that gives the promise you need (`appendonly yes`
//!   with `appendfsync always`: no acknowledged enqueue lost to a Redis crash; `everysec`: up
//!   to a second of writes). Results, errors and the dead set are bounded by default.
//! - Least privilege: producers, workers and operators (CLI, dashboard) get ACL users of
//!   their own, limited to the prefix's keys; the README gives the exact lines, which the test
//!   suite loads and runs every path under.
//! - TLS with a `rediss://` URL (a private CA through `tls_ca_pem`); passwords never appear in
//!   logs or errors, job arguments are never logged.
//! - A supervisor that sends SIGTERM and waits longer than the worker's shutdown timeout (25 s
//!   by default); a SIGKILLed worker loses nothing either, its jobs run again elsewhere.
//! - Blocking or CPU-heavy work goes to `tokio::task::spawn_blocking`: a timeout cancels only
//!   at an `.await` (the heartbeat has a thread of its own, so a busy worker is never taken
//!   for dead). A job that keeps crashing its worker is buried after three deaths.
//!
//! # Testing
//!
//! A task is an async fn: call it directly in a unit test. With the `testing` feature,
//! `dtask::testing::TestRedis::start()` gives each test a private Redis and client, lists the
//! typed arguments of queued jobs (`enqueued::<my_task::Task>()`), runs them in-process with
//! what they enqueue (`drain()`) and makes delayed jobs due (`run_scheduled_now()`); and
//! `dtask::testing::inline(..)` runs each job at once where it is enqueued, with no Redis at
//! all. The README's "Testing your tasks" says what each does and does not do.
//!
//! # Changing tasks, and other languages
//!
//! A job of an older shape runs on a changed task when the new trailing parameters are
//! `Option`s; a job of a newer shape waits for a newer worker (see the README's "Changing a
//! task safely"). Producers in other languages write the documented wire format
//! (`docs/wire-format.md`; Python and Node producers in `interop/`).

mod admin;
mod args;
mod backoff;
mod broker;
#[cfg(feature = "cli")]
pub mod cli;
mod client;
mod clock;
#[cfg(feature = "dashboard")]
pub mod dashboard;
mod enqueue;
mod envelope;
mod error;
mod events;
mod finite;
mod job;
mod metrics;
mod middleware;
mod output;
mod partition;
mod periodic;
mod rate_limit;
mod redact;
mod registry;
mod retry_after;
mod state;
#[cfg(feature = "testing")]
pub mod testing;
mod trace;
mod unique;
mod wait;
mod worker;
mod workflow;

pub use admin::{
    CANCELLED_ERROR, Cancelled, Counts, DeadJob, JobInfo, JobState, Order, PurgeState, Queue,
    QueueStats, Throughput, WorkerInfo,
};
pub use backoff::Backoff;
pub use client::{
    Client, ClientBuilder, DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_PREFIX, DEFAULT_REDIS_URL, init,
    init_with,
};
pub use clock::{Clock, SystemClock};
pub use enqueue::{Call, Enqueue};
pub use envelope::JobId;
pub use error::Error;
pub use events::{EventKind, Events, MissedEvents, Progress, QueueEvent, progress};
pub use job::{JobHandle, JobStatus};
pub use middleware::{
    EnqueueMiddleware, JobContext, JobEvent, Middleware, Next, OutgoingJob, RunOutcome,
    WorkerEvent, current,
};
pub use output::TaskOutput;
pub use partition::MAX_PARTITIONS;
pub use periodic::{Missed, Periodic, PeriodicInfo, periodic};
pub use rate_limit::RateLimit;
pub use registry::{TaskDef, TaskInfo};
pub use retry_after::RetryAfter;
pub use state::State;
pub use unique::UniqueUntil;
pub use worker::{Worker, WorkerHandle, shutdown_signal};
pub use workflow::{Chain, Group, GroupHandle, Then, chain, group};

/// Marks an async fn as a task that can be enqueued and run by workers.
///
/// ```no_run
/// #[dtask::task(queue = "emails", retries = 5, timeout = "30s", name = "mail.welcome")]
/// async fn send_welcome(user_id: u64, email: String) -> Result<(), std::io::Error> {
///     Ok(())
/// }
/// # async fn demo() -> Result<(), dtask::Error> {
/// send_welcome::enqueue(42, "ada@example.com".into()).await?;
/// # Ok(()) }
/// # fn main() {}
/// ```
///
/// Options, all optional: `queue` (default `"default"`), `retries` (default 3), `timeout`
/// (`"500ms"`, `"30s"`, `"5m"`, `"1h"`; default none), `result_ttl` (how long a result stays
/// readable; default the worker's, `"0s"` for none), `name` (default: module path and fn name).
///
/// A timeout cancels the handler at its next `.await`; it cannot stop code that blocks its
/// thread (`std::thread::sleep`, synchronous I/O, long CPU work), which also stalls the other
/// jobs on that runtime thread. Run such code with `tokio::task::spawn_blocking` and await it.
///
/// The fn stays as written, and a module of the same name appears beside it with
/// `enqueue(args..)`, `enqueue_many(items)`, `with()` (the options builder: `delay`, `at`,
/// `queue`, `retries`, `client`), `job(id)`, `NAME` and `INFO`.
pub use dtask_macros::task;

/// Implements [`TaskOutput`] for a type of your own, so that a task can return it.
pub use dtask_macros::TaskOutput;

/// For implementing [`Middleware`] without a direct dependency on `async-trait`.
pub use async_trait::async_trait;

/// What code generated by `#[task]` uses. Not a public API: it changes without notice.
#[doc(hidden)]
pub mod __private;
