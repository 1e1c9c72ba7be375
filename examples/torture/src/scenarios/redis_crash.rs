//! Scenario 2, Redis crash: redis-server runs with `--appendonly yes --appendfsync always`; a
//! producer enqueues without pause while three workers run; redis-server is SIGKILLed mid-run
//! (every other time just after a burst of jobs, while the workers are busy) and started again
//! on the same port and data directory. Every enqueue that returned `Ok` must
//! run (enqueues that failed during the outage are not counted). Recovery time: from Redis back
//! up until a job ran again.

use std::time::{Duration, Instant};

use super::Ctx;
use crate::producer::{Producer, ProducerConfig, enqueue_now};
use crate::report::Figures;
use crate::rig::{Rig, id_set};
use crate::tasks::WORK_QUEUE;
use crate::workers::Fleet;
use dtask_testkit::redis_server::Persistence;

/// Runs the scenario.
pub async fn run(ctx: &Ctx, figures: &mut Figures) -> Result<(), String> {
    let crashes: u32 = ctx.pick(4, 6);
    let before_crash = ctx.pick(Duration::from_secs(2), Duration::from_secs(5));
    let down_for = ctx.pick(Duration::from_millis(1_500), Duration::from_secs(3));
    let after_last = ctx.pick(Duration::from_secs(2), Duration::from_secs(5));

    let mut rig = Rig::start(ctx, "2-redis-crash", Persistence::AppendFsyncAlways).await?;
    let mut fleet = Fleet::start(rig.workers(&[WORK_QUEUE]), 3)?;
    rig.wait_workers(WORK_QUEUE, 3, Duration::from_secs(10))
        .await?;
    let producer = Producer::start(
        rig.client.clone(),
        ProducerConfig {
            queue: WORK_QUEUE.to_owned(),
            rate: ctx.pick(400.0, 600.0),
            batch: 10,
            millis: 1..=20,
            first_id: 1,
        },
    );

    let mut recovery: Option<Duration> = None;
    let mut burst_ids = Vec::new();
    for crash in 0..crashes {
        tokio::time::sleep(before_crash).await;
        if crash % 2 == 1 {
            // Every other crash hits busy workers: a burst makes the queue deep, so that they
            // fetch in batches (a script) rather than wait for jobs one at a time (BLMOVE).
            let first = 1_000_000 * (1 + u64::from(crash));
            let (ids, error) = enqueue_now(&rig.client, WORK_QUEUE, first, 1_500, 1..=20).await;
            burst_ids.extend(ids);
            if let Some(error) = error {
                figures
                    .failures
                    .push(format!("a burst enqueue failed with Redis up: {error}"));
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        rig.redis.kill();
        figures.faults += 1;
        tokio::time::sleep(down_for).await;
        tokio::task::block_in_place(|| rig.redis.restart())?;
        let up = Instant::now();
        let patience = ctx.pick(Duration::from_secs(10), Duration::from_secs(30));
        match rig.resumed(up, patience).await {
            Some(took) => recovery = Some(recovery.map_or(took, |r| r.max(took))),
            None => {
                figures.failures.push(format!(
                    "no job ran within {patience:?} of Redis coming back; no more crashes"
                ));
                break;
            }
        }
        for (i, status) in fleet.exited() {
            figures
                .failures
                .push(format!("worker {i} died during the Redis crash: {status}"));
        }
    }
    tokio::time::sleep(after_last).await;
    let report = producer.stop().await;
    figures.recovery = recovery;
    let mut enqueued = id_set(&report.enqueued);
    enqueued.extend(burst_ids);
    let why_twice = "their effect was written, then Redis died before the acknowledgement; or they were recovered from a worker whose heartbeat lapsed during the outage";
    super::finish_outage(
        ctx, &rig, figures, &mut fleet, &enqueued, &report, why_twice,
    )
    .await
}
