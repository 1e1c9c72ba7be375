//! Injected state, middleware, job headers and lifecycle hooks under adversarial use, against a
//! real Redis: regressions from an adversarial review (each failed before its fix), and what
//! held up.

use std::time::Duration;

use dtask::{JobContext, Middleware, Next, RunOutcome, State, Worker};
use dtask_tests::events::{job_key, recorder};
use dtask_tests::harness::{eventually, start_with_client, wait_dead};

const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Finding: the task's `timeout` does not bound the middleware around the run.

/// A task limited to 300 ms per attempt, without retries.
#[dtask::task(queue = "rv-timeout", retries = 0, timeout = "300ms")]
async fn bounded(_key: String) -> u32 {
    1
}

/// A middleware stuck on something (a pool with no free connection, a lock): it never gets to
/// call `next`.
struct Stuck;

#[dtask::async_trait]
impl Middleware for Stuck {
    async fn handle(&self, _job: &JobContext, next: Next<'_>) -> RunOutcome {
        std::future::pending::<()>().await;
        next.run().await
    }
}

#[tokio::test]
async fn the_task_timeout_bounds_its_middleware_too() {
    let (_redis, client, _raw, _prefix) = start_with_client("rv-timeout").await;
    let worker = Worker::new(&client)
        .queues(["rv-timeout"])
        .shutdown_timeout(Duration::from_millis(200))
        .middleware(Stuck)
        .spawn();
    let job = bounded::with()
        .client(&client)
        .enqueue("stuck".into())
        .await
        .unwrap();
    // An attempt may last 300 ms: the job should be dead (timed out, no retries) well within
    // five seconds. It stays in flight forever instead, its slot taken, never recovered (the
    // worker's heartbeat is fine).
    let outcome = job.wait(Duration::from_secs(5)).await;
    worker.shutdown().await.unwrap();
    assert!(
        matches!(&outcome, Err(dtask::Error::JobDead { error, .. }) if error.contains("timed out")),
        "expected the attempt to time out after 300 ms, got {outcome:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Finding: the missing-state check at start ignores jobs routed with `.queue(..)`; such a job is
// buried on its first run by a worker that lacks the state, instead of being left for one that
// has it (as a job of an unknown task is during a rolling deploy).

#[derive(Clone)]
struct Db(u32);

#[dtask::task(queue = "rv-home")]
async fn needs_db(db: State<Db>, n: u32) -> u32 {
    db.0.0 + n
}

#[tokio::test]
async fn a_job_routed_to_a_worker_without_its_state_waits_for_one_that_has_it() {
    let (_redis, client, _raw, _prefix) = start_with_client("rv-routed").await;
    // Serves the routed queue; the task's own queue is not among its queues, so the start check
    // lets it start without the state. A short grace makes it put the job off by 1 s steps.
    let stateless = Worker::new(&client)
        .queues(["rv-routed"])
        .unknown_job_grace(Duration::from_secs(60))
        .spawn();
    let job = needs_db::with()
        .client(&client)
        .queue("rv-routed")
        .enqueue(1)
        .await
        .unwrap();
    eventually(WAIT, "the job put off, not buried", || async {
        let stats = client.queue("rv-routed").stats().await.unwrap();
        (stats.retry == 1 && stats.dead == 0).then_some(())
    })
    .await;
    stateless.shutdown().await.unwrap();
    // Then a worker that has the state comes along.
    let proper = Worker::new(&client)
        .queues(["rv-routed"])
        .state(Db(41))
        .spawn();
    let outcome = job.wait(WAIT).await;
    proper.shutdown().await.unwrap();
    assert_eq!(outcome.unwrap(), 42);
}

// ---------------------------------------------------------------------------------------------
// Finding: a payload that is not a job is buried by the executor without the Dead hook, while a
// poison burial whose payload cannot be read fires it (`JobEvent::Dead { job: None, .. }`).

#[dtask::task(queue = "rv-garbage")]
async fn garbage_neighbour(_key: String) {}

#[tokio::test]
async fn an_unreadable_payload_buried_fires_one_dead_event() {
    let (_redis, client, mut raw, prefix) = start_with_client("rv-garbage").await;
    let (seen, hook) = recorder();
    let worker = Worker::new(&client)
        .queues(["rv-garbage"])
        .on_job_event(hook)
        .spawn();
    let _: () = redis::cmd("RPUSH")
        .arg(format!("{prefix}:{{rv-garbage}}:pending"))
        .arg("definitely not a job")
        .query_async(&mut raw)
        .await
        .unwrap();
    eventually(WAIT, "the garbage buried", || {
        let mut raw = raw.clone();
        let key = format!("{prefix}:{{rv-garbage}}:dead");
        async move {
            let dead: u64 = redis::cmd("ZCARD")
                .arg(&key)
                .query_async(&mut raw)
                .await
                .unwrap();
            (dead == 1).then_some(())
        }
    })
    .await;
    eventually(WAIT, "the dead event", || async {
        let seen = seen.lock().unwrap().clone();
        seen.iter()
            .any(|line| line.contains(":dead:"))
            .then_some(())
    })
    .await;
    worker.shutdown().await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().filter(|line| line.contains(":dead:")).count(),
        1,
        "a record entered the dead set; hooks saw: {seen:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Finding: a middleware can "succeed" a job with a result that is not JSON; the worker stores a
// success without a value, and the caller's `wait` fails forever with a decode error.

#[dtask::task(queue = "rv-result", retries = 1)]
async fn counted(_key: String) -> u32 {
    7
}

/// Skips jobs the way a reader of "return `Ok` with a result" might: with an empty result.
struct SkipWithEmpty;

#[dtask::async_trait]
impl Middleware for SkipWithEmpty {
    async fn handle(&self, _job: &JobContext, _next: Next<'_>) -> RunOutcome {
        Ok(String::new())
    }
}

#[tokio::test]
async fn a_middleware_result_that_is_not_json_fails_the_attempt() {
    let (_redis, client, _raw, _prefix) = start_with_client("rv-result").await;
    let (seen, hook) = recorder();
    let worker = Worker::new(&client)
        .queues(["rv-result"])
        .middleware(SkipWithEmpty)
        .on_job_event(hook)
        .spawn();
    let job = counted::with()
        .client(&client)
        .enqueue("empty".into())
        .await
        .unwrap();
    let outcome = job.wait(WAIT).await;
    worker.shutdown().await.unwrap();
    // Either the worker refuses the non-JSON result (a failed attempt, as for a task result
    // that cannot be encoded), or the caller can read it. Today: a success nobody can read.
    assert!(
        !matches!(outcome, Err(dtask::Error::DecodeResult { .. })),
        "outcome: {outcome:?}; hooks: {:?}",
        seen.lock().unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// Finding: an envelope whose "h" is `null` (as a producer in another language writes an empty
// optional field; "r" and "err" accept it) is not a job: it goes to the dead set unrun.

#[dtask::task(queue = "rv-hnull")]
async fn hnull(key: String) -> String {
    key
}

#[tokio::test]
async fn an_envelope_with_null_headers_runs() {
    let (_redis, client, mut raw, prefix) = start_with_client("rv-hnull").await;
    let worker = Worker::new(&client).queues(["rv-hnull"]).spawn();
    let payload = format!(
        r#"{{"v":1,"id":"hnull-1","t":"{}","a":["x"],"at":1,"r":null,"err":null,"h":null}}"#,
        hnull::NAME
    );
    let _: () = redis::cmd("RPUSH")
        .arg(format!("{prefix}:{{rv-hnull}}:pending"))
        .arg(&payload)
        .query_async(&mut raw)
        .await
        .unwrap();
    let job = hnull::job("hnull-1").with_client(&client);
    let outcome = job.wait(Duration::from_secs(3)).await;
    let dead: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("{prefix}:{{rv-hnull}}:dead"))
        .arg(0)
        .arg(-1)
        .query_async(&mut raw)
        .await
        .unwrap();
    worker.shutdown().await.unwrap();
    assert!(
        matches!(&outcome, Ok(s) if s == "x"),
        "outcome {outcome:?}; dead set: {dead:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Held up: hooks do not fire for a stale run (its job taken back meanwhile), once for the run
// that settles it.

/// Runs of `slow_ok` that finished.
static SLOW_DONE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[dtask::task(queue = "rv-stale")]
async fn slow_ok(key: String) -> String {
    if key == "slow" {
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    SLOW_DONE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    key
}

#[tokio::test]
async fn a_stale_run_fires_no_succeeded_hook() {
    let (_redis, client, mut raw, prefix) = start_with_client("rv-stale").await;
    let (seen, hook) = recorder();
    let worker = Worker::new(&client)
        .queues(["rv-stale"])
        .concurrency(4)
        .on_job_event(hook)
        .spawn();
    let job = slow_ok::with()
        .client(&client)
        .enqueue("slow".into())
        .await
        .unwrap();
    // While it runs, take it back the way a recovery does: out of the in-flight hash, back to
    // the queue.
    let (key, lease, payload) = eventually(WAIT, "the job in flight", || {
        let mut raw = raw.clone();
        let pattern = format!("{prefix}:{{rv-stale}}:active:*");
        async move {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query_async(&mut raw)
                .await
                .unwrap();
            for key in keys {
                let entries: Vec<(String, String)> = redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async(&mut raw)
                    .await
                    .unwrap();
                if let Some((lease, payload)) =
                    entries.into_iter().find(|(f, _)| !f.starts_with("s:"))
                {
                    return Some((key, lease, payload));
                }
            }
            None
        }
    })
    .await;
    let _: () = redis::pipe()
        .hdel(&key, &lease)
        .rpush(format!("{prefix}:{{rv-stale}}:pending"), &payload)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(job.wait(WAIT).await.unwrap(), "slow");
    // Both runs finish (the stale one and the rerun); the shutdown settles whatever is left.
    eventually(WAIT, "both runs finished", || async {
        (SLOW_DONE.load(std::sync::atomic::Ordering::SeqCst) == 2).then_some(())
    })
    .await;
    worker.shutdown().await.unwrap();
    assert_eq!(*seen.lock().unwrap(), ["slow:succeeded:\"slow\""]);
}

// ---------------------------------------------------------------------------------------------
// Held up: headers with odd characters travel intact; a panicking hook and a panicking
// middleware do not stop the worker; `current()` is None outside and between jobs.

struct OddHeaders;

impl dtask::EnqueueMiddleware for OddHeaders {
    fn on_enqueue(&self, job: &mut dtask::OutgoingJob<'_>) -> Result<(), String> {
        job.set_header("", "\u{0}\u{2028}\"\\</script>é😀");
        job.set_header("k\u{0}\n", "");
        Ok(())
    }
}

#[dtask::task(queue = "rv-odd")]
async fn echo_headers(_key: String) -> Vec<(String, String)> {
    dtask::current()
        .map(|job| job.headers().clone().into_iter().collect())
        .unwrap_or_default()
}

struct PanicAfter;

#[dtask::async_trait]
impl Middleware for PanicAfter {
    async fn handle(&self, job: &JobContext, next: Next<'_>) -> RunOutcome {
        let outcome = next.run().await;
        if job_key(job) == "panic" && job.attempt() == 1 {
            panic!("middleware boom");
        }
        outcome
    }
}

#[tokio::test]
async fn odd_headers_travel_and_panicking_hooks_and_middleware_stop_nothing() {
    let (redis, _plain, _raw, prefix) = start_with_client("rv-odd").await;
    let client = dtask::Client::builder(&redis.url())
        .prefix(&prefix)
        .enqueue_middleware(OddHeaders)
        .connect()
        .await
        .unwrap();
    let worker = Worker::new(&client)
        .queues(["rv-odd"])
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(20))
        .middleware(PanicAfter)
        .on_job_event(|_| panic!("hook boom"))
        .on_worker_event(|_| panic!("worker hook boom"))
        .spawn();
    let job = echo_headers::with()
        .client(&client)
        .enqueue("odd".into())
        .await
        .unwrap();
    let headers = job.wait(WAIT).await.unwrap();
    assert_eq!(
        headers,
        [
            ("".to_owned(), "\u{0}\u{2028}\"\\</script>é😀".to_owned()),
            ("k\u{0}\n".to_owned(), "".to_owned())
        ]
    );
    let panicky = echo_headers::with()
        .client(&client)
        .enqueue("panic".into())
        .await
        .unwrap();
    assert_eq!(
        panicky.wait(WAIT).await.unwrap().len(),
        2,
        "second attempt ran"
    );
    assert!(dtask::current().is_none());
    assert!(!worker.is_finished());
    worker.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Held up: the macro with `State` in odd positions.

/// Only a state, no job argument.
#[dtask::task(queue = "rv-macro")]
async fn only_state(db: State<Db>) -> u32 {
    db.0.0
}

/// `self::State`, a destructuring pattern, and a job argument after it.
mod odd {
    pub use dtask::State;
}

#[dtask::task(queue = "rv-macro")]
async fn odd_state(odd::State(Db(base)): odd::State<Db>, n: u32) -> u32 {
    base * 100 + n
}

#[tokio::test]
async fn state_in_odd_positions_works() {
    let (_redis, client, _raw, _prefix) = start_with_client("rv-macro").await;
    let worker = Worker::new(&client)
        .queues(["rv-macro"])
        .state(Db(3))
        .spawn();
    let a = only_state::with().client(&client).enqueue().await.unwrap();
    let b = odd_state::with().client(&client).enqueue(4).await.unwrap();
    let many = only_state::with()
        .client(&client)
        .enqueue_many([(), ()])
        .await
        .unwrap();
    assert_eq!(a.wait(WAIT).await.unwrap(), 3);
    assert_eq!(b.wait(WAIT).await.unwrap(), 304);
    for job in many {
        assert_eq!(job.wait(WAIT).await.unwrap(), 3);
    }
    worker.shutdown().await.unwrap();
    let _ = wait_dead::<u32>; // keep the import used in every configuration
}
