//! A job that succeeded keeps its outcome whatever stops its worker after the acknowledgement:
//! on one server the script that settles a run also stores its outcome, so no crash, shutdown or
//! full Redis can come between them. (Found by an adversarial review of a version that stored
//! outcomes after the script: a worker stopped in between left a job settled with no outcome,
//! `status` Pending forever.) The window is held open with Redis at `maxmemory` (`noeviction`,
//! the policy the README asks for), where a plain SET is refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dtask::Worker;
use dtask_tests::harness::{eventually, start_with_client, unique_prefix};

const WAIT: Duration = Duration::from_secs(10);

static STARTED: Mutex<Vec<String>> = Mutex::new(Vec::new());
static GATES: Mutex<Option<HashMap<String, Arc<tokio::sync::Notify>>>> = Mutex::new(None);

fn gate(key: &str) -> Arc<tokio::sync::Notify> {
    GATES
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .entry(key.to_owned())
        .or_default()
        .clone()
}

fn started(key: &str) -> usize {
    STARTED.lock().unwrap().iter().filter(|k| *k == key).count()
}

/// Records that it started for `key`, waits until the test opens its gate, returns 42.
#[dtask::task(queue = "ack-outcomes", retries = 0)]
async fn gated_answer(key: String) -> u32 {
    STARTED.lock().unwrap().push(key.clone());
    gate(&key).notified().await;
    42
}

async fn in_flight(raw: &mut redis::aio::MultiplexedConnection, prefix: &str) -> u64 {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:{{ack-outcomes}}:active:*"))
        .query_async(raw)
        .await
        .unwrap();
    let mut count = 0;
    for key in keys {
        let len: u64 = redis::cmd("HLEN").arg(&key).query_async(raw).await.unwrap();
        count += len;
    }
    count
}

async fn maxmemory(raw: &mut redis::aio::MultiplexedConnection, bytes: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(bytes)
        .query_async(raw)
        .await
        .unwrap();
}

/// Runs `gated_answer` until its acknowledgement's script has settled the run while Redis is
/// full, and returns the job.
async fn settle_while_full(
    client: &dtask::Client,
    raw: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> dtask::JobHandle<u32> {
    let key = unique_prefix("gate");
    let job = gated_answer::with()
        .client(client)
        .enqueue(key.clone())
        .await
        .unwrap();
    eventually(WAIT, "the job started", || async {
        (started(&key) == 1).then_some(())
    })
    .await;
    maxmemory(raw, "1").await;
    gate(&key).notify_one();
    eventually(WAIT, "the ack script settled the run", || {
        let mut raw = raw.clone();
        let prefix = prefix.to_owned();
        async move { (in_flight(&mut raw, &prefix).await == 0).then_some(()) }
    })
    .await;
    job
}

/// The job succeeds while Redis is full, and its worker is shut down a moment later: the
/// outcome was stored with the settle, so a fresh worker (once Redis has room) finds nothing to
/// do and `wait` returns the job's value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_succeeded_keeps_its_outcome_when_its_worker_stops_after_the_ack_script() {
    let (_redis, client, mut raw, prefix) = start_with_client("ack-oom-shutdown").await;
    let worker = Worker::new(&client)
        .queues(["ack-outcomes"])
        .shutdown_timeout(Duration::from_secs(1))
        .spawn();
    let job = settle_while_full(&client, &mut raw, &prefix).await;
    worker.shutdown().await.unwrap();
    // Redis has room again; a fresh worker serves the queue.
    maxmemory(&mut raw, "0").await;
    let worker = Worker::new(&client).queues(["ack-outcomes"]).spawn();
    let value = job.wait(WAIT).await;
    let status = job.status().await.unwrap();
    let stats = client.queue("ack-outcomes").stats().await.unwrap();
    worker.shutdown().await.unwrap();
    assert_eq!(
        value.as_ref().ok(),
        Some(&42),
        "the job succeeded, yet: wait -> {value:?}, status -> {status:?}, \
         pending/retry/dead = {}/{}/{}, in flight = {}",
        stats.pending,
        stats.retry,
        stats.dead,
        in_flight(&mut raw, &prefix).await
    );
}
