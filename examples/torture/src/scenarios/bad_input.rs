//! Scenario 6, bad input: payloads that are not jobs are pushed straight into a served queue
//! with `client.queue(q).push_raw(bytes)`, then good jobs behind them. Each bad payload must land
//! in the dead set with a readable reason (printed), the workers must live on, and every good job
//! must run. The envelope-shaped cases start from a real envelope, read back from a scratch queue
//! no worker serves.

use std::time::Duration;

use rand::Rng;
use serde_json::Value;

use super::Ctx;
use crate::producer::enqueue_now;
use crate::report::Figures;
use crate::rig::{Rig, id_set};
use crate::tasks::{self, WORK_QUEUE};
use crate::workers::Fleet;
use dtask_testkit::redis_server::Persistence;

/// The longest reason a person can still read in a log line or a dashboard.
const READABLE_MAX: usize = 2_048;

/// One bad payload.
struct Case {
    label: &'static str,
    payload: Vec<u8>,
    /// The job id inside, for the envelope-shaped cases.
    id: Option<String>,
}

/// Runs the scenario.
pub async fn run(ctx: &Ctx, figures: &mut Figures) -> Result<(), String> {
    let good_jobs: u64 = ctx.pick(300, 2_000);
    let rig = Rig::start(ctx, "6-bad-input", Persistence::None).await?;
    let mut fleet = Fleet::start(rig.workers(&[WORK_QUEUE]).concurrency(8), 2)?;
    rig.wait_workers(WORK_QUEUE, 2, Duration::from_secs(10))
        .await?;

    let envelope = real_envelope(&rig).await?;
    figures.note(format!("a real envelope, as stored: {envelope}"));
    let cases = cases(&envelope)?;
    for case in &cases {
        rig.client
            .queue(WORK_QUEUE)
            .push_raw(&case.payload)
            .await
            .map_err(|e| format!("push_raw ({}): {e}", case.label))?;
        figures.faults += 1;
    }
    let (ids, error) = enqueue_now(&rig.client, WORK_QUEUE, 1, good_jobs, 1..=20).await;
    if let Some(error) = error {
        figures
            .failures
            .push(format!("enqueue failed with Redis up: {error}"));
    }
    let enqueued = id_set(&ids);
    let settled = rig
        .settle(&[WORK_QUEUE], Duration::from_secs(ctx.pick(60, 120)))
        .await;
    figures.check(settled, || "the queue did not drain".to_owned());

    let dead = rig
        .admin
        .queue(WORK_QUEUE)
        .dead_jobs(10_000)
        .await
        .map_err(|e| e.to_string())?;
    let mut buried = 0;
    for case in &cases {
        let raw = String::from_utf8_lossy(&case.payload);
        let found = dead
            .iter()
            .find(|d| case.id.as_deref() == Some(d.id.as_str()) || d.payload == raw);
        match found {
            Some(record) => {
                buried += 1;
                let reason = &record.error;
                let shown: String = reason.chars().take(160).collect();
                let more = if shown.len() < reason.len() {
                    format!("… ({} chars in all)", reason.chars().count())
                } else {
                    String::new()
                };
                figures.note(format!("{:<28} dead: {shown}{more}", case.label));
                figures.check(!reason.trim().is_empty(), || {
                    format!("{}: buried with an empty reason", case.label)
                });
                figures.check(reason.len() <= READABLE_MAX, || {
                    format!(
                        "{}: the reason is {} bytes long, not readable (over {READABLE_MAX})",
                        case.label,
                        reason.len()
                    )
                });
            }
            None => figures
                .failures
                .push(format!("{}: not in the dead set", case.label)),
        }
    }
    figures.check(dead.len() == cases.len(), || {
        format!(
            "{} dead record(s) for {} bad payload(s)",
            dead.len(),
            cases.len()
        )
    });

    let tally = rig.tally(&enqueued, &[WORK_QUEUE]).await?;
    rig.conclude(figures, &tally, &[WORK_QUEUE], true).await;
    let good_dead: Vec<&(u64, String)> = tally
        .dead
        .iter()
        .filter(|(id, _)| enqueued.contains(id))
        .collect();
    figures.check(good_dead.is_empty(), || {
        format!(
            "{} good job(s) in the dead set: {:?}",
            good_dead.len(),
            good_dead.first()
        )
    });
    // The bad payloads count as jobs that had to reach the dead set.
    figures.enqueued += cases.len() as u64;
    figures.done += buried;
    figures.lost += cases.len() as u64 - buried;
    for (i, status) in fleet.exited() {
        figures.failures.push(format!("worker {i} died: {status}"));
    }
    let complaints = fleet.shutdown(Duration::from_secs(15)).await;
    figures.failures.extend(complaints);
    Ok(())
}

