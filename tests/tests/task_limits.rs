//! A task's own limits against a real Redis: `#[task(max_running = ..)]` holds across several
//! workers and processes (a slot held by a killed worker comes back once its lease lapses);
//! `#[task(rate = "..")]` holds across workers; jobs over a limit wait in Redis (not attempts,
//! not in any worker's memory) while other tasks of the same queue run on.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dtask::Worker;
use dtask_tests::harness::{WorkerProcess, eventually, start_with_client, unique_prefix};
use dtask_tests::tasks;

const WAIT: Duration = Duration::from_secs(30);

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static MOST_AT_ONCE: AtomicUsize = AtomicUsize::new(0);
static DONE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// At most two at once, wherever they run.
#[dtask::task(queue = "exports", max_running = 2)]
async fn export(n: u32) {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    MOST_AT_ONCE.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    DONE.lock().unwrap().push(n);
}

static STARTS: Mutex<Vec<(&'static str, Instant)>> = Mutex::new(Vec::new());

fn starts(of: &str) -> Vec<Instant> {
    let mut times: Vec<Instant> = STARTS
        .lock()
        .unwrap()
        .iter()
        .filter(|(task, _)| *task == of)
        .map(|(_, at)| *at)
        .collect();
    times.sort();
    times
}

/// Twenty a second, whichever workers run them.
#[dtask::task(queue = "api", rate = "20/s")]
async fn call_partner(_n: u32) {
    STARTS.lock().unwrap().push(("partner", Instant::now()));
}

/// No limit of its own, in the same queue.
#[dtask::task(queue = "api")]
async fn log_visit(_n: u32) {
    STARTS.lock().unwrap().push(("visit", Instant::now()));
}

#[tokio::test]
async fn three_workers_never_run_more_than_max_running_at_once() {
    let (_redis, client, _raw, _prefix) = start_with_client("max-running").await;
    export::with()
        .client(&client)
        .enqueue_many(0..24)
        .await
        .unwrap();
    let workers: Vec<_> = (0..3)
        .map(|_| {
            Worker::new(&client)
                .queues(["exports"])
                .concurrency(8)
                .spawn()
        })
        .collect();
    eventually(WAIT, "all 24 exports ran", || async {
        (DONE.lock().unwrap().len() == 24).then_some(())
    })
    .await;
    let mut done = DONE.lock().unwrap().clone();
    done.sort();
    assert_eq!(done, (0..24).collect::<Vec<_>>(), "each export ran once");
    assert_eq!(
        MOST_AT_ONCE.load(Ordering::SeqCst),
        2,
        "two at most, and the limit was used"
    );
    let stats = client.queue("exports").stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.waiting, stats.retry, stats.dead),
        (0, 0, 0, 0)
    );
    for worker in workers {
        worker.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn a_task_rate_holds_across_workers_and_other_tasks_of_the_queue_run_on() {
    let (_redis, client, _raw, _prefix) = start_with_client("task-rate").await;
    call_partner::with()
        .client(&client)
        .enqueue_many(0..40)
        .await
        .unwrap();
    log_visit::with()
        .client(&client)
        .enqueue_many(0..40)
        .await
        .unwrap();
    let workers: Vec<_> = (0..3)
        .map(|_| Worker::new(&client).queues(["api"]).spawn())
        .collect();
    eventually(WAIT, "all 40 partner calls started", || async {
        (starts("partner").len() == 40).then_some(())
    })
    .await;
    let partner = starts("partner");
    let visits = starts("visit");
    assert_eq!(visits.len(), 40, "every visit ran");
    // The visits queued behind the partner calls did not wait for them.
    assert!(
        *visits.last().unwrap() < partner[20],
        "visits ran while partner calls waited for their budget"
    );
    let span = partner[39] - partner[0];
    let rate = 39.0 / span.as_secs_f64();
    println!("40 calls, 3 workers, task rate 20/s: {rate:.1} calls/s over {span:?}");
    // 39 tokens after the first take 1.95 s at 20/s; a little slack for the time between a
    // fetch and the start it is measured at.
    assert!(
        span >= Duration::from_millis(1_850),
        "{span:?}: {rate:.1}/s"
    );
    for (i, first) in partner.iter().enumerate() {
        let within_a_second = partner[i..]
            .iter()
            .take_while(|at| **at - *first < Duration::from_secs(1))
            .count();
        assert!(
            within_a_second <= 21,
            "{within_a_second} starts within one second"
        );
    }
    let stats = client.queue("api").stats().await.unwrap();
    assert_eq!(
        (stats.retry, stats.dead),
        (0, 0),
        "no attempt was spent waiting"
    );
    for worker in workers {
        worker.shutdown().await.unwrap();
    }
}

const WORKER: &str = env!("CARGO_BIN_EXE_test_worker");

#[tokio::test]
async fn a_slot_held_by_a_killed_worker_comes_back_when_its_lease_lapses() {
    let (redis, client, mut raw, prefix) = start_with_client("slot-kill").await;
    let group = unique_prefix("solo");
    let lease = [("TEST_RECOVERY_MS", "2000")];
    let mut first = WorkerProcess::start(WORKER, &redis.url(), &prefix, "solo", &lease);
    tasks::solo::with()
        .client(&client)
        .enqueue(group.clone(), 0, 3_000)
        .await
        .unwrap();
    let running = format!("{group}:running");
    eventually(WAIT, "the first worker runs the job", || async {
        let n: Option<i64> = redis::cmd("GET")
            .arg(&running)
            .query_async(&mut raw.clone())
            .await
            .unwrap();
        (n == Some(1)).then_some(())
    })
    .await;
    tasks::solo::with()
        .client(&client)
        .enqueue_many((1..4).map(|n| (group.clone(), n, 200)))
        .await
        .unwrap();
    let queue = client.queue("solo");
    eventually(WAIT, "the other three wait for the slot", || async {
        (queue.stats().await.unwrap().waiting == 3).then_some(())
    })
    .await;
    // Killed holding the task's one slot; the run it never finished is counted out by hand.
    first.kill();
    let killed_at = Instant::now();
    redis::cmd("DECR")
        .arg(&running)
        .query_async::<()>(&mut raw)
        .await
        .unwrap();
    let _second = WorkerProcess::start(WORKER, &redis.url(), &prefix, "solo", &lease);
    let _third = WorkerProcess::start(WORKER, &redis.url(), &prefix, "solo", &lease);
    for n in 0..4 {
        let done = format!("{group}:done:{n}");
        eventually(WAIT, "every job ran to the end", || async {
            let runs: Option<i64> = redis::cmd("GET")
                .arg(&done)
                .query_async(&mut raw.clone())
                .await
                .unwrap();
            (runs == Some(1)).then_some(())
        })
        .await;
    }
    let took = killed_at.elapsed();
    println!("all four jobs done {took:?} after the kill");
    // The lease lapses 2 s after the kill; recovery and the four runs (3 s + 3 × 0.2 s, one
    // at a time) fit well within 15 s.
    assert!(took < Duration::from_secs(15), "{took:?}");
    let overlaps: Vec<String> = redis::cmd("LRANGE")
        .arg(format!("{group}:overlaps"))
        .arg(0)
        .arg(-1)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(overlaps.is_empty(), "ran beside each other: {overlaps:?}");
    let stats = client.queue("solo").stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.waiting, stats.retry, stats.dead),
        (0, 0, 0, 0)
    );
}

