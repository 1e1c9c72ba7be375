//! Middleware around every run (order, short-circuit, error mapping) and lifecycle hooks (once
//! per event: success, retry, death after retries, success of a job recovered from a dead
//! worker), against a real Redis.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dtask::{JobContext, Middleware, Next, RunOutcome, Worker};
use dtask_tests::events::{job_key, recorder};
use dtask_tests::harness::{eventually, start_with_client, wait_dead};

const WAIT: Duration = Duration::from_secs(10);

static RUNS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn ran(what: String) {
    RUNS.lock().unwrap().push(what);
}

fn runs_of(prefix: &str) -> Vec<String> {
    RUNS.lock()
        .unwrap()
        .iter()
        .filter(|run| run.starts_with(prefix))
        .cloned()
        .collect()
}

/// Records that it ran for `key`, and returns `n * 2`.
#[dtask::task(queue = "mw", retries = 1)]
async fn double(key: String, n: u32) -> u32 {
    ran(format!("{key}:task"));
    n * 2
}

/// Tells which job it is, from `dtask::current()`: its id, attempt and tenant header.
#[dtask::task(queue = "mw")]
async fn whoami(_key: String) -> String {
    match dtask::current() {
        Some(job) => format!(
            "{} {} {}",
            job.id(),
            job.attempt(),
            job.header("tenant").unwrap_or("none")
        ),
        None => "no current job".to_owned(),
    }
}

/// Always fails with `message`.
#[dtask::task(queue = "mw", retries = 1)]
async fn fail(key: String, message: String) -> Result<(), String> {
    ran(format!("{key}:task"));
    Err(message)
}

