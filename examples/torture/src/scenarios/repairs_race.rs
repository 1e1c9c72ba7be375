//! Scenario 12, repairs racing killed workers: three worker processes run jobs whose first run
//! always fails for good (no retry: they die), while an operator, in a loop, runs every dead
//! job again (`retry_all_dead`), pauses and resumes the queue, and cancels delayed jobs at
//! random moments, and a random worker is SIGKILLed and restarted every few seconds. Every
//! repair is one script racing the workers' burials, fetches and recoveries: no job may be
//! lost (each one not cancelled must end succeeded; one cancelled while it ran ends succeeded,
//! if it finished first, or cancelled, never neither), a cancelled job must never succeed, the
//! dead set must end empty, and a job may succeed twice only if it was in flight on a killed
//! worker (checked job by job). Recovery time: from a kill until every job in flight on the killed worker ran again.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;
use tokio::sync::Mutex;

use super::Ctx;
use crate::report::Figures;
use crate::rig::{Rerun, Rig};
use crate::tasks::{REPAIR_QUEUE, fickle};
use crate::workers::Fleet;
use dtask::Cancelled;
use dtask_testkit::redis_server::Persistence;

/// What the operator did.
#[derive(Default)]
struct Repairs {
    /// Dead jobs run again.
    revived: AtomicU64,
    /// Pauses (each followed by a resume).
    pauses: AtomicU64,
    /// Repairs that returned an error.
    errors: Mutex<Vec<String>>,
}

