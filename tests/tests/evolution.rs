//! A task's signature changes between deploys: jobs enqueued by one binary run on a worker
//! built from changed code (`evolve_v1` and `evolve_v2`, see `dtask_tests::evolve`). Each rule
//! of the README's "Changing a task safely" is checked as a user would meet it.

use std::process::Command;
use std::time::Duration;

use dtask::{JobId, JobStatus};
use dtask_tests::evolve::{QUEUE, seen_key};
use dtask_tests::harness::{WorkerProcess, eventually, start_with_client};

const V1: &str = env!("CARGO_BIN_EXE_evolve_v1");
const V2: &str = env!("CARGO_BIN_EXE_evolve_v2");
const WAIT: Duration = Duration::from_secs(20);

/// Runs `exe enqueue`: the ids of the jobs it enqueued, by task.
fn enqueue_with(exe: &str, url: &str, prefix: &str) -> Vec<(String, JobId)> {
    let output = Command::new(exe)
        .arg("enqueue")
        .env("DTASK_REDIS_URL", url)
        .env("DTASK_PREFIX", prefix)
        .output()
        .expect("run the producer");
    assert!(
        output.status.success(),
        "{exe} enqueue failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| {
            let (task, id) = line.split_once(' ').expect("`task id` lines");
            (task.to_owned(), JobId::from(id))
        })
        .collect()
}

/// Waits until the job `id` has succeeded; panics with its last status when it does not.
async fn succeeds(client: &dtask::Client, id: JobId) {
    let handle = client.job(id);
    eventually(WAIT, "the job succeeds", || async {
        let status = handle.status().await.unwrap();
        matches!(status, JobStatus::Succeeded { .. }).then_some(())
    })
    .await;
}

async fn seen(raw: &redis::aio::MultiplexedConnection, prefix: &str) -> Vec<String> {
    let mut conn = raw.clone();
    redis::cmd("LRANGE")
        .arg(seen_key(prefix))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn old_jobs_run_on_a_changed_task_and_new_jobs_wait_for_a_new_worker() {
    let (redis, client, raw, prefix) = start_with_client("evolve").await;
    let url = redis.url();

    // Old jobs, new worker: a trailing Option and a defaulted field read as absent; a plain
    // parameter added makes the old job dead, with a reason that says what to do.
    let old_jobs = enqueue_with(V1, &url, &prefix);
    let mut worker = WorkerProcess::start_with_args(V2, &["work"], &url, &prefix, QUEUE, &[]);
    let id_of = |jobs: &[(String, JobId)], task: &str| {
        jobs.iter()
            .find(|(t, _)| t == task)
            .expect("enqueued")
            .1
            .clone()
    };
    let dead = eventually(WAIT, "the count job dies", || async {
        let dead = client.queue(QUEUE).dead_jobs(10).await.unwrap();
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].id, id_of(&old_jobs, "count"));
    assert!(
        dead[0]
            .error
            .contains("the job lacks argument 2 (`times`), and its type cannot be missing"),
        "{}",
        dead[0].error
    );
    assert_eq!(dead[0].attempts, 0, "a job of a wrong shape never runs");
    let mut saw = eventually(WAIT, "the compatible old jobs ran", || async {
        let saw = seen(&raw, &prefix).await;
        (saw.len() == 3).then_some(saw)
    })
    .await;
    saw.sort();
    // `rename` is version 2 now: its version-1 job went through the migration.
    assert_eq!(
        saw,
        [
            "greet Ann shout=None",
            "order 7 note=\"\"",
            "rename Ada Lovelace formal=true"
        ]
    );
    // A run records what it saw before its job is settled: the job succeeds a moment later.
    for task in ["greet", "order", "rename"] {
        succeeds(&client, id_of(&old_jobs, task)).await;
    }
    worker.kill();

    // New jobs, old worker: one has an argument the old task lacks, the other a version the
    // old task does not know; both are put off (not dead) until a new worker runs them.
    let new_jobs = enqueue_with(V2, &url, &prefix);
    let bob = id_of(&new_jobs, "greet");
    let grace = id_of(&new_jobs, "rename");
    let mut old_worker = WorkerProcess::start_with_args(V1, &["work"], &url, &prefix, QUEUE, &[]);
    eventually(WAIT, "the old worker puts the new jobs off", || async {
        let stats = client.queue(QUEUE).stats().await.unwrap();
        (stats.retry == 2).then_some(())
    })
    .await;
    old_worker.kill();
    assert_eq!(
        client.queue(QUEUE).stats().await.unwrap().dead,
        1,
        "not dead"
    );
    assert_eq!(
        seen(&raw, &prefix).await.len(),
        3,
        "the old worker ran neither"
    );
    let mut new_worker = WorkerProcess::start_with_args(V2, &["work"], &url, &prefix, QUEUE, &[]);
    eventually(WAIT, "a new worker runs the new jobs", || async {
        let saw = seen(&raw, &prefix).await;
        (saw.contains(&"greet Bob shout=Some(true)".to_owned())
            && saw.contains(&"rename Grace Hopper formal=false".to_owned()))
        .then_some(())
    })
    .await;
    for id in [bob, grace] {
        succeeds(&client, id).await;
    }
    new_worker.kill();
}