/// Records entering and leaving, around the rest of the chain.
struct Trace(&'static str);

#[dtask::async_trait]
impl Middleware for Trace {
    async fn handle(&self, job: &JobContext, next: Next<'_>) -> RunOutcome {
        let key = job_key(job);
        ran(format!("{key}:{}>", self.0));
        let outcome = next.run().await;
        ran(format!("{key}:<{}", self.0));
        outcome
    }
}

/// Skips jobs whose key starts with `skip`, with a result of its own; rewrites errors.
struct Gate;

#[dtask::async_trait]
impl Middleware for Gate {
    async fn handle(&self, job: &JobContext, next: Next<'_>) -> RunOutcome {
        if job_key(job).starts_with("skip") {
            return Ok("0".to_owned());
        }
        next.run()
            .await
            .map_err(|error| format!("{} attempt {}: {error}", job.task(), job.attempt()))
    }
}

#[tokio::test]
async fn middleware_runs_in_order_can_skip_a_job_and_rewrite_its_error() {
    let (_redis, client, _raw, _prefix) = start_with_client("middleware").await;
    let worker = Worker::new(&client)
        .queues(["mw"])
        .retry_backoff(Duration::from_millis(20), Duration::from_millis(50))
        .middleware(Trace("outer"))
        .middleware(Gate)
        .middleware_for([fail::NAME], Trace("fail-only"))
        .middleware(Trace("inner"))
        .spawn();
    let job = double::with()
        .client(&client)
        .enqueue("order".into(), 21)
        .await
        .unwrap();
    assert_eq!(job.wait(WAIT).await.unwrap(), 42);
    assert_eq!(
        runs_of("order:"),
        [
            "order:outer>",
            "order:inner>",
            "order:task",
            "order:<inner",
            "order:<outer"
        ]
    );
    let skipped = double::with()
        .client(&client)
        .enqueue("skip-me".into(), 5)
        .await
        .unwrap();
    assert_eq!(
        skipped.wait(WAIT).await.unwrap(),
        0,
        "the middleware's result"
    );
    assert_eq!(runs_of("skip-me:"), ["skip-me:outer>", "skip-me:<outer"]);
    let failed = fail::with()
        .client(&client)
        .enqueue("mapped".into(), "smtp said no".into())
        .await
        .unwrap();
    let (attempts, error) = wait_dead(&failed, WAIT).await;
    assert_eq!(attempts, 2);
    assert_eq!(error, format!("{} attempt 2: smtp said no", fail::NAME));
    assert_eq!(
        runs_of("mapped:fail-only>").len(),
        2,
        "the task's own middleware ran on both attempts"
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn hooks_fire_once_per_event_also_for_a_job_recovered_from_a_dead_worker() {
    let (_redis, client, mut raw, prefix) = start_with_client("hooks").await;
    // A worker that died with a job in flight: its heartbeat is long gone.
    let orphan = format!(
        r#"{{"v":1,"id":"orphan-1","t":"{}","a":["orphan",4],"at":1}}"#,
        double::NAME
    );
    let _: () = redis::pipe()
        .hset(format!("{prefix}:{{mw}}:active:dead-worker"), "7", &orphan)
        .zadd(format!("{prefix}:{{mw}}:workers"), "dead-worker", 1)
        .query_async(&mut raw)
        .await
        .unwrap();
    let (seen, hook) = recorder();
    let lifecycle = Arc::new(Mutex::new(Vec::new()));
    let sink = lifecycle.clone();
    let worker = Worker::new(&client)
        .queues(["mw"])
        .recovery_after(Duration::from_millis(500))
        .retry_backoff(Duration::from_millis(20), Duration::from_millis(50))
        .on_job_event(hook)
        .on_worker_event(move |event| {
            sink.lock().unwrap().push(match event {
                dtask::WorkerEvent::Started { queues, .. } => format!("started {queues:?}"),
                dtask::WorkerEvent::Stopped { .. } => "stopped".to_owned(),
                _ => "other".to_owned(),
            })
        })
        .spawn();
    let ok = double::with()
        .client(&client)
        .enqueue("ok".into(), 1)
        .await
        .unwrap();
    let doomed = fail::with()
        .client(&client)
        .enqueue("doomed".into(), "nope".into())
        .await
        .unwrap();
    assert_eq!(ok.wait(WAIT).await.unwrap(), 2);
    wait_dead(&doomed, WAIT).await;
    let recovered = client.job("orphan-1");
    eventually(WAIT, "the orphan recovered and run", || async {
        matches!(
            recovered.status().await.unwrap(),
            dtask::JobStatus::Succeeded(_)
        )
        .then_some(())
    })
    .await;
    worker.shutdown().await.unwrap();
    assert_eq!(
        *lifecycle.lock().unwrap(),
        [r#"started ["mw"]"#.to_owned(), "stopped".to_owned()]
    );
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(
        seen,
        [
            "doomed:dead:nope",
            "doomed:retrying:1:nope",
            "ok:succeeded:2",
            "orphan:succeeded:8",
        ]
    );
}

/// Stamps every job with a tenant; refuses jobs whose key starts with `forbidden`.
struct Tenant(&'static str);

impl dtask::EnqueueMiddleware for Tenant {
    fn on_enqueue(&self, job: &mut dtask::OutgoingJob<'_>) -> Result<(), String> {
        if job.args_json().starts_with("[\"forbidden") {
            return Err(format!("{} may not enqueue that", self.0));
        }
        job.set_header("tenant", self.0);
        Ok(())
    }
}

/// Records the tenant header of every run.
struct SeeTenant;

#[dtask::async_trait]
impl Middleware for SeeTenant {
    async fn handle(&self, job: &JobContext, next: Next<'_>) -> RunOutcome {
        ran(format!(
            "{}:tenant={}",
            job_key(job),
            job.header("tenant").unwrap_or("none")
        ));
        next.run().await
    }
}

#[tokio::test]
async fn a_header_set_by_client_middleware_reaches_server_middleware_and_a_refusal_enqueues_nothing()
 {
    let (redis, plain, _raw, prefix) = start_with_client("headers").await;
    let client = dtask::Client::builder(&redis.url())
        .prefix(&prefix)
        .enqueue_middleware(Tenant("acme"))
        .connect()
        .await
        .unwrap();
    let worker = Worker::new(&client)
        .queues(["mw"])
        .middleware(SeeTenant)
        .spawn();
    let job = double::with()
        .client(&client)
        .enqueue("tenant-a".into(), 1)
        .await
        .unwrap();
    assert_eq!(job.wait(WAIT).await.unwrap(), 2);
    let untagged = double::with()
        .client(&plain)
        .enqueue("tenant-none".into(), 1)
        .await
        .unwrap();
    assert_eq!(untagged.wait(WAIT).await.unwrap(), 2);
    assert_eq!(runs_of("tenant-a:tenant="), ["tenant-a:tenant=acme"]);
    assert_eq!(runs_of("tenant-none:tenant="), ["tenant-none:tenant=none"]);
    let asked = whoami::with()
        .client(&client)
        .enqueue("who".into())
        .await
        .unwrap();
    assert_eq!(
        asked.wait(WAIT).await.unwrap(),
        format!("{} 1 acme", asked.id()),
        "the handler sees its own job and the client's header"
    );
    assert!(
        dtask::current().is_none(),
        "outside a handler there is none"
    );
    // With no worker running, whatever was enqueued would stay pending.
    worker.shutdown().await.unwrap();
    let refused = double::with()
        .client(&client)
        .enqueue_many(vec![("fine".to_owned(), 1), ("forbidden".to_owned(), 2)])
        .await
        .expect_err("the middleware refuses the second job");
    assert!(
        matches!(&refused, dtask::Error::EnqueueRefused { reason, .. } if reason == "acme may not enqueue that"),
        "{refused}"
    );
    let stats = client.queue("mw").stats().await.unwrap();
    assert_eq!(stats.pending, 0, "nothing of the refused call was enqueued");
}
