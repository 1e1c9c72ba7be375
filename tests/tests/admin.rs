//! The operator's API against a real Redis: what a queue holds, job by job; dead jobs run again
//! after a bad deploy, with a fresh attempt budget and exactly once even when two operators
//! click at once; deletion, purge; a pause that holds across worker restarts.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use dtask::{Cancelled, JobState, Order, PurgeState, Worker};
use dtask_tests::harness::{eventually, start_with_client, wait_dead};
use dtask_tests::tasks;

const WAIT: Duration = Duration::from_secs(10);

/// The keys whose charges fail: a bad deploy, as a set of the keys it breaks.
static BROKEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
/// Every charge that went through, by key.
static CHARGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn break_deploy(key: &str) {
    BROKEN
        .lock()
        .unwrap()
        .get_or_insert_with(HashSet::new)
        .insert(key.to_owned());
}

fn fix_deploy(key: &str) {
    if let Some(broken) = BROKEN.lock().unwrap().as_mut() {
        broken.remove(key);
    }
}

fn charges(key: &str) -> usize {
    CHARGED.lock().unwrap().iter().filter(|k| *k == key).count()
}

/// Fails while the deploy is broken for `key`; else records the charge.
#[dtask::task(queue = "billing", retries = 1)]
async fn charge(key: String, cents: u64) -> Result<u64, String> {
    let broken = BROKEN
        .lock()
        .unwrap()
        .as_ref()
        .is_some_and(|broken| broken.contains(&key));
    if broken {
        return Err(format!("payment API v2 rejected {key}"));
    }
    CHARGED.lock().unwrap().push(key);
    Ok(cents)
}

