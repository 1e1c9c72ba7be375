//! The durability option: an enqueue that waits for replicas to have its jobs (`WAIT`), against
//! a real master and replica. What a user must see: Ok while the replica keeps up; while it is
//! away, an error that says how many replicas confirmed, with the jobs queued all the same.

use std::time::{Duration, Instant};

use dtask::{Client, Error};
use dtask_tests::harness::{RedisServer, eventually, init_logging, start_redis, unique_prefix};
use dtask_tests::tasks;

/// A replica of `master`, in sync.
async fn start_replica(master: &RedisServer) -> RedisServer {
    let replica = RedisServer::options()
        .args(&["--replicaof", "127.0.0.1", &master.port().to_string()])
        .start()
        .expect("start a replica");
    let mut raw = redis::Client::open(replica.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    eventually(Duration::from_secs(20), "the replica in sync", || {
        let mut raw = raw.clone();
        async move {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut raw)
                .await
                .ok()?;
            info.contains("master_link_status:up").then_some(())
        }
    })
    .await;
    let _: () = redis::cmd("PING").query_async(&mut raw).await.unwrap();
    replica
}

#[tokio::test]
async fn enqueues_wait_for_their_replicas_and_say_when_too_few_confirmed() {
    init_logging();
    let master = start_redis();
    let replica = start_replica(&master).await;
    let prefix = unique_prefix("durable");
    let client = Client::builder(&master.url())
        .prefix(&prefix)
        .replicas(1, Duration::from_secs(2))
        .connect()
        .await
        .expect("connect");
    let key = unique_prefix("durable-key");

    // The replica keeps up: every kind of enqueue returns Ok, and the replica has the jobs.
    tasks::add::with()
        .client(&client)
        .enqueue(key.clone(), 1, 2)
        .await
        .expect("one job, confirmed");
    tasks::add::with()
        .client(&client)
        .enqueue_many((0..50).map(|i| (key.clone(), i, 0)))
        .await
        .expect("a batch, confirmed");
    tasks::add::with()
        .client(&client)
        .delay(Duration::from_secs(60))
        .enqueue(key.clone(), 3, 4)
        .await
        .expect("a delayed job, confirmed");
    tasks::add::with()
        .client(&client)
        .id(unique_prefix("named"))
        .enqueue(key.clone(), 5, 6)
        .await
        .expect("a named (unique) job, confirmed");
    let pending = pending_on(&replica.url(), &prefix).await;
    assert_eq!(pending, 52, "the replica has every job the master took");

    // The replica freezes: an enqueue waits its timeout, then says so; its job is queued.
    replica.pause().expect("SIGSTOP the replica");
    let started = Instant::now();
    let refused = tasks::add::with()
        .client(&client)
        .replicas(1, Duration::from_millis(300))
        .enqueue(key.clone(), 7, 8)
        .await;
    let waited = started.elapsed();
    match refused {
        Err(Error::NotReplicated {
            queue,
            wanted,
            confirmed,
            timeout,
        }) => {
            assert_eq!(
                (queue.as_str(), wanted, confirmed, timeout),
                ("math", 1, 0, Duration::from_millis(300))
            );
        }
        other => panic!("expected NotReplicated, got {other:?}"),
    }
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "waited {waited:?}"
    );
    let pending = pending_on(&master.url(), &prefix).await;
    assert_eq!(pending, 53, "the job is queued on the master all the same");

    // Many enqueues at once while the replica is away: each is answered within about twice
    // its timeout (none queues behind another's wait), each queued all the same.
    let started = Instant::now();
    let many: Vec<_> = (0..40)
        .map(|i| {
            let (client, key) = (client.clone(), key.clone());
            tokio::spawn(async move {
                let asked = Instant::now();
                let answer = tasks::add::with()
                    .client(&client)
                    .replicas(1, Duration::from_millis(300))
                    .enqueue(key, 100 + i, 0)
                    .await;
                (answer, asked.elapsed())
            })
        })
        .collect();
    for enqueue in many {
        let (answer, took) = enqueue.await.unwrap();
        assert!(
            matches!(answer, Err(Error::NotReplicated { confirmed: 0, .. })),
            "{answer:?}"
        );
        assert!(
            took < Duration::from_millis(1500),
            "one enqueue took {took:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(3));

    // Without the option, an enqueue does not wait for the frozen replica; other commands on
    // the client's shared connection were not held by the waits either.
    let started = Instant::now();
    tasks::add::with()
        .client(&client)
        .replicas(0, Duration::ZERO)
        .enqueue(key.clone(), 9, 9)
        .await
        .expect("no wait asked");
    assert!(started.elapsed() < Duration::from_millis(250));
    let stats = client.queue("math").stats().await.expect("stats");
    assert_eq!(stats.pending, 94);

    // The replica is back: confirmed again.
    replica.resume().expect("SIGCONT the replica");
    tasks::add::with()
        .client(&client)
        .enqueue(key, 10, 10)
        .await
        .expect("confirmed once the replica is back");
}

/// How many jobs of queue `math` under `prefix` the Redis at `url` holds ready.
async fn pending_on(url: &str, prefix: &str) -> u64 {
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("LLEN")
        .arg(format!("{prefix}:{{math}}:pending"))
        .query_async(&mut conn)
        .await
        .unwrap()
}
