//! What the two versions of the `evolve` binaries share (tests/evolution.rs): a deploy of a
//! task's old signature and of its new one, each able to enqueue its jobs or run a worker, and
//! a list in Redis where the handlers say what they were given.
//!
//! Run as `evolve_vN enqueue` (enqueues the version's jobs and prints `task id` lines) or
//! `evolve_vN work` (runs the queue `evolve` until killed); both read `DTASK_REDIS_URL` and
//! `DTASK_PREFIX`.

use std::future::Future;
use std::time::Duration;

/// The queue of the evolving tasks.
pub const QUEUE: &str = "evolve";

/// The list the handlers push what they saw to, under `prefix`.
pub fn seen_key(prefix: &str) -> String {
    format!("{prefix}:evolve-seen")
}

/// Notes what a handler was given, for the test to read.
pub async fn saw(what: String) {
    let url = std::env::var("DTASK_REDIS_URL").unwrap_or_default();
    let prefix = std::env::var("DTASK_PREFIX").unwrap_or_default();
    let client = redis::Client::open(url).expect("DTASK_REDIS_URL is a Redis URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("the test's Redis is up");
    let _: () = redis::cmd("RPUSH")
        .arg(seen_key(&prefix))
        .arg(what)
        .query_async(&mut conn)
        .await
        .expect("RPUSH works");
}

/// Runs the binary's mode: `enqueue` with `enqueue` (its `task id` lines are printed), or
/// `work`: a worker of [`QUEUE`] that puts off jobs it cannot run for up to a minute.
pub async fn main<F, Fut>(enqueue: F) -> Result<(), dtask::Error>
where
    F: FnOnce(dtask::Client) -> Fut,
    Fut: Future<Output = Result<Vec<(String, dtask::JobId)>, dtask::Error>>,
{
    match std::env::args().nth(1).as_deref() {
        Some("enqueue") => {
            let client = dtask::Client::from_env().await?;
            for (task, id) in enqueue(client).await? {
                println!("{task} {id}");
            }
            Ok(())
        }
        Some("work") => {
            dtask::Worker::from_env()?
                .queues([QUEUE])
                .unknown_job_grace(Duration::from_secs(60))
                .run()
                .await
        }
        other => panic!("usage: evolve_vN enqueue|work (got {other:?})"),
    }
}
