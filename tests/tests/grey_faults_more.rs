//! Grey faults found by an adversarial review, each a regression test against a real
//! redis-server or cluster: Redis frozen (SIGSTOP) under a producer and at SIGTERM, the README
//! ACL users on a cluster, a cluster node frozen or down beside the queues a worker serves, a
//! one-shard cluster behind one URL, a queue whose heartbeat fails, a job enqueued as an idle
//! worker shuts down, and the outcome of a task that keeps no result.

use std::time::{Duration, Instant};

use dtask::{Client, Worker};
use dtask_tests::harness::{
    eventually, init_logging, readme_acl, start_redis, start_redis_with, start_with_client,
    unique_prefix,
};
use dtask_tests::tasks;

const WAIT: Duration = Duration::from_secs(10);

async fn keys(raw: &mut redis::aio::MultiplexedConnection, pattern: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(raw)
        .await
        .unwrap()
}

/// An embedded worker is shut down while idle (its waiter is inside a BLMOVE). A job enqueued
/// right after `shutdown()` returned is taken by the BLMOVE that is still pending on the server
/// (redis-rs keeps the socket open until in-flight requests are answered), lands in the landing
/// list of a worker that already handed back its jobs and left the registry: nobody ever
/// recovers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_enqueued_just_after_an_idle_worker_shut_down_is_not_lost() {
    let (_redis, client, mut raw, prefix) = start_with_client("blmove-after-shutdown").await;
    let mut lost = 0;
    for round in 0..5 {
        let worker = Worker::new(&client).queues(["math"]).spawn();
        // Let the worker go idle: its waiter blocks in BLMOVE (1 s each).
        tokio::time::sleep(Duration::from_millis(1300 + round * 150)).await;
        let info: String = redis::cmd("INFO")
            .arg("clients")
            .query_async(&mut raw)
            .await
            .unwrap();
        let blocked = info
            .lines()
            .find(|l| l.starts_with("blocked_clients"))
            .unwrap()
            .to_owned();
        let started = Instant::now();
        worker.shutdown().await.unwrap();
        let took = started.elapsed();
        let key = unique_prefix("late");
        tasks::add::with()
            .client(&client)
            .enqueue(key.clone(), 1, 2)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let pending: u64 = redis::cmd("LLEN")
            .arg(format!("{prefix}:{{math}}:pending"))
            .query_async(&mut raw)
            .await
            .unwrap();
        let landing = keys(&mut raw, &format!("{prefix}:{{math}}:landing:*")).await;
        let workers: Vec<String> = redis::cmd("ZRANGE")
            .arg(format!("{prefix}:{{math}}:workers"))
            .arg(0)
            .arg(-1)
            .query_async(&mut raw)
            .await
            .unwrap();
        eprintln!(
            "round {round}: {blocked}; shutdown took {took:?}; pending {pending}; landing lists {landing:?}; registered workers {workers:?}"
        );
        if pending == 0 {
            lost += 1;
            for list in &landing {
                let _: () = redis::cmd("DEL")
                    .arg(list)
                    .query_async(&mut raw)
                    .await
                    .unwrap();
            }
        } else {
            let _: () = redis::cmd("DEL")
                .arg(format!("{prefix}:{{math}}:pending"))
                .query_async(&mut raw)
                .await
                .unwrap();
        }
    }
    assert_eq!(
        lost, 0,
        "jobs stranded in the landing list of a worker that is gone"
    );
}

