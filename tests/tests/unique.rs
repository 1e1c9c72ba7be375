//! Unique jobs against a real Redis: a job named by its caller is queued once while it exists;
//! at most one job of a task with the same arguments within a window; a lock held until the
//! job ends (succeeds, dies, is cancelled) or until it starts; a lock that outlives a worker
//! SIGKILLed while running the job, until the job's recovered run ends; a lock that lapses
//! when nothing releases it.

use std::time::Duration;

use dtask::{UniqueUntil, Worker};
use dtask_tests::harness::{WorkerProcess, eventually, start_with_client, wait_dead};
use dtask_tests::tasks;

const WORKER: &str = env!("CARGO_BIN_EXE_test_worker");
const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_job_named_by_its_caller_is_queued_once_while_it_exists() {
    let (_redis, client, _raw, _prefix) = start_with_client("unique-id").await;
    let first = tasks::add::with()
        .client(&client)
        .id("invoice-42")
        .enqueue("unique-id".into(), 40, 2)
        .await
        .unwrap();
    assert!(!first.is_duplicate());
    assert_eq!(first.id().as_str(), "invoice-42");
    // Again, with other arguments even: the first job's handle, nothing queued.
    let again = tasks::add::with()
        .client(&client)
        .id("invoice-42")
        .enqueue("unique-id".into(), 1, 1)
        .await
        .unwrap();
    assert!(again.is_duplicate());
    assert_eq!(again.id().as_str(), "invoice-42");
    assert_eq!(client.queue("math").stats().await.unwrap().pending, 1);
    // It runs once. Its name stays its own while its outcome can be read (the longer of the
    // task's and the worker's result TTL, 2 s here): the same handle.
    let worker = Worker::new(&client)
        .queues(["math"])
        .result_ttl(Duration::from_secs(2))
        .spawn();
    assert_eq!(again.wait(WAIT).await.unwrap(), 42);
    let after_end = tasks::add::with()
        .client(&client)
        .id("invoice-42")
        .enqueue("unique-id".into(), 1, 1)
        .await
        .unwrap();
    assert!(after_end.is_duplicate());
    assert_eq!(after_end.wait(WAIT).await.unwrap(), 42);
    // Once its outcome expired (2 s), the name is free, and a new job takes it.
    let short = tasks::short_lived::with()
        .client(&client)
        .id("report-7")
        .enqueue(7)
        .await
        .unwrap();
    assert_eq!(short.wait(WAIT).await.unwrap(), 7);
    let renewed = eventually(
        WAIT,
        "the name to be free once the result expired",
        || async {
            let job = tasks::short_lived::with()
                .client(&client)
                .id("report-7")
                .enqueue(8)
                .await
                .unwrap();
            (!job.is_duplicate()).then_some(job)
        },
    )
    .await;
    assert_eq!(renewed.wait(WAIT).await.unwrap(), 8);
    // `.id(..)` names one job: not a batch.
    let error = tasks::add::with()
        .client(&client)
        .id("batch")
        .enqueue_many([("a".into(), 1, 1), ("b".into(), 2, 2)])
        .await
        .unwrap_err();
    assert!(error.to_string().contains("names one job"), "{error}");
    let error = tasks::add::with()
        .client(&client)
        .id("started")
        .unique_until(UniqueUntil::Start)
        .enqueue("x".into(), 1, 1)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("keeps its name until it ends"),
        "{error}"
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn one_job_per_task_and_arguments_within_the_window_and_the_lock_lapses_alone() {
    let (_redis, client, _raw, _prefix) = start_with_client("unique-args").await;
    let enqueue = |key: &'static str, a: i64, window: Duration| {
        let client = client.clone();
        async move {
            tasks::add::with()
                .client(&client)
                .unique_for(window)
                .enqueue(key.into(), a, 0)
                .await
                .unwrap()
        }
    };
    let first = enqueue("unique-args", 1, Duration::from_millis(400)).await;
    let duplicate = enqueue("unique-args", 1, Duration::from_millis(400)).await;
    let other = enqueue("unique-args", 2, Duration::from_millis(400)).await;
    assert!(!first.is_duplicate() && !other.is_duplicate());
    assert!(duplicate.is_duplicate());
    assert_eq!(duplicate.id(), first.id());
    assert_eq!(client.queue("math").stats().await.unwrap().pending, 2);
    // No worker ran it: the lock lapses after its window, and the same job may queue again.
    let after = eventually(WAIT, "the lock to lapse", || async {
        let job = enqueue("unique-args", 1, Duration::from_millis(400)).await;
        (!job.is_duplicate()).then_some(job)
    })
    .await;
    assert_ne!(after.id(), first.id());
}

