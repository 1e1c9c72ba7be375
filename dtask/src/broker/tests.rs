//! Each broker operation on a real Redis, as a table: seed keys, run the operation, assert every
//! key it may touch. Each test starts its own redis-server (stopped by pid when dropped).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::*;

/// A throwaway redis-server on a free port.
struct Server(Child, u16);

impl Server {
    fn start() -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        Server(child, port)
    }

    async fn broker(&self) -> (Broker, redis::aio::MultiplexedConnection) {
        let url = format!("redis://127.0.0.1:{}", self.1);
        for _ in 0..500 {
            if let Ok(broker) = Broker::connect(&url, "t", None).await {
                let raw = redis::Client::open(url.as_str())
                    .unwrap()
                    .get_multiplexed_async_connection()
                    .await
                    .unwrap();
                return (broker, raw);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("redis-server on port {} did not start", self.1);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn list(raw: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<String> {
    redis::cmd("LRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .query_async(raw)
        .await
        .unwrap()
}

async fn zset(raw: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<(String, u64)> {
    redis::cmd("ZRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(raw)
        .await
        .unwrap()
}

async fn hash(raw: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(key)
        .query_async(raw)
        .await
        .unwrap();
    pairs.sort();
    pairs
}

async fn hset(raw: &mut redis::aio::MultiplexedConnection, key: &str, pairs: &[(&str, &str)]) {
    let _: () = redis::cmd("HSET")
        .arg(key)
        .arg(pairs)
        .query_async(raw)
        .await
        .unwrap();
}

fn pair(field: &str, payload: &str) -> (String, String) {
    (field.to_owned(), payload.to_owned())
}

async fn push(raw: &mut redis::aio::MultiplexedConnection, key: &str, items: &[&str]) {
    let _: () = redis::cmd("RPUSH")
        .arg(key)
        .arg(items)
        .query_async(raw)
        .await
        .unwrap();
}

#[tokio::test]
async fn enqueue_puts_ready_jobs_in_order_and_delayed_jobs_in_the_scheduled_set() {
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    let job = |queue, payload, due_ms| NewJob {
        queue,
        payload,
        due_ms,
    };
    broker
        .enqueue(&[
            job("a", "a1", None),
            job("a", "a2", None),
            job("b", "b1", None),
            job("a", "a3", Some(5_000)),
            job("a", "a4", None),
        ])
        .await
        .unwrap();
    assert_eq!(list(&mut raw, "t:{a}:pending").await, ["a1", "a2", "a4"]);
    assert_eq!(list(&mut raw, "t:{b}:pending").await, ["b1"]);
    assert_eq!(
        zset(&mut raw, "t:{a}:scheduled").await,
        [("a3".into(), 5_000)]
    );
}

#[tokio::test]
async fn fetch_holds_the_oldest_jobs_in_flight_by_id_and_marks_the_worker_alive() {
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    let (j1, j2) = (
        r#"{"v":1,"id":"A1","t":"x"}"#,
        r#"{"v":1,"id":"B2","t":"x"}"#,
    );
    push(&mut raw, "t:{q}:pending", &[j1, j2, "garbage"]).await;
    let (fetched, suspect) = broker.fetch("q", "w1", 2, true).await.unwrap();
    assert!(!suspect);
    assert_eq!(
        fetched,
        [
            ("A1".to_owned(), j1.as_bytes().to_vec()),
            ("B2".to_owned(), j2.as_bytes().to_vec())
        ]
    );
    assert_eq!(list(&mut raw, "t:{q}:pending").await, ["garbage"]);
    assert_eq!(
        hash(&mut raw, "t:{q}:active:w1").await,
        [pair("A1", j1), pair("B2", j2)]
    );
    let workers = zset(&mut raw, "t:{q}:workers").await;
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].0, "w1");
    assert!(
        workers[0].1 > 1_700_000_000_000,
        "scored by the server's clock in ms"
    );

    // A payload without an id is held under its hash; the same id twice never overwrites.
    push(
        &mut raw,
        "t:{q}:pending",
        &[r#"{"id":"A1","other":1}"#, r#"{"id":"A1","other":2}"#],
    )
    .await;
    let (fetched, _) = broker.fetch("q", "w1", 10, true).await.unwrap();
    let fields: Vec<&str> = fetched.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields.len(), 3);
    assert!(
        fields[0].starts_with("raw:") && fields[0].len() == 44,
        "{fields:?}"
    );
    assert_eq!(&fields[1..], ["A1~1", "A1~2"]);
    assert_eq!(
        hash(&mut raw, "t:{q}:active:w1").await.len(),
        5,
        "nothing overwritten"
    );
    assert!(
        broker
            .fetch("q", "w1", 10, true)
            .await
            .unwrap()
            .0
            .is_empty()
    );
}

#[tokio::test]
async fn fetch_takes_one_suspect_first_and_only_when_allowed() {
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    push(
        &mut raw,
        "t:{q}:suspects",
        &[r#"{"d":2,"id":"S1"}"#, r#"{"d":2,"id":"S2"}"#],
    )
    .await;
    push(
        &mut raw,
        "t:{q}:pending",
        &[r#"{"id":"P1"}"#, r#"{"id":"P2"}"#],
    )
    .await;
    let (fetched, suspect) = broker.fetch("q", "w1", 1, false).await.unwrap();
    assert!(!suspect);
    assert_eq!(fetched[0].0, "P1", "no suspect while one is in flight");
    let (fetched, suspect) = broker.fetch("q", "w1", 10, true).await.unwrap();
    assert!(suspect);
    let fields: Vec<&str> = fetched.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        ["S1", "P2"],
        "one suspect, first, then pending jobs"
    );
    assert_eq!(
        list(&mut raw, "t:{q}:suspects").await,
        [r#"{"d":2,"id":"S2"}"#]
    );
}

#[tokio::test]
async fn a_blocking_fetch_lands_a_job_that_arrives_while_it_waits() {
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    let mut blocking = broker.blocking_connection().await.unwrap();
    let empty = broker
        .fetch_blocking(&mut blocking, "q", "w1", Duration::from_millis(50))
        .await
        .unwrap();
    assert_eq!(empty, None);
    let waiting = broker.fetch_blocking(&mut blocking, "q", "w1", Duration::from_secs(5));
    let pushing = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        push(&mut raw.clone(), "t:{q}:pending", &["j1"]).await;
    };
    let (fetched, ()) = tokio::join!(waiting, pushing);
    assert_eq!(fetched.unwrap(), Some(b"j1".to_vec()));
    assert_eq!(list(&mut raw, "t:{q}:landing:w1").await, ["j1"]);
    assert!(list(&mut raw, "t:{q}:pending").await.is_empty());
}

#[tokio::test]
async fn ack_stores_results_and_releases_exactly_the_finished_jobs() {
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    hset(
        &mut raw,
        "t:{q}:active:w1",
        &[("A", "ja"), ("B", "jb"), ("C", "jc")],
    )
    .await;
    push(&mut raw, "t:{q}:landing:w1", &["jl", "jm"]).await;
    let finished = |field: Option<&str>, payload: &str, outcome: Option<(&str, &str)>| Finished {
        queue: "q".into(),
        field: field.map(str::to_owned),
        payload: payload.as_bytes().to_vec(),
        outcome: outcome.map(|(id, record)| (id.to_owned(), record.to_owned(), None)),
    };
    // A landed job before held ones: each release must stay its own command.
    let done = [
        finished(None, "jl", None),
        finished(Some("A"), "ja", Some(("id1", "r1"))),
        finished(Some("C"), "jc", None),
    ];
    broker
        .ack_many("w1", done.iter(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(hash(&mut raw, "t:{q}:active:w1").await, [pair("B", "jb")]);
    assert_eq!(list(&mut raw, "t:{q}:landing:w1").await, ["jm"]);
    assert_eq!(broker.result("id1").await.unwrap().as_deref(), Some("r1"));
    let ttl: i64 = redis::cmd("PTTL")
        .arg("t:result:{id1}")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(ttl > 50_000 && ttl <= 60_000, "{ttl}");
}

#[tokio::test]
async fn retry_moves_an_in_flight_job_to_the_retry_set_and_ignores_one_no_longer_there() {
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    hset(&mut raw, "t:{q}:active:w1", &[("A", "ja")]).await;
    push(&mut raw, "t:{q}:landing:w1", &["jl"]).await;
    let held = |field, payload| Held { field, payload };
    assert!(
        broker
            .retry("q", "w1", &held(Some("A"), b"ja"), "ja-next", 9_000)
            .await
            .unwrap()
    );
    assert!(
        broker
            .retry("q", "w1", &held(None, b"jl"), "jl-next", 9_500)
            .await
            .unwrap()
    );
    assert!(hash(&mut raw, "t:{q}:active:w1").await.is_empty());
    assert!(list(&mut raw, "t:{q}:landing:w1").await.is_empty());
    assert_eq!(
        zset(&mut raw, "t:{q}:retry").await,
        [("ja-next".into(), 9_000), ("jl-next".into(), 9_500)]
    );
    // A late retry from a worker whose job was recovered changes nothing.
    assert!(
        !broker
            .retry("q", "w1", &held(Some("A"), b"ja"), "again", 1)
            .await
            .unwrap()
    );
    assert!(
        !broker
            .retry("q", "w1", &held(None, b"jl"), "again", 1)
            .await
            .unwrap()
    );
    assert_eq!(zset(&mut raw, "t:{q}:retry").await.len(), 2);
}

#[tokio::test]
async fn bury_records_the_job_and_trims_the_dead_set_by_size_and_age() {
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    let limits = DeadLimits {
        max_len: 2,
        max_age: Duration::from_millis(1_000),
    };
    hset(
        &mut raw,
        "t:{q}:active:w1",
        &[("1", "j1"), ("2", "j2"), ("3", "j3")],
    )
    .await;
    push(&mut raw, "t:{q}:landing:w1", &["j4"]).await;
    for (field, payload, at) in [
        (Some("1"), "j1", 100),
        (Some("2"), "j2", 5_000),
        (Some("3"), "j3", 5_500),
        (None, "j4", 5_600),
    ] {
        let record = format!("dead-{payload}");
        let held = Held {
            field,
            payload: payload.as_bytes(),
        };
        assert!(
            broker
                .bury("q", "w1", &held, &record, at, limits)
                .await
                .unwrap()
        );
    }
    assert!(hash(&mut raw, "t:{q}:active:w1").await.is_empty());
    assert!(list(&mut raw, "t:{q}:landing:w1").await.is_empty());
    assert_eq!(
        zset(&mut raw, "t:{q}:dead").await,
        [("dead-j3".into(), 5_500), ("dead-j4".into(), 5_600)],
        "j1 aged out, j2 fell off the end"
    );
    let gone = Held {
        field: Some("9"),
        payload: b"j9",
    };
    assert!(
        !broker
            .bury("q", "w1", &gone, "dead-j9", 6_000, limits)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn forward_due_moves_only_due_jobs_and_tells_when_the_next_one_is_due() {
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    push(&mut raw, "t:{q}:pending", &["p0"]).await;
    let _: () = redis::pipe()
        .cmd("ZADD")
        .arg("t:{q}:scheduled")
        .arg(100)
        .arg("s1")
        .ignore()
        .cmd("ZADD")
        .arg("t:{q}:scheduled")
        .arg(900)
        .arg("s2")
        .ignore()
        .cmd("ZADD")
        .arg("t:{q}:retry")
        .arg(200)
        .arg("r1")
        .ignore()
        .cmd("ZADD")
        .arg("t:{q}:retry")
        .arg(700)
        .arg("r2")
        .ignore()
        .query_async(&mut raw)
        .await
        .unwrap();
    let forwarded = broker.forward_due("q", 500, 100).await.unwrap();
    assert_eq!(forwarded.moved, 2);
    assert_eq!(forwarded.next_due_ms, Some(700));
    assert_eq!(list(&mut raw, "t:{q}:pending").await, ["p0", "s1", "r1"]);
    assert_eq!(
        zset(&mut raw, "t:{q}:scheduled").await,
        [("s2".into(), 900)]
    );
    assert_eq!(zset(&mut raw, "t:{q}:retry").await, [("r2".into(), 700)]);

    let forwarded = broker.forward_due("q", 1_000, 1).await.unwrap();
    assert_eq!(
        (forwarded.moved, forwarded.next_due_ms),
        (2, None),
        "one per set"
    );
    assert_eq!(
        list(&mut raw, "t:{q}:pending").await,
        ["p0", "s1", "r1", "s2", "r2"]
    );
}

#[tokio::test]
async fn requeue_lapsed_leaves_a_live_worker_alone_and_counts_deaths_of_a_dead_one() {
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    let envelope = |id: &str| format!(r#"{{"v":1,"id":"{id}","t":"task","q":"q","a":[],"at":1}}"#);
    let poison = r#"{"d":2,"v":1,"id":"p","t":"task","q":"q","a":[],"n":1,"at":1}"#;
    let once = r#"{"d":1,"v":1,"id":"o","t":"task","a":[],"at":1}"#;
    let (e1, e2) = (envelope("e1"), envelope("e2"));
    push(&mut raw, "t:{q}:pending", &["waiting"]).await;
    hset(
        &mut raw,
        "t:{q}:active:w1",
        &[
            ("e1", &e1),
            ("p", poison),
            ("raw:x", "garbage"),
            ("o", once),
        ],
    )
    .await;
    push(&mut raw, "t:{q}:landing:w1", &[&e2]).await;
    let _: () = redis::cmd("ZADD")
        .arg("t:{q}:workers")
        .arg(1_000)
        .arg("w1")
        .query_async(&mut raw)
        .await
        .unwrap();

    assert!(
        broker
            .requeue_lapsed("q", "w1", 999, 3)
            .await
            .unwrap()
            .is_none(),
        "alive"
    );
    assert_eq!(hash(&mut raw, "t:{q}:active:w1").await.len(), 4);

    let outcome = broker
        .requeue_lapsed("q", "w1", 1_000, 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome.requeued, 4);
    assert_eq!(
        list(&mut raw, "t:{q}:suspects").await,
        [once.replacen(r#""d":1"#, r#""d":2"#, 1)],
        "a job in flight on its second dead worker becomes a suspect"
    );
    assert_eq!(outcome.buried, ["p"]);
    assert_eq!(
        list(&mut raw, "t:{q}:pending").await,
        [
            e1.replacen('{', r#"{"d":1,"#, 1),
            "garbage".to_owned(),
            e2.replacen('{', r#"{"d":1,"#, 1),
            "waiting".to_owned(),
        ],
        "at the front (held ones, then landed ones), each with one death counted"
    );
    assert!(hash(&mut raw, "t:{q}:active:w1").await.is_empty());
    assert!(list(&mut raw, "t:{q}:landing:w1").await.is_empty());
    assert!(
        zset(&mut raw, "t:{q}:workers").await.is_empty(),
        "the worker is forgotten"
    );
    let dead = zset(&mut raw, "t:{q}:dead").await;
    assert_eq!(dead.len(), 1);
    let record: serde_json::Value = serde_json::from_str(&dead[0].0).unwrap();
    assert_eq!(record["id"], "p");
    assert_eq!(record["task"], "task");
    assert_eq!(
        record["error"],
        "worker died 3 times while running this job"
    );
    assert_eq!(record["attempts"], 4, "1 failed attempt + 3 deaths");
    assert_eq!(record["job"]["d"], 3);
}

#[tokio::test]
async fn requeue_own_returns_everything_without_counting_deaths() {
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    let e1 = r#"{"v":1,"id":"e1","t":"task","q":"q","a":[],"at":1}"#;
    hset(&mut raw, "t:{q}:active:w1", &[("e1", e1)]).await;
    push(&mut raw, "t:{q}:landing:w1", &["landed"]).await;
    broker.heartbeat(&["q".to_owned()], "w1").await.unwrap();
    assert_eq!(broker.requeue_own("q", "w1").await.unwrap(), 2);
    assert_eq!(list(&mut raw, "t:{q}:pending").await, [e1, "landed"]);
    assert!(zset(&mut raw, "t:{q}:workers").await.is_empty());
}

#[tokio::test]
async fn reclaim_returns_only_the_jobs_the_worker_does_not_hold() {
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    hset(
        &mut raw,
        "t:{q}:active:w1",
        &[("A", "ja"), ("B", "jb"), ("C", "jc")],
    )
    .await;
    push(&mut raw, "t:{q}:landing:w1", &["jl", "jl", "jm"]).await;
    let held = ["A".to_owned(), "C".to_owned()];
    assert_eq!(broker.reclaim_fetched("q", "w1", &held).await.unwrap(), 1);
    assert_eq!(
        hash(&mut raw, "t:{q}:active:w1").await,
        [pair("A", "ja"), pair("C", "jc")]
    );
    assert_eq!(list(&mut raw, "t:{q}:pending").await, ["jb"]);
    let landed = [b"jl".to_vec()];
    assert_eq!(broker.reclaim_landed("q", "w1", &landed).await.unwrap(), 2);
    assert_eq!(list(&mut raw, "t:{q}:landing:w1").await, ["jl"]);
    assert_eq!(list(&mut raw, "t:{q}:pending").await.len(), 3);
    assert_eq!(
        broker.reclaim_fetched("q", "w1", &[]).await.unwrap(),
        2,
        "none held"
    );
}
