//! The tasks the torture workers run: [`work`], which leaves a countable effect, [`stall`],
//! which does too after blocking its runtime thread, [`first_slow`], whose first run is slow and
//! ends as told while every later run succeeds at once, and [`poison`], which kills the process
//! that runs it, and [`fickle`], whose first run fails for good (an operator's retry of the
//! dead job runs it again).

use std::time::Duration;

use crate::effects;

/// The queue of [`work`] jobs.
pub const WORK_QUEUE: &str = "torture";
/// The queue of [`poison`] jobs (and of the good jobs queued behind them).
pub const POISON_QUEUE: &str = "poison";
/// The queue of [`stall`] jobs.
pub const STALL_QUEUE: &str = "stall";

/// The queue of [`first_slow`] jobs.
pub const FIRST_SLOW_QUEUE: &str = "stale";

/// The queue of [`fickle`] jobs.
pub const REPAIR_QUEUE: &str = "repairs";

/// The queue of [`tick`] jobs (and the workers that keep its schedule).
pub const PERIODIC_QUEUE: &str = "periodic";

/// The queue of [`limited`] jobs.
pub const LIMITED_QUEUE: &str = "limited";
/// The most [`limited`] jobs that run at once.
pub const LIMITED_MAX_RUNNING: usize = 3;
/// The most [`limited`] jobs that start per second (burst 1).
pub const LIMITED_PER_SECOND: usize = 40;

/// The tasks whose jobs record their runs (see [`effects`]), and whose first argument is the
/// job's id.
pub const COUNTED: [&str; 5] = [
    work::NAME,
    stall::NAME,
    first_slow::NAME,
    fickle::NAME,
    limited::NAME,
];

/// The effect [`first_slow`] notes when its first run ends (see [`effects::note_time`]).
pub const FIRST_END: &str = "first-end";
/// The effect [`first_slow`] notes when a later run ends.
pub const LATER_END: &str = "later-end";

/// Sleeps `millis`, then records that job `id` ran (see [`effects`]). Retried generously:
/// recording fails only when Redis stays away for a minute.
#[dtask::task(queue = "torture", retries = 25, name = "torture.work")]
pub async fn work(id: u64, millis: u64) -> Result<(), String> {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    effects::record(id).await
}

/// Records that job `id` starts, blocks the thread it runs on for `millis` (a handler that
/// blocks its runtime, as CPU-bound or synchronous code does), then records that it ran.
/// Never retried: a job that started twice ran twice because dtask took it back from a live
/// worker.
#[dtask::task(queue = "stall", retries = 0, name = "torture.stall")]
pub async fn stall(id: u64, millis: u64) -> Result<(), String> {
    effects::record_start(id).await?;
    std::thread::sleep(Duration::from_millis(millis));
    effects::record(id).await
}

/// Notes that job `id` starts and learns which start it is. The first start sleeps `first_ms`,
/// notes its end ([`FIRST_END`]), then records the run and succeeds if `first_ok`, else fails
/// (a retry, or a burial when the job has no retry left). Every later start records the run,
/// notes its end ([`LATER_END`]) and succeeds at once. A job taken back from a frozen worker
/// during its first run therefore succeeds as soon as its copy runs, whatever the first run
/// does when its worker wakes up.
#[dtask::task(queue = "stale", retries = 3, name = "torture.first_slow")]
pub async fn first_slow(id: u64, first_ms: u64, first_ok: bool) -> Result<(), String> {
    let start = effects::record_numbered_start(id).await?;
    if start > 1 {
        effects::record(id).await?;
        return effects::note_time(id, LATER_END).await;
    }
    tokio::time::sleep(Duration::from_millis(first_ms)).await;
    effects::note_time(id, FIRST_END).await?;
    if first_ok {
        effects::record(id).await
    } else {
        Err(format!("the first run of job {id} fails"))
    }
}

/// Notes that job `id` starts; its first start fails, with no retry (the job dies), and every
/// later one (an operator ran the dead job again, or it was recovered from a killed worker)
/// sleeps `millis`, records the run and succeeds.
#[dtask::task(queue = "repairs", retries = 0, name = "torture.fickle")]
pub async fn fickle(id: u64, millis: u64) -> Result<(), String> {
    if effects::record_numbered_start(id).await? == 1 {
        return Err(format!("the first run of job {id} fails"));
    }
    tokio::time::sleep(Duration::from_millis(millis)).await;
    effects::record(id).await
}

