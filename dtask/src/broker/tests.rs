//! Each broker operation on a real Redis, as a table: seed keys, run the operation, assert every
//! key it may touch. Each test starts its own redis-server (stopped by pid when dropped).

use std::time::Duration;

use dtask_testkit::redis_server::RedisServer;

use super::*;

/// A throwaway redis-server of the test's own, stopped by pid when dropped.
struct Server(RedisServer);

impl Server {
    fn start() -> Server {
        Server(RedisServer::start().expect("start redis-server"))
    }

    /// A broker on the server (its scripts loaded) and a raw connection to look at the keys.
    async fn broker(&self) -> (Broker, redis::aio::MultiplexedConnection) {
        let url = self.0.url();
        let broker = Broker::connect(&url, "t", None, DEFAULT_RESPONSE_TIMEOUT)
            .await
            .expect("connect the broker");
        let raw = redis::Client::open(url.as_str())
            .expect("a valid URL")
            .get_multiplexed_async_connection()
            .await
            .expect("a raw connection");
        (broker, raw)
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

async fn exists(raw: &mut redis::aio::MultiplexedConnection, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<i64>(raw)
        .await
        .unwrap()
        == 1
}

/// The outcome record kept for job `id` (prefix `t`), and how long its results hash has left.
async fn outcome(raw: &mut redis::aio::MultiplexedConnection, id: &str) -> (Option<String>, i64) {
    let key = keys::results("t", id);
    let record = redis::cmd("HGET")
        .arg(&key)
        .arg(id)
        .query_async(raw)
        .await
        .unwrap();
    let ttl_left = redis::cmd("PTTL").arg(&key).query_async(raw).await.unwrap();
    (record, ttl_left)
}

async fn server_ms(raw: &mut redis::aio::MultiplexedConnection) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(raw).await.unwrap();
    secs * 1000 + micros / 1000
}

fn leases(jobs: &[Leased]) -> Vec<&str> {
    jobs.iter().map(|job| job.lease.as_str()).collect()
}

fn payloads(jobs: &[Leased]) -> Vec<&str> {
    jobs.iter()
        .map(|job| std::str::from_utf8(&job.payload).unwrap())
        .collect()
}

#[tokio::test]
async fn enqueue_puts_ready_jobs_in_order_and_delayed_jobs_in_the_scheduled_set() {
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    let job = |queue, payload, due| NewJob {
        queue,
        payload,
        due,
    };
    let before = server_ms(&mut raw).await;
    broker
        .enqueue(
            &[
                job("a", "a1", None),
                job("a", "a2", None),
                job("b", "b1", None),
                job("a", "a3", Some(Due::AtMs(5_000))),
                job("a", "a4", None),
                job("a", "a5", Some(Due::After(Duration::from_secs(60)))),
            ],
            &super::News::default(),
            None,
        )
        .await
        .unwrap();
    let after = server_ms(&mut raw).await;
    assert_eq!(list(&mut raw, "t:{a}:pending").await, ["a1", "a2", "a4"]);
    assert_eq!(list(&mut raw, "t:{b}:pending").await, ["b1"]);
    let scheduled = zset(&mut raw, "t:{a}:scheduled").await;
    assert_eq!(scheduled[0], ("a3".into(), 5_000));
    assert_eq!(scheduled[1].0, "a5");
    assert!(
        (before + 60_000..=after + 60_000).contains(&scheduled[1].1),
        "a delay counts on the server's clock: {scheduled:?}"
    );
}

#[tokio::test]
async fn fetch_leases_the_oldest_jobs_without_reading_them_and_marks_the_worker_alive() {
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    let (j1, j2) = (r#"{"v":1,"id":"A1","t":"x"}"#, "not json at all");
    push(&mut raw, "t:{q}:pending", &[j1, j2, "third"]).await;
    let Taken {
        jobs: fetched,
        suspect,
        ..
    } = broker.fetch("q", "w1", 2, true).await.unwrap();
    assert!(!suspect);
    assert_eq!(leases(&fetched), ["1", "2"]);
    assert_eq!(payloads(&fetched), [j1, j2]);
    assert_eq!(list(&mut raw, "t:{q}:pending").await, ["third"]);
    assert_eq!(
        hash(&mut raw, "t:{q}:active:w1").await,
        [pair("1", j1), pair("2", j2)]
    );
    let workers = zset(&mut raw, "t:{q}:workers").await;
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].0, "w1");
    assert!(
        workers[0].1 > 1_700_000_000_000,
        "scored by the server's clock in ms"
    );

    // The same payload again (a job recovered and fetched anew) gets a new lease: leases are
    // never reused, whichever worker fetches.
    push(&mut raw, "t:{q}:pending", &[j1]).await;
    let fetched = broker.fetch("q", "w1", 10, true).await.unwrap().jobs;
    assert_eq!(leases(&fetched), ["3", "4"]);
    assert_eq!(hash(&mut raw, "t:{q}:active:w1").await.len(), 4);
    assert!(
        broker
            .fetch("q", "w2", 10, true)
            .await
            .unwrap()
            .jobs
            .is_empty()
    );
}

