//! Periodic jobs against a real Redis: each tick fires exactly once across several worker
//! processes while they are SIGKILLed one after another; a `#[task(cron)]` task runs on its
//! own; after downtime the missed ticks fire once (or not at all, when the schedule skips
//! them), never as a burst; operators list schedules with their last and next tick; mistakes
//! stop the worker with a clear error.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dtask::{Missed, Worker};
use dtask_tests::harness::{
    WorkerProcess, eventually, start_redis, start_with_client, unique_prefix,
};
use dtask_tests::tasks;

const WORKER: &str = env!("CARGO_BIN_EXE_test_worker");
const WAIT: Duration = Duration::from_secs(10);

/// The ticks (ms) of the jobs waiting in `queue`, in queue order, read from their headers.
async fn ticks_in(
    raw: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    queue: &str,
) -> Vec<u64> {
    let payloads: Vec<String> = redis::cmd("LRANGE")
        .arg(format!("{prefix}:{{{queue}}}:pending"))
        .arg(0)
        .arg(-1)
        .query_async(raw)
        .await
        .unwrap();
    payloads
        .iter()
        .map(|payload| {
            let job: serde_json::Value = serde_json::from_str(payload).unwrap();
            job["h"]["dtask-tick"]
                .as_str()
                .and_then(|tick| tick.parse().ok())
                .unwrap_or_else(|| panic!("a periodic job has its tick: {payload}"))
        })
        .collect()
}

#[tokio::test]
async fn each_tick_fires_once_across_worker_processes_killed_one_after_another() {
    let redis = start_redis();
    let prefix = unique_prefix("periodic-fleet");
    let mut raw = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // Three workers keep an every-second schedule whose jobs wait in a queue nobody serves.
    let env = [("TEST_PERIODIC", "every-second,* * * * * *,tick-sink")];
    let start = || WorkerProcess::start(WORKER, &redis.url(), &prefix, "marks", &env);
    let mut workers = vec![start(), start(), start()];
    eventually(WAIT, "the first tick", || {
        let (raw, prefix) = (raw.clone(), prefix.clone());
        async move {
            let mut raw = raw;
            (!ticks_in(&mut raw, &prefix, "tick-sink").await.is_empty()).then_some(())
        }
    })
    .await;
    // Kill one worker at a time (SIGKILL, mid-whatever), restart it, six times.
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let victim = round % workers.len();
        workers[victim].kill();
        workers[victim] = start();
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for worker in &mut workers {
        worker.kill();
    }
    let ticks = ticks_in(&mut raw, &prefix, "tick-sink").await;
    let distinct: BTreeSet<u64> = ticks.iter().copied().collect();
    assert_eq!(distinct.len(), ticks.len(), "a tick fired twice: {ticks:?}");
    let (first, last) = (ticks[0], *ticks.last().unwrap());
    // One job for every second from the first tick to the last: none missed, none twice.
    assert!(
        ticks.windows(2).all(|pair| pair[1] == pair[0] + 1000),
        "{ticks:?}"
    );
    assert!(
        ticks.len() >= 6,
        "{} ticks over about 8 s: {ticks:?}",
        ticks.len()
    );
    assert_eq!(first % 1000, 0);
    assert_eq!(ticks.len() as u64, (last - first) / 1000 + 1);
}

static CRON_RUNS: AtomicU64 = AtomicU64::new(0);

/// Runs every second, in Berlin's time zone (every second is every second anywhere).
#[dtask::task(queue = "cron-own", cron = "* * * * * *", tz = "Europe/Berlin")]
async fn every_second() -> Option<String> {
    CRON_RUNS.fetch_add(1, Ordering::Relaxed);
    dtask::current().and_then(|job| job.header("dtask-periodic").map(str::to_owned))
}

