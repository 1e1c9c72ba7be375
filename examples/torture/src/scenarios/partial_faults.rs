//! Scenario 11, partial faults: one worker serves two queues, `a`, busy with a backlog of short
//! jobs kept topped up, and `b`, which is broken while `a`'s throughput is measured: (1) `b`'s
//! pending key is overwritten by a string (`WRONGTYPE` for every list command on it), then (2)
//! an ACL denies the worker every key of `b` (the worker runs as an ACL user with the README's
//! worker commands, whose key patterns are narrowed at run time to `a`'s keys and the results
//! keys). Each fault is repaired after its window. Both priority orders are run, [a, b] and
//! [b, a], each with a worker of its own (`recovery_after` 1 s).
//!
//! A fault in one queue must not slow or strand another: `a`'s rate (jobs/s over a window of a
//! few seconds) with `b` broken must stay within 20 % of its fault-free rate (a window below
//! that is measured once more and the better taken: the machine may be busy); once `a` drains
//! with `b` still broken, nothing of `a` may stay pending or in flight; and the worker's
//! heartbeat on `a` must stay fresher than `recovery_after` all along, busy and idle (else
//! another worker of `a` would take its jobs from it while it lives). After each repair a few
//! jobs go to `b`: they must run. Recovery time: the longest wait, after a repair, until a job
//! of `b` ran.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Ctx;
use crate::acl;
use crate::effects::now_ms;
use crate::producer::enqueue_now;
use crate::report::Figures;
use crate::rig::Rig;
use crate::workers::Fleet;
use dtask_testkit::redis_server::Persistence;

/// The busy queue.
const A: &str = "a";
/// The queue that is broken.
const B: &str = "b";
/// The worker's `recovery_after` (and so its heartbeat, every fifth of it).
const RECOVERY: Duration = Duration::from_millis(1_000);
/// Jobs the worker runs at once.
const CONCURRENCY: usize = 16;
/// How long each job of `a` sleeps, in ms: short, so that the rate is in the thousands.
const JOB_MS: std::ops::RangeInclusive<u64> = 2..=8;
/// The topper refills `a` whenever fewer jobs than this are pending.
const LOW_WATER: u64 = 1_500;
/// Jobs the topper adds at a time.
const REFILL: u64 = 1_000;
/// How long the rate is left to settle before a window starts.
const WARMUP: Duration = Duration::from_millis(300);
/// The slowest `a` may get with `b` broken, as a share of its fault-free rate.
const FLOOR: f64 = 0.8;
/// Jobs sent to `b` after each repair.
const PROBES: u64 = 20;
/// How long the jobs sent to `b` after a repair may take to run.
const PROBE_PATIENCE: Duration = Duration::from_secs(20);
/// The ACL user the worker runs as (the README's, whose rules it gets with other keys).
const USER: &str = acl::WORKER;
/// Ids of order `k` start at `ORDER_IDS * (k + 1)`; probes of `b` far above.
const ORDER_IDS: u64 = 100_000_000;
/// Probe ids are offset by this within an order.
const PROBE_IDS: u64 = 50_000_000;

/// How `b` is broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// `SET <prefix>:{b}:pending garbage`.
    WrongType,
    /// `b`'s keys denied to the worker's ACL user.
    Acl,
}

impl Fault {
    const ALL: [Fault; 2] = [Fault::WrongType, Fault::Acl];

    fn describe(self) -> &'static str {
        match self {
            Fault::WrongType => "b WRONGTYPE",
            Fault::Acl => "b denied by ACL",
        }
    }
}

/// What the scenario shares between its steps.
struct Bench<'a> {
    rig: &'a Rig,
    /// The window a rate is measured over.
    window: Duration,
    /// How long the worker stays idle with `b` broken, after `a` drained.
    idle: Duration,
    /// The next unused job id.
    next_id: u64,
    /// Ids of every job enqueued `Ok`.
    enqueued: HashSet<u64>,
}

