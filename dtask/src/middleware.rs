//! What runs around every job: on a worker, [`Middleware`] (a chain that sees each run and calls
//! the rest of it: timing, a transaction, a tenant, skipping or failing a job, rewriting its
//! error) and lifecycle hooks (a function called when a job succeeds, is retried or dies); on a
//! client, [`EnqueueMiddleware`] (sees each job before it is enqueued: adds headers, refuses).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use crate::envelope::JobId;

/// What a run came to, as middleware sees it: the result as JSON text, or the message of a
/// failed attempt (retried, or buried when its retries are spent). A panic and a timeout are
/// failed attempts too.
pub type RunOutcome = Result<String, String>;

/// The job a run belongs to, as middleware and hooks see it.
#[derive(Debug)]
pub struct JobContext {
    /// Its registered name (borrowed from the registry on a worker: a run copies no name).
    pub(crate) task: Cow<'static, str>,
    pub(crate) queue: Arc<str>,
    pub(crate) id: JobId,
    pub(crate) attempt: u32,
    pub(crate) args: String,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) enqueued_at_ms: u64,
    /// Cancelled when the run is given up: its timeout passed, or the worker's shutdown grace
    /// period ended.
    pub(crate) cancel: CancellationToken,
    /// A later attempt the handler asked for with [`RetryAfter`](crate::RetryAfter) (through
    /// `dtask::current()`, which shares this context; a clone keeps its own).
    pub(crate) retry_after: Mutex<Option<Duration>>,
    /// When this run started (ms since the epoch).
    pub(crate) started_ms: u64,
    /// Where the run's progress goes; None outside a worker's run.
    pub(crate) progress_to: Option<crate::worker::ProgressTo>,
}

impl Clone for JobContext {
    fn clone(&self) -> JobContext {
        JobContext {
            task: self.task.clone(),
            queue: self.queue.clone(),
            id: self.id.clone(),
            attempt: self.attempt,
            args: self.args.clone(),
            headers: self.headers.clone(),
            enqueued_at_ms: self.enqueued_at_ms,
            cancel: self.cancel.clone(),
            retry_after: Mutex::new(self.requested_retry_after()),
            started_ms: self.started_ms,
            progress_to: self.progress_to.clone(),
        }
    }
}

impl JobContext {
    /// The context of a run of `envelope`'s job, taken from `queue`, as attempt `attempt`,
    /// given up when `cancel` is cancelled.
    pub(crate) fn of(
        envelope: &crate::envelope::Envelope,
        queue: &Arc<str>,
        attempt: u32,
        cancel: CancellationToken,
    ) -> JobContext {
        JobContext {
            task: Cow::Owned(envelope.task.clone()),
            queue: queue.clone(),
            id: envelope.id.clone(),
            attempt,
            args: envelope.args.get().to_owned(),
            headers: envelope.headers.clone(),
            enqueued_at_ms: envelope.enqueued_at_ms,
            cancel,
            retry_after: Mutex::new(None),
            started_ms: crate::clock::now_ms(),
            progress_to: None,
        }
    }

    /// The same context, its task named by the registry's `name` (the same text as the
    /// envelope's, not copied).
    pub(crate) fn named(mut self, name: &'static str) -> JobContext {
        self.task = Cow::Borrowed(name);
        self
    }

    /// The same context, telling its progress to `to`.
    pub(crate) fn progress_to(mut self, to: crate::worker::ProgressTo) -> JobContext {
        self.progress_to = Some(to);
        self
    }

    /// Tells how far the run has come: `percent` (0 to 100) and a word about it. `status()`
    /// shows the latest, and followers of the queue's [`events`](crate::Client::events) see
    /// it; writes are coalesced (at most one per job every 100 ms), so calling this in a tight
    /// loop costs little. Does nothing outside a worker's run. [`crate::progress`] calls it on
    /// the current job; this is for code that got the context passed along (a spawned task, a
    /// blocking thread).
    pub fn progress(&self, percent: u32, message: impl Into<String>) {
        if let Some(to) = &self.progress_to {
            to.tell(self, percent.min(100), message.into());
        }
    }

    /// Ends the run's progress (see `ProgressTo::end`).
    pub(crate) fn end_progress(&self) {
        if let Some(to) = &self.progress_to {
            to.end();
        }
    }

    /// The delay the handler asked for with [`RetryAfter`](crate::RetryAfter), if it did.
    pub(crate) fn requested_retry_after(&self) -> Option<Duration> {
        *self.retry_after.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the job was first enqueued (the enqueuing machine's clock).
    pub fn enqueued_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.enqueued_at_ms)
    }

