//! Scenario 8, stalled runtime: two workers whose job handlers block the thread they run on
//! (`std::thread::sleep`, as CPU-bound or synchronous code does) for several times their
//! `recovery_after` of 1 s. Each worker process's tokio runtime has as many threads as the
//! worker runs jobs at once, so while its jobs run, nothing else of the worker gets a thread of
//! that runtime. A worker whose jobs are merely slow is alive all the same: it must keep its
//! jobs. Every job must start once and run once (none taken back from a live worker and run
//! again elsewhere), none may die ("worker died"), none may be lost. Recovery time: none (there
//! is nothing to recover from).

use std::time::Duration;

use super::Ctx;
use crate::report::Figures;
use crate::rig::{Rig, id_set};
use crate::tasks::{self, STALL_QUEUE};
use crate::workers::Fleet;
use dtask_testkit::redis_server::Persistence;

/// Worker processes.
const WORKERS: usize = 2;
/// Threads of each worker's tokio runtime, and jobs it runs at once: every thread blocked.
const THREADS: usize = 2;
/// The workers' `recovery_after`: a fraction of how long each job blocks.
const RECOVERY: Duration = Duration::from_secs(1);

/// Runs the scenario.
pub async fn run(ctx: &Ctx, figures: &mut Figures) -> Result<(), String> {
    let jobs: u64 = ctx.pick(6, 20);
    let block = ctx.pick(Duration::from_secs(3), Duration::from_secs(7));

    let rig = Rig::start(ctx, "8-stalled-runtime", Persistence::None).await?;
    let config = rig
        .workers(&[STALL_QUEUE])
        .recovery(RECOVERY)
        .concurrency(THREADS)
        .runtime_threads(THREADS);
    let mut fleet = Fleet::start(config, WORKERS)?;
    rig.wait_workers(STALL_QUEUE, WORKERS as u64, Duration::from_secs(10))
        .await?;
    let enqueued = id_set(&enqueue_stalls(&rig, jobs, block).await?);
    figures.faults = jobs;

    let rounds = jobs.div_ceil((WORKERS * THREADS) as u64);
    let expected = block.saturating_mul(u32::try_from(rounds).unwrap_or(u32::MAX));
    let settled = rig
        .settle(
            &[STALL_QUEUE],
            expected.saturating_mul(3) + Duration::from_secs(30),
        )
        .await;
    // A copy of a job taken back from a stalled worker may still be blocking there.
    tokio::time::sleep(block + Duration::from_secs(1)).await;
    let tally = rig.tally(&enqueued, &[STALL_QUEUE]).await?;
    rig.conclude(figures, &tally, &[STALL_QUEUE], false).await;
    figures.check(settled, || "the queue did not drain".to_owned());

    let starts = rig
        .fx
        .starts(&mut rig.conn())
        .await
        .map_err(|e| format!("read the starts: {e}"))?;
    let mut started_twice: Vec<u64> = starts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    started_twice.sort_unstable();
    let extra_starts: u64 = starts.values().map(|n| n.saturating_sub(1)).sum();
    let never_started = enqueued
        .iter()
        .filter(|id| !starts.contains_key(id))
        .count();
    figures.check(started_twice.is_empty(), || {
        format!(
            "{} job(s) started more than once ({extra_starts} extra start(s)): taken back from a live worker whose handlers blocked its runtime, e.g. {:?}",
            started_twice.len(),
            &started_twice[..started_twice.len().min(5)]
        )
    });
    figures.check(tally.ran_twice.is_empty(), || {
        format!(
            "{} job(s) ran more than once ({} duplicate run(s)), e.g. {:?}",
            tally.ran_twice.len(),
            tally.duplicates,
            &tally.ran_twice[..tally.ran_twice.len().min(5)]
        )
    });
    for (i, status) in fleet.exited() {
        figures.failures.push(format!("worker {i} died: {status}"));
    }
    figures.note(format!(
        "{jobs} job(s) blocking their thread {:.0}s each, on {WORKERS} workers of {THREADS} runtime thread(s) and {THREADS} job(s) at once, recovery_after {RECOVERY:?}: {} started more than once ({extra_starts} extra start(s)), {} ran more than once, {} dead{}, {never_started} never started",
        block.as_secs_f64(),
        started_twice.len(),
        tally.ran_twice.len(),
        tally.dead.len(),
        tally
            .dead
            .first()
            .map_or_else(String::new, |(id, error)| format!(
                " (e.g. job {id}: {error})"
            )),
    ));
    let complaints = fleet.shutdown(block + Duration::from_secs(15)).await;
    figures.failures.extend(complaints);
    Ok(())
}

/// Enqueues `jobs` stall jobs, ids 1 to `jobs`, each blocking for `block`, in one round trip;
/// returns their ids.
async fn enqueue_stalls(rig: &Rig, jobs: u64, block: Duration) -> Result<Vec<u64>, String> {
    let millis = u64::try_from(block.as_millis()).unwrap_or(u64::MAX);
    let ids: Vec<u64> = (1..=jobs).collect();
    tasks::stall::with()
        .client(&rig.client)
        .enqueue_many(ids.iter().map(|id| (*id, millis)))
        .await
        .map_err(|e| format!("enqueue the stall jobs: {e}"))?;
    Ok(ids)
}
