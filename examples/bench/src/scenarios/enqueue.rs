//! Scenarios 1 and 2: enqueue throughput, in batches and one job per call. No worker runs, so
//! the jobs stay queued and the growth of Redis memory is what a queued job costs.

use std::time::Instant;

use super::{BATCH, Bench, fill_noop};
use crate::Result;
use crate::report::Outcome;
use crate::tasks;

/// Concurrent producers in scenario 2.
pub const PRODUCERS: u64 = 64;

/// Scenario 1: `jobs` no-op jobs with `enqueue_many`, [`BATCH`] per call, one call at a time.
pub async fn batched(bench: &mut Bench, jobs: u64) -> Result<Outcome> {
    eprintln!("1. enqueue_many: {jobs} jobs in batches of {BATCH} ...");
    let (client, prefix) = bench.fresh_client().await?;
    let before = bench.snapshot().await?;
    let started = Instant::now();
    fill_noop(&client, jobs, crate::tasks::NoopKind::Kept).await?;
    let seconds = started.elapsed().as_secs_f64();
    let after = bench.snapshot().await?;
    bench.clean_up(&prefix).await?;
    Ok(queued(1, "enqueue_many", jobs, seconds, &before, &after))
}

/// Scenario 1, workflows: `jobs` no-op jobs as the members of one group (`dtask::group`), or
/// of one chord (`.then(..)` a callback that takes every result): what a large group costs
/// next to `enqueue_many`.
pub async fn group(bench: &mut Bench, jobs: u64, chord: bool) -> Result<Outcome> {
    let kind = if chord { "chord" } else { "group" };
    eprintln!("1. one {kind} of {jobs} no-op members ...");
    let (client, prefix) = bench.fresh_client().await?;
    let before = bench.snapshot().await?;
    let started = Instant::now();
    let members = (0..jobs).map(|i| tasks::noop::call(i, 7));
    if chord {
        dtask::group(members)
            .then(tasks::count_noops::with_input())
            .client(&client)
            .enqueue()
            .await?;
    } else {
        dtask::group(members).client(&client).enqueue().await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = bench.snapshot().await?;
    bench.clean_up(&prefix).await?;
    let name = if chord { "chord" } else { "group" };
    Ok(queued(1, name, jobs, seconds, &before, &after))
}

/// Scenario 2: `jobs` no-op jobs, each with its own `enqueue` call, from [`PRODUCERS`]
/// concurrent tokio tasks sharing one client; with `unique`, each a unique job (all
/// different: every enqueue takes a lock, none is a duplicate).
pub async fn concurrent(bench: &mut Bench, jobs: u64, unique: bool) -> Result<Outcome> {
    let kind = if unique { "unique jobs" } else { "jobs" };
    eprintln!("2. enqueue from {PRODUCERS} tasks: {jobs} {kind} ...");
    let (client, prefix) = bench.fresh_client().await?;
    let before = bench.snapshot().await?;
    let started = Instant::now();
    let mut producers = tokio::task::JoinSet::new();
    for producer in 0..PRODUCERS {
        let client = client.clone();
        producers.spawn(async move {
            let mut i = producer;
            while i < jobs {
                let options = tasks::noop::with().client(&client);
                let options = if unique {
                    options.unique_for(std::time::Duration::from_secs(600))
                } else {
                    options
                };
                let job = options.enqueue(i, 7).await?;
                assert!(!job.is_duplicate(), "every job differs");
                i += PRODUCERS;
            }
            Ok::<_, dtask::Error>(())
        });
    }
    while let Some(done) = producers.join_next().await {
        done??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = bench.snapshot().await?;
    bench.clean_up(&prefix).await?;
    let name = if unique {
        "enqueue_single, unique_for"
    } else {
        "enqueue_single"
    };
    Ok(queued(2, name, jobs, seconds, &before, &after))
}

/// The outcome of an enqueue run, with the memory its queued jobs hold.
fn queued(
    scenario: u8,
    name: &'static str,
    jobs: u64,
    seconds: f64,
    before: &crate::redis_stats::Snapshot,
    after: &crate::redis_stats::Snapshot,
) -> Outcome {
    let delta = after.since(before);
    let mut outcome = Outcome::new(scenario, name, jobs, seconds, &delta).with_rate();
    outcome.bytes_per_job = Some(delta.memory_bytes as f64 / jobs.max(1) as f64);
    outcome
}