    /// Whether the run has been given up (its timeout passed, or the worker's shutdown grace
    /// period ended): its future is dropped at its next `.await`, so this is for code that
    /// does not await, such as a loop in `spawn_blocking`, to stop early.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Completes when the run is given up (see [`JobContext::is_cancelled`]).
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// The task's registered name.
    pub fn task(&self) -> &str {
        &self.task
    }

    /// The queue the job was taken from.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The job's id.
    pub fn id(&self) -> &JobId {
        &self.id
    }

    /// This attempt's number: 1 for the first run.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The job's arguments, as the JSON array they travel as.
    pub fn args_json(&self) -> &str {
        &self.args
    }

    /// The header `name` the enqueuing client's middleware gave the job (a tenant, a trace id).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// Every header of the job.
    pub fn headers(&self) -> &BTreeMap<String, String> {
        &self.headers
    }
}

tokio::task_local! {
    /// The job whose handler runs in this task.
    static CURRENT: Arc<JobContext>;
}

/// The job whose task is running here (its id, task, queue, attempt, arguments and headers),
/// when called from inside a task's handler: for logs, metrics, or a header a client's
/// middleware set. `None` elsewhere, including in tasks the handler spawns (pass it along).
///
/// ```
/// #[dtask::task]
/// async fn report(region: String) -> String {
///     let tenant = dtask::current()
///         .and_then(|job| job.header("tenant").map(str::to_owned))
///         .unwrap_or_default();
///     format!("{region} for {tenant}")
/// }
/// # fn main() {}
/// ```
pub fn current() -> Option<Arc<JobContext>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// Runs `run` (a handler) with `job` as its [`current`] job.
pub(crate) fn in_job<F: Future>(job: Arc<JobContext>, run: F) -> impl Future<Output = F::Output> {
    CURRENT.scope(job, run)
}

/// Code around every run of a worker, added with [`Worker::middleware`](crate::Worker::middleware)
/// and run in the order added (the first added is the outermost). It calls `next.run()` to run
/// the rest of the chain and the job, or does not, to skip the job (return `Ok` with a result)
/// or fail the attempt (return `Err`); it may rewrite what comes back.
///
/// ```
/// use std::time::Instant;
///
/// /// Logs how long each job took.
/// struct Timing;
///
/// #[dtask::async_trait]
/// impl dtask::Middleware for Timing {
///     async fn handle(&self, job: &dtask::JobContext, next: dtask::Next<'_>) -> dtask::RunOutcome {
///         let started = Instant::now();
///         let outcome = next.run().await;
///         println!("{} took {:?}", job.task(), started.elapsed());
///         outcome
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait Middleware: Send + Sync + 'static {
    /// Handles one run of `job`; `next.run()` runs the rest of the chain and the job.
    async fn handle(&self, job: &JobContext, next: Next<'_>) -> RunOutcome;
}

/// The rest of the chain, and the job at its end.
pub struct Next<'a> {
    job: &'a JobContext,
    rest: &'a [Arc<dyn Middleware>],
    run: Pin<Box<dyn Future<Output = RunOutcome> + Send + 'a>>,
}

impl<'a> Next<'a> {
    /// Runs the rest of the chain, then the job, and returns what it came to.
    pub async fn run(self) -> RunOutcome {
        match self.rest.split_first() {
            Some((first, rest)) => {
                let next = Next {
                    job: self.job,
                    rest,
                    run: self.run,
                };
                first.handle(self.job, next).await
            }
            None => self.run.await,
        }
    }
}

/// A middleware that applies to some tasks only; the others go straight to the next.
pub(crate) struct ForTasks {
    pub(crate) tasks: Vec<String>,
    pub(crate) inner: Arc<dyn Middleware>,
}

#[async_trait::async_trait]
impl Middleware for ForTasks {
    async fn handle(&self, job: &JobContext, next: Next<'_>) -> RunOutcome {
        if self.tasks.iter().any(|task| task == job.task()) {
            self.inner.handle(job, next).await
        } else {
            next.run().await
        }
    }
}

/// Runs `run` (the job) inside `chain`, outermost first.
pub(crate) async fn run_chain<'a>(
    chain: &'a [Arc<dyn Middleware>],
    job: &'a JobContext,
    run: impl Future<Output = RunOutcome> + Send + 'a,
) -> RunOutcome {
    Next {
        job,
        rest: chain,
        run: Box::pin(run),
    }
    .run()
    .await
}

