//! The worker: runs the jobs of this binary's tasks from a set of queues.
//!
//! A worker is a few small parts started and stopped in a fixed order: the [`Fetcher`] (takes
//! jobs and runs each in its own task, bounded by the concurrency), the [`Heartbeat`] (keeps the
//! worker's in-flight jobs its own), the [`Recoverer`] (requeues the jobs of workers whose
//! heartbeat lapsed) and the [`Forwarder`] (moves due delayed and retry jobs to their queue).
//!
//! Shutdown is two-phase: stop fetching, let running jobs finish within the grace period, then
//! return whatever is still in flight to the front of its queue.

mod acker;
mod cancels;
mod catch_panic;
mod courier;
mod executor;
mod fetcher;
mod forwarder;
mod heartbeat;
mod held;
mod recoverer;
mod reporter;
mod scheduler;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backoff::Backoff;
use crate::broker::{Broker, DeadLimits, Passing, Taken};
use crate::client::{Client, ClientBuilder};
use crate::clock::{Clock, SystemClock};
use crate::envelope::JobId;
use crate::error::Error;
use crate::events::EventKind;
use crate::middleware::{ForTasks, Hook, JobEvent, Middleware, WorkerEvent, WorkerHook};
use crate::periodic::Periodic;
use crate::registry::Registry;
use crate::state::States;
use acker::{AckSender, Acker};
use fetcher::Fetcher;
use forwarder::Forwarder;
use heartbeat::{Beats, Heartbeat};
use held::HeldJobs;
use recoverer::Recoverer;
pub(crate) use reporter::ProgressTo;
use reporter::{EventLines, Report, ReportSender, Reporter};
use scheduler::Scheduler;

/// What every part of a running worker shares.
pub(crate) struct Context {
    pub(crate) broker: Broker,
    /// Where executors send acknowledgements, to be batched by the [`Acker`].
    pub(crate) acks: AckSender,
    /// Where events and passing records go, to be batched by the [`Reporter`].
    pub(crate) reports: ReportSender,
    /// Where the events of runs go, to be published by the [`Reporter`].
    pub(crate) lines: Arc<EventLines>,
    pub(crate) registry: Registry,
    /// The application's values, for tasks that take `State<T>`.
    pub(crate) states: States,
    /// The middleware every run goes through, outermost first.
    pub(crate) middleware: Vec<Arc<dyn Middleware>>,
    /// The lifecycle hooks called on each job event.
    pub(crate) hooks: Vec<Hook>,
    /// The hooks called when the worker starts and stops.
    pub(crate) worker_hooks: Vec<WorkerHook>,
    pub(crate) settings: Settings,
    pub(crate) worker_id: String,
    /// The jobs this worker knows it holds in flight.
    pub(crate) held: HeldJobs,
    /// Since when this worker's heartbeats on each queue have got through without a break.
    pub(crate) beats: Arc<Beats>,
    /// Held while fetching into, adopting into, or reclaiming from the in-flight hash, so that
    /// a reclaim never sees a leased job before it is noted as held.
    fetch_locks: std::collections::HashMap<String, tokio::sync::Mutex<()>>,
    /// Per queue, how many runs wait for an acknowledgement that failed and is retried (their
    /// executor slots given up): a queue with as many as the concurrency is not fetched from
    /// until some are settled, so that the in-flight state of a queue whose Redis fails stays
    /// bounded.
    settling: std::collections::HashMap<String, AtomicUsize>,
    /// Whether a suspect job runs on this worker: it takes no second one until that one ends.
    pub(crate) suspect_in_flight: AtomicBool,
    /// Wakes an idle fetcher when there may be work its blocking waits cannot see: a suspect
    /// ended (the next may run), or the recoverer returned jobs.
    pub(crate) wake_fetcher: Notify,
    /// Wakes the courier when a job this worker settled left an errand for it.
    pub(crate) wake_courier: Notify,
    /// The task names (or kinds of envelope) this worker has put off jobs of, each logged once.
    deferred: std::sync::Mutex<HashSet<String>>,
    /// The jobs running here by id, and the recent requests to stop jobs.
    pub(crate) cancels: cancels::CancelBook,
}

impl Context {
    /// The lock held while leasing jobs of `queue` into, or reclaiming them from, this worker's
    /// in-flight hash: one per queue, so that a queue whose Redis is slow holds up no other.
    pub(crate) fn fetch_lock(&self, queue: &str) -> &tokio::sync::Mutex<()> {
        static UNKNOWN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        self.fetch_locks.get(queue).unwrap_or(&UNKNOWN)
    }

