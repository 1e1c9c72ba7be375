//! Scenario 10, stale attempts: a worker (`recovery_after` 1 s) is frozen with SIGSTOP while it
//! runs jobs whose first run lasts several seconds (see [`tasks::first_slow`]: only a job's first
//! run is slow), so that other workers take them back and run them again, fast; then it is
//! thawed with SIGCONT, and its stale first runs end after their copies did. Of those stale
//! runs, some fail with retries left (they would schedule a retry), some succeed, and some fail
//! on their last attempt (they would bury the job). Every settle is fenced by its run's lease:
//! none of them may change anything. The jobs of a second queue are recovered by a worker kept
//! busy (a long job holds its only slot), so that the thawed worker itself fetches their copies
//! and runs them beside its own stale runs. That helper is made busy before the jobs are
//! enqueued, and given 1.2 s for the blocking waits it sent while idle to end: such a wait,
//! still pending when its slot filled, would land a job on it that then waits for the slot.
//!
//! Every 50 ms one Lua snapshot per queue (see [`crate::locations`]) checks that each job is in
//! exactly one place (pending, scheduled, retry, one worker's in-flight hash or landing list,
//! dead) or, finished, in none, and never back after that. At the end every job must be
//! `Succeeded` (its copy succeeded, even when its stale run failed later), none may ever have
//! been in the retry or the dead set, none may be lost, each must have started exactly twice and
//! its stale run ended after its copy, every copy of the second queue must have run on the thawed
//! worker, and that worker must have logged each stale run as dropped. Recovery time: from the
//! freeze until every job of the first queue had its copy run (or landed on the frozen worker).
//! Short: one round; long: three rounds of more jobs.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::Ctx;
use crate::locations::{Place, Sampler, Samples, Snapshot, describe_place};
use crate::report::Figures;
use crate::rig::Rig;
use crate::tasks::{self, FIRST_END, FIRST_SLOW_QUEUE, LATER_END};
use crate::workers::Fleet;
use dtask_testkit::redis_server::Persistence;

/// The `recovery_after` of every worker.
const RECOVERY: Duration = Duration::from_secs(1);
/// The queue whose copies other workers run.
const MAIN_QUEUE: &str = FIRST_SLOW_QUEUE;
/// The queue whose copies the thawed worker runs itself.
const SOLO_QUEUE: &str = "stale-solo";
/// The queue of the long job that keeps the second queue's recoverer busy.
const BLOCK_QUEUE: &str = "stale-block";
/// Every queue of the scenario.
const QUEUES: [&str; 3] = [MAIN_QUEUE, SOLO_QUEUE, BLOCK_QUEUE];
/// How often the locations are sampled.
const SAMPLE_PERIOD: Duration = Duration::from_millis(50);
/// The thaw comes at least this long before the first runs end, so that they end after it.
const THAW_MARGIN: Duration = Duration::from_secs(2);
/// How long after a worker's slots filled its blocking waits are surely over (they last 1 s).
const WAITS_OVER: Duration = Duration::from_millis(1_200);
/// Jobs the frozen worker runs at once (more than it is given, with room for the copies).
const VICTIM_CONCURRENCY: usize = 64;
/// Ids of round `r` start at `ROUND_IDS * (r + 1)`.
const ROUND_IDS: u64 = 1_000;

/// How a job's first (stale) run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Ending {
    /// It fails with retries left: it would schedule a retry.
    Fails,
    /// It succeeds: it would acknowledge the job.
    Succeeds,
    /// It fails on its last attempt: it would bury the job.
    FailsFinally,
}

impl Ending {
    const ALL: [Ending; 3] = [Ending::Fails, Ending::Succeeds, Ending::FailsFinally];

    /// Whether the first run succeeds.
    fn first_ok(self) -> bool {
        self == Ending::Succeeds
    }

    /// The job's retry limit: none for a job whose first attempt is its last.
    fn retries(self) -> u32 {
        match self {
            Ending::FailsFinally => 0,
            _ => 3,
        }
    }

    /// How the worker logs a stale run ending so ("a run <how> after its job was taken back").
    fn logged_as(self) -> &'static str {
        match self {
            Ending::Fails => "failed",
            Ending::Succeeds => "succeeded",
            Ending::FailsFinally => "was buried",
        }
    }
}

