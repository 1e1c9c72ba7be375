//! A job that succeeded keeps its outcome whatever stops its worker after the acknowledgement:
//! on one server the script that settles a run also stores its outcome, so no crash, shutdown or
//! full Redis can come between them. (Found by an adversarial review of a version that stored
//! outcomes after the script: a worker stopped in between left a job settled with no outcome,
//! `status` Pending forever.) The window is held open with Redis at `maxmemory` (`noeviction`,
//! the policy the README asks for), where a plain SET is refused.

use std::time::Duration;

use dtask::Worker;
use dtask_tests::harness::{eventually, in_flight, start_with_client, unique_prefix};
use dtask_tests::tasks::{self, gated_answer};

const WAIT: Duration = Duration::from_secs(10);

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
        (tasks::runs(&key) == ["started"]).then_some(())
    })
    .await;
    maxmemory(raw, "1").await;
    tasks::open_gate(&key);
    eventually(WAIT, "the ack script settled the run", || {
        let mut raw = raw.clone();
        let prefix = prefix.to_owned();
        async move { (in_flight(&mut raw, &prefix, "gated-answer").await == 0).then_some(()) }
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
        .queues(["gated-answer"])
        .shutdown_timeout(Duration::from_secs(1))
        .spawn();
    let job = settle_while_full(&client, &mut raw, &prefix).await;
    worker.shutdown().await.unwrap();
    // Redis has room again; a fresh worker serves the queue.
    maxmemory(&mut raw, "0").await;
    let worker = Worker::new(&client).queues(["gated-answer"]).spawn();
    let value = job.wait(WAIT).await;
    let status = job.status().await.unwrap();
    let stats = client.queue("gated-answer").stats().await.unwrap();
    worker.shutdown().await.unwrap();
    assert_eq!(
        value.as_ref().ok(),
        Some(&42),
        "the job succeeded, yet: wait -> {value:?}, status -> {status:?}, \
         pending/retry/dead = {}/{}/{}, in flight = {}",
        stats.pending,
        stats.retry,
        stats.dead,
        in_flight(&mut raw, &prefix, "gated-answer").await
    );
}
