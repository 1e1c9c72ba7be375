//! Scenario 1, worker crashes: three worker processes work through waves of short jobs while a
//! random one is SIGKILLed (in the middle of a wave) and restarted every few seconds. No job may be lost; a job may
//! run twice only if it was in flight on a killed worker. Recovery time: from a kill until every
//! job that was in flight on the killed worker has run again.

use std::time::Duration;

use rand::Rng;

use super::Ctx;
use crate::producer::enqueue_now;
use crate::report::Figures;
use crate::rig::{Rig, gather_reruns, id_set};
use crate::tasks::WORK_QUEUE;
use crate::workers::Fleet;
use dtask_testkit::redis_server::Persistence;

/// Runs the scenario.
pub async fn run(ctx: &Ctx, figures: &mut Figures) -> Result<(), String> {
    let jobs: u64 = ctx.pick(3_000, 20_000);
    let kills: u32 = ctx.pick(4, 10);
    let every = ctx.pick(Duration::from_millis(2_500), Duration::from_secs(4));
    let concurrency = 16;

    let rig = Rig::start(ctx, "1-worker-crash", Persistence::None).await?;
    let config = rig.workers(&[WORK_QUEUE]).concurrency(concurrency);
    let mut fleet = Fleet::start(config, 3)?;
    rig.wait_workers(WORK_QUEUE, 3, Duration::from_secs(10))
        .await?;

    // The jobs come in waves, one per kill and one after: each kill lands while the queue is
    // deep and every worker runs `concurrency` jobs.
    let waves = kills + 1;
    let per_wave = jobs / u64::from(waves);
    let mut ids = Vec::new();
    let mut enqueue_errors = Vec::new();
    let mut watches = Vec::new();
    let mut in_flight_at_kills = 0;
    for wave in 0..waves {
        let first = 1 + u64::from(wave) * per_wave;
        let count = if wave + 1 == waves {
            jobs - u64::from(wave) * per_wave
        } else {
            per_wave
        };
        let (enqueued, error) = enqueue_now(&rig.client, WORK_QUEUE, first, count, 1..=20).await;
        ids.extend(enqueued);
        enqueue_errors.extend(error);
        if wave + 1 == waves {
            break;
        }
        let into_wave = Duration::from_millis(rand::rng().random_range(50..250));
        tokio::time::sleep(into_wave).await;
        let (in_flight, watch) = rig.kill_random_worker(&mut fleet, WORK_QUEUE).await?;
        in_flight_at_kills += in_flight.len() as u64;
        watches.push(watch);
        figures.faults += 1;
        let pause = every.mul_f64(rand::rng().random_range(0.8..1.2));
        tokio::time::sleep(pause.saturating_sub(into_wave)).await;
    }
    let enqueued = id_set(&ids);
    let settled = rig
        .settle(&[WORK_QUEUE], Duration::from_secs(ctx.pick(60, 180)))
        .await;
    figures.recovery = gather_reruns(watches, figures).await;
    let tally = rig.tally(&enqueued, &[WORK_QUEUE]).await?;
    rig.conclude(figures, &tally, &[WORK_QUEUE], false).await;
    figures.check(settled, || "the queue did not drain".to_owned());
    figures.check(enqueue_errors.is_empty(), || {
        format!(
            "enqueues failed with Redis up: {}",
            enqueue_errors.join("; ")
        )
    });
    figures.check(tally.duplicates <= in_flight_at_kills, || {
        format!(
            "{} duplicate run(s), more than the {in_flight_at_kills} job(s) in flight on killed workers",
            tally.duplicates
        )
    });
    figures.note(format!(
        "{} job(s) in flight on killed workers, {} ran twice; recovery_after {:?}",
        in_flight_at_kills,
        tally.ran_twice.len(),
        ctx.recovery
    ));
    let complaints = fleet.shutdown(Duration::from_secs(15)).await;
    figures.failures.extend(complaints);
    Ok(())
}