#[tokio::test]
async fn dead_jobs_run_again_with_a_fresh_attempt_budget_after_a_bad_deploy() {
    let (_redis, client, _raw, _prefix) = start_with_client("admin-revive").await;
    let key = "revive".to_owned();
    break_deploy(&key);
    let worker = Worker::new(&client).queues(["billing"]).spawn();
    let mut jobs = Vec::new();
    for cents in [100, 200, 300, 400] {
        let job = charge::with()
            .client(&client)
            .enqueue(key.clone(), cents)
            .await
            .unwrap();
        jobs.push(job);
    }
    for job in &jobs {
        let (attempts, error) = wait_dead(job, WAIT).await;
        assert_eq!(
            (attempts, error.as_str()),
            (2, "payment API v2 rejected revive")
        );
    }
    let queue = client.queue("billing");
    assert_eq!(queue.stats().await.unwrap().dead, 4);
    let dead = queue
        .jobs(JobState::Dead, Order::OldestFirst, 0, 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 4);
    assert!(dead.iter().all(|job| job.state == JobState::Dead
        && job.attempts == 2
        && job.task.as_deref() == Some(charge::NAME)
        && job.last_error.as_deref() == Some("payment API v2 rejected revive")
        && job.died_at.is_some()));
    let args: Vec<serde_json::Value> = dead.iter().filter_map(|job| job.args.clone()).collect();
    assert!(
        args.contains(&serde_json::json!(["revive", 300])),
        "{args:?}"
    );

    // The fix is deployed: one job is deleted, one retried by id, then all the others.
    fix_deploy(&key);
    assert_eq!(queue.delete_dead(&[jobs[3].id().clone()]).await.unwrap(), 1);
    assert_eq!(queue.retry_dead(&[jobs[0].id().clone()]).await.unwrap(), 1);
    assert_eq!(jobs[0].wait(WAIT).await.unwrap(), 100);
    assert_eq!(queue.retry_all_dead().await.unwrap(), 2);
    assert_eq!(jobs[1].wait(WAIT).await.unwrap(), 200);
    assert_eq!(jobs[2].wait(WAIT).await.unwrap(), 300);
    assert_eq!(
        charges(&key),
        3,
        "each revived job ran once, the deleted one never"
    );
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.dead, stats.pending, stats.retry), (0, 0, 0));
    // What the workers counted: 4 jobs × 2 failed attempts, then 3 successes.
    let throughput = queue.throughput().await.unwrap();
    for counts in [throughput.last_minute, throughput.last_hour] {
        assert_eq!((counts.succeeded, counts.failed), (3, 8), "{throughput:?}");
    }
    assert_eq!(throughput.per_minute.len(), 60);
    let minutes: u64 = throughput.per_minute.iter().map(|(_, c)| c.succeeded).sum();
    assert_eq!(minutes, 3);
    // Nothing left to act on.
    assert_eq!(queue.retry_all_dead().await.unwrap(), 0);
    assert_eq!(queue.delete_dead(&[jobs[3].id().clone()]).await.unwrap(), 0);
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn retrying_all_dead_ends_even_when_the_revived_jobs_die_again_at_once() {
    let (_redis, client, _raw, _prefix) = start_with_client("admin-again").await;
    let key = "again".to_owned();
    break_deploy(&key);
    let worker = Worker::new(&client).queues(["billing"]).spawn();
    let mut jobs = Vec::new();
    for cents in 0..300 {
        jobs.push(
            charge::with()
                .client(&client)
                .retries(0)
                .enqueue(key.clone(), cents)
                .await
                .unwrap(),
        );
    }
    for job in &jobs {
        wait_dead(job, WAIT).await;
    }
    // The deploy is still broken: every revived job dies again while the walk goes on. The
    // walk takes the records there when it began, once each, and ends.
    let queue = client.queue("billing");
    assert_eq!(queue.retry_all_dead().await.unwrap(), 300);
    for job in &jobs {
        wait_dead(job, WAIT).await;
    }
    assert_eq!(queue.stats().await.unwrap().dead, 300);
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn two_operators_retrying_at_once_revive_each_job_once() {
    let (redis, client, _raw, prefix) = start_with_client("admin-race").await;
    let key = "race".to_owned();
    break_deploy(&key);
    let worker = Worker::new(&client).queues(["billing"]).spawn();
    let mut jobs = Vec::new();
    for cents in 0..40 {
        jobs.push(
            charge::with()
                .client(&client)
                .enqueue(key.clone(), cents)
                .await
                .unwrap(),
        );
    }
    for job in &jobs {
        wait_dead(job, WAIT).await;
    }
    worker.shutdown().await.unwrap();
    fix_deploy(&key);
    // Two operators, each with a client of their own, retry everything at the same moment.
    let other = dtask::Client::connect_with_prefix(&redis.url(), &prefix)
        .await
        .unwrap();
    let (mine, theirs) = (client.queue("billing"), other.queue("billing"));
    let (a, b) = tokio::join!(mine.retry_all_dead(), theirs.retry_all_dead());
    assert_eq!(a.unwrap() + b.unwrap(), 40, "every job revived once in all");
    let stats = client.queue("billing").stats().await.unwrap();
    assert_eq!((stats.pending, stats.dead), (40, 0));
    let pending = client
        .queue("billing")
        .jobs(JobState::Pending, Order::OldestFirst, 0, 100)
        .await
        .unwrap();
    let ids: HashSet<_> = pending.iter().map(|job| job.id.clone()).collect();
    assert_eq!(ids.len(), 40, "no job twice in the queue");
    assert!(
        pending
            .iter()
            .all(|job| job.attempts == 0 && job.last_error.is_none())
    );
    let worker = Worker::new(&client).queues(["billing"]).spawn();
    for job in &jobs {
        job.wait(WAIT).await.unwrap();
    }
    assert_eq!(charges(&key), 40);
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_paused_queue_runs_nothing_across_worker_restarts_and_resumes() {
    let (_redis, client, _raw, _prefix) = start_with_client("admin-pause").await;
    let queue = client.queue("gated-answer");
    queue.pause().await.unwrap();
    assert!(queue.is_paused().await.unwrap());
    let key = "pause".to_owned();
    // Enqueue still works on a paused queue.
    let held = tasks::gated_answer::with()
        .client(&client)
        .enqueue(key.clone())
        .await
        .unwrap();
    for restart in 0..2 {
        let worker = Worker::new(&client)
            .queues(["gated-answer", "naps"])
            .spawn();
        // The worker is up and fetching: a job of its other queue runs...
        let nap_key = format!("pause-nap-{restart}");
        let nap = tasks::nap::with()
            .client(&client)
            .enqueue(nap_key.clone(), 0)
            .await
            .unwrap();
        nap.wait(WAIT).await.unwrap();
        // ... and its idle waiters have had a full wait on the paused queue.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(tasks::runs(&key).is_empty(), "a paused queue's job started");
        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.pending, stats.running, stats.paused), (1, 0, true));
        worker.shutdown().await.unwrap();
    }
    let worker = Worker::new(&client).queues(["gated-answer"]).spawn();
    queue.resume().await.unwrap();
    eventually(
        Duration::from_secs(3),
        "the resumed queue's job starts",
        || async { (!tasks::runs(&key).is_empty()).then_some(()) },
    )
    .await;
    // While it runs, the operator sees it on the worker.
    let running = queue
        .jobs(JobState::Running, Order::OldestFirst, 0, 10)
        .await
        .unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(&running[0].id, held.id());
    let workers = queue.workers().await.unwrap();
    assert_eq!(workers.len(), 1);
    assert_eq!(running[0].worker.as_deref(), Some(workers[0].id.as_str()));
    assert_eq!(workers[0].pid, Some(std::process::id()));
    assert_eq!(workers[0].in_flight, 1);
    tasks::open_gate(&key);
    assert_eq!(held.wait(WAIT).await.unwrap(), 42);
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_operator_lists_finds_and_purges_jobs_in_every_state() {
    let (_redis, client, mut raw, prefix) = start_with_client("admin-list").await;
    let key = "list".to_owned();
    let mut pending = Vec::new();
    for cents in [1, 2, 3] {
        pending.push(
            charge::with()
                .client(&client)
                .enqueue(key.clone(), cents)
                .await
                .unwrap(),
        );
    }
    let later = charge::with()
        .client(&client)
        .delay(Duration::from_secs(3600))
        .enqueue(key.clone(), 9)
        .await
        .unwrap();
    let nap = tasks::nap::with()
        .client(&client)
        .enqueue("list-nap".into(), 0)
        .await
        .unwrap();
    // Queues are found from Redis, not from the tasks this binary has.
    assert_eq!(client.queues().await.unwrap(), ["billing", "naps"]);
    let queue = client.queue("billing");
    let oldest = queue
        .jobs(JobState::Pending, Order::OldestFirst, 0, 2)
        .await
        .unwrap();
    let ids: Vec<_> = oldest.iter().map(|job| job.id.clone()).collect();
    assert_eq!(ids, [pending[0].id().clone(), pending[1].id().clone()]);
    let newest = queue
        .jobs(JobState::Pending, Order::NewestFirst, 0, 1)
        .await
        .unwrap();
    assert_eq!(&newest[0].id, pending[2].id());
    assert_eq!(newest[0].args, Some(serde_json::json!(["list", 3])));
    assert!(
        newest[0]
            .enqueued_at
            .is_some_and(|at| at <= SystemTime::now())
    );
    let second_page = queue
        .jobs(JobState::Pending, Order::OldestFirst, 2, 2)
        .await
        .unwrap();
    assert_eq!(second_page.len(), 1);
    let scheduled = queue
        .jobs(JobState::Scheduled, Order::OldestFirst, 0, 10)
        .await
        .unwrap();
    assert_eq!(scheduled.len(), 1);
    let due = scheduled[0].due_at.unwrap();
    assert!(
        due > SystemTime::now() + Duration::from_secs(3500),
        "{due:?}"
    );
    // One job by id, in its queue or in any.
    let found = queue.job(later.id()).await.unwrap().unwrap();
    assert_eq!(
        (found.state, found.queue.as_str()),
        (JobState::Scheduled, "billing")
    );
    let found = client.find_job(nap.id()).await.unwrap().unwrap();
    assert_eq!(
        (found.state, found.queue.as_str()),
        (JobState::Pending, "naps")
    );
    assert!(client.find_job(&"nope".into()).await.unwrap().is_none());
    assert!(client.find_job(&"".into()).await.unwrap().is_none());
    assert_eq!(queue.cancel(&"".into()).await.unwrap(), Cancelled::NotFound);
    // A suspect (a job in flight on two workers that died) is pending too: listed, found,
    // cancelled and purged like one.
    let suspect = dtask::JobId::from("0SuspectJob00000000001");
    let envelope = format!(
        r#"{{"v":1,"id":"{suspect}","t":"{}","a":["list",5],"at":1764485096000}}"#,
        charge::NAME
    );
    let _: () = redis::cmd("RPUSH")
        .arg(format!("{prefix}:{{billing}}:suspects"))
        .arg(&envelope)
        .query_async(&mut raw)
        .await
        .unwrap();
    let found = queue.job(&suspect).await.unwrap().unwrap();
    assert_eq!(found.state, JobState::Pending);
    assert_eq!(
        queue.cancel(&suspect).await.unwrap(),
        Cancelled::Cancelled(JobState::Pending)
    );
    assert_eq!(queue.stats().await.unwrap().suspects, 0);
    // A waiting job is cancelled by id: it leaves its queue, and its caller stops waiting.
    let cancelled = queue.cancel(later.id()).await.unwrap();
    assert_eq!(cancelled, Cancelled::Cancelled(JobState::Scheduled));
    let (_, error) = wait_dead(&later, WAIT).await;
    assert_eq!(error, dtask::CANCELLED_ERROR);
    assert_eq!(queue.cancel(later.id()).await.unwrap(), Cancelled::NotFound);
    let cancelled = queue.cancel(pending[1].id()).await.unwrap();
    assert_eq!(cancelled, Cancelled::Cancelled(JobState::Pending));
    // Purges empty one state at once and say how many jobs it held.
    assert_eq!(queue.purge(PurgeState::Pending).await.unwrap(), 2);
    assert_eq!(queue.purge(PurgeState::Scheduled).await.unwrap(), 0);
    assert_eq!(queue.purge(PurgeState::Retry).await.unwrap(), 0);
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.pending, stats.scheduled), (0, 0));
    assert_eq!(client.queue("naps").stats().await.unwrap().pending, 1);
    assert!("finished".parse::<JobState>().is_err());
    assert!("dead".parse::<PurgeState>().is_err());
}