/// Runs the scenario.
pub async fn run(ctx: &Ctx, figures: &mut Figures) -> Result<(), String> {
    let rig = Rig::start(ctx, "11-partial-faults", Persistence::None).await?;
    let rules = acl::readme_rules(USER)?;
    let password = acl::password(&rules)?.to_owned();
    let all_keys = vec![format!("~{}:*", rig.prefix)];
    acl::set_user(&mut rig.conn(), USER, &acl::with_keys(&rules, &all_keys))
        .await
        .map_err(|e| format!("create the worker's ACL user: {e}"))?;
    let worker_url = acl::url(rig.redis.port(), USER, &password);
    let mut bench = Bench {
        rig: &rig,
        window: ctx.pick(Duration::from_secs(2), Duration::from_secs(5)),
        idle: ctx.pick(Duration::from_millis(1_300), Duration::from_secs(3)),
        next_id: 0,
        enqueued: HashSet::new(),
    };
    for (k, order) in [[A, B], [B, A]].into_iter().enumerate() {
        bench.next_id = ORDER_IDS * (k as u64 + 1);
        let config = rig
            .workers(&order)
            .redis_url(&worker_url)
            .recovery(RECOVERY)
            .concurrency(CONCURRENCY);
        let mut fleet = Fleet::start(config, 1)?;
        let result = run_order(&mut bench, &fleet, order, k as u64, &all_keys, figures).await;
        figures.note(format!(
            "order [{}]: worker log {} bytes",
            order.join(", "),
            fleet.log_bytes()
        ));
        for (i, status) in fleet.exited() {
            figures.failures.push(format!("worker {i} died: {status}"));
        }
        let complaints = fleet.shutdown(Duration::from_secs(15)).await;
        figures.failures.extend(complaints);
        result?;
    }
    let settled = rig
        .settle(&[A, B], Duration::from_secs(ctx.pick(30, 60)))
        .await;
    let tally = rig.tally(&bench.enqueued, &[A, B]).await?;
    rig.conclude(figures, &tally, &[A, B], false).await;
    figures.check(settled, || "the queues did not drain".to_owned());
    Ok(())
}

/// One priority order: `a`'s fault-free rate, then each fault in turn (measure, drain, idle,
/// repair, probe `b`).
async fn run_order(
    bench: &mut Bench<'_>,
    fleet: &Fleet,
    order: [&str; 2],
    k: u64,
    all_keys: &[String],
    figures: &mut Figures,
) -> Result<(), String> {
    let rig = bench.rig;
    let pid = fleet.workers[0].pid();
    rig.wait_workers(A, 1, Duration::from_secs(10)).await?;
    let worker_id = worker_id(rig, pid).await?;
    let label = format!("order [{}]", order.join(", "));
    let baseline = measure(bench).await?;
    figures.note(format!("{label}: `a` fault-free {baseline:.0} jobs/s"));
    let mut first_probe = ORDER_IDS * (k + 1) + PROBE_IDS;
    for fault in Fault::ALL {
        let at = FaultCtx {
            label: &label,
            worker_id: &worker_id,
            baseline,
            all_keys,
        };
        let probes = run_fault(bench, &at, fault, first_probe, figures).await?;
        first_probe += PROBES;
        bench.enqueued.extend(probes);
    }
    Ok(())
}

/// What [`run_fault`] needs to know of its order.
struct FaultCtx<'a> {
    /// `order [a, b]`.
    label: &'a str,
    /// The worker's id.
    worker_id: &'a str,
    /// `a`'s fault-free rate, jobs/s.
    baseline: f64,
    /// The key patterns of the worker's user when nothing is denied.
    all_keys: &'a [String],
}

/// Breaks `b` with `fault`, measures `a` (twice if below the floor), lets `a` drain and the
/// worker idle, repairs `b` and probes it (ids from `first_probe`); notes one line. Returns the
/// probes' ids.
async fn run_fault(
    bench: &mut Bench<'_>,
    at: &FaultCtx<'_>,
    fault: Fault,
    first_probe: u64,
    figures: &mut Figures,
) -> Result<Vec<u64>, String> {
    let rig = bench.rig;
    let (label, baseline) = (at.label, at.baseline);
    let (stop, stopped) = watch::channel(false);
    let beats = watch_heartbeat(rig, at.worker_id, stopped);
    let connections = connections_received(rig).await?;
    break_b(rig, fault).await?;
    figures.faults += 1;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut rate = measure(bench).await?;
    if rate < baseline * FLOOR {
        rate = rate.max(measure(bench).await?);
    }
    figures.check(rate >= baseline * FLOOR, || {
        format!(
            "{label}: with {}, `a` ran {rate:.0} jobs/s, below {:.0} % of its fault-free {baseline:.0} jobs/s",
            fault.describe(),
            FLOOR * 100.0
        )
    });
    let drained = rig.settle(&[A], Duration::from_secs(30)).await;
    let left = rig.leftovers(&[A]).await?;
    figures.check(drained && left.settled(), || {
        format!(
            "{label}: with {}, `a` did not drain: {} pending, {} in flight",
            fault.describe(),
            left.pending,
            left.in_flight
        )
    });
    tokio::time::sleep(bench.idle).await;
    let _ = stop.send(true);
    let oldest = beats
        .await
        .map_err(|e| format!("the heartbeat watch failed: {e}"))?;
    let heartbeat = check_heartbeat(figures, label, fault, oldest);
    let connections = connections_received(rig).await?.saturating_sub(connections);
    repair_b(rig, fault, at.all_keys).await?;
    let (probes, resumed) = probe_b(bench, first_probe, label, fault, figures).await;
    figures.note(format!(
        "{label}, {}: `a` {rate:.0} jobs/s ({:.0} % of fault-free), drained; heartbeat on `a` {heartbeat}; Redis accepted {connections} new connection(s); after the repair {resumed}",
        fault.describe(),
        100.0 * rate / baseline.max(f64::MIN_POSITIVE)
    ));
    Ok(probes)
}

