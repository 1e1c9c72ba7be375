//! A handler's control over its own job, against a real Redis: `RetryAfter` runs it again later
//! without spending an attempt; `.timeout(..)` at enqueue overrides the task's limit; a run that
//! is given up (timed out) tells code that does not await, through `dtask::current()`'s
//! cancellation; the job's enqueue time is known inside it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use dtask::{RetryAfter, Worker};
use dtask_tests::harness::{eventually, start_with_client, wait_dead};

const WAIT: Duration = Duration::from_secs(10);

static BUSY_RUNS: AtomicU32 = AtomicU32::new(0);
static ATTEMPTS_SEEN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Like a remote API that answers 429 twice, then accepts: asks to be run again in 100 ms.
#[dtask::task(queue = "control", retries = 0)]
async fn call_busy_api() -> anyhow::Result<u32> {
    let run = BUSY_RUNS.fetch_add(1, Ordering::SeqCst) + 1;
    let job = dtask::current().expect("inside a job");
    ATTEMPTS_SEEN.lock().unwrap().push(job.attempt());
    if run <= 2 {
        return Err(RetryAfter::new(Duration::from_millis(100)).into());
    }
    Ok(run)
}

/// Always asks to run later (a remote API that never recovers).
#[dtask::task(queue = "control", retries = 0)]
async fn always_busy() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    Err(RetryAfter::new(Duration::from_millis(1)).into())
}

/// Makes a `RetryAfter` in passing, then fails with another error.
#[dtask::task(queue = "control", retries = 0)]
async fn asks_then_fails() -> Result<(), String> {
    let _unused = RetryAfter::new(Duration::from_secs(5));
    Err("the real error".to_owned())
}

/// Sleeps `millis` (the async way).
#[dtask::task(queue = "control", retries = 0)]
async fn slow(millis: u64) {
    tokio::time::sleep(Duration::from_millis(millis)).await;
}

static SAW_CANCEL: Mutex<Option<SystemTime>> = Mutex::new(None);

/// Blocking code that polls its job's cancellation; the task gives up after 200 ms.
#[dtask::task(queue = "control", retries = 0, timeout = "200ms")]
async fn blocking_loop() -> Result<(), String> {
    let job = dtask::current().expect("inside a job");
    let enqueued = job.enqueued_at();
    assert!(enqueued <= SystemTime::now());
    tokio::task::spawn_blocking(move || {
        while !job.is_cancelled() {
            std::thread::sleep(Duration::from_millis(5));
        }
        *SAW_CANCEL.lock().unwrap() = Some(SystemTime::now());
    })
    .await
    .map_err(|e| e.to_string())
}

#[tokio::test]
async fn retry_after_runs_the_job_again_later_without_spending_an_attempt() {
    let (_redis, client, _raw, _prefix) = start_with_client("control-retry-after").await;
    let worker = Worker::new(&client).queues(["control"]).spawn();
    let job = call_busy_api::with()
        .client(&client)
        .enqueue()
        .await
        .unwrap();
    // No retry allowed, yet it ran three times: the two put-offs spent no attempt.
    assert_eq!(job.wait(WAIT).await.unwrap(), 3);
    assert_eq!(*ATTEMPTS_SEEN.lock().unwrap(), [1, 1, 1]);
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn put_offs_are_bounded_and_only_an_error_carrying_one_is_put_off() {
    let (_redis, client, _raw, _prefix) = start_with_client("control-bounded").await;
    let worker = Worker::new(&client).queues(["control"]).spawn();
    // A request made in passing, then another error: an ordinary failed attempt.
    let failed = asks_then_fails::with()
        .client(&client)
        .enqueue()
        .await
        .unwrap();
    let (attempts, error) = wait_dead(&failed, WAIT).await;
    assert_eq!((attempts, error.as_str()), (1, "the real error"));
    // A job that always asks is put off at most MAX_PUT_OFFS times (each at least MIN_DELAY),
    // then its attempt fails: with no retry left, it is dead.
    let started = std::time::Instant::now();
    let busy = always_busy::with().client(&client).enqueue().await.unwrap();
    let (attempts, error) = wait_dead(&busy, Duration::from_secs(30)).await;
    assert_eq!(attempts, 1);
    assert_eq!(error, "asked to run again after 100ms");
    let least = RetryAfter::MIN_DELAY * RetryAfter::MAX_PUT_OFFS;
    assert!(
        started.elapsed() >= least,
        "{:?} < {least:?}",
        started.elapsed()
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_timeout_given_at_enqueue_overrides_the_task_and_cancels_blocking_code() {
    let (_redis, client, _raw, _prefix) = start_with_client("control-timeout").await;
    let worker = Worker::new(&client).queues(["control"]).spawn();
    let short = slow::with()
        .client(&client)
        .timeout(Duration::from_millis(100))
        .enqueue(5_000)
        .await
        .unwrap();
    let (_, error) = wait_dead(&short, WAIT).await;
    assert_eq!(error, "timed out after 100ms");
    // Without the override, the same task runs to its end.
    let plain = slow::with().client(&client).enqueue(50).await.unwrap();
    plain.wait(WAIT).await.unwrap();
    // Code that does not await learns the run was given up, and stops.
    let started = SystemTime::now();
    let looping = blocking_loop::with()
        .client(&client)
        .enqueue()
        .await
        .unwrap();
    let (_, error) = wait_dead(&looping, WAIT).await;
    assert_eq!(error, "timed out after 200ms");
    let saw = eventually(WAIT, "the blocking loop sees its cancellation", || async {
        *SAW_CANCEL.lock().unwrap()
    })
    .await;
    assert!(saw.duration_since(started).unwrap() >= Duration::from_millis(200));
    worker.shutdown().await.unwrap();
}
