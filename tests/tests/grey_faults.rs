//! Grey faults: the half-broken conditions production brings, each a regression test of a
//! promise that once broke under it. A broken queue beside a healthy one, a handler that
//! blocks its runtime, a run that lost its job to a recovery and finishes late, a connection
//! that goes silent, jobs a rolling deploy brings before the workers that know them, secrets
//! in bad arguments, and a shutdown while Redis is away.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dtask::{Client, JobStatus, Worker};
use dtask_testkit::proxy::Proxy;
use dtask_tests::harness::{
    WorkerProcess, eventually, in_flight, init_logging, start_durable_redis, start_with_client,
    unique_prefix,
};
use dtask_tests::tasks;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_broken_queue_neither_strands_nor_stalls_the_jobs_of_a_healthy_one() {
    let (_redis, client, mut raw, prefix) = start_with_client("broken-queue").await;
    // `broken` holds a string where its pending list should be: every fetch from it fails.
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}:{{broken}}:pending"))
        .arg("not a list")
        .query_async(&mut raw)
        .await
        .unwrap();
    for queues in [["math", "broken"], ["broken", "math"]] {
        let worker = Worker::new(&client).queues(queues).concurrency(8).spawn();
        let key = unique_prefix("healthy");
        let jobs = tasks::add::with()
            .client(&client)
            .enqueue_many((0..50).map(|i| (key.clone(), i, 1)))
            .await
            .unwrap();
        for (i, job) in jobs.iter().enumerate() {
            assert_eq!(
                job.wait(WAIT).await.unwrap(),
                i as i64 + 1,
                "job {i} of the healthy queue ran (queues {queues:?})"
            );
        }
        eventually(WAIT, "nothing of the healthy queue stays in flight", || {
            let mut raw = raw.clone();
            let prefix = prefix.clone();
            async move { (in_flight(&mut raw, &prefix, "math").await == 0).then_some(()) }
        })
        .await;
        assert_eq!(tasks::runs(&key).len(), 50, "each ran once");
        worker.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_blocks_its_runtime_does_not_make_its_worker_look_dead() {
    let (redis, client, raw, prefix) = start_with_client("blocking").await;
    let lease = Duration::from_millis(1000);
    let keys: Vec<String> = (0..2)
        .map(|i| unique_prefix(&format!("block-{i}")))
        .collect();
    tasks::block_thread::with()
        .client(&client)
        .enqueue_many(
            keys.iter()
                .map(|key| (key.clone(), 3 * lease.as_millis() as u64)),
        )
        .await
        .unwrap();
    // Worker A runs on this test's runtime (two threads) two jobs at once: both block their
    // thread for three leases, so nothing else of this runtime runs meanwhile.
    let worker_a = Worker::new(&client)
        .queues(["blocking"])
        .concurrency(2)
        .recovery_after(lease)
        .spawn();
    // Worker B runs on a runtime of its own, free to recover A's jobs if A looks dead. It
    // starts once A holds both jobs (watched from a plain thread: A's runtime is blocked).
    let (stop_b, stopped_b) = tokio::sync::oneshot::channel::<()>();
    let (url, prefix_b) = (redis.url(), prefix.clone());
    let worker_b = std::thread::spawn(move || {
        let mut watch = redis::Client::open(url.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix_b}:{{blocking}}:active:*"))
                .query(&mut watch)
                .unwrap();
            let held: u64 = match keys.first() {
                Some(key) => redis::cmd("HLEN").arg(key).query(&mut watch).unwrap(),
                None => 0,
            };
            if held == 2 {
                break;
            }
            assert!(Instant::now() < deadline, "worker A did not take both jobs");
            std::thread::sleep(Duration::from_millis(5));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let client = Client::connect_with_prefix(&url, &prefix_b).await.unwrap();
            Worker::new(&client)
                .queues(["blocking"])
                .concurrency(1)
                .recovery_after(lease)
                .run_until(async {
                    let _ = stopped_b.await;
                })
                .await
        })
    });
    for key in &keys {
        eventually(Duration::from_secs(20), "the blocking job ran", || async {
            (!tasks::runs(key).is_empty()).then_some(())
        })
        .await;
    }
    // A copy recovered by B would have been taken during the 3 s block (recovery comes after
    // 1 to 1.5 s): it would be running, done or still queued now. Wait until nothing is.
    eventually(
        Duration::from_secs(20),
        "nothing left queued or in flight",
        || {
            let mut raw = raw.clone();
            let prefix = prefix.clone();
            let client = client.clone();
            async move {
                let stats = client.queue("blocking").stats().await.unwrap();
                let idle = stats.pending + stats.suspects == 0
                    && in_flight(&mut raw, &prefix, "blocking").await == 0;
                idle.then_some(())
            }
        },
    )
    .await;
    assert_eq!(client.queue("blocking").stats().await.unwrap().dead, 0);
    for key in &keys {
        assert_eq!(tasks::runs(key), ["ran"], "{key} ran exactly once");
    }
    let _ = stop_b.send(());
    worker_b.join().unwrap().unwrap();
    worker_a.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_stale_run_changes_nothing_after_its_job_was_recovered_and_run_again() {
    let (_redis, client, mut raw, prefix) = start_with_client("stale").await;
    let worker = Worker::new(&client)
        .queues(["gated"])
        .concurrency(2)
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(10))
        .spawn();
    let key = unique_prefix("gated");
    let job = tasks::gated::with()
        .client(&client)
        .enqueue(key.clone())
        .await
        .unwrap();
    eventually(WAIT, "the first run started", || async {
        (tasks::runs(&key) == ["first started"]).then_some(())
    })
    .await;
    // Take the job back as a recoverer does from a worker it took for dead: the in-flight
    // entry goes, the payload returns to the queue.
    let active: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:{{gated}}:active:*"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(active.len(), 1);
    let entries: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(&active[0])
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    let _: () = redis::pipe()
        .atomic()
        .cmd("DEL")
        .arg(&active[0])
        .cmd("LPUSH")
        .arg(format!("{prefix}:{{gated}}:pending"))
        .arg(&entries[0].1)
        .query_async(&mut raw)
        .await
        .unwrap();
    // The same worker fetches the job again, under a new lease, and this run succeeds.
    assert_eq!(job.wait(WAIT).await.unwrap(), 2);
    // Now the stale first run fails: it must not schedule a retry, nor touch the outcome, nor
    // the new run's entry.
    tasks::open_gate(&key);
    eventually(WAIT, "the stale run ended and settled", || {
        let mut raw = raw.clone();
        let prefix = prefix.clone();
        let key = key.clone();
        async move {
            let ended = tasks::runs(&key).contains(&"first failed".to_owned());
            (ended && in_flight(&mut raw, &prefix, "gated").await == 0).then_some(())
        }
    })
    .await;
    assert_eq!(job.status().await.unwrap(), JobStatus::Succeeded(2));
    let stats = client.queue("gated").stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.retry, stats.dead),
        (0, 0, 0),
        "no retry, no burial from the stale run"
    );
    assert_eq!(tasks::runs(&key), ["first started", "ran", "first failed"]);
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn enqueues_and_jobs_resume_soon_after_the_connection_goes_silent() {
    let (redis, direct, _raw, prefix) = start_with_client("silent").await;
    let proxy = Proxy::start(redis.port()).await.unwrap();
    let timeout = Duration::from_millis(500);
    let producer = Client::builder(&proxy.url())
        .prefix(&prefix)
        .response_timeout(timeout)
        .connect()
        .await
        .unwrap();
    let worker = Worker::new(&direct).queues(["math"]).spawn();
    let key = unique_prefix("silent");
    let before = tasks::add::with()
        .client(&producer)
        .enqueue(key.clone(), 1, 1)
        .await
        .unwrap();
    assert_eq!(before.wait(WAIT).await.unwrap(), 2);

    // Every established connection through the proxy goes silent, as after a dead NAT entry.
    assert!(proxy.blackhole() > 0);
    let silenced = Instant::now();
    let mut failures = 0;
    let after = loop {
        match tasks::add::with()
            .client(&producer)
            .enqueue(key.clone(), 2, 2)
            .await
        {
            Ok(job) => break job,
            Err(error) => {
                failures += 1;
                assert!(
                    silenced.elapsed() < 4 * timeout + Duration::from_secs(2),
                    "enqueues still fail {:?} after the network went silent: {error}",
                    silenced.elapsed()
                );
            }
        }
    };
    assert!(failures > 0, "the silent connection was noticed");
    assert_eq!(after.wait(WAIT).await.unwrap(), 4);
    worker.shutdown().await.unwrap();
}

