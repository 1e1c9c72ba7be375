//! Locked-down deployments: Redis ACL users with the minimal rights a producer and a worker
//! need, passwords kept out of errors, and TLS with a private certificate authority.

use std::process::Command;
use std::time::Duration;

use dtask::{Client, Worker};
use dtask_tests::harness::{
    TempDir, free_port, init_logging, readme_acl, start_redis_with, unique_prefix, wait_dead,
};
use dtask_tests::tasks;

const WAIT: Duration = Duration::from_secs(10);

/// Kills every connection of `user`, as a proxy restart or `CLIENT KILL` in production would.
async fn kill_connections(admin: &mut redis::aio::MultiplexedConnection, user: &str) -> u64 {
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("USER")
        .arg(user)
        .query_async(admin)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_producer_and_a_worker_with_the_readme_acl_users_run_every_path_through_connection_kills()
{
    init_logging();
    let acl = TempDir::new("acl");
    let acl_file = acl.path().join("users.acl");
    std::fs::write(
        &acl_file,
        format!(
            "user default on >admin-pass ~* &* +@all\nuser producer {}\nuser worker {}\n",
            readme_acl("producer"),
            readme_acl("worker")
        ),
    )
    .unwrap();
    let redis = start_redis_with(&["--aclfile", acl_file.to_str().unwrap()]);
    let port = redis.port();
    let mut admin = redis::Client::open(format!("redis://:admin-pass@127.0.0.1:{port}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // The README's users work under the default prefix `dtask`.
    let prefix = "dtask";

    let producer_url = format!("redis://producer:producer-password@127.0.0.1:{port}");
    let producer = Client::connect_with_prefix(&producer_url, prefix)
        .await
        .unwrap();
    let key = unique_prefix("acl-key");
    let job = tasks::add::with()
        .client(&producer)
        .enqueue(key.clone(), 2, 40)
        .await
        .expect("the producer may enqueue");
    assert_eq!(
        job.status().await.unwrap(),
        dtask::JobStatus::Queued,
        "the producer may record its jobs as queued"
    );
    let unique = tasks::add::with()
        .client(&producer)
        .unique_for(Duration::from_secs(600))
        .enqueue(key.clone(), 3, 4)
        .await
        .expect("the producer may enqueue unique jobs");
    assert_eq!(
        unique.status().await.unwrap(),
        dtask::JobStatus::Queued,
        "the producer may record its unique jobs as queued"
    );
    let mut events = producer
        .events("math")
        .await
        .expect("the producer may follow events");
    let delayed = tasks::add::with()
        .client(&producer)
        .delay(Duration::from_millis(10))
        .enqueue(key.clone(), 1, 1)
        .await
        .expect("the producer may schedule");
    let told = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event")
        .expect("the stream goes on")
        .expect("no missed window");
    assert_eq!(
        &told.job_id,
        delayed.id(),
        "the producer may publish events"
    );
    let doomed = tasks::doomed::with()
        .client(&producer)
        .retries(1)
        .enqueue(key.clone(), "no".into())
        .await
        .unwrap();
    let many = tasks::add::with()
        .client(&producer)
        .enqueue_many((0..2_000).map(|i| (key.clone(), i, 1)))
        .await
        .unwrap();

    // A worker that died with jobs in flight (its heartbeat long lapsed), and a job a recovery
    // set aside as poison: the worker's recoverer handles both under its ACL.
    let ghost = tasks::add::with()
        .client(&producer)
        .queue("ghost-staging")
        .enqueue(key.clone(), 5, 5)
        .await
        .unwrap();
    let _: () = redis::cmd("RENAME")
        .arg("dtask:{ghost-staging}:pending")
        .arg("dtask:{math}:active:ghost-worker")
        .query_async(&mut admin)
        .await
        .expect("staged");
    let staged: Vec<String> = redis::cmd("LRANGE")
        .arg("dtask:{math}:active:ghost-worker")
        .arg(0)
        .arg(-1)
        .query_async(&mut admin)
        .await
        .unwrap();
    let _: () = redis::pipe()
        .cmd("DEL")
        .arg("dtask:{math}:active:ghost-worker")
        .cmd("HSET")
        .arg("dtask:{math}:active:ghost-worker")
        .arg("lease-of-a-dead-worker")
        .arg(&staged[0])
        .cmd("ZADD")
        .arg("dtask:{math}:workers")
        .arg(1)
        .arg("ghost-worker")
        .cmd("RPUSH")
        .arg("dtask:{math}:poisoned")
        .arg("a poisoned payload")
        .query_async(&mut admin)
        .await
        .unwrap();

    // The producer cannot take jobs: it may not pop a queue, nor hold a job in flight, nor run
    // the fetch script (the commands inside a script are checked against the caller's ACL).
    let mut producer_raw = redis::Client::open(producer_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for command in [
        redis::cmd("LPOP").arg("dtask:{math}:pending").clone(),
        redis::cmd("LMOVE")
            .arg("dtask:{math}:pending")
            .arg("dtask:{math}:landing:w")
            .arg("LEFT")
            .arg("RIGHT")
            .clone(),
        redis::cmd("HDEL")
            .arg("dtask:{math}:active:w")
            .arg("lease")
            .clone(),
        redis::cmd("EVAL")
            .arg("return redis.call('LPOP', KEYS[1])")
            .arg(1)
            .arg("dtask:{math}:pending")
            .clone(),
    ] {
        let refused: redis::RedisResult<redis::Value> =
            command.query_async(&mut producer_raw).await;
        assert!(
            refused.is_err(),
            "a producer must not be able to take jobs: {refused:?}"
        );
    }

    let worker_url = format!("redis://worker:worker-password@127.0.0.1:{port}");
    let worker_client = Client::connect_with_prefix(&worker_url, prefix)
        .await
        .unwrap();
    let worker = Worker::new(&worker_client)
        .queues(["math", "doomed"])
        .concurrency(8)
        .recovery_after(Duration::from_millis(500))
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(10))
        .spawn();
    // Kill the worker's connections again and again while it works (the finding: after one
    // connection error, a script the ACL denied stopped the worker fetching for good).
    let mut killed = 0;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        killed += kill_connections(&mut admin, "worker").await;
    }
    assert!(killed > 0, "connections were killed");
    assert_eq!(
        job.wait(WAIT).await.unwrap(),
        42,
        "the producer reads the result"
    );
    assert_eq!(
        delayed.wait(WAIT).await.unwrap(),
        2,
        "delayed jobs are forwarded"
    );
    assert_eq!(
        wait_dead(&doomed, WAIT).await.0,
        2,
        "retries and the dead set work"
    );
    for (i, handle) in many.iter().enumerate() {
        assert_eq!(handle.wait(WAIT).await.unwrap(), i as i64 + 1, "job {i}");
    }
    assert_eq!(
        ghost.wait(WAIT).await.unwrap(),
        10,
        "the dead worker's job was recovered and ran"
    );
    let dead = worker_client.queue("math").dead_jobs(10).await.unwrap();
    assert!(
        dead.iter().any(|d| d.error.contains("worker died")),
        "the poisoned job was buried: {dead:?}"
    );
    worker
        .shutdown()
        .await
        .expect("the worker needs no more rights");
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_error_that_does_not_show_the_password() {
    init_logging();
    let redis = start_redis_with(&["--requirepass", "right-pass"]);
    let url = format!("redis://default:wrong-pass@127.0.0.1:{}", redis.port());
    let error = Client::connect(&url)
        .await
        .expect_err("a wrong password must fail");
    let message = format!("{error} {error:?}");
    assert!(
        !message.contains("wrong-pass"),
        "the password leaked: {message}"
    );
    assert!(
        message.to_lowercase().contains("pass") || message.contains("WRONGPASS"),
        "{message}"
    );

    let ok = format!("redis://default:right-pass@127.0.0.1:{}", redis.port());
    let client = Client::connect_with_prefix(&ok, &unique_prefix("pass"))
        .await
        .unwrap();
    let worker = Worker::new(&client).queues(["math"]).spawn();
    let job = tasks::add::with()
        .client(&client)
        .enqueue("k".into(), 1, 2)
        .await
        .unwrap();
    assert_eq!(job.wait(WAIT).await.unwrap(), 3);
    worker.shutdown().await.unwrap();
}

/// Makes a private CA and a server certificate for 127.0.0.1 with openssl; returns the CA's PEM.
fn make_certificates(dir: &std::path::Path) -> Vec<u8> {
    let run = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl must be installed");
        assert!(status.success(), "openssl {args:?} failed");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=dtask test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("san.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.cnf",
    ]);
    std::fs::read(dir.join("ca.crt")).unwrap()
}

#[tokio::test]
async fn jobs_run_over_tls_with_a_private_certificate_authority() {
    init_logging();
    let certs = TempDir::new("tls");
    let ca = make_certificates(certs.path());
    let tls_port = free_port();
    let path = |name: &str| certs.path().join(name).to_str().unwrap().to_owned();
    let redis = start_redis_with(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &path("server.crt"),
        "--tls-key-file",
        &path("server.key"),
        "--tls-ca-cert-file",
        &path("ca.crt"),
        "--tls-auth-clients",
        "no",
    ]);
    let _plain_port_is_for_readiness = redis.port();
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let prefix = unique_prefix("tls");

    // Without the CA, the server's certificate is not trusted.
    let untrusted = Client::connect_with_prefix(&url, &prefix).await;
    assert!(
        untrusted.is_err(),
        "a certificate from an unknown CA must be refused"
    );

    let client = Client::builder(&url)
        .prefix(&prefix)
        .tls_ca_pem(ca)
        .connect()
        .await
        .unwrap();
    let worker = Worker::new(&client).queues(["math"]).spawn();
    let job = tasks::add::with()
        .client(&client)
        .enqueue("k".into(), 20, 22)
        .await
        .unwrap();
    assert_eq!(job.wait(WAIT).await.unwrap(), 42);
    worker.shutdown().await.unwrap();
}
