//! Scenario 14, limits: three worker processes (8 slots each) work through jobs of a task with
//! `max_running = 3` and `rate = "40/s"` while a random worker is SIGKILLed and restarted every
//! couple of seconds, often holding one of the three slots. No job may be lost; a job may run
//! twice only if it was in flight on a killed worker; never more than 3 runs at once (among
//! the runs that ended: a killed run's slot is held, unused, until its lease lapses); never
//! more starts in a second than the rate allows; and the rate achieved over the run is
//! reported next to the limit.

use std::time::Duration;

use rand::Rng;

use super::Ctx;
use crate::report::Figures;
use crate::rig::{Rig, gather_reruns, id_set};
use crate::tasks::{self, LIMITED_MAX_RUNNING, LIMITED_PER_SECOND, LIMITED_QUEUE};
use crate::workers::Fleet;
use dtask_testkit::redis_server::Persistence;

/// Runs the scenario.
pub async fn run(ctx: &Ctx, figures: &mut Figures) -> Result<(), String> {
    let jobs: u64 = ctx.pick(300, 1_500);
    let kills: u32 = ctx.pick(3, 10);

    let rig = Rig::start(ctx, "14-limits", Persistence::None).await?;
    let config = rig.workers(&[LIMITED_QUEUE]).concurrency(8);
    let mut fleet = Fleet::start(config, 3)?;
    rig.wait_workers(LIMITED_QUEUE, 3, Duration::from_secs(10))
        .await?;
    let items: Vec<(u64, u64)> = {
        let mut rng = rand::rng();
        (1..=jobs)
            .map(|id| (id, rng.random_range(20..=80)))
            .collect()
    };
    tasks::limited::with()
        .client(&rig.client)
        .enqueue_many(items.clone())
        .await
        .map_err(|e| format!("enqueueing: {e}"))?;
    let ids: Vec<u64> = items.iter().map(|(id, _)| *id).collect();
    let mut watches = Vec::new();
    let mut in_flight_at_kills = 0;
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(
            rand::rng().random_range(1_000..2_500),
        ))
        .await;
        let (in_flight, watch) = rig.kill_random_worker(&mut fleet, LIMITED_QUEUE).await?;
        in_flight_at_kills += in_flight.len() as u64;
        watches.push(watch);
        figures.faults += 1;
    }
    let enqueued = id_set(&ids);
    let settled = rig
        .settle(&[LIMITED_QUEUE], Duration::from_secs(ctx.pick(60, 180)))
        .await;
    figures.recovery = gather_reruns(watches, figures).await;
    let tally = rig.tally(&enqueued, &[LIMITED_QUEUE]).await?;
    rig.conclude(figures, &tally, &[LIMITED_QUEUE], false).await;
    figures.check(settled, || "the queue did not drain".to_owned());
    figures.check(tally.duplicates <= in_flight_at_kills, || {
        format!(
            "{} duplicate run(s), more than the {in_flight_at_kills} job(s) in flight on killed workers",
            tally.duplicates
        )
    });

    let mut conn = rig.conn();
    let spans = rig.fx.spans(&mut conn).await.map_err(|e| e.to_string())?;
    let most_at_once = most_at_once(&spans);
    figures.check(most_at_once <= LIMITED_MAX_RUNNING, || {
        format!("{most_at_once} runs at once, over max_running = {LIMITED_MAX_RUNNING}")
    });
    let mut starts: Vec<u64> = spans.iter().map(|(_, start, _)| *start).collect();
    starts.sort_unstable();
    let busiest = busiest_second(&starts);
    // At most `n + burst` start in any second; one more for the milliseconds between a token
    // and the start noted by the handler.
    let allowed = LIMITED_PER_SECOND + 1 + 1;
    figures.check(busiest <= allowed, || {
        format!("{busiest} starts within one second, over the {allowed} the rate allows")
    });
    let achieved = match (starts.first(), starts.last()) {
        (Some(first), Some(last)) if last > first => {
            (starts.len() - 1) as f64 * 1000.0 / (last - first) as f64
        }
        _ => 0.0,
    };
    figures.note(format!(
        "{} runs noted; at most {most_at_once} at once (limit {LIMITED_MAX_RUNNING}); busiest second {busiest} starts; {achieved:.1} starts/s over the run (limit {LIMITED_PER_SECOND}/s, slowed by the slots and the kills); {in_flight_at_kills} job(s) in flight on killed workers, {} ran twice",
        spans.len(),
        tally.ran_twice.len()
    ));
    let complaints = fleet.shutdown(Duration::from_secs(15)).await;
    figures.failures.extend(complaints);
    Ok(())
}

/// The most spans (job, start, end) that overlap at one instant (an end and a start at the
/// same millisecond do not overlap).
fn most_at_once(spans: &[(u64, u64, u64)]) -> usize {
    let mut edges: Vec<(u64, i32)> = spans
        .iter()
        .flat_map(|(_, start, end)| [(*start, 1), (*end, -1)])
        .collect();
    // Ends before starts at the same instant.
    edges.sort_unstable();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, change) in edges {
        now += change;
        most = most.max(now);
    }
    most as usize
}

/// The most of the sorted `starts` (ms) within any 1,000 ms.
fn busiest_second(starts: &[u64]) -> usize {
    let mut most = 0;
    let mut from = 0;
    for (i, at) in starts.iter().enumerate() {
        while *at - starts[from] >= 1_000 {
            from += 1;
        }
        most = most.max(i + 1 - from);
    }
    most
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlaps_and_busy_seconds_are_counted() {
        assert_eq!(most_at_once(&[(1, 0, 10), (2, 5, 15), (3, 10, 20)]), 2);
        assert_eq!(most_at_once(&[(1, 0, 10), (2, 1, 9), (3, 2, 8)]), 3);
        assert_eq!(busiest_second(&[0, 500, 999, 1_000, 1_999]), 3);
    }
}
