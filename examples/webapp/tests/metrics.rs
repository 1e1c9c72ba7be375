//! The example app's Prometheus metrics (`GET /metrics`, dtask's feature `metrics`): after
//! mails are sent and one fails for good, the counters, histograms and gauges say so, by
//! queue, task and outcome.

use std::process::{Command, Stdio};
use std::time::Duration;

use dtask_testkit::http::request;
use dtask_testkit::os::free_port;
use dtask_testkit::process::{KillOnDrop, eventually};
use dtask_testkit::redis_server::RedisServer;

/// The value of the sample of `metric` whose labels include every one of `labels`.
fn sample(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| {
            line.starts_with(&format!("{metric}{{")) || line.starts_with(&format!("{metric} "))
        })
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[test]
fn the_metrics_count_jobs_by_queue_task_and_outcome() {
    let redis = RedisServer::start().expect("a redis-server");
    let dir = std::env::temp_dir().join(format!("dtask-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port().unwrap();
    let _app = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_dtask-example"))
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("DTASK_REDIS_URL", redis.url())
            .env("DTASK_PREFIX", format!("metrics-{}", std::process::id()))
            .env("DATABASE_URL", format!("sqlite://{}/app.db", dir.display()))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the example app starts"),
    );
    let post = |body: &str| {
        request(
            port,
            "POST",
            "/signups",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .map(|response| response.status)
    };
    eventually(Duration::from_secs(30), "the app answers", || {
        request(port, "GET", "/", &[], b"")
            .ok()
            .filter(|r| r.status == 200)
    });
    assert_eq!(
        post(r#"{"email":"ada@example.com","name":"ada"}"#).unwrap(),
        202
    );
    assert_eq!(
        post(r#"{"email":"bob@example.com","name":"bob"}"#).unwrap(),
        202
    );
    // The same signup again (a double submit): the first job, not a second mail.
    let again = request(
        port,
        "POST",
        "/signups",
        &[("Content-Type", "application/json")],
        br#"{"email":"bob@example.com","name":"bob"}"#,
    )
    .unwrap();
    assert_eq!(again.status, 202);
    assert!(again.body.contains(r#""duplicate":true"#), "{}", again.body);
    // Refused by the (simulated) mail server every time: 3 attempts, then dead.
    assert_eq!(
        post(r#"{"email":"eve@nowhere.invalid","name":"eve"}"#).unwrap(),
        202
    );
    let queue = "queue=\"emails\"";
    let task = "task=\"mail.welcome\"";
    let metrics = eventually(
        Duration::from_secs(30),
        "the metrics show every mail's end",
        || {
            let text = request(port, "GET", "/metrics", &[], b"").ok()?.body;
            let dead = sample(
                &text,
                "dtask_jobs_finished_total",
                &[queue, task, "outcome=\"dead\""],
            )?;
            (dead == 1.0).then_some(text)
        },
    );
    assert_eq!(
        sample(&metrics, "dtask_jobs_enqueued_total", &[queue, task]),
        Some(3.0),
        "{metrics}"
    );
    let ok = sample(
        &metrics,
        "dtask_jobs_finished_total",
        &[queue, task, "outcome=\"succeeded\""],
    );
    assert_eq!(ok, Some(2.0), "{metrics}");
    let failed = sample(
        &metrics,
        "dtask_jobs_finished_total",
        &[queue, task, "outcome=\"failed\""],
    );
    assert_eq!(
        failed,
        Some(2.0),
        "2 failed attempts before the third buried it: {metrics}"
    );
    assert_eq!(
        sample(&metrics, "dtask_jobs_running", &[queue]),
        Some(0.0),
        "{metrics}"
    );
    // 5 attempts ran (2 + 3); every first attempt waited.
    let runs = sample(&metrics, "dtask_job_duration_seconds_count", &[queue, task]);
    assert_eq!(runs, Some(5.0), "{metrics}");
    assert_eq!(
        sample(&metrics, "dtask_job_wait_seconds_count", &[queue]),
        Some(3.0),
        "{metrics}"
    );
    // The worker reads its queues' depths every few seconds.
    let dead_gauge = eventually(Duration::from_secs(15), "the queue depth gauges", || {
        let text = request(port, "GET", "/metrics", &[], b"").ok()?.body;
        sample(&text, "dtask_queue_jobs", &[queue, "state=\"dead\""]).filter(|dead| *dead == 1.0)
    });
    assert_eq!(dead_gauge, 1.0);
    let _ = std::fs::remove_dir_all(&dir);
}