/// Runs the scenario.
pub async fn run(ctx: &Ctx, figures: &mut Figures) -> Result<(), String> {
    let jobs: u64 = ctx.pick(2_000, 20_000);
    let delayed: u64 = ctx.pick(200, 1_000);
    let kills: u32 = ctx.pick(4, 10);
    let every = ctx.pick(Duration::from_millis(2_000), Duration::from_secs(4));
    let concurrency = 16;

    let rig = Rig::start(ctx, "12-repairs-race", Persistence::None).await?;
    let config = rig.workers(&[REPAIR_QUEUE]).concurrency(concurrency);
    let mut fleet = Fleet::start(config, 3)?;
    rig.wait_workers(REPAIR_QUEUE, 3, Duration::from_secs(10))
        .await?;
    let queue = rig.admin.queue(REPAIR_QUEUE);

    // The operator: runs the dead jobs again every few milliseconds, and pauses the queue for
    // a moment now and then, until told to stop.
    let repairs = Arc::new(Repairs::default());
    let stop = Arc::new(AtomicBool::new(false));
    let operator = {
        let (queue, repairs, stop) = (queue.clone(), repairs.clone(), stop.clone());
        tokio::spawn(async move {
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                match queue.retry_all_dead().await {
                    Ok(n) => {
                        repairs.revived.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(e) => repairs.errors.lock().await.push(format!("retry: {e}")),
                }
                if round.is_multiple_of(40) {
                    let paused = queue.pause().await;
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    let resumed = queue.resume().await;
                    match paused.and(resumed) {
                        Ok(()) => {
                            repairs.pauses.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => repairs.errors.lock().await.push(format!("pause: {e}")),
                    }
                }
                let pause = Duration::from_millis(rand::rng().random_range(5..30));
                tokio::time::sleep(pause).await;
            }
        })
    };

    // Delayed jobs, each cancelled at a random moment around its due time: some while
    // scheduled, some while pending, some while they run (stopped then, unless they finish
    // first), some after they ended (nothing to cancel).
    let mut to_cancel = Vec::new();
    for id in 1..=delayed {
        let delay = Duration::from_millis(rand::rng().random_range(300..3_000));
        let handle = fickle::with()
            .client(&rig.client)
            .delay(delay)
            .enqueue(id, 1)
            .await
            .map_err(|e| format!("enqueue a delayed job: {e}"))?;
        let cancel_after = Duration::from_millis(rand::rng().random_range(0..4_000));
        to_cancel.push((id, handle.id().clone(), cancel_after));
    }
    let cancelled: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let stopping: Arc<Mutex<Vec<(u64, dtask::JobId)>>> = Arc::default();
    let canceller = {
        let (queue, cancelled, repairs) = (queue.clone(), cancelled.clone(), repairs.clone());
        let stopping = stopping.clone();
        tokio::spawn(async move {
            to_cancel.sort_by_key(|(_, _, after)| *after);
            let start = tokio::time::Instant::now();
            for (id, job_id, after) in to_cancel {
                tokio::time::sleep_until(start + after).await;
                match queue.cancel(&job_id).await {
                    Ok(Cancelled::Cancelled(_)) => {
                        cancelled.lock().await.insert(id);
                    }
                    Ok(Cancelled::Running) => stopping.lock().await.push((id, job_id)),
                    Ok(_) => {}
                    Err(e) => repairs.errors.lock().await.push(format!("cancel: {e}")),
                }
            }
        })
    };

    // The immediate jobs come in waves, one per kill: each kill lands while jobs run, die and
    // are revived.
    let waves = u64::from(kills) + 1;
    let per_wave = (jobs - delayed) / waves;
    let mut ids: Vec<u64> = (1..=delayed).collect();
    let mut watches = Vec::new();
    let mut in_flight_at_kills: HashSet<u64> = HashSet::new();
    let mut next = delayed + 1;
    for wave in 0..waves {
        let count = if wave + 1 == waves {
            jobs + 1 - next
        } else {
            per_wave
        };
        for chunk in (next..next + count).collect::<Vec<_>>().chunks(100) {
            let items: Vec<(u64, u64)> = {
                let mut rng = rand::rng();
                chunk
                    .iter()
                    .map(|id| (*id, rng.random_range(20..=200)))
                    .collect()
            };
            fickle::with()
                .client(&rig.client)
                .enqueue_many(items)
                .await
                .map_err(|e| format!("enqueue: {e}"))?;
            ids.extend_from_slice(chunk);
        }
        next += count;
        if wave + 1 == waves {
            break;
        }
        let into_wave = Duration::from_millis(rand::rng().random_range(50..250));
        tokio::time::sleep(into_wave).await;
        let (in_flight, watch) = rig.kill_random_worker(&mut fleet, REPAIR_QUEUE).await?;
        in_flight_at_kills.extend(in_flight);
        watches.push(watch);
        figures.faults += 1;
        let pause = every.mul_f64(rand::rng().random_range(0.8..1.2));
        tokio::time::sleep(pause.saturating_sub(into_wave)).await;
    }
    canceller
        .await
        .map_err(|e| format!("the canceller failed: {e}"))?;

    // The operator keeps reviving until nothing is left: pending, scheduled, in flight, dead.
    let settled = rig
        .settle(&[REPAIR_QUEUE], Duration::from_secs(ctx.pick(60, 180)))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut dead_left = u64::MAX;
    while tokio::time::Instant::now() < deadline {
        dead_left = rig.leftovers(&[REPAIR_QUEUE]).await?.dead;
        if dead_left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let settled = settled && rig.settle(&[REPAIR_QUEUE], Duration::from_secs(30)).await;
    stop.store(true, Ordering::Relaxed);
    operator
        .await
        .map_err(|e| format!("the operator failed: {e}"))?;
    let mut cancelled = cancelled.lock().await.clone();
    // A job cancelled while it ran ends cancelled (its worker stopped it) or succeeded (it
    // finished first); one that did neither stays expected, and counts as lost.
    let stopping = stopping.lock().await.clone();
    let mut stopped = 0;
    for (id, job_id) in &stopping {
        let status = rig.client.job(job_id.clone()).status().await;
        // A cancelled job reads `Cancelled` (`Dead` with the cancelled error from older
        // records).
        let was_cancelled = match &status {
            Ok(dtask::JobStatus::Cancelled { .. }) => true,
            Ok(dtask::JobStatus::Dead { error, .. }) => error == dtask::CANCELLED_ERROR,
            _ => false,
        };
        if was_cancelled {
            cancelled.insert(*id);
            stopped += 1;
        }
    }
    // A job in flight on a killed worker may be cancelled once it is back in the queue: it
    // rightly never runs again.
    let mut recovery: Option<Duration> = None;
    for watch in watches {
        match watch.await {
            Ok(Rerun::After(after)) => recovery = recovery.max(Some(after)),
            Ok(Rerun::Idle) => {}
            Ok(Rerun::Missing(ids)) => {
                let missing: Vec<u64> = ids
                    .into_iter()
                    .filter(|id| !cancelled.contains(id))
                    .collect();
                figures.check(missing.is_empty(), || {
                    format!(
                        "{} job(s) in flight on a killed worker never ran again, e.g. {:?}",
                        missing.len(),
                        &missing[..missing.len().min(5)]
                    )
                });
            }
            Err(error) => figures.failures.push(format!("a watch failed: {error}")),
        }
    }
    figures.recovery = recovery;

    let expected: HashSet<u64> = ids
        .iter()
        .copied()
        .filter(|id| !cancelled.contains(id))
        .collect();
    let tally = rig.tally(&expected, &[REPAIR_QUEUE]).await?;
    rig.conclude(figures, &tally, &[REPAIR_QUEUE], false).await;
    figures.check(settled, || "the queue did not drain".to_owned());
    figures.check(dead_left == 0, || {
        format!("{dead_left} job(s) left in the dead set although the operator kept reviving")
    });
    let mut conn = rig.conn();
    let done = rig.fx.done(&mut conn).await.map_err(|e| e.to_string())?;
    let ran_cancelled: Vec<u64> = cancelled
        .iter()
        .filter(|id| done.contains(id))
        .copied()
        .collect();
    figures.check(ran_cancelled.is_empty(), || {
        format!(
            "{} cancelled job(s) ran to success anyway, e.g. {:?}",
            ran_cancelled.len(),
            &ran_cancelled[..ran_cancelled.len().min(5)]
        )
    });
    figures.check(!cancelled.is_empty(), || {
        "no cancel found its job waiting: the scenario tested nothing".to_owned()
    });
    let unexplained: Vec<u64> = tally
        .ran_twice
        .iter()
        .filter(|id| !in_flight_at_kills.contains(id))
        .copied()
        .collect();
    figures.check(unexplained.is_empty(), || {
        format!(
            "{} job(s) ran twice without having been in flight on a killed worker, e.g. {:?}",
            unexplained.len(),
            &unexplained[..unexplained.len().min(5)]
        )
    });
    let errors = repairs.errors.lock().await.clone();
    figures.check(errors.is_empty(), || {
        format!(
            "{} repair(s) failed with Redis up: {}",
            errors.len(),
            errors[..errors.len().min(3)].join("; ")
        )
    });
    let revived = repairs.revived.load(Ordering::Relaxed);
    figures.check(revived > 0, || "no dead job was revived".to_owned());
    figures.check(!queue.is_paused().await.unwrap_or(true), || {
        "the queue was left paused".to_owned()
    });
    figures.note(format!(
        "{revived} dead job(s) revived, {} pause(s), {} of {delayed} delayed job(s) cancelled ({stopped} of them stopped while running, {} finished first); {} job(s) in flight on killed workers, {} ran twice",
        repairs.pauses.load(Ordering::Relaxed),
        cancelled.len(),
        stopping.len() - stopped,
        in_flight_at_kills.len(),
        tally.ran_twice.len(),
    ));
    let complaints = fleet.shutdown(Duration::from_secs(15)).await;
    figures.failures.extend(complaints);
    Ok(())
}