/// One job of the scenario.
#[derive(Clone, Debug)]
struct Job {
    /// The counted id (its first argument).
    id: u64,
    /// Its queue.
    queue: &'static str,
    /// How its first run ends; None for a blocker.
    ending: Option<Ending>,
    /// dtask's id, to read its status.
    job_id: dtask::JobId,
}

/// The sizes of a round.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// Jobs of each ending in the first queue.
    main: u64,
    /// Jobs of each ending in the second queue.
    solo: u64,
    /// How long a first run lasts.
    first: Duration,
}

/// What a round measured.
struct RoundOutcome {
    /// From the freeze until every job of the first queue had its copy run.
    recovery: Option<Duration>,
    /// How long the worker was frozen.
    frozen: Duration,
}

/// Runs the scenario.
pub async fn run(ctx: &Ctx, figures: &mut Figures) -> Result<(), String> {
    let rounds = ctx.pick(1, 3);
    let plan = Plan {
        main: ctx.pick(3, 8),
        solo: ctx.pick(2, 4),
        first: ctx.pick(Duration::from_secs(6), Duration::from_secs(7)),
    };
    let rig = Rig::start(ctx, "10-stale-attempts", Persistence::None).await?;
    let victim_config = rig
        .workers(&[MAIN_QUEUE, SOLO_QUEUE])
        .recovery(RECOVERY)
        .concurrency(VICTIM_CONCURRENCY);
    let mut victim = Fleet::start(victim_config, 1)?;
    rig.wait_workers(MAIN_QUEUE, 1, Duration::from_secs(10))
        .await?;
    let victim_pid = victim.workers[0].pid();
    let sampler = Sampler::start(rig.conn(), &rig.prefix, &QUEUES, SAMPLE_PERIOD);

    let mut jobs = Vec::new();
    let mut helpers_failed = Vec::new();
    for round in 0..rounds {
        let outcome = run_round(&rig, &victim, round, plan, &mut jobs, &mut helpers_failed).await;
        match outcome {
            Ok(outcome) => {
                if let Some(took) = outcome.recovery {
                    figures.recovery = Some(figures.recovery.map_or(took, |r| r.max(took)));
                }
                figures.faults += 1;
                figures.note(format!(
                    "round {}: worker {victim_pid} frozen {:.1}s; every copy of `{MAIN_QUEUE}` ran {} after the freeze",
                    round + 1,
                    outcome.frozen.as_secs_f64(),
                    outcome
                        .recovery
                        .map_or_else(|| "never".to_owned(), |d| format!("{:.2}s", d.as_secs_f64()))
                ));
            }
            Err(error) => {
                // Thaw in any case, so that the rest can be counted.
                let _ = victim.workers[0].signal("CONT");
                figures
                    .failures
                    .push(format!("round {}: {error}", round + 1));
                break;
            }
        }
    }
    let settled = rig
        .settle(&QUEUES, Duration::from_secs(ctx.pick(30, 60)))
        .await;
    // A stale run settles right after it notes its end: give the last ones a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let samples = sampler.stop().await?;
    figures.failures.extend(helpers_failed);
    figures.check(settled, || "the queues did not drain".to_owned());
    conclude(&rig, figures, &jobs, &samples, victim_pid).await?;
    check_victim_log(figures, &victim.workers[0].log, &jobs);
    for (i, status) in victim.exited() {
        figures.failures.push(format!("worker {i} died: {status}"));
    }
    let complaints = victim.shutdown(Duration::from_secs(15)).await;
    figures.failures.extend(complaints);
    Ok(())
}

