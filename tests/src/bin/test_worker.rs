//! A worker process for the tests that kill or stop workers: runs the test tasks from the
//! queues in `TEST_QUEUES` (comma-separated) until SIGTERM or SIGINT.

use std::time::Duration;

use dtask_tests as _;

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
    worker
        .queues(queues)
        .shutdown_timeout(Duration::from_millis(grace_ms))
        .run()
        .await
}
