//! Scenario 7: a task's rate limit shared by four workers. A queue is filled with more jobs of
//! a task with `rate = "100/s"` than 30 s can start; four in-process workers (each with its own
//! connections, as four processes would have) run them for 30 s. Measured from the first start:
//! how many started in the 30 s (the rate achieved, next to the limit), the most that started
//! within any one second, and what each job cost Redis.

use std::time::Duration;

use super::Bench;
use crate::Result;
use crate::report::{Outcome, RateRun};
use crate::tasks;

/// The limit of [`tasks::rated`], in jobs per second.
const LIMIT_PER_S: f64 = 100.0;
/// How long the workers run, from the first start.
const RUN: Duration = Duration::from_secs(30);
/// How many workers share the limit.
const WORKERS: usize = 4;

/// Runs the scenario.
pub async fn shared_by_four(bench: &mut Bench) -> Result<Outcome> {
    eprintln!("7. task rate: {WORKERS} workers, rate 100/s, {RUN:?} ...");
    let (client, prefix) = bench.fresh_client().await?;
    let jobs = (LIMIT_PER_S * RUN.as_secs_f64()) as u64 + 500;
    tasks::rated::with()
        .client(&client)
        .enqueue_many((0..jobs).map(|i| (i, 7)))
        .await?;
    tasks::take_rated_starts();
    let before = bench.snapshot().await?;
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| dtask::Worker::new(&client).queues(["rate"]).spawn())
        .collect();
    // The run counts from the first start.
    let first = loop {
        if let Some(first) = tasks::first_rated_start() {
            break first;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    tokio::time::sleep(RUN).await;
    for worker in workers {
        worker.shutdown().await?;
    }
    let after = bench.snapshot().await?;
    bench.clean_up(&prefix).await?;
    let all = tasks::take_rated_starts();
    let window_ns = RUN.as_nanos() as u64;
    let in_window: Vec<u64> = all
        .iter()
        .copied()
        .filter(|at| at - first <= window_ns)
        .collect();
    let delta = after.since(&before);
    // Costs per job count every job that started, the few after the window included.
    let mut outcome = Outcome::new(7, "task-rate", all.len() as u64, RUN.as_secs_f64(), &delta);
    // n starts take n - 1 intervals.
    outcome.jobs_per_s = Some(in_window.len().saturating_sub(1) as f64 / RUN.as_secs_f64());
    outcome.rate_limit = Some(RateRun {
        workers: WORKERS,
        limit_per_s: LIMIT_PER_S,
        burst: 1,
        busiest_second: busiest_second(&in_window),
    });
    Ok(outcome)
}

/// The most of the sorted `starts` (ns) within any one second.
fn busiest_second(starts: &[u64]) -> usize {
    let mut most = 0;
    let mut from = 0;
    for (i, at) in starts.iter().enumerate() {
        while at - starts[from] >= 1_000_000_000 {
            from += 1;
        }
        most = most.max(i + 1 - from);
    }
    most
}
