//! Cancelling jobs that run, against a real Redis: the worker running it drops the handler's
//! future within 100 ms (told over Redis pub/sub), code that does not await sees it through
//! `dtask::current()`, and the job is settled as cancelled (its waiter stops waiting, nothing in
//! the dead set). A request its worker missed (the subscription was cut) still stops it; a job
//! cancelled while its worker was dead does not run again where it is recovered.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dtask::{CANCELLED_ERROR, Cancelled, Error, JobStatus, Worker};
use dtask_tests::harness::{
    WorkerProcess, eventually, kill_subscribers, start_with_client, unique_prefix,
};
use dtask_tests::tasks;

const WAIT: Duration = Duration::from_secs(20);

/// When the running `forever` jobs' futures were dropped, by key.
static DROPPED: Mutex<Vec<(String, Instant)>> = Mutex::new(Vec::new());
static STARTED: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct NoteDrop(String);

impl Drop for NoteDrop {
    fn drop(&mut self) {
        DROPPED
            .lock()
            .unwrap()
            .push((self.0.clone(), Instant::now()));
    }
}

fn started(key: &str) -> bool {
    STARTED.lock().unwrap().iter().any(|k| k == key)
}

fn dropped_at(key: &str) -> Option<Instant> {
    DROPPED
        .lock()
        .unwrap()
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, at)| *at)
}

