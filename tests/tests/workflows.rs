//! Typed workflows against a real Redis: a chain hands each result to the next step (one
//! argument or several), a group's results come back in member order, a chord's callback runs
//! exactly once with every result even when two workers end members at the same time, a
//! member or step that dies fails what follows (or is left out, with `skip_failed`), and a
//! worker process killed mid-workflow loses nothing.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use dtask::{Error, JobStatus, Worker};
use dtask_tests::harness::{WorkerProcess, start_with_client, unique_prefix};
use dtask_tests::tasks;

const WAIT: Duration = Duration::from_secs(30);

/// How many times each key's callback ran, in this process.
static CALLBACKS: LazyLock<Mutex<HashMap<String, Vec<Vec<u32>>>>> = LazyLock::new(Mutex::default);

#[dtask::task(queue = "flow")]
async fn plus_one(n: u32) -> u32 {
    n + 1
}

#[dtask::task(queue = "flow-2")]
async fn double(n: u32) -> u64 {
    u64::from(n) * 2
}

#[dtask::task(queue = "flow")]
async fn describe(n: u64) -> (u64, String) {
    (n, format!("n={n}"))
}

/// Takes two arguments: the tuple the step before returns.
#[dtask::task(queue = "flow")]
async fn shout(n: u64, text: String) -> String {
    format!("{} ({n})", text.to_uppercase())
}

/// A member: sleeps a little (members end in any order), returns `n`.
#[dtask::task(queue = "flow")]
async fn part(key: String, n: u32, millis: u64) -> Part {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    Part { key, n }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, dtask::TaskOutput)]
struct Part {
    key: String,
    n: u32,
}

/// Dies at once.
#[dtask::task(queue = "flow", retries = 0)]
async fn broken(key: String) -> Result<Part, String> {
    Err(format!("{key} is broken"))
}

/// Takes a part apart.
#[dtask::task(queue = "flow")]
async fn unpack(part: Part) -> u32 {
    part.n
}

/// A chord's callback: records the numbers it was given, under their key.
#[dtask::task(queue = "flow-2")]
async fn collect(parts: Vec<Part>) -> u32 {
    let key = parts.first().map(|p| p.key.clone()).unwrap_or_default();
    let numbers: Vec<u32> = parts.iter().map(|p| p.n).collect();
    let sum = numbers.iter().sum();
    CALLBACKS
        .lock()
        .unwrap()
        .entry(key)
        .or_default()
        .push(numbers);
    sum
}

/// Five members under `key`, numbered 0 to 4; the third dies.
fn five_members_the_third_broken(key: &str) -> Vec<dtask::Call<Part>> {
    (0..5u32)
        .map(|n| {
            if n == 2 {
                broken::call(key.to_owned())
            } else {
                part::call(key.to_owned(), n, 0)
            }
        })
        .collect()
}

fn callbacks(key: &str) -> Vec<Vec<u32>> {
    CALLBACKS
        .lock()
        .unwrap()
        .get(key)
        .cloned()
        .unwrap_or_default()
}

fn worker(client: &dtask::Client) -> dtask::WorkerHandle {
    Worker::new(client)
        .queues(["flow", "flow-2"])
        .concurrency(32)
        .spawn()
}

