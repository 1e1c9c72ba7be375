//! A worker process for the tests that kill or stop workers: runs the test tasks from the
//! queues in `TEST_QUEUES` (comma-separated) until SIGTERM or SIGINT. With `TEST_PERIODIC=
//! NAME,CRON,QUEUE` it also keeps a periodic schedule that enqueues `add("periodic", 1, 2)`
//! into QUEUE.

use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), dtask::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let queues: Vec<String> = std::env::var("TEST_QUEUES")
        .unwrap_or_else(|_| "marks".into())
        .split(',')
        .map(str::to_owned)
        .collect();
    let grace_ms: u64 = std::env::var("TEST_GRACE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let mut worker = dtask::Worker::from_env()?;
    if let Some(lease_ms) = std::env::var("TEST_RECOVERY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        worker = worker.recovery_after(Duration::from_millis(lease_ms));
    }
    if let Ok(spec) = std::env::var("TEST_PERIODIC") {
        let mut parts = spec.splitn(3, ',');
        let (name, cron, queue) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        let job = dtask_tests::tasks::add::with()
            .queue(queue)
            .call("periodic".into(), 1, 2);
        worker = worker.periodic(dtask::periodic(name, cron, job));
    }
    worker
        .queues(queues)
        .shutdown_timeout(Duration::from_millis(grace_ms))
        .run()
        .await
}
