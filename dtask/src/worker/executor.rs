//! The executor: runs one fetched job and settles it: acknowledged with its result, scheduled
//! for a retry, or buried in the dead set. A panic or a timeout is a failed attempt; a payload
//! that cannot run at all is buried with the reason. Nothing here can stop the worker.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::Context;
use super::acker::Ack;
use super::catch_panic::{CatchPanic, panic_message};
use super::fetcher::Fetched;
use crate::backoff::RECONNECT;
use crate::broker::{Finished, Held};
use crate::clock;
use crate::envelope::{self, DeadRecord, Envelope, JobId, OutcomeRecord, OutcomeState};
use crate::error::Error;

/// Runs a fetched job and settles it, then forgets it as held. When `abandon` fires (the
/// shutdown grace period is over) the job is left in flight, to be requeued by the worker.
pub(crate) async fn execute(ctx: &Context, job: Fetched, abandon: &CancellationToken) {
    let queue = job.queue.clone();
    let field = job.field.clone();
    // A landed job is known by its payload; a fetched one by its field.
    let landed_payload = field.is_none().then(|| job.payload.clone());
    let suspect = job.suspect;
    run_and_settle(ctx, job, abandon).await;
    if suspect {
        ctx.suspect_in_flight.store(false, Ordering::Release);
        ctx.wake_fetcher.notify_one();
    }
    if !abandon.is_cancelled() {
        let payload = landed_payload.as_deref().unwrap_or_default();
        ctx.held.release(&queue, field.as_deref(), payload);
    }
}

/// Runs a fetched job and settles it.
async fn run_and_settle(ctx: &Context, job: Fetched, abandon: &CancellationToken) {
    let Fetched {
        queue,
        field,
        payload,
        ..
    } = job;
    let queue = &queue;
    let held = Held {
        field: field.as_deref(),
        payload: &payload,
    };
    let envelope = match envelope::decode(&payload) {
        Ok(envelope) => envelope,
        Err(reason) => {
            let record = DeadRecord {
                id: JobId::generate(),
                task: None,
                error: readable(reason.to_string()),
                attempts: 0,
                died_at_ms: clock::now_ms(),
                job: None,
                raw: Some(String::from_utf8_lossy(&payload).into_owned()),
            };
            tracing::error!(queue = &**queue, dead_id = %record.id, error = %record.error, "buried a payload that is not a job");
            let record_json = record.to_json();
            settle(ctx, abandon, "burying", || {
                ctx.broker.bury(
                    queue,
                    &ctx.worker_id,
                    &held,
                    &record_json,
                    record.died_at_ms,
                    ctx.settings.dead_limits,
                )
            })
            .await;
            return;
        }
    };
    let Some(entry) = ctx.registry.get(&envelope.task) else {
        let reason = format!(
            "unknown task `{}`: no task of that name is registered in this worker (it knows: {})",
            envelope.task,
            ctx.registry.names().join(", ")
        );
        bury(ctx, queue, &held, envelope, readable(reason), abandon).await;
        return;
    };
    let run = match (entry.handler)(envelope.args.get()) {
        Ok(run) => run,
        Err(reason) => {
            let reason = readable(format!(
                "arguments do not match task `{}`: {reason}",
                envelope.task
            ));
            bury(ctx, queue, &held, envelope, reason, abandon).await;
            return;
        }
    };

    let attempt = envelope.attempt + 1;
    let started = Instant::now();
    let outcome = tokio::select! {
        outcome = within(entry.info.timeout, CatchPanic::new(run)) => outcome,
        _ = abandon.cancelled() => {
            tracing::warn!(job_id = %envelope.id, task = %envelope.task, "abandoned at shutdown; it will be requeued");
            return;
        }
    };
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let error = match outcome {
        Some(Ok(Ok(value))) => {
            tracing::info!(job_id = %envelope.id, task = %envelope.task, attempt, elapsed_ms, "job succeeded");
            let keep_result = entry.info.result_ttl.is_none_or(|ttl| !ttl.is_zero());
            let outcome = keep_result.then(|| {
                let record = OutcomeRecord {
                    state: OutcomeState::Succeeded,
                    attempts: attempt,
                    at_ms: clock::now_ms(),
                    value: RawValue::from_string(value).ok(),
                    error: None,
                };
                (
                    envelope.id.to_string(),
                    record.to_json(),
                    entry.info.result_ttl,
                )
            });
            let (done, acked) = oneshot::channel();
            let job = Finished {
                queue: queue.clone(),
                field,
                payload,
                outcome,
            };
            if ctx.acks.send(Ack { job, done }).is_ok() {
                // Holding the slot until Redis has the acknowledgement keeps the in-flight
                // list no longer than the concurrency.
                let _ = acked.await;
            }
            return;
        }
        Some(Ok(Err(error))) => readable(error),
        Some(Err(panic)) => readable(format!("panicked: {}", panic_message(panic.as_ref()))),
        None => {
            format!(
                "timed out after {:?}",
                entry.info.timeout.unwrap_or_default()
            )
        }
    };

    let retries = envelope.retries.unwrap_or(entry.info.retries);
    if attempt <= retries {
        let delay = ctx.settings.retry_backoff.delay(attempt);
        let due_ms = clock::now_ms() + delay.as_millis() as u64;
        tracing::warn!(job_id = %envelope.id, task = %envelope.task, attempt, elapsed_ms, %error, retry_in_ms = delay.as_millis() as u64, "job failed; will retry");
        let record = OutcomeRecord {
            state: OutcomeState::Retrying,
            attempts: attempt,
            at_ms: due_ms,
            value: None,
            error: Some(error.clone()),
        }
        .to_json();
        let next = Envelope {
            attempt,
            last_error: Some(error),
            ..envelope
        };
        let next_payload = next.to_json();
        // The record goes first: once the retry is scheduled, the next attempt may run and
        // record its own outcome, which this one must not overwrite.
        settle(ctx, abandon, "recording a failed attempt", || {
            ctx.broker
                .set_result(next.id.as_str(), &record, ctx.settings.result_ttl)
        })
        .await;
        settle(ctx, abandon, "scheduling a retry", || {
            ctx.broker
                .retry(queue, &ctx.worker_id, &held, &next_payload, due_ms)
        })
        .await;
    } else {
        tracing::error!(job_id = %envelope.id, task = %envelope.task, attempt, elapsed_ms, %error, "job failed on its last attempt; moved to the dead set");
        let envelope = Envelope {
            attempt,
            ..envelope
        };
        bury(ctx, queue, &held, envelope, error, abandon).await;
    }
}