#[tokio::test]
async fn a_task_declared_with_cron_runs_on_its_schedule_and_is_listed() {
    let (_redis, client, _raw, _prefix) = start_with_client("periodic-cron-task").await;
    let worker = Worker::new(&client).queues(["cron-own"]).spawn();
    eventually(WAIT, "two runs of the cron task", || async {
        (CRON_RUNS.load(Ordering::Relaxed) >= 2).then_some(())
    })
    .await;
    // Paused, its queue gets no ticks (they are missed ticks); resumed, one job for them all.
    let queue = client.queue("cron-own");
    queue.pause().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        queue.stats().await.unwrap().pending,
        0,
        "no tick piles up in a paused queue"
    );
    let before = CRON_RUNS.load(Ordering::Relaxed);
    queue.resume().await.unwrap();
    eventually(WAIT, "runs again once resumed", || async {
        (CRON_RUNS.load(Ordering::Relaxed) > before).then_some(())
    })
    .await;
    let listed = client.periodic_jobs().await.unwrap();
    let own = listed
        .iter()
        .find(|p| p.name == every_second::NAME)
        .unwrap_or_else(|| panic!("{listed:?}"));
    assert_eq!(
        (
            own.queue.as_str(),
            own.cron.as_str(),
            own.tz.as_str(),
            own.missed.as_str()
        ),
        ("cron-own", "* * * * * *", "Europe/Berlin", "fire-once")
    );
    let last = own.last_tick.expect("a tick claimed");
    assert!(own.next_tick.is_some_and(|next| next > last));
    worker.shutdown().await.unwrap();
}

/// `0 M H * * *` for the UTC time `ago` before now: a daily tick that fell `ago` ago.
fn daily_at(ago: Duration) -> (String, u64) {
    let at = SystemTime::now() - ago;
    let secs = at.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let (hour, minute) = ((secs / 3600) % 24, (secs / 60) % 60);
    (format!("0 {minute} {hour} * * *"), (secs / 60) * 60_000)
}

