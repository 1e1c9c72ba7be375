//! Scenario 9, silent network: two workers and a producer (100 jobs a second) reach Redis
//! through a TCP proxy of the driver's (see [`crate::proxy`]), which blackholes every
//! established connection at once, as a dead NAT entry or a firewall that dropped its state
//! does: the sockets stay open, writes succeed, nothing arrives, no error, no end of stream;
//! new connections work. Done once (short) or three times (long). At each blackhole a burst of
//! jobs is queued straight into Redis, so that there is work waiting for the workers whatever
//! the producer manages.
//!
//! dtask must notice by itself. Within 30 s of each blackhole (the runtime's response timeout
//! is 10 s) enqueues through the proxy must succeed again and the workers must run jobs again;
//! no job may sit in a landing list (taken by a blocking wait whose reply was dropped) for more
//! than 30 s; none may be lost; and SIGTERM must still stop every worker, exit 0, within its
//! grace period + 5 s. Recovery time: the longest wait, after a blackhole, until both
//! enqueueing and processing worked again.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::Ctx;
use crate::effects::now_ms;
use crate::producer::{Producer, ProducerConfig, ProducerReport, enqueue_now};
use crate::report::Figures;
use crate::rig::{Rig, Stay, id_set};
use crate::tasks::WORK_QUEUE;
use crate::workers::Fleet;
use dtask_testkit::proxy::Proxy;
use dtask_testkit::redis_server::Persistence;

/// Worker processes.
const WORKERS: usize = 2;
/// How soon after a blackhole enqueueing and processing must work again.
const RESUME_LIMIT: Duration = Duration::from_secs(30);
/// How long after a blackhole the scenario keeps looking, to tell late from never.
const PATIENCE: Duration = Duration::from_secs(45);
/// A stay in a landing list longer than this is reported ("a few seconds").
const LANDING_NOTE: Duration = Duration::from_secs(5);
/// A stay in a landing list longer than this fails the scenario.
const LANDING_LIMIT: Duration = Duration::from_secs(30);
/// The workers' grace period after SIGTERM.
const GRACE: Duration = Duration::from_secs(5);
/// How much longer than the grace period a worker may take to exit.
const EXIT_SLACK: Duration = Duration::from_secs(5);
/// Jobs queued straight into Redis at each blackhole.
const BURST: u64 = 200;
/// The first id of the burst of blackhole `k` is `BURST_BASE * (k + 1)` (the producer's ids
/// start at 1 and stay far below).
const BURST_BASE: u64 = 1_000_000_000;
/// How long the producer may take to stop (an enqueue call in flight may be hanging).
const PRODUCER_STOP: Duration = Duration::from_secs(30);

/// What one blackhole did.
struct Outcome {
    /// Jobs of the burst whose enqueue returned `Ok`.
    burst: Vec<u64>,
    /// From the blackhole until an enqueue through the proxy returned `Ok`.
    enqueues: Option<Duration>,
    /// From the blackhole until a job of the burst ran.
    processing: Option<Duration>,
}

