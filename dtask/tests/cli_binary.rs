//! The `dtask` binary itself (feature `cli`): help, exit codes, one-line errors, and one
//! command against a real Redis. Each command is tested in `tests/tests/cli.rs`.
#![cfg(feature = "cli")]

use std::process::Command;

use dtask_testkit::redis_server::RedisServer;

fn dtask(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_dtask"))
        .args(args)
        .env_remove("DTASK_REDIS_URL")
        .env_remove("DTASK_PREFIX")
        .output()
        .expect("the dtask binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn help_usage_errors_and_a_real_command() {
    let (code, out, _) = dtask(&["--help"]);
    assert_eq!(code, 0);
    for command in [
        "queues", "stats", "jobs", "job", "dead", "purge", "pause", "resume", "cancel", "workers",
    ] {
        assert!(out.contains(command), "help lacks `{command}`: {out}");
    }
    let (code, _, err) = dtask(&["frobnicate"]);
    assert_eq!(code, 2, "{err}");
    // Nothing listens on port 1: one clear line, exit 1.
    let (code, _, err) = dtask(&["--url", "redis://127.0.0.1:1", "queues"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("dtask: "), "{err}");

    let redis = RedisServer::start().expect("a redis-server");
    let url = redis.url();
    let (code, out, err) = dtask(&["--url", &url, "--prefix", "cli-bin", "queues"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("QUEUE"), "{out}");
    let (code, out, err) = dtask(&["--url", &url, "--prefix", "cli-bin", "pause", "emails"]);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "paused `emails`: workers take no job from it until `dtask resume emails`\n"
        ),
        "{err}"
    );
}

#[test]
fn the_served_dashboard_answers_only_its_own_host_names() {
    use std::io::BufRead;
    let redis = RedisServer::start().expect("a redis-server");
    let url = redis.url();
    let child = Command::new(env!("CARGO_BIN_EXE_dtask"))
        .args([
            "--url",
            &url,
            "--prefix",
            "cli-dash",
            "dashboard",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--allowed-host", "ops.example:8080"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the dtask binary runs");
    let mut child = dtask_testkit::process::KillOnDrop(child);
    let mut first = String::new();
    std::io::BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let served = first
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();
    let port: u16 = served.rsplit(':').next().unwrap().parse().unwrap();
    let ask = |host: &str| {
        dtask_testkit::http::request(port, "GET", "/", &[("Host", host)], b"")
            .unwrap()
            .status
    };
    assert_eq!(ask(&served), 200);
    assert_eq!(ask(&format!("localhost:{port}")), 200);
    assert_eq!(ask("ops.example:8080"), 200);
    // A hostile page that re-points its own domain at this machine gets nothing.
    assert_eq!(ask(&format!("attacker.example:{port}")), 421);
}
