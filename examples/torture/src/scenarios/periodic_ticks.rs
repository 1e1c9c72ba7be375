//! Scenario 13, periodic ticks: three worker processes keep an every-second schedule while a
//! random one is SIGKILLed and restarted every second or so (sometimes two at once), and once
//! every worker is killed for a few seconds. Each tick must be enqueued exactly once: never
//! twice, none missing while any worker lives, and after the full outage one job for all the
//! ticks missed (never a burst). Recovery time: from the restart after the outage until the
//! job standing for the missed ticks ran.

use std::time::Duration;

use rand::Rng;

use super::Ctx;
use crate::effects::now_ms;
use crate::report::Figures;
use crate::rig::Rig;
use crate::tasks::PERIODIC_QUEUE;
use crate::workers::Fleet;
use dtask_testkit::redis_server::Persistence;

/// Runs the scenario.
pub async fn run(ctx: &Ctx, figures: &mut Figures) -> Result<(), String> {
    let kills: u32 = ctx.pick(8, 40);
    let outage = Duration::from_millis(ctx.pick(3_500, 5_500));

    let rig = Rig::start(ctx, "13-periodic-ticks", Persistence::None).await?;
    let config = rig.workers(&[PERIODIC_QUEUE]).concurrency(4);
    let mut fleet = Fleet::start(config, 3)?;
    rig.wait_workers(PERIODIC_QUEUE, 3, Duration::from_secs(10))
        .await?;
    let started_ms = now_ms();
    let mut killed = 0;
    for round in 0..kills {
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(600..1_600))).await;
        // Every fourth round, two at once: one worker left.
        let victims = if round % 4 == 3 { 2 } else { 1 };
        let first = rand::rng().random_range(0..fleet.workers.len());
        for k in 0..victims {
            let i = (first + k) % fleet.workers.len();
            fleet.workers[i].kill();
            fleet.restart(i)?;
            killed += 1;
        }
    }
    // Every worker down, then back.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    for worker in &mut fleet.workers {
        worker.kill();
    }
    killed += fleet.workers.len() as u64;
    let down_ms = now_ms();
    tokio::time::sleep(outage).await;
    let up_ms = now_ms();
    for i in 0..fleet.workers.len() {
        fleet.restart(i)?;
    }
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let ended_ms = now_ms();
    let complaints = fleet.shutdown(Duration::from_secs(15)).await;
    figures.failures.extend(complaints);
    figures.faults = killed;
    // The last ticks' jobs may still wait in the queue (handed back at shutdown): they count
    // as enqueued, read from their headers.
    let mut conn = rig.conn();
    let mut ticks = rig.fx.ticks(&mut conn).await.map_err(|e| e.to_string())?;
    let pending = rig
        .members(&format!("{}:{{{PERIODIC_QUEUE}}}:pending", rig.prefix))
        .await
        .map_err(|e| e.to_string())?;
    for payload in pending {
        let job: serde_json::Value = serde_json::from_str(&payload).map_err(|e| e.to_string())?;
        let tick = job["h"]["dtask-tick"].as_str().and_then(|t| t.parse().ok());
        if let (Some(tick), Some(id)) = (tick, job["id"].as_str()) {
            ticks.entry(tick).or_default().insert(id.to_owned(), None);
        }
    }
    let twice: Vec<u64> = ticks
        .iter()
        .filter(|(_, jobs)| jobs.len() > 1)
        .map(|(tick, _)| *tick)
        .collect();
    figures.enqueued = ticks.values().map(|jobs| jobs.len() as u64).sum();
    figures.done = ticks.len() as u64;
    figures.duplicates = twice.len() as u64;
    figures.check(twice.is_empty(), || {
        format!(
            "{} tick(s) enqueued more than once, e.g. {:?}",
            twice.len(),
            &twice[..twice.len().min(5)]
        )
    });
    // Every second from the first tick to the last is there, except during the full outage,
    // which leaves one tick (the latest missed, fired once when the workers came back).
    let all: Vec<u64> = ticks.keys().copied().collect();
    let (Some(&first), Some(&last)) = (all.first(), all.last()) else {
        figures.failures.push("no tick was enqueued".to_owned());
        return Ok(());
    };
    let gaps: Vec<(u64, u64)> = all
        .windows(2)
        .filter(|pair| pair[1] != pair[0] + 1000)
        .map(|pair| (pair[0], pair[1]))
        .collect();
    // The tick that stands for the outage is the latest at or before the restart.
    let in_outage =
        |(before, after): &(u64, u64)| *before <= down_ms + 1000 && *after + 1000 >= up_ms;
    let unexplained: Vec<&(u64, u64)> = gaps.iter().filter(|gap| !in_outage(gap)).collect();
    figures.check(unexplained.is_empty(), || {
        format!("ticks missing while workers were up, between {unexplained:?} (ms)")
    });
    figures.check(gaps.len() <= 1, || format!("more than one gap: {gaps:?}"));
    let outage_ticks = all
        .iter()
        .filter(|tick| **tick > down_ms + 1000 && **tick < up_ms)
        .count();
    figures.check(outage_ticks <= 1, || {
        format!("{outage_ticks} ticks enqueued for the outage: a burst")
    });
    figures.check(
        first <= started_ms + 2_000 && last + 2_000 >= ended_ms,
        || format!("the ticks do not span the run: {first}..{last}, run {started_ms}..{ended_ms}"),
    );
    // When the job that stands for the outage ran, after the workers came back.
    let back = all
        .iter()
        .find(|tick| **tick > down_ms + 1000)
        .and_then(|tick| ticks[tick].values().flatten().min().copied());
    figures.recovery = back.map(|ran| Duration::from_millis(ran.saturating_sub(up_ms)));
    figures.note(format!(
        "{} ticks over {:.1} s, {} worker kill(s) incl. one full outage of {:.1} s; gaps: {:?}",
        all.len(),
        (last - first) as f64 / 1000.0,
        killed,
        outage.as_secs_f64(),
        gaps.iter().map(|(a, b)| (b - a) / 1000).collect::<Vec<_>>()
    ));
    Ok(())
}