/// What became of a job, as a lifecycle hook sees it.
#[derive(Debug)]
#[non_exhaustive]
pub enum JobEvent<'a> {
    /// The job succeeded; `result` is its result as JSON text.
    Succeeded {
        /// The job.
        job: &'a JobContext,
        /// Its result, as JSON text.
        result: &'a str,
    },
    /// An attempt failed and another is scheduled.
    Retrying {
        /// The job.
        job: &'a JobContext,
        /// The failed attempt's error.
        error: &'a str,
        /// When the next attempt is due.
        next_attempt_at: SystemTime,
    },
    /// The job is in the dead set.
    Dead {
        /// The job, when its payload could be read.
        job: Option<&'a JobContext>,
        /// Why it died.
        error: &'a str,
    },
}

/// A lifecycle hook: called once per event, on the worker that settled the job.
pub(crate) type Hook = Arc<dyn Fn(&JobEvent<'_>) + Send + Sync>;

/// A worker starting or stopping, as a lifecycle hook sees it.
#[derive(Debug)]
#[non_exhaustive]
pub enum WorkerEvent<'a> {
    /// The worker registered on its queues and is about to take jobs.
    Started {
        /// Its id (as heartbeats and the admin API show it).
        worker_id: &'a str,
        /// The queues it serves, highest priority first.
        queues: &'a [String],
    },
    /// The worker finished its shutdown.
    Stopped {
        /// Its id.
        worker_id: &'a str,
    },
}

/// A hook on a worker's start and stop.
pub(crate) type WorkerHook = Arc<dyn Fn(&WorkerEvent<'_>) + Send + Sync>;

/// Code a client runs on every job it enqueues, before it leaves: it may add headers (which
/// travel in the job and reach the workers' [`Middleware`] through [`JobContext::header`]) or
/// refuse the job. Added with [`ClientBuilder::enqueue_middleware`](crate::ClientBuilder::enqueue_middleware),
/// run in the order added.
///
/// ```
/// /// Stamps every job with the tenant it was enqueued for.
/// struct Tenant(&'static str);
///
/// impl dtask::EnqueueMiddleware for Tenant {
///     fn on_enqueue(&self, job: &mut dtask::OutgoingJob<'_>) -> Result<(), String> {
///         job.set_header("tenant", self.0);
///         Ok(())
///     }
/// }
///
/// let builder = dtask::Client::builder("redis://127.0.0.1:6379").enqueue_middleware(Tenant("acme"));
/// ```
pub trait EnqueueMiddleware: Send + Sync + 'static {
    /// Looks at (and may add headers to) one job about to be enqueued; an `Err` refuses it,
    /// and the enqueue fails with [`Error::EnqueueRefused`](crate::Error::EnqueueRefused)
    /// (nothing of that call is enqueued).
    fn on_enqueue(&self, job: &mut OutgoingJob<'_>) -> Result<(), String>;
}

/// A job about to be enqueued, as [`EnqueueMiddleware`] sees it.
#[derive(Debug)]
pub struct OutgoingJob<'a> {
    pub(crate) task: &'a str,
    pub(crate) queue: &'a str,
    pub(crate) args: &'a str,
    pub(crate) headers: BTreeMap<String, String>,
}

impl OutgoingJob<'_> {
    /// The task's registered name.
    pub fn task(&self) -> &str {
        self.task
    }

    /// The queue the job goes to.
    pub fn queue(&self) -> &str {
        self.queue
    }

    /// The job's arguments, as the JSON array they travel as.
    pub fn args_json(&self) -> &str {
        self.args
    }

    /// Sets the header `name` to `value`, replacing an earlier value.
    pub fn set_header(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.headers.insert(name.into(), value.into());
    }

    /// The header `name`, when set by an earlier middleware.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// A client's enqueue middleware, in order.
#[derive(Clone, Default)]
pub(crate) struct EnqueueChain(pub(crate) Vec<Arc<dyn EnqueueMiddleware>>);

impl std::fmt::Debug for EnqueueChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EnqueueChain({} middleware)", self.0.len())
    }
}

impl EnqueueChain {
    /// Runs every middleware on one job; its headers, or the first refusal.
    pub(crate) fn headers_for(
        &self,
        task: &str,
        queue: &str,
        args: &str,
    ) -> Result<BTreeMap<String, String>, String> {
        let mut job = OutgoingJob {
            task,
            queue,
            args,
            headers: BTreeMap::new(),
        };
        for middleware in &self.0 {
            middleware.on_enqueue(&mut job)?;
        }
        Ok(job.headers)
    }
}