    /// Counts a run of `queue` whose acknowledgement failed and goes on without its slot.
    pub(crate) fn settling(&self, queue: &str) {
        if let Some(count) = self.settling.get(queue) {
            count.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// A run counted by [`Context::settling`] is settled; a fetcher waiting for room in its
    /// queue is woken.
    pub(crate) fn settled(&self, queue: &str) {
        if let Some(count) = self.settling.get(queue)
            && count.fetch_sub(1, Ordering::AcqRel) >= self.settings.concurrency
        {
            self.wake_fetcher.notify_one();
        }
    }

    /// Whether `queue` has as many runs waiting for a retried acknowledgement as the worker
    /// runs jobs at once: it is not fetched from until some are settled.
    pub(crate) fn settling_full(&self, queue: &str) -> bool {
        self.settling
            .get(queue)
            .is_some_and(|count| count.load(Ordering::Acquire) >= self.settings.concurrency)
    }

    /// Calls every start/stop hook with `event`; a hook that panics is logged and skipped.
    fn fire_worker(&self, event: &WorkerEvent<'_>) {
        for hook in &self.worker_hooks {
            call_hook(|| hook(event), event);
        }
    }

    /// Publishes `kind` of a run of job `id` of `task` on `queue`'s events channel (in the
    /// reporter's next message), unless events of the queue are off.
    pub(crate) fn announce(&self, queue: &Arc<str>, id: &JobId, task: &str, kind: &EventKind) {
        let now_ms = self.settings.clock.now_ms();
        self.lines.push_event(queue, id, task, now_ms, kind);
    }

    /// Publishes that attempt `attempt` of job `id` of `task` of `queue` started here, as
    /// [`Context::announce`] does.
    pub(crate) fn announce_started(&self, queue: &Arc<str>, id: &JobId, task: &str, attempt: u32) {
        if self.lines.publishes(queue) {
            let now_ms = self.settings.clock.now_ms();
            self.lines.push(queue, |out| {
                crate::events::write_started(out, id, task, now_ms, attempt, &self.worker_id);
            });
        }
    }

    /// Publishes `kind` of job `id` of `task` on `queue`'s events channel (in the reporter's
    /// next batch, after the passing records reported before it), unless events of the queue
    /// are off.
    pub(crate) fn report_event(&self, queue: &Arc<str>, id: &JobId, task: &str, kind: EventKind) {
        if self.settings.quiet_queues.contains(&**queue) {
            return;
        }
        let line = kind.line(id, task, self.settings.clock.now_ms());
        let _ = self.reports.send(Report::Event {
            queue: queue.clone(),
            line,
        });
    }

    /// Writes a passing `record` of job `id` (counting `attempts`), kept for `ttl`, in the
    /// reporter's next batch.
    pub(crate) fn report_record(
        &self,
        passing: Passing,
        id: &JobId,
        record: String,
        attempts: u32,
        ttl: Duration,
    ) {
        let _ = self.reports.send(Report::Record {
            passing,
            job_id: id.to_string(),
            record,
            attempts,
            ttl,
        });
    }

    /// Tells that the jobs `payloads` of `queue`, running on `worker`, went back to the queue:
    /// their records say queued again (over a running record only), their events recovered.
    pub(crate) fn report_back(&self, queue: &str, worker: &str, payloads: &[Vec<u8>]) {
        let queue: Arc<str> = Arc::from(queue);
        for payload in payloads {
            let Ok(envelope) = crate::envelope::decode(payload) else {
                continue;
            };
            if let Some(ttl) = self.record_ttl(&envelope.task) {
                let record = crate::envelope::QUEUED_MARKER.to_owned();
                self.report_record(Passing::Back, &envelope.id, record, envelope.attempt, ttl);
            }
            self.report_event(
                &queue,
                &envelope.id,
                &envelope.task,
                EventKind::Recovered {
                    worker: worker.to_owned(),
                },
            );
        }
    }

    /// How long the passing records of a job of `task` are kept: as its results; None for a
    /// task that keeps none (`result_ttl = "0s"`).
    pub(crate) fn record_ttl(&self, task: &str) -> Option<Duration> {
        let ttl = self
            .registry
            .get(task)
            .and_then(|entry| entry.info.result_ttl)
            .unwrap_or(self.settings.result_ttl);
        (!ttl.is_zero()).then_some(ttl)
    }

    /// Where the progress of a run of a job of `queue` goes, its records kept for
    /// `record_ttl` (None: none kept).
    pub(crate) fn progress_to(&self, queue: &Arc<str>, record_ttl: Option<Duration>) -> ProgressTo {
        ProgressTo {
            sender: self.reports.clone(),
            lines: self.lines.clone(),
            queue: queue.clone(),
            record_ttl,
            publish: self.lines.publishes(queue),
            latest: Arc::default(),
        }
    }

    /// Calls every lifecycle hook with `event`; a hook that panics is logged and skipped.
    pub(crate) fn fire(&self, event: &JobEvent<'_>) {
        for hook in &self.hooks {
            call_hook(|| hook(event), event);
        }
    }

    /// Notes that jobs of `kind` were put off; true the first time (to log it once).
    pub(crate) fn note_deferred(&self, kind: &str) -> bool {
        let mut deferred = self.deferred.lock().unwrap_or_else(|e| e.into_inner());
        !deferred.contains(kind) && deferred.insert(kind.to_owned())
    }

    /// Returns to their queue the jobs in this worker's in-flight hash for `queue` whose lease
    /// it does not know: those of fetches whose reply was lost when Redis or the network failed.
    pub(crate) async fn reclaim_lost(&self, queue: &str) -> Result<(), Error> {
        let _fetching = self.fetch_lock(queue).lock().await;
        self.reclaim_lost_locked(queue).await
    }

    /// [`Context::reclaim_lost`], for a caller that holds the fetch lock.
    pub(crate) async fn reclaim_lost_locked(&self, queue: &str) -> Result<(), Error> {
        let held = self.held.leases(queue);
        let reclaimed = self.broker.reclaim(queue, &self.worker_id, &held).await?;
        if reclaimed > 0 {
            tracing::warn!(
                queue,
                reclaimed,
                "returned to the queue jobs whose fetch reply was lost"
            );
        }
        Ok(())
    }

    /// Adopts the jobs a blocking wait landed for `queue` into the in-flight hash under fresh
    /// leases, and notes them as held; a paused queue gets them back instead.
    pub(crate) async fn adopt_landed(&self, queue: &str) -> Result<Taken, Error> {
        let _fetching = self.fetch_lock(queue).lock().await;
        let taken = self.broker.adopt_landed(queue, &self.worker_id).await?;
        self.held
            .hold(queue, taken.jobs.iter().map(|job| job.lease.as_str()));
        Ok(taken)
    }
}

/// Calls one hook; a hook that panics is logged with its `event` and does not stop the worker.
fn call_hook(call: impl FnOnce(), event: &dyn std::fmt::Debug) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).is_err() {
        tracing::error!(?event, "a lifecycle hook panicked");
    }
}

