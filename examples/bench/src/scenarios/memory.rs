//! Scenario 6: the worker's resident memory with 10,000 jobs in flight.
//!
//! The jobs sleep, so they are all running at once under a worker of concurrency 10,000. It
//! runs twice: every job sleeping 3 s, so they finish in the order they started; and with
//! sleeps spread over 1 to 3 s, so they finish out of order, which shows what settling a job
//! costs when it is deep in the worker's in-flight list. The
//! worker runs in a fresh child process (this binary with `--rss-probe`), so that its `VmRSS`
//! is not mixed up with memory that earlier scenarios left in this process's allocator; the
//! parent queues the jobs and takes the Redis snapshots around the child's run.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{BATCH, Bench};
use crate::report::{Outcome, Rss};
use crate::tasks::{self, NapWatch};
use crate::{Result, process};

/// Jobs in flight.
pub const JOBS: u64 = 10_000;
/// How long each job sleeps (the longest, when spread).
pub const NAP: Duration = Duration::from_secs(3);
/// The shortest sleep, when spread.
pub const SHORTEST_NAP: Duration = Duration::from_secs(1);
/// Longest the child may take from its start to the end of the last job.
const PROBE_LIMIT: Duration = Duration::from_secs(120);

/// What the child process measured, sent to the parent as one JSON line.
#[derive(Debug, Serialize, Deserialize)]
pub struct Probe {
    /// `VmRSS` before the worker started, KiB.
    pub rss_before_kib: u64,
    /// `VmRSS` when every job was running, KiB.
    pub rss_running_kib: u64,
    /// `VmHWM` at the end, KiB.
    pub rss_peak_kib: u64,
    /// Seconds from the worker's start until every job was running.
    pub ramp_seconds: f64,
    /// Jobs running at once when the last one started.
    pub running_at_once: u64,
    /// Seconds from the worker's start until every job was finished.
    pub total_seconds: f64,
    /// CPU time (user + system) of the child from the worker's start to its shutdown, seconds.
    pub cpu_seconds: f64,
}

/// How long job `i` sleeps, in ms: [`NAP`], or when `spread`, a value between
/// [`SHORTEST_NAP`] and [`NAP`] that looks random, so that jobs finish out of order.
fn nap_ms(i: u64, spread: bool) -> u64 {
    let longest = NAP.as_millis() as u64;
    if !spread {
        return longest;
    }
    let shortest = SHORTEST_NAP.as_millis() as u64;
    shortest + (i.wrapping_mul(7_919) % (longest - shortest + 1))
}

/// Scenario 6, parent side: queues the jobs (sleeping [`NAP`] each, or spread between
/// [`SHORTEST_NAP`] and [`NAP`]), runs the probe, reads what it measured.
pub async fn measure(bench: &mut Bench, spread: bool) -> Result<Outcome> {
    let sleeps = if spread {
        format!("{SHORTEST_NAP:?} to {NAP:?}")
    } else {
        format!("{NAP:?}")
    };
    eprintln!("6. worker memory: {JOBS} jobs sleeping {sleeps}, concurrency {JOBS} ...");
    let (client, prefix) = bench.fresh_client().await?;
    let mut next = 0;
    while next < JOBS {
        let end = (next + BATCH as u64).min(JOBS);
        tasks::nap::with()
            .client(&client)
            .enqueue_many((next..end).map(|i| (nap_ms(i, spread), 7)))
            .await?;
        next = end;
    }
    let before = bench.snapshot().await?;
    let child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["--rss-probe", &prefix, "--redis-url", bench.url()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let output = tokio::time::timeout(
        PROBE_LIMIT + Duration::from_secs(30),
        child.wait_with_output(),
    )
    .await
    .map_err(|_| "the memory probe did not finish in time")??;
    let after = bench.snapshot().await?;
    bench.clean_up(&prefix).await?;
    if !output.status.success() {
        return Err(format!("the memory probe failed ({})", output.status).into());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .ok_or("the memory probe printed no measurements")?;
    let probe: Probe = serde_json::from_str(line)?;

    let mib = |kib: u64| kib as f64 / 1024.0;
    let delta_kib = probe.rss_running_kib as f64 - probe.rss_before_kib as f64;
    let mut outcome = Outcome::new(
        6,
        if spread {
            "worker_memory_spread"
        } else {
            "worker_memory"
        },
        JOBS,
        probe.total_seconds,
        &after.since(&before),
    );
    outcome.concurrency = Some(JOBS as usize);
    outcome.dtask_cpu_us_per_job = probe.cpu_seconds * 1e6 / JOBS as f64;
    outcome.rss = Some(Rss {
        before_mib: mib(probe.rss_before_kib),
        running_mib: mib(probe.rss_running_kib),
        delta_mib: delta_kib / 1024.0,
        delta_kib_per_job: delta_kib / JOBS as f64,
        peak_mib: mib(probe.rss_peak_kib),
        ramp_seconds: probe.ramp_seconds,
        running_at_once: probe.running_at_once,
    });
    let order = if spread {
        "finishing out of order"
    } else {
        "finishing in the order they started"
    };
    let mut note = format!(
        "jobs sleep {sleeps}, {order}; cmds/job, Redis and dtask µs/job cover fetching, running and acknowledging"
    );
    if probe.running_at_once < JOBS {
        note.push_str(&format!(
            "; only {} of {JOBS} were running at once when the last started",
            probe.running_at_once
        ));
    }
    outcome.note = Some(note);
    Ok(outcome)
}

/// Scenario 6, child side (`--rss-probe PREFIX`): runs a worker of concurrency [`JOBS`] on the
/// sleeping jobs queued under `prefix`, reads `VmRSS` before it starts and once every job is
/// running, and prints a [`Probe`] as one JSON line.
pub async fn probe(url: &str, prefix: &str) -> Result<()> {
    let client = dtask::Client::connect_with_prefix(url, prefix).await?;
    let rss_before_kib = process::status_kib("VmRSS")?;
    let cpu_before = process::cpu_seconds()?;
    let started = Instant::now();
    let worker = dtask::Worker::new(&client)
        .queues([tasks::NAP_QUEUE])
        .concurrency(JOBS as usize)
        .spawn();
    let deadline = started + PROBE_LIMIT;
    let (rss_running_kib, ramp_seconds, running_at_once) = loop {
        let begun = NapWatch::started();
        if begun >= JOBS {
            let rss = process::status_kib("VmRSS")?;
            break (
                rss,
                started.elapsed().as_secs_f64(),
                begun - NapWatch::done(),
            );
        }
        if Instant::now() > deadline || worker.is_finished() {
            let _ = worker.shutdown().await;
            return Err(format!("only {begun} of {JOBS} sleeping jobs started").into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    while NapWatch::done() < JOBS {
        if Instant::now() > deadline {
            let _ = worker.shutdown().await;
            return Err(
                format!("only {} of {JOBS} sleeping jobs finished", NapWatch::done()).into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let total_seconds = started.elapsed().as_secs_f64();
    worker.shutdown().await?;
    let probe = Probe {
        rss_before_kib,
        rss_running_kib,
        rss_peak_kib: process::status_kib("VmHWM")?,
        ramp_seconds,
        running_at_once,
        total_seconds,
        cpu_seconds: process::cpu_seconds()? - cpu_before,
    };
    println!("{}", serde_json::to_string(&probe)?);
    Ok(())
}