#[tokio::test]
async fn a_job_is_found_by_id_deep_in_a_long_queue_and_not_mistaken_for_one_that_quotes_its_id() {
    let (_redis, client, mut raw, prefix) = start_with_client("admin-find").await;
    // 25,000 pending jobs: the oldest is more than two search slices from the newest end.
    let jobs = charge::with()
        .client(&client)
        .enqueue_many((0..25_000).map(|n| (format!("deep-{n}"), n)))
        .await
        .unwrap();
    // Newer still, a few large jobs: a search call stops after about 1 MB of entries.
    charge::with()
        .client(&client)
        .enqueue_many((0..6).map(|n| ("x".repeat(400_000), n)))
        .await
        .unwrap();
    let queue = client.queue("billing");
    for (n, job) in [
        (0, &jobs[0]),
        (12_345, &jobs[12_345]),
        (24_999, &jobs[24_999]),
    ] {
        let found = queue.job(job.id()).await.unwrap().unwrap();
        assert_eq!(found.state, JobState::Pending);
        assert_eq!(
            found.args,
            Some(serde_json::json!([format!("deep-{n}"), n]))
        );
    }
    // A newer job whose argument is another job's id (quoted, as in the payload) is not it.
    let target = jobs[3].id().clone();
    let decoy = charge::with()
        .client(&client)
        .enqueue(target.to_string(), 1)
        .await
        .unwrap();
    let found = queue.job(&target).await.unwrap().unwrap();
    assert_eq!(&found.id, &target);
    assert_ne!(&found.id, decoy.id());
    // A dead job, and a scheduled one, deep in their sets.
    let dead_id = dtask::JobId::from("0DeadDeepJob0000000001");
    let mut pipe = redis::pipe();
    for n in 0..12_000u64 {
        let id = if n == 0 {
            dead_id.to_string()
        } else {
            format!("0DeadFiller{n:011}")
        };
        let record = format!(
            r#"{{"id":"{id}","task":"{}","error":"boom {n}","attempts":2,"died_at_ms":{}}}"#,
            charge::NAME,
            1_764_485_096_000 + n
        );
        pipe.cmd("ZADD")
            .arg(format!("{prefix}:{{billing}}:dead"))
            .arg(1_764_485_096_000 + n)
            .arg(record)
            .ignore();
    }
    let _: () = pipe.query_async(&mut raw).await.unwrap();
    let found = client.find_job(&dead_id).await.unwrap().unwrap();
    assert_eq!(
        (found.state, found.last_error.as_deref()),
        (JobState::Dead, Some("boom 0"))
    );
    let later = charge::with()
        .client(&client)
        .delay(Duration::from_secs(3600))
        .enqueue("later".into(), 1)
        .await
        .unwrap();
    let found = queue.job(later.id()).await.unwrap().unwrap();
    assert_eq!(found.state, JobState::Scheduled);
    assert!(found.due_at.is_some_and(|due| due > SystemTime::now()));
    assert!(queue.job(&"0NoSuchJob".into()).await.unwrap().is_none());
}
