//! The `dtask` command-line tool, driven command by command against a real Redis, as an
//! operator would after a bad deploy: see the queues, find the dead jobs, run them again.
//! (`dtask/tests/cli_binary.rs` runs the binary itself for exit codes and help.)

use std::time::Duration;

use dtask::Worker;
use dtask::cli::CliError;
use dtask_tests::harness::{TempDir, init_logging, readme_acl, start_redis_with, wait_dead};
use dtask_tests::tasks;

const WAIT: Duration = Duration::from_secs(10);

/// Runs `dtask --url URL --prefix P <args>` in-process; its output, or its error.
async fn dtask(url: &str, prefix: &str, args: &[&str]) -> Result<String, CliError> {
    let mut all = vec!["dtask", "--url", url, "--prefix", prefix];
    all.extend_from_slice(args);
    let mut out = Vec::new();
    dtask::cli::run(all, &mut out).await?;
    Ok(String::from_utf8(out).expect("UTF-8 output"))
}

/// Every line fits an 80-column terminal.
fn assert_fits(text: &str) {
    for line in text.lines() {
        assert!(line.chars().count() <= 80, "too wide: {line:?}");
    }
}

#[tokio::test]
async fn an_operator_repairs_a_bad_deploy_from_the_command_line() {
    // The operator runs the CLI as the README's `operator` ACL user (the app, as admin).
    init_logging();
    let acl = TempDir::new("cli-acl");
    let acl_file = acl.path().join("users.acl");
    std::fs::write(
        &acl_file,
        format!(
            "user default on nopass ~* &* +@all\nuser operator {}\n",
            readme_acl("operator")
        ),
    )
    .unwrap();
    let redis = start_redis_with(&["--aclfile", acl_file.to_str().unwrap()]);
    let prefix = "dtask".to_owned(); // the prefix the README's users are limited to
    let client = dtask::Client::connect_with_prefix(&redis.url(), &prefix)
        .await
        .unwrap();
    let url = format!(
        "redis://operator:operator-password@127.0.0.1:{}",
        redis.port()
    );
    let run = |args: &'static [&'static str]| {
        let (url, prefix) = (url.clone(), prefix.clone());
        async move { dtask(&url, &prefix, args).await }
    };
    // Two jobs die (each fails every attempt), one waits for later, one is pending.
    let key = "cli-doomed".to_owned();
    let worker = Worker::new(&client).queues(["doomed"]).spawn();
    let mut doomed = Vec::new();
    for n in 0..2 {
        let job = tasks::doomed::with()
            .client(&client)
            .retries(0)
            .enqueue(key.clone(), format!("bad deploy {n}"))
            .await
            .unwrap();
        wait_dead(&job, WAIT).await;
        doomed.push(job);
    }
    worker.shutdown().await.unwrap();
    let later = tasks::nap::with()
        .client(&client)
        .delay(Duration::from_secs(600))
        .enqueue("cli-later".into(), 0)
        .await
        .unwrap();
    tasks::nap::with()
        .client(&client)
        .enqueue("cli-now".into(), 0)
        .await
        .unwrap();

    let queues = run(&["queues"]).await.unwrap();
    assert_fits(&queues);
    let lines: Vec<&str> = queues.lines().collect();
    assert!(lines[0].starts_with("QUEUE"), "{queues}");
    let doomed_row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        doomed_row,
        ["doomed", "0", "0", "0", "0", "2", "0"],
        "{queues}"
    );
    let naps_row: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(naps_row, ["naps", "1", "1", "0", "0", "0", "0"], "{queues}");
    let json: serde_json::Value =
        serde_json::from_str(&run(&["queues", "--json"]).await.unwrap()).unwrap();
    assert_eq!(json[0]["queue"], "doomed");
    assert_eq!(json[0]["dead"], 2);

    let stats = run(&["stats"]).await.unwrap();
    assert_fits(&stats);
    let row: Vec<&str> = stats.lines().nth(1).unwrap().split_whitespace().collect();
    // doomed: 0 pending, 0 running, 0 retry, 2 dead, 0 ok and 2 failed in the last minute.
    assert_eq!(
        &row[..7],
        ["doomed", "0", "0", "0", "2", "0", "2"],
        "{stats}"
    );

    let dead = run(&["jobs", "doomed", "--state", "dead"]).await.unwrap();
    assert_fits(&dead);
    assert!(
        dead.contains(doomed[0].id().as_str()) && dead.contains(doomed[1].id().as_str()),
        "{dead}"
    );
    assert!(dead.contains("bad deploy 0"), "{dead}");
    let json: serde_json::Value = serde_json::from_str(
        &run(&[
            "jobs", "doomed", "--state", "dead", "--newest", "--limit", "1", "--json",
        ])
        .await
        .unwrap(),
    )
    .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["id"], doomed[1].id().as_str());
    assert_eq!(json[0]["args"], serde_json::json!([key, "bad deploy 1"]));

    let id = doomed[0].id().to_string();
    let detail = dtask(&url, &prefix, &["job", &id]).await.unwrap();
    assert!(
        detail.contains("state      dead") && detail.contains("queue      doomed"),
        "{detail}"
    );

    // Run one dead job again by id, delete the other, and see the queue.
    let retried = dtask(&url, &prefix, &["dead", "retry", "doomed", &id])
        .await
        .unwrap();
    assert_eq!(retried, "queued again 1 dead job(s) of `doomed`\n");
    let refused = run(&["dead", "delete", "doomed", "--all"])
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("add --yes"), "{refused}");
    let deleted = run(&["dead", "delete", "doomed", "--all", "--yes"])
        .await
        .unwrap();
    assert_eq!(deleted, "deleted 1 dead job(s) of `doomed`\n");
    let missing = dtask(&url, &prefix, &["dead", "retry", "doomed", &id])
        .await
        .unwrap_err();
    assert!(
        missing.to_string().contains("not in the dead set"),
        "{missing}"
    );
    let pending = run(&["jobs", "doomed", "--state", "pending"])
        .await
        .unwrap();
    assert!(pending.contains(&id), "{pending}");

    // Pause and resume; cancel the delayed job; purge needs --yes.
    assert!(
        run(&["pause", "naps"])
            .await
            .unwrap()
            .starts_with("paused `naps`")
    );
    assert!(client.queue("naps").is_paused().await.unwrap());
    assert!(
        run(&["queues"])
            .await
            .unwrap()
            .lines()
            .nth(2)
            .unwrap()
            .ends_with("yes")
    );
    run(&["resume", "naps"]).await.unwrap();
    assert!(!client.queue("naps").is_paused().await.unwrap());
    let later_id = later.id().to_string();
    let cancelled = dtask(&url, &prefix, &["cancel", &later_id]).await.unwrap();
    assert!(cancelled.contains("scheduled in `naps`"), "{cancelled}");
    let refused = run(&["purge", "naps", "--state", "pending"])
        .await
        .unwrap_err();
    assert!(matches!(refused, CliError::Refused(_)) && refused.exit_code() == 1);
    assert_eq!(
        run(&["purge", "naps", "--state", "pending", "--yes"])
            .await
            .unwrap(),
        "purged 1 job(s) from `naps`\n"
    );

    // A rate limit: set, shown, removed.
    assert_eq!(
        run(&["rate", "naps", "600/m burst 20"]).await.unwrap(),
        "`naps`: at most 600/60s burst 20\n"
    );
    assert_eq!(
        run(&["rate", "naps"]).await.unwrap(),
        "`naps`: at most 600/60s burst 20\n"
    );
    let refused = run(&["rate", "naps", "lots"]).await.unwrap_err();
    assert!(
        refused.to_string().contains("expected jobs per period"),
        "{refused}"
    );
    run(&["rate", "naps", "off"]).await.unwrap();
    assert_eq!(
        run(&["rate", "naps"]).await.unwrap(),
        "`naps` has no rate limit\n"
    );

    // Workers, while one runs.
    let worker = Worker::new(&client).queues(["gated-answer"]).spawn();
    let held = tasks::gated_answer::with()
        .client(&client)
        .enqueue("cli-gate".into())
        .await
        .unwrap();
    dtask_tests::harness::eventually(WAIT, "the gated job runs", || async {
        (!tasks::runs("cli-gate").is_empty()).then_some(())
    })
    .await;
    let workers = run(&["workers"]).await.unwrap();
    assert_fits(&workers);
    let row = workers
        .lines()
        .find(|line| line.starts_with("gated-answer"))
        .unwrap_or_else(|| panic!("{workers}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[2], std::process::id().to_string(), "{workers}");
    assert_eq!(cells[3], "1", "{workers}");
    let running = run(&["jobs", "gated-answer", "--state", "running"])
        .await
        .unwrap();
    assert!(running.contains(held.id().as_str()), "{running}");
    tasks::open_gate("cli-gate");
    held.wait(WAIT).await.unwrap();
    worker.shutdown().await.unwrap();

    // Bad input: one clear error each.
    let usage = run(&["jobs", "doomed", "--state", "finished"])
        .await
        .unwrap_err();
    assert_eq!(usage.exit_code(), 2);
    assert!(
        usage.to_string().contains("unknown job state `finished`"),
        "{usage}"
    );
    let unknown = run(&["job", "no-such-id"]).await.unwrap_err();
    assert!(
        unknown
            .to_string()
            .contains("no queue holds job `no-such-id`"),
        "{unknown}"
    );
}