/// Makes the server forget every script, as a restart does.
async fn forget_scripts(raw: &mut redis::aio::MultiplexedConnection) {
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(raw)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_server_that_forgot_the_scripts_is_given_them_again() {
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    push(&mut raw, "t:{q}:pending", &["a", "b"]).await;
    let first = broker.fetch("q", "w1", 1, true).await.unwrap().jobs;
    assert_eq!(payloads(&first), ["a"]);
    // A restarted (or flushed) server knows no script: the next fetch and ack load theirs.
    forget_scripts(&mut raw).await;
    let second = broker.fetch("q", "w1", 1, true).await.unwrap().jobs;
    assert_eq!(payloads(&second), ["b"]);
    forget_scripts(&mut raw).await;
    let done = [finished("1", None), finished("2", None)];
    let refs: Vec<&Finished> = done.iter().collect();
    let held = broker
        .ack("w1", 1, &refs, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(held, [true, true]);
    assert!(hash(&mut raw, "t:{q}:active:w1").await.is_empty());
}

#[tokio::test]
async fn fetch_takes_one_suspect_first_and_only_when_allowed() {
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    push(&mut raw, "t:{q}:suspects", &["S1", "S2"]).await;
    push(&mut raw, "t:{q}:pending", &["P1", "P2"]).await;
    let Taken {
        jobs: fetched,
        suspect,
        ..
    } = broker.fetch("q", "w1", 1, false).await.unwrap();
    assert!(!suspect);
    assert_eq!(
        payloads(&fetched),
        ["P1"],
        "no suspect while one is in flight"
    );
    let Taken {
        jobs: fetched,
        suspect,
        ..
    } = broker.fetch("q", "w1", 10, true).await.unwrap();
    assert!(suspect);
    assert_eq!(
        payloads(&fetched),
        ["S1", "P2"],
        "one suspect, first, then pending jobs"
    );
    assert_eq!(list(&mut raw, "t:{q}:suspects").await, ["S2"]);
}

#[tokio::test]
async fn a_fetch_that_fails_midway_loses_no_suspect_and_admits_waiting_jobs_after_it() {
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    push(&mut raw, "t:{q}:suspects", &["S1"]).await;
    // A task's waiting set that is not a sorted set: the fetch fails when it reaches it.
    redis::pipe()
        .cmd("SADD")
        .arg("t:{q}:limited")
        .arg("broken")
        .cmd("RPUSH")
        .arg("t:{q}:waiting:broken")
        .arg("W0")
        .query_async::<()>(&mut raw)
        .await
        .unwrap();
    assert!(broker.fetch("q", "w1", 10, true).await.is_err());
    assert_eq!(
        list(&mut raw, "t:{q}:suspects").await,
        ["S1"],
        "the suspect is still queued"
    );
    // Repaired: a waiting job is admitted after the suspect, which stays first.
    redis::pipe()
        .cmd("DEL")
        .arg("t:{q}:waiting:broken")
        .cmd("ZADD")
        .arg("t:{q}:waiting:broken")
        .arg(5)
        .arg("W1")
        .query_async::<()>(&mut raw)
        .await
        .unwrap();
    push(&mut raw, "t:{q}:pending", &["P1"]).await;
    let taken = broker.fetch("q", "w1", 10, true).await.unwrap();
    assert!(taken.suspect);
    assert_eq!(payloads(&taken.jobs), ["S1", "W1", "P1"]);
    assert_eq!(taken.admitted, [taken.jobs[1].lease.clone()]);
}

#[tokio::test]
async fn a_blocking_fetch_lands_a_job_that_is_then_adopted_under_a_lease() {
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    let mut blocking = broker
        .blocking_connection(Duration::from_secs(10))
        .await
        .unwrap();
    let empty = broker
        .fetch_blocking(&mut blocking, "q", "w1", Duration::from_millis(50))
        .await
        .unwrap();
    assert!(!empty);
    assert!(
        broker
            .adopt_landed("q", "w1")
            .await
            .unwrap()
            .jobs
            .is_empty()
    );
    let waiting = broker.fetch_blocking(&mut blocking, "q", "w1", Duration::from_secs(5));
    let pushing = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        push(&mut raw.clone(), "t:{q}:pending", &["j1"]).await;
    };
    let (landed, ()) = tokio::join!(waiting, pushing);
    assert!(landed.unwrap());
    assert_eq!(list(&mut raw, "t:{q}:landing:w1").await, ["j1"]);
    assert!(list(&mut raw, "t:{q}:pending").await.is_empty());

    // A reply lost after a second job landed: adoption takes every landed job.
    push(&mut raw, "t:{q}:landing:w1", &["j2"]).await;
    let adopted = broker.adopt_landed("q", "w1").await.unwrap().jobs;
    assert_eq!(payloads(&adopted), ["j1", "j2"]);
    assert_eq!(leases(&adopted), ["1", "2"]);
    assert!(!exists(&mut raw, "t:{q}:landing:w1").await);
    assert_eq!(
        hash(&mut raw, "t:{q}:active:w1").await,
        [pair("1", "j1"), pair("2", "j2")]
    );
}

#[tokio::test]
async fn a_blocking_wait_that_gets_no_answer_fails_within_its_bound() {
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    let mut blocking = broker
        .blocking_connection(Duration::from_millis(300))
        .await
        .unwrap();
    // Redis holds every client's commands (as a muted network would) longer than the bound.
    let stall = async {
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(1500)
            .arg("ALL")
            .query_async(&mut raw)
            .await
            .unwrap();
    };
    let started = std::time::Instant::now();
    let wait = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        broker
            .fetch_blocking(&mut blocking, "q", "w1", Duration::from_millis(100))
            .await
    };
    let ((), waited) = tokio::join!(stall, wait);
    assert!(waited.is_err(), "{waited:?}");
    assert!(started.elapsed() < Duration::from_millis(1500));
}