/// Enqueues a real `work` job into a queue no worker serves and reads it back as stored.
async fn real_envelope(rig: &Rig) -> Result<String, String> {
    tasks::work::with()
        .client(&rig.client)
        .queue("scratch")
        .enqueue(999_999, 1)
        .await
        .map_err(|e| format!("enqueue into scratch: {e}"))?;
    let stored: Vec<String> = redis::cmd("LRANGE")
        .arg(format!("{}:{{scratch}}:pending", rig.prefix))
        .arg(0)
        .arg(0)
        .query_async(&mut rig.conn())
        .await
        .map_err(|e| format!("read the scratch queue: {e}"))?;
    stored
        .into_iter()
        .next()
        .ok_or_else(|| "the scratch queue is empty".to_owned())
}

/// The bad payloads, the envelope-shaped ones made from `envelope`.
fn cases(envelope: &str) -> Result<Vec<Case>, String> {
    let real: Value = serde_json::from_str(envelope).map_err(|e| e.to_string())?;
    let edit = |id: &str, change: &dyn Fn(&mut serde_json::Map<String, Value>)| -> Case {
        let mut value = real.clone();
        if let Value::Object(map) = &mut value {
            map.insert("id".to_owned(), Value::from(id));
            change(map);
        }
        Case {
            label: "",
            payload: value.to_string().into_bytes(),
            id: Some(id.to_owned()),
        }
    };
    let mut random = vec![0xff_u8, 0xfe];
    random.extend((0..254).map(|_| rand::rng().random::<u8>()));
    let truncated = {
        let whole = edit("bad-truncated", &|_| {}).payload;
        whole[..whole.len() / 2].to_vec()
    };
    let huge = "x".repeat(10 * 1024 * 1024);
    let labelled = |label: &'static str, case: Case| Case { label, ..case };
    let raw = |label: &'static str, payload: Vec<u8>| Case {
        label,
        payload,
        id: None,
    };
    Ok(vec![
        raw("random bytes", random),
        raw("empty payload", Vec::new()),
        raw("truncated JSON", truncated),
        raw(
            "JSON object, wrong shape",
            br#"{"hello":"world","list":[1,2,3]}"#.to_vec(),
        ),
        raw("JSON array, wrong shape", b"[1,2,3]".to_vec()),
        raw("JSON string, wrong shape", br#""just a string""#.to_vec()),
        labelled(
            "unknown task name",
            edit("bad-unknown-task", &|m| {
                m.insert("t".to_owned(), Value::from("torture.no_such_task"));
            }),
        ),
        labelled(
            "wrong argument types",
            edit("bad-arg-types", &|m| {
                m.insert("a".to_owned(), serde_json::json!(["seven", true]));
            }),
        ),
        labelled(
            "wrong number of arguments",
            edit("bad-arg-count", &|m| {
                m.insert("a".to_owned(), serde_json::json!([999_001]));
            }),
        ),
        labelled(
            "newer envelope version",
            edit("bad-version", &|m| {
                m.insert("v".to_owned(), Value::from(99));
            }),
        ),
        labelled(
            "10 MB payload",
            edit("bad-10mb", &|m| {
                m.insert("a".to_owned(), serde_json::json!([huge.as_str(), 5]));
            }),
        ),
        raw("deeply nested JSON", vec![b'['; 100_000]),
        Case {
            label: "deeply nested arguments",
            payload: nested_args(envelope, "bad-nested-args", 100_000)?,
            id: Some("bad-nested-args".to_owned()),
        },
    ])
}

/// `envelope` with id `id` and, for arguments, `depth` nested arrays: valid JSON, built as
/// text (serde_json's own types would recurse that deep).
fn nested_args(envelope: &str, id: &str, depth: usize) -> Result<Vec<u8>, String> {
    let real: Value = serde_json::from_str(envelope).map_err(|e| e.to_string())?;
    let args = real.get("a").map(Value::to_string).unwrap_or_default();
    let old_id = real.get("id").map(Value::to_string).unwrap_or_default();
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let text = envelope
        .replacen(&format!("\"a\":{args}"), &format!("\"a\":{nested}"), 1)
        .replacen(&format!("\"id\":{old_id}"), &format!("\"id\":\"{id}\""), 1);
    if !text.contains(&nested) || !text.contains(id) {
        return Err(format!("cannot edit the envelope {envelope}"));
    }
    Ok(text.into_bytes())
}
