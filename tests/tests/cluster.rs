//! The same code on a Redis Cluster: queues in different hash slots (on different nodes), one
//! worker serving them all, every kind of job.

use std::time::Duration;

use dtask::{Client, Worker};
use dtask_tests::harness::{init_logging, start_cluster, unique_prefix, wait_dead};
use dtask_tests::tasks;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn jobs_of_queues_spread_over_a_cluster_run_retry_and_die_as_on_one_server() {
    init_logging();
    let cluster = start_cluster();
    let client = Client::connect_with_prefix(&cluster.url(), &unique_prefix("cluster"))
        .await
        .expect("connect to the cluster");
    // The queues' hash slots fall in more than one of the three nodes' ranges.
    let first_node = cluster.url().split(',').next().unwrap().to_owned();
    let mut raw = redis::Client::open(first_node)
        .unwrap()
        .get_connection()
        .unwrap();
    let mut thirds: Vec<i64> = ["math", "flaky", "doomed", "roundtrip"]
        .iter()
        .map(|q| {
            let slot: i64 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(format!("{{{q}}}"))
                .query(&mut raw)
                .unwrap();
            slot * 3 / 16384
        })
        .collect();
    thirds.dedup();
    assert!(thirds.len() > 1, "the queues must span nodes: {thirds:?}");

    let worker = Worker::new(&client)
        .queues(["math", "flaky", "doomed", "roundtrip"])
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .spawn();

    let key = unique_prefix("cluster-key");
    // Events of a queue, and workflows whose steps live on other nodes than their members.
    let mut events = client.events("math").await.expect("subscribe on a cluster");
    let chain = dtask::chain(tasks::add::call(key.clone(), 20, 1))
        .then(tasks::negate::with_input())
        .client(&client)
        .enqueue()
        .await
        .unwrap();
    assert_eq!(chain.status().await.unwrap(), dtask::JobStatus::Waiting);
    let chord = dtask::group((1..=30).map(|i| tasks::add::call(key.clone(), i, 0)))
        .then(tasks::total::with_input())
        .client(&client)
        .enqueue()
        .await
        .unwrap();
    let added = tasks::add::with()
        .client(&client)
        .enqueue(key.clone(), 2, 3)
        .await
        .unwrap();
    let many = tasks::add::with()
        .client(&client)
        .enqueue_many((0..20).map(|i| (key.clone(), i, 100)))
        .await
        .unwrap();
    let delayed = tasks::add::with()
        .client(&client)
        .delay(Duration::from_millis(200))
        .enqueue(key.clone(), 7, 7)
        .await
        .unwrap();
    let flaky = tasks::flaky::with()
        .client(&client)
        .enqueue(unique_prefix("cluster-flaky"), 2)
        .await
        .unwrap();
    let doomed = tasks::doomed::with()
        .client(&client)
        .enqueue(unique_prefix("cluster-doomed"), "no luck".into())
        .await
        .unwrap();

    assert_eq!(added.wait(WAIT).await.unwrap(), 5);
    assert_eq!(chain.wait(WAIT).await.unwrap(), -21);
    assert_eq!(chord.wait(WAIT).await.unwrap(), (1..=30).sum::<i64>());
    let event = tokio::time::timeout(WAIT, events.next())
        .await
        .expect("an event")
        .expect("the stream goes on")
        .expect("no missed window");
    assert_eq!(event.queue, "math");
    assert!(
        matches!(event.kind, dtask::EventKind::Enqueued { .. }),
        "{event:?}"
    );
    for (i, job) in many.iter().enumerate() {
        assert_eq!(job.wait(WAIT).await.unwrap(), i as i64 + 100);
    }
    assert_eq!(delayed.wait(WAIT).await.unwrap(), 14);
    assert_eq!(
        flaky.wait(WAIT).await.unwrap(),
        3,
        "retried twice, then succeeded"
    );
    let (attempts, error) = wait_dead(&doomed, WAIT).await;
    assert_eq!((attempts, error.as_str()), (3, "no luck"));
    let dead = client.queue("doomed").dead_jobs(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    for queue in ["math", "flaky", "roundtrip"] {
        let stats = client.queue(queue).stats().await.unwrap();
        assert_eq!(
            (stats.pending, stats.retry, stats.dead),
            (0, 0, 0),
            "{queue}"
        );
    }
    worker.shutdown().await.expect("clean shutdown");
}