/// A finished run of queue `q` holding `lease`, whose outcome (when given) is `record` for
/// job `id`.
fn finished(lease: &str, outcome: Option<(&str, &str)>) -> Finished {
    Finished {
        queue: "q".into(),
        lease: lease.to_owned(),
        outcome: outcome.map(|(id, record)| (id.to_owned(), record.to_owned(), None)),
        errand: None,
    }
}

#[tokio::test]
async fn ack_releases_held_leases_and_records_only_their_outcomes() {
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    hset(
        &mut raw,
        "t:{q}:active:w1",
        &[
            ("1", "ja"),
            ("2", "jb"),
            ("3", "jc"),
            ("4", "jd"),
            ("5", "je"),
        ],
    )
    .await;
    // Jobs created in one span of time share a results hash; one created later has its own;
    // an id dtask did not make has one of its own.
    let span = crate::envelope::JobId::at_ms(1_764_485_000_010);
    let same_span = crate::envelope::JobId::at_ms(1_764_485_000_019);
    let later = crate::envelope::JobId::at_ms(1_764_485_000_020);
    let mut keep_longer = finished("4", Some((later.as_str(), "rd")));
    keep_longer.outcome.as_mut().unwrap().2 = Some(Duration::from_secs(120));
    // A stale run of the same span, kept for a week were it held: it must not keep the hash.
    let stale_id = crate::envelope::JobId::at_ms(1_764_485_000_011);
    let mut stale_kept_long = finished("8", Some((stale_id.as_str(), "rs")));
    stale_kept_long.outcome.as_mut().unwrap().2 = Some(Duration::from_secs(7 * 86400));
    let jobs = [
        finished("1", Some((span.as_str(), "ra"))),
        finished("3", None),
        // A stale run: its lease is gone (the job was recovered and runs elsewhere).
        finished("9", Some(("Z", "rz"))),
        keep_longer,
        finished("2", Some((same_span.as_str(), "rb"))),
        finished("5", Some(("foreign-id", "re"))),
        stale_kept_long,
    ];
    let refs: Vec<&Finished> = jobs.iter().collect();
    let ttl = Duration::from_secs(60);
    let held = broker.ack("w1", 1, &refs, ttl).await.unwrap();
    assert_eq!(held, [true, true, false, true, true, true, false]);
    assert!(hash(&mut raw, "t:{q}:active:w1").await.is_empty());
    let (record, ttl_left) = outcome(&mut raw, span.as_str()).await;
    assert_eq!(record.as_deref(), Some("ra"));
    assert!(ttl_left > 50_000 && ttl_left <= 60_000, "{ttl_left}");
    assert_eq!(
        outcome(&mut raw, same_span.as_str()).await.0.as_deref(),
        Some("rb")
    );
    assert_eq!(
        hash(&mut raw, &keys::results("t", span.as_str()))
            .await
            .len(),
        2,
        "one hash for the span"
    );
    let (record, ttl_left) = outcome(&mut raw, later.as_str()).await;
    assert_eq!(record.as_deref(), Some("rd"));
    assert!(ttl_left > 110_000 && ttl_left <= 120_000, "{ttl_left}");
    assert_eq!(
        outcome(&mut raw, "foreign-id").await.0.as_deref(),
        Some("re")
    );
    assert_eq!(
        outcome(&mut raw, "Z").await,
        (None, -2),
        "a stale run writes nothing"
    );
    // Any other call of the batch (a repeat after a lost reply, or a first try that reached
    // Redis late) gets the same answer and changes nothing.
    hset(
        &mut raw,
        &keys::results("t", span.as_str()),
        &[(span.as_str(), "newer")],
    )
    .await;
    assert_eq!(
        broker.ack("w1", 1, &refs, ttl).await.unwrap(),
        [true, true, false, true, true, true, false]
    );
    assert_eq!(
        outcome(&mut raw, span.as_str()).await.0.as_deref(),
        Some("newer")
    );
    // The next batch, naming the same leases, finds them gone.
    assert_eq!(broker.ack("w1", 2, &refs, ttl).await.unwrap(), [false; 7]);
}

