//! End-to-end behaviour of jobs in one process: enqueue through the generated API, run on a
//! worker, and observe what a user would see (results, retries, the dead set, order, delays).

use std::time::{Duration, Instant};

use dtask::{Client, JobStatus, Worker};
use dtask_tests::harness::{
    RedisServer, eventually, init_logging, start_redis, unique_prefix, wait_dead,
};
use dtask_tests::tasks::{self, Signup};

const WAIT: Duration = Duration::from_secs(10);

async fn setup(label: &str) -> (RedisServer, Client) {
    init_logging();
    let redis = start_redis();
    let client = Client::connect_with_prefix(&redis.url(), &unique_prefix(label))
        .await
        .expect("connect");
    (redis, client)
}

fn worker(client: &Client, queues: &[&str]) -> Worker {
    Worker::new(client)
        .queues(queues.iter().copied())
        .concurrency(4)
        .retry_backoff(Duration::from_millis(20), Duration::from_millis(100))
        .shutdown_timeout(Duration::from_secs(5))
}

#[tokio::test]
async fn arguments_and_results_round_trip_intact() {
    let (_redis, client) = setup("roundtrip").await;
    let worker = worker(&client, &["roundtrip"]).spawn();
    let signup = Signup {
        user_id: u64::MAX,
        email: "zoë@例え.jp 🚀".into(),
        tags: vec!["a\"quoted\"".into(), "new\nline".into(), String::new()],
    };
    let note = "ünïcödé ✓ ".repeat(1000);
    let blob: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let job = tasks::echo::with()
        .client(&client)
        .enqueue(signup.clone(), note.clone(), blob.clone())
        .await
        .expect("enqueue");
    let (signup_back, note_back, blob_back) = job.wait(WAIT).await.expect("result");
    assert_eq!(signup_back, signup);
    assert_eq!(note_back, note);
    assert_eq!(blob_back, blob);

    // A handle rebuilt from the id alone reads the same result.
    let again = tasks::echo::job(job.id().clone()).with_client(&client);
    assert!(
        matches!(again.status().await.unwrap(), JobStatus::Succeeded((s, _, _)) if s == signup)
    );
    worker.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_task_without_arguments_runs_and_can_be_awaited() {
    let (_redis, client) = setup("unit").await;
    let worker = worker(&client, &["math"]).spawn();
    let job = tasks::ping::with().client(&client).enqueue().await.unwrap();
    job.wait(WAIT).await.expect("ping ran");
    assert_eq!(tasks::ping::NAME, "tests.ping");
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn enqueue_many_runs_every_job_once() {
    let (_redis, client) = setup("many").await;
    let key = unique_prefix("many-key");
    let items: Vec<(String, i64, i64)> = (0..50).map(|i| (key.clone(), i, 1000)).collect();
    let jobs = tasks::add::with()
        .client(&client)
        .enqueue_many(items)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 50);
    assert_eq!(client.queue("math").stats().await.unwrap().pending, 50);

    let worker = worker(&client, &["math"]).spawn();
    for (i, job) in jobs.iter().enumerate() {
        assert_eq!(job.wait(WAIT).await.unwrap(), i as i64 + 1000);
    }
    let mut ran = tasks::runs(&key);
    ran.sort();
    let mut expected: Vec<String> = (0..50).map(|i| format!("{i}+1000")).collect();
    expected.sort();
    assert_eq!(ran, expected, "each job ran exactly once");
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failing_job_is_retried_until_it_succeeds_and_attempts_are_counted() {
    let (_redis, client) = setup("flaky").await;
    let worker = worker(&client, &["flaky"]).spawn();
    let key = unique_prefix("flaky-key");
    let job = tasks::flaky::with()
        .client(&client)
        .enqueue(key, 2)
        .await
        .unwrap();
    assert_eq!(
        job.wait(WAIT).await.unwrap(),
        3,
        "succeeded on the third attempt"
    );
    let stats = client.queue("flaky").stats().await.unwrap();
    assert_eq!((stats.pending, stats.retry, stats.dead), (0, 0, 0));
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_result_under_another_name_retries_and_dies_like_a_result() {
    let (_redis, client) = setup("alias").await;
    let worker = worker(&client, &["doomed"]).spawn();
    let key = unique_prefix("alias-key");
    let job = tasks::doomed_by_alias::with()
        .client(&client)
        .enqueue(key.clone(), "aliased failure".into())
        .await
        .unwrap();
    let (attempts, error) = wait_dead(&job, WAIT).await;
    assert_eq!((attempts, error.as_str()), (3, "aliased failure"));
    assert_eq!(tasks::attempts(&key), 3, "1 run + 2 retries");
    let retried = tasks::boxed_error::with()
        .client(&client)
        .enqueue(unique_prefix("boxed-key"))
        .await
        .unwrap();
    assert_eq!(
        retried.wait(WAIT).await.unwrap(),
        2,
        "failed once, then succeeded"
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn numbers_json_cannot_carry_are_refused_at_enqueue_and_fail_the_attempt_as_results() {
    let (_redis, client) = setup("nan").await;
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let error = tasks::ratio::with()
            .client(&client)
            .enqueue(bad, 1.0)
            .await
            .expect_err("a non-finite argument must be refused");
        assert!(
            matches!(&error, dtask::Error::SerializeArgs { .. })
                && error.to_string().contains("cannot travel in JSON"),
            "{error}"
        );
    }
    let stats = client.queue("math").stats().await.unwrap();
    assert_eq!(stats.pending, 0, "nothing was enqueued");
    let worker = worker(&client, &["math"]).spawn();
    let fine = tasks::ratio::with()
        .client(&client)
        .enqueue(3.0, 2.0)
        .await
        .unwrap();
    assert_eq!(fine.wait(WAIT).await.unwrap(), 1.5);
    let nan = tasks::ratio::with()
        .client(&client)
        .enqueue(0.0, 0.0)
        .await
        .unwrap();
    let (attempts, error) = wait_dead(&nan, WAIT).await;
    assert_eq!(attempts, 1);
    assert!(error.contains("result could not be serialized"), "{error}");
    assert!(error.contains("cannot travel in JSON"), "{error}");
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_job_out_of_retries_is_dead_with_its_last_error() {
    let (_redis, client) = setup("doomed").await;
    let worker = worker(&client, &["doomed"]).spawn();
    let key = unique_prefix("doomed-key");
    let job = tasks::doomed::with()
        .client(&client)
        .enqueue(key, "smtp said no".into())
        .await
        .unwrap();
    let (attempts, error) = wait_dead(&job, WAIT).await;
    assert_eq!(attempts, 3, "1 run + 2 retries");
    assert_eq!(error, "smtp said no");
    let dead = client.queue("doomed").dead_jobs(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(&dead[0].id, job.id());
    assert_eq!(dead[0].error, "smtp said no");
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].task.as_deref(), Some(tasks::doomed::NAME));
    assert!(
        client
            .queue("doomed")
            .dead_jobs(0)
            .await
            .unwrap()
            .is_empty()
    );
    // An untyped handle from the id alone tells the same story.
    match client.job(job.id().clone()).status().await.unwrap() {
        JobStatus::Dead { attempts, error } => {
            assert_eq!((attempts, error.as_str()), (3, "smtp said no"))
        }
        other => panic!("expected dead, got {other:?}"),
    }
    let stats = client.queue("doomed").stats().await.unwrap();
    assert_eq!((stats.pending, stats.retry, stats.dead), (0, 0, 1));

    // Per-job retry override: no retries at all.
    let key = unique_prefix("doomed-once");
    let job = tasks::doomed::with()
        .client(&client)
        .retries(0)
        .enqueue(key, "once".into())
        .await
        .unwrap();
    assert_eq!(wait_dead(&job, WAIT).await.0, 1);
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_panic_is_a_failed_attempt_and_the_job_is_retried() {
    let (_redis, client) = setup("panic").await;
    let worker = worker(&client, &["panicky"]).spawn();
    let key = unique_prefix("panic-key");
    let job = tasks::panics_once::with()
        .client(&client)
        .enqueue(key)
        .await
        .unwrap();
    assert_eq!(
        job.wait(WAIT).await.unwrap(),
        2,
        "the second attempt succeeded"
    );
    // The worker survived the panic and still runs jobs.
    let key = unique_prefix("panic-key-2");
    let job = tasks::panics_once::with()
        .client(&client)
        .retries(0)
        .enqueue(key)
        .await
        .unwrap();
    assert_eq!(wait_dead(&job, WAIT).await.1, "panicked: boom on attempt 1");
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_timed_out_attempt_is_retried() {
    let (_redis, client) = setup("timeout").await;
    let worker = worker(&client, &["slow"]).spawn();
    let key = unique_prefix("timeout-key");
    let started = Instant::now();
    let job = tasks::hangs_once::with()
        .client(&client)
        .enqueue(key)
        .await
        .unwrap();
    assert_eq!(job.wait(WAIT).await.unwrap(), 2);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the 30 s sleep was cut short"
    );
    let key = unique_prefix("timeout-key-2");
    let job = tasks::hangs_once::with()
        .client(&client)
        .retries(0)
        .enqueue(key)
        .await
        .unwrap();
    assert_eq!(wait_dead(&job, WAIT).await.1, "timed out after 200ms");
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_delayed_job_runs_not_before_its_time_and_promptly_after() {
    let (_redis, client) = setup("delay").await;
    let worker = worker(&client, &["math"]).spawn();
    let key = unique_prefix("delay-key");
    let delay = Duration::from_millis(1500);
    let enqueued = Instant::now();
    let job = tasks::add::with()
        .client(&client)
        .delay(delay)
        .enqueue(key.clone(), 1, 2)
        .await
        .unwrap();
    assert_eq!(client.queue("math").stats().await.unwrap().scheduled, 1);
    assert_eq!(job.wait(WAIT).await.unwrap(), 3);
    let ran_after = enqueued.elapsed();
    assert!(
        ran_after >= delay,
        "ran after {ran_after:?}, before its delay"
    );
    assert!(
        ran_after < delay + Duration::from_millis(1000),
        "ran {ran_after:?} after enqueue"
    );

    // `.at` a time in the past runs at once.
    let job = tasks::add::with()
        .client(&client)
        .at(std::time::SystemTime::now() - Duration::from_secs(60))
        .enqueue(key, 2, 2)
        .await
        .unwrap();
    assert_eq!(job.wait(WAIT).await.unwrap(), 4);
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn queues_are_served_in_strict_priority_order() {
    let (_redis, client) = setup("priority").await;
    let key = unique_prefix("priority-key");
    for i in 0..5 {
        tasks::note::with()
            .client(&client)
            .queue("low")
            .enqueue(key.clone(), format!("low{i}"))
            .await
            .unwrap();
    }
    for i in 0..5 {
        tasks::note::with()
            .client(&client)
            .queue("high")
            .enqueue(key.clone(), format!("high{i}"))
            .await
            .unwrap();
    }
    let worker = Worker::new(&client)
        .queues(["high", "low"])
        .concurrency(1)
        .spawn();
    eventually(WAIT, "all 10 jobs ran", || async {
        (tasks::runs(&key).len() == 10).then_some(())
    })
    .await;
    let order = tasks::runs(&key);
    let expected: Vec<String> = (0..5)
        .map(|i| format!("high{i}"))
        .chain((0..5).map(|i| format!("low{i}")))
        .collect();
    assert_eq!(order, expected);
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_payloads_go_to_the_dead_set_with_a_reason_and_the_worker_keeps_going() {
    let (_redis, client) = setup("garbage").await;
    let queue = client.queue("math");
    queue.push_raw(&[0xff, 0x00, 0xfe]).await.unwrap();
    queue.push_raw(b"{\"v\":1,\"id\":").await.unwrap();
    queue.push_raw(b"{\"hello\":\"world\"}").await.unwrap();
    queue
        .push_raw(br#"{"v":1,"id":"u1","t":"no.such.task","q":"math","a":[],"at":1}"#)
        .await
        .unwrap();
    let wrong_args = format!(
        r#"{{"v":1,"id":"w1","t":"{}","q":"math","a":["key","not a number",2],"at":1}}"#,
        tasks::add::NAME
    );
    queue.push_raw(wrong_args.as_bytes()).await.unwrap();
    let key = unique_prefix("after-garbage");
    let good = tasks::add::with()
        .client(&client)
        .enqueue(key, 20, 22)
        .await
        .unwrap();

    let worker = worker(&client, &["math"]).spawn();
    assert_eq!(
        good.wait(WAIT).await.unwrap(),
        42,
        "the good job after the garbage ran"
    );
    let dead = eventually(WAIT, "5 dead records", || async {
        let dead = queue.dead_jobs(10).await.unwrap();
        (dead.len() == 5).then_some(dead)
    })
    .await;
    let reason = |needle: &str| {
        dead.iter()
            .find(|d| d.payload == needle || d.id.as_str() == needle)
            .map(|d| d.error.clone())
            .unwrap_or_else(|| panic!("no dead record for {needle}: {dead:?}"))
    };
    assert!(
        reason("\u{fffd}\0\u{fffd}").starts_with("payload is not valid UTF-8 JSON"),
        "{dead:?}"
    );
    assert!(reason("{\"v\":1,\"id\":").starts_with("payload is not valid UTF-8 JSON"));
    assert!(reason("{\"hello\":\"world\"}").starts_with("payload is not a dtask job envelope"));
    assert!(reason("u1").starts_with("unknown task `no.such.task`"));
    assert!(reason("w1").starts_with(&format!(
        "arguments do not match task `{}`",
        tasks::add::NAME
    )));
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.pending, stats.dead), (0, 5));
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn enqueue_reports_an_unreachable_redis_as_an_error() {
    init_logging();
    let redis = start_redis();
    let url = redis.url();
    let client = Client::connect_with_prefix(&url, &unique_prefix("down"))
        .await
        .unwrap();
    drop(redis);
    let result = tasks::add::with()
        .client(&client)
        .enqueue("k".into(), 1, 1)
        .await;
    assert!(
        matches!(result, Err(dtask::Error::Redis { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_delay_too_long_to_represent_is_refused_with_a_clear_error() {
    let (_redis, client) = setup("huge-delay").await;
    let result = tasks::add::with()
        .client(&client)
        .delay(Duration::MAX)
        .enqueue("k".into(), 1, 1)
        .await;
    match result {
        Err(dtask::Error::Config(message)) => assert!(message.contains("too long"), "{message}"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
    assert_eq!(
        client.queue("math").stats().await.unwrap(),
        dtask::QueueStats::default()
    );
}

#[tokio::test]
async fn a_payload_over_the_limit_is_refused_and_nothing_is_enqueued() {
    let (_redis, client) = setup("too-big").await;
    let client = client.with_max_payload_bytes(1024);
    let small = tasks::add::with()
        .client(&client)
        .enqueue("small".into(), 1, 1)
        .await;
    assert!(small.is_ok(), "{small:?}");
    let result = tasks::add::with()
        .client(&client)
        .enqueue_many([("small".to_owned(), 2, 2), ("x".repeat(2000), 1, 1)])
        .await;
    match result {
        Err(dtask::Error::PayloadTooLarge { size, limit, .. }) => {
            assert!(size > 2000, "{size}");
            assert_eq!(limit, 1024);
        }
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    assert_eq!(
        client.queue("math").stats().await.unwrap().pending,
        1,
        "the refused batch enqueued nothing"
    );
}

#[tokio::test]
async fn a_task_keeps_its_result_as_long_as_its_result_ttl_says() {
    let (_redis, client) = setup("result-ttl").await;
    let worker = worker(&client, &["math"]).spawn();
    let key = unique_prefix("forget");
    let forgotten = tasks::fire_and_forget::with()
        .client(&client)
        .enqueue(key.clone())
        .await
        .unwrap();
    let kept = tasks::short_lived::with()
        .client(&client)
        .enqueue(7)
        .await
        .unwrap();
    assert_eq!(
        kept.wait(WAIT).await.unwrap(),
        7,
        "kept long enough to be read"
    );
    eventually(WAIT, "the fire-and-forget job ran", || async {
        (tasks::runs(&key) == ["ran"]).then_some(())
    })
    .await;
    assert_eq!(client.queue("math").stats().await.unwrap().pending, 0);
    assert_eq!(
        forgotten.status().await.unwrap(),
        JobStatus::Unknown,
        "no result record was kept"
    );
    // Waiting for a result that is never kept is refused at once, not timed out.
    let started = std::time::Instant::now();
    for handle in [
        forgotten.clone(),
        tasks::fire_and_forget::job(forgotten.id().clone()),
    ] {
        match handle.wait(WAIT).await {
            Err(dtask::Error::NoResultKept { task, .. }) => {
                assert_eq!(task, tasks::fire_and_forget::NAME)
            }
            other => panic!("expected NoResultKept, got {other:?}"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    eventually(WAIT, "the short-lived result expired", || async {
        (kept.status().await.unwrap() == JobStatus::Unknown).then_some(())
    })
    .await;
    worker.shutdown().await.unwrap();
}