/// Why a worker with no task refuses to start.
const NO_TASKS: &str = "this binary has no `#[dtask::task]`, so a worker would run nothing: tasks defined in a library crate are registered only when the binary links that crate; name something from it or add `use that_crate as _;`";

/// How long a worker keeps results unless told otherwise (and a client keeps the records of
/// the jobs it enqueues, unless their task says).
pub(crate) const DEFAULT_RESULT_TTL: Duration = Duration::from_secs(3600);

/// A worker's settings, fixed once it starts.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// The Redis queues served, highest priority first (a partitioned queue's partitions side
    /// by side).
    pub(crate) queues: Vec<String>,
    /// How many of `queues`, in order, each queue served has: one, or its partitions (of equal
    /// priority, served from a different one each round).
    pub(crate) queue_groups: Vec<usize>,
    pub(crate) concurrency: usize,
    pub(crate) fetch_batch: usize,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) lease: Duration,
    pub(crate) max_worker_deaths: u32,
    pub(crate) retry_backoff: Backoff,
    pub(crate) result_ttl: Duration,
    pub(crate) dead_limits: DeadLimits,
    pub(crate) unknown_job_grace: Duration,
    /// The queues whose lifecycle events this worker does not publish.
    pub(crate) quiet_queues: HashSet<String>,
    /// Where the worker reads the time of day (see [`Clock`]).
    pub(crate) clock: Arc<dyn Clock>,
}

impl Settings {
    /// How often the heartbeat runs: five beats per lease, so one late beat costs nothing.
    pub(crate) fn heartbeat_interval(&self) -> Duration {
        self.lease / 5
    }

    /// How often the recoverer looks for lapsed workers.
    pub(crate) fn recovery_interval(&self) -> Duration {
        self.lease / 2
    }
}

/// Where the worker gets its Redis connection.
enum Connection {
    /// A client the application already has.
    Client(Client),
    /// Options to connect with when the worker starts.
    Builder(ClientBuilder),
}

