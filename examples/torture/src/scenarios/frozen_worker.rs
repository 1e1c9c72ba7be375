//! Scenario 4, frozen worker: one of three workers (with a `recovery_after` of 1.5 s) is frozen
//! with SIGSTOP for longer than its recovery time, then thawed with SIGCONT. Its jobs must be
//! recovered and run by the other workers while it is frozen; when it wakes up it finishes them
//! again (those count as duplicates, and only those may) and its late acknowledgements must not
//! disturb anything: nothing lost, nothing left pending or in flight, three live workers
//! registered. Recovery time: from the freeze until every job it had in flight ran elsewhere.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::Ctx;
use crate::effects::now_ms;
use crate::producer::{Producer, ProducerConfig};
use crate::report::Figures;
use crate::rig::{Rerun, Rig, id_set};
use crate::tasks::WORK_QUEUE;
use crate::workers::Fleet;
use dtask_testkit::redis_server::Persistence;

/// Runs the scenario.
pub async fn run(ctx: &Ctx, figures: &mut Figures) -> Result<(), String> {
    let recovery = Duration::from_millis(1_500);
    let freezes = ctx.pick(2, 3);
    let freeze_for = ctx.pick(Duration::from_secs(4), Duration::from_secs(6));
    let calm = Duration::from_secs(2);

    let rig = Rig::start(ctx, "4-frozen-worker", Persistence::None).await?;
    let config = rig.workers(&[WORK_QUEUE]).recovery(recovery);
    let mut fleet = Fleet::start(config, 3)?;
    rig.wait_workers(WORK_QUEUE, 3, Duration::from_secs(10))
        .await?;
    let producer = Producer::start(
        rig.client.clone(),
        ProducerConfig {
            queue: WORK_QUEUE.to_owned(),
            rate: 100.0,
            batch: 10,
            millis: 100..=400,
            first_id: 1,
        },
    );

    let mut frozen_jobs: HashSet<u64> = HashSet::new();
    let mut longest: Option<Duration> = None;
    for k in 0..freezes {
        tokio::time::sleep(calm).await;
        let victim = &fleet.workers[k % fleet.workers.len()];
        let pid = victim.pid();
        victim.signal("STOP")?;
        let stopped_ms = now_ms();
        let stopped = Instant::now();
        figures.faults += 1;
        // A blocking fetch already sent may still hand the frozen worker a job for up to 1 s.
        let mut ids: HashSet<u64> = rig.in_flight(WORK_QUEUE, pid).await?.into_iter().collect();
        tokio::time::sleep(Duration::from_millis(1_050)).await;
        ids.extend(rig.in_flight(WORK_QUEUE, pid).await?);
        let ids: Vec<u64> = ids.into_iter().collect();
        frozen_jobs.extend(&ids);
        let in_flight = ids.len();
        let mut watch = rig.watch_rerun(ids, stopped_ms, freeze_for * 4);
        let remaining = freeze_for.saturating_sub(stopped.elapsed());
        let rerun = tokio::time::timeout(remaining, &mut watch).await;
        victim.signal("CONT")?;
        match rerun {
            Ok(Ok(Rerun::After(took))) => longest = Some(longest.map_or(took, |l| l.max(took))),
            Ok(Ok(Rerun::Idle)) => figures.note(format!(
                "freeze {}: the frozen worker had no job in flight",
                k + 1
            )),
            Ok(Ok(Rerun::Missing(missing))) => figures.failures.push(format!(
                "freeze {}: {} job(s) of the frozen worker never ran elsewhere",
                k + 1,
                missing.len()
            )),
            Ok(Err(error)) => figures.failures.push(format!("a watch failed: {error}")),
            Err(_) => {
                watch.abort();
                figures.failures.push(format!(
                    "freeze {}: the {in_flight} job(s) in flight on the frozen worker had not all run elsewhere after {:.1}s frozen (recovery_after {recovery:?})",
                    k + 1,
                    freeze_for.as_secs_f64()
                ));
            }
        }
    }
    tokio::time::sleep(calm).await;
    let report = producer.stop().await;
    figures.recovery = longest;
    let enqueued = id_set(&report.enqueued);
    let settled = rig
        .settle(&[WORK_QUEUE], Duration::from_secs(ctx.pick(60, 120)))
        .await;
    // A thawed worker may still be finishing a job whose copy already ran elsewhere.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let tally = rig.tally(&enqueued, &[WORK_QUEUE]).await?;
    rig.conclude(figures, &tally, &[WORK_QUEUE], false).await;
    figures.check(settled, || "the queue did not drain".to_owned());
    let strangers: Vec<u64> = tally
        .ran_twice
        .iter()
        .filter(|id| !frozen_jobs.contains(id))
        .copied()
        .collect();
    figures.check(strangers.is_empty(), || {
        format!(
            "{} job(s) ran twice that were not in flight on a frozen worker, e.g. {:?}",
            strangers.len(),
            &strangers[..strangers.len().min(5)]
        )
    });
    for (i, status) in fleet.exited() {
        figures.failures.push(format!("worker {i} died: {status}"));
    }
    let registered = rig.registered_workers(WORK_QUEUE).await.unwrap_or(0);
    figures.check(registered == 3, || {
        format!("{registered} worker(s) registered at the end, not the 3 running")
    });
    figures.note(format!(
        "{} job(s) in flight on frozen workers, {} of them ran twice (the thawed worker finished its copy)",
        frozen_jobs.len(),
        tally.ran_twice.len()
    ));
    let complaints = fleet.shutdown(Duration::from_secs(15)).await;
    figures.failures.extend(complaints);
    Ok(())
}
