//! Inline mode, for unit tests that need no Redis at all: inside [`inline`] (or
//! [`Inline::run`]), every enqueue runs its job at once, in the caller, and the handle it returns
//! answers `status()` and `wait()` with that run's outcome. Modelled on Sidekiq's
//! `Sidekiq::Testing.inline!` and Celery's eager mode.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};

use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use crate::envelope::{JobId, OutcomeRecord, OutcomeState};
use crate::job::JobHandle;
use crate::registry::{HandlerError, Registry, TaskInfo};
use crate::state::States;
use crate::{Error, JobContext, clock};

tokio::task_local! {
    /// The inline mode of the task running a test body, if it is in one.
    static INLINE: Inline;
}

/// Runs `body` in inline mode: each job it enqueues (`my_task::enqueue(..)`, `with()..`,
/// `enqueue_many`, `call(..).enqueue()`), and each job those jobs enqueue, runs at once in the
/// caller, and the enqueue returns when it has ended, with a handle whose `status()` and
/// `wait()` give its outcome without Redis. See [`Inline`] for what differs from a worker.
///
/// ```
/// #[dtask::task]
/// async fn add(a: u32, b: u32) -> u32 {
///     a + b
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), dtask::Error> {
/// let sum = dtask::testing::inline(async {
///     let job = add::enqueue(2, 3).await?; // ran already, here
///     job.wait(std::time::Duration::from_secs(1)).await
/// })
/// .await?;
/// assert_eq!(sum, 5);
/// # Ok(()) }
/// ```
pub async fn inline<F: Future>(body: F) -> F::Output {
    Inline::new().run(body).await
}

/// Inline mode with options: the states the tasks take (`State<T>` parameters), as a worker
/// is given them with `Worker::state`.
///
/// Inline, a job runs once, when it is enqueued, and the enqueue returns when it has ended: a
/// delay or a time is not waited for, a failed run is the job's end (dead, no retry, a
/// `RetryAfter` asked for is not kept), a panic in the task reaches the test (as a bug
/// should), uniqueness is not kept (an `.id(..)` names the job), middleware and events are
/// not run, and a timeout does not apply. The task sees its job as
/// [`dtask::current()`](crate::current) (attempt 1). A handle answers `status()`, `wait()` and
/// `cancel()` (the job has ended) itself; `my_task::job(id)` is a handle on a job in Redis,
/// which an inline job is not. Its arguments still go through JSON, as they would
/// through Redis, so what cannot travel fails as it would. Workflows (`dtask::chain`,
/// `dtask::group`) are refused with an error: test them with
/// [`TestRedis::drain`](crate::testing::TestRedis::drain). Inline mode holds for the body's own
/// task: a task spawned from it (`tokio::spawn`) enqueues as usual.
///
/// ```
/// #[derive(Clone)]
/// struct Mailer {
///     from: &'static str,
/// }
///
/// #[dtask::task]
/// async fn welcome(to: String, mailer: dtask::State<Mailer>) -> String {
///     format!("{} -> {to}", mailer.from)
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), dtask::Error> {
/// let inline = dtask::testing::Inline::new().state(Mailer { from: "hi@example.com" });
/// let sent = inline
///     .run(async { welcome::enqueue("ann@example.com".into()).await?.wait(std::time::Duration::from_secs(1)).await })
///     .await?;
/// assert_eq!(sent, "hi@example.com -> ann@example.com");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Inline {
    states: States,
}

impl Inline {
    /// Inline mode with no states.
    pub fn new() -> Self {
        Inline::default()
    }

