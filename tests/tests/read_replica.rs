//! The operator's views read from a replica (`ClientBuilder::read_replica`): watching the
//! queues costs their master nothing and still answers while the master is frozen, and every
//! change (a cancel, a pause) is made, and decided, on the master.

use std::time::Duration;

use dtask::{Cancelled, Client, JobState, Order};
use dtask_tests::harness::{
    RedisSentinels, RedisServer, eventually, init_logging, start_redis, unique_prefix,
};

const WAIT: Duration = Duration::from_secs(15);

/// Never run here: its jobs are watched.
#[dtask::task(queue = "replica-reads")]
async fn watched(n: u64) {
    let _ = n;
}

/// Every command clients had the server at `port` run, but `INFO` (how this test reads it) and
/// `REPLCONF` (its replica's acknowledgements, every second).
fn commands_run(port: u16) -> u64 {
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_connection()
        .unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut conn)
        .unwrap();
    info.lines()
        .filter(|line| {
            line.starts_with("cmdstat_")
                && !line.starts_with("cmdstat_info:")
                && !line.starts_with("cmdstat_replconf:")
        })
        .filter_map(|line| {
            let calls = line.split("calls=").nth(1)?;
            calls.split(',').next()?.parse::<u64>().ok()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_read_from_the_replica_and_changes_go_to_the_master() {
    init_logging();
    let master = start_redis();
    let replica = RedisServer::options()
        .args(&["--replicaof", "127.0.0.1", &master.port().to_string()])
        .start()
        .expect("start a replica");
    let client = Client::builder(&master.url())
        .prefix(&unique_prefix("replica-reads"))
        .read_replica(replica.url())
        .response_timeout(Duration::from_millis(500))
        .connect()
        .await
        .expect("connect");
    let queue = client.queue("replica-reads");
    watched::with()
        .client(&client)
        .enqueue_many(0..10)
        .await
        .expect("enqueue");
    eventually(WAIT, "the replica has the jobs", || async {
        (queue.stats().await.ok()?.pending == 10).then_some(())
    })
    .await;

    // Watching costs the master nothing.
    let before = commands_run(master.port());
    for _ in 0..5 {
        assert_eq!(queue.stats().await.unwrap().pending, 10);
        let jobs = queue
            .jobs(JobState::Pending, Order::OldestFirst, 0, 100)
            .await
            .unwrap();
        assert_eq!(jobs.len(), 10);
        assert!(queue.job(&jobs[3].id).await.unwrap().is_some());
        assert!(
            client
                .queues()
                .await
                .unwrap()
                .contains(&"replica-reads".to_owned())
        );
        queue.throughput().await.unwrap();
        queue.workers().await.unwrap();
        queue.dead_jobs(10).await.unwrap();
    }
    assert_eq!(
        commands_run(master.port()),
        before,
        "a view read from the master"
    );

    // A frozen master: the views still answer, a change does not.
    master.pause().expect("SIGSTOP the master");
    assert_eq!(
        queue.stats().await.expect("stats from the replica").pending,
        10
    );
    assert!(
        queue.pause().await.is_err(),
        "a change reached a frozen master"
    );
    master.resume().expect("SIGCONT the master");

    // A frozen replica: a job enqueued meanwhile is unknown to it, and is cancelled all the
    // same, looked up on the master.
    replica.pause().expect("SIGSTOP the replica");
    let late = watched::with()
        .client(&client)
        .enqueue(99)
        .await
        .expect("enqueue on the master");
    assert_eq!(
        client
            .queue("replica-reads")
            .cancel(late.id())
            .await
            .expect("cancel"),
        Cancelled::Cancelled(JobState::Pending)
    );
    replica.resume().expect("SIGCONT the replica");
    eventually(WAIT, "the replica caught up", || async {
        (queue.stats().await.ok()?.pending == 10).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_sentinels_the_views_read_from_a_replica_they_name() {
    init_logging();
    let sentinels = tokio::task::block_in_place(RedisSentinels::start).expect("start sentinels");
    let client = Client::builder(&sentinels.url())
        .prefix(&unique_prefix("sentinel-reads"))
        .read_replica(sentinels.url())
        .connect()
        .await
        .expect("connect through the sentinels");
    let queue = client.queue("replica-reads");
    watched::with()
        .client(&client)
        .enqueue_many(0..7)
        .await
        .expect("enqueue");
    eventually(WAIT, "the replica has the jobs", || async {
        (queue.stats().await.ok()?.pending == 7).then_some(())
    })
    .await;
    let master = sentinels.master_port().expect("the master");
    let before = commands_run(master);
    for _ in 0..5 {
        assert_eq!(queue.stats().await.unwrap().pending, 7);
    }
    assert_eq!(commands_run(master), before, "a view read from the master");
}