#[tokio::test]
async fn a_lock_goes_when_the_job_dies_is_cancelled_or_starts_if_so_asked() {
    let (_redis, client, _raw, _prefix) = start_with_client("unique-ends").await;
    let window = Duration::from_secs(600);
    // Dies: the lock goes with it.
    let worker = Worker::new(&client).queues(["doomed"]).spawn();
    let doomed = tasks::doomed::with()
        .client(&client)
        .retries(0)
        .unique_for(window)
        .enqueue("unique-dead".into(), "no".into())
        .await
        .unwrap();
    wait_dead(&doomed, WAIT).await;
    let again = tasks::doomed::with()
        .client(&client)
        .retries(0)
        .unique_for(window)
        .enqueue("unique-dead".into(), "no".into())
        .await
        .unwrap();
    assert!(!again.is_duplicate(), "a dead job holds no lock");
    wait_dead(&again, WAIT).await;
    worker.shutdown().await.unwrap();
    // Cancelled while it waits: the lock goes too.
    let waiting = tasks::nap::with()
        .client(&client)
        .unique_for(window)
        .enqueue("unique-cancel".into(), 1)
        .await
        .unwrap();
    client.queue("naps").cancel(waiting.id()).await.unwrap();
    let fresh = tasks::nap::with()
        .client(&client)
        .unique_for(window)
        .enqueue("unique-cancel".into(), 1)
        .await
        .unwrap();
    assert!(!fresh.is_duplicate(), "a cancelled job holds no lock");
    // Unique until it starts: while it runs, a job like it may queue; until it ends: not.
    let worker = Worker::new(&client).queues(["gated-answer"]).spawn();
    for (until, key, queued_while_running) in [
        (UniqueUntil::Start, "unique-start", true),
        (UniqueUntil::Finish, "unique-finish", false),
    ] {
        let running = tasks::gated_answer::with()
            .client(&client)
            .unique_for(window)
            .unique_until(until)
            .enqueue(key.into())
            .await
            .unwrap();
        eventually(WAIT, "the gated job runs", || async {
            (!tasks::runs(key).is_empty()).then_some(())
        })
        .await;
        let second = tasks::gated_answer::with()
            .client(&client)
            .unique_for(window)
            .unique_until(until)
            .enqueue(key.into())
            .await
            .unwrap();
        assert_eq!(!second.is_duplicate(), queued_while_running, "{until:?}");
        tasks::open_gate(key);
        assert_eq!(running.wait(WAIT).await.unwrap(), 42);
        if !second.is_duplicate() {
            tasks::open_gate(key);
            assert_eq!(second.wait(WAIT).await.unwrap(), 42);
        }
    }
    worker.shutdown().await.unwrap();
    // Mistakes are refused.
    let error = tasks::add::with()
        .client(&client)
        .unique_until(UniqueUntil::Start)
        .enqueue("x".into(), 1, 1)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("needs `unique_for` or `id`"),
        "{error}"
    );
}

#[tokio::test]
async fn a_lock_outlives_a_worker_killed_while_running_the_job_until_its_recovered_run_ends() {
    let (redis, client, mut raw, prefix) = start_with_client("unique-kill").await;
    let enqueue = || {
        tasks::mark::with()
            .client(&client)
            .unique_for(Duration::from_secs(600))
            .enqueue("unique-kill-runs".into(), 1_500)
    };
    let env = [("TEST_RECOVERY_MS", "500")];
    let mut first = WorkerProcess::start(WORKER, &redis.url(), &prefix, "marks", &env);
    let job = enqueue().await.unwrap();
    assert!(!job.is_duplicate());
    eventually(WAIT, "the job in flight on the first worker", || async {
        (client.queue("marks").stats().await.unwrap().running == 1).then_some(())
    })
    .await;
    first.kill(); // SIGKILL while it holds the job and its lock
    assert!(
        enqueue().await.unwrap().is_duplicate(),
        "the lock survives its worker"
    );
    let _second = WorkerProcess::start(WORKER, &redis.url(), &prefix, "marks", &env);
    // Recovered and run again by the second worker; a duplicate is refused all along.
    job.wait(Duration::from_secs(20)).await.unwrap();
    let runs: i64 = redis::cmd("GET")
        .arg("unique-kill-runs")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(
        runs, 1,
        "the killed run never recorded; the recovered one did"
    );
    // Released by the worker just after the run's outcome is written (a wait may wake a
    // moment before).
    let after = eventually(WAIT, "released when the recovered run ended", || async {
        let after = enqueue().await.unwrap();
        (!after.is_duplicate()).then_some(after)
    })
    .await;
    after.wait(Duration::from_secs(20)).await.unwrap();
}

#[tokio::test]
async fn a_dead_unique_job_run_again_takes_its_lock_back_or_stays_dead_if_another_holds_it() {
    let (_redis, client, _raw, _prefix) = start_with_client("unique-revive").await;
    let window = Duration::from_secs(600);
    let enqueue = || {
        tasks::doomed::with()
            .client(&client)
            .retries(0)
            .unique_for(window)
            .enqueue("unique-revive".into(), "no".into())
    };
    let worker = Worker::new(&client).queues(["doomed"]).spawn();
    let dead = enqueue().await.unwrap();
    wait_dead(&dead, WAIT).await;
    worker.shutdown().await.unwrap();
    // A new job with the same arguments holds the lock now: the dead one stays dead.
    let newer = enqueue().await.unwrap();
    assert!(!newer.is_duplicate());
    let queue = client.queue("doomed");
    assert_eq!(queue.retry_all_dead().await.unwrap(), 0);
    assert_eq!(queue.stats().await.unwrap().dead, 1);
    // Once that one is gone (cancelled), the dead job runs again, holding the lock: a
    // duplicate enqueued meanwhile is refused in its favour.
    queue.cancel(newer.id()).await.unwrap();
    assert_eq!(queue.retry_all_dead().await.unwrap(), 1);
    let duplicate = enqueue().await.unwrap();
    assert!(duplicate.is_duplicate());
    assert_eq!(duplicate.id(), dead.id());
}