/// Sends [`PROBES`] jobs (ids from `first`) to `b`, just repaired from `fault`, and waits until
/// they ran; returns the ids enqueued `Ok`, and how soon they ran.
async fn probe_b(
    bench: &Bench<'_>,
    first: u64,
    label: &str,
    fault: Fault,
    figures: &mut Figures,
) -> (Vec<u64>, String) {
    let rig = bench.rig;
    let repaired = now_ms();
    let (probes, error) = enqueue_now(&rig.client, B, first, PROBES, 0..=0).await;
    if let Some(error) = error {
        figures.failures.push(format!(
            "{label}: enqueue into `b` after the repair: {error}"
        ));
    }
    let took = rig.first_run(&probes, repaired, PROBE_PATIENCE).await;
    let mut conn = rig.conn();
    let deadline = Instant::now() + PROBE_PATIENCE;
    let mut ran = 0;
    while took.is_some() {
        let last = rig
            .fx
            .last_runs(&mut conn, &probes)
            .await
            .unwrap_or_default();
        ran = last.iter().flatten().count();
        if ran == probes.len() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(took) = took {
        figures.recovery = Some(figures.recovery.map_or(took, |r| r.max(took)));
    }
    let resumed = format!(
        "the first job of `b` ran after {}, {ran}/{} ran",
        took.map_or_else(
            || "never".to_owned(),
            |d| format!("{:.2}s", d.as_secs_f64())
        ),
        probes.len()
    );
    figures.check(ran == probes.len(), || {
        format!(
            "{label}: after repairing {}, only {ran} of {} job(s) of `b` ran within {PROBE_PATIENCE:?}",
            fault.describe(),
            probes.len()
        )
    });
    (probes, resumed)
}

/// The worker id of the worker process `pid`, from `a`'s registry.
async fn worker_id(rig: &Rig, pid: u32) -> Result<String, String> {
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("{}:{{{A}}}:workers", rig.prefix))
        .arg(0)
        .arg(-1)
        .query_async(&mut rig.conn())
        .await
        .map_err(|e| format!("read the registry: {e}"))?;
    let needle = format!("-{pid}-");
    members
        .into_iter()
        .find(|m| m.contains(&needle))
        .ok_or_else(|| format!("worker {pid} is not registered on `{A}`"))
}

