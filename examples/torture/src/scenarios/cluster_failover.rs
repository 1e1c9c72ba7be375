//! Scenario 16, cluster failover: a Redis Cluster of 3 masters and 3 replicas; three queues on
//! three masters; a producer enqueueing into all of them with the durability option
//! (`replicas(1, 1s)`); three worker processes. The master of the first queue is SIGKILLed
//! (its replica takes over), and while it fails over, a worker is SIGKILLed too: the worst
//! moment, its in-flight jobs on the failed master's queue can only be recovered once the
//! replica serves. In long mode the killed node is then restarted (it rejoins as a replica) and
//! another master is failed over by hand. No job whose enqueue returned Ok may be lost (nor one
//! answered `NotReplicated`: queued, not confirmed); a job may run twice only if it was in
//! flight on the killed worker. The effects are recorded on the scenario's own redis-server,
//! outside the cluster.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dtask_testkit::redis_cluster::RedisCluster;
use dtask_testkit::redis_server::Persistence;

use super::Ctx;
use crate::report::Figures;
use crate::rig::Rig;
use crate::tasks;
use crate::workers::Fleet;

/// What the producer got back: jobs confirmed (Ok), jobs queued but not confirmed by a
/// replica, enqueues that failed, and the first failure.
#[derive(Default)]
struct Produced {
    ok: Vec<u64>,
    unconfirmed: Vec<u64>,
    failed: u64,
    first_error: Option<String>,
}

