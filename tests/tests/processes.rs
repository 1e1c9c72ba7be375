//! What happens to jobs when worker processes die, are told to stop, or lose Redis: run real
//! worker processes (the `test_worker` binary) and a real redis-server, and count effects.

use std::time::{Duration, Instant};

use dtask::{Client, Worker};
use dtask_tests::harness::{
    RedisServer, WorkerProcess, eventually, init_logging, start_durable_redis, start_redis,
    unique_prefix, wait_dead,
};
use dtask_tests::tasks;

const WORKER: &str = env!("CARGO_BIN_EXE_test_worker");

/// How many times the `mark` task has completed for `job`.
async fn runs_of(client: &redis::aio::MultiplexedConnection, job: &str) -> i64 {
    let mut conn = client.clone();
    redis::cmd("GET")
        .arg(job)
        .query_async::<Option<i64>>(&mut conn)
        .await
        .unwrap()
        .unwrap_or(0)
}

async fn connect(redis: &RedisServer, prefix: &str) -> (Client, redis::aio::MultiplexedConnection) {
    let client = Client::connect_with_prefix(&redis.url(), prefix)
        .await
        .unwrap();
    let raw = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    (client, raw)
}

/// Enqueues a `mark` job of `millis` for `job` and waits until a worker has taken it (it left the
/// queue: it is in flight).
async fn enqueue_until_taken(client: &Client, job: &str, millis: u64) {
    tasks::mark::with()
        .client(client)
        .enqueue(job.to_owned(), millis)
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "a worker took the job", || async {
        (client.queue("marks").stats().await.unwrap().pending == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_job_of_a_killed_worker_runs_to_completion_on_another_worker() {
    init_logging();
    let redis = start_redis();
    let prefix = unique_prefix("sigkill");
    let (client, raw) = connect(&redis, &prefix).await;
    let mut first = WorkerProcess::start(WORKER, &redis.url(), &prefix, "marks", &[]);

    let job = unique_prefix("killed-job");
    enqueue_until_taken(&client, &job, 3_000).await;
    first.kill();
    let killed_at = Instant::now();
    assert_eq!(runs_of(&raw, &job).await, 0, "killed mid-job");

    let _second = WorkerProcess::start(WORKER, &redis.url(), &prefix, "marks", &[]);
    eventually(
        Duration::from_secs(20),
        "the job ran on the second worker",
        || async { (runs_of(&raw, &job).await == 1).then_some(()) },
    )
    .await;
    let recovered_in = killed_at.elapsed();
    // Default recovery bound is 10 s, plus the job's own 3 s.
    assert!(
        recovered_in < Duration::from_secs(13),
        "recovered and ran {recovered_in:?} after the kill"
    );
    let stats = client.queue("marks").stats().await.unwrap();
    assert_eq!((stats.pending, stats.retry, stats.dead), (0, 0, 0));
    assert_eq!(
        runs_of(&raw, &job).await,
        1,
        "ran exactly once to completion"
    );
}

#[tokio::test]
async fn sigterm_lets_the_running_job_finish_keeps_queued_jobs_and_exits_zero() {
    init_logging();
    let redis = start_redis();
    let prefix = unique_prefix("sigterm");
    let (client, raw) = connect(&redis, &prefix).await;
    let mut worker = WorkerProcess::start(
        WORKER,
        &redis.url(),
        &prefix,
        "marks",
        &[("DTASK_CONCURRENCY", "1")],
    );
    let running = unique_prefix("running");
    enqueue_until_taken(&client, &running, 2_000).await;
    let queued: Vec<String> = (0..3).map(|i| format!("{running}-queued-{i}")).collect();
    for job in &queued {
        tasks::mark::with()
            .client(&client)
            .enqueue(job.clone(), 10)
            .await
            .unwrap();
    }
    worker.signal("TERM");
    let code = worker.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "exit code after SIGTERM");
    assert_eq!(
        runs_of(&raw, &running).await,
        1,
        "the in-flight job finished"
    );
    for job in &queued {
        assert_eq!(runs_of(&raw, job).await, 0, "{job} must not have run");
    }
    let stats = client.queue("marks").stats().await.unwrap();
    assert_eq!(stats.pending, 3, "the queued jobs are still queued");
}

#[tokio::test]
async fn a_job_running_past_the_grace_period_is_returned_to_its_queue() {
    init_logging();
    let redis = start_redis();
    let prefix = unique_prefix("grace");
    let (client, raw) = connect(&redis, &prefix).await;
    let mut worker = WorkerProcess::start(
        WORKER,
        &redis.url(),
        &prefix,
        "marks",
        &[("TEST_GRACE_MS", "300")],
    );
    let long = unique_prefix("long");
    enqueue_until_taken(&client, &long, 60_000).await;
    worker.signal("TERM");
    assert_eq!(worker.wait_exit(Duration::from_secs(10)), Some(0));
    assert_eq!(runs_of(&raw, &long).await, 0);
    assert_eq!(
        client.queue("marks").stats().await.unwrap().pending,
        1,
        "the unfinished job is back in its queue"
    );
}

#[tokio::test]
async fn a_worker_waiting_on_an_empty_queue_resumes_after_redis_restarts() {
    init_logging();
    let mut redis = start_redis();
    let prefix = unique_prefix("restart");
    let client = Client::connect_with_prefix(&redis.url(), &prefix)
        .await
        .unwrap();
    let worker = Worker::new(&client).queues(["math"]).spawn();
    let key = unique_prefix("restart-key");
    let job = tasks::add::with()
        .client(&client)
        .enqueue(key.clone(), 1, 1)
        .await
        .unwrap();
    assert_eq!(job.wait(Duration::from_secs(10)).await.unwrap(), 2);

    redis.restart().expect("restart redis-server");

    // The client reconnects by itself; the first command after the restart may still fail.
    let job = eventually(Duration::from_secs(10), "enqueue works again", || async {
        tasks::add::with()
            .client(&client)
            .enqueue(key.clone(), 2, 3)
            .await
            .ok()
    })
    .await;
    assert_eq!(
        job.wait(Duration::from_secs(15)).await.unwrap(),
        5,
        "the worker resumed"
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_job_that_kills_its_worker_is_buried_after_three_deaths_and_good_jobs_still_run() {
    init_logging();
    let redis = start_redis();
    let prefix = unique_prefix("poison");
    let (client, raw) = connect(&redis, &prefix).await;
    // Its arguments hold fields named like the envelope's own: the attempt count in its dead
    // record must not come from them (it once did, from a pattern match on the payload).
    let poison = tasks::abort_process::with()
        .client(&client)
        .enqueue(tasks::LookAlike { n: 7, d: 9 })
        .await
        .unwrap();
    let good = unique_prefix("after-poison");
    tasks::mark::with()
        .client(&client)
        .queue("poison")
        .enqueue(good.clone(), 1)
        .await
        .unwrap();
    let env = [("TEST_RECOVERY_MS", "500"), ("DTASK_CONCURRENCY", "1")];
    let mut worker = WorkerProcess::start(WORKER, &redis.url(), &prefix, "poison", &env);
    let mut deaths = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.queue("poison").stats().await.unwrap().dead == 0 {
        assert!(Instant::now() < deadline, "the poison job was never buried");
        if worker.exited() {
            deaths += 1;
            worker = WorkerProcess::start(WORKER, &redis.url(), &prefix, "poison", &env);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(deaths, 3, "three workers died before the job was buried");
    let dead = client.queue("poison").dead_jobs(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(&dead[0].id, poison.id());
    assert_eq!(dead[0].error, "worker died 3 times while running this job");
    assert_eq!(
        dead[0].attempts, 3,
        "three runs, each ended by a worker death"
    );
    assert_eq!(dead[0].task.as_deref(), Some(tasks::abort_process::NAME));
    let (_, error) = wait_dead(&poison, Duration::from_secs(10)).await;
    assert_eq!(error, "worker died 3 times while running this job");
    eventually(Duration::from_secs(10), "the good job ran", || async {
        (runs_of(&raw, &good).await == 1).then_some(())
    })
    .await;
    assert!(!worker.exited(), "the last worker is alive");
}

#[tokio::test]
async fn a_job_whose_fetch_reply_was_lost_is_reclaimed_and_runs() {
    init_logging();
    let mut redis = start_durable_redis();
    let prefix = unique_prefix("lost-reply");
    let (client, mut raw) = connect(&redis, &prefix).await;
    let worker = Worker::new(&client).queues(["math"]).spawn();
    let workers_key = format!("{prefix}:{{math}}:workers");
    let worker_id: String = eventually(Duration::from_secs(10), "the worker registered", || {
        let mut raw = raw.clone();
        let key = workers_key.clone();
        async move {
            let ids: Vec<String> = redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query_async(&mut raw)
                .await
                .unwrap();
            ids.into_iter().next()
        }
    })
    .await;
    // A fetch that Redis ran but whose reply never reached the worker leaves the job in the
    // worker's in-flight hash, unknown to the worker.
    let envelope = format!(
        r#"{{"v":1,"id":"lost-1","t":"{}","a":["k",40,2],"at":1}}"#,
        tasks::add::NAME
    );
    let _: () = redis::cmd("HSET")
        .arg(format!("{prefix}:{{math}}:active:{worker_id}"))
        .arg("lost-1")
        .arg(&envelope)
        .query_async(&mut raw)
        .await
        .unwrap();
    // Redis fails; the worker's connections break, and it reclaims what it does not hold.
    redis.restart().expect("restart redis-server");
    let job = tasks::add::job("lost-1").with_client(&client);
    // The client reconnects by itself; reads right after the restart may still fail.
    eventually(Duration::from_secs(20), "the lost job ran", || async {
        matches!(job.status().await, Ok(dtask::JobStatus::Succeeded(42))).then_some(())
    })
    .await;
    worker.shutdown().await.unwrap();
}
