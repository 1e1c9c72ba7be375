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
/// The name of a default drain of a task with `max_running` (never reached): the cost of
/// admitting each run under a task's limits, next to [`DRAIN`].
pub const DRAIN_LIMITED: &str = "drain-max-running";
/// The name of a drain of one chord's members (and then its callback): the cost of a group's
/// bookkeeping per member, next to [`DRAIN`].
pub const DRAIN_CHORD: &str = "drain-chord";
/// The name of a default drain whose worker publishes no lifecycle events for the queue
/// (`Worker::without_events`): the cost of events, next to [`DRAIN`].
pub const DRAIN_WITHOUT_EVENTS: &str = "drain-no-events";

/// What a drain's jobs are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// No-op jobs that keep their results (the default).
    Default,
    /// Fire-and-forget no-op jobs: no result records.
    NoResults,
    /// Default jobs, each run through a pass-through middleware.
    Middleware,
    /// Default jobs of a task with `max_running`, each run admitted under it.
    Limited,
    /// Default jobs, their worker publishing no events.
    Quiet,
    /// The members of one chord, then its callback.
    Chord,
}

impl Variant {
    /// Every variant, in the order the report lists them.
    pub const ALL: [Variant; 6] = [
        Variant::Default,
        Variant::Quiet,
        Variant::Chord,
        Variant::NoResults,
        Variant::Middleware,
        Variant::Limited,
    ];

    /// The variant of this name (see [`Variant::name`]), for the command line.
    pub fn parse(name: &str) -> std::result::Result<Variant, String> {
        Variant::ALL
            .into_iter()
            .find(|variant| variant.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Variant::ALL.iter().map(|variant| variant.name()).collect();
                format!(
                    "no drain is named `{name}`; the drains: {}",
                    names.join(", ")
                )
            })
    }

    fn name(self) -> &'static str {
        match self {
            Variant::Default => DRAIN,
            Variant::NoResults => DRAIN_WITHOUT_RESULTS,
            Variant::Middleware => DRAIN_THROUGH_MIDDLEWARE,
            Variant::Limited => DRAIN_LIMITED,
            Variant::Quiet => DRAIN_WITHOUT_EVENTS,
            Variant::Chord => DRAIN_CHORD,
        }
    }
}

/// A middleware that does nothing but run the job.
struct PassThrough;

#[dtask::async_trait]
impl dtask::Middleware for PassThrough {
    async fn handle(&self, _job: &dtask::JobContext, next: dtask::Next<'_>) -> dtask::RunOutcome {
        next.run().await
    }
}

/// Drains `jobs` no-op jobs of `variant` with one worker of `concurrency`.
pub async fn drain(
    bench: &mut Bench,
    jobs: u64,
    concurrency: usize,
    variant: Variant,
) -> Result<Outcome> {
    eprintln!("3. drain: {jobs} jobs, concurrency {concurrency}, {variant:?} ...");
    let (client, prefix) = bench.fresh_client().await?;
    let empty = bench.snapshot().await?;
    let kind = match variant {
        Variant::NoResults => tasks::NoopKind::Forget,
        Variant::Limited => tasks::NoopKind::Limited,
        Variant::Default | Variant::Middleware | Variant::Quiet | Variant::Chord => {
            tasks::NoopKind::Kept
        }
    };
    let callback = if variant == Variant::Chord {
        let members = (0..jobs).map(|i| tasks::noop::call(i, 7));
        Some(
            dtask::group(members)
                .then(tasks::count_noops::with_input())
                .client(&client)
                .enqueue()
                .await?,
        )
    } else {
        fill_noop(&client, jobs, kind).await?;
        None
    };
    NoopWatch::reset(jobs);
    let before = bench.snapshot().await?;
    let started_ns = tasks::now_ns();
    let mut worker = dtask::Worker::new(&client)
        .queues([tasks::NOOP_QUEUE])
        .concurrency(concurrency);
    if variant == Variant::Middleware {
        worker = worker.middleware(PassThrough);
    }
    if variant == Variant::Quiet {
        worker = worker.without_events(tasks::NOOP_QUEUE);
    }
    let worker = worker.spawn();
    // Generous: a drain slower than 1,000 jobs/s is a failure worth seeing.
    let limit = Duration::from_secs(60 + jobs / 1_000);
    let mut finished = NoopWatch::finished(limit).await;
    if let Some(callback) = callback {
        // The members ran; the drain ends when the callback did.
        let counted = callback.wait(limit).await;
        finished = match counted {
            Ok(count) if count as u64 == jobs => Some(tasks::now_ns()),
            _ => None,
        };
    }
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
    let mut outcome = Outcome::new(3, variant.name(), jobs, seconds, &delta).with_rate();
    outcome.concurrency = Some(concurrency);
    outcome.retained_bytes_per_job =
        Some(after.since(&empty).memory_bytes as f64 / jobs.max(1) as f64);
    let done = NoopWatch::done();
    if done != jobs {
        outcome.note = Some(format!("{done} runs for {jobs} jobs (at least once)"));
    }
    Ok(outcome)
}
