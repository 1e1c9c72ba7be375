//! `dtask::testing::inline` as a user's unit test would use it: no Redis anywhere (no client
//! is configured, and none could connect), each enqueue runs its job at once in the caller.

use std::sync::Mutex;
use std::time::Duration;

use dtask::{Error, JobStatus};

const WAIT: Duration = Duration::from_secs(1);

/// What the tasks below were called with, in order (tests of this file run one by one on this
/// list through `CALLS_LOCK`).
static CALLS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static CALLS_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn calls() -> Vec<String> {
    std::mem::take(&mut *CALLS.lock().unwrap())
}

#[dtask::task(queue = "inline-mail")]
async fn send_receipt(order: u64, email: Option<String>) -> String {
    CALLS
        .lock()
        .unwrap()
        .push(format!("send_receipt {order} {email:?}"));
    format!("receipt {order}")
}

/// A task that enqueues another: the nested job runs inline too, before this one goes on.
#[dtask::task(queue = "inline-orders")]
async fn place_order(order: u64) -> Result<u64, String> {
    CALLS.lock().unwrap().push(format!("place_order {order}"));
    let receipt = send_receipt::enqueue(order, Some("ann@example.com".into()))
        .await
        .map_err(|e| e.to_string())?;
    receipt.wait(WAIT).await.map_err(|e| e.to_string())?;
    CALLS.lock().unwrap().push(format!("placed {order}"));
    Ok(order * 10)
}

#[dtask::task(queue = "inline-orders", retries = 5)]
async fn always_fails(reason: String) -> Result<(), String> {
    CALLS.lock().unwrap().push(format!("always_fails {reason}"));
    Err(format!("no: {reason}"))
}

