//! Scenario 15, workflows: three worker processes run chains (three steps, each taking the
//! result of the one before) and chords (a group of members, then a callback that takes every
//! result) while a random worker is SIGKILLed and restarted every second or so, often in the
//! middle of a step, a member or a callback, or between a job's end and its workflow's next
//! move. Every chain must end with its third step, every chord's callback must get every
//! member's result once and in order, and run once, more only if it was itself in flight on a
//! killed worker (runs are at least once; the callback's enqueue is exactly once). A job that
//! was in flight on three killed workers is buried as poison, by design: its workflow must
//! then end dead as a whole (its last job naming it) and nothing after it may run.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::Rng;

use super::Ctx;
use crate::report::Figures;
use crate::rig::Rig;
use crate::tasks::{self, FLOW_QUEUE, gather_effect, hop_effect, piece_effect};
use crate::workers::Fleet;
use dtask_testkit::redis_server::Persistence;

/// Runs the scenario.
pub async fn run(ctx: &Ctx, figures: &mut Figures) -> Result<(), String> {
    let chains: u64 = ctx.pick(40, 150);
    let chords: u64 = ctx.pick(6, 16);
    let members: u32 = ctx.pick(40, 100);
    let kills: u32 = ctx.pick(6, 16);

    let rig = Rig::start(ctx, "15-workflows", Persistence::None).await?;
    let config = rig.workers(&[FLOW_QUEUE]).concurrency(8);
    let mut fleet = Fleet::start(config, 3)?;
    rig.wait_workers(FLOW_QUEUE, 3, Duration::from_secs(10))
        .await?;

    let mut chain_jobs = Vec::new();
    for chain in 1..=chains {
        let millis = rand::rng().random_range(200..1_500);
        let job = dtask::chain(tasks::hop_first::call(chain, millis))
            .then(tasks::hop_next::with_input())
            .then(tasks::hop_next::with_input())
            .client(&rig.client)
            .enqueue()
            .await
            .map_err(|e| format!("enqueueing chain {chain}: {e}"))?;
        chain_jobs.push((chain, job));
    }
    let mut chord_jobs = Vec::new();
    for chord in 1..=chords {
        let pieces: Vec<_> = (0..members)
            .map(|index| {
                let millis = rand::rng().random_range(100..600);
                tasks::piece::call(chord, index, millis)
            })
            .collect();
        let job = dtask::group(pieces)
            .then(tasks::gather::with_input())
            .client(&rig.client)
            .enqueue()
            .await
            .map_err(|e| format!("enqueueing chord {chord}: {e}"))?;
        chord_jobs.push((chord, job));
    }

    // Kill a random worker now and then; note what it had in flight.
    let mut in_flight_at_kills = 0u64;
    let mut callbacks_in_flight: HashMap<u64, u64> = HashMap::new();
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(300..800))).await;
        let victim = rand::rng().random_range(0..fleet.workers.len());
        let pid = fleet.workers[victim].pid();
        fleet.workers[victim].kill();
        let payloads = rig.in_flight_payloads(FLOW_QUEUE, pid).await?;
        in_flight_at_kills += payloads.len() as u64;
        for payload in &payloads {
            if let Some(chord) = gathering(payload) {
                *callbacks_in_flight.entry(chord).or_default() += 1;
            }
        }
        fleet.restart(victim)?;
        figures.faults += 1;
    }

    // Every workflow ends; its last job's result says it went through.
    let started = Instant::now();
    let deadline = Duration::from_secs(ctx.pick(120, 300));
    // A job in flight on three killed workers is buried as poison (as it should be): its
    // workflow then ends dead, naming it, and what follows it never runs.
    let poisoned = |outcome: &str| outcome.contains("JobDead") && outcome.contains("worker died");
    let mut poisoned_chains = Vec::new();
    for (chain, job) in &chain_jobs {
        let left = deadline.saturating_sub(started.elapsed());
        match job.wait(left).await {
            Ok(hop) if hop.hops == 3 && hop.chain == *chain => {}
            other if poisoned(&format!("{other:?}")) => poisoned_chains.push(*chain),
            other => figures
                .failures
                .push(format!("chain {chain} ended as {other:?}")),
        }
    }
    let mut poisoned_chords = Vec::new();
    for (chord, job) in &chord_jobs {
        let left = deadline.saturating_sub(started.elapsed());
        match job.wait(left).await {
            Ok(count) if count == members => {}
            other if poisoned(&format!("{other:?}")) => poisoned_chords.push(*chord),
            other => figures
                .failures
                .push(format!("chord {chord} ended as {other:?}")),
        }
    }
    let workflows_took = started.elapsed();

    // What ran, how often.
    let mut conn = rig.conn();
    let runs = rig.fx.runs(&mut conn).await.map_err(|e| e.to_string())?;
    let starts = rig.fx.starts(&mut conn).await.map_err(|e| e.to_string())?;
    let mut expected = Vec::new();
    for chain in (1..=chains).filter(|chain| !poisoned_chains.contains(chain)) {
        expected.extend((1..=3).map(|hop| hop_effect(chain, hop)));
    }
    for chord in (1..=chords).filter(|chord| !poisoned_chords.contains(chord)) {
        expected.extend((0..members).map(|index| piece_effect(chord, index)));
        expected.push(gather_effect(chord));
    }
    // What follows a poison job never runs: a failed chain's last step, a failed chord's
    // callback.
    let ran_after_poison: Vec<u64> = poisoned_chains
        .iter()
        .map(|chain| hop_effect(*chain, 3))
        .chain(poisoned_chords.iter().map(|chord| gather_effect(*chord)))
        .filter(|id| runs.get(id).copied().unwrap_or(0) > 0)
        .collect();
    figures.check(ran_after_poison.is_empty(), || {
        format!("jobs ran after their workflow failed: {ran_after_poison:?}")
    });
    let missing: Vec<u64> = expected
        .iter()
        .copied()
        .filter(|id| runs.get(id).copied().unwrap_or(0) == 0)
        .collect();
    figures.check(missing.is_empty(), || {
        format!(
            "{} job(s) of the workflows never ran: {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        )
    });
    let duplicates: u64 = expected
        .iter()
        .map(|id| runs.get(id).copied().unwrap_or(0).saturating_sub(1))
        .sum();
    figures.enqueued = expected.len() as u64;
    figures.done = (expected.len() - missing.len()) as u64;
    figures.lost = missing.len() as u64;
    figures.duplicates = duplicates;
    figures.check(duplicates <= in_flight_at_kills, || {
        format!("{duplicates} duplicate run(s), more than the {in_flight_at_kills} job(s) in flight on killed workers")
    });
    for chord in (1..=chords).filter(|chord| !poisoned_chords.contains(chord)) {
        let started = starts.get(&gather_effect(chord)).copied().unwrap_or(0);
        let allowed = 1 + callbacks_in_flight.get(&chord).copied().unwrap_or(0);
        figures.check(started >= 1 && started <= allowed, || {
            format!("the callback of chord {chord} started {started} time(s); allowed 1 + the times it was in flight on a killed worker = {allowed}")
        });
    }
    figures.note(format!(
        "{chains} chains of 3 steps and {chords} chords of {members} members, through {kills} kills: every workflow ended {:.1} s after the last kill, whole, or dead as a whole when one of its jobs was in flight on three killed workers and buried as poison ({} chain(s), {} chord(s)); {in_flight_at_kills} job(s) were in flight on killed workers, {duplicates} ran twice; each callback enqueued once ({} were in flight at a kill)",
        workflows_took.as_secs_f64(),
        poisoned_chains.len(),
        poisoned_chords.len(),
        callbacks_in_flight.values().sum::<u64>()
    ));
    let complaints = fleet.shutdown(Duration::from_secs(15)).await;
    figures.failures.extend(complaints);
    Ok(())
}

/// The chord whose callback `payload` is, if it is one.
fn gathering(payload: &str) -> Option<u64> {
    let envelope: serde_json::Value = serde_json::from_str(payload).ok()?;
    if envelope.get("t")?.as_str()? != tasks::gather::NAME {
        return None;
    }
    envelope.get("a")?.get(0)?.get(0)?.get("chord")?.as_u64()
}
