//! Scenario 5, poison job: a job whose handler calls `std::process::abort()` is queued ahead of
//! good jobs. The driver restarts every worker that dies. The poison job must end in the dead
//! set with "worker died 3 times while running this job" (dtask's default `max_worker_deaths`),
//! after exactly three worker deaths, while the good jobs queued after it all run. Recovery
//! time: from the enqueue of the poison job until it was buried.

use std::time::{Duration, Instant};

use super::Ctx;
use crate::producer::enqueue_now;
use crate::report::Figures;
use crate::rig::{Rig, id_set};
use crate::tasks::{self, POISON_QUEUE};
use crate::workers::Fleet;
use dtask_testkit::redis_server::Persistence;

/// The error dtask gives a job that killed three workers.
const EXPECTED: &str = "worker died 3 times while running this job";

/// Runs the scenario.
pub async fn run(ctx: &Ctx, figures: &mut Figures) -> Result<(), String> {
    let good_jobs: u64 = ctx.pick(300, 2_000);
    let concurrency = 8;
    let recovery = Duration::from_secs(1);

    let rig = Rig::start(ctx, "5-poison-job", Persistence::None).await?;
    let started = Instant::now();
    let poison = tasks::poison::with()
        .client(&rig.client)
        .enqueue(0)
        .await
        .map_err(|e| format!("enqueue the poison job: {e}"))?;
    // The good jobs, all behind the poison job in its queue.
    let (ids, error) = enqueue_now(&rig.client, POISON_QUEUE, 1, good_jobs, 1..=20).await;
    if let Some(error) = error {
        figures
            .failures
            .push(format!("enqueue failed with Redis up: {error}"));
    }
    let enqueued = id_set(&ids);

    let config = rig
        .workers(&[POISON_QUEUE])
        .concurrency(concurrency)
        .recovery(recovery);
    let mut fleet = Fleet::start(config, 2)?;
    let deadline = Instant::now() + Duration::from_secs(ctx.pick(60, 120));
    let mut buried_after = None;
    let mut statuses = Vec::new();
    loop {
        for (i, status) in fleet.exited() {
            figures.faults += 1;
            statuses.push(status.to_string());
            fleet.restart(i)?;
        }
        if buried_after.is_none() {
            let dead = rig
                .admin
                .queue(POISON_QUEUE)
                .dead_jobs(100)
                .await
                .map_err(|e| e.to_string())?;
            if dead.iter().any(|d| &d.id == poison.id()) {
                buried_after = Some(started.elapsed());
            }
        }
        if buried_after.is_some()
            && rig
                .leftovers(&[POISON_QUEUE])
                .await
                .is_ok_and(|l| l.settled())
        {
            break;
        }
        if Instant::now() >= deadline {
            figures
                .failures
                .push("the poison queue did not settle in time".to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    figures.recovery = buried_after;

    let dead = rig
        .admin
        .queue(POISON_QUEUE)
        .dead_jobs(10_000)
        .await
        .map_err(|e| e.to_string())?;
    match dead.iter().find(|d| &d.id == poison.id()) {
        Some(record) => {
            figures.check(record.error == EXPECTED, || {
                format!(
                    "the poison job died with `{}`, not `{EXPECTED}`",
                    record.error
                )
            });
            figures.note(format!(
                "poison job buried after {:.2}s: `{}` (task {:?}, attempts {})",
                buried_after.unwrap_or_default().as_secs_f64(),
                record.error,
                record.task,
                record.attempts
            ));
        }
        None => figures
            .failures
            .push("the poison job is not in the dead set".to_owned()),
    }
    let deaths = figures.faults;
    figures.check(deaths == 3, || {
        format!("{deaths} worker death(s), not 3 ({})", statuses.join(", "))
    });
    match poison.status().await {
        Ok(status) => figures.note(format!("the poison job's status: {status:?}")),
        Err(error) => figures
            .failures
            .push(format!("the poison job's status is unreadable: {error}")),
    }

    let tally = rig.tally(&enqueued, &[POISON_QUEUE]).await?;
    rig.conclude(figures, &tally, &[POISON_QUEUE], false).await;
    if !tally.dead.is_empty() {
        figures.note(format!(
            "good jobs buried with the poison job: {:?}",
            tally
                .dead
                .iter()
                .take(10)
                .map(|(id, error)| format!("{id}: {error}"))
                .collect::<Vec<_>>()
        ));
    }
    figures.note(format!(
        "{} good job(s) ran twice (in flight on a worker the poison job killed); {concurrency} jobs at once per worker",
        tally.ran_twice.len()
    ));
    let complaints = fleet.shutdown(Duration::from_secs(15)).await;
    figures.failures.extend(complaints);
    Ok(())
}