/// Runs the scenario.
pub async fn run(ctx: &Ctx, figures: &mut Figures) -> Result<(), String> {
    let blackholes: u64 = ctx.pick(1, 3);
    let calm = ctx.pick(Duration::from_secs(3), Duration::from_secs(5));

    let rig = Rig::start(ctx, "9-silent-network", Persistence::None).await?;
    let proxy = Proxy::start(rig.redis.port()).await?;
    let config = rig
        .workers(&[WORK_QUEUE])
        .redis_url(&rig.worker_url(proxy.port()))
        .grace(GRACE);
    let mut fleet = Fleet::start(config, WORKERS)?;
    rig.wait_workers(WORK_QUEUE, WORKERS as u64, Duration::from_secs(10))
        .await?;
    let client = dtask::Client::connect_with_prefix(&rig.producer_url(proxy.port()), &rig.prefix)
        .await
        .map_err(|e| format!("connect the producer through the proxy: {e}"))?;
    let producer = Producer::start(
        client,
        ProducerConfig {
            queue: WORK_QUEUE.to_owned(),
            rate: 100.0,
            batch: 10,
            millis: 20..=100,
            first_id: 1,
        },
    );
    let (stop_watch, stopped) = watch::channel(false);
    let landing = rig.watch_landing(WORK_QUEUE, stopped);

    let mut burst_ids = Vec::new();
    let mut recovery: Option<Duration> = None;
    for k in 0..blackholes {
        tokio::time::sleep(calm).await;
        let outcome = blackhole(&rig, &proxy, &producer, k, figures).await;
        burst_ids.extend(&outcome.burst);
        match outcome.enqueues.zip(outcome.processing) {
            Some((enqueues, processing)) => {
                let took = enqueues.max(processing);
                recovery = Some(recovery.map_or(took, |r| r.max(took)));
            }
            None => {
                figures.note("no further blackhole: the last one never healed");
                break;
            }
        }
    }
    tokio::time::sleep(calm).await;
    let Ok(report) = tokio::time::timeout(PRODUCER_STOP, producer.stop()).await else {
        return Err(format!(
            "the producer did not stop within {PRODUCER_STOP:?}: an enqueue call hung"
        ));
    };
    figures.recovery = recovery;

    let mut enqueued = id_set(&report.enqueued);
    enqueued.extend(&burst_ids);
    let settled = rig
        .settle(&[WORK_QUEUE], Duration::from_secs(ctx.pick(60, 120)))
        .await;
    let _ = stop_watch.send(true);
    let stays = landing.await.unwrap_or_default();
    let tally = rig.tally(&enqueued, &[WORK_QUEUE]).await?;
    rig.conclude(figures, &tally, &[WORK_QUEUE], false).await;
    figures.check(settled, || "the queue did not drain".to_owned());
    note_producer(figures, &report);
    check_landing(figures, &stays);
    figures.note(format!(
        "{} job(s) ran twice (recovered from workers whose heartbeat lapsed while their connections were silent)",
        tally.ran_twice.len()
    ));
    for (i, status) in fleet.exited() {
        figures.failures.push(format!("worker {i} died: {status}"));
    }
    terminate(&mut fleet, figures).await;
    Ok(())
}

/// Blackholes every established connection, queues a burst of jobs straight into Redis, and
/// waits until enqueues through the proxy succeed again and a job of the burst ran.
async fn blackhole(
    rig: &Rig,
    proxy: &Proxy,
    producer: &Producer,
    k: u64,
    figures: &mut Figures,
) -> Outcome {
    let accepted_before = proxy.accepted();
    let muted = proxy.blackhole();
    let since = Instant::now();
    let since_ms = now_ms();
    figures.faults += 1;
    let (burst, error) = enqueue_now(
        &rig.client,
        WORK_QUEUE,
        BURST_BASE * (k + 1),
        BURST,
        20..=100,
    )
    .await;
    if let Some(error) = error {
        figures.failures.push(format!(
            "blackhole {}: enqueueing straight into Redis failed: {error}",
            k + 1
        ));
    }
    let (enqueues, processing) = tokio::join!(
        producer.resumed(since, PATIENCE),
        rig.first_run(&burst, since_ms, PATIENCE)
    );
    for (what, took) in [
        ("enqueues through the proxy did not succeed", enqueues),
        (
            "no job of the burst queued at the blackhole ran",
            processing,
        ),
    ] {
        figures.check(took.is_some_and(|t| t <= RESUME_LIMIT), || {
            format!(
                "blackhole {}: {what} within {RESUME_LIMIT:?} (took {})",
                k + 1,
                secs_or_never(took)
            )
        });
    }
    figures.note(format!(
        "blackhole {}: {muted} established connection(s) silenced; enqueues succeeded again after {}, jobs ran again after {}; {} new connection(s) since, {} open (silenced ones included)",
        k + 1,
        secs_or_never(enqueues),
        secs_or_never(processing),
        proxy.accepted() - accepted_before,
        proxy.open()
    ));
    Outcome {
        burst,
        enqueues,
        processing,
    }
}

