//! A master watched by Redis Sentinel fails under load: a master, a replica and three
//! sentinels, one producer client with the durability option, two workers, all connected with a
//! `redis+sentinel://` URL. What a user must see: the queue resumes by itself soon after the
//! sentinels promote the replica, no live worker runs a job twice, and every enqueue that
//! returned Ok runs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dtask::{Client, Worker};
use dtask_tests::failover::{longest_gap, produce, wait_until_ran};
use dtask_tests::harness::{RedisSentinels, init_logging, unique_prefix};

/// Every run: (job number, when it started).
static RUNS: Mutex<Vec<(u64, Instant)>> = Mutex::new(Vec::new());

/// Job numbers carry their test: test × this + a sequence number.
const PER_TEST: u64 = 1_000_000_000;

/// Records its run, then takes a while, so that jobs are running when the master fails.
#[dtask::task(queue = "sentinel-failover")]
async fn sentinel_job(n: u64) {
    RUNS.lock().unwrap().push((n, Instant::now()));
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// What one failover did.
#[derive(Debug)]
struct Figures {
    enqueued_ok: usize,
    enqueue_errors: usize,
    /// Enqueues that reported too few replicas (queued, not confirmed).
    unconfirmed: usize,
    /// Of those, how many never ran.
    unconfirmed_lost: usize,
    lost: usize,
    duplicated: usize,
    /// Jobs still queued once every enqueued job ran and the workers stopped: each one ran
    /// already and would run again (its acknowledgement went to the old master).
    to_run_again: u64,
    /// The longest time no job started, after the fault.
    stall: Duration,
    /// The longest time between two enqueues that returned (Ok or NotReplicated), after it.
    producer_stall: Duration,
    /// How long after the fault every sentinel named the new master, and it said so itself.
    promoted_after: Duration,
}

/// Runs the load, fails the master with `fail`, measures; returns the set too, so that a test
/// can go on with it.
async fn failover_under_load(
    test: u64,
    label: &str,
    fail: impl FnOnce(&mut RedisSentinels, u16) + Send + 'static,
) -> (Figures, RedisSentinels, Client, String) {
    init_logging();
    let sentinels = RedisSentinels::start().expect("start a master, a replica, 3 sentinels");
    let url = sentinels.url();
    let prefix = unique_prefix(label);
    let producer = Client::builder(&url)
        .prefix(&prefix)
        .replicas(1, Duration::from_secs(1))
        .connect()
        .await
        .expect("connect through the sentinels");
    let mut workers = Vec::new();
    for _ in 0..2 {
        let client = Client::connect_with_prefix(&url, &prefix)
            .await
            .expect("connect");
        workers.push(
            Worker::new(&client)
                .recovery_after(Duration::from_secs(2))
                .concurrency(64)
                .spawn(),
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let producing = {
        let producer = producer.clone();
        produce(test * PER_TEST, stop.clone(), move |n| {
            let producer = producer.clone();
            async move {
                sentinel_job::with()
                    .client(&producer)
                    .enqueue(n)
                    .await
                    .map(|_| ())
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let master = sentinels.master_port().expect("the master");
    let failed_at = Instant::now();
    let sentinels = tokio::task::spawn_blocking(move || {
        let mut sentinels = sentinels;
        fail(&mut sentinels, master);
        let promoted = sentinels.wait_promoted(master, Duration::from_secs(30));
        (sentinels, promoted)
    })
    .await
    .unwrap();
    let (sentinels, promoted) = (sentinels.0, sentinels.1.expect("a replica is promoted"));
    let promoted_after = failed_at.elapsed();
    assert_ne!(promoted, master);
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let produced = producing.await.unwrap();
    let producer_stall = produced.longest_stall(failed_at);
    let enqueue_errors = produced.errors;
    let enqueued: Vec<u64> = produced.ok.iter().map(|(n, _)| *n).collect();
    let unconfirmed: Vec<u64> = produced.unconfirmed.iter().map(|(n, _)| *n).collect();
    // Every returned job runs, or is lost.
    let expected: Vec<u64> = enqueued.iter().chain(&unconfirmed).copied().collect();
    wait_until_ran(&expected, &RUNS).await;
    for worker in workers {
        worker.shutdown().await.expect("clean shutdown");
    }
    let left = producer
        .queue("sentinel-failover")
        .stats()
        .await
        .expect("the queue's figures");
    let to_run_again = left.pending + left.suspects + left.running + left.retry + left.dead;
    let runs: Vec<(u64, Instant)> = RUNS
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, _)| *n / PER_TEST == test)
        .copied()
        .collect();
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for (n, _) in &runs {
        *counts.entry(*n).or_default() += 1;
    }
    let mut starts: Vec<Instant> = runs.iter().map(|(_, at)| *at).collect();
    starts.sort();
    let figures = Figures {
        enqueued_ok: enqueued.len(),
        enqueue_errors,
        unconfirmed: unconfirmed.len(),
        unconfirmed_lost: unconfirmed
            .iter()
            .filter(|n| !counts.contains_key(n))
            .count(),
        lost: enqueued.iter().filter(|n| !counts.contains_key(n)).count(),
        duplicated: counts.values().filter(|c| **c > 1).count(),
        to_run_again,
        stall: longest_gap(starts.into_iter(), failed_at).0,
        producer_stall,
        promoted_after,
    };
    (figures, sentinels, producer, prefix)
}

/// What every failover must keep: no job run twice by live workers, every returned job run,
/// the queue and the producer back within 2 s of the promotion.
fn assert_failover_kept_its_promises(figures: &Figures) {
    assert!(figures.enqueued_ok > 200, "{figures:?}");
    assert_eq!(figures.duplicated, 0, "{figures:?}");
    assert_eq!(figures.to_run_again, 0, "{figures:?}");
    assert_eq!(figures.lost, 0, "{figures:?}");
    assert!(
        figures.stall <= figures.promoted_after + Duration::from_secs(2),
        "{figures:?}"
    );
    assert!(
        figures.producer_stall <= figures.promoted_after + Duration::from_secs(2),
        "{figures:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_replaced_by_its_replica_and_no_job_is_lost() {
    let (figures, mut sentinels, producer, _) =
        failover_under_load(0, "sentinel-kill", |sentinels, master| {
            sentinels.kill(master).expect("kill the master");
        })
        .await;
    eprintln!("Sentinel failover (SIGKILL of the master): {figures:?}");
    assert_failover_kept_its_promises(&figures);
    // The new master has no replica until the old one comes back: durable enqueues say so
    // (NotReplicated), and were queued there all the same.
    assert!(figures.unconfirmed > 0, "{figures:?}");
    assert_eq!(figures.unconfirmed_lost, 0, "{figures:?}");
    // The old master comes back (empty); the sentinels make it the new master's replica, and
    // durable enqueues are confirmed again, with nothing done by hand.
    let old = sentinels
        .server_ports()
        .into_iter()
        .find(|port| Some(*port) != sentinels.master_port().ok())
        .expect("the old master's port");
    tokio::task::block_in_place(|| sentinels.restart(old)).expect("restart the old master");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match sentinel_job::with()
            .client(&producer)
            .enqueue(PER_TEST - 1)
            .await
        {
            Ok(_) => break,
            Err(error) if Instant::now() < deadline => {
                tracing::debug!(%error, "not confirmed yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("durable enqueues not confirmed again after 30 s: {error}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_failed_over_by_the_sentinels_loses_no_job() {
    let (figures, ..) = failover_under_load(1, "sentinel-hand", |sentinels, _| {
        sentinels.failover().expect("SENTINEL FAILOVER");
    })
    .await;
    eprintln!("Sentinel failover (SENTINEL FAILOVER): {figures:?}");
    assert_failover_kept_its_promises(&figures);
    // The old master is demoted while it runs: what it was sent meanwhile is refused (READONLY)
    // or lost with it when it resyncs; an enqueue it took was answered NotReplicated.
    assert_eq!(figures.enqueue_errors, 0, "{figures:?}");
}