/// Enqueued every second by its schedule (kept by every worker serving its queue): records
/// the tick it was enqueued for and its own id, so that a tick enqueued twice shows.
#[dtask::task(queue = "periodic", cron = "* * * * * *", name = "torture.tick")]
pub async fn tick() -> Result<(), String> {
    let job = dtask::current().ok_or("a tick runs as a job")?;
    let tick = job
        .header("dtask-tick")
        .and_then(|tick| tick.parse().ok())
        .ok_or("a periodic job names its tick")?;
    effects::record_tick(tick, job.id().as_str()).await
}

/// Sleeps `millis`, then notes the span of its run and records that job `id` ran. At most
/// [`LIMITED_MAX_RUNNING`] run at once and [`LIMITED_PER_SECOND`] start per second, across
/// every worker.
#[dtask::task(
    queue = "limited",
    retries = 25,
    name = "torture.limited",
    max_running = 3,
    rate = "40/s"
)]
pub async fn limited(id: u64, millis: u64) -> Result<(), String> {
    let start_ms = effects::now_ms();
    tokio::time::sleep(Duration::from_millis(millis)).await;
    effects::record_span(id, start_ms).await?;
    effects::record(id).await
}

/// Aborts the worker process running it: a poison job. `id` tells poison jobs apart.
#[dtask::task(queue = "poison", retries = 0, name = "torture.poison")]
pub async fn poison(id: u64) {
    tracing::warn!(id, "poison job: aborting this worker process");
    std::process::abort();
}

/// The queue of the workflows' jobs ([`hop_first`], [`hop_next`], [`piece`], [`gather`]).
pub const FLOW_QUEUE: &str = "flows";

/// How far a chain of [`hop_first`] then [`hop_next`] jobs has come.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, dtask::TaskOutput)]
pub struct Hop {
    /// The chain.
    pub chain: u64,
    /// Steps run so far.
    pub hops: u32,
}

/// The effect id of step `hop` (from 1) of `chain`.
pub fn hop_effect(chain: u64, hop: u32) -> u64 {
    chain * 10 + u64::from(hop)
}

/// The first step of a chain: sleeps `millis`, records its effect.
#[dtask::task(queue = "flows", retries = 25, name = "torture.hop_first")]
pub async fn hop_first(chain: u64, millis: u64) -> Result<Hop, String> {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    effects::record(hop_effect(chain, 1)).await?;
    Ok(Hop { chain, hops: 1 })
}

/// A later step of a chain: records its effect, one hop further.
#[dtask::task(queue = "flows", retries = 25, name = "torture.hop_next")]
pub async fn hop_next(hop: Hop) -> Result<Hop, String> {
    tokio::time::sleep(Duration::from_millis(30)).await;
    effects::record(hop_effect(hop.chain, hop.hops + 1)).await?;
    Ok(Hop {
        chain: hop.chain,
        hops: hop.hops + 1,
    })
}

/// What a [`piece`] of a chord returns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, dtask::TaskOutput)]
pub struct Piece {
    /// The chord.
    pub chord: u64,
    /// The member's index.
    pub index: u32,
}

/// The effect id of member `index` of `chord`.
pub fn piece_effect(chord: u64, index: u32) -> u64 {
    1_000_000 + chord * 1_000 + u64::from(index)
}

/// The effect id of the callback of `chord`.
pub fn gather_effect(chord: u64) -> u64 {
    2_000_000 + chord
}

/// A member of a chord: sleeps `millis`, records its effect.
#[dtask::task(queue = "flows", retries = 25, name = "torture.piece")]
pub async fn piece(chord: u64, index: u32, millis: u64) -> Result<Piece, String> {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    effects::record(piece_effect(chord, index)).await?;
    Ok(Piece { chord, index })
}

/// A chord's callback: notes its start, checks that it got every member once and in order
/// (else it fails for good, which the scenario sees), then records its effect.
#[dtask::task(queue = "flows", retries = 25, name = "torture.gather")]
pub async fn gather(pieces: Vec<Piece>) -> Result<u32, String> {
    let chord = pieces
        .first()
        .map(|p| p.chord)
        .ok_or("a chord without members")?;
    effects::record_numbered_start(gather_effect(chord)).await?;
    if pieces
        .iter()
        .enumerate()
        .any(|(i, p)| p.index != i as u32 || p.chord != chord)
    {
        return Err(format!(
            "chord {chord}: the results are not every member once, in order"
        ));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    effects::record(gather_effect(chord)).await?;
    Ok(pieces.len() as u32)
}