/// `1.23s`, or `never (> 45s)` when the scenario gave up.
fn secs_or_never(took: Option<Duration>) -> String {
    took.map_or_else(
        || format!("never (> {}s)", PATIENCE.as_secs()),
        |d| format!("{:.2}s", d.as_secs_f64()),
    )
}

/// Notes what the producer saw.
fn note_producer(figures: &mut Figures, report: &ProducerReport) {
    figures.note(format!(
        "producer: {} enqueue call(s) ({} jobs) failed, not counted; slowest enqueue {:.2}s; first error: {}",
        report.failed_calls,
        report.failed_jobs,
        report.slowest_call.as_secs_f64(),
        report.first_error.as_deref().unwrap_or("none")
    ));
}

/// Reports the jobs that sat in a landing list for more than a few seconds, and fails the
/// scenario if one sat there longer than [`LANDING_LIMIT`].
fn check_landing(figures: &mut Figures, stays: &[Stay]) {
    let long: Vec<&Stay> = stays.iter().filter(|s| s.seen > LANDING_NOTE).collect();
    let describe = |s: &Stay| {
        format!(
            "job {} {:.1}s in {}{}",
            s.id.map_or_else(|| "?".to_owned(), |id| id.to_string()),
            s.seen.as_secs_f64(),
            s.key,
            if s.ongoing {
                " (still there at the end)"
            } else {
                ""
            }
        )
    };
    figures.note(format!(
        "landing lists: {} job(s) stayed more than {}s{}",
        long.len(),
        LANDING_NOTE.as_secs(),
        long.first()
            .map_or_else(String::new, |s| format!(", longest {}", describe(s)))
    ));
    let stuck: Vec<String> = stays
        .iter()
        .filter(|s| s.seen > LANDING_LIMIT)
        .map(describe)
        .collect();
    figures.check(stuck.is_empty(), || {
        format!(
            "{} job(s) sat in a landing list for more than {LANDING_LIMIT:?}: {}",
            stuck.len(),
            stuck[..stuck.len().min(3)].join("; ")
        )
    });
}

/// Sends SIGTERM to every worker and checks that each exits 0 within [`GRACE`] +
/// [`EXIT_SLACK`] of the signal.
async fn terminate(fleet: &mut Fleet, figures: &mut Figures) {
    let limit = GRACE + EXIT_SLACK;
    let mut pending: HashSet<usize> = HashSet::new();
    for (i, worker) in fleet.workers.iter_mut().enumerate() {
        if worker.exited().is_some() {
            continue;
        }
        match worker.signal("TERM") {
            Ok(()) => {
                pending.insert(i);
            }
            Err(error) => figures.failures.push(error),
        }
    }
    figures.faults += pending.len() as u64;
    let termed = Instant::now();
    let mut exits = Vec::new();
    while !pending.is_empty() && termed.elapsed() < limit {
        for i in pending.clone() {
            let worker = &mut fleet.workers[i];
            if let Some(status) = worker.exited() {
                pending.remove(&i);
                exits.push(format!("{:.2}s", termed.elapsed().as_secs_f64()));
                figures.check(status.success(), || {
                    format!(
                        "worker {} ended with {status} after SIGTERM (log: {})",
                        worker.pid(),
                        worker.log.display()
                    )
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in pending {
        let worker = &mut fleet.workers[i];
        figures.failures.push(format!(
            "worker {} had not exited {limit:?} after SIGTERM (grace {GRACE:?}; log: {})",
            worker.pid(),
            worker.log.display()
        ));
        worker.kill();
        exits.push("never".to_owned());
    }
    figures.note(format!(
        "SIGTERM: the workers exited after {} (grace {GRACE:?})",
        exits.join(", ")
    ));
}
