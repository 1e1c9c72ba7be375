//! The task registry: every `#[task]` in the binary submits one [`TaskEntry`] through
//! `inventory`, and workers look tasks up here by name.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::error::Error;
use crate::state::{StateNeed, States};

/// The future a task's handler returns: the JSON-encoded return value, or the error text.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'static>>;

/// What a handler does with a job's arguments: decodes them and takes the states it needs from
/// the worker's (an `Err` here means the job cannot run: the arguments do not fit the task, or
/// the worker lacks a state; the job goes straight to the dead set), then returns the run.
pub type Handler =
    fn(args: &str, version: u32, states: &States) -> Result<HandlerFuture, HandlerError>;

/// Why a handler could not start a run.
#[derive(Debug)]
pub enum HandlerError {
    /// The job's arguments do not fit the task: the job can never run.
    Arguments(String),
    /// This worker lacks a state the task takes: another worker may have it.
    MissingState(String),
    /// The job has more arguments than the task takes here: a newer deploy enqueued it, and a
    /// newer worker may run it.
    NewerArguments(String),
}

/// A task's name and defaults, known at compile time.
#[derive(Debug)]
pub struct TaskInfo {
    /// The stable name jobs carry.
    pub name: &'static str,
    /// The version of its parameters (`#[task(version = ..)]`, 1 by default), carried by its
    /// jobs: an older job is migrated (`migrate = ..`) or read as the parameters are now; a
    /// newer one waits for a worker that knows its version.
    pub version: u32,
    /// The queue jobs go to unless the enqueuer chooses another.
    pub queue: &'static str,
    /// How many times a failed job is retried before it is dead.
    pub retries: u32,
    /// How long one attempt may run; `None` for no limit.
    pub timeout: Option<Duration>,
    /// How long a successful job's result is kept; `None` for the worker's default
    /// (`Worker::result_ttl`), zero to keep none.
    pub result_ttl: Option<Duration>,
    /// The cron pattern of a task scheduled with `#[task(cron = "..")]`.
    pub cron: Option<&'static str>,
    /// The time zone its pattern is read in (`#[task(tz = "..")]`); UTC when None.
    pub tz: Option<&'static str>,
    /// At most one job with the same arguments for this long (`#[task(unique_for = "..")]`).
    pub unique_for: Option<Duration>,
    /// At most this many starts per period, across every worker (`#[task(rate = "..")]`).
    pub rate: Option<crate::RateLimit>,
    /// At most this many runs at once, across every worker (`#[task(max_running = ..)]`).
    pub max_running: Option<u32>,
}

impl TaskInfo {
    /// The task's own limits, when it has any.
    pub(crate) fn limits(&self) -> Option<crate::broker::TaskLimits> {
        (self.rate.is_some() || self.max_running.is_some()).then_some(crate::broker::TaskLimits {
            max_running: self.max_running,
            rate: self.rate,
        })
    }
}

/// A task as a type: what `#[task]` generates as `my_task::Task`, for code generic over tasks
/// (such as [`testing::TestRedis::enqueued`](crate::testing)).
///
/// ```
/// mod tasks {
///     #[dtask::task(queue = "emails")]
///     pub async fn send_mail(to: String, attempts: u32) {}
/// }
///
/// fn describe<T: dtask::TaskDef>() -> String {
///     format!("{} on {} takes {:?}", T::INFO.name, T::INFO.queue, T::PARAMS)
/// }
/// assert!(describe::<tasks::send_mail::Task>().ends_with("on emails takes [\"to\", \"attempts\"]"));
/// ```
pub trait TaskDef {
    /// Its job's arguments: the tuple of its parameters (`State<..>` ones excepted).
    type Args: crate::__private::JobArgs + serde::Serialize;
    /// What it returns on success (what waiting on a job yields).
    type Output;
    /// Its name and defaults.
    const INFO: &'static TaskInfo;
    /// Its parameters' names, in order (`State<..>` ones excepted).
    const PARAMS: &'static [&'static str];
}

/// One registered task: its settings and its handler. Built by `#[task]`; not meant to be
/// written by hand.
#[doc(hidden)]
pub struct TaskEntry {
    pub info: &'static TaskInfo,
    pub handler: Handler,
    /// The states (`State<T>` parameters) the task takes.
    pub states: &'static [StateNeed],
    /// Where the task is defined, for error messages (`file:line`).
    pub location: &'static str,
}

inventory::collect!(TaskEntry);

/// The tasks this binary knows, by name.
pub(crate) struct Registry {
    by_name: HashMap<&'static str, &'static TaskEntry>,
}

impl Registry {
    /// Collects every registered task; two tasks with one name are an error naming both.
    pub(crate) fn collect() -> Result<Registry, Error> {
        let mut by_name: HashMap<&'static str, &'static TaskEntry> = HashMap::new();
        for entry in inventory::iter::<TaskEntry> {
            if let Some(first) = by_name.insert(entry.info.name, entry) {
                let (first, second) = if first.location <= entry.location {
                    (first.location, entry.location)
                } else {
                    (entry.location, first.location)
                };
                return Err(Error::DuplicateTask {
                    name: entry.info.name.to_owned(),
                    first: first.to_owned(),
                    second: second.to_owned(),
                });
            }
        }
        Ok(Registry { by_name })
    }

    /// The task registered as `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&'static TaskEntry> {
        self.by_name.get(name).copied()
    }

    /// The tasks of `queues` that take a state `states` lacks, with the state's type name.
    pub(crate) fn missing_states(
        &self,
        queues: &[String],
        states: &States,
    ) -> Vec<(&'static str, &'static str)> {
        let mut missing: Vec<_> = self
            .by_name
            .values()
            .filter(|entry| queues.iter().any(|queue| queue == entry.info.queue))
            .flat_map(|entry| {
                entry
                    .states
                    .iter()
                    .filter(|need| !states.has(need))
                    .map(|need| (entry.info.name, (need.type_name)()))
            })
            .collect();
        missing.sort_unstable();
        missing
    }

    /// Whether some task names `queue` as its own.
    pub(crate) fn serves(&self, queue: &str) -> bool {
        self.by_name.values().any(|entry| entry.info.queue == queue)
    }

    /// Every queue some registered task sends its jobs to, sorted.
    pub(crate) fn queues(&self) -> Vec<String> {
        let mut queues: Vec<String> = self
            .by_name
            .values()
            .map(|e| e.info.queue.to_owned())
            .collect();
        queues.sort();
        queues.dedup();
        queues
    }

    /// The tasks of `queues` scheduled with `#[task(cron = "..")]`, sorted by name.
    pub(crate) fn scheduled(&self, queues: &[String]) -> Vec<&'static TaskInfo> {
        let mut tasks: Vec<&'static TaskInfo> = self
            .by_name
            .values()
            .map(|entry| entry.info)
            .filter(|info| info.cron.is_some() && queues.iter().any(|q| q == info.queue))
            .collect();
        tasks.sort_unstable_by_key(|info| info.name);
        tasks
    }

    /// The registered names, sorted, for messages about unknown tasks.
    pub(crate) fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.by_name.keys().copied().collect();
        names.sort_unstable();
        names
    }
}
