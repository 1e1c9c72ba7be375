//! Metrics of jobs, through the `metrics` crate's facade (feature `metrics`): whatever
//! recorder the application installs (`metrics-exporter-prometheus`, say) receives them; with
//! none installed, or without the feature, they cost nothing.
//!
//! Names and labels follow Prometheus' conventions:
//!
//! | metric | type | labels | what |
//! | --- | --- | --- | --- |
//! | `dtask_jobs_enqueued_total` | counter | `queue`, `task` | jobs a client enqueued |
//! | `dtask_jobs_finished_total` | counter | `queue`, `task`, `outcome` | attempts that ended: `succeeded`, `failed` (another attempt follows), `dead` |
//! | `dtask_jobs_recovered_total` | counter | `queue` | jobs taken back from workers that died |
//! | `dtask_job_duration_seconds` | histogram | `queue`, `task` | how long an attempt ran |
//! | `dtask_job_wait_seconds` | histogram | `queue` | from enqueue (or due time) to the start of the first attempt |
//! | `dtask_jobs_running` | gauge | `queue` | attempts running on this worker |
//! | `dtask_queue_jobs` | gauge | `queue`, `state` | jobs in each state, read by each worker every few seconds |
//!
//! A partitioned queue's runs count under the queue's name; its `dtask_queue_jobs` gauges are
//! per partition (`emails#3`): sum them by the name before the `#`.

use std::time::Duration;

/// How an attempt ended, as the `outcome` label says.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    Succeeded,
    Failed,
    Dead,
    /// Put off by the handler (`RetryAfter`): not an attempt.
    PutOff,
    /// Held back by its task's limits, to wait in Redis: not an attempt.
    Waiting,
    /// Cancelled while it ran, or before it started again.
    Cancelled,
}

impl Outcome {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn label(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Dead => "dead",
            Outcome::PutOff => "put_off",
            Outcome::Waiting => "waiting",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// The `queue` label of a run's metrics: a partition's runs count under their queue's name,
/// as its enqueues do (the depth gauges stay per Redis queue).
#[cfg(feature = "metrics")]
fn label(queue: &str) -> String {
    crate::partition::queue_of_name(queue).to_owned()
}

/// Jobs a client enqueued.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn enqueued(queue: &str, task: &str, jobs: u64) {
    #[cfg(feature = "metrics")]
    metrics::counter!("dtask_jobs_enqueued_total", "queue" => queue.to_owned(), "task" => task.to_owned())
        .increment(jobs);
}

/// An attempt starts after its job waited `waited` (for its first attempt only).
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn started(queue: &str, waited: Option<Duration>) {
    #[cfg(feature = "metrics")]
    {
        metrics::gauge!("dtask_jobs_running", "queue" => label(queue)).increment(1.0);
        if let Some(waited) = waited {
            metrics::histogram!("dtask_job_wait_seconds", "queue" => label(queue))
                .record(waited.as_secs_f64());
        }
    }
}

/// An attempt that `started` stopped running now (the clock is read only when metrics are
/// built in).
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn stopped(queue: &str, task: &str, started: std::time::Instant) {
    #[cfg(feature = "metrics")]
    {
        let ran = started.elapsed();
        metrics::gauge!("dtask_jobs_running", "queue" => label(queue)).decrement(1.0);
        metrics::histogram!("dtask_job_duration_seconds", "queue" => label(queue), "task" => task.to_owned())
            .record(ran.as_secs_f64());
    }
}

/// An attempt ended as `outcome` (counted once its settle held).
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn finished(queue: &str, task: &str, outcome: Outcome) {
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "dtask_jobs_finished_total",
        "queue" => label(queue),
        "task" => task.to_owned(),
        "outcome" => outcome.label()
    )
    .increment(1);
}

/// Jobs taken back from workers that died.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn recovered(queue: &str, jobs: u64) {
    #[cfg(feature = "metrics")]
    metrics::counter!("dtask_jobs_recovered_total", "queue" => label(queue)).increment(jobs);
}

/// How many jobs `queue` holds in `state`.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn depth(queue: &str, state: &'static str, jobs: u64) {
    #[cfg(feature = "metrics")]
    metrics::gauge!("dtask_queue_jobs", "queue" => queue.to_owned(), "state" => state)
        .set(jobs as f64);
}

/// Whether the crate was built with metrics: the worker reads queue depths only then.
pub(crate) const ENABLED: bool = cfg!(feature = "metrics");
