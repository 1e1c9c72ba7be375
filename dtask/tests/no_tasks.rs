//! A binary with no task (its tasks live in a library crate it never links) cannot run a
//! worker: it refuses to start, and says why, before it even reaches Redis.

#[tokio::test]
async fn a_worker_in_a_binary_without_tasks_refuses_to_start_and_says_why() {
    // The refusal comes before any connection: whatever Redis the environment names (or none).
    let error = dtask::Worker::from_env()
        .expect("valid settings")
        .run_until(std::future::ready(()))
        .await
        .expect_err("a worker with no task must not start");
    let message = error.to_string();
    assert!(matches!(error, dtask::Error::Config(_)), "{error:?}");
    assert!(message.contains("no `#[dtask::task]`"), "{message}");
    assert!(message.contains("use that_crate as _;"), "{message}");
}