/// Awaits for ever, in small steps.
#[dtask::task(queue = "cancel", retries = 3)]
async fn forever(key: String) {
    let _note = NoteDrop(key.clone());
    STARTED.lock().unwrap().push(key);
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

static SAW_CANCEL: AtomicBool = AtomicBool::new(false);
static BLOCKING_STARTED: AtomicU32 = AtomicU32::new(0);

/// Blocking code that polls its job's cancellation.
#[dtask::task(queue = "cancel")]
async fn crunch() {
    let job = dtask::current().expect("inside a job");
    BLOCKING_STARTED.fetch_add(1, Ordering::SeqCst);
    let _ = tokio::task::spawn_blocking(move || {
        while !job.is_cancelled() {
            std::thread::sleep(Duration::from_millis(5));
        }
        SAW_CANCEL.store(true, Ordering::SeqCst);
    })
    .await;
}

static GAVE_UP_STARTED: AtomicU32 = AtomicU32::new(0);

/// Waits for its run to be stopped, then fails (as a handler that notices a cancellation and
/// gives up does), with no retry left.
#[dtask::task(queue = "cancel", retries = 0)]
async fn gives_up() -> Result<(), String> {
    let job = dtask::current().expect("inside a job");
    GAVE_UP_STARTED.fetch_add(1, Ordering::SeqCst);
    job.cancelled().await;
    Err("stopped".to_owned())
}

/// A worker of the `cancel` queue, running a `forever` job: its key and its handle.
async fn running_forever(
    client: &dtask::Client,
) -> (dtask::WorkerHandle, String, dtask::JobHandle<()>) {
    let worker = Worker::new(client).queues(["cancel"]).spawn();
    let key = unique_prefix("forever");
    let job = forever::with()
        .client(client)
        .enqueue(key.clone())
        .await
        .unwrap();
    eventually(WAIT, "the job runs", || async {
        started(&key).then_some(())
    })
    .await;
    (worker, key, job)
}

fn assert_cancelled<T: std::fmt::Debug>(waited: Result<T, Error>) {
    match waited {
        Err(Error::JobDead { error, .. }) => assert_eq!(error, CANCELLED_ERROR),
        other => panic!("expected the job dead as cancelled, got {other:?}"),
    }
}

#[tokio::test]
async fn a_running_job_stops_within_100_ms_and_is_settled_as_cancelled() {
    let (_redis, client, _raw, _prefix) = start_with_client("cancel-running").await;
    let (worker, key, job) = running_forever(&client).await;
    let asked = Instant::now();
    assert_eq!(job.cancel().await.unwrap(), Cancelled::Running);
    let dropped = eventually(WAIT, "the handler's future is dropped", || async {
        dropped_at(&key)
    })
    .await;
    let took = dropped - asked;
    println!("stopped {took:?} after the request");
    assert!(took < Duration::from_millis(100), "{took:?}");
    assert_cancelled(job.wait(WAIT).await);
    assert_eq!(
        job.status().await.unwrap(),
        JobStatus::Cancelled { attempts: 1 }
    );
    let queue = client.queue("cancel");
    eventually(WAIT, "nothing left in flight", || async {
        (queue.stats().await.unwrap().running == 0).then_some(())
    })
    .await;
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.pending, stats.retry, stats.dead), (0, 0, 0));
    // Again, or once it is over: nothing to cancel.
    assert_eq!(job.cancel().await.unwrap(), Cancelled::NotFound);
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_handler_that_fails_because_it_was_cancelled_is_settled_as_cancelled() {
    // Its failure and the stop come in the same poll: the run counts as cancelled (not a
    // failed last attempt in the dead set), every time.
    let (_redis, client, _raw, _prefix) = start_with_client("cancel-gives-up").await;
    let worker = Worker::new(&client).queues(["cancel"]).spawn();
    for round in 1..=5 {
        let job = gives_up::with().client(&client).enqueue().await.unwrap();
        eventually(WAIT, "the job runs", || async {
            (GAVE_UP_STARTED.load(Ordering::SeqCst) == round).then_some(())
        })
        .await;
        assert_eq!(client.cancel(job.id()).await.unwrap(), Cancelled::Running);
        assert_cancelled(job.wait(WAIT).await);
        assert_eq!(
            job.status().await.unwrap(),
            JobStatus::Cancelled { attempts: 1 }
        );
    }
    let stats = client.queue("cancel").stats().await.unwrap();
    assert_eq!((stats.retry, stats.dead), (0, 0));
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn blocking_code_sees_the_cancellation() {
    let (_redis, client, _raw, _prefix) = start_with_client("cancel-blocking").await;
    let worker = Worker::new(&client).queues(["cancel"]).spawn();
    let job = crunch::with().client(&client).enqueue().await.unwrap();
    eventually(WAIT, "the job runs", || async {
        (BLOCKING_STARTED.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    assert_eq!(client.cancel(job.id()).await.unwrap(), Cancelled::Running);
    assert_cancelled(job.wait(WAIT).await);
    eventually(WAIT, "the blocking loop saw it", || async {
        SAW_CANCEL.load(Ordering::SeqCst).then_some(())
    })
    .await;
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_request_sent_while_the_subscription_was_cut_still_stops_the_job() {
    let (_redis, client, mut raw, _prefix) = start_with_client("cancel-cut").await;
    let (worker, key, job) = running_forever(&client).await;
    // Cut every subscriber's connection, then ask at once: the message reaches nobody.
    let killed = kill_subscribers(&mut raw).await;
    assert_eq!(killed, 1, "the worker's subscription");
    assert_eq!(job.cancel().await.unwrap(), Cancelled::Running);
    assert_cancelled(job.wait(WAIT).await);
    assert!(dropped_at(&key).is_some());
    worker.shutdown().await.unwrap();
}

const WORKER: &str = env!("CARGO_BIN_EXE_test_worker");

#[tokio::test]
async fn a_job_cancelled_while_its_worker_was_dead_does_not_run_again() {
    let (redis, client, mut raw, prefix) = start_with_client("cancel-dead").await;
    let lease = [("TEST_RECOVERY_MS", "2000")];
    let mut first = WorkerProcess::start(WORKER, &redis.url(), &prefix, "marks", &lease);
    let mark = unique_prefix("mark");
    let job = tasks::mark::with()
        .client(&client)
        .enqueue(mark.clone(), 2_000)
        .await
        .unwrap();
    let queue = client.queue("marks");
    eventually(WAIT, "the first worker took the job", || async {
        (queue.stats().await.unwrap().running == 1).then_some(())
    })
    .await;
    first.kill();
    // Its worker is dead but not yet taken for dead: the job still reads as running.
    assert_eq!(job.cancel().await.unwrap(), Cancelled::Running);
    let _second = WorkerProcess::start(WORKER, &redis.url(), &prefix, "marks", &lease);
    assert_cancelled(job.wait(WAIT).await);
    let ran: Option<i64> = redis::cmd("GET")
        .arg(&mark)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(ran, None, "the cancelled job never ran to its end");
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.pending, stats.retry, stats.dead), (0, 0, 0));
}