/// Runs the scenario.
pub async fn run(ctx: &Ctx, figures: &mut Figures) -> Result<(), String> {
    let node_timeout = ctx.pick(Duration::from_secs(2), Duration::from_secs(5));
    let run_for = ctx.pick(Duration::from_secs(12), Duration::from_secs(40));
    let concurrency = 16;
    let rig = Rig::start(ctx, "16-cluster-failover", Persistence::None).await?;
    let cluster = tokio::task::block_in_place(|| {
        RedisCluster::options()
            .masters(3)
            .replicas(1)
            .node_timeout(node_timeout)
            .start()
    })?;
    let queues = queues_on_three_masters(&cluster)?;
    let queue_refs: Vec<&str> = queues.iter().map(String::as_str).collect();
    let config = rig
        .workers(&queue_refs)
        .redis_url(&cluster.url())
        .concurrency(concurrency);
    let mut fleet = Fleet::start(config, 3)?;
    let producer = dtask::Client::builder(&cluster.url())
        .prefix(&rig.prefix)
        .replicas(1, Duration::from_secs(1))
        .connect()
        .await
        .map_err(|e| format!("connect the producer to the cluster: {e}"))?;

    // One job every 3 ms, round robin over the queues, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let production = {
        let (stop, queues) = (stop.clone(), queues.clone());
        tokio::spawn(async move {
            let mut produced = Produced::default();
            let mut id = 0u64;
            while !stop.load(Ordering::Relaxed) {
                id += 1;
                let queue = queues[(id % 3) as usize].clone();
                match tasks::work::with()
                    .client(&producer)
                    .queue(queue)
                    .enqueue(id, 5)
                    .await
                {
                    Ok(_) => produced.ok.push(id),
                    Err(dtask::Error::NotReplicated { .. }) => produced.unconfirmed.push(id),
                    Err(error) => {
                        produced.failed += 1;
                        produced.first_error.get_or_insert(error.to_string());
                    }
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            produced
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The first queue's master dies; while its replica is not yet promoted, a worker dies too.
    let mut cluster = cluster;
    let master = cluster.master_of(&format!("{{{}}}", queues[0]))?;
    let killed_at = Instant::now();
    cluster.kill(master);
    figures.faults += 1;
    tokio::time::sleep(node_timeout / 2).await;
    fleet.workers[0].kill();
    figures.faults += 1;
    fleet.restart(0)?;
    let taken_over = killed_at.elapsed()
        + tokio::task::block_in_place(|| {
            cluster.wait_taken_over(&format!("{{{}}}", queues[0]), master)
        })?;
    figures.note(format!(
        "master of `{}` SIGKILLed, a worker SIGKILLed {:.1}s later; the replica served after {:.2}s (node timeout {:?})",
        queues[0],
        (node_timeout / 2).as_secs_f64(),
        taken_over.as_secs_f64(),
        node_timeout
    ));
    if ctx.mode == super::Mode::Long {
        tokio::task::block_in_place(|| cluster.restart(master))?;
        let second = cluster.master_of(&format!("{{{}}}", queues[1]))?;
        let replica = cluster.replica_of(second)?;
        tokio::task::block_in_place(|| cluster.failover(replica))?;
        figures.faults += 2;
        figures.note(format!(
            "the killed node restarted (a replica now); the master of `{}` failed over by hand",
            queues[1]
        ));
    }
    let elapsed = killed_at.elapsed();
    tokio::time::sleep(run_for.saturating_sub(elapsed)).await;
    stop.store(true, Ordering::Relaxed);
    let produced = production
        .await
        .map_err(|e| format!("the producer panicked: {e}"))?;

    // Every job confirmed or queued runs: wait until all did, or nothing moved for 15 s.
    let expected: HashSet<u64> = produced
        .ok
        .iter()
        .chain(&produced.unconfirmed)
        .copied()
        .collect();
    let mut conn = rig.conn();
    let deadline = Instant::now() + Duration::from_secs(ctx.pick(60, 120));
    let (mut last, mut moved_at) = (0, Instant::now());
    let done = loop {
        let done = rig
            .fx
            .done(&mut conn)
            .await
            .map_err(|e| format!("read effects: {e}"))?;
        if expected.iter().all(|id| done.contains(id)) {
            break done;
        }
        if done.len() != last {
            (last, moved_at) = (done.len(), Instant::now());
        }
        if Instant::now() > deadline || moved_at.elapsed() > Duration::from_secs(15) {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let runs = rig
        .fx
        .runs(&mut conn)
        .await
        .map_err(|e| format!("read effects: {e}"))?;
    figures.enqueued = expected.len() as u64;
    figures.done = expected.iter().filter(|id| done.contains(id)).count() as u64;
    figures.lost = figures.enqueued - figures.done;
    figures.duplicates = runs.values().map(|n| n.saturating_sub(1)).sum();
    figures.recovery = Some(taken_over);
    let (lost, duplicates) = (figures.lost, figures.duplicates);
    figures.check(lost == 0, || {
        let examples: Vec<u64> = expected
            .iter()
            .filter(|id| !done.contains(id))
            .take(10)
            .copied()
            .collect();
        format!("{} acknowledged job(s) never ran, e.g. {examples:?}", lost)
    });
    // One worker was killed: at most its in-flight jobs (up to twice its concurrency: running,
    // and finished but not yet acknowledged) run again.
    let allowed = 2 * concurrency as u64;
    figures.check(duplicates <= allowed, || {
        format!(
            "{duplicates} duplicate run(s), more than the {allowed} one killed worker can have in flight"
        )
    });
    figures.note(format!(
        "producer: {} confirmed, {} queued but not confirmed (the promoted master had no replica), {} failed (the failed master's queue, before its replica served; first: {})",
        produced.ok.len(),
        produced.unconfirmed.len(),
        produced.failed,
        produced.first_error.as_deref().unwrap_or("none")
    ));
    let complaints = fleet.shutdown(Duration::from_secs(15)).await;
    figures.failures.extend(complaints);
    drop(cluster);
    Ok(())
}

/// Three queue names whose slots are served by three different masters.
fn queues_on_three_masters(cluster: &RedisCluster) -> Result<Vec<String>, String> {
    let mut chosen: Vec<(String, usize)> = Vec::new();
    for i in 0..1000 {
        let queue = format!("failover-{i}");
        let master = cluster.master_of(&format!("{{{queue}}}"))?;
        if chosen.iter().all(|(_, m)| *m != master) {
            chosen.push((queue, master));
        }
        if chosen.len() == 3 {
            return Ok(chosen.into_iter().map(|(queue, _)| queue).collect());
        }
    }
    Err("no three queue names on three masters".to_owned())
}
