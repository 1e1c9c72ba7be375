//! Scenario 3: drain. A queue is filled with no-op jobs (with `enqueue_many`), then one
//! in-process worker runs them all; the time is from the worker's start to the last
//! completion, as the task itself records it.

use std::time::Duration;

use super::{Bench, fill_noop};
use crate::Result;
use crate::report::Outcome;
use crate::tasks::{self, NoopWatch};

/// The name of a drain whose jobs keep their result records (the default).
pub const DRAIN: &str = "drain";
/// The name of a drain of fire-and-forget jobs, which keep none.
pub const DRAIN_WITHOUT_RESULTS: &str = "drain-no-results";
/// The name of a default drain whose runs go through one middleware that only calls the next:
/// the cost of the middleware chain, next to [`DRAIN`].
pub const DRAIN_THROUGH_MIDDLEWARE: &str = "drain-middleware";

/// A middleware that does nothing but run the job.
struct PassThrough;

#[dtask::async_trait]
impl dtask::Middleware for PassThrough {
    async fn handle(&self, _job: &dtask::JobContext, next: dtask::Next<'_>) -> dtask::RunOutcome {
        next.run().await
    }
}

/// Drains `jobs` no-op jobs with one worker of `concurrency`; the jobs keep a result record
/// (the default) when `keep_results`, none otherwise (`result_ttl = "0s"`); every run goes
/// through a pass-through middleware when `through_middleware`.
pub async fn drain(
    bench: &mut Bench,
    jobs: u64,
    concurrency: usize,
    keep_results: bool,
    through_middleware: bool,
) -> Result<Outcome> {
    eprintln!(
        "3. drain: {jobs} jobs, concurrency {concurrency}, results kept: {keep_results}, through a middleware: {through_middleware} ..."
    );
    let (client, prefix) = bench.fresh_client().await?;
    let empty = bench.snapshot().await?;
    fill_noop(&client, jobs, keep_results).await?;
    NoopWatch::reset(jobs);
    let before = bench.snapshot().await?;
    let started_ns = tasks::now_ns();
    let mut worker = dtask::Worker::new(&client)
        .queues([tasks::NOOP_QUEUE])
        .concurrency(concurrency);
    if through_middleware {
        worker = worker.middleware(PassThrough);
    }
    let worker = worker.spawn();
    // Generous: a drain slower than 1,000 jobs/s is a failure worth seeing.
    let limit = Duration::from_secs(60 + jobs / 1_000);
    let finished = NoopWatch::finished(limit).await;
    let stopped = worker.shutdown().await;
    let Some(finished_ns) = finished else {
        return Err(format!(
            "drain of {jobs} jobs (concurrency {concurrency}) timed out after {limit:?} with {} done",
            NoopWatch::done()
        )
        .into());
    };
    stopped?;
    let after = bench.snapshot().await?;
    bench.clean_up(&prefix).await?;

    let seconds = finished_ns.saturating_sub(started_ns) as f64 / 1e9;
    let delta = after.since(&before);
    let name = match (keep_results, through_middleware) {
        (_, true) => DRAIN_THROUGH_MIDDLEWARE,
        (true, false) => DRAIN,
        (false, false) => DRAIN_WITHOUT_RESULTS,
    };
    let mut outcome = Outcome::new(3, name, jobs, seconds, &delta).with_rate();
    outcome.concurrency = Some(concurrency);
    outcome.retained_bytes_per_job =
        Some(after.since(&empty).memory_bytes as f64 / jobs.max(1) as f64);
    let done = NoopWatch::done();
    if done != jobs {
        outcome.note = Some(format!("{done} runs for {jobs} jobs (at least once)"));
    }
    Ok(outcome)
}
