//! Waiting on jobs without polling, against a real Redis: a wait sleeps until the worker that
//! settles the job publishes its outcome (Redis sees no command from the waiter meanwhile),
//! is woken by a death and by a cancel too, survives its subscription being cut, and a handle
//! made from an id alone still waits (by polling).

use std::time::{Duration, Instant};

use dtask::{Error, Worker};
use dtask_tests::harness::{eventually, kill_subscribers, start_with_client};

const WAIT: Duration = Duration::from_secs(20);

/// Sleeps `millis`, then returns `n` doubled.
#[dtask::task(queue = "waits")]
async fn slow_double(n: u32, millis: u64) -> u32 {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    n * 2
}

/// Fails for good.
#[dtask::task(queue = "waits", retries = 0)]
async fn doomed() -> Result<(), String> {
    Err("out of luck".to_owned())
}

/// How many times Redis ran `command` so far (`INFO commandstats`).
async fn calls(raw: &mut redis::aio::MultiplexedConnection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(raw)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_wait_sleeps_until_the_outcome_is_published() {
    let (_redis, client, mut raw, _prefix) = start_with_client("wait-notified").await;
    let worker = Worker::new(&client).queues(["waits"]).spawn();
    // A first wait sets up the client's subscription.
    let warm = slow_double::with()
        .client(&client)
        .enqueue(1, 0)
        .await
        .unwrap();
    assert_eq!(warm.wait(WAIT).await.unwrap(), 2);
    let job = slow_double::with()
        .client(&client)
        .enqueue(21, 1_500)
        .await
        .unwrap();
    let hgets = calls(&mut raw, "hget").await;
    let started = Instant::now();
    assert_eq!(job.wait(WAIT).await.unwrap(), 42);
    let waited = started.elapsed();
    let read = calls(&mut raw, "hget").await - hgets;
    println!("waited {waited:?}; {read} HGET(s) meanwhile");
    assert!(waited >= Duration::from_millis(1_400), "{waited:?}");
    // One read when the wait began (a polling wait would read about 30 times in 1.5 s); the
    // worker's own HGETs (none on this path) would show too.
    assert!(read <= 2, "{read} reads while waiting");
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn deaths_and_cancels_wake_their_waiters() {
    let (_redis, client, _raw, _prefix) = start_with_client("wait-dead").await;
    let delayed = slow_double::with()
        .client(&client)
        .delay(Duration::from_secs(3600))
        .enqueue(1, 0)
        .await
        .unwrap();
    let waiting = {
        let delayed = delayed.clone();
        tokio::spawn(async move { delayed.wait(WAIT).await })
    };
    let worker = Worker::new(&client).queues(["waits"]).spawn();
    let job = doomed::with().client(&client).enqueue().await.unwrap();
    match job.wait(WAIT).await {
        Err(Error::JobDead { error, .. }) => assert_eq!(error, "out of luck"),
        other => panic!("{other:?}"),
    }
    // The delayed job is cancelled while someone waits on it.
    eventually(WAIT, "the cancel", || async {
        matches!(
            delayed.cancel().await.unwrap(),
            dtask::Cancelled::Cancelled(_)
        )
        .then_some(())
    })
    .await;
    let started = Instant::now();
    match waiting.await.unwrap() {
        Err(Error::JobDead { error, .. }) => assert_eq!(error, dtask::CANCELLED_ERROR),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_wait_whose_subscription_is_cut_still_gets_its_result() {
    let (_redis, client, mut raw, _prefix) = start_with_client("wait-cut").await;
    let job = slow_double::with()
        .client(&client)
        .enqueue(5, 300)
        .await
        .unwrap();
    let waiting = {
        let job = job.clone();
        tokio::spawn(async move { job.wait(WAIT).await })
    };
    // Once the wait has subscribed, its connection is cut; then the job runs.
    eventually(WAIT, "the waiter's subscription", || async {
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut raw.clone())
            .await
            .unwrap();
        (!clients.trim().is_empty()).then_some(())
    })
    .await;
    let killed = kill_subscribers(&mut raw).await;
    assert_eq!(killed, 1);
    let worker = Worker::new(&client).queues(["waits"]).spawn();
    assert_eq!(waiting.await.unwrap().unwrap(), 10);
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_handle_made_from_an_id_waits_by_polling() {
    let (_redis, client, _raw, _prefix) = start_with_client("wait-by-id").await;
    let worker = Worker::new(&client).queues(["waits"]).spawn();
    let job = slow_double::with()
        .client(&client)
        .enqueue(4, 100)
        .await
        .unwrap();
    let by_id = client.job(job.id().clone());
    assert_eq!(by_id.wait(WAIT).await.unwrap(), serde_json::json!(8));
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn waiters_of_jobs_whose_ids_hold_newlines_and_tabs_get_their_own_results() {
    let (_redis, client, _raw, _prefix) = start_with_client("wait-odd-ids").await;
    let ids = ["x\ny", "y", "a\tb", "a"];
    let mut waits = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let job = slow_double::with()
            .client(&client)
            .id(*id)
            .enqueue(n as u32, 50)
            .await
            .unwrap();
        waits.push(tokio::spawn(async move { job.wait(WAIT).await }));
    }
    let worker = Worker::new(&client).queues(["waits"]).spawn();
    for (n, wait) in waits.into_iter().enumerate() {
        assert_eq!(
            wait.await.unwrap().unwrap(),
            n as u32 * 2,
            "job {:?}",
            ids[n]
        );
    }
    worker.shutdown().await.unwrap();
}