#[tokio::test]
async fn after_downtime_missed_ticks_fire_once_or_are_skipped_never_as_a_burst() {
    let (redis, client, mut raw, prefix) = start_with_client("periodic-missed").await;
    let raw_url = redis.url();
    let (cron, tick) = daily_at(Duration::from_secs(300));
    // Both schedules last ran three days ago (three ticks missed since).
    let _: () = redis::cmd("HSET")
        .arg(format!("{prefix}:{{missed-sink}}:periodic"))
        .arg("fire-once")
        .arg(tick - 3 * 86_400_000)
        .arg("skip")
        .arg(tick - 3 * 86_400_000)
        .query_async(&mut raw)
        .await
        .unwrap();
    let job = || {
        tasks::add::with()
            .queue("missed-sink")
            .call("missed".into(), 1, 1)
    };
    let worker = Worker::new(&client)
        .queues(["marks"])
        .periodic(dtask::periodic("fire-once", cron.clone(), job()))
        .periodic(dtask::periodic("skip", cron.clone(), job()).missed(Missed::Skip))
        .spawn();
    let listed = eventually(WAIT, "both missed ticks claimed", || async {
        let listed = client.queue("missed-sink").periodic_jobs().await.unwrap();
        let claimed = Some(UNIX_EPOCH + Duration::from_millis(tick));
        (listed.len() == 2 && listed.iter().all(|p| p.last_tick == claimed)).then_some(listed)
    })
    .await;
    for schedule in &listed {
        assert_eq!(
            schedule.next_tick,
            Some(UNIX_EPOCH + Duration::from_millis(tick + 86_400_000))
        );
    }
    // The CLI lists them, with their last and next tick, in 80 columns.
    let mut out = Vec::new();
    dtask::cli::run(
        ["dtask", "--url", &raw_url, "--prefix", &prefix, "periodic"],
        &mut out,
    )
    .await
    .unwrap();
    let table = String::from_utf8(out).unwrap();
    let row = table
        .lines()
        .find(|line| line.starts_with("fire-once "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("missed-sink") && row.contains(&cron),
        "{table}"
    );
    assert!(
        table.lines().all(|line| line.chars().count() <= 80),
        "{table}"
    );
    // One job, for the latest tick, from the schedule that fires missed ticks once; none from
    // the one that skips them.
    assert_eq!(ticks_in(&mut raw, &prefix, "missed-sink").await, [tick]);
    let payloads: Vec<String> = redis::cmd("LRANGE")
        .arg(format!("{prefix}:{{missed-sink}}:pending"))
        .arg(0)
        .arg(-1)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(
        payloads[0].contains(r#""dtask-periodic":"fire-once""#),
        "{}",
        payloads[0]
    );
    worker.shutdown().await.unwrap();
    // A second worker start claims nothing more.
    let worker = Worker::new(&client)
        .queues(["marks"])
        .periodic(dtask::periodic("fire-once", cron.clone(), job()))
        .spawn();
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker.shutdown().await.unwrap();
    assert_eq!(ticks_in(&mut raw, &prefix, "missed-sink").await, [tick]);
    // Forgotten, a schedule is no longer listed.
    assert!(
        client
            .queue("missed-sink")
            .forget_periodic("skip")
            .await
            .unwrap()
    );
    let names: Vec<String> = client
        .periodic_jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert!(!names.contains(&"skip".to_owned()), "{names:?}");
}

/// Why a worker keeping `schedules` refuses to start.
async fn refusal(client: &dtask::Client, schedules: Vec<dtask::Periodic>) -> String {
    let mut worker = Worker::new(client).queues(["marks"]);
    for schedule in schedules {
        worker = worker.periodic(schedule);
    }
    worker
        .run_until(std::future::pending())
        .await
        .unwrap_err()
        .to_string()
}

#[tokio::test]
async fn mistakes_in_a_schedule_stop_the_worker_with_a_clear_error() {
    let redis = start_redis();
    let client = dtask::Client::connect_with_prefix(&redis.url(), &unique_prefix("periodic-bad"))
        .await
        .unwrap();
    let job = || tasks::add::call("bad".into(), 1, 1);
    let cases = [
        (
            dtask::periodic("zone", "0 0 7 * * *", job()).tz("Europe/Berlinn"),
            "periodic job `zone`: unknown time zone `Europe/Berlinn`",
        ),
        (
            dtask::periodic("pattern", "0 0 25 * * *", job()),
            "periodic job `pattern`: invalid cron pattern `0 0 25 * * *`",
        ),
        (
            dtask::periodic(
                "delayed",
                "0 0 7 * * *",
                tasks::add::with()
                    .delay(Duration::from_secs(1))
                    .call("bad".into(), 1, 1),
            ),
            "cannot have a delay",
        ),
        (
            dtask::periodic("nan", "0 0 7 * * *", tasks::ratio::call(f64::NAN, 1.0)),
            "periodic job `nan`",
        ),
        (
            dtask::periodic(
                "client",
                "0 0 7 * * *",
                tasks::add::with().client(&client).call("bad".into(), 1, 1),
            ),
            "leave out `.client(..)`",
        ),
        (
            dtask::periodic("past", "0 0 0 1 1 * 2020", job()),
            "has no tick in the future",
        ),
    ];
    for (periodic, expected) in cases {
        let error = refusal(&client, vec![periodic]).await;
        assert!(
            error.contains(expected),
            "{error:?} should say {expected:?}"
        );
    }
    let error = refusal(
        &client,
        vec![
            dtask::periodic("twice", "* * * * * *", job()),
            dtask::periodic("twice", "0 * * * * *", job()),
        ],
    )
    .await;
    assert!(
        error.contains("two periodic jobs are named `twice`"),
        "{error}"
    );
    // A schedule's next ticks can be checked without a worker.
    let ticks = dtask::periodic("check", "0 0 7 * * *", job())
        .tz("Europe/Berlin")
        .next_ticks(UNIX_EPOCH + Duration::from_secs(1_764_547_200), 2)
        .unwrap();
    assert_eq!(
        ticks,
        [
            UNIX_EPOCH + Duration::from_secs(1_764_568_800),
            UNIX_EPOCH + Duration::from_secs(1_764_655_200)
        ]
    );
}