fn redis_pid(url: &str) -> u32 {
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    let info: String = redis::cmd("INFO").arg("server").query(&mut conn).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn signal(pid: u32, sig: &str) {
    assert!(
        std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success()
    );
}

/// README: "SIGTERM ... exits 0, within the grace period plus a few seconds even when Redis is
/// unreachable". A Redis that does not answer (frozen, or a silent network) rather than one
/// that refuses connections: the recoverer and forwarder loops are not bounded at shutdown
/// (`helpers.wait()`), nor is a fetch round (`fetcher.await`).
#[tokio::test]
async fn sigterm_while_redis_is_silent_exits_within_the_grace_period() {
    init_logging();
    let redis = start_redis();
    let prefix = unique_prefix("sigterm-silent");
    let worker_exe = env!("CARGO_BIN_EXE_test_worker");
    let settings = [("TEST_GRACE_MS", "1000")];
    let log = std::fs::File::create("/tmp/review-sigterm-worker.log").unwrap();
    let child = std::process::Command::new(worker_exe)
        .env("DTASK_REDIS_URL", redis.url())
        .env("DTASK_PREFIX", &prefix)
        .env("TEST_QUEUES", "a,b,c")
        .env("RUST_LOG", "dtask=debug")
        .envs(settings.iter().copied())
        .stdout(log)
        .spawn()
        .unwrap();
    let mut worker = child;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = redis_pid(&redis.url());
    signal(pid, "STOP");
    // Long enough for the worker's loops to be waiting on Redis.
    tokio::time::sleep(Duration::from_secs(3)).await;
    signal(worker.id(), "TERM");
    let started = Instant::now();
    let mut code = None;
    while started.elapsed() < Duration::from_secs(60) {
        if let Some(status) = worker.try_wait().unwrap() {
            code = status.code();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    signal(pid, "CONT");
    if code.is_none() {
        let resumed = Instant::now();
        while resumed.elapsed() < Duration::from_secs(120) {
            if let Some(status) = worker.try_wait().unwrap() {
                code = status.code();
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if code.is_none() {
            let _ = worker.kill();
        }
        eprintln!(
            "still running {took:?} after SIGTERM with Redis frozen; exited {code:?} {:?} after Redis resumed",
            resumed.elapsed()
        );
    }
    eprintln!("exit {code:?} after {took:?} (grace 1 s)");
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(7), "took {took:?} (grace 1 s)");
}

/// `ClientBuilder::response_timeout`: "How long a command may wait for Redis's answer before
/// it fails". With Redis frozen (SIGSTOP, as in the torture scenario), the second timeout in a
/// row makes the call replace the connection inline, holding the `replacing` lock while
/// redis-rs's ConnectionManager retries its connection 6 more times with a 5 s connection
/// timeout each: one enqueue call takes ~40 s instead of ~1 s, and every concurrent call waits
/// behind the lock.
#[tokio::test]
async fn an_enqueue_fails_within_about_its_response_timeout_when_redis_is_frozen() {
    init_logging();
    let redis = start_redis();
    let prefix = unique_prefix("frozen-enqueue");
    let client = Client::builder(&redis.url())
        .prefix(&prefix)
        .response_timeout(Duration::from_secs(1))
        .connect()
        .await
        .unwrap();
    let pid = redis_pid(&redis.url());
    signal(pid, "STOP");
    let mut longest = Duration::ZERO;
    for i in 0..3 {
        let started = Instant::now();
        let result = tasks::add::with()
            .client(&client)
            .enqueue("k".to_owned(), i, 1)
            .await;
        let took = started.elapsed();
        eprintln!(
            "enqueue {i}: {:?} after {took:?}",
            result.map(|_| ()).map_err(|e| e.to_string())
        );
        longest = longest.max(took);
    }
    signal(pid, "CONT");
    assert!(
        longest < Duration::from_secs(5),
        "an enqueue with a 1 s response timeout took {longest:?}"
    );
}

/// The README's least-privilege users on a Redis Cluster (the README presents Cluster as the
/// way to scale out): redis-rs's cluster client discovers the topology with `CLUSTER SLOTS`,
/// which neither ACL line allows.
#[tokio::test]
async fn the_readme_acl_users_work_on_a_cluster() {
    use dtask_tests::harness::start_cluster;
    init_logging();
    let cluster = start_cluster();
    let prefix = unique_prefix("cluster-acl");
    for node in cluster.url().split(',') {
        let mut conn = redis::Client::open(node).unwrap().get_connection().unwrap();
        for user in ["producer", "worker"] {
            let rules = readme_acl(user);
            let mut cmd = redis::cmd("ACL");
            cmd.arg("SETUSER").arg(user);
            for rule in rules.split_whitespace() {
                cmd.arg(rule.replace("~dtask:*", &format!("~{prefix}:*")));
            }
            if std::env::var("REVIEW_FIX").is_ok() {
                cmd.arg("+cluster|slots");
            }
            let _: () = cmd.query(&mut conn).unwrap();
        }
    }
    let as_user = |user: &str, password: &str| {
        cluster
            .url()
            .split(',')
            .map(|n| n.replace("redis://", &format!("redis://{user}:{password}@")))
            .collect::<Vec<_>>()
            .join(",")
    };
    let producer =
        Client::connect_with_prefix(&as_user("producer", "producer-password"), &prefix).await;
    eprintln!(
        "producer: {:?}",
        producer.as_ref().map(|_| ()).map_err(|e| e.to_string())
    );
    let worker = Client::connect_with_prefix(&as_user("worker", "worker-password"), &prefix).await;
    eprintln!(
        "worker: {:?}",
        worker.as_ref().map(|_| ()).map_err(|e| e.to_string())
    );
    assert!(producer.is_ok() && worker.is_ok());
    let (producer, worker_client) = (producer.unwrap(), worker.unwrap());
    let worker = Worker::new(&worker_client)
        .queues(["math", "flaky"])
        .spawn();
    let key = unique_prefix("k");
    let job = tasks::add::with()
        .client(&producer)
        .enqueue(key.clone(), 2, 3)
        .await
        .unwrap();
    assert_eq!(job.wait(WAIT).await.unwrap(), 5);
    let flaky = tasks::flaky::with()
        .client(&producer)
        .enqueue(key.clone(), 1)
        .await
        .unwrap();
    eprintln!("flaky: {:?}", flaky.wait(WAIT).await);
    worker.shutdown().await.unwrap();
}

/// The node (URL) serving the hash slot of `{queue}`.
fn partial_coverage(cluster_url: &str) {
    for node in cluster_url.split(',') {
        let mut conn = redis::Client::open(node).unwrap().get_connection().unwrap();
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("cluster-require-full-coverage")
            .arg("no")
            .query(&mut conn)
            .unwrap();
    }
}

fn node_of(cluster_url: &str, queue: &str) -> String {
    let first = cluster_url.split(',').next().unwrap();
    let mut conn = redis::Client::open(first)
        .unwrap()
        .get_connection()
        .unwrap();
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(format!("{{{queue}}}"))
        .query(&mut conn)
        .unwrap();
    let slots: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut conn).unwrap();
    for range in slots {
        let redis::Value::Array(items) = range else {
            panic!()
        };
        let (redis::Value::Int(lo), redis::Value::Int(hi)) = (&items[0], &items[1]) else {
            panic!()
        };
        if *lo <= slot && slot <= *hi {
            let redis::Value::Array(node) = &items[2] else {
                panic!()
            };
            let redis::Value::Int(port) = &node[1] else {
                panic!()
            };
            return format!("redis://127.0.0.1:{port}");
        }
    }
    panic!("slot {slot} unserved")
}

static STARTS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn starts(key: &str) -> usize {
    STARTS.lock().unwrap().iter().filter(|k| *k == key).count()
}

/// Records that it started for `key`, then sleeps `millis`.
#[dtask::task(queue = "math", retries = 0)]
async fn sleepy(key: String, millis: u64) {
    STARTS.lock().unwrap().push(key);
    tokio::time::sleep(Duration::from_millis(millis)).await;
}

/// README: "A live worker is never taken for dead" and "a queue that fails ... is set aside;
/// the worker's other queues go on". `Broker::heartbeat` beats the queues in order and stops at
/// the first error: when a queue listed before `math` fails (here its registry key has the
/// wrong type; in a cluster, its node is down), `math` gets no heartbeat, and another worker
/// recovers and reruns the job the live worker is running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_queue_does_not_stop_the_heartbeat_of_the_other_queues() {
    let (_redis, client, mut raw, prefix) = start_with_client("heartbeat-broken-queue").await;
    let w = Worker::new(&client)
        .queues(["broken", "math"])
        .concurrency(1)
        .spawn();
    let key = unique_prefix("slow");
    sleepy::with()
        .client(&client)
        .enqueue(key.clone(), 12_000)
        .await
        .unwrap();
    eventually(WAIT, "the job started", || async {
        (starts(&key) == 1).then_some(())
    })
    .await;
    // Queue `broken` breaks: its registry key is overwritten with a string.
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}:{{broken}}:workers"))
        .arg("not a zset")
        .query_async(&mut raw)
        .await
        .unwrap();
    let v = Worker::new(&client).queues(["math"]).spawn();
    tokio::time::sleep(Duration::from_secs(11)).await;
    let n = starts(&key);
    eprintln!("the job started {n} time(s) while its first run was still going on a live worker");
    v.shutdown().await.unwrap();
    w.shutdown().await.unwrap();
    assert_eq!(n, 1, "a live worker's job was recovered and run again");
}

/// Fails its first attempt for `key`, then succeeds; keeps no result.
#[dtask::task(queue = "math", result_ttl = "0s", retries = 3)]
async fn forgetful_flaky(key: String) -> Result<(), String> {
    STARTS.lock().unwrap().push(key.clone());
    if starts(&key) == 1 {
        Err("first attempt fails".into())
    } else {
        Ok(())
    }
}

/// A task that keeps no result (`result_ttl = "0s"`) still gets a Retrying record (kept for
/// the worker's result_ttl, 1 h) when an attempt fails; its success writes nothing, so the
/// job reads as "Retrying" for an hour after it succeeded.
#[tokio::test]
async fn a_job_that_keeps_no_result_does_not_read_as_retrying_after_it_succeeded() {
    let (_redis, client, _raw, _prefix) = start_with_client("no-result-retrying").await;
    let worker = Worker::new(&client)
        .queues(["math"])
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(20))
        .spawn();
    let key = unique_prefix("ff");
    let job = forgetful_flaky::with()
        .client(&client)
        .enqueue(key.clone())
        .await
        .unwrap();
    eventually(WAIT, "the second attempt ran", || async {
        (starts(&key) == 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = client.job(job.id().as_str()).status().await.unwrap();
    eprintln!("status after the job succeeded: {status:?}");
    worker.shutdown().await.unwrap();
    assert!(
        !matches!(status, dtask::JobStatus::Retrying { .. }),
        "{status:?}"
    );
}

/// README: "A live worker is never taken for dead ... A fault in one queue, one connection or
/// one cluster node does not stall or strand the jobs of another". A worker on [math, b] of a
/// cluster runs a long `math` job when the node of `b` freezes (SIGSTOP: a node that stops
/// answering, as in a network partition). Its heartbeat's cluster connection then times out on
/// `math` too (or is dropped and remade, and the new one does not answer), `math`'s registry
/// entry lapses, and a worker elsewhere recovers and reruns the job still running here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_cluster_node_does_not_make_a_live_worker_look_dead_on_other_queues() {
    use dtask_tests::harness::start_cluster;
    init_logging();
    let cluster = start_cluster();
    let url = cluster.url();
    if std::env::var("REVIEW_FULL_COVERAGE").is_err() {
        partial_coverage(&url);
    }
    let a = "math".to_owned();
    let b = (0..100)
        .map(|i| format!("other{i}"))
        .find(|q| node_of(&url, q) != node_of(&url, &a))
        .unwrap();
    let prefix = unique_prefix("frozen-node-hb");
    let connect = || async {
        Client::builder(&url)
            .prefix(&prefix)
            .response_timeout(Duration::from_secs(3))
            .connect()
            .await
            .unwrap()
    };
    let w_client = connect().await;
    let v_client = connect().await;
    let w = Worker::new(&w_client)
        .queues([a.clone(), b.clone()])
        .concurrency(1)
        .spawn();
    let key = unique_prefix("slow");
    sleepy::with()
        .client(&v_client)
        .enqueue(key.clone(), 20_000)
        .await
        .unwrap();
    eventually(WAIT, "the job started", || async {
        (starts(&key) == 1).then_some(())
    })
    .await;
    let pid = redis_pid(&node_of(&url, &b));
    signal(pid, "STOP");
    let v = Worker::new(&v_client).queues([a.clone()]).spawn();
    tokio::time::sleep(Duration::from_secs(14)).await;
    signal(pid, "CONT");
    eprintln!("node resumed");
    tokio::time::sleep(Duration::from_secs(8)).await;
    let n = starts(&key);
    eprintln!("the job started {n} time(s)");
    v.shutdown().await.unwrap();
    w.shutdown().await.unwrap();
    assert_eq!(n, 1, "a live worker's job was recovered and run again");
}

/// Every dtask operation is an EVALSHA; a script a node has not cached is loaded by redis-rs
/// with `SCRIPT LOAD`, which its cluster client sends to *all* primaries and which fails unless
/// all succeed. With one node down, a worker that starts (or a healthy node that restarted, or
/// a replica promoted by failover, each with an empty script cache) cannot run a single script
/// on the healthy nodes: their queues stop although nothing is wrong with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_while_another_cluster_node_is_down_serves_its_healthy_queue() {
    use dtask_tests::harness::start_cluster;
    init_logging();
    let cluster = start_cluster();
    let url = cluster.url();
    partial_coverage(&url);
    let math_node = node_of(&url, "math");
    let other = url.split(',').find(|n| *n != math_node).unwrap().to_owned();
    let prefix = unique_prefix("down-node-scripts");
    let client = Client::builder(&url)
        .prefix(&prefix)
        .connect()
        .await
        .unwrap();
    let pid = redis_pid(&other);
    signal(pid, "KILL");
    tokio::time::sleep(Duration::from_secs(7)).await; // past cluster-node-timeout
    let key = unique_prefix("k");
    let enq = tasks::fire_and_forget::with()
        .client(&client)
        .enqueue(key.clone())
        .await;
    eprintln!(
        "enqueue to `math`: {:?}",
        enq.map(|_| ()).map_err(|e| e.to_string())
    );
    let worker = Worker::new(&client).queues(["math"]).spawn();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let ran = tasks::runs(&key).len();
    eprintln!("the `math` job ran {ran} time(s) in 10 s");
    let _ = tokio::time::timeout(Duration::from_secs(30), worker.shutdown()).await;
    assert_eq!(ran, 1);
}

/// A one-shard Redis Cluster reached through one URL (dtask treats one URL as a server): every
/// script of a queue stays in the queue's slot ("every script touches one slot and the same
/// code runs on one server or on a cluster"), except the new inline ack, whose KEYS include
/// result keys of other slots: Redis Cluster refuses it with CROSSSLOT, every acknowledgement
/// fails and is retried forever, and the worker stops once its slots are full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_shard_cluster_given_as_one_url_acknowledges_jobs() {
    init_logging();
    let redis = start_redis_with(&[
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
    ]);
    let mut admin = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("CLUSTER")
        .arg("ADDSLOTSRANGE")
        .arg(0)
        .arg(16383)
        .query(&mut admin)
        .unwrap();
    for _ in 0..100 {
        let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut admin).unwrap();
        if info.contains("cluster_state:ok") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let prefix = unique_prefix("one-shard");
    let client = Client::connect_with_prefix(&redis.url(), &prefix)
        .await
        .unwrap();
    let worker = Worker::new(&client).queues(["math"]).spawn();
    let key = unique_prefix("k");
    let job = tasks::add::with()
        .client(&client)
        .enqueue(key.clone(), 2, 3)
        .await
        .unwrap();
    let result = job.wait(Duration::from_secs(5)).await;
    eprintln!(
        "result: {:?}; runs: {:?}",
        result.as_ref().map_err(|e| e.to_string()),
        tasks::runs(&key)
    );
    let _ = tokio::time::timeout(Duration::from_secs(10), worker.shutdown()).await;
    assert_eq!(result.unwrap(), 5);
}
