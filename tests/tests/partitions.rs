//! A hot queue split into partitions on a Redis Cluster: `#[task(partitions = ..)]` spreads its
//! jobs over Redis queues on every master, a partition key keeps one key's jobs in order, a
//! worker serving the queue serves every partition, and the operator's views add the
//! partitions up.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use dtask::{Client, EventKind, Worker};
use dtask_tests::harness::{eventually, init_logging, start_cluster, unique_prefix};

const WAIT: Duration = Duration::from_secs(30);

/// Every run: (key, sequence number).
static RUNS: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());

/// Records its run.
#[dtask::task(queue = "hot", partitions = 6)]
async fn hot_job(key: u64, seq: u64) {
    RUNS.lock().unwrap().push((key, seq));
}

/// Always fails, with no retry: its jobs go to their partitions' dead sets.
#[dtask::task(queue = "hot", partitions = 6, retries = 0)]
async fn hot_failure(n: u64) -> Result<(), String> {
    Err(format!("failure {n}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_queue_spreads_over_the_masters_keeps_each_keys_order_and_adds_up() {
    init_logging();
    let cluster = start_cluster();
    let client = Client::connect_with_prefix(&cluster.url(), &unique_prefix("partitions"))
        .await
        .expect("connect to the cluster");
    let queue = client.queue("hot");
    let mut partitions = queue.redis_queues();
    // The partitions, then the queue itself (for producers that know nothing of them).
    assert_eq!(partitions.pop().as_deref(), Some("hot"));
    assert_eq!(partitions.len(), 6, "{partitions:?}");
    // Six partitions over three masters of equal slot ranges: two on each.
    let mut per_master: HashMap<usize, usize> = HashMap::new();
    for partition in &partitions {
        *per_master
            .entry(cluster.master_of(&format!("{{{partition}}}")).unwrap())
            .or_default() += 1;
    }
    assert_eq!(per_master.len(), 3, "{per_master:?}");
    assert!(per_master.values().all(|n| *n == 2), "{per_master:?}");

    let mut events = client.events("hot").await.expect("follow the queue");
    // Round robin: 3,000 jobs in one call, 500 to each partition.
    hot_job::with()
        .client(&client)
        .enqueue_many((0..3000).map(|i| (1_000_000, i)))
        .await
        .expect("enqueue many");
    // By key: 6 keys, 100 jobs each, one call per job, in order.
    for seq in 0..100 {
        for key in 0..6 {
            hot_job::with()
                .client(&client)
                .partition_key(key)
                .enqueue(key, seq)
                .await
                .expect("enqueue by key");
        }
    }
    // A producer that knows nothing of the partitions (another binary, the CLI) puts its jobs
    // in the queue itself: they run and count too.
    let unaware = Client::builder(&cluster.url())
        .prefix(client.prefix())
        .partitions("hot", 1)
        .connect()
        .await
        .expect("connect");
    hot_job::with()
        .client(&unaware)
        .enqueue_many((0..5).map(|i| (2_000_000, i)))
        .await
        .expect("enqueue unaware");
    for n in 0..12 {
        hot_failure::with()
            .client(&client)
            .enqueue(n)
            .await
            .expect("enqueue a failure");
    }
    let stats = queue.stats().await.expect("stats");
    assert_eq!(stats.pending, 3000 + 600 + 5 + 12, "{stats:?}");
    let mut per_partition = Vec::new();
    for partition in &partitions {
        per_partition.push(client.queue(partition).stats().await.unwrap().pending);
    }
    // 3,000 + 12 in turn (502 each), and each key's 100 in one partition.
    assert_eq!(per_partition.iter().sum::<u64>(), 3612);
    assert_eq!(client.queue("hot").redis_queues().len(), 7);
    assert!(per_partition.iter().all(|n| *n >= 502), "{per_partition:?}");
    // The operator sees one queue.
    let queues = client.queues().await.expect("queues");
    assert!(queues.contains(&"hot".to_owned()), "{queues:?}");
    assert!(!queues.iter().any(|q| q.starts_with("hot#")), "{queues:?}");
    // Events of every partition, on one stream.
    let mut seen_in: HashSet<String> = HashSet::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen_in.len() < 6 {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("events of every partition")
            .expect("the stream goes on")
            .expect("no missed window");
        if matches!(event.kind, EventKind::Enqueued { .. }) {
            seen_in.insert(event.queue);
        }
    }
    assert_eq!(seen_in, partitions.iter().cloned().collect());

    // One job at a time, so that start order is run order: each key's jobs in enqueue order.
    let worker = Worker::new(&client).queues(["hot"]).concurrency(1).spawn();
    eventually(WAIT, "every job ran or died", || async {
        let stats = queue.stats().await.ok()?;
        (RUNS.lock().unwrap().len() == 3605 && stats.dead == 12 && stats.pending == 0).then_some(())
    })
    .await;
    worker.shutdown().await.expect("clean shutdown");
    let runs = RUNS.lock().unwrap().clone();
    let distinct: HashSet<(u64, u64)> = runs.iter().copied().collect();
    assert_eq!(runs.len(), 3605, "{} runs", runs.len());
    assert_eq!(distinct.len(), 3605, "every job ran once");
    for key in 0..6 {
        let order: Vec<u64> = runs
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, seq)| *seq)
            .collect();
        assert_eq!(
            order,
            (0..100).collect::<Vec<_>>(),
            "key {key}'s jobs in order"
        );
    }
    // The dead jobs of every partition, listed and revived as one queue's.
    let dead = queue.dead_jobs(100).await.expect("dead jobs");
    assert_eq!(dead.len(), 12);
    assert!(
        dead.iter().all(|job| job.error.contains("failure")),
        "{dead:?}"
    );
    assert_eq!(queue.delete_all_dead().await.expect("delete"), 12);
    assert_eq!(queue.stats().await.unwrap().dead, 0);
}
