//! The scenarios: what every one is given, and how one is run by number.

mod bad_input;
mod cluster_failover;
mod frozen_worker;
mod limits;
mod partial_faults;
mod periodic_ticks;
mod poison;
mod redis_crash;
mod redis_outage;
mod repairs_race;
mod shutdown;
mod silent_network;
mod stale_attempts;
mod stalled_runtime;
mod worker_crash;
mod workflows;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::report::Figures;

/// How hard to push.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Fewer jobs, faults and seconds: every scenario together well under 3 minutes (for CI).
    Short,
    /// The full figures: 20,000 jobs and 10 kills, 10 s outages.
    Long,
}

/// What every scenario is given.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// Short or long.
    pub mode: Mode,
    /// Where each scenario keeps its redis-server's data and its workers' logs.
    pub run_dir: PathBuf,
    /// The `recovery_after` of workers, unless a scenario needs its own.
    pub recovery: Duration,
    /// The `RUST_LOG` filter of the workers' logs.
    pub log_filter: String,
    /// `--acl`: the README's ACL users, and the worker user's connections killed every 2 s
    /// (see [`crate::acl`]).
    pub acl: bool,
    /// How often the worker user's connections were killed (`--acl`).
    pub kills: Arc<crate::acl::Kills>,
}

impl Ctx {
    /// `short` in short mode, else `long`.
    pub fn pick<T>(&self, short: T, long: T) -> T {
        match self.mode {
            Mode::Short => short,
            Mode::Long => long,
        }
    }
}

/// Every scenario: number and name.
pub const ALL: [(u8, &str); 16] = [
    (1, "worker-crash"),
    (2, "redis-crash"),
    (3, "redis-outage"),
    (4, "frozen-worker"),
    (5, "poison-job"),
    (6, "bad-input"),
    (7, "shutdown"),
    (8, "stalled-runtime"),
    (9, "silent-network"),
    (10, "stale-attempts"),
    (11, "partial-faults"),
    (12, "repairs-race"),
    (13, "periodic-ticks"),
    (14, "limits"),
    (15, "workflows"),
    (16, "cluster-failover"),
];

/// Runs scenario `number` and returns its figures (a scenario that could not run at all fails).
pub async fn run(number: u8, ctx: &Ctx) -> Figures {
    let name = ALL
        .iter()
        .find(|(n, _)| *n == number)
        .map_or("unknown", |(_, name)| name);
    let mut figures = Figures::new(number, name);
    let started = Instant::now();
    let (rounds, killed) = ctx.kills.read();
    let result = match number {
        1 => worker_crash::run(ctx, &mut figures).await,
        2 => redis_crash::run(ctx, &mut figures).await,
        3 => redis_outage::run(ctx, &mut figures).await,
        4 => frozen_worker::run(ctx, &mut figures).await,
        5 => poison::run(ctx, &mut figures).await,
        6 => bad_input::run(ctx, &mut figures).await,
        7 => shutdown::run(ctx, &mut figures).await,
        8 => stalled_runtime::run(ctx, &mut figures).await,
        9 => silent_network::run(ctx, &mut figures).await,
        10 => stale_attempts::run(ctx, &mut figures).await,
        11 => partial_faults::run(ctx, &mut figures).await,
        12 => repairs_race::run(ctx, &mut figures).await,
        13 => periodic_ticks::run(ctx, &mut figures).await,
        14 => limits::run(ctx, &mut figures).await,
        15 => workflows::run(ctx, &mut figures).await,
        16 => cluster_failover::run(ctx, &mut figures).await,
        _ => Err(format!("there is no scenario {number}")),
    };
    if let Err(error) = result {
        figures
            .failures
            .push(format!("the scenario could not run: {error}"));
    }
    if ctx.acl {
        let (rounds_after, killed_after) = ctx.kills.read();
        figures.note(format!(
            "--acl: the README's producer and worker users; CLIENT KILL USER worker {} time(s), {} connection(s) killed",
            rounds_after - rounds,
            killed_after - killed
        ));
    }
    figures.duration = started.elapsed();
    figures
}

/// The end of the two Redis-outage scenarios (2 and 3): waits for the work queue to drain,
/// counts every job the producer enqueued, reports its failed enqueues and the jobs that ran
/// twice (`why_twice` says why that was expected), and stops the workers.
async fn finish_outage(
    ctx: &Ctx,
    rig: &crate::rig::Rig,
    figures: &mut Figures,
    fleet: &mut crate::workers::Fleet,
    enqueued: &std::collections::HashSet<u64>,
    report: &crate::producer::ProducerReport,
    why_twice: &str,
) -> Result<(), String> {
    use crate::tasks::WORK_QUEUE;
    let settled = rig
        .settle(&[WORK_QUEUE], Duration::from_secs(ctx.pick(60, 120)))
        .await;
    let tally = rig.tally(enqueued, &[WORK_QUEUE]).await?;
    rig.conclude(figures, &tally, &[WORK_QUEUE], false).await;
    figures.check(settled, || "the queue did not drain".to_owned());
    figures.note(format!(
        "producer: {} enqueue call(s) ({} jobs) failed during the outage(s), not counted; slowest enqueue {:.2}s; first error: {}",
        report.failed_calls,
        report.failed_jobs,
        report.slowest_call.as_secs_f64(),
        report.first_error.as_deref().unwrap_or("none")
    ));
    figures.note(format!(
        "{} job(s) ran twice ({why_twice})",
        tally.ran_twice.len()
    ));
    let complaints = fleet.shutdown(Duration::from_secs(15)).await;
    figures.failures.extend(complaints);
    Ok(())
}