/// A worker for this binary's tasks: configure it, then [`run`](Worker::run) it in its own
/// process or [`spawn`](Worker::spawn) it inside the application.
///
/// ```no_run
/// # async fn demo() -> Result<(), dtask::Error> {
/// // worker mode: returns after SIGTERM or SIGINT, once in-flight jobs are drained
/// dtask::Worker::from_env()?
///     .queues(["emails", "default"])
///     .concurrency(64)
///     .run()
///     .await?;
///
/// // or embedded in a web process
/// let worker = dtask::Worker::from_env()?.concurrency(8).spawn();
/// // ...
/// worker.shutdown().await?;
/// # Ok(()) }
/// ```
#[must_use = "a worker does nothing until `.run()` or `.spawn()`"]
pub struct Worker {
    connection: Connection,
    queues: Option<Vec<String>>,
    settings: Settings,
    states: States,
    middleware: Vec<Arc<dyn Middleware>>,
    hooks: Vec<Hook>,
    worker_hooks: Vec<WorkerHook>,
    periodic: Vec<Periodic>,
    /// Whether it keeps the `#[task(cron = ..)]` schedules of its queues (a drain in
    /// `dtask::testing` does not).
    task_schedules: bool,
}

impl Worker {
    /// A worker connecting as `DTASK_REDIS_URL` (default `redis://127.0.0.1:6379`),
    /// `DTASK_PREFIX` (default `dtask`) and `DTASK_REDIS_CA_FILE` say (see
    /// [`ClientBuilder::from_env`]), running `DTASK_CONCURRENCY` jobs at once (default 16).
    /// Fails when `DTASK_CONCURRENCY` is set but is not a positive number.
    pub fn from_env() -> Result<Worker, Error> {
        let mut worker = Worker::with_connection(Connection::Builder(ClientBuilder::from_env()));
        if let Ok(value) = std::env::var("DTASK_CONCURRENCY") {
            let concurrency = value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                Error::Config(format!(
                    "DTASK_CONCURRENCY must be a positive number, not `{value}`"
                ))
            })?;
            worker = worker.concurrency(concurrency);
        }
        Ok(worker)
    }

    /// A worker using `client`'s connection and key prefix.
    pub fn new(client: &Client) -> Worker {
        Worker::with_connection(Connection::Client(client.clone()))
    }

    fn with_connection(connection: Connection) -> Worker {
        Worker {
            connection,
            queues: None,
            settings: Settings {
                queues: Vec::new(),
                queue_groups: Vec::new(),
                concurrency: 16,
                fetch_batch: 1000,
                shutdown_timeout: Duration::from_secs(25),
                lease: Duration::from_secs(5),
                max_worker_deaths: 3,
                retry_backoff: Backoff {
                    base: Duration::from_secs(1),
                    max: Duration::from_secs(3600),
                },
                result_ttl: DEFAULT_RESULT_TTL,
                dead_limits: DeadLimits {
                    max_len: 10_000,
                    max_age: Duration::from_secs(30 * 24 * 3600),
                },
                unknown_job_grace: Duration::from_secs(15 * 60),
                quiet_queues: HashSet::new(),
                clock: Arc::new(SystemClock),
            },
            states: States::default(),
            middleware: Vec::new(),
            hooks: Vec::new(),
            worker_hooks: Vec::new(),
            periodic: Vec::new(),
            task_schedules: true,
        }
    }

    /// Keeps no `#[task(cron = "..")]` schedule (a drain in `dtask::testing`).
    #[cfg(feature = "testing")]
    pub(crate) fn without_task_schedules(mut self) -> Worker {
        self.task_schedules = false;
        self
    }

    /// Keeps the periodic schedule `periodic` (see [`periodic`](crate::periodic)): at each
    /// tick, this worker or another that keeps it enqueues its job, once. A worker also keeps
    /// the schedules of the `#[task(cron = "..")]` tasks of the queues it serves.
    pub fn periodic(mut self, periodic: Periodic) -> Worker {
        self.periodic.push(periodic);
        self
    }

    /// The queues to serve, highest priority first: a job is taken from a queue only when every
    /// queue before it is empty. Default: every queue a task of this binary names, by name.
    pub fn queues<I>(mut self, queues: I) -> Worker
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.queues = Some(queues.into_iter().map(Into::into).collect());
        self
    }

    /// How many jobs run at once (default 16).
    pub fn concurrency(mut self, jobs: usize) -> Worker {
        self.settings.concurrency = jobs.max(1);
        self
    }

    /// How long running jobs may take to finish after a shutdown begins (default 25 s); those
    /// still running then are stopped and returned to their queue.
    pub fn shutdown_timeout(mut self, grace: Duration) -> Worker {
        self.settings.shutdown_timeout = grace;
        self
    }

    /// How long after a worker's last heartbeat its in-flight jobs are taken back and run by
    /// another worker (default 5 s). Jobs of a killed worker run again within about 1.5 times
    /// this. Shorter recovers sooner; too short takes a worker that is merely slow to reach
    /// Redis for dead, and runs its jobs twice.
    pub fn recovery_after(mut self, lease: Duration) -> Worker {
        self.settings.lease = lease.max(Duration::from_millis(100));
        self
    }

    /// After how many worker deaths a job is taken for poison and buried (default 3). A job
    /// that was in flight on a worker whose heartbeat lapsed counts one death: a job that
    /// crashes or aborts the process running it would otherwise kill workers forever.
    pub fn max_worker_deaths(mut self, deaths: u32) -> Worker {
        self.settings.max_worker_deaths = deaths.max(1);
        self
    }

    /// The delays between attempts of a failing job: doubling from `base` up to `max`, with
    /// jitter (default 1 s up to 1 h).
    pub fn retry_backoff(mut self, base: Duration, max: Duration) -> Worker {
        self.settings.retry_backoff = Backoff { base, max };
        self
    }

    /// Publishes no lifecycle events of `queue`'s jobs (see [`Client::events`]): for a queue
    /// of many tiny jobs no one watches, it saves one small write per batch of jobs. Passing
    /// records (`status()` telling a running job from a queued one) are kept all the same.
    pub fn without_events(mut self, queue: impl Into<String>) -> Worker {
        self.settings.quiet_queues.insert(queue.into());
        self
    }

    /// How long a finished job's result (or a dead job's error) stays readable (default 1 h).
    pub fn result_ttl(mut self, ttl: Duration) -> Worker {
        self.settings.result_ttl = ttl.max(Duration::from_millis(1));
        self
    }

    /// The most records each queue's dead set keeps, and for how long (default 10,000 and 30
    /// days); older records are dropped first.
    pub fn dead_limits(mut self, max_len: u64, max_age: Duration) -> Worker {
        self.settings.dead_limits = DeadLimits { max_len, max_age };
        self
    }

    /// How long a job this worker cannot run yet is put off before it is buried (default 15
    /// minutes, counted from its enqueueing): a job of a task this binary does not have, in a
    /// newer envelope format, or with more arguments than its task takes here. During a rolling deploy, old workers meet the new version's
    /// jobs; they wait, with a growing delay, for a worker of the new version to run them.
    pub fn unknown_job_grace(mut self, grace: Duration) -> Worker {
        self.settings.unknown_job_grace = grace;
        self
    }

    /// Gives tasks that take a [`State<T>`](crate::State) parameter this value (each run gets a
    /// clone). Call once per type; several types may be given. A worker refuses to start when
    /// a task of its queues takes a state it was not given.
    pub fn state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Worker {
        self.states.insert(value);
        self
    }

    /// Runs every job through `middleware` (see [`Middleware`]); middleware added first runs
    /// outermost. A middleware that panics fails the attempt, like a task that panics.
    pub fn middleware(mut self, middleware: impl Middleware) -> Worker {
        self.middleware.push(Arc::new(middleware));
        self
    }

    /// Runs the jobs of the tasks named `tasks` (their `NAME`s) through `middleware`, in the
    /// chain at the place it is added; jobs of other tasks pass it by.
    pub fn middleware_for<I>(mut self, tasks: I, middleware: impl Middleware) -> Worker
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.middleware.push(Arc::new(ForTasks {
            tasks: tasks.into_iter().map(Into::into).collect(),
            inner: Arc::new(middleware),
        }));
        self
    }

    /// Calls `hook` when a job this worker settles succeeds, is scheduled for a retry, or is
    /// buried (see [`JobEvent`]): once per event, after Redis has it. Hooks run in the
    /// worker's task, in the order added: keep them quick (spawn slow work). A hook that panics
    /// is logged and skipped.
    pub fn on_job_event(mut self, hook: impl Fn(&JobEvent<'_>) + Send + Sync + 'static) -> Worker {
        self.hooks.push(Arc::new(hook));
        self
    }

    /// Calls `hook` when this worker has started (registered on its queues, about to take
    /// jobs) and when it has stopped (its shutdown done). A hook that panics is logged and
    /// skipped.
    pub fn on_worker_event(
        mut self,
        hook: impl Fn(&WorkerEvent<'_>) + Send + Sync + 'static,
    ) -> Worker {
        self.worker_hooks.push(Arc::new(hook));
        self
    }

    /// Where the worker reads the time of day, for the times in its records and how long a job
    /// it cannot run yet has waited (default: this machine's clock, [`SystemClock`]). For
    /// tests: when jobs run is decided on the Redis server's clock, not this one.
    pub fn clock(mut self, clock: impl Clock) -> Worker {
        self.settings.clock = Arc::new(clock);
        self
    }

    /// Runs until SIGTERM or SIGINT (Ctrl-C), then shuts down gracefully and returns.
    pub async fn run(self) -> Result<(), Error> {
        self.run_until(shutdown_signal()).await
    }

    /// Runs until `stop` completes, then shuts down gracefully and returns.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> Result<(), Error> {
        let (ctx, acker, reporter, scheduler) = self.start().await?;
        run_started(Arc::new(ctx), acker, reporter, scheduler, stop).await
    }

    /// Starts the worker in a task of its own, for an application that also does other work.
    /// Must be called within a tokio runtime. Stop it with [`WorkerHandle::shutdown`].
    pub fn spawn(self) -> WorkerHandle {
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(self.run_until(async move { stopped.cancelled().await }));
        WorkerHandle { stop, task }
    }

    /// Connects, collects the registry and settles the settings.
    async fn start(self) -> Result<(Context, Acker, Reporter, Scheduler), Error> {
        let registry = Registry::collect()?;
        if registry.names().is_empty() {
            return Err(Error::Config(NO_TASKS.to_owned()));
        }
        let client = match self.connection {
            Connection::Client(client) => client,
            Connection::Builder(builder) => builder.connect().await?,
        };
        let broker = client.broker.clone();
        let mut settings = self.settings;
        settings.queues = match self.queues {
            Some(queues) => queues,
            None => registry.queues(),
        };
        if settings.queues.is_empty() {
            settings.queues.push("default".to_owned());
        }
        if let Some(bad) = settings
            .queues
            .iter()
            .find(|q| q.is_empty() || q.contains(['{', '}']))
        {
            return Err(Error::Config(format!(
                "queue name `{bad}` must be non-empty and hold no `{{` or `}}`"
            )));
        }
        if let Some((task, need)) = registry
            .missing_states(&settings.queues, &self.states)
            .first()
        {
            return Err(Error::Config(format!(
                "task `{task}` takes `{need}`, and this worker was not given one: add `.state(..)` with a value of that type"
            )));
        }
        for queue in &settings.queues {
            if !registry.serves(queue) {
                tracing::warn!(
                    queue = %queue,
                    tasks = %registry.names().join(", "),
                    "no task of this binary names this queue: only jobs routed to it with `.queue(..)` run here; jobs of tasks this binary lacks are put off, then buried (a library crate's tasks register only if the binary links the crate: `use that_crate as _;`)"
                );
            }
        }
        for queue in &settings.queues {
            let Some(members) = client.partitions.members(queue) else {
                continue;
            };
            for task in registry
                .tasks_of(queue)
                .filter(|task| task.limits().is_some())
            {
                tracing::warn!(
                    task = task.name,
                    queue = %queue,
                    partitions = members.len() - 1,
                    "this task's `rate` and `max_running` count per partition of its queue: the whole queue allows that many times more"
                );
            }
        }
        // From here on, a partitioned queue is its partitions (and itself).
        let logical = std::mem::take(&mut settings.queues);
        let (queues, groups) = client.partitions.expand(&logical);
        let quiet_partitions: Vec<String> = settings
            .quiet_queues
            .iter()
            .filter_map(|queue| client.partitions.members(queue))
            .flatten()
            .collect();
        settings.quiet_queues.extend(quiet_partitions);
        (settings.queues, settings.queue_groups) = (queues, groups);
        let scheduled = if self.task_schedules {
            &logical[..]
        } else {
            &[]
        };
        let scheduler = Scheduler::new(client, self.periodic, &registry, scheduled)?;
        settings.fetch_batch = settings.fetch_batch.min(settings.concurrency).max(1);
        let (acks, acker) = Acker::new(&settings.queues);
        let (reports, lines, reporter) = Reporter::new(&settings.queues, &settings.quiet_queues);
        let fetch_locks = settings
            .queues
            .iter()
            .map(|queue| (queue.clone(), tokio::sync::Mutex::new(())))
            .collect();
        let beats = Arc::new(Beats::new(&settings.queues, settings.lease));
        let settling = settings
            .queues
            .iter()
            .map(|queue| (queue.clone(), AtomicUsize::new(0)))
            .collect();
        let ctx = Context {
            broker,
            acks,
            reports,
            lines,
            registry,
            states: self.states,
            middleware: self.middleware,
            hooks: self.hooks,
            worker_hooks: self.worker_hooks,
            settings,
            worker_id: new_worker_id(),
            held: HeldJobs::default(),
            beats,
            settling,
            fetch_locks,
            suspect_in_flight: AtomicBool::new(false),
            wake_fetcher: Notify::new(),
            wake_courier: Notify::new(),
            deferred: std::sync::Mutex::new(HashSet::new()),
            cancels: cancels::CancelBook::default(),
        };
        Ok((ctx, acker, reporter, scheduler))
    }
}

