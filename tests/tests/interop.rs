//! Producers in other languages (interop/python, on redis-py; interop/node, on ioredis) enqueue
//! jobs that a Rust worker runs, end to end against a real redis-server: now, delayed, many,
//! a trailing Option left out, NaN refused before it reaches Redis; then the producer reads
//! the outcomes back. `interop/setup.sh` installs redis-py (PyPI) and ioredis (npm) once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dtask::{JobId, JobStatus, Worker};
use dtask_tests::harness::start_with_client;
use dtask_tests::tasks;

const WAIT: Duration = Duration::from_secs(20);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_owned()
}

/// Runs interop/setup.sh: the venv's python.
fn set_up() -> String {
    let output = Command::new("bash")
        .arg(repo().join("interop/setup.sh"))
        .output()
        .expect("run interop/setup.sh");
    assert!(
        output.status.success(),
        "interop/setup.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Runs a producer's demo (`program` and its script) with `args`: its output lines.
fn run(program: &str, script: &str, args: &[&str], url: &str, prefix: &str) -> Vec<String> {
    let output = Command::new(program)
        .arg(repo().join(script))
        .args(args)
        .env("DTASK_REDIS_URL", url)
        .env("DTASK_PREFIX", prefix)
        .env("PYTHONPATH", repo().join("interop/python"))
        .output()
        .unwrap_or_else(|e| panic!("run {program} {script}: {e}"));
    assert!(
        output.status.success(),
        "{script} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn produced_jobs_run(label: &str, program: &str, script: &str, note: &str) {
    let (redis, client, _raw, prefix) = start_with_client(label).await;
    let url = redis.url();
    let lines = run(program, script, &["enqueue"], &url, &prefix);
    assert_eq!(
        lines.last().map(String::as_str),
        Some("nan refused"),
        "{lines:?}"
    );
    let ids: HashMap<String, JobId> = lines[..lines.len() - 1]
        .iter()
        .map(|line| {
            let (label, id) = line.split_once(' ').expect("`label id` lines");
            (label.to_owned(), JobId::from(id))
        })
        .collect();
    assert_eq!(ids.len(), 4, "{lines:?}");
    let job = |label: &str| tasks::interop_greet::job(ids[label].clone()).with_client(&client);
    // Before any worker: the records the producer wrote read as Rust's do.
    assert!(matches!(
        job("now").status().await.unwrap(),
        JobStatus::Queued
    ));
    assert!(matches!(
        job("delayed").status().await.unwrap(),
        JobStatus::Scheduled { .. }
    ));

    let worker = Worker::new(&client).queues(["interop"]).spawn();
    let expected = [
        ("now", "hello Ann, hello Ann".to_owned()),
        ("delayed", format!("hello Bob ({note})")),
        ("many0", "hello Cy".to_owned()),
        ("many1", "hello Di, hello Di, hello Di".to_owned()),
    ];
    for (label, greeting) in &expected {
        assert_eq!(&job(label).wait(WAIT).await.unwrap(), greeting, "{label}");
    }
    worker.shutdown().await.unwrap();
    assert_eq!(client.queue("interop").stats().await.unwrap().dead, 0);

    // The producer reads the outcomes back.
    let all: Vec<&str> = expected
        .iter()
        .map(|(label, _)| ids[*label].as_str())
        .collect();
    let checked = run(
        program,
        script,
        &[&["check"], &all[..]].concat(),
        &url,
        &prefix,
    );
    for ((label, greeting), line) in expected.iter().zip(&checked) {
        let want = format!(
            "{} succeeded {}",
            ids[*label],
            serde_json::to_string(greeting).unwrap()
        );
        assert_eq!(line, &want);
    }
}

#[tokio::test]
async fn a_python_producer_enqueues_jobs_a_rust_worker_runs() {
    let python = set_up();
    produced_jobs_run(
        "interop-python",
        &python,
        "interop/python/enqueue_demo.py",
        "from python",
    )
    .await;
}

#[tokio::test]
async fn a_node_producer_enqueues_jobs_a_rust_worker_runs() {
    set_up();
    produced_jobs_run(
        "interop-node",
        "node",
        "interop/node/enqueue_demo.js",
        "from node",
    )
    .await;
}