#[tokio::test]
async fn a_chain_hands_each_result_to_the_next_step() {
    let (_redis, client, _raw, _prefix) = start_with_client("flow-chain").await;
    let job = dtask::chain(plus_one::call(20))
        .then(double::with_input())
        .then(describe::with_input())
        .then(shout::with_input())
        .client(&client)
        .enqueue()
        .await
        .unwrap();
    // The last step waits for the others, before any worker runs.
    assert_eq!(job.status().await.unwrap(), JobStatus::Waiting);
    let worker = worker(&client);
    assert_eq!(job.wait(WAIT).await.unwrap(), "N=42 (42)");
    assert_eq!(
        job.status().await.unwrap(),
        JobStatus::Succeeded("N=42 (42)".to_owned())
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_group_returns_every_result_in_member_order() {
    let (_redis, client, _raw, _prefix) = start_with_client("flow-group").await;
    let worker = worker(&client);
    let key = unique_prefix("group");
    let results =
        dtask::group((0..20u32).map(|n| part::call(key.clone(), n, u64::from(20 - n) * 5)))
            .client(&client)
            .enqueue()
            .await
            .unwrap()
            .wait(WAIT)
            .await
            .unwrap();
    let numbers: Vec<u32> = results.iter().map(|p| p.n).collect();
    assert_eq!(numbers, (0..20).collect::<Vec<_>>());
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_chords_callback_runs_once_with_every_result_whichever_workers_end_the_members() {
    let (_redis, client, _raw, _prefix) = start_with_client("flow-chord").await;
    // Two workers end members side by side.
    let workers = [worker(&client), worker(&client)];
    let key = unique_prefix("chord");
    let members = 300u32;
    let callback = dtask::group((0..members).map(|n| part::call(key.clone(), n, u64::from(n % 3))))
        .then(collect::with_input())
        .client(&client)
        .enqueue()
        .await
        .unwrap();
    assert_eq!(
        callback.wait(WAIT).await.unwrap(),
        (0..members).sum::<u32>()
    );
    let runs = callbacks(&key);
    assert_eq!(runs.len(), 1, "the callback ran once");
    assert_eq!(
        runs[0],
        (0..members).collect::<Vec<_>>(),
        "every result, in member order"
    );
    for worker in workers {
        worker.shutdown().await.unwrap();
    }
    assert_eq!(callbacks(&key).len(), 1, "and never again");
}

#[tokio::test]
async fn a_member_that_dies_fails_the_chord_unless_failed_members_are_skipped() {
    let (_redis, client, _raw, _prefix) = start_with_client("flow-fail").await;
    let worker = worker(&client);
    let failing = unique_prefix("fails");
    let callback = dtask::group(five_members_the_third_broken(&failing))
        .then(collect::with_input())
        .client(&client)
        .enqueue()
        .await
        .unwrap();
    match callback.wait(WAIT).await {
        Err(Error::JobDead {
            error, attempts, ..
        }) => {
            assert_eq!(attempts, 0);
            assert!(
                error.contains("member 2") && error.contains("is broken"),
                "{error}"
            );
        }
        other => panic!("expected the callback dead, got {other:?}"),
    }
    let skipping = unique_prefix("skips");
    let callback = dtask::group(five_members_the_third_broken(&skipping))
        .skip_failed()
        .then(collect::with_input())
        .client(&client)
        .enqueue()
        .await
        .unwrap();
    assert_eq!(callback.wait(WAIT).await.unwrap(), 1 + 3 + 4);
    assert_eq!(callbacks(&skipping), [vec![0, 1, 3, 4]]);
    assert!(
        callbacks(&failing).is_empty(),
        "a failed chord's callback never runs"
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_step_that_dies_fails_the_steps_after_it() {
    let (_redis, client, _raw, _prefix) = start_with_client("flow-chain-fail").await;
    let worker = worker(&client);
    let key = unique_prefix("chain-fail");
    let job = dtask::chain(broken::call(key.clone()))
        .then(unpack::with_input())
        .client(&client)
        .enqueue()
        .await
        .unwrap();
    match job.wait(WAIT).await {
        Err(Error::JobDead { error, .. }) => {
            assert!(
                error.contains("earlier step") && error.contains("is broken"),
                "{error}"
            );
        }
        other => panic!("expected the last step dead, got {other:?}"),
    }
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn cancelling_a_queued_step_fails_the_steps_after_it_and_an_empty_chord_is_refused() {
    let (_redis, client, _raw, _prefix) = start_with_client("flow-cancel").await;
    let job = dtask::chain(plus_one::call(1))
        .then(double::with_input())
        .client(&client)
        .enqueue()
        .await
        .unwrap();
    // No worker yet: the first step waits in its queue; cancel it by the id of the chain's
    // first job (the only one queued).
    let queue = client.queue("flow");
    let first = queue
        .jobs(dtask::JobState::Pending, dtask::Order::OldestFirst, 0, 10)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(
        queue.cancel(&first[0].id).await.unwrap(),
        dtask::Cancelled::Cancelled(dtask::JobState::Pending)
    );
    let worker = worker(&client);
    match job.wait(WAIT).await {
        Err(Error::JobDead { error, .. }) => {
            assert!(
                error.contains("earlier step") && error.contains("cancelled"),
                "{error}"
            )
        }
        other => panic!("expected the second step dead, got {other:?}"),
    }
    let empty: Vec<dtask::Call<Part>> = Vec::new();
    let refused = dtask::group(empty)
        .then(collect::with_input())
        .client(&client)
        .enqueue()
        .await;
    assert!(matches!(refused, Err(Error::Config(_))), "{refused:?}");
    worker.shutdown().await.unwrap();
}

const WORKER: &str = env!("CARGO_BIN_EXE_test_worker");

#[tokio::test]
async fn a_worker_killed_mid_chord_loses_no_member_and_the_callback_runs_once() {
    let (redis, client, mut raw, prefix) = start_with_client("flow-kill").await;
    let lease = [("TEST_RECOVERY_MS", "1000")];
    let mut first = WorkerProcess::start(WORKER, &redis.url(), &prefix, "marks", &lease);
    let key = unique_prefix("killed");
    let members = 40u32;
    let callback = dtask::group((0..members).map(|n| tasks::mark_part::call(key.clone(), n, 300)))
        .then(tasks::count_parts::with_input())
        .client(&client)
        .enqueue()
        .await
        .unwrap();
    // Kill the worker while members run (its in-flight ones are recovered by the next).
    let started: i64 = dtask_tests::harness::eventually(WAIT, "members run", || async {
        let ran: Option<i64> = redis::cmd("GET")
            .arg(format!("{key}:runs"))
            .query_async(&mut raw.clone())
            .await
            .unwrap();
        ran.filter(|ran| *ran >= 5)
    })
    .await;
    first.kill();
    println!("killed the worker after {started} member runs");
    let _second = WorkerProcess::start(WORKER, &redis.url(), &prefix, "marks", &lease);
    assert_eq!(callback.wait(WAIT).await.unwrap(), members);
    let callbacks: i64 = redis::cmd("GET")
        .arg(format!("{key}:callbacks"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(callbacks, 1, "the callback ran once");
}
