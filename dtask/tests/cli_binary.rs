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