/// One round: the second queue's helper made busy, the jobs started on the victim alone, the
/// first queue's helper started, the victim frozen until every job was taken back (and the
/// first queue's copies ran), then thawed; waits until every stale run ended and settled, then
/// stops the helpers (complaints go to `helpers_failed`).
async fn run_round(
    rig: &Rig,
    victim: &Fleet,
    round: u64,
    plan: Plan,
    jobs: &mut Vec<Job>,
    helpers_failed: &mut Vec<String>,
) -> Result<RoundOutcome, String> {
    let base = ROUND_IDS * (round + 1);
    // The second queue's helper first: a long job fills its only slot, and once its blocking
    // waits (sent while it was idle) are over, no job of the second queue can land on it.
    let keeper = rig
        .workers(&[BLOCK_QUEUE, SOLO_QUEUE])
        .recovery(RECOVERY)
        .concurrency(1);
    let mut busy_helper = Fleet::start(keeper, 1)?;
    rig.wait_workers(SOLO_QUEUE, 2, Duration::from_secs(10))
        .await?;
    let busy_for = WAITS_OVER + plan.first + Duration::from_millis(500);
    let blocker = enqueue_blocker(rig, base + ROUND_IDS - 1, busy_for).await?;
    let busy_pid = busy_helper.workers[0].pid();
    wait_on_worker(rig, BLOCK_QUEUE, busy_pid, blocker.id).await?;
    jobs.push(blocker);
    tokio::time::sleep(WAITS_OVER).await;

    // The jobs, all taken by the victim: it alone serves the first queue so far.
    let round_jobs = enqueue_round(rig, base, plan).await?;
    jobs.extend(round_jobs.iter().cloned());
    let ids: Vec<u64> = round_jobs.iter().map(|j| j.id).collect();
    let started = Instant::now();
    wait_started(rig, &ids, Duration::from_secs(10)).await?;
    let helper = rig.workers(&[MAIN_QUEUE]).recovery(RECOVERY);
    let mut main_helper = Fleet::start(helper, 1)?;
    rig.wait_workers(MAIN_QUEUE, 2, Duration::from_secs(10))
        .await?;

    victim.workers[0].signal("STOP")?;
    let frozen_at = Instant::now();
    let thaw_by = started + plan.first.saturating_sub(THAW_MARGIN);
    let recovery = wait_recovered(rig, &round_jobs, victim.workers[0].pid(), thaw_by).await;
    victim.workers[0].signal("CONT")?;
    let frozen_for = frozen_at.elapsed();
    let recovery = recovery.map(|()| frozen_for);
    if recovery.is_none() {
        helpers_failed.push(format!(
            "round {}: the frozen worker's jobs were not all taken back (and the first queue's copies run) within {:.1}s of the freeze",
            round + 1,
            frozen_for.as_secs_f64()
        ));
    }
    wait_first_ends(rig, &ids, plan.first + Duration::from_secs(15)).await?;
    rig.settle(&QUEUES, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for fleet in [&mut main_helper, &mut busy_helper] {
        helpers_failed.extend(
            fleet
                .exited()
                .into_iter()
                .map(|(_, status)| format!("round {}: a helper worker died: {status}", round + 1)),
        );
        helpers_failed.extend(fleet.shutdown(Duration::from_secs(15)).await);
    }
    Ok(RoundOutcome {
        recovery,
        frozen: frozen_for,
    })
}

/// Enqueues the jobs of one round, ids from `base`: in each of the two queues, `plan.main` or
/// `plan.solo` jobs of each ending.
async fn enqueue_round(rig: &Rig, base: u64, plan: Plan) -> Result<Vec<Job>, String> {
    let first_ms = u64::try_from(plan.first.as_millis()).unwrap_or(u64::MAX);
    let mut jobs = Vec::new();
    let mut next = base;
    for (queue, per_ending) in [(MAIN_QUEUE, plan.main), (SOLO_QUEUE, plan.solo)] {
        for ending in Ending::ALL {
            let ids: Vec<u64> = (next..next + per_ending).collect();
            next += per_ending;
            let handles = tasks::first_slow::with()
                .client(&rig.client)
                .queue(queue)
                .retries(ending.retries())
                .enqueue_many(ids.iter().map(|id| (*id, first_ms, ending.first_ok())))
                .await
                .map_err(|e| format!("enqueue the jobs: {e}"))?;
            jobs.extend(ids.iter().zip(handles).map(|(id, handle)| Job {
                id: *id,
                queue,
                ending: Some(ending),
                job_id: handle.id().clone(),
            }));
        }
    }
    Ok(jobs)
}

/// Enqueues the long job that keeps the second queue's helper busy for `busy`.
async fn enqueue_blocker(rig: &Rig, id: u64, busy: Duration) -> Result<Job, String> {
    let millis = u64::try_from(busy.as_millis()).unwrap_or(u64::MAX);
    let handle = tasks::work::with()
        .client(&rig.client)
        .queue(BLOCK_QUEUE)
        .enqueue(id, millis)
        .await
        .map_err(|e| format!("enqueue the blocker: {e}"))?;
    Ok(Job {
        id,
        queue: BLOCK_QUEUE,
        ending: None,
        job_id: handle.id().clone(),
    })
}

/// Waits until every job of `ids` has started once.
async fn wait_started(rig: &Rig, ids: &[u64], timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut conn = rig.conn();
    loop {
        let starts = rig.fx.starts(&mut conn).await.unwrap_or_default();
        if ids.iter().all(|id| starts.contains_key(id)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let missing = ids.iter().filter(|id| !starts.contains_key(id)).count();
            return Err(format!(
                "{missing} job(s) had not started within {timeout:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until job `id` is in flight on the worker process `pid` for `queue`.
async fn wait_on_worker(rig: &Rig, queue: &str, pid: u32, id: u64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !rig.in_flight(queue, pid).await?.contains(&id) {
        if Instant::now() >= deadline {
            return Err(format!(
                "job {id} was not in flight on worker {pid} within 10 s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Waits, until `deadline`, until no job of `round` is in the frozen worker `pid`'s in-flight
/// hashes any more (all were taken back), and every job of the first queue had its copy run or
/// sits in the frozen worker's landing list (a blocking wait it sent before the freeze took the
/// copy). None when the deadline came first.
async fn wait_recovered(rig: &Rig, round: &[Job], pid: u32, deadline: Instant) -> Option<()> {
    let needle = format!("-{pid}-");
    let queues: Vec<String> = QUEUES.iter().map(|q| (*q).to_owned()).collect();
    let mut conn = rig.conn();
    loop {
        let later = rig.fx.times(&mut conn, LATER_END).await.unwrap_or_default();
        if let Ok(snapshot) = Snapshot::take(&mut conn, &rig.prefix, &queues).await {
            let held = |id: u64| snapshot.places.get(&id).map(Vec::as_slice).unwrap_or(&[]);
            let done = round.iter().filter(|j| j.ending.is_some()).all(|job| {
                let places = held(job.id);
                let on_victim = places
                    .iter()
                    .any(|p| matches!(p, Place::Active(w) if w.contains(&needle)));
                let relanded = places
                    .iter()
                    .any(|p| matches!(p, Place::Landing(w) if w.contains(&needle)));
                !on_victim && (job.queue != MAIN_QUEUE || later.contains_key(&job.id) || relanded)
            });
            if done {
                return Some(());
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the first run of every job of `ids` has ended.
async fn wait_first_ends(rig: &Rig, ids: &[u64], timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut conn = rig.conn();
    loop {
        let ends = rig.fx.times(&mut conn, FIRST_END).await.unwrap_or_default();
        if ids.iter().all(|id| ends.contains_key(id)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let missing = ids.iter().filter(|id| !ends.contains_key(id)).count();
            return Err(format!(
                "{missing} stale run(s) had not ended within {timeout:?} of the round's start"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The checks at the end: the locations sampled, the final statuses, the count, the starts, the
/// order of the runs' ends and where the copies ran.
async fn conclude(
    rig: &Rig,
    figures: &mut Figures,
    jobs: &[Job],
    samples: &Samples,
    victim_pid: u32,
) -> Result<(), String> {
    check_samples(figures, samples, jobs);
    check_statuses(rig, figures, jobs).await;
    let enqueued: HashSet<u64> = jobs.iter().map(|j| j.id).collect();
    let tally = rig.tally(&enqueued, &QUEUES).await?;
    rig.conclude(figures, &tally, &QUEUES, false).await;
    let succeeds: HashSet<u64> = stale_jobs(jobs, Some(Ending::Succeeds));
    let strangers: Vec<u64> = tally
        .ran_twice
        .iter()
        .filter(|id| !succeeds.contains(id))
        .copied()
        .collect();
    figures.check(strangers.is_empty(), || {
        format!(
            "{} job(s) ran twice whose stale run did not succeed, e.g. {:?}",
            strangers.len(),
            &strangers[..strangers.len().min(5)]
        )
    });
    let mut conn = rig.conn();
    let fx_err = |e: redis::RedisError| format!("read the effects: {e}");
    let starts = rig.fx.starts(&mut conn).await.map_err(fx_err)?;
    let first_ends = rig.fx.times(&mut conn, FIRST_END).await.map_err(fx_err)?;
    let later_ends = rig.fx.times(&mut conn, LATER_END).await.map_err(fx_err)?;
    let later_pids = rig.fx.pids(&mut conn, LATER_END).await.map_err(fx_err)?;
    let stale = stale_jobs(jobs, None);
    let mut wrong_starts: Vec<(u64, u64)> = stale
        .iter()
        .map(|id| (*id, starts.get(id).copied().unwrap_or(0)))
        .filter(|(_, n)| *n != 2)
        .collect();
    wrong_starts.sort_unstable();
    figures.check(wrong_starts.is_empty(), || {
        format!(
            "{} job(s) did not start exactly twice (a stale first run, one copy): (id, starts) {:?}",
            wrong_starts.len(),
            &wrong_starts[..wrong_starts.len().min(5)]
        )
    });
    check_order(figures, &stale, &first_ends, &later_ends);
    check_copies(figures, jobs, &later_pids, victim_pid, samples);
    Ok(())
}

/// The ids of the first-slow jobs, or of those whose stale run ends as `ending`.
fn stale_jobs(jobs: &[Job], ending: Option<Ending>) -> HashSet<u64> {
    jobs.iter()
        .filter(|j| j.ending.is_some() && (ending.is_none() || j.ending == ending))
        .map(|j| j.id)
        .collect()
}

/// No job in two places, none back after it finished, none ever in the retry or dead set.
fn check_samples(figures: &mut Figures, samples: &Samples, jobs: &[Job]) {
    let tracked = jobs
        .iter()
        .filter(|j| samples.history.contains_key(&j.id))
        .count();
    figures.note(format!(
        "locations: {} snapshot(s) taken ({} failed), every {}ms (longest gap {}ms), {tracked}/{} job(s) seen; {} time(s) a job was in two places, {} time(s) one was back after finishing; at most {} settling entr(y/ies) at once",
        samples.taken,
        samples.failed,
        SAMPLE_PERIOD.as_millis(),
        samples.longest_gap.as_millis(),
        jobs.len(),
        samples.doubles,
        samples.reappeared,
        samples.max_settling
    ));
    figures.check(samples.failed == 0, || {
        format!(
            "{} snapshot(s) failed: {}",
            samples.failed,
            samples.first_error.as_deref().unwrap_or("?")
        )
    });
    figures.check(samples.taken >= 20, || {
        format!("only {} snapshot(s) taken", samples.taken)
    });
    figures.check(tracked == jobs.len(), || {
        format!(
            "only {tracked} of {} job(s) were ever seen in a snapshot",
            jobs.len()
        )
    });
    for violation in &samples.violations {
        figures.failures.push(violation.clone());
    }
    for (kind, what) in [(Place::Retry, "retry"), (Place::Dead, "dead")] {
        let ids = samples.ever_in(&kind);
        figures.check(ids.is_empty(), || {
            format!(
                "{} job(s) were in the {what} set (a stale run settled them), e.g. {:?}",
                ids.len(),
                &ids[..ids.len().min(5)]
            )
        });
    }
}

/// Every job's final status must be `Succeeded`.
async fn check_statuses(rig: &Rig, figures: &mut Figures, jobs: &[Job]) {
    let mut wrong = Vec::new();
    for job in jobs {
        match rig.admin.job(job.job_id.clone()).status().await {
            Ok(dtask::JobStatus::Succeeded(_)) => {}
            Ok(status) => wrong.push(format!("job {} ({:?}): {status:?}", job.id, job.ending)),
            Err(error) => wrong.push(format!("job {}: status unreadable: {error}", job.id)),
        }
    }
    figures.note(format!(
        "final status: {}/{} job(s) Succeeded",
        jobs.len() - wrong.len(),
        jobs.len()
    ));
    figures.check(wrong.is_empty(), || {
        format!(
            "{} job(s) did not end Succeeded: {}",
            wrong.len(),
            wrong[..wrong.len().min(5)].join("; ")
        )
    });
}

/// Every stale run must have ended after its job's copy did.
fn check_order(
    figures: &mut Figures,
    stale: &HashSet<u64>,
    first_ends: &HashMap<u64, u64>,
    later_ends: &HashMap<u64, u64>,
) {
    let mut lags = Vec::new();
    let mut early = Vec::new();
    for id in stale {
        match (first_ends.get(id), later_ends.get(id)) {
            (Some(first), Some(later)) if first > later => lags.push(first - later),
            (Some(first), Some(later)) => early.push(format!(
                "job {id}: its copy ended {} ms after its stale run",
                later - first
            )),
            (first, _) => early.push(format!(
                "job {id}: {}",
                if first.is_some() {
                    "its copy never ended"
                } else {
                    "its stale run never ended"
                }
            )),
        }
    }
    lags.sort_unstable();
    figures.note(format!(
        "stale runs ended {}-{} ms after their copies ({} of {})",
        lags.first().copied().unwrap_or(0),
        lags.last().copied().unwrap_or(0),
        lags.len(),
        stale.len()
    ));
    figures.check(early.is_empty(), || {
        format!(
            "{} stale run(s) did not end after their copy (the copy ran late: the thaw came too late, or the copy was stuck): {}",
            early.len(),
            early[..early.len().min(3)].join("; ")
        )
    });
}

/// Where the copies ran: every copy of the second queue on the thawed worker itself.
fn check_copies(
    figures: &mut Figures,
    jobs: &[Job],
    later_pids: &HashMap<u64, u32>,
    victim_pid: u32,
    samples: &Samples,
) {
    let count = |queue: &str, on_victim: bool| {
        jobs.iter()
            .filter(|j| j.ending.is_some() && j.queue == queue)
            .filter(|j| {
                later_pids
                    .get(&j.id)
                    .is_some_and(|p| (*p == victim_pid) == on_victim)
            })
            .count()
    };
    let solo_total = jobs
        .iter()
        .filter(|j| j.ending.is_some() && j.queue == SOLO_QUEUE)
        .count();
    let solo_on_victim = count(SOLO_QUEUE, true);
    figures.note(format!(
        "copies: `{MAIN_QUEUE}` {} on another worker, {} on the thawed worker (landed on it while frozen); `{SOLO_QUEUE}` {solo_on_victim}/{solo_total} on the thawed worker itself",
        count(MAIN_QUEUE, false),
        count(MAIN_QUEUE, true),
    ));
    let elsewhere: Vec<String> = jobs
        .iter()
        .filter(|j| j.ending.is_some() && j.queue == SOLO_QUEUE)
        .filter(|j| later_pids.get(&j.id) != Some(&victim_pid))
        .take(3)
        .map(|j| {
            format!(
                "job {} ran by {:?}, seen {}",
                j.id,
                later_pids.get(&j.id),
                journey(samples, j.id)
            )
        })
        .collect();
    figures.check(elsewhere.is_empty(), || {
        format!(
            "only {solo_on_victim} of {solo_total} copies of `{SOLO_QUEUE}` ran on the thawed worker (the case of a worker re-fetching its own recovered job was not covered): {}",
            elsewhere.join("; ")
        )
    });
}

/// Where the sampler saw job `id`, in order (`pending -> active:<worker> -> nowhere`).
fn journey(samples: &Samples, id: u64) -> String {
    samples.history.get(&id).map_or_else(
        || "never".to_owned(),
        |history| {
            history
                .iter()
                .map(describe_place)
                .collect::<Vec<_>>()
                .join(" -> ")
        },
    )
}

/// The thawed worker must have logged each stale run as dropped, by how it ended.
fn check_victim_log(figures: &mut Figures, log: &std::path::Path, jobs: &[Job]) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut seen = Vec::new();
    for ending in Ending::ALL {
        let expected = stale_jobs(jobs, Some(ending)).len();
        let needle = format!("a run {} after its job was taken back", ending.logged_as());
        let found = text.matches(&needle).count();
        seen.push(format!("{} {found}/{expected}", ending.logged_as()));
        figures.check(found == expected, || {
            format!(
                "the thawed worker logged {found} stale run(s) that {}, not {expected} (log: {})",
                ending.logged_as(),
                log.display()
            )
        });
    }
    figures.note(format!(
        "stale runs the thawed worker dropped (its log): {}",
        seen.join(", ")
    ));
}