static HOLD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
static REPORTS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn reports() -> Vec<u32> {
    REPORTS.lock().unwrap().clone()
}

/// One at a time; the first run waits until the test lets it go.
#[dtask::task(queue = "reports", max_running = 1)]
async fn monthly_report(n: u32) {
    REPORTS.lock().unwrap().push(n);
    while HOLD.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_job_held_back_by_its_task_limits_can_be_found_cancelled_and_purged() {
    let (_redis, client, _raw, _prefix) = start_with_client("limits-admin").await;
    let queue = client.queue("reports");
    let worker = Worker::new(&client).queues(["reports"]).spawn();
    monthly_report::with()
        .client(&client)
        .enqueue(0)
        .await
        .unwrap();
    eventually(WAIT, "the first report runs", || async {
        (reports() == [0]).then_some(())
    })
    .await;
    let handles = monthly_report::with()
        .client(&client)
        .enqueue_many(1..4)
        .await
        .unwrap();
    eventually(WAIT, "three reports wait for the slot", || async {
        (queue.stats().await.unwrap().waiting == 3).then_some(())
    })
    .await;
    let second = handles[0].id();
    let found = queue
        .job(second)
        .await
        .unwrap()
        .expect("found while waiting");
    assert_eq!(found.state, dtask::JobState::Pending);
    assert_eq!(
        queue.cancel(second).await.unwrap(),
        dtask::Cancelled::Cancelled(dtask::JobState::Pending)
    );
    assert!(queue.job(second).await.unwrap().is_none());
    assert_eq!(queue.stats().await.unwrap().waiting, 2);
    assert_eq!(queue.purge(dtask::PurgeState::Pending).await.unwrap(), 2);
    assert_eq!(queue.stats().await.unwrap().waiting, 0);
    // One more, queued behind whatever still waits: it runs after them.
    monthly_report::with()
        .client(&client)
        .enqueue(9)
        .await
        .unwrap();
    HOLD.store(false, Ordering::SeqCst);
    eventually(WAIT, "the last report ran", || async {
        reports().contains(&9).then_some(())
    })
    .await;
    assert_eq!(reports(), [0, 9], "no cancelled or purged report ran");
    worker.shutdown().await.unwrap();
}

static NUDGES: Mutex<Vec<Instant>> = Mutex::new(Vec::new());

/// Two a second.
#[dtask::task(queue = "nudges", rate = "2/s")]
async fn nudge(_n: u32) {
    NUDGES.lock().unwrap().push(Instant::now());
}

#[tokio::test]
async fn a_job_held_back_by_a_rate_starts_when_the_next_token_is_due_on_a_quiet_worker() {
    let (_redis, client, _raw, _prefix) = start_with_client("rate-quiet").await;
    let worker = Worker::new(&client).queues(["nudges"]).spawn();
    nudge::with().client(&client).enqueue(1).await.unwrap();
    eventually(WAIT, "the first job started", || async {
        (NUDGES.lock().unwrap().len() == 1).then_some(())
    })
    .await;
    // The next token is due 500 ms after the first start; nothing else wakes the worker.
    nudge::with().client(&client).enqueue(2).await.unwrap();
    eventually(WAIT, "the second job started", || async {
        (NUDGES.lock().unwrap().len() == 2).then_some(())
    })
    .await;
    let starts = NUDGES.lock().unwrap().clone();
    let gap = starts[1] - starts[0];
    println!("second start {gap:?} after the first (limit 2/s)");
    assert!(
        gap >= Duration::from_millis(450),
        "{gap:?}: faster than the limit"
    );
    assert!(
        gap < Duration::from_millis(1_500),
        "{gap:?}: the job waited for an idle poll, not for its token"
    );
    worker.shutdown().await.unwrap();
}
