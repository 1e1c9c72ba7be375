//! `dtask-torture`: a fault-injection suite that proves no job is lost.
//!
//! Run with `cargo run --release -p dtask-torture` (short mode, every scenario, well under three
//! minutes), `cargo run --release -p dtask-torture -- --mode long` (the full figures: 20,000
//! jobs, 10 kills, 10 s outages), or `-- --only 4` for one scenario. Needs `redis-server` on the
//! `PATH`; talks only to 127.0.0.1.
//!
//! The driver starts, for each scenario, a redis-server of its own on a free port in a temporary
//! directory, and re-executes itself as worker processes (`dtask-torture worker`, configured by
//! environment variables). It then injects faults: SIGKILLed, frozen and terminated workers, a
//! crashed, frozen and restarted Redis, a poison job, garbage payloads, job handlers that block
//! every thread of their worker's runtime, and a network that silently drops every established
//! connection (a TCP proxy of its own between the workers and Redis). Every job records its
//! runs idempotently in Redis (see [`effects`]), so that at the end lost jobs (enqueued `Ok`, not
//! run, not dead) and duplicate runs are counted, not guessed.
//!
//! Each scenario prints one line of figures (jobs enqueued, done, lost, duplicate runs, faults
//! injected, recovery time, duration) and its notes; a summary table follows. The exit code is 1
//! when any scenario loses a job or breaks one of its invariants. Every process the driver
//! started (redis-servers, workers) is stopped by pid when its scenario ends, also on Ctrl-C.
//! Logs and Redis data stay in the run directory when a scenario fails (or with `--keep`).
//!
//! The scenarios: 1 `worker-crash`, 2 `redis-crash`, 3 `redis-outage`, 4 `frozen-worker`,
//! 5 `poison-job`, 6 `bad-input`, 7 `shutdown`, 8 `stalled-runtime` (handlers that block their
//! runtime thread for several leases: no job may run twice), 9 `silent-network` (every
//! established connection blackholed at once: enqueueing and processing must resume, and the
//! workers still stop cleanly), 10 `stale-attempts` (a frozen worker's first runs end, failed,
//! succeeded or out of retries, after their recovered copies: nothing they settle may change
//! anything, and a Lua snapshot every 50 ms checks that no job is ever in two places), 11
//! `partial-faults` (one of a worker's two queues broken by a WRONGTYPE key, then by an ACL: the
//! other keeps its throughput, drains, and keeps its heartbeat), 12 `repairs-race` (an
//! operator revives dead jobs, pauses the queue and cancels delayed jobs while workers are
//! killed: nothing lost, nothing cancelled runs, the dead set ends empty), 13 `periodic-ticks`
//! (an every-second schedule on workers killed one, two and all at a time: each tick enqueued
//! once, none missing while a worker lives, one for a whole outage), 14 `limits`, 15
//! `workflows`, 16 `cluster-failover` (a master of a 3-master, 3-replica cluster SIGKILLed
//! under load, and a worker SIGKILLed while it fails over: no acknowledged enqueue lost, no
//! job run twice but the killed worker's). See each module of [`scenarios`].
//!
//! With `--acl`, every scenario runs with the README's least-privilege users (`producer` for
//! enqueueing, `worker` for the workers, loaded verbatim from README.md into each redis-server's
//! ACL file), and every connection of the worker user is killed every 2 s (see [`acl`]).

mod acl;
mod effects;
mod locations;
mod producer;
mod report;
mod rig;
mod scenarios;
mod tally;
mod tasks;
mod workers;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use scenarios::{Ctx, Mode};

/// Fault-injection suite for dtask: real worker processes, a real redis-server, counted jobs.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Short (for CI, all scenarios well under 3 minutes) or long (the full figures).
    #[arg(long, value_enum, default_value = "short")]
    mode: Mode,
    /// Run only this scenario (1-16).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=16))]
    only: Option<u8>,
    /// `recovery_after` of the workers, in ms (scenarios 4, 5, 8, 10 and 11 use their own).
    #[arg(long, default_value_t = 2_000)]
    recovery_ms: u64,
    /// Where to keep Redis data and worker logs (default: a new directory under the temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the run directory even when every scenario passed.
    #[arg(long)]
    keep: bool,
    /// The `RUST_LOG` filter of the workers' logs.
    #[arg(long, default_value = "warn")]
    worker_log: String,
    /// Run every scenario with the README's least-privilege ACL users (producer and worker,
    /// loaded verbatim from README.md; dtask's keys then use its prefix `dtask`), and kill every
    /// connection of the worker user every 2 s.
    #[arg(long)]
    acl: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run as a worker process (started by the driver; configured by environment variables).
    Worker,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match runtime(args.command.as_ref()) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match args.command {
        Some(Command::Worker) => match runtime.block_on(workers::run_worker()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("worker failed: {error}");
                ExitCode::FAILURE
            }
        },
        None => runtime.block_on(drive(args)),
    }
}

/// The tokio runtime: tokio's default, but in worker mode as many threads as the driver asked
/// for (a small runtime is one that blocking handlers starve).
fn runtime(command: Option<&Command>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if matches!(command, Some(Command::Worker))
        && let Some(threads) = workers::runtime_threads()
    {
        builder.worker_threads(threads);
    }
    builder.build()
}

/// Runs the chosen scenarios, prints their figures and the summary, and tells the exit code.
async fn drive(args: Args) -> ExitCode {
    let run_dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("dtask-torture-{}", std::process::id()))
    });
    if let Err(error) = std::fs::create_dir_all(&run_dir) {
        eprintln!("cannot create {}: {error}", run_dir.display());
        return ExitCode::FAILURE;
    }
    let ctx = Ctx {
        mode: args.mode,
        run_dir: run_dir.clone(),
        recovery: Duration::from_millis(args.recovery_ms),
        log_filter: args.worker_log.clone(),
        acl: args.acl,
        kills: std::sync::Arc::default(),
    };
    let chosen: Vec<u8> = match args.only {
        Some(n) => vec![n],
        None => scenarios::ALL.iter().map(|(n, _)| *n).collect(),
    };
    println!(
        "dtask-torture: mode {:?}{}, scenarios {chosen:?}, run directory {}",
        args.mode,
        if args.acl { ", README ACL users" } else { "" },
        run_dir.display()
    );
    let started = Instant::now();
    let mut all = Vec::new();
    for number in chosen {
        // Dropping a scenario's future (on Ctrl-C or SIGTERM) drops its redis-server and
        // workers, which stops them by pid.
        let figures = tokio::select! {
            figures = scenarios::run(number, &ctx) => figures,
            _ = dtask::shutdown_signal() => {
                eprintln!("interrupted: stopped this scenario's processes");
                report::print_summary(&all, started.elapsed());
                return ExitCode::FAILURE;
            }
        };
        println!("{figures}");
        for note in &figures.notes {
            println!("    {note}");
        }
        for failure in &figures.failures {
            println!("    FAILED: {failure}");
        }
        all.push(figures);
    }
    report::print_summary(&all, started.elapsed());
    let passed = all.iter().all(report::Figures::passed);
    if passed && !args.keep && args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&run_dir);
    } else {
        println!("logs and Redis data: {}", run_dir.display());
    }
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
