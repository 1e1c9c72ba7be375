//! The tasks the torture workers run: [`work`], which leaves a countable effect, [`stall`],
//! which does too after blocking its runtime thread, and [`poison`], which kills the process
//! that runs it.

use std::time::Duration;

use crate::effects;

/// The queue of [`work`] jobs.
pub const WORK_QUEUE: &str = "torture";
/// The queue of [`poison`] jobs (and of the good jobs queued behind them).
pub const POISON_QUEUE: &str = "poison";
/// The queue of [`stall`] jobs.
pub const STALL_QUEUE: &str = "stall";

/// The tasks whose jobs record their runs (see [`effects`]), and whose first argument is the
/// job's id.
pub const COUNTED: [&str; 2] = [work::NAME, stall::NAME];

/// Sleeps `millis`, then records that job `id` ran (see [`effects`]). Retried generously:
/// recording fails only when Redis stays away for a minute.
#[dtask::task(queue = "torture", retries = 25, name = "torture.work")]
pub async fn work(id: u64, millis: u64) -> Result<(), String> {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    effects::record(id).await
}

/// Records that job `id` starts, blocks the thread it runs on for `millis` (a handler that
/// blocks its runtime, as CPU-bound or synchronous code does), then records that it ran.
/// Never retried: a job that started twice ran twice because dtask took it back from a live
/// worker.
#[dtask::task(queue = "stall", retries = 0, name = "torture.stall")]
pub async fn stall(id: u64, millis: u64) -> Result<(), String> {
    effects::record_start(id).await?;
    std::thread::sleep(Duration::from_millis(millis));
    effects::record(id).await
}

/// Aborts the worker process running it: a poison job. `id` tells poison jobs apart.
#[dtask::task(queue = "poison", retries = 0, name = "torture.poison")]
pub async fn poison(id: u64) {
    tracing::warn!(id, "poison job: aborting this worker process");
    std::process::abort();
}