/// An envelope as a newer deploy's producer would write it, due now.
fn envelope(version: u32, id: &str, task: &str) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!(r#"{{"v":{version},"id":"{id}","t":"{task}","a":[],"at":{now_ms}}}"#)
}

#[tokio::test]
async fn jobs_a_worker_cannot_run_yet_wait_out_a_rolling_deploy_then_die_with_the_reason() {
    let (_redis, client, _raw, _prefix) = start_with_client("deploy").await;
    for payload in [
        envelope(1, "unknown-task", "billing.new_invoice"),
        envelope(99, "newer-envelope", "tests.ping"),
    ] {
        client
            .queue("math")
            .push_raw(payload.as_bytes())
            .await
            .unwrap();
    }
    let grace = Duration::from_secs(2);
    let worker = Worker::new(&client)
        .queues(["math"])
        .unknown_job_grace(grace)
        .spawn();
    let started = Instant::now();
    eventually(WAIT, "both jobs put off, not buried", || async {
        let stats = client.queue("math").stats().await.unwrap();
        (stats.retry + stats.pending == 2 && stats.dead == 0 && stats.retry > 0).then_some(())
    })
    .await;
    let dead = eventually(
        Duration::from_secs(15),
        "both jobs buried after the grace",
        || async {
            let dead = client.queue("math").dead_jobs(10).await.unwrap();
            (dead.len() == 2).then_some(dead)
        },
    )
    .await;
    assert!(
        started.elapsed() >= grace,
        "not buried before the grace period"
    );
    let unknown = dead
        .iter()
        .find(|d| d.id.as_str() == "unknown-task")
        .unwrap();
    assert!(
        unknown.error.contains("unknown task `billing.new_invoice`")
            && unknown.error.contains("no worker ran it within"),
        "{}",
        unknown.error
    );
    let newer = dead
        .iter()
        .find(|d| d.id.as_str() == "newer-envelope")
        .unwrap_or_else(|| panic!("{dead:?}"));
    assert!(
        newer.error.contains("envelope version 99"),
        "{}",
        newer.error
    );
    assert_eq!(newer.task.as_deref(), Some("tests.ping"));
    // The dead record is written first and the dead outcome just after (whoever sees a job
    // dead finds it in the dead set): the status follows within moments.
    for id in ["unknown-task", "newer-envelope"] {
        eventually(Duration::from_secs(5), "the dead outcome", || async {
            let status = client.job(id).status().await.unwrap();
            matches!(status, JobStatus::Dead { .. }).then_some(())
        })
        .await;
    }
    worker.shutdown().await.unwrap();
}