/// How many connections Redis has accepted so far (`INFO stats`).
async fn connections_received(rig: &Rig) -> Result<u64, String> {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut rig.conn())
        .await
        .map_err(|e| format!("INFO stats: {e}"))?;
    info.lines()
        .find_map(|line| line.strip_prefix("total_connections_received:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| "INFO stats has no total_connections_received".to_owned())
}

/// `a`'s rate, jobs/s, over one window, with its backlog kept topped up.
async fn measure(bench: &mut Bench<'_>) -> Result<f64, String> {
    let rig = bench.rig;
    let (stop, stopped) = watch::channel(false);
    let topper = tokio::spawn(top_up(
        rig.client.clone(),
        rig.conn(),
        pending_key(rig),
        bench.next_id,
        stopped,
    ));
    tokio::time::sleep(WARMUP).await;
    let mut conn = rig.conn();
    let before = rig
        .fx
        .done_count(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    tokio::time::sleep(bench.window).await;
    let after = rig
        .fx
        .done_count(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let elapsed = start.elapsed();
    let _ = stop.send(true);
    let (ids, next_id, error) = topper
        .await
        .map_err(|e| format!("the topper failed: {e}"))?;
    bench.next_id = next_id;
    bench.enqueued.extend(ids);
    if let Some(error) = error {
        return Err(format!("enqueue into `a`: {error}"));
    }
    Ok(after.saturating_sub(before) as f64 / elapsed.as_secs_f64())
}

/// `<prefix>:{a}:pending`.
fn pending_key(rig: &Rig) -> String {
    format!("{}:{{{A}}}:pending", rig.prefix)
}

/// Keeps at least [`LOW_WATER`] jobs pending in `a` until `stop`; returns the ids enqueued
/// `Ok`, the next unused id, and the first error.
async fn top_up(
    client: dtask::Client,
    mut conn: redis::aio::ConnectionManager,
    pending: String,
    mut next_id: u64,
    mut stop: watch::Receiver<bool>,
) -> (Vec<u64>, u64, Option<String>) {
    let mut ids = Vec::new();
    let mut first_error = None;
    while !*stop.borrow() {
        let waiting: u64 = redis::cmd("LLEN")
            .arg(&pending)
            .query_async(&mut conn)
            .await
            .unwrap_or(LOW_WATER);
        if waiting < LOW_WATER {
            let (added, error) = enqueue_now(&client, A, next_id, REFILL, JOB_MS).await;
            next_id += REFILL;
            ids.extend(added);
            if first_error.is_none() {
                first_error = error;
            }
            continue;
        }
        tokio::select! {
            _ = stop.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    (ids, next_id, first_error)
}

/// Breaks `b` as `fault` says.
async fn break_b(rig: &Rig, fault: Fault) -> Result<(), String> {
    let mut conn = rig.conn();
    match fault {
        Fault::WrongType => redis::cmd("SET")
            .arg(format!("{}:{{{B}}}:pending", rig.prefix))
            .arg("garbage")
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| format!("break `b`: {e}")),
        Fault::Acl => {
            let only_a = vec![
                format!("~{}:{{{A}}}:*", rig.prefix),
                format!("~{}:results:*", rig.prefix),
            ];
            acl::set_keys(&mut conn, USER, &only_a)
                .await
                .map_err(|e| format!("deny `b` to the worker: {e}"))
        }
    }
}

/// Repairs what [`break_b`] broke.
async fn repair_b(rig: &Rig, fault: Fault, all_keys: &[String]) -> Result<(), String> {
    let mut conn = rig.conn();
    match fault {
        Fault::WrongType => redis::cmd("DEL")
            .arg(format!("{}:{{{B}}}:pending", rig.prefix))
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| format!("repair `b`: {e}")),
        Fault::Acl => acl::set_keys(&mut conn, USER, all_keys)
            .await
            .map_err(|e| format!("allow `b` again: {e}")),
    }
}

/// Watches how old the worker's heartbeat on `a` is (Redis clock), every 50 ms, until `stop`;
/// returns the oldest seen, None when the worker was missing from `a`'s registry.
fn watch_heartbeat(
    rig: &Rig,
    worker_id: &str,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<Option<Duration>> {
    let mut conn = rig.conn();
    let registry = format!("{}:{{{A}}}:workers", rig.prefix);
    let worker_id = worker_id.to_owned();
    tokio::spawn(async move {
        let mut oldest = Some(Duration::ZERO);
        while !*stop.borrow() {
            let read: redis::RedisResult<((u64, u64), Option<u64>)> = redis::pipe()
                .cmd("TIME")
                .cmd("ZSCORE")
                .arg(&registry)
                .arg(&worker_id)
                .query_async(&mut conn)
                .await;
            match read {
                Ok(((secs, micros), Some(beat))) => {
                    let now = secs * 1000 + micros / 1000;
                    let age = Duration::from_millis(now.saturating_sub(beat));
                    oldest = oldest.map(|o| o.max(age));
                }
                Ok((_, None)) => oldest = None,
                Err(_) => {}
            }
            tokio::select! {
                _ = stop.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        oldest
    })
}

/// The worker's heartbeat on `a` must have stayed fresher than its `recovery_after`; returns
/// how old it got, for the note.
fn check_heartbeat(
    figures: &mut Figures,
    label: &str,
    fault: Fault,
    oldest: Option<Duration>,
) -> String {
    let age = oldest.map_or_else(
        || "missing from the registry".to_owned(),
        |d| format!("at most {}ms old", d.as_millis()),
    );
    figures.check(oldest.is_some_and(|d| d < RECOVERY), || {
        format!(
            "{label}: with {}, the worker's heartbeat on `a` was {age} (busy, draining and idle): past recovery_after ({}ms), another worker of `a` would take its jobs from it while it runs them",
            fault.describe(),
            RECOVERY.as_millis()
        )
    });
    age
}
