//! Where jobs stand and what happens to them, against a real Redis: `status()` tells each
//! state apart (unknown, scheduled, queued, running with its progress, retrying, succeeded,
//! dead, cancelled), a subscriber of the queue's events sees every change, a worker killed
//! mid-job shows as a recovered event, a cut subscription says which window it may have
//! missed and goes on, and a queue can keep its events to itself.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use dtask::{EventKind, Events, JobId, JobStatus, Progress, Worker};
use dtask_tests::harness::{
    WorkerProcess, eventually, kill_subscribers, start_with_client, unique_prefix,
};
use dtask_tests::tasks;
use tokio::sync::Notify;

const WAIT: Duration = Duration::from_secs(20);

/// The gate a `stepped` job waits at, by key.
fn gate(key: &str) -> Arc<Notify> {
    static GATES: LazyLock<Mutex<HashMap<String, Arc<Notify>>>> = LazyLock::new(Mutex::default);
    GATES
        .lock()
        .unwrap()
        .entry(key.to_owned())
        .or_default()
        .clone()
}

/// Tells it is half way, waits at its gate, returns 7.
#[dtask::task(queue = "lifecycle")]
async fn stepped(key: String) -> u32 {
    dtask::progress(50, "half way");
    gate(&key).notified().await;
    7
}

/// Fails its first attempt, then returns 2.
#[dtask::task(queue = "lifecycle", retries = 1)]
async fn fails_once(key: String) -> Result<u32, String> {
    static TRIED: LazyLock<Mutex<Vec<String>>> = LazyLock::new(Mutex::default);
    let mut tried = TRIED.lock().unwrap();
    if tried.contains(&key) {
        return Ok(2);
    }
    tried.push(key);
    Err("first try fails".to_owned())
}

/// Fails for good.
#[dtask::task(queue = "lifecycle", retries = 0)]
async fn hopeless() -> Result<(), String> {
    Err("no hope".to_owned())
}

/// Returns at once.
#[dtask::task(queue = "quiet")]
async fn hush(n: u32) -> u32 {
    n
}

/// The next event of job `id` (others skipped); a missed window fails the test.
async fn next_of(events: &mut Events, id: &JobId) -> EventKind {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| panic!("no further event of job {id}"))
            .expect("the stream goes on");
        match event {
            Ok(event) if &event.job_id == id => return event.kind,
            Ok(_) => {}
            Err(missed) => panic!("{missed}"),
        }
    }
}

