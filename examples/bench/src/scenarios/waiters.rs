//! Scenario 8: 10,000 waiters. 10,000 jobs are enqueued and a handle of each waits on it at
//! once (10,000 tokio tasks sharing one client); then one worker runs them all. Each job returns
//! when it ended, so each waiter knows how long after the job's end it was woken. Redis
//! commands per finished job count the worker's and the waiters'. Run with handles from the
//! enqueue (woken by notification) and with handles made from ids (which poll).

use std::time::Duration;

use hdrhistogram::Histogram;

use super::Bench;
use crate::Result;
use crate::report::{Latency, Outcome};
use crate::tasks;

/// Waiters (and jobs).
const WAITERS: u64 = 10_000;

/// Runs the scenario, `notified` or polling.
pub async fn wait_for_all(bench: &mut Bench, notified: bool) -> Result<Outcome> {
    let how = if notified { "notified" } else { "polling" };
    eprintln!("8. {WAITERS} waiters, {how} ...");
    let (client, prefix) = bench.fresh_client().await?;
    let handles = tasks::finish_time::with()
        .client(&client)
        .enqueue_many(0..WAITERS)
        .await?;
    let before = bench.snapshot().await?;
    let started_ns = tasks::now_ns();
    let mut waiters = tokio::task::JoinSet::new();
    for handle in handles {
        let client = client.clone();
        waiters.spawn(async move {
            let ended_ns = if notified {
                handle.wait(Duration::from_secs(120)).await?
            } else {
                let by_id = client.job(handle.id().clone());
                serde_json::from_value(by_id.wait(Duration::from_secs(120)).await?)
                    .map_err(|e| dtask::Error::Worker(e.to_string()))?
            };
            Ok::<u64, dtask::Error>(tasks::now_ns().saturating_sub(ended_ns))
        });
    }
    // Every waiter is waiting before the worker starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let worker = dtask::Worker::new(&client)
        .queues([tasks::WAIT_QUEUE])
        .concurrency(256)
        .spawn();
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    while let Some(woken) = waiters.join_next().await {
        histogram.record(woken??.max(1))?;
    }
    let seconds = tasks::now_ns().saturating_sub(started_ns) as f64 / 1e9;
    worker.shutdown().await?;
    let after = bench.snapshot().await?;
    bench.clean_up(&prefix).await?;
    let name = if notified {
        "waiters-notified"
    } else {
        "waiters-polling"
    };
    let mut outcome = Outcome::new(8, name, WAITERS, seconds, &after.since(&before)).with_rate();
    outcome.concurrency = Some(256);
    outcome.latency_us = Some(Latency::of(&histogram));
    outcome.note = Some(format!(
        "{how}: {WAITERS} handles waiting from before the worker starts; cmds/job include the worker's fetches and acknowledgements"
    ));
    Ok(outcome)
}