#[tokio::test]
async fn a_results_hash_lives_as_long_as_its_longest_kept_record() {
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    let first = crate::envelope::JobId::at_ms(1_764_485_000_010);
    let second = crate::envelope::JobId::at_ms(1_764_485_000_012);
    let long = Duration::from_secs(600);
    broker.set_result(first.as_str(), "a", long).await.unwrap();
    broker
        .set_result(second.as_str(), "b", Duration::from_secs(5))
        .await
        .unwrap();
    let (record, ttl_left) = outcome(&mut raw, second.as_str()).await;
    assert_eq!(record.as_deref(), Some("b"));
    assert!(
        ttl_left > 590_000,
        "a shorter record does not shorten the hash: {ttl_left}"
    );
    let third = crate::envelope::JobId::at_ms(1_764_485_000_015);
    let retrying = r#"{"state":"retrying"}"#;
    let long = Duration::from_secs(900);
    assert!(
        broker
            .set_retrying(third.as_str(), 1, retrying, long)
            .await
            .unwrap()
    );
    assert!(
        outcome(&mut raw, first.as_str()).await.1 > 890_000,
        "a longer one lengthens it"
    );
}

#[tokio::test]
async fn ack_stores_outcomes_with_the_settle_even_when_redis_is_full() {
    // At maxmemory (`noeviction`), a plain SET is refused; the acknowledgement script, whose
    // first write frees memory, runs whole: no run is settled without its outcome.
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    hset(&mut raw, "t:{q}:active:w1", &[("1", "ja")]).await;
    let jobs = [finished("1", Some(("A", "ra")))];
    let refs: Vec<&Finished> = jobs.iter().collect();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(1)
        .query_async(&mut raw)
        .await
        .unwrap();
    let held = broker.ack("w1", 1, &refs, Duration::from_secs(60)).await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(0)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(held.unwrap(), [true]);
    assert!(hash(&mut raw, "t:{q}:active:w1").await.is_empty());
    assert_eq!(outcome(&mut raw, "A").await.0.as_deref(), Some("ra"));
}

#[tokio::test]
async fn settling_forgets_the_deaths_counted_against_a_job() {
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    hset(&mut raw, "t:{q}:active:w1", &[("1", "ja"), ("2", "jb")]).await;
    let sha = |payload: &str| {
        let script = redis::Script::new(payload);
        script.get_hash().to_owned()
    };
    hset(
        &mut raw,
        "t:{q}:deaths",
        &[(&sha("ja"), "1"), (&sha("jb"), "2"), ("other", "1")],
    )
    .await;
    let jobs = [finished("1", None)];
    let refs: Vec<&Finished> = jobs.iter().collect();
    broker
        .ack("w1", 1, &refs, Duration::from_secs(60))
        .await
        .unwrap();
    broker
        .retry("q", "w1", "2", b"jb2", Duration::ZERO, true)
        .await
        .unwrap();
    assert_eq!(hash(&mut raw, "t:{q}:deaths").await, [pair("other", "1")]);
}

#[tokio::test]
async fn retry_is_fenced_by_the_lease_and_due_on_the_server_clock() {
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    hset(&mut raw, "t:{q}:active:w1", &[("7", "old")]).await;
    let before = server_ms(&mut raw).await;
    let Fenced::Settled(due) = broker
        .retry("q", "w1", "7", b"next", Duration::from_secs(30), true)
        .await
        .unwrap()
    else {
        panic!("the lease was held")
    };
    let after = server_ms(&mut raw).await;
    assert!((before + 30_000..=after + 30_000).contains(&due));
    assert_eq!(zset(&mut raw, "t:{q}:retry").await, [("next".into(), due)]);
    assert!(hash(&mut raw, "t:{q}:active:w1").await.is_empty());
    // The same lease again (its settled entry was removed): nothing changes.
    assert_eq!(
        broker
            .retry("q", "w1", "7", b"again", Duration::ZERO, true)
            .await
            .unwrap(),
        Fenced::NotHeld
    );
    // A call repeated while the settled marker is still there (its removal was lost) knows it
    // was done, and does nothing either.
    hset(&mut raw, "t:{q}:active:w1", &[("s:8", "1")]).await;
    assert_eq!(
        broker
            .retry("q", "w1", "8", b"again", Duration::ZERO, false)
            .await
            .unwrap(),
        Fenced::AlreadySettled
    );
    assert_eq!(zset(&mut raw, "t:{q}:retry").await.len(), 1);
}