#[derive(Clone)]
struct Greeting(&'static str);

#[dtask::task(queue = "inline-mail")]
async fn greet(name: String, greeting: dtask::State<Greeting>) -> String {
    let Greeting(word) = *greeting;
    format!("{word}, {name}")
}

#[dtask::task(queue = "inline-math")]
async fn half(x: f64) -> f64 {
    x / 2.0
}

#[tokio::test]
async fn an_enqueue_runs_its_job_at_once_and_the_handle_tells_its_result() {
    let _one = CALLS_LOCK.lock().await;
    calls();
    let value = dtask::testing::inline(async {
        let job = place_order::enqueue(7).await?;
        // Both jobs ran before the enqueue returned, the nested one inside the first.
        assert_eq!(
            calls(),
            [
                "place_order 7",
                "send_receipt 7 Some(\"ann@example.com\")",
                "placed 7"
            ]
        );
        assert_eq!(job.status().await?, JobStatus::Succeeded(70));
        job.wait(WAIT).await
    })
    .await
    .unwrap();
    assert_eq!(value, 70);

    // Many at once, and the builder's options (a delay is not waited for).
    let handles = dtask::testing::inline(async {
        let many = send_receipt::enqueue_many(vec![(1, None), (2, None)]).await?;
        let later = send_receipt::with()
            .delay(Duration::from_secs(3600))
            .enqueue(3, None)
            .await?;
        Ok::<_, Error>((many, later))
    })
    .await
    .unwrap();
    assert_eq!(
        calls(),
        [
            "send_receipt 1 None",
            "send_receipt 2 None",
            "send_receipt 3 None"
        ]
    );
    assert_eq!(handles.0[1].wait(WAIT).await.unwrap(), "receipt 2");
    assert_eq!(handles.1.wait(WAIT).await.unwrap(), "receipt 3");
}

#[tokio::test]
async fn a_failing_job_ends_dead_after_one_run_and_waiting_on_it_says_why() {
    let _one = CALLS_LOCK.lock().await;
    calls();
    let job = dtask::testing::inline(always_fails::enqueue("out of stock".into()))
        .await
        .expect("the enqueue itself succeeds");
    assert_eq!(calls(), ["always_fails out of stock"], "run once, no retry");
    assert_eq!(
        job.status().await.unwrap(),
        JobStatus::Dead {
            attempts: 1,
            error: "no: out of stock".into()
        }
    );
    match job.wait(WAIT).await {
        Err(Error::JobDead {
            attempts: 1, error, ..
        }) => assert_eq!(error, "no: out of stock"),
        other => panic!("expected the job's death, got {other:?}"),
    }
}

#[tokio::test]
async fn states_are_given_as_a_worker_gives_them() {
    let inline = dtask::testing::Inline::new().state(Greeting("Hello"));
    let said = inline
        .run(async { greet::enqueue("Ann".into()).await?.wait(WAIT).await })
        .await
        .unwrap();
    assert_eq!(said, "Hello, Ann");

    // Without the state, the job cannot run: dead without an attempt, saying what is missing.
    let job = dtask::testing::inline(greet::enqueue("Bob".into()))
        .await
        .unwrap();
    match job.status().await.unwrap() {
        JobStatus::Dead { attempts: 0, error } => {
            assert!(error.contains("Greeting"), "{error}")
        }
        other => panic!("expected a dead job, got {other:?}"),
    }
}

#[tokio::test]
async fn what_cannot_travel_fails_as_it_would_and_workflows_are_refused() {
    let _one = CALLS_LOCK.lock().await;
    calls();
    // Arguments go through JSON as through Redis: a NaN is refused at enqueue.
    let refused = dtask::testing::inline(half::enqueue(f64::NAN)).await;
    assert!(
        matches!(refused, Err(Error::SerializeArgs { .. })),
        "{refused:?}"
    );

    let chained = dtask::testing::inline(
        dtask::chain(send_receipt::call(1, None))
            .then(always_fails::with_input())
            .enqueue(),
    )
    .await;
    match chained {
        Err(Error::Config(message)) => assert!(message.contains("TestRedis::drain"), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(calls().is_empty(), "nothing ran");
}

#[dtask::task(queue = "inline-batches")]
async fn next_batch(left: u32) -> u32 {
    if left == 0 {
        return 0;
    }
    let rest = next_batch::enqueue(left - 1).await.unwrap();
    rest.wait(WAIT).await.unwrap() + 1
}

#[dtask::task(queue = "inline-batches", result_ttl = "0s")]
async fn keeps_nothing() -> u32 {
    let job = dtask::current().expect("an inline run is the current job");
    assert_eq!((job.attempt(), job.queue()), (1, "inline-batches"));
    7
}

#[tokio::test]
async fn jobs_enqueueing_jobs_500_deep_do_not_grow_the_stack() {
    // A #[tokio::test] thread has a 2 MiB stack: each nested run is a task of its own.
    let depth = dtask::testing::inline(async { next_batch::enqueue(500).await?.wait(WAIT).await })
        .await
        .unwrap();
    assert_eq!(depth, 500);
}

#[tokio::test]
async fn an_inline_handle_answers_as_a_redis_one_would() {
    let _one = CALLS_LOCK.lock().await;
    let (named, quiet) = dtask::testing::inline(async {
        let named = send_receipt::with()
            .id("receipt-9")
            .enqueue(9, None)
            .await?;
        let quiet = keeps_nothing::enqueue().await?;
        Ok::<_, Error>((named, quiet))
    })
    .await
    .unwrap();
    assert_eq!(named.id().as_str(), "receipt-9");
    assert_eq!(named.cancel().await.unwrap(), dtask::Cancelled::NotFound);
    // A task that keeps no result: nothing to read, as with Redis.
    assert_eq!(quiet.status().await.unwrap(), JobStatus::Unknown);
    assert!(matches!(
        quiet.wait(WAIT).await,
        Err(Error::NoResultKept { .. })
    ));
    // What Redis would refuse is refused inline too.
    let refused = dtask::testing::inline(async {
        send_receipt::with()
            .id("twice")
            .enqueue_many(vec![(1, None), (2, None)])
            .await
    })
    .await;
    assert!(matches!(refused, Err(Error::Config(_))), "{refused:?}");
    calls();
}