/// How long a starting worker waits for the requests to stop jobs made while it was not
/// listening, before it takes its first job anyway.
const CATCH_UP_WAIT: Duration = Duration::from_secs(2);

/// How long each shutdown step that talks to Redis may take beyond the grace period (stopping
/// the parts, the last acknowledgements, handing unfinished jobs back): when Redis does not
/// answer, the worker exits anyway (within the grace period plus about five seconds) and its
/// jobs are recovered by others once its heartbeat lapses.
const SHUTDOWN_STEP: Duration = Duration::from_millis(1500);

/// Waits up to `limit` for `task` to end after it was told to stop, then aborts it.
async fn stop_within(mut task: JoinHandle<()>, limit: Duration) {
    match tokio::time::timeout(limit, &mut task).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!(%error, "a worker part ended abnormally"),
        Err(_) => {
            tracing::warn!("a worker part did not stop in time (Redis does not answer); aborted");
            task.abort();
        }
    }
}

/// Runs a started worker until `stop`, then shuts it down in order.
async fn run_started(
    ctx: Arc<Context>,
    acker: Acker,
    reporter: Reporter,
    scheduler: Scheduler,
    stop: impl Future<Output = ()>,
) -> Result<(), Error> {
    let settings = &ctx.settings;
    tracing::info!(
        worker = %ctx.worker_id,
        redis = ctx.broker.url(),
        prefix = ctx.broker.prefix(),
        queues = ?settings.queues,
        concurrency = settings.concurrency,
        "worker started"
    );
    match ctx.broker.eviction_policy().await {
        Some(policy) if policy != "noeviction" => tracing::warn!(
            policy,
            "Redis may evict keys when it is full (maxmemory-policy is not `noeviction`): queued jobs could vanish; set `maxmemory-policy noeviction`"
        ),
        _ => {}
    }
    // Register before the first fetch, so that no job is ever in flight on an unknown worker.
    // A queue that refuses (an ACL, a wrong key type, its node down) is logged and served
    // anyway (its fetches fail and are retried); a worker no queue accepts does not start.
    let mut registered = 0;
    let mut first_error = None;
    for queue in &settings.queues {
        match ctx.broker.heartbeat(queue, &ctx.worker_id).await {
            Ok(_) => registered += 1,
            Err(error) => {
                tracing::error!(%error, queue, "cannot register this worker on the queue");
                first_error.get_or_insert(error);
            }
        }
    }
    if let (0, Some(error)) = (registered, first_error) {
        return Err(error);
    }
    ctx.broker
        .register_new_queues(settings.queues.iter().map(String::as_str))
        .await;
    ctx.fire_worker(&WorkerEvent::Started {
        worker_id: &ctx.worker_id,
        queues: &settings.queues,
    });

    let stop_heartbeat = CancellationToken::new();
    let heartbeat = Heartbeat::new(
        ctx.broker.clone(),
        settings.queues.clone(),
        ctx.worker_id.clone(),
        settings.heartbeat_interval(),
        ctx.beats.clone(),
    )
    .spawn(stop_heartbeat.clone())?;
    // Publishes events and passing records until the worker's last word (its hand-back).
    let stop_reporting = CancellationToken::new();
    let reporting = tokio::spawn(reporter.run(ctx.broker.clone(), stop_reporting.clone()));
    let stop_helpers = CancellationToken::new();
    let helpers = [
        tokio::spawn(Recoverer::new(ctx.clone()).run(stop_helpers.clone())),
        tokio::spawn(Forwarder::new(ctx.clone()).run(stop_helpers.clone())),
        tokio::spawn(scheduler.run(stop_helpers.clone())),
        tokio::spawn(courier::Courier::new(ctx.clone()).run(stop_helpers.clone())),
    ];

    // Listens for requests to stop running jobs until the last job ended. The first jobs wait
    // (a little) for the requests made while no worker listened: a job cancelled while its
    // worker was dead must not start here first.
    let stop_listening = CancellationToken::new();
    let caught_up = CancellationToken::new();
    let listener = tokio::spawn(cancels::listen(
        ctx.clone(),
        stop_listening.clone(),
        caught_up.clone(),
    ));
    let _ = tokio::time::timeout(CATCH_UP_WAIT, caught_up.cancelled()).await;
    let jobs = TaskTracker::new();
    let abandon = CancellationToken::new();
    let stop_acker = CancellationToken::new();
    let acker = {
        let (ctx, stop, abandon) = (ctx.clone(), stop_acker.clone(), abandon.clone());
        tokio::spawn(async move { acker.run(&ctx, stop, abandon).await })
    };
    let stop_fetching = CancellationToken::new();
    let fetcher = tokio::spawn(
        Fetcher::new(
            ctx.clone(),
            settings.concurrency,
            jobs.clone(),
            abandon.clone(),
        )
        .run(stop_fetching.clone()),
    );

    stop.await;
    // The shutdown order, each step bounded so that the worker exits within the grace period
    // plus a few seconds whatever Redis does:
    // 1. Stop taking jobs (the fetcher and its waiters return without waiting on Redis) and
    //    stop the recoverer and the forwarder.
    tracing::info!(worker = %ctx.worker_id, "shutting down: no new jobs; waiting for running ones");
    stop_fetching.cancel();
    stop_helpers.cancel();
    // Each returns at once, but a Redis call it is in may wait for its response timeout.
    let [recoverer, forwarder, scheduler, courier] = helpers;
    tokio::join!(
        stop_within(fetcher, SHUTDOWN_STEP),
        stop_within(recoverer, SHUTDOWN_STEP),
        stop_within(forwarder, SHUTDOWN_STEP),
        stop_within(scheduler, SHUTDOWN_STEP),
        stop_within(courier, SHUTDOWN_STEP),
    );
    // 2. Let running jobs finish (and be acknowledged) within the grace period; then abandon
    //    the rest: they stop at once, and their settles give up.
    jobs.close();
    if tokio::time::timeout(settings.shutdown_timeout, jobs.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            running = jobs.len(),
            grace = ?settings.shutdown_timeout,
            "grace period over: stopping the jobs still running and requeueing them"
        );
        abandon.cancel();
        jobs.wait().await;
    }
    stop_listening.cancel();
    stop_within(listener, SHUTDOWN_STEP).await;
    // 3. Flush the last acknowledgements (given up on when the jobs were abandoned).
    stop_acker.cancel();
    if tokio::time::timeout(
        SHUTDOWN_STEP,
        &mut Box::pin(async {
            if let Err(error) = acker.await {
                tracing::error!(%error, "the acker ended abnormally");
            }
        }),
    )
    .await
    .is_err()
    {
        abandon.cancel();
    }
    // 4. Stop the heartbeat: every job this worker still holds is about to be handed back (or,
    //    when Redis is away, recovered by others once the heartbeat has lapsed).
    let mut result = Ok(());
    stop_heartbeat.cancel();
    if tokio::task::spawn_blocking(move || heartbeat.join())
        .await
        .map_or(true, |joined| joined.is_err())
    {
        result = Err(Error::Worker("the heartbeat thread panicked".into()));
    }
    // 5. Hand back what is still in flight, and leave the queues' worker registries (bounded:
    //    when Redis is away, others recover the jobs once this worker's heartbeat lapsed).
    let hand_back = async {
        for queue in &settings.queues {
            match ctx.broker.requeue_own(queue, &ctx.worker_id).await {
                Ok(payloads) if payloads.is_empty() => {}
                Ok(payloads) => {
                    let requeued = payloads.len();
                    tracing::info!(queue, requeued, "returned unfinished jobs to the queue");
                    ctx.report_back(queue, &ctx.worker_id, &payloads);
                }
                Err(error) => {
                    tracing::error!(%error, queue, "could not hand back unfinished jobs; others will recover them once this worker's heartbeat lapses");
                }
            }
        }
    };
    if tokio::time::timeout(SHUTDOWN_STEP, hand_back)
        .await
        .is_err()
    {
        tracing::error!(
            "Redis did not answer while handing back unfinished jobs; others will recover them once this worker's heartbeat lapses"
        );
    }
    // 6. The last events (bounded, as the other steps).
    stop_reporting.cancel();
    stop_within(reporting, SHUTDOWN_STEP).await;
    tracing::info!(worker = %ctx.worker_id, "worker stopped");
    ctx.fire_worker(&WorkerEvent::Stopped {
        worker_id: &ctx.worker_id,
    });
    result
}

/// A worker running in a task of its own, from [`Worker::spawn`].
#[derive(Debug)]
pub struct WorkerHandle {
    stop: CancellationToken,
    task: JoinHandle<Result<(), Error>>,
}

impl WorkerHandle {
    /// Shuts the worker down gracefully and waits until it has: running jobs finish within the
    /// grace period, the rest return to their queue. Returns the error the worker stopped with,
    /// if any (such as Redis being unreachable at start).
    pub async fn shutdown(self) -> Result<(), Error> {
        self.stop.cancel();
        self.task
            .await
            .map_err(|e| Error::Worker(format!("the worker task failed: {e}")))?
    }

    /// Whether the worker has stopped (after a shutdown, or because it failed to start).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C on every platform).
pub async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
}

/// `host-pid-random`: unique among running workers, and telling where a worker runs.
fn new_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| {
            h.trim()
                .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    let random: u32 = rand::random();
    format!("{host}-{}-{random:08x}", std::process::id())
}
