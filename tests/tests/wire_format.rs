//! `docs/wire-format.md` against what `enqueue` writes and what a worker runs: the fields of an
//! envelope, the keys a producer writes, the results hash a job id picks, and a job enqueued by
//! following the page's commands by hand (as a producer in another language would).

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dtask::{JobId, JobStatus, Worker};
use dtask_tests::harness::{eventually, start_with_client};
use dtask_tests::tasks;

const WAIT: Duration = Duration::from_secs(10);
const PAGE: &str = include_str!("../../docs/wire-format.md");

/// The rows of the page's envelope table: (field, required).
fn documented_fields() -> Vec<(String, bool)> {
    let table = PAGE
        .split("## The envelope")
        .nth(1)
        .expect("the page has an envelope section");
    table
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let field = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let required = *cells.get(3)? == "yes";
            Some((field.to_owned(), required))
        })
        .collect()
}

/// The time in a dtask job id, as the page says to read it.
fn id_time_ms(id: &str) -> u64 {
    const DIGITS: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    assert_eq!(id.len(), 22, "22 characters: {id}");
    id.chars()
        .take(9)
        .map(|c| DIGITS.find(c).expect("base 62") as u64)
        .fold(0, |ms, digit| ms * 62 + digit)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn query<T: redis::FromRedisValue>(
    raw: &redis::aio::MultiplexedConnection,
    cmd: &mut redis::Cmd,
) -> T {
    let mut conn = raw.clone();
    cmd.query_async(&mut conn).await.unwrap()
}

#[tokio::test]
async fn what_enqueue_writes_is_what_the_page_says() {
    let (_redis, client, raw, prefix) = start_with_client("wire").await;
    let fields = documented_fields();
    assert!(fields.len() >= 9, "the table was read: {fields:?}");
    let before = now_ms();
    let job = tasks::add::with()
        .client(&client)
        .enqueue("k".into(), 2, 3)
        .await
        .unwrap();

    // The envelope: the pending list of the queue, under its hash tag.
    let pending: Vec<String> = query(
        &raw,
        redis::cmd("LRANGE")
            .arg(format!("{prefix}:{{math}}:pending"))
            .arg(0)
            .arg(-1),
    )
    .await;
    assert_eq!(pending.len(), 1);
    let envelope: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&pending[0]).unwrap();
    let documented: BTreeSet<&str> = fields.iter().map(|(f, _)| f.as_str()).collect();
    for key in envelope.keys() {
        assert!(
            documented.contains(key.as_str()),
            "`{key}` is not on the page"
        );
    }
    for (field, required) in &fields {
        if *required {
            assert!(envelope.contains_key(field), "required `{field}` missing");
        }
    }
    assert_eq!(envelope["v"], 1);
    assert_eq!(envelope["id"], job.id().as_str());
    assert_eq!(envelope["t"], tasks::add::NAME);
    assert_eq!(envelope["a"], serde_json::json!(["k", 2, 3]));
    let at = envelope["at"].as_u64().unwrap();
    assert!((before..=now_ms()).contains(&at), "at {at}");

    // The id's time picks the results hash; the record says queued; the queue is listed.
    let ms = id_time_ms(job.id().as_str());
    assert!((before..=now_ms()).contains(&ms), "id time {ms}");
    let record: Option<String> = query(
        &raw,
        redis::cmd("HGET")
            .arg(format!("{prefix}:results:{{t{}}}", ms / 10))
            .arg(job.id().as_str()),
    )
    .await;
    assert_eq!(record.as_deref(), Some("q"));
    let listed: bool = query(
        &raw,
        redis::cmd("SISMEMBER")
            .arg(format!("{prefix}:queues"))
            .arg("math"),
    )
    .await;
    assert!(listed);

    // A delayed job: the scheduled set, scored by its due time, and an `s<due>` record.
    let delayed = tasks::add::with()
        .client(&client)
        .delay(Duration::from_secs(60))
        .enqueue("k".into(), 1, 1)
        .await
        .unwrap();
    let scheduled: Vec<(String, u64)> = query(
        &raw,
        redis::cmd("ZRANGE")
            .arg(format!("{prefix}:{{math}}:scheduled"))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES"),
    )
    .await;
    assert_eq!(scheduled.len(), 1);
    let due = scheduled[0].1;
    assert!(due >= before + 60_000, "due {due}");
    let ms = id_time_ms(delayed.id().as_str());
    let record: Option<String> = query(
        &raw,
        redis::cmd("HGET")
            .arg(format!("{prefix}:results:{{t{}}}", ms / 10))
            .arg(delayed.id().as_str()),
    )
    .await;
    // The job is due by the server's clock; its record's time is the enqueuer's estimate of
    // it (its own clock plus the delay): the same moment, give or take the clocks' skew.
    let record_due: u64 = record
        .as_deref()
        .and_then(|record| record.strip_prefix('s'))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("a scheduled record: {record:?}"));
    assert!(
        record_due.abs_diff(due) < 1_000,
        "record s{record_due}, due {due}"
    );
}

#[tokio::test]
async fn a_job_enqueued_by_hand_as_the_page_says_runs() {
    let (_redis, client, raw, prefix) = start_with_client("wire-by-hand").await;
    // What a Python or Node producer does: its own id (not dtask's format), the required
    // fields only, the optional queued record, one pipeline.
    let id = "5f0c6a4e-2b1d-4c83-9a57-0d1e2f3a4b5c";
    let envelope = serde_json::json!({
        "v": 1,
        "id": id,
        "t": tasks::add::NAME,
        "a": ["by-hand", 40, 2],
        "at": now_ms(),
    })
    .to_string();
    let results = format!("{prefix}:results:{{j{id}}}");
    let mut conn = raw.clone();
    let () = redis::pipe()
        .cmd("SADD")
        .arg(format!("{prefix}:queues"))
        .arg("math")
        .ignore()
        .cmd("HSET")
        .arg(&results)
        .arg(id)
        .arg("q")
        .ignore()
        .cmd("PEXPIRE")
        .arg(&results)
        .arg(3_600_000)
        .arg("NX")
        .ignore()
        .cmd("RPUSH")
        .arg(format!("{prefix}:{{math}}:pending"))
        .arg(&envelope)
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    let job = tasks::add::job(JobId::from(id)).with_client(&client);
    assert!(matches!(job.status().await.unwrap(), JobStatus::Queued));
    let worker = Worker::new(&client).queues(["math"]).spawn();
    let sum = job.wait(WAIT).await.unwrap();
    assert_eq!(sum, 42);
    eventually(WAIT, "the record says succeeded", || async {
        matches!(job.status().await.unwrap(), JobStatus::Succeeded(42)).then_some(())
    })
    .await;
    worker.shutdown().await.unwrap();
}
