//! Scenario 3, Redis hang and network loss: while a producer enqueues and three workers run,
//! redis-server is frozen with SIGSTOP (connections stay open, nothing answers) and thawed; then
//! stopped with SIGTERM (it flushes its append-only file) and started again. Workers and the
//! producer must return errors or wait, never crash or spin (their CPU use during each outage is
//! measured), and processing must resume by itself. Recovery time: the longer of the two waits
//! from Redis answering again until a job ran.

use std::time::{Duration, Instant};

use super::Ctx;
use crate::producer::{Producer, ProducerConfig};
use crate::report::Figures;
use crate::rig::{Rig, cpu_share, id_set};
use crate::tasks::WORK_QUEUE;
use crate::workers::Fleet;
use dtask_testkit::redis_server::Persistence;

/// The most CPU a worker may use while Redis is away, as a share of one core: waiting costs
/// next to nothing; a busy loop costs a whole core.
const MAX_IDLE_CPU: f64 = 0.25;

/// The two outages.
#[derive(Clone, Copy)]
enum Outage {
    /// SIGSTOP, then SIGCONT.
    Hang,
    /// SIGTERM, then a new redis-server on the same port and data.
    Restart,
}

/// Runs the scenario.
pub async fn run(ctx: &Ctx, figures: &mut Figures) -> Result<(), String> {
    let outage = ctx.pick(Duration::from_secs(3), Duration::from_secs(10));
    let calm = ctx.pick(Duration::from_millis(1_500), Duration::from_secs(4));

    let mut rig = Rig::start(ctx, "3-redis-outage", Persistence::AppendFsyncAlways).await?;
    let mut fleet = Fleet::start(rig.workers(&[WORK_QUEUE]), 3)?;
    rig.wait_workers(WORK_QUEUE, 3, Duration::from_secs(10))
        .await?;
    let producer = Producer::start(
        rig.client.clone(),
        ProducerConfig {
            queue: WORK_QUEUE.to_owned(),
            rate: 200.0,
            batch: 10,
            millis: 1..=20,
            first_id: 1,
        },
    );

    let mut recovery: Option<Duration> = None;
    for kind in [Outage::Hang, Outage::Restart] {
        tokio::time::sleep(calm).await;
        let label = match kind {
            Outage::Hang => "hang (SIGSTOP)",
            Outage::Restart => "stop (SIGTERM) and restart",
        };
        let cpu_before = fleet.cpu_times();
        let log_before = fleet.log_bytes();
        let started = Instant::now();
        match kind {
            Outage::Hang => rig.redis.pause()?,
            Outage::Restart => tokio::task::block_in_place(|| rig.redis.terminate())?,
        }
        figures.faults += 1;
        tokio::time::sleep(outage).await;
        let cpu_after = fleet.cpu_times();
        let log_after = fleet.log_bytes();
        let elapsed = started.elapsed();
        match kind {
            Outage::Hang => rig.redis.resume()?,
            Outage::Restart => tokio::task::block_in_place(|| rig.redis.restart())?,
        }
        let up = Instant::now();
        let patience = ctx.pick(Duration::from_secs(10), Duration::from_secs(30));
        let resumed = rig.resumed(up, patience).await;
        match resumed {
            Some(took) => recovery = Some(recovery.map_or(took, |r| r.max(took))),
            None => figures.failures.push(format!(
                "{label}: no job ran within {patience:?} of Redis answering again"
            )),
        }
        let shares = cpu_share(&cpu_before, &cpu_after, elapsed);
        for (pid, share) in &shares {
            figures.check(*share <= MAX_IDLE_CPU, || {
                format!(
                    "{label}: worker {pid} used {:.0}% of a core while Redis was away (spinning?)",
                    share * 100.0
                )
            });
        }
        for (i, status) in fleet.exited() {
            figures
                .failures
                .push(format!("{label}: worker {i} died: {status}"));
        }
        figures.note(format!(
            "{label} for {:.1}s: workers used {} of a core meanwhile, logged {} KB; processing resumed {} after Redis answered",
            elapsed.as_secs_f64(),
            shares
                .iter()
                .map(|(_, s)| format!("{:.1}%", s * 100.0))
                .collect::<Vec<_>>()
                .join("/"),
            log_after.saturating_sub(log_before) / 1024,
            resumed.map_or_else(|| "never".to_owned(), |d| format!("{:.2}s", d.as_secs_f64()))
        ));
    }
    tokio::time::sleep(calm).await;
    let report = producer.stop().await;
    figures.recovery = recovery;
    let enqueued = id_set(&report.enqueued);
    let why_twice = "recovered from workers whose heartbeat lapsed while Redis was away";
    super::finish_outage(
        ctx, &rig, figures, &mut fleet, &enqueued, &report, why_twice,
    )
    .await
}
