//! Scenario 7, shutdown under load: a worker running ~500 jobs at once (concurrency 500, jobs of
//! 300-500 ms) gets SIGTERM. It must exit 0 within its grace period, with every one of its jobs
//! either finished or back in the queue, nothing left in flight. Done twice: with a grace period
//! long enough for the running jobs to finish, and with one too short (they are abandoned and
//! requeued). Then another worker drains the rest: nothing lost, and no job that finished before
//! a shutdown runs again. Recovery time: the longest from SIGTERM to exit.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::Ctx;
use crate::producer::enqueue_now;
use crate::report::Figures;
use crate::rig::{Rig, id_set, job_id};
use crate::tasks::WORK_QUEUE;
use crate::workers::{Fleet, WorkerProcess};
use dtask_testkit::redis_server::Persistence;

/// Jobs in flight when SIGTERM is sent.
const IN_FLIGHT: usize = 450;

/// Runs the scenario.
pub async fn run(ctx: &Ctx, figures: &mut Figures) -> Result<(), String> {
    let jobs: u64 = ctx.pick(1_500, 3_000);
    let rig = Rig::start(ctx, "7-shutdown", Persistence::None).await?;
    let (ids, error) = enqueue_now(&rig.client, WORK_QUEUE, 1, jobs, 300..=500).await;
    if let Some(error) = error {
        figures
            .failures
            .push(format!("enqueue failed with Redis up: {error}"));
    }
    let enqueued = id_set(&ids);

    let mut finished_before: HashSet<u64> = HashSet::new();
    let mut longest = Duration::ZERO;
    let mut abandoned_ran = 0;
    for (label, grace) in [
        ("long grace", Duration::from_secs(ctx.pick(10, 25))),
        ("short grace", Duration::from_millis(300)),
    ] {
        let config = rig.workers(&[WORK_QUEUE]).concurrency(500).grace(grace);
        let mut worker =
            WorkerProcess::spawn(&config, &format!("worker-{}", label.replace(' ', "-")))?;
        let pid = worker.pid();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut running = 0;
        while running < IN_FLIGHT && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
            running = rig.in_flight_payloads(WORK_QUEUE, pid).await?.len();
        }
        figures.check(running >= IN_FLIGHT, || {
            format!("{label}: only {running} jobs in flight after 20 s")
        });
        worker.signal("TERM")?;
        let termed = Instant::now();
        figures.faults += 1;
        let status = worker.wait_exit(grace + Duration::from_secs(5)).await;
        let took = termed.elapsed();
        longest = longest.max(took);
        match status {
            Some(status) => figures.check(status.success(), || {
                format!(
                    "{label}: the worker exited with {status} (log: {})",
                    worker.log.display()
                )
            }),
            None => {
                worker.kill();
                figures.failures.push(format!(
                    "{label}: the worker had not exited {:.1}s after SIGTERM (grace {grace:?})",
                    took.as_secs_f64()
                ));
            }
        }
        figures.check(took <= grace + Duration::from_secs(2), || {
            format!(
                "{label}: exit took {:.2}s, grace period {grace:?}",
                took.as_secs_f64()
            )
        });

        // Every job is finished or back in the queue; none is left in flight.
        let left = rig.in_flight_payloads(WORK_QUEUE, pid).await?.len();
        figures.check(left == 0, || {
            format!("{label}: {left} job(s) still in flight on the stopped worker")
        });
        let registered = rig.registered_workers(WORK_QUEUE).await.unwrap_or(0);
        figures.check(registered == 0, || {
            format!("{label}: the stopped worker is still registered ({registered} worker(s))")
        });
        let done = rig
            .fx
            .done(&mut rig.conn())
            .await
            .map_err(|e| e.to_string())?;
        let pending: Vec<String> = redis::cmd("LRANGE")
            .arg(format!("{}:{{{WORK_QUEUE}}}:pending", rig.prefix))
            .arg(0)
            .arg(-1)
            .query_async(&mut rig.conn())
            .await
            .map_err(|e| e.to_string())?;
        let pending: HashSet<u64> = pending.iter().filter_map(|p| job_id(p)).collect();
        let both: Vec<u64> = done.intersection(&pending).copied().collect();
        let nowhere: Vec<u64> = enqueued
            .iter()
            .filter(|id| !done.contains(id) && !pending.contains(id))
            .copied()
            .collect();
        figures.check(nowhere.is_empty(), || {
            format!(
                "{label}: {} job(s) neither finished nor back in the queue, e.g. {:?}",
                nowhere.len(),
                &nowhere[..nowhere.len().min(5)]
            )
        });
        abandoned_ran += both.len() as u64;
        finished_before.extend(done.difference(&pending));
        figures.note(format!(
            "{label} ({grace:?}): {running} in flight at SIGTERM, exited ({}) after {:.2}s; {} finished so far, {} back in the queue, {} both (ran, then requeued)",
            status.map_or_else(|| "not at all".to_owned(), |s| s.to_string()),
            took.as_secs_f64(),
            done.len(),
            pending.len(),
            both.len()
        ));
    }
    figures.recovery = Some(longest);

    let mut drainer = Fleet::start(rig.workers(&[WORK_QUEUE]).concurrency(256), 1)?;
    let settled = rig
        .settle(&[WORK_QUEUE], Duration::from_secs(ctx.pick(60, 120)))
        .await;
    let tally = rig.tally(&enqueued, &[WORK_QUEUE]).await?;
    rig.conclude(figures, &tally, &[WORK_QUEUE], false).await;
    figures.check(settled, || "the queue did not drain".to_owned());
    let again: Vec<u64> = tally
        .ran_twice
        .iter()
        .filter(|id| finished_before.contains(id))
        .copied()
        .collect();
    figures.check(again.is_empty(), || {
        format!(
            "{} job(s) that finished before a shutdown ran again, e.g. {:?}",
            again.len(),
            &again[..again.len().min(5)]
        )
    });
    figures.check(tally.duplicates <= abandoned_ran, || {
        format!(
            "{} duplicate run(s), more than the {abandoned_ran} job(s) that ran and were requeued",
            tally.duplicates
        )
    });
    let complaints = drainer.shutdown(Duration::from_secs(15)).await;
    figures.failures.extend(complaints);
    Ok(())
}