#[tokio::test]
async fn status_tells_every_state_and_a_subscriber_sees_every_change() {
    let (_redis, client, _raw, _prefix) = start_with_client("events-all").await;
    let mut events = client.events("lifecycle").await.unwrap();

    let never = JobId::from("never-enqueued");
    let status = stepped::job(never).with_client(&client).status().await;
    assert_eq!(status.unwrap(), JobStatus::Unknown);

    // Scheduled: due in an hour.
    let later = stepped::with()
        .client(&client)
        .delay(Duration::from_secs(3600))
        .enqueue("later".into())
        .await
        .unwrap();
    let in_an_hour = SystemTime::now() + Duration::from_secs(3600);
    match later.status().await.unwrap() {
        JobStatus::Scheduled { due_at } => {
            let off = due_at
                .duration_since(in_an_hour)
                .unwrap_or_else(|e| e.duration());
            assert!(off < Duration::from_secs(10), "{due_at:?}");
        }
        other => panic!("expected scheduled, got {other:?}"),
    }
    assert!(matches!(
        next_of(&mut events, later.id()).await,
        EventKind::Enqueued { due_at: Some(_) }
    ));

    // Queued: no worker yet.
    let key = unique_prefix("stepped");
    let job = stepped::with()
        .client(&client)
        .enqueue(key.clone())
        .await
        .unwrap();
    assert_eq!(job.status().await.unwrap(), JobStatus::Queued);
    assert_eq!(
        next_of(&mut events, job.id()).await,
        EventKind::Enqueued { due_at: None }
    );

    // Running, with its progress.
    let worker = Worker::new(&client)
        .queues(["lifecycle"])
        .retry_backoff(Duration::from_millis(1500), Duration::from_millis(1500))
        .spawn();
    let half = Progress {
        percent: 50,
        message: "half way".into(),
    };
    match next_of(&mut events, job.id()).await {
        EventKind::Started { attempt, worker } => {
            assert_eq!(attempt, 1);
            assert!(!worker.is_empty());
        }
        other => panic!("expected started, got {other:?}"),
    }
    assert_eq!(
        next_of(&mut events, job.id()).await,
        EventKind::Progress {
            attempt: 1,
            progress: half.clone()
        }
    );
    match job.status().await.unwrap() {
        JobStatus::Running {
            attempt,
            started_at,
            progress,
        } => {
            assert_eq!((attempt, progress), (1, Some(half)));
            assert!(started_at <= SystemTime::now());
        }
        other => panic!("expected running, got {other:?}"),
    }

    // Succeeded.
    gate(&key).notify_one();
    assert_eq!(
        next_of(&mut events, job.id()).await,
        EventKind::Succeeded { attempts: 1 }
    );
    assert_eq!(job.status().await.unwrap(), JobStatus::Succeeded(7));

    // Retrying, then succeeded on its second attempt.
    let flaky = fails_once::with()
        .client(&client)
        .enqueue(unique_prefix("flaky"))
        .await
        .unwrap();
    let mut seen = Vec::new();
    loop {
        let kind = next_of(&mut events, flaky.id()).await;
        if let EventKind::Retrying { .. } = &kind {
            // Read before the next attempt is due (1.5 s later).
            match flaky.status().await.unwrap() {
                JobStatus::Retrying {
                    attempts, error, ..
                } => assert_eq!((attempts, error.as_str()), (1, "first try fails")),
                other => panic!("expected retrying, got {other:?}"),
            }
        }
        let done = matches!(kind, EventKind::Succeeded { .. });
        seen.push(kind);
        if done {
            break;
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(seen[0], EventKind::Enqueued { due_at: None });
    assert!(matches!(seen[1], EventKind::Started { attempt: 1, .. }));
    assert!(matches!(
        &seen[2],
        EventKind::Retrying { attempts: 1, error, .. } if error == "first try fails"
    ));
    assert!(matches!(seen[3], EventKind::Started { attempt: 2, .. }));
    assert_eq!(seen[4], EventKind::Succeeded { attempts: 2 });
    assert_eq!(flaky.wait(WAIT).await.unwrap(), 2);

    // Dead.
    let doomed = hopeless::with().client(&client).enqueue().await.unwrap();
    assert_eq!(
        next_of(&mut events, doomed.id()).await,
        EventKind::Enqueued { due_at: None }
    );
    assert!(matches!(
        next_of(&mut events, doomed.id()).await,
        EventKind::Started { attempt: 1, .. }
    ));
    assert_eq!(
        next_of(&mut events, doomed.id()).await,
        EventKind::Dead {
            attempts: 1,
            error: "no hope".into()
        }
    );
    assert_eq!(
        doomed.status().await.unwrap(),
        JobStatus::Dead {
            attempts: 1,
            error: "no hope".into()
        }
    );

    // Cancelled, before it ran.
    later.cancel().await.unwrap();
    assert_eq!(
        next_of(&mut events, later.id()).await,
        EventKind::Cancelled { attempts: 0 }
    );
    assert_eq!(
        later.status().await.unwrap(),
        JobStatus::Cancelled { attempts: 0 }
    );
    worker.shutdown().await.unwrap();
}

const WORKER: &str = env!("CARGO_BIN_EXE_test_worker");

#[tokio::test]
async fn a_job_whose_worker_died_is_told_recovered_and_runs_again() {
    let (redis, client, _raw, prefix) = start_with_client("events-recovered").await;
    let mut events = client.events("marks").await.unwrap();
    let lease = [("TEST_RECOVERY_MS", "1000")];
    let mut first = WorkerProcess::start(WORKER, &redis.url(), &prefix, "marks", &lease);
    let job = tasks::mark::with()
        .client(&client)
        .enqueue(unique_prefix("mark"), 2_000)
        .await
        .unwrap();
    assert_eq!(
        next_of(&mut events, job.id()).await,
        EventKind::Enqueued { due_at: None }
    );
    let dead_worker = match next_of(&mut events, job.id()).await {
        EventKind::Started { attempt: 1, worker } => worker,
        other => panic!("expected started, got {other:?}"),
    };
    // Recorded as running once it has run a little (quick jobs never are).
    eventually(WAIT, "the job reads running", || async {
        matches!(
            job.status().await.unwrap(),
            JobStatus::Running { attempt: 1, .. }
        )
        .then_some(())
    })
    .await;
    first.kill();
    let _second = WorkerProcess::start(WORKER, &redis.url(), &prefix, "marks", &lease);
    assert_eq!(
        next_of(&mut events, job.id()).await,
        EventKind::Recovered {
            worker: dead_worker.clone()
        }
    );
    match next_of(&mut events, job.id()).await {
        EventKind::Started { attempt: 1, worker } => assert_ne!(worker, dead_worker),
        other => panic!("expected started again, got {other:?}"),
    }
    assert_eq!(
        next_of(&mut events, job.id()).await,
        EventKind::Succeeded { attempts: 1 }
    );
    assert_eq!(job.status().await.unwrap(), JobStatus::Succeeded(()));
}

#[tokio::test]
async fn a_cut_subscription_tells_the_window_it_may_have_missed_and_goes_on() {
    let (_redis, client, mut raw, _prefix) = start_with_client("events-cut").await;
    let mut events = client.events("quiet").await.unwrap();
    let before = SystemTime::now();
    assert_eq!(kill_subscribers(&mut raw).await, 1);
    let missed = tokio::time::timeout(WAIT, events.next())
        .await
        .expect("told of the break")
        .expect("the stream goes on")
        .expect_err("a missed window first");
    println!("{missed}");
    assert!(missed.from <= missed.to);
    assert!(missed.to >= before, "{missed:?}");
    // Subscribed again (once the window is told): what comes next is seen.
    let job = hush::with().client(&client).enqueue(1).await.unwrap();
    assert_eq!(
        next_of(&mut events, job.id()).await,
        EventKind::Enqueued { due_at: None }
    );
    assert_eq!(job.status().await.unwrap(), JobStatus::Queued);
}

#[tokio::test]
async fn a_queue_can_keep_its_events_to_itself() {
    let (redis, client, _raw, prefix) = start_with_client("events-quiet").await;
    let quiet = dtask::Client::builder(&redis.url())
        .prefix(&prefix)
        .without_events("quiet")
        .connect()
        .await
        .unwrap();
    let mut events = client.events("quiet").await.unwrap();
    let worker = Worker::new(&quiet)
        .queues(["quiet"])
        .without_events("quiet")
        .spawn();
    let hushed = hush::with().client(&quiet).enqueue(1).await.unwrap();
    assert_eq!(hushed.wait(WAIT).await.unwrap(), 1);
    // Its state is kept all the same.
    assert_eq!(hushed.status().await.unwrap(), JobStatus::Succeeded(1));
    // A job a loud client enqueues: its event is the first the subscriber sees (nothing
    // was published of the first job, before or after).
    let loud = hush::with().client(&client).enqueue(2).await.unwrap();
    let first = tokio::time::timeout(WAIT, events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (&first.job_id, &first.kind),
        (loud.id(), &EventKind::Enqueued { due_at: None })
    );
    assert_eq!(loud.wait(WAIT).await.unwrap(), 2);
    worker.shutdown().await.unwrap();
}