    /// Gives the tasks a state (`State<T>` parameters take it), as `Worker::state` does.
    pub fn state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.states.insert(value);
        self
    }

    /// Runs `body` in this inline mode (see [`inline`]).
    pub async fn run<F: Future>(self, body: F) -> F::Output {
        INLINE.scope(self, body).await
    }

    /// Runs each job of `task` (one per encoded argument list), as taken from `queue`, and
    /// returns their handles (the job named `id`, when the caller named it).
    pub(crate) async fn run_jobs<O>(
        &self,
        task: &'static TaskInfo,
        queue: &str,
        id: Option<JobId>,
        jobs: Vec<Box<RawValue>>,
    ) -> Result<Vec<JobHandle<O>>, Error> {
        let entry = registry()?.get(task.name).ok_or_else(|| {
            Error::Config(format!(
                "inline mode found no task `{}` registered in this binary",
                task.name
            ))
        })?;
        let queue: Arc<str> = Arc::from(queue);
        let mut handles = Vec::with_capacity(jobs.len());
        for args in jobs {
            let id = id.clone().unwrap_or_else(JobId::generate);
            let record = match (entry.handler)(args.get(), task.version, &self.states) {
                Ok(run) => {
                    let now_ms = clock::now_ms();
                    let job = Arc::new(JobContext {
                        task: task.name.into(),
                        queue: queue.clone(),
                        id: id.clone(),
                        attempt: 1,
                        args: args.get().to_owned(),
                        headers: BTreeMap::new(),
                        enqueued_at_ms: now_ms,
                        cancel: CancellationToken::new(),
                        retry_after: std::sync::Mutex::new(None),
                        started_ms: now_ms,
                        progress_to: None,
                    });
                    // On a task of its own, in this inline mode again: a job that enqueues a
                    // job (and so on, a batch after another) does not grow this stack.
                    let run = INLINE.scope(self.clone(), crate::middleware::in_job(job, run));
                    let ended = match tokio::spawn(run).await {
                        Ok(ended) => ended,
                        // A panic in the task reaches the test, as a bug should.
                        Err(error) if error.is_panic() => {
                            std::panic::resume_unwind(error.into_panic())
                        }
                        Err(error) => {
                            return Err(Error::Config(format!(
                                "an inline run of `{}` did not end: {error}",
                                task.name
                            )));
                        }
                    };
                    match ended {
                        // A task that keeps no result has none to read, as with Redis.
                        Ok(_) if task.result_ttl == Some(std::time::Duration::ZERO) => None,
                        Ok(value) => Some(outcome(OutcomeState::Succeeded, 1, Some(value), None)),
                        Err(error) => Some(outcome(OutcomeState::Dead, 1, None, Some(error))),
                    }
                }
                Err(refused) => {
                    let error = match refused {
                        HandlerError::Arguments(reason) => {
                            crate::registry::arguments_mismatch(task.name, &reason)
                        }
                        HandlerError::MissingState(reason)
                        | HandlerError::NewerArguments(reason) => reason,
                    };
                    Some(outcome(OutcomeState::Dead, 0, None, Some(error)))
                }
            };
            let record = match record {
                Some(record) => Some(serde_json::to_string(&record).map_err(|e| {
                    Error::Config(format!("inline mode could not record an outcome: {e}"))
                })?),
                None => None,
            };
            handles.push(JobHandle::new(id, None).ran_inline(task, record.map(Arc::from)));
        }
        Ok(handles)
    }
}

/// The inline mode the current task runs in, if any.
pub(crate) fn current() -> Option<Inline> {
    INLINE.try_with(Inline::clone).ok()
}

/// The tasks of this binary, collected once.
fn registry() -> Result<&'static Registry, Error> {
    static REGISTRY: OnceLock<Result<Registry, String>> = OnceLock::new();
    REGISTRY
        .get_or_init(|| Registry::collect().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| Error::Config(e.clone()))
}

/// A job's outcome record, as a worker writes it.
fn outcome(
    state: OutcomeState,
    attempts: u32,
    value: Option<String>,
    error: Option<String>,
) -> OutcomeRecord {
    OutcomeRecord {
        state,
        attempts,
        at_ms: clock::now_ms(),
        value: value.and_then(|value| RawValue::from_string(value).ok()),
        error,
        progress: None,
    }
}
