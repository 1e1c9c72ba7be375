//! Scenarios 4 and 5: enqueue-to-start latency. Each job carries [`tasks::now_ns`] taken just
//! before its `enqueue` call; the task records how long ago that was when it starts, into a
//! histogram. Scenario 4 sends one job at a time to an idle worker; scenario 5 sends a steady
//! 10,000 jobs/s for 5 s from a paced producer.

use std::time::{Duration, Instant};

use super::Bench;
use crate::Result;
use crate::report::{Latency, Outcome};
use crate::tasks::{self, LatencyWatch};

/// Worker concurrency in both latency scenarios.
pub const CONCURRENCY: usize = 256;
/// Samples in scenario 4.
pub const IDLE_SAMPLES: u64 = 2_000;
/// Jobs sent and discarded before scenario 4 records.
pub const WARM_UP: u64 = 100;
/// Pause between two samples of scenario 4, so that the worker is idle (blocked waiting for
/// a job) when each job arrives.
pub const IDLE_PAUSE: Duration = Duration::from_millis(2);
/// Rate of scenario 5, jobs per second.
pub const RATE: u64 = 10_000;
/// Duration of scenario 5.
pub const PACED_FOR: Duration = Duration::from_secs(5);

/// Scenario 4: one job at a time, each sent once the previous one started.
pub async fn idle(bench: &mut Bench) -> Result<Outcome> {
    eprintln!("4. latency on an idle worker: {IDLE_SAMPLES} jobs, one at a time ...");
    let (client, prefix) = bench.fresh_client().await?;
    LatencyWatch::reset();
    let worker = dtask::Worker::new(&client)
        .queues([tasks::LAT_QUEUE])
        .concurrency(CONCURRENCY)
        .spawn();
    let mut sent = 0;
    for _ in 0..WARM_UP {
        send_one(&client, &mut sent).await?;
    }
    LatencyWatch::reset();
    sent = 0;
    let before = bench.snapshot().await?;
    let started = Instant::now();
    for _ in 0..IDLE_SAMPLES {
        send_one(&client, &mut sent).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    worker.shutdown().await?;
    let after = bench.snapshot().await?;
    bench.clean_up(&prefix).await?;

    let histogram = LatencyWatch::take().ok_or("no latency histogram")?;
    let mut outcome = Outcome::new(
        4,
        "latency_idle",
        IDLE_SAMPLES,
        seconds,
        &after.since(&before),
    );
    outcome.concurrency = Some(CONCURRENCY);
    outcome.latency_us = Some(Latency::of(&histogram));
    outcome.note = Some(format!(
        "{WARM_UP} warm-up jobs discarded; {IDLE_PAUSE:?} pause before each job; the worker's heartbeat and idle waits count in cmds/job"
    ));
    Ok(outcome)
}

/// Sends one job after [`IDLE_PAUSE`] and waits until it started: the `sent`-th since the
/// last [`LatencyWatch::reset`].
async fn send_one(client: &dtask::Client, sent: &mut u64) -> Result<()> {
    tokio::time::sleep(IDLE_PAUSE).await;
    tasks::lat::with()
        .client(client)
        .enqueue(tasks::now_ns(), 7)
        .await?;
    *sent += 1;
    if !LatencyWatch::wait_started(*sent, Duration::from_secs(10)).await {
        return Err(format!("job {sent} did not start within 10 s").into());
    }
    Ok(())
}

/// Scenario 5: [`RATE`] jobs per second for [`PACED_FOR`], each with its own `enqueue` call
/// sent at its time whether or not earlier ones finished.
pub async fn paced(bench: &mut Bench) -> Result<Outcome> {
    let total = RATE * PACED_FOR.as_secs();
    eprintln!("5. latency at {RATE} jobs/s for {PACED_FOR:?}: {total} jobs ...");
    let (client, prefix) = bench.fresh_client().await?;
    LatencyWatch::reset();
    let worker = dtask::Worker::new(&client)
        .queues([tasks::LAT_QUEUE])
        .concurrency(CONCURRENCY)
        .spawn();
    // Let the worker reach its idle wait before the first job.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let before = bench.snapshot().await?;
    let interval = Duration::from_nanos(1_000_000_000 / RATE);
    let started = Instant::now();
    let mut max_lag = Duration::ZERO;
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = started + interval * i as u32;
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        } else {
            max_lag = max_lag.max(now - due);
        }
        let client = client.clone();
        sends.spawn(async move {
            tasks::lat::with()
                .client(&client)
                .enqueue(tasks::now_ns(), 7)
                .await
        });
        while let Some(done) = sends.try_join_next() {
            done??;
        }
    }
    while let Some(done) = sends.join_next().await {
        done??;
    }
    let sending = started.elapsed().as_secs_f64();
    let all_started = LatencyWatch::wait_started(total, Duration::from_secs(60)).await;
    let seconds = started.elapsed().as_secs_f64();
    worker.shutdown().await?;
    let after = bench.snapshot().await?;
    bench.clean_up(&prefix).await?;
    if !all_started {
        return Err(format!(
            "only {} of {total} paced jobs started within 60 s of the last send",
            LatencyWatch::started()
        )
        .into());
    }

    let histogram = LatencyWatch::take().ok_or("no latency histogram")?;
    let mut outcome = Outcome::new(5, "latency_paced", total, seconds, &after.since(&before));
    outcome.concurrency = Some(CONCURRENCY);
    outcome.jobs_per_s = Some(total as f64 / sending);
    outcome.latency_us = Some(Latency::of(&histogram));
    outcome.note = Some(format!(
        "jobs/s is the rate achieved by the producer; it fell behind its schedule by at most {:.1} ms",
        max_lag.as_secs_f64() * 1e3
    ));
    Ok(outcome)
}