/// Buries a job that will not run again: moves it from its worker's in-flight state to the dead
/// set, then records its death under its result key.
async fn bury(
    ctx: &Context,
    queue: &str,
    held: &Held<'_>,
    envelope: Envelope,
    error: String,
    abandon: &CancellationToken,
) {
    if envelope.attempt == 0 {
        tracing::error!(job_id = %envelope.id, task = %envelope.task, %error, "job cannot run; moved to the dead set");
    }
    let died_at_ms = clock::now_ms();
    let outcome = OutcomeRecord {
        state: OutcomeState::Dead,
        attempts: envelope.attempt,
        at_ms: died_at_ms,
        value: None,
        error: Some(error.clone()),
    }
    .to_json();
    let envelope = Envelope {
        last_error: Some(error.clone()),
        ..envelope
    };
    let record = DeadRecord {
        id: envelope.id.clone(),
        task: Some(envelope.task.clone()),
        error,
        attempts: envelope.attempt,
        died_at_ms,
        job: RawValue::from_string(envelope.to_json()).ok(),
        raw: None,
    }
    .to_json();
    let buried = settle(ctx, abandon, "burying", || {
        ctx.broker.bury(
            queue,
            &ctx.worker_id,
            held,
            &record,
            died_at_ms,
            ctx.settings.dead_limits,
        )
    })
    .await;
    // Only a job this worker buried is dead: one recovered meanwhile runs elsewhere. The record
    // comes second, so that whoever sees the job dead also finds it in the dead set.
    if buried == Some(true) {
        settle(ctx, abandon, "recording a dead job", || {
            ctx.broker
                .set_result(envelope.id.as_str(), &outcome, ctx.settings.result_ttl)
        })
        .await;
    }
}

/// The longest error message kept with a job, in characters.
const MAX_ERROR_CHARS: usize = 1000;

/// `message`, cut to [`MAX_ERROR_CHARS`] so that an error quoting a huge payload (a 10 MB
/// argument, say) stays readable and does not bloat the job, its result and the dead set.
fn readable(message: String) -> String {
    match message.char_indices().nth(MAX_ERROR_CHARS) {
        None => message,
        Some((cut, _)) => format!(
            "{}… ({} characters in all)",
            &message[..cut],
            message.chars().count()
        ),
    }
}

/// Awaits `running` for at most `limit`; `None` when the limit passed first.
async fn within<T>(limit: Option<Duration>, running: impl Future<Output = T>) -> Option<T> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, running).await.ok(),
        None => Some(running.await),
    }
}

/// Repeats a state change until Redis takes it: a settled job must not stay in flight on a live
/// worker, where nobody would recover it. Gives up only when the job is abandoned at shutdown,
/// in which case it is requeued (or recovered once this worker's heartbeat lapses).
async fn settle<T, F, Fut>(
    ctx: &Context,
    abandon: &CancellationToken,
    action: &str,
    mut op: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut failures = 0;
    loop {
        match op().await {
            Ok(value) => return Some(value),
            Err(error) => {
                failures += 1;
                tracing::warn!(%error, worker = %ctx.worker_id, "{action} failed; retrying");
                tokio::select! {
                    _ = abandon.cancelled() => return None,
                    _ = tokio::time::sleep(RECONNECT.delay(failures)) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_errors_are_cut_at_a_character_boundary_and_say_how_long_they_were() {
        assert_eq!(readable("short".into()), "short");
        let long = "é".repeat(5000);
        let cut = readable(long);
        assert!(cut.starts_with(&"é".repeat(1000)));
        assert!(cut.ends_with("… (5000 characters in all)"), "{cut}");
    }
}