/// This machine's clock, moved forward by however many seconds the test says.
#[derive(Debug, Default, Clone)]
struct AheadClock(Arc<AtomicU64>);

impl dtask::Clock for AheadClock {
    fn now(&self) -> std::time::SystemTime {
        std::time::SystemTime::now() + Duration::from_secs(self.0.load(Ordering::Relaxed))
    }
}

#[tokio::test]
async fn the_default_grace_of_a_job_no_worker_can_run_is_measured_on_the_workers_clock() {
    let (_redis, client, _raw, _prefix) = start_with_client("deploy-clock").await;
    let math = client.queue("math");
    // The worker's clock is 14 minutes ahead: within the default 15 minutes of grace.
    let clock = AheadClock::default();
    clock.0.store(14 * 60, Ordering::Relaxed);
    let worker = Worker::new(&client)
        .queues(["math"])
        .clock(clock.clone())
        .spawn();
    math.push_raw(envelope(1, "early", "billing.new_invoice").as_bytes())
        .await
        .unwrap();
    eventually(WAIT, "the job put off, not buried", || async {
        let stats = math.stats().await.unwrap();
        (stats.retry == 1 && stats.pending == 0 && stats.dead == 0).then_some(())
    })
    .await;
    // 16 minutes ahead: a job enqueued now has waited out its grace on the worker's clock.
    clock.0.store(16 * 60, Ordering::Relaxed);
    math.push_raw(envelope(1, "late", "billing.new_invoice").as_bytes())
        .await
        .unwrap();
    let dead = eventually(WAIT, "the second job buried", || async {
        let dead = math.dead_jobs(10).await.unwrap();
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].id.as_str(), "late");
    assert!(
        dead[0].error.contains("no worker ran it within 900s"),
        "{}",
        dead[0].error
    );
    // Stamped on the worker's clock, 16 minutes ahead of this machine's.
    let ahead = dead[0]
        .died_at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(
        ahead > Duration::from_secs(15 * 60),
        "{:?}",
        dead[0].died_at
    );
    assert_eq!(
        math.stats().await.unwrap().retry,
        1,
        "the first job still waits"
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_argument_that_does_not_fit_is_reported_without_its_value() {
    let (_redis, client, _raw, _prefix) = start_with_client("secret-args").await;
    let payload = format!(
        r#"{{"v":1,"id":"leaky","t":"{}","a":["k","sk_live_51HxSECRET",1],"at":1}}"#,
        tasks::add::NAME
    );
    client
        .queue("math")
        .push_raw(payload.as_bytes())
        .await
        .unwrap();
    let worker = Worker::new(&client).queues(["math"]).spawn();
    let dead = eventually(WAIT, "the job is dead", || async {
        let dead = client.queue("math").dead_jobs(10).await.unwrap();
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    let error = &dead[0].error;
    assert!(
        error.contains("arguments do not match") && error.contains("expected i64"),
        "{error}"
    );
    assert!(!error.contains("sk_live"), "the value leaked: {error}");
    let outcome = client.job("leaky").status().await.unwrap();
    assert!(
        matches!(&outcome, JobStatus::Dead { error, .. } if !error.contains("sk_live")),
        "{outcome:?}"
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn sigterm_while_redis_is_away_exits_within_the_grace_period_and_loses_nothing() {
    init_logging();
    let mut redis = start_durable_redis();
    let prefix = unique_prefix("sigterm-down");
    let client = Client::connect_with_prefix(&redis.url(), &prefix)
        .await
        .unwrap();
    let worker_exe = env!("CARGO_BIN_EXE_test_worker");
    let settings = [
        ("TEST_GRACE_MS", "1000"),
        ("TEST_RECOVERY_MS", "1000"),
        ("DTASK_CONCURRENCY", "1"),
    ];
    let mut worker = WorkerProcess::start(worker_exe, &redis.url(), &prefix, "marks", &settings);
    let job = unique_prefix("held");
    tasks::mark::with()
        .client(&client)
        .enqueue(job.clone(), 3_000)
        .await
        .unwrap();
    eventually(WAIT, "the worker took the job", || async {
        (client.queue("marks").stats().await.unwrap().pending == 0).then_some(())
    })
    .await;
    redis.kill();
    worker.signal("TERM");
    let started = Instant::now();
    let code = worker.wait_exit(Duration::from_secs(15));
    let took = started.elapsed();
    assert_eq!(code, Some(0), "exit code after SIGTERM with Redis away");
    assert!(took < Duration::from_secs(6), "took {took:?} (grace 1 s)");

    // The job it could not hand back is recovered by another worker, as after a crash.
    redis.restart().expect("restart redis-server");
    let _other = WorkerProcess::start(worker_exe, &redis.url(), &prefix, "marks", &settings);
    let mut raw = loop {
        if let Ok(conn) = redis::Client::open(redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
        {
            break conn;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "Redis did not come back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eventually(
        Duration::from_secs(20),
        "the job ran on the other worker",
        || {
            let mut raw = raw.clone();
            let job = job.clone();
            async move {
                let runs: Option<i64> = redis::cmd("GET")
                    .arg(&job)
                    .query_async(&mut raw)
                    .await
                    .ok()?;
                (runs == Some(1)).then_some(())
            }
        },
    )
    .await;
    let _ = &mut raw;
}

#[tokio::test]
async fn an_empty_payload_is_buried_with_a_reason_not_lost() {
    let (_redis, client, _raw, _prefix) = start_with_client("empty-payload").await;
    client.queue("math").push_raw(b"").await.unwrap();
    let worker = Worker::new(&client).queues(["math"]).spawn();
    let dead = eventually(WAIT, "the empty payload is dead", || async {
        let dead = client.queue("math").dead_jobs(10).await.unwrap();
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert!(
        dead[0].error.contains("not valid UTF-8 JSON"),
        "{}",
        dead[0].error
    );
    assert_eq!(dead[0].payload, "");
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_queue_that_refuses_heartbeats_does_not_make_the_worker_look_dead_on_the_others() {
    let (_redis, client, mut raw, prefix) = start_with_client("refused-beat").await;
    // `broken` comes first, and both its registry and its pending list are strings: its
    // heartbeat and its fetches fail.
    for key in ["workers", "pending"] {
        let _: () = redis::cmd("SET")
            .arg(format!("{prefix}:{{broken}}:{key}"))
            .arg("not what dtask expects")
            .query_async(&mut raw)
            .await
            .unwrap();
    }
    let lease = Duration::from_millis(1000);
    let worker_a = Worker::new(&client)
        .queues(["broken", "naps"])
        .recovery_after(lease)
        .spawn();
    let key = unique_prefix("nap");
    let job = tasks::nap::with()
        .client(&client)
        .enqueue(key.clone(), 3 * lease.as_millis() as u64)
        .await
        .unwrap();
    eventually(WAIT, "worker A took the job", || async {
        (client.queue("naps").stats().await.unwrap().pending == 0).then_some(())
    })
    .await;
    // Worker B would take the job back if A's heartbeat on `naps` lapsed.
    let worker_b = Worker::new(&client)
        .queues(["naps"])
        .recovery_after(lease)
        .spawn();
    eventually(WAIT, "the job succeeded", || async {
        matches!(job.status().await.unwrap(), JobStatus::Succeeded(())).then_some(())
    })
    .await;
    eventually(WAIT, "nothing left queued or in flight", || {
        let mut raw = raw.clone();
        let prefix = prefix.clone();
        let client = client.clone();
        async move {
            let stats = client.queue("naps").stats().await.unwrap();
            (stats.pending == 0 && in_flight(&mut raw, &prefix, "naps").await == 0).then_some(())
        }
    })
    .await;
    assert_eq!(tasks::runs(&key), ["ran"], "the job ran once");
    worker_b.shutdown().await.unwrap();
    worker_a.shutdown().await.unwrap();
}