#[tokio::test]
async fn bury_is_fenced_by_the_lease_and_keeps_the_dead_set_within_its_caps() {
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    let now = server_ms(&mut raw).await;
    let _: () = redis::cmd("ZADD")
        .arg("t:{q}:dead")
        .arg(now - 100_000)
        .arg("ancient")
        .arg(now - 10)
        .arg("old1")
        .arg(now - 5)
        .arg("old2")
        .query_async(&mut raw)
        .await
        .unwrap();
    hset(&mut raw, "t:{q}:active:w1", &[("1", "j1")]).await;
    let limits = DeadLimits {
        max_len: 2,
        max_age: Duration::from_secs(60),
    };
    let Fenced::Settled(died) = broker
        .bury(
            "q",
            "w1",
            "1",
            super::Burial {
                record: "record1",
                limits,
                errand: None,
                outcome: None,
            },
        )
        .await
        .unwrap()
    else {
        panic!("held")
    };
    assert!(died >= now);
    let dead: Vec<String> = zset(&mut raw, "t:{q}:dead")
        .await
        .into_iter()
        .map(|(m, _)| m)
        .collect();
    assert_eq!(
        dead,
        ["old2", "record1"],
        "too old and too many are dropped"
    );
    assert!(hash(&mut raw, "t:{q}:active:w1").await.is_empty());
    assert_eq!(
        broker
            .bury(
                "q",
                "w1",
                "1",
                super::Burial {
                    record: "again",
                    limits,
                    errand: None,
                    outcome: None
                }
            )
            .await
            .unwrap(),
        Fenced::NotHeld
    );
    assert_eq!(zset(&mut raw, "t:{q}:dead").await.len(), 2);
}

#[tokio::test]
async fn a_burial_stores_the_dead_outcome_in_the_same_step_and_a_stale_one_stores_none() {
    use super::DeadOutcome;
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    hset(&mut raw, "t:{q}:active:w1", &[("1", "j1")]).await;
    let limits = DeadLimits {
        max_len: 10,
        max_age: Duration::from_secs(60),
    };
    let id = crate::envelope::JobId::generate();
    let dead = DeadOutcome {
        job_id: id.as_str(),
        record: "dead-record",
        ttl: Duration::from_secs(60),
    };
    let buried = broker
        .bury(
            "q",
            "w1",
            "1",
            super::Burial {
                record: "record1",
                limits,
                errand: None,
                outcome: Some(dead),
            },
        )
        .await
        .unwrap();
    assert!(buried.held());
    // The outcome is there as soon as the job is in the dead set: a repair that runs the job
    // again (only possible after this) is never overwritten by a later write of this death.
    let (record, ttl_left) = outcome(&mut raw, id.as_str()).await;
    assert_eq!(record.as_deref(), Some("dead-record"));
    assert!(ttl_left > 50_000 && ttl_left <= 60_000, "{ttl_left}");
    // The job ran again and succeeded; a repeated burial of the old run changes nothing.
    let _: () = redis::cmd("HSET")
        .arg(keys::results("t", id.as_str()))
        .arg(id.as_str())
        .arg("succeeded")
        .query_async(&mut raw)
        .await
        .unwrap();
    let stale = DeadOutcome {
        record: "dead-again",
        ..dead
    };
    let again = broker
        .bury(
            "q",
            "w1",
            "1",
            super::Burial {
                record: "record1",
                limits,
                errand: None,
                outcome: Some(stale),
            },
        )
        .await
        .unwrap();
    assert!(!again.held());
    assert_eq!(
        outcome(&mut raw, id.as_str()).await.0.as_deref(),
        Some("succeeded")
    );
}

