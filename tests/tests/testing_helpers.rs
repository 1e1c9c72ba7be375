//! `dtask::testing` as a user's test would use it: a private Redis per test, the typed
//! arguments of queued jobs, draining them in-process (with what they enqueue), delayed and
//! retrying jobs made due on demand.

use std::time::Duration;

use dtask::testing::{RanJob, RunOutcome, TestRedis};
use dtask_tests::tasks::{add, doomed, negate};

/// A task at version 2, whose version-1 jobs took first and last names.
#[dtask::task(queue = "versioned", version = 2, migrate = rename_from_v1)]
async fn rename(full_name: String, formal: bool) -> String {
    format!("{full_name} formal={formal}")
}

fn rename_from_v1(first: String, last: String) -> (String, bool) {
    (format!("{first} {last}"), true)
}

fn outcome_of<'a>(ran: &'a [RanJob], task: &str) -> Vec<&'a RunOutcome> {
    ran.iter()
        .filter(|job| job.task == task)
        .map(|job| &job.outcome)
        .collect()
}

#[tokio::test]
async fn tests_running_at_once_see_only_their_own_jobs() {
    let (first, second) = tokio::join!(TestRedis::start(), TestRedis::start());
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_ne!(first.prefix(), second.prefix());
    add::with()
        .client(first.client())
        .enqueue("a".into(), 1, 2)
        .await
        .unwrap();
    assert_eq!(
        first.enqueued::<add::Task>().await.unwrap(),
        [("a".to_owned(), 1, 2)]
    );
    assert!(second.enqueued::<add::Task>().await.unwrap().is_empty());
}

#[tokio::test]
async fn drain_runs_queued_jobs_and_what_they_enqueue() {
    let env = TestRedis::start().await.unwrap();
    let client = env.client();
    add::with()
        .client(client)
        .enqueue("x".into(), 2, 3)
        .await
        .unwrap();
    // A chain: its second step is enqueued by the first one's end.
    dtask::chain(add::call("y".into(), 20, 1))
        .then(negate::with_input())
        .client(client)
        .enqueue()
        .await
        .unwrap();
    assert_eq!(
        env.enqueued::<add::Task>().await.unwrap(),
        [("x".to_owned(), 2, 3), ("y".to_owned(), 20, 1)]
    );
    assert!(env.enqueued::<negate::Task>().await.unwrap().is_empty());

    let ran = env.drain().await.unwrap();
    assert_eq!(ran.len(), 3, "{ran:?}");
    assert!(ran.iter().all(RanJob::succeeded), "{ran:?}");
    let mut sums: Vec<String> = outcome_of(&ran, add::NAME)
        .into_iter()
        .map(|outcome| match outcome {
            RunOutcome::Succeeded { result } => result.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    sums.sort();
    assert_eq!(sums, ["21", "5"]);
    assert_eq!(
        outcome_of(&ran, negate::NAME),
        [&RunOutcome::Succeeded {
            result: "-21".into()
        }]
    );
    assert!(env.enqueued::<add::Task>().await.unwrap().is_empty());
}

#[tokio::test]
async fn delayed_and_retrying_jobs_run_when_made_due() {
    let env = TestRedis::start().await.unwrap();
    add::with()
        .client(env.client())
        .delay(Duration::from_secs(3600))
        .enqueue("later".into(), 1, 1)
        .await
        .unwrap();
    doomed::with()
        .client(env.client())
        .enqueue("d".into(), "no luck".into())
        .await
        .unwrap();
    assert_eq!(env.enqueued::<add::Task>().await.unwrap().len(), 1);

    // The delayed job stays; the doomed one fails its first attempt and waits to retry.
    let ran = env.drain().await.unwrap();
    assert!(outcome_of(&ran, add::NAME).is_empty(), "{ran:?}");
    assert!(matches!(
        outcome_of(&ran, doomed::NAME)[..],
        [RunOutcome::Retrying { .. }]
    ));

    // Made due: the delayed job runs, the doomed one fails again, then dies (retries = 2).
    assert_eq!(env.run_scheduled_now().await.unwrap(), 2);
    let ran = env.drain().await.unwrap();
    assert_eq!(
        outcome_of(&ran, add::NAME),
        [&RunOutcome::Succeeded { result: "2".into() }]
    );
    assert_eq!(env.run_scheduled_now().await.unwrap(), 1);
    let ran = env.drain().await.unwrap();
    match outcome_of(&ran, doomed::NAME)[..] {
        [RunOutcome::Dead { error }] => assert!(error.contains("no luck"), "{error}"),
        ref other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_drain_waits_for_every_step_of_long_chains() {
    let env = TestRedis::start().await.unwrap();
    // Many rounds: a drain that looked at its queues one read at a time once returned while
    // a step was between the outbox and its queue.
    for round in 0..6 {
        for chain in 0..4 {
            let mut workflow = dtask::chain(add::call(format!("c{chain}"), chain, 0));
            for _ in 0..15 {
                workflow = workflow.then(negate::with_input());
            }
            workflow.client(env.client()).enqueue().await.unwrap();
        }
        let ran = env.drain().await.unwrap();
        assert_eq!(ran.len(), 4 * 16, "round {round}: {ran:?}");
        assert!(ran.iter().all(RanJob::succeeded), "round {round}: {ran:?}");
    }
}

#[tokio::test]
async fn old_jobs_of_a_versioned_task_read_and_run_through_its_migration() {
    let env = TestRedis::start().await.unwrap();
    // A job of version 1, as a deploy before the change enqueued it.
    env.client()
        .queue("versioned")
        .push_raw(
            format!(
                r#"{{"v":1,"id":"old-rename","t":"{}","a":["Ada","Lovelace"],"at":1}}"#,
                rename::NAME
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    rename::with()
        .client(env.client())
        .enqueue("Grace Hopper".into(), false)
        .await
        .unwrap();
    assert_eq!(
        env.enqueued::<rename::Task>().await.unwrap(),
        [
            ("Ada Lovelace".to_owned(), true),
            ("Grace Hopper".to_owned(), false)
        ]
    );
    let ran = env.drain().await.unwrap();
    let mut results: Vec<&RunOutcome> = outcome_of(&ran, rename::NAME);
    results.sort_by_key(|outcome| format!("{outcome:?}"));
    assert_eq!(
        results,
        [
            &RunOutcome::Succeeded {
                result: "\"Ada Lovelace formal=true\"".into()
            },
            &RunOutcome::Succeeded {
                result: "\"Grace Hopper formal=false\"".into()
            }
        ]
    );
}