#[tokio::test]
async fn a_passing_record_never_replaces_a_final_one_nor_a_later_attempts() {
    use super::{Passing, PassingNote};
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    let ttl = Duration::from_secs(60);
    let record = |state: &str, n: u32| format!(r#"{{"state":"{state}","attempts":{n}}}"#);
    let set = |passing: Passing, id: &'static str, state: &'static str, n: u32| {
        let broker = broker.clone();
        let text = record(state, n);
        async move {
            let note = PassingNote {
                job_id: id,
                record: &text,
                attempts: n,
            };
            broker.set_passing(passing, &[note], ttl).await.unwrap() == 1
        }
    };
    let current = |raw: &mut redis::aio::MultiplexedConnection, id: &'static str| {
        let mut raw = raw.clone();
        async move { outcome(&mut raw, id).await.0.unwrap_or_default() }
    };
    // Enqueued: a short record, as an enqueue writes it.
    broker
        .record_if_new("j", crate::envelope::QUEUED_MARKER, ttl)
        .await;
    assert_eq!(current(&mut raw, "j").await, "q");
    // A run over queued; its failure; a late write of that run is refused; the next run.
    assert!(set(Passing::Running, "j", "running", 1).await);
    assert!(
        broker
            .set_retrying("j", 1, &record("retrying", 1), ttl)
            .await
            .unwrap()
    );
    assert!(!set(Passing::Running, "j", "running", 1).await);
    assert_eq!(current(&mut raw, "j").await, record("retrying", 1));
    assert!(set(Passing::Running, "j", "running", 2).await);
    // A late retrying record of an earlier attempt does not hide the running one.
    assert!(
        !broker
            .set_retrying("j", 1, &record("retrying", 1), ttl)
            .await
            .unwrap()
    );
    // Its worker died: back to queued, only over a running record.
    assert!(set(Passing::Back, "j", "queued", 2).await);
    assert!(!set(Passing::Back, "j", "queued", 2).await);
    assert!(!set(Passing::Back, "none", "queued", 2).await);
    broker
        .set_result("j", &record("succeeded", 3), ttl)
        .await
        .unwrap();
    for passing in [Passing::Running, Passing::Retrying, Passing::Back] {
        assert!(!set(passing, "j", "running", 9).await, "{passing:?}");
    }
    assert_eq!(current(&mut raw, "j").await, record("succeeded", 3));
    broker
        .set_result("k", &record("dead", 1), ttl)
        .await
        .unwrap();
    assert!(
        !broker
            .set_retrying("k", 1, &record("retrying", 1), ttl)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn forward_due_moves_only_due_jobs_and_tells_when_the_next_one_is_due() {
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    let now = server_ms(&mut raw).await;
    let _: () = redis::cmd("ZADD")
        .arg("t:{q}:scheduled")
        .arg(now - 1_000)
        .arg("s1")
        .arg(now + 60_000)
        .arg("s2")
        .query_async(&mut raw)
        .await
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg("t:{q}:retry")
        .arg(now - 500)
        .arg("r1")
        .arg(now + 30_000)
        .arg("r2")
        .query_async(&mut raw)
        .await
        .unwrap();
    let forwarded = broker.forward_due("q", 100).await.unwrap();
    assert_eq!(forwarded.moved, 2);
    let next = forwarded.next_due_in.unwrap();
    assert!(
        next > Duration::from_secs(29) && next <= Duration::from_secs(30),
        "{next:?}"
    );
    assert_eq!(list(&mut raw, "t:{q}:pending").await, ["s1", "r1"]);
    assert_eq!(broker.forward_due("q", 100).await.unwrap().moved, 0);
}

#[tokio::test]
async fn requeue_lapsed_leaves_a_live_worker_alone_and_counts_deaths_beside_the_payloads() {
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    let now = server_ms(&mut raw).await;
    let _: () = redis::cmd("ZADD")
        .arg("t:{q}:workers")
        .arg(now)
        .arg("alive")
        .arg(now - 60_000)
        .arg("dead")
        .query_async(&mut raw)
        .await
        .unwrap();
    hset(&mut raw, "t:{q}:active:alive", &[("1", "a")]).await;
    // A payload whose arguments look like dtask's own fields changes nothing: payloads are
    // never read (the death count once came from a pattern match on `"n":`).
    let tricky = r#"{"v":1,"id":"x","t":"task","a":[{"n":7,"d":9}],"at":1}"#;
    // Lease 4 is a run that finished (its settled marker): nothing to requeue. Lease 5 holds an
    // empty payload (bad input from a foreign writer): requeued like any other.
    hset(
        &mut raw,
        "t:{q}:active:dead",
        &[("2", tricky), ("3", "not json"), ("s:4", "1"), ("5", "")],
    )
    .await;
    push(&mut raw, "t:{q}:landing:dead", &["landed"]).await;
    let cutoff = now - 10_000;
    assert!(
        broker
            .requeue_lapsed("q", "alive", cutoff, 3)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(hash(&mut raw, "t:{q}:active:alive").await.len(), 1);

    let requeued = broker
        .requeue_lapsed("q", "dead", cutoff, 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((requeued.requeued, requeued.poisoned), (4, 0));
    assert_eq!(
        requeued.payloads.len(),
        4,
        "the requeued payloads come back"
    );
    let mut pending = list(&mut raw, "t:{q}:pending").await;
    pending.sort();
    assert_eq!(pending, ["", "landed", "not json", tricky]);
    assert_eq!(
        list(&mut raw, "t:{q}:pending")
            .await
            .iter()
            .filter(|p| *p == tricky)
            .count(),
        1
    );
    assert!(!exists(&mut raw, "t:{q}:active:dead").await);
    assert!(!exists(&mut raw, "t:{q}:landing:dead").await);
    assert_eq!(
        zset(&mut raw, "t:{q}:workers").await.len(),
        1,
        "the dead worker is forgotten"
    );
    let deaths = hash(&mut raw, "t:{q}:deaths").await;
    assert_eq!(deaths.len(), 4);
    assert!(deaths.iter().all(|(_, n)| n == "1"), "{deaths:?}");
    let ttl: i64 = redis::cmd("PTTL")
        .arg("t:{q}:deaths")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(ttl > 0, "the deaths hash does not outlive its use forever");

    // The second death makes a suspect, the third a poison job (max 3).
    for (round, expect_suspects, expect_poisoned) in [(2, 1, 0), (3, 0, 1)] {
        let _: () = redis::cmd("DEL")
            .arg("t:{q}:pending")
            .arg("t:{q}:suspects")
            .query_async(&mut raw)
            .await
            .unwrap();
        hset(
            &mut raw,
            &format!("t:{{q}}:active:dead{round}"),
            &[("9", tricky)],
        )
        .await;
        let _: () = redis::cmd("ZADD")
            .arg("t:{q}:workers")
            .arg(now - 60_000)
            .arg(format!("dead{round}"))
            .query_async(&mut raw)
            .await
            .unwrap();
        let requeued = broker
            .requeue_lapsed("q", &format!("dead{round}"), cutoff, 3)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(requeued.poisoned, expect_poisoned);
        assert_eq!(
            list(&mut raw, "t:{q}:suspects").await.len(),
            expect_suspects as usize
        );
    }
    assert_eq!(list(&mut raw, "t:{q}:poisoned").await, [tricky]);
    assert_eq!(
        hash(&mut raw, "t:{q}:deaths").await.len(),
        3,
        "the poison job's count is gone"
    );
    assert!(list(&mut raw, "t:{q}:pending").await.is_empty());

    // Its dead record is built in Rust and buried with the dead set's caps.
    let limits = DeadLimits {
        max_len: 1,
        max_age: Duration::from_secs(60),
    };
    assert!(broker.poisoned("q", 10).await.unwrap() == [tricky.as_bytes().to_vec()]);
    assert!(
        broker
            .bury_poisoned("q", tricky.as_bytes(), "rec", limits, None)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        broker
            .bury_poisoned("q", tricky.as_bytes(), "rec2", limits, None)
            .await
            .unwrap()
            .is_none()
    );
    let dead: Vec<String> = zset(&mut raw, "t:{q}:dead")
        .await
        .into_iter()
        .map(|(m, _)| m)
        .collect();
    assert_eq!(dead, ["rec"]);
}

#[tokio::test]
async fn requeue_own_returns_everything_without_counting_deaths() {
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    hset(&mut raw, "t:{q}:active:w1", &[("1", "a")]).await;
    push(&mut raw, "t:{q}:landing:w1", &["b"]).await;
    let mut returned = broker.requeue_own("q", "w1").await.unwrap();
    returned.sort();
    assert_eq!(returned, [b"a".to_vec(), b"b".to_vec()]);
    let mut pending = list(&mut raw, "t:{q}:pending").await;
    pending.sort();
    assert_eq!(pending, ["a", "b"]);
    assert!(!exists(&mut raw, "t:{q}:deaths").await);
}

#[tokio::test]
async fn reclaim_returns_only_the_jobs_whose_lease_the_worker_does_not_hold() {
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    hset(
        &mut raw,
        "t:{q}:active:w1",
        &[
            ("1", "held"),
            ("2", "lost"),
            ("3", "held too"),
            ("s:4", "1"),
            ("s:1", "1"),
        ],
    )
    .await;
    let reclaimed = broker
        .reclaim("q", "w1", &["1".to_owned(), "3".to_owned()])
        .await
        .unwrap();
    assert_eq!(reclaimed, 1);
    assert_eq!(
        list(&mut raw, "t:{q}:pending").await,
        ["lost"],
        "a settled run is only removed"
    );
    assert_eq!(
        hash(&mut raw, "t:{q}:active:w1").await,
        [pair("1", "held"), pair("3", "held too"), pair("s:1", "1")],
        "a marker of a lease no longer held goes; one of a held lease stays"
    );
}

/// The commands `scripts` call that the README's ACL line for `user` does not allow.
fn denied_to_readme_user(user: &str, scripts: &[&str]) -> Vec<String> {
    let readme = include_str!("../../../README.md");
    let acl = readme
        .lines()
        .find_map(|line| line.strip_prefix(&format!("user {user} ")))
        .unwrap_or_else(|| panic!("README.md has no ACL line for `{user}`"));
    let allowed: Vec<String> = acl
        .split_whitespace()
        .filter_map(|rule| rule.strip_prefix('+'))
        .map(str::to_ascii_uppercase)
        .collect();
    let mut called = Vec::new();
    for script in scripts {
        for (i, _) in script.match_indices("call('") {
            let rest = &script[i + "call('".len()..];
            let command = &rest[..rest.find('\'').expect("a quoted command")];
            called.push(command.to_ascii_uppercase());
        }
    }
    assert!(called.len() > scripts.len(), "{called:?}");
    called.retain(|c| !allowed.contains(c));
    called
}

#[test]
fn every_command_the_scripts_call_is_in_the_readme_worker_acl() {
    let scripts = [
        include_str!("lua/lease.lua"),
        include_str!("lua/rate.lua"),
        include_str!("lua/limits.lua"),
        include_str!("lua/admit.lua"),
        include_str!("lua/settle.lua"),
        include_str!("lua/fetch.lua"),
        include_str!("lua/adopt.lua"),
        include_str!("lua/ack.lua"),
        include_str!("lua/retry.lua"),
        include_str!("lua/bury.lua"),
        include_str!("lua/bury_poisoned.lua"),
        include_str!("lua/set_passing.lua"),
        include_str!("lua/outcomes.lua"),
        include_str!("lua/set_outcomes.lua"),
        include_str!("lua/notify.lua"),
        include_str!("lua/notify_finished.lua"),
        include_str!("lua/counts.lua"),
        include_str!("lua/forward_due.lua"),
        include_str!("lua/requeue_inflight.lua"),
        include_str!("lua/heartbeat.lua"),
        include_str!("lua/reclaim.lua"),
        include_str!("lua/tick.lua"),
        include_str!("lua/periodic_state.lua"),
        include_str!("lua/release_unique.lua"),
        include_str!("lua/spawn.lua"),
        include_str!("lua/group_member.lua"),
        include_str!("lua/claim_errands.lua"),
        include_str!("lua/mark_group.lua"),
    ];
    let missing = denied_to_readme_user("worker", &scripts);
    assert!(
        missing.is_empty(),
        "scripts call commands the README's worker ACL denies: {missing:?}"
    );
}

#[test]
fn every_command_the_enqueue_scripts_call_is_in_the_readme_producer_acl() {
    let scripts = [
        include_str!("lua/enqueue_unique.lua"),
        include_str!("lua/mark_group.lua"),
    ];
    let missing = denied_to_readme_user("producer", &scripts);
    assert!(
        missing.is_empty(),
        "the enqueue scripts call commands the README's producer ACL denies: {missing:?}"
    );
}

#[test]
fn every_command_the_repair_scripts_call_is_in_the_readme_operator_acl() {
    let scripts = [
        include_str!("lua/revive.lua"),
        include_str!("lua/purge.lua"),
        include_str!("lua/cancel.lua"),
        include_str!("lua/cancel_running.lua"),
        include_str!("lua/find.lua"),
        include_str!("lua/release_unique.lua"),
        include_str!("lua/outcomes.lua"),
        include_str!("lua/set_outcomes.lua"),
        include_str!("lua/notify.lua"),
        include_str!("lua/notify_finished.lua"),
    ];
    let missing = denied_to_readme_user("operator", &scripts);
    assert!(
        missing.is_empty(),
        "repair scripts call commands the README's operator ACL denies: {missing:?}"
    );
}

#[tokio::test]
async fn a_groups_callback_is_enqueued_once_and_a_group_that_called_it_is_never_failed_after() {
    use super::{MemberEnded, NewGroup};
    let server = Server::start();
    let (broker, mut raw) = server.broker().await;
    let group = NewGroup {
        queue: "q",
        id: "g",
        members: 3,
        head: r#"{"v":1,"id":"cb","t":"t","a":["#,
        mid: r#"],"at":"#,
        tail: "}",
        skip_failed: false,
        doomed: r#"[{"queue":"q","id":"cb","task":"t"}]"#,
    };
    broker.create_group(&group).await.unwrap();
    // Members end out of order, one of them twice (a repeated errand).
    let ended = |index: u32, value: &'static str| (index, Ok::<&str, &str>(value));
    assert_eq!(
        broker
            .members_ended("q", "g", &[ended(2, "30")])
            .await
            .unwrap(),
        MemberEnded::Recorded
    );
    assert_eq!(
        broker
            .members_ended("q", "g", &[ended(0, "10"), ended(2, "30")])
            .await
            .unwrap(),
        MemberEnded::Recorded
    );
    assert!(list(&mut raw, "t:{q}:pending").await.is_empty());
    assert_eq!(
        broker
            .members_ended("q", "g", &[ended(1, "20")])
            .await
            .unwrap(),
        MemberEnded::CallbackQueued
    );
    let pending = list(&mut raw, "t:{q}:pending").await;
    assert_eq!(pending.len(), 1);
    let callback: serde_json::Value = serde_json::from_str(&pending[0]).expect("valid JSON");
    assert_eq!(callback["a"], serde_json::json!([[10, 20, 30]]));
    assert!(
        callback["at"].as_u64().unwrap() > 1_700_000_000_000,
        "{callback}"
    );
    // Once called: no second callback, and no failure afterwards.
    broker.fail_group("q", "g", "too late").await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            broker
                .members_ended("q", "g", &[(1, Err("failed late"))])
                .await
                .unwrap(),
            MemberEnded::Recorded
        );
    }
    assert_eq!(list(&mut raw, "t:{q}:pending").await.len(), 1);
    // A group gone (expired): told, and marking it creates nothing.
    assert_eq!(
        broker
            .members_ended("q", "gone", &[ended(0, "1")])
            .await
            .unwrap(),
        MemberEnded::NoGroup
    );
    broker.group_failure_told("q", "gone").await.unwrap();
    assert!(hash(&mut raw, "t:{q}:group:gone").await.is_empty());
}

#[tokio::test]
async fn a_failed_group_answers_its_doomed_jobs_until_they_are_told() {
    use super::{MemberEnded, NewGroup};
    let server = Server::start();
    let (broker, _raw) = server.broker().await;
    let doomed = r#"[{"queue":"q","id":"cb","task":"t"}]"#;
    let group = NewGroup {
        queue: "q",
        id: "g",
        members: 2,
        head: "[",
        mid: "",
        tail: "]",
        skip_failed: false,
        doomed,
    };
    broker.create_group(&group).await.unwrap();
    let failed = [(0, Err::<&str, &str>("boom"))];
    for _ in 0..2 {
        // The first answer may be lost, or the courier may crash before marking the jobs.
        assert_eq!(
            broker.members_ended("q", "g", &failed).await.unwrap(),
            MemberEnded::Failed(doomed.to_owned())
        );
    }
    broker.group_failure_told("q", "g").await.unwrap();
    assert_eq!(
        broker.members_ended("q", "g", &failed).await.unwrap(),
        MemberEnded::Recorded
    );
    assert_eq!(
        broker
            .members_ended("q", "g", &[(1, Ok("2"))])
            .await
            .unwrap(),
        MemberEnded::Recorded,
        "the last member of a failed group enqueues no callback"
    );
}
